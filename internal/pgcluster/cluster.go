// Package pgcluster runs a private PostgreSQL cluster with the host's
// PostgreSQL binaries: it creates the cluster once (initdb), starts postgres
// listening on a unix socket only, supervises it (restarting it with backoff
// if it dies), and stops it with a fast shutdown that leaves no process.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Port is the port number of the cluster. With listen_addresses=” postgres
// opens no TCP socket; the port only names the unix socket file.
const Port = 5432

// Superuser is the database superuser initdb creates.
const Superuser = "postgres"

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Options configure a Cluster.
type Options struct {
	// Dir holds everything of the cluster: data/ (PGDATA), run/ (the socket
	// directory) and postgres.log. It is created if missing.
	Dir string
	// Database is created at start if missing; ConnString connects to it.
	// Default "berth".
	Database string
	// User is the OS user postgres runs as when berth runs as root (postgres
	// refuses to run as root). Default "postgres", the user Debian's package
	// creates. When berth is not root, postgres runs as berth's own user.
	User string
	// Ephemeral trades durability for speed (no fsync), for throwaway test
	// clusters. Never set it for real data.
	Ephemeral bool
	// Settings are extra server settings passed as -c name=value.
	Settings map[string]string
	// StartTimeout bounds how long Start waits for the server to accept
	// connections. Default 60s.
	StartTimeout time.Duration
	// Logger receives the cluster's lifecycle events. Default: discard.
	Logger *slog.Logger
}

// Cluster is a private PostgreSQL cluster. Create it with New, then Start;
// Stop it before the program exits.
type Cluster struct {
	opts    Options
	log     *slog.Logger
	dataDir string
	sockDir string
	logPath string
	cred    *syscall.Credential // nil: run as ourselves
	bins    Binaries

	mu       sync.Mutex
	started  bool
	stopping bool
	proc     *os.Process
	exited   chan struct{} // closed when the current postgres process exits
	stopCh   chan struct{} // closed by Stop
	done     chan struct{} // closed when the supervisor returns
}

// New returns a cluster rooted at opts.Dir; nothing is created until Start.
func New(opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("new cluster: no directory given")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolve cluster directory: %w", err)
	}
	opts.Dir = dir
	if opts.Database == "" {
		opts.Database = "berth"
	}
	if opts.User == "" {
		opts.User = "postgres"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		opts:    opts,
		log:     log.With("component", "pgcluster", "dir", dir),
		dataDir: filepath.Join(dir, "data"),
		sockDir: filepath.Join(dir, "run"),
		logPath: filepath.Join(dir, "postgres.log"),
		stopCh:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	if n := len(filepath.Join(c.sockDir, ".s.PGSQL."+strconv.Itoa(Port)+".lock")); n > maxSocketPath {
		return nil, fmt.Errorf("new cluster: the socket path under %s would be %d bytes, over the %d Linux allows: choose a shorter data directory",
			dir, n, maxSocketPath)
	}
	return c, nil
}

// SocketDir returns the directory holding the server's unix socket.
func (c *Cluster) SocketDir() string { return c.sockDir }

// DataDir returns the cluster's PGDATA.
func (c *Cluster) DataDir() string { return c.dataDir }

// LogPath returns the file the server writes its log to.
func (c *Cluster) LogPath() string { return c.logPath }

// ConnString returns a pgx connection URL for database db on this cluster
// (Options.Database when db is empty). It holds no password: the socket
// directory is reachable only by root and the cluster's OS user.
func (c *Cluster) ConnString(db string) string {
	if db == "" {
		db = c.opts.Database
	}
	q := url.Values{}
	q.Set("host", c.sockDir)
	q.Set("port", strconv.Itoa(Port))
	q.Set("sslmode", "disable")
	return (&url.URL{Scheme: "postgres", User: url.User(Superuser), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// Start creates the cluster if it does not exist yet, stops a server left
// running on it by a previous process that was killed, starts postgres under
// supervision, waits until it accepts connections and creates the database.
// Start may be called once.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("start cluster: already started")
	}
	c.started = true
	c.mu.Unlock()

	if err := c.prepare(ctx); err != nil {
		close(c.done)
		return fmt.Errorf("start postgres cluster in %s: %w", c.opts.Dir, err)
	}
	firstStart := make(chan error, 1)
	go c.supervise(firstStart)
	if err := <-firstStart; err != nil {
		return fmt.Errorf("start postgres cluster in %s: %w", c.opts.Dir, err)
	}
	if err := c.waitReady(ctx); err != nil {
		stopErr := c.Stop(context.Background())
		return errors.Join(fmt.Errorf("start postgres cluster in %s: %w", c.opts.Dir, err), stopErr)
	}
	if err := c.ensureDatabase(ctx, c.opts.Database); err != nil {
		stopErr := c.Stop(context.Background())
		return errors.Join(fmt.Errorf("start postgres cluster in %s: %w", c.opts.Dir, err), stopErr)
	}
	c.log.Info("postgres ready", "socket", c.sockDir, "version", c.bins.Major)
	return nil
}

// prepare resolves the user and binaries, makes the directories, runs
// initdb once, and clears what a killed previous run left behind.
func (c *Cluster) prepare(ctx context.Context) error {
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		u, err := user.Lookup(c.opts.User)
		if err != nil {
			return fmt.Errorf("%w: look up user %q: %v: install the postgresql package (it creates the user) or set BERTH_DATABASE_URL",
				ErrNoUser, c.opts.User, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Parents made here are searchable by the server's user; existing ones
	// are checked.
	if err := os.MkdirAll(filepath.Dir(c.opts.Dir), 0o755); err != nil {
		return fmt.Errorf("make directory: %w", err)
	}
	if err := checkSearchable(filepath.Dir(c.opts.Dir), uid, gid); err != nil {
		return err
	}
	for _, d := range []string{c.opts.Dir, c.sockDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("make directory: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("set mode of %s: %w", d, err)
		}
		if err := os.Lchown(d, uid, gid); err != nil {
			return fmt.Errorf("set owner of %s: %w", d, err)
		}
	}

	want := 0
	if b, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		want, err = strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("read %s/PG_VERSION: %q is not a version", c.dataDir, b)
		}
	}
	bins, err := chooseBinaries(want)
	if err != nil {
		return err
	}
	c.bins = bins

	if want == 0 {
		if err := c.initdb(ctx); err != nil {
			return err
		}
	}
	if err := c.clearLeftovers(ctx); err != nil {
		return err
	}
	return c.rotateLog(uid, gid)
}

// initdb creates the cluster in a scratch directory and renames it into
// place, so a run interrupted halfway leaves nothing that looks like a
// cluster.
func (c *Cluster) initdb(ctx context.Context) error {
	tmp := c.dataDir + ".init"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove unfinished cluster: %w", err)
	}
	if fi, err := os.Stat(c.dataDir); err == nil && fi.IsDir() {
		entries, _ := os.ReadDir(c.dataDir)
		if len(entries) > 0 {
			return fmt.Errorf("%s is not empty but holds no cluster (no PG_VERSION): move it away and start again", c.dataDir)
		}
		if err := os.Remove(c.dataDir); err != nil {
			return fmt.Errorf("remove empty data directory: %w", err)
		}
	}
	args := []string{"-D", tmp, "-U", Superuser, "-E", "UTF8", "--no-locale",
		"--auth-local=trust", "--auth-host=reject", "--no-instructions"}
	if c.opts.Ephemeral {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, c.bins.Initdb(), args...)
	cmd.Dir = c.opts.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("run initdb: %w: %s", err, lastLines(out, 10))
	}
	if err := os.Rename(tmp, c.dataDir); err != nil {
		return fmt.Errorf("move new cluster into place: %w", err)
	}
	c.log.Info("created postgres cluster", "version", c.bins.Major)
	return nil
}

// clearLeftovers deals with what a previous berth killed without a clean
// shutdown left behind: a postgres still running on this data directory is
// stopped (fast shutdown), and stale lock files are removed, since a PID in
// them may have been reused by an unrelated process, which would make
// postgres refuse to start.
func (c *Cluster) clearLeftovers(ctx context.Context) error {
	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	if pid, ok := c.orphanPID(); ok {
		c.log.Warn("stopping postgres left running by a previous run", "pid", pid)
		if err := stopPID(ctx, pid); err != nil {
			return fmt.Errorf("stop orphan postgres (pid %d): %w", pid, err)
		}
	}
	if err := os.Remove(pidFile); err == nil {
		c.log.Info("removed stale postmaster.pid")
	}
	locks, _ := filepath.Glob(filepath.Join(c.sockDir, ".s.PGSQL.*"))
	for _, l := range locks {
		_ = os.Remove(l)
	}
	return nil
}

// orphanPID returns the PID recorded in postmaster.pid when that process is
// alive and is a postgres serving this data directory.
func (c *Cluster) orphanPID() (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || !alive(pid) {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) == 0 || filepath.Base(args[0]) != "postgres" {
		return 0, false
	}
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-D" && filepath.Clean(args[i+1]) == c.dataDir {
			return pid, true
		}
	}
	return 0, false
}

// alive reports whether pid names a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// stopPID asks the postmaster pid for a fast shutdown and waits for it to go,
// escalating to an immediate shutdown and then SIGKILL.
func stopPID(ctx context.Context, pid int) error {
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 30 * time.Second}, {syscall.SIGQUIT, 10 * time.Second}, {syscall.SIGKILL, 10 * time.Second}}
	for _, s := range steps {
		if err := syscall.Kill(pid, s.sig); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return nil
			}
			return fmt.Errorf("signal %d: %w", pid, err)
		}
		deadline := time.Now().Add(s.wait)
		for time.Now().Before(deadline) {
			if !alive(pid) {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return fmt.Errorf("process %d did not exit", pid)
}

// rotateLog keeps one previous log when the current one has grown large, and
// makes sure the server's user can write the log.
func (c *Cluster) rotateLog(uid, gid int) error {
	if fi, err := os.Stat(c.logPath); err == nil && fi.Size() > 16<<20 {
		_ = os.Rename(c.logPath, c.logPath+".1")
	}
	f, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open postgres log: %w", err)
	}
	defer f.Close()
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("set owner of postgres log: %w", err)
	}
	return nil
}

// command builds one postgres server process.
func (c *Cluster) command(logFile *os.File) *exec.Cmd {
	settings := map[string]string{
		"listen_addresses":        "",
		"unix_socket_directories": c.sockDir,
		"unix_socket_permissions": "0700",
		"port":                    strconv.Itoa(Port),
	}
	if c.opts.Ephemeral {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range c.opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", c.dataDir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	cmd := exec.Command(c.bins.Postgres(), args...)
	cmd.Dir = c.opts.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: c.cred,
		// Its own process group, so a Ctrl-C meant for berth does not reach
		// postgres before berth asks it to stop.
		Setpgid: true,
		// If berth dies without stopping it, postgres does a fast shutdown.
		// The signal is tied to the thread that started the process, which
		// supervise keeps locked for the process's lifetime.
		Pdeathsig: syscall.SIGINT,
	}
	return cmd
}

// supervise runs postgres and restarts it with backoff when it exits without
// being asked to. The result of the first start goes to firstStart.
func (c *Cluster) supervise(firstStart chan<- error) {
	// Pdeathsig fires when the starting thread exits; keep this goroutine on
	// its own thread until postgres is gone. The thread is discarded when
	// the goroutine returns while still locked.
	runtime.LockOSThread()
	defer close(c.done)
	backoff := time.Second
	for {
		logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		var cmd *exec.Cmd
		if err == nil {
			cmd = c.command(logFile)
			err = cmd.Start()
			logFile.Close()
		}
		if firstStart != nil {
			firstStart <- err
			firstStart = nil
			if err != nil {
				return
			}
		}
		if err == nil {
			exited := make(chan struct{})
			c.mu.Lock()
			c.proc, c.exited = cmd.Process, exited
			if c.stopping {
				// Stop ran while this process was starting and saw only
				// the previous one.
				_ = cmd.Process.Signal(syscall.SIGINT)
			}
			c.mu.Unlock()
			startedAt := time.Now()
			err = cmd.Wait()
			close(exited)
			if time.Since(startedAt) > time.Minute {
				backoff = time.Second
			}
		}
		c.mu.Lock()
		stopping := c.stopping
		c.mu.Unlock()
		if stopping {
			return
		}
		c.log.Error("postgres exited unexpectedly; restarting", "err", err, "in", backoff,
			"log", lastLinesOfFile(c.logPath, 5))
		select {
		case <-c.stopCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		if err := c.clearLeftovers(context.Background()); err != nil {
			c.log.Error("clear leftovers before restart", "err", err)
		}
	}
}

// waitReady waits until the server accepts connections.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	c.mu.Lock()
	exited := c.exited
	c.mu.Unlock()
	var lastErr error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(attempt, c.ConnString("postgres"))
		cancelAttempt()
		if err == nil {
			return conn.Close(ctx)
		}
		lastErr = err
		select {
		case <-exited:
			return fmt.Errorf("postgres exited during start-up: %s", lastLinesOfFile(c.logPath, 10))
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres to accept connections: %w (last attempt: %v); log: %s",
				ctx.Err(), lastErr, lastLinesOfFile(c.logPath, 10))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ensureDatabase creates database db if it does not exist.
func (c *Cluster) ensureDatabase(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "select exists (select 1 from pg_database where datname = $1)", db).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", db, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "create database "+pgx.Identifier{db}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
			return nil
		}
		return fmt.Errorf("create database %s: %w", db, err)
	}
	c.log.Info("created database", "database", db)
	return nil
}

// Stop asks postgres for a fast shutdown (clients are disconnected, work is
// checkpointed) and waits until the process has gone. When ctx ends first it
// escalates to an immediate shutdown, then SIGKILL. Stop is safe to call more
// than once and on a cluster that never started.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	if !c.started {
		c.mu.Unlock()
		return nil
	}
	first := !c.stopping
	c.stopping = true
	proc, exited := c.proc, c.exited
	c.mu.Unlock()
	if first {
		close(c.stopCh)
	}
	if proc != nil {
		select {
		case <-exited:
		default:
			if err := c.signalAndWait(ctx, proc, exited); err != nil {
				return fmt.Errorf("stop postgres: %w", err)
			}
		}
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		return errors.New("stop postgres: supervisor did not finish")
	}
	if first {
		c.log.Info("postgres stopped")
	}
	return nil
}

func (c *Cluster) signalAndWait(ctx context.Context, proc *os.Process, exited <-chan struct{}) error {
	if err := proc.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal fast shutdown: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
	}
	c.log.Warn("postgres fast shutdown too slow; doing immediate shutdown")
	_ = proc.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = proc.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("process %d did not exit", proc.Pid)
	}
}

// Done is closed when the cluster has stopped for good: after Stop, or when
// its first start failed.
func (c *Cluster) Done() <-chan struct{} { return c.done }

// PID returns the process id of the running postmaster, or 0.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	select {
	case <-c.exited:
		return 0
	default:
		return c.proc.Pid
	}
}

// checkSearchable makes sure the server's user can reach the cluster
// directory: every ancestor must be searchable by uid/gid.
func checkSearchable(dir string, uid, gid int) error {
	if uid == 0 {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("check directory %s: %w", d, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok {
			var bit os.FileMode = 0o001
			switch {
			case int(st.Uid) == uid:
				bit = 0o100
			case int(st.Gid) == gid:
				bit = 0o010
			}
			if fi.Mode().Perm()&bit == 0 {
				return fmt.Errorf("directory %s (mode %#o) is not searchable by the postgres server's user (uid %d): chmod o+x %s, or set BERTH_DATABASE_URL",
					d, fi.Mode().Perm(), uid, d)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func lastLinesOfFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 8192 {
		_, _ = f.Seek(-8192, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return lastLines(b, n)
}
