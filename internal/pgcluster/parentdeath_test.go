package pgcluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a daemon that starts a cluster and
// then hangs until killed.
const helperEnv = "BERTH_PGCLUSTER_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(runHelper(dir))
	}
	code := m.Run()
	removeGolden()
	os.Exit(code)
}

func runHelper(dir string) int {
	c, err := New(Options{Dir: dir, Ephemeral: true})
	if err == nil {
		err = c.Start(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(c.PID())
	select {}
}

func TestKilledParentStopsPostgres(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	dir := seededDir(t)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), helperEnv+"="+dir)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper did not report a postgres pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 || !alive(pid) {
		t.Fatalf("helper reported %q; want a live pid", line)
	}
	// The daemon dies without stopping anything.
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postgres %d still running 30s after its parent was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for time.Now().Before(deadline) && len(postgresProcesses(t, dir)) > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if pids := postgresProcesses(t, dir); len(pids) != 0 {
		t.Fatalf("postgres processes left: %v", pids)
	}
	// The next start on the same directory works.
	c := startCluster(t, dir)
	if got := query(t, c, "select 'up'"); got != "up" {
		t.Fatalf("got %q", got)
	}
}
