package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/testenv"
)

func TestMain(m *testing.M) {
	engine.MaybeInit()
	code := m.Run()
	testenv.RemoveBuilt()
	os.Exit(code)
}

// testDaemon is a `berth serve` process the test started, with the data
// directory and socket it uses.
type testDaemon struct {
	t       *testing.T
	dir     string
	sshPort string
	// httpPort is the router's port, webPort the dashboard's.
	httpPort string
	webPort  string
	bin      string
	dataDir  string
	socket   string
	env      []string
	cmd      *exec.Cmd
	log      *bytes.Buffer
	done     chan struct{}
}

func newTestDaemon(t *testing.T, extraEnv ...string) *testDaemon {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "git")
	bin := testenv.BerthBinary(t)
	// Not t.TempDir: postgres and container init run as unprivileged users
	// and need to traverse the path.
	dir, err := os.MkdirTemp("", "berth-daemon-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	sfx := testenv.Suffix()
	d := &testDaemon{t: t, bin: bin, dir: dir, dataDir: filepath.Join(dir, "data"), socket: filepath.Join(dir, "berth.sock"),
		sshPort: freePort(t), httpPort: freePort(t), webPort: freePort(t)}
	d.env = append(os.Environ(),
		"BERTH_CONFIG="+filepath.Join(dir, "none.toml"),
		"BERTH_DATA_DIR="+d.dataDir,
		"BERTH_SOCKET="+d.socket,
		"BERTH_SSH_ADDR=127.0.0.1:"+d.sshPort,
		"BERTH_HTTP_ADDR=127.0.0.1:"+d.httpPort,
		"BERTH_DOMAIN=berth.test",
		"BERTH_HTTPS_ADDR=127.0.0.1:0",
		"BERTH_WEB_ADDR=127.0.0.1:"+d.webPort,
		"BERTH_BRIDGE_NAME=bt"+sfx,
		fmt.Sprintf("BERTH_BRIDGE_SUBNET=10.%d.%d.0/24", 150+int(sfx[0])%50, int(sfx[1])*7%250),
		"BERTH_DATABASE_URL=",
	)
	d.env = append(d.env, extraEnv...)
	os.WriteFile(filepath.Join(dir, "none.toml"), nil, 0o600)
	t.Cleanup(func() {
		d.stop(syscall.SIGTERM)
		if out, _, code := d.run(nil, "cleanup"); code != 0 {
			t.Errorf("berth cleanup: exit %d: %s", code, out)
		}
		os.RemoveAll(dir)
	})
	return d
}

func (d *testDaemon) start() {
	d.t.Helper()
	d.log = &bytes.Buffer{}
	d.cmd = exec.Command(d.bin, "serve")
	d.cmd.Env = d.env
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("start berth serve: %v", err)
	}
	d.done = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, code := d.run(nil, "version"); code == 0 {
			return
		}
		select {
		case <-d.done:
			d.t.Fatalf("berth serve exited during start:\n%s", d.log)
		case <-time.After(200 * time.Millisecond):
		}
	}
	d.t.Fatalf("berth serve did not answer within 90s:\n%s", d.log)
}

// stop sends sig and waits for the daemon to exit.
func (d *testDaemon) stop(sig syscall.Signal) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(90 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("berth serve did not stop within 90s after %v:\n%s", sig, d.log)
	}
}

// run runs `berth ARGS…` as a client of the daemon.
func (d *testDaemon) run(stdin []byte, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = d.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

func (d *testDaemon) mustRun(stdin []byte, args ...string) string {
	d.t.Helper()
	out, errs, code := d.run(stdin, args...)
	if code != 0 {
		d.t.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// postgresProcesses lists live processes whose command line names dir.
func postgresProcesses(dir string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, "postgres") && strings.Contains(cl, dir) {
			found = append(found, e.Name()+": "+cl)
		}
	}
	return found
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// TestEmbeddedPostgresLifecycle: a fresh data dir gets its own cluster,
// state survives a restart and a SIGKILL of the daemon, and nothing of
// postgres is left after a clean shutdown.
func TestEmbeddedPostgresLifecycle(t *testing.T) {
	d := newTestDaemon(t)
	d.start()
	d.mustRun(nil, "users:add", "alice", "--admin")
	key, _ := testenv.AuthorizedKey(t, "")
	d.mustRun([]byte(key+"\n"), "keys:add", "alice", "laptop")
	d.mustRun([]byte("correct horse battery\n"), "users:passwd", "alice")

	// The dashboard answers on its port and signs the user in.
	resp, err := http.Get("http://127.0.0.1:" + d.webPort + "/login")
	if err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /login = %d", resp.StatusCode)
	}
	d.mustRun(nil, "apps:create", "myapp")
	out := d.mustRun(nil, "config:set", "myapp", "GREETING=hello", "OTHER=x")
	if !strings.Contains(out, "v1") {
		t.Errorf("config:set did not report the new release: %q", out)
	}

	d.stop(syscall.SIGTERM)
	if ps := postgresProcesses(d.dataDir); len(ps) > 0 {
		t.Fatalf("postgres left running after shutdown: %v", ps)
	}

	d.start()
	if out := d.mustRun(nil, "apps:list"); !strings.Contains(out, "myapp") {
		t.Errorf("after restart apps:list = %q, want myapp", out)
	}
	if out := d.mustRun(nil, "config:get", "myapp", "GREETING"); strings.TrimSpace(out) != "hello" {
		t.Errorf("after restart config:get = %q", out)
	}
	if out := d.mustRun(nil, "keys:list", "alice"); !strings.Contains(out, "laptop") {
		t.Errorf("after restart keys:list = %q", out)
	}

	// A SIGKILLed daemon must not block the next start.
	d.stop(syscall.SIGKILL)
	d.start()
	if out := d.mustRun(nil, "releases", "myapp"); !strings.Contains(out, "v1") {
		t.Errorf("after SIGKILL and restart, releases = %q", out)
	}
	d.stop(syscall.SIGTERM)
	if ps := postgresProcesses(d.dataDir); len(ps) > 0 {
		t.Fatalf("postgres left running after shutdown: %v", ps)
	}
}

// TestBadInputLeavesNothing: invalid commands fail with a message naming the
// problem and change nothing.
func TestBadInputLeavesNothing(t *testing.T) {
	d := newTestDaemon(t)
	d.start()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "uppercase app", args: []string{"apps:create", "MyApp"}, wantErr: "app name"},
		{name: "shell metacharacters", args: []string{"apps:create", "a;rm -rf /"}, wantErr: "app name"},
		{name: "path traversal", args: []string{"apps:create", "../etc"}, wantErr: "app name"},
		{name: "too long", args: []string{"apps:create", strings.Repeat("a", 31)}, wantErr: "app name"},
		{name: "unknown command", args: []string{"apps:explode"}, wantErr: "unknown command"},
		{name: "missing argument", args: []string{"config:set"}, wantErr: "missing arguments"},
		{name: "bad hostname", args: []string{"domains:add", "nope", "exa mple.com"}, wantErr: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs, code := d.run(nil, tt.args...)
			if code == 0 {
				t.Fatalf("berth %v succeeded", tt.args)
			}
			if !strings.Contains(errs, tt.wantErr) {
				t.Errorf("stderr = %q, want it to mention %q", errs, tt.wantErr)
			}
		})
	}
	if out := d.mustRun(nil, "apps:list"); strings.TrimSpace(strings.TrimPrefix(out, "=====> Apps")) != "" {
		t.Errorf("apps exist after bad input: %q", out)
	}
}

// TestUnreachableDatabaseNamesWhatWasTried: with a URL that answers nothing,
// serve fails and says which server it tried.
func TestUnreachableDatabaseNamesWhatWasTried(t *testing.T) {
	d := newTestDaemon(t, "BERTH_DATABASE_URL=postgres://berth@127.0.0.1:1/berth?connect_timeout=3")
	cmd := exec.Command(d.bin, "serve")
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("serve succeeded without a database")
	}
	if !strings.Contains(string(out), "127.0.0.1:1") {
		t.Errorf("error does not name the server tried: %s", out)
	}
}
