package pgcluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// needBinaries skips when the host has no PostgreSQL server, except under CI.
func needBinaries(t *testing.T) {
	t.Helper()
	if found, looked := FindBinaries(); len(found) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no PostgreSQL server binaries (looked in %v); CI must have them (scripts/deps.sh)", looked)
		}
		t.Skipf("no PostgreSQL server binaries (looked in %v): install postgresql", looked)
	}
}

// clusterDir returns a temporary directory the postgres user can reach.
func clusterDir(t *testing.T) string {
	t.Helper()
	// Not t.TempDir: its parent is private to root.
	dir, err := os.MkdirTemp("", "berth-pgcluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "postgres")
}

// golden is a cluster made once per test process and copied by seededDir,
// so that only one test pays for initdb.
var golden struct {
	once sync.Once
	root string
	err  error
}

// seededDir returns a directory like clusterDir's holding a copy of an
// existing, stopped cluster.
func seededDir(t *testing.T) string {
	t.Helper()
	golden.once.Do(func() {
		root, err := os.MkdirTemp("", "berth-pgcluster-golden-")
		if err != nil {
			golden.err = err
			return
		}
		golden.root = root
		if err := os.Chmod(root, 0o755); err != nil {
			golden.err = err
			return
		}
		c, err := New(Options{Dir: filepath.Join(root, "postgres"), Ephemeral: true})
		if err == nil {
			err = c.Start(context.Background())
		}
		if err == nil {
			err = c.Stop(context.Background())
		}
		golden.err = err
	})
	if golden.err != nil {
		t.Fatalf("make golden cluster: %v", golden.err)
	}
	dir := clusterDir(t)
	if out, err := exec.Command("cp", "-a", filepath.Join(golden.root, "postgres"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy golden cluster: %v: %s", err, out)
	}
	return dir
}

// removeGolden deletes the golden cluster; TestMain calls it.
func removeGolden() {
	if golden.root != "" {
		_ = os.RemoveAll(golden.root)
	}
}

// startCluster starts a cluster in dir and stops it when the test ends.
func startCluster(t *testing.T, dir string) *Cluster {
	t.Helper()
	c, err := New(Options{Dir: dir, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}

func query(t *testing.T, c *Cluster, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString(""))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var out string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&out); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// postgresProcesses lists live processes whose command line mentions dir.
func postgresProcesses(t *testing.T, dir string) []int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(b), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestStartRestartKeepsData(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	dir := clusterDir(t)
	c := startCluster(t, dir)
	if fi, err := os.Stat(filepath.Join(c.SocketDir(), ".s.PGSQL.5432")); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("no unix socket in %s: %v", c.SocketDir(), err)
	}
	if got := query(t, c, "show listen_addresses"); got != "" {
		t.Fatalf("listen_addresses = %q, want empty (unix socket only)", got)
	}
	query(t, c, "select 'ok' from (select 1) s where (select count(*) from pg_database where datname = 'berth') = 1")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.ConnString(""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "create table kept (v text); insert into kept values ('still here')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if pids := postgresProcesses(t, dir); len(pids) != 0 {
		t.Fatalf("postgres processes left after Stop: %v", pids)
	}

	c2 := startCluster(t, dir)
	if got := query(t, c2, "select v from kept"); got != "still here" {
		t.Fatalf("after restart: %q, want %q", got, "still here")
	}
	if err := c2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if pids := postgresProcesses(t, dir); len(pids) != 0 {
		t.Fatalf("postgres processes left after second Stop: %v", pids)
	}
}

func TestStalePIDFileDoesNotBlockStart(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	dir := seededDir(t)
	c := startCluster(t, dir)
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A postmaster.pid naming a live process that is not postgres, as after
	// a crash and a reboot that reused the PID.
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	pidFile := filepath.Join(c.DataDir(), "postmaster.pid")
	content := strconv.Itoa(sleeper.Process.Pid) + "\n" + c.DataDir() + "\n"
	if err := os.WriteFile(pidFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := startCluster(t, dir)
	if got := query(t, c2, "select 'up'"); got != "up" {
		t.Fatalf("got %q", got)
	}
}

func TestOrphanFromKilledDaemonIsStopped(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	dir := seededDir(t)
	c := startCluster(t, dir)
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Start postgres the way a previous berth would have, then "lose" it:
	// no supervisor, no parent-death signal.
	logFile, err := os.OpenFile(c.LogPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	orphan := c.command(logFile)
	orphan.SysProcAttr.Pdeathsig = 0
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	logFile.Close()
	orphanDone := make(chan struct{})
	go func() { _ = orphan.Wait(); close(orphanDone) }()
	t.Cleanup(func() {
		_ = orphan.Process.Kill()
		<-orphanDone
	})
	// Wait until it is serving.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := c.orphanPID(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("orphan postgres did not write postmaster.pid")
		}
		time.Sleep(50 * time.Millisecond)
	}

	c2 := startCluster(t, dir)
	select {
	case <-orphanDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the orphan postgres is still running after a new cluster started")
	}
	if c2.PID() == orphan.Process.Pid || c2.PID() == 0 {
		t.Fatalf("new postmaster pid %d, orphan %d", c2.PID(), orphan.Process.Pid)
	}
	if got := query(t, c2, "select 'up'"); got != "up" {
		t.Fatalf("got %q", got)
	}
}

func TestSupervisorRestartsAfterCrash(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	dir := seededDir(t)
	c := startCluster(t, dir)
	old := c.PID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		if pid := c.PID(); pid != 0 && pid != old {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			conn, err := pgx.Connect(ctx, c.ConnString(""))
			cancel()
			if err == nil {
				conn.Close(context.Background())
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres was not restarted after SIGKILL (pid %d); log: %s", old, lastLinesOfFile(c.LogPath(), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pids := postgresProcesses(t, dir); len(pids) != 0 {
		t.Fatalf("postgres processes left after Stop: %v", pids)
	}
}

func TestErrorsNameWhatWasTried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fn   func() error
		want []string
	}{
		{
			name: "missing version",
			fn:   func() error { _, err := chooseBinaries(99); return err },
			want: []string{"version 99", "postgresql-99"},
		},
		{
			name: "socket path too long",
			fn: func() error {
				_, err := New(Options{Dir: "/tmp/" + strings.Repeat("x", 120)})
				return err
			},
			want: []string{"socket path", "shorter data directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.fn()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if found, _ := FindBinaries(); len(found) > 0 {
		if _, err := chooseBinaries(99); !errors.Is(err, ErrNoBinaries) {
			t.Fatalf("err = %v, want ErrNoBinaries", err)
		}
	}
}

func TestUnsearchableParentIsReported(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (postgres runs as another user only under root); CI runs as root")
		}
		t.Skip("needs root: only root runs postgres as another user")
	}
	parent := t.TempDir() // mode 0700, owned by root
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Dir: filepath.Join(parent, "pg"), Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(context.Background())
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	if err == nil || !strings.Contains(err.Error(), "chmod o+x "+parent) {
		t.Fatalf("err = %v, want one naming %s and the fix", err, parent)
	}
}
