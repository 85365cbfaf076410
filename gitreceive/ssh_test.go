package gitreceive

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/pgtest"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/platform"
	gossh "golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// sshEnv is a running SSH server over a fresh database, with users whose
// keys the test made with the stock ssh-keygen.
type sshEnv struct {
	t          *testing.T
	svc        *platform.Service
	srv        *Server
	port       string
	dir        string
	knownHosts string
	keys       map[string]string // user → private key file
}

func newSSHEnv(t *testing.T, d Deployer) *sshEnv {
	t.Helper()
	testenv.RequireCommands(t, "ssh", "ssh-keygen", "git")
	svc := platform.New(pgtest.New(t), slog.New(slog.DiscardHandler))
	dir := t.TempDir()
	cfg := Config{Addr: "127.0.0.1:0", DataDir: dir, Socket: filepath.Join(dir, "none.sock"), Executable: "/bin/false", Domain: "berth.test", Version: "test"}
	cmds := NewCommands(cfg, svc, d, nil, slog.New(slog.DiscardHandler))
	srv, err := NewServer(cfg, cmds, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	_, port, _ := net.SplitHostPort(srv.Addr().String())
	e := &sshEnv{t: t, svc: svc, srv: srv, port: port, dir: dir, keys: map[string]string{}}
	e.knownHosts = filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%s %s", port, gossh.MarshalAuthorizedKey(srv.HostKey()))
	if err := os.WriteFile(e.knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// keygen makes a key pair with ssh-keygen and returns the private key path.
func (e *sshEnv) keygen(name string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, "id_"+name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path).CombinedOutput(); err != nil {
		e.t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	return path
}

// user adds a user with a fresh key registered.
func (e *sshEnv) user(name string, role platform.Role) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.svc.CreateUser(ctx, platform.System(), name, role); err != nil {
		e.t.Fatal(err)
	}
	key := e.keygen(name)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.AddKey(ctx, platform.System(), name, "", string(pub)); err != nil {
		e.t.Fatal(err)
	}
	e.keys[name] = key
}

func (e *sshEnv) sshArgs(key string) []string {
	return []string{"-p", e.port, "-i", key, "-o", "UserKnownHostsFile=" + e.knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-F", "/dev/null"}
}

// ssh runs `ssh berth@127.0.0.1 ARGS…` with the user's key (or a key path).
func (e *sshEnv) ssh(who string, stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	key, ok := e.keys[who]
	if !ok {
		key = who
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append(e.sshArgs(key), "berth@127.0.0.1")
	full = append(full, args...)
	return testenv.Run(e.t, exec.CommandContext(ctx, "ssh", full...), stdin)
}

func TestSSHCommandsAndPermissions(t *testing.T) {
	e := newSSHEnv(t, nil)
	e.user("root1", platform.RoleAdmin)
	e.user("alice", platform.RoleMember)
	e.user("bob", platform.RoleMember)
	stranger := e.keygen("stranger")

	steps := []struct {
		name     string
		who      string
		stdin    string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "unknown key cannot connect", who: stranger, args: []string{"apps:list"}, wantCode: 255, wantErr: "Permission denied"},
		{name: "help lists commands", who: "alice", args: []string{"help"}, wantOut: "apps:create"},
		{name: "member help hides admin commands", who: "alice", args: []string{"help"}, wantCode: 0},
		{name: "version", who: "alice", args: []string{"version"}, wantOut: "berth test"},
		{name: "alice creates an app", who: "alice", args: []string{"apps:create", "alpha"}, wantOut: "Creating alpha"},
		{name: "duplicate app", who: "bob", args: []string{"apps:create", "alpha"}, wantCode: 1, wantErr: "already exists"},
		{name: "bob cannot see alice's app", who: "bob", args: []string{"apps:info", "alpha"}, wantCode: 1, wantErr: `app "alpha" not found`},
		{name: "bob cannot set its config", who: "bob", args: []string{"config:set", "alpha", "A=1"}, wantCode: 1, wantErr: "not found"},
		{name: "bob's list is empty", who: "bob", args: []string{"apps:list"}, wantOut: "=====> Apps\n"},
		{name: "alice sets config", who: "alice", args: []string{"config:set", "alpha", "GREETING='hi there'", "B=2"}, wantOut: "v1"},
		{name: "config shows the value", who: "alice", args: []string{"config", "alpha"}, wantOut: "hi there"},
		{name: "config:get", who: "alice", args: []string{"config:get", "alpha", "B"}, wantOut: "2\n"},
		{name: "config:unset", who: "alice", args: []string{"config:unset", "alpha", "B"}, wantOut: "v2"},
		{name: "releases list", who: "alice", args: []string{"releases", "alpha"}, wantOut: "Unset B"},
		{name: "domains:add bad hostname", who: "alice", args: []string{"domains:add", "alpha", "'www example.com'"}, wantCode: 1, wantErr: "hostname"},
		{name: "alice shares with bob", who: "alice", args: []string{"apps:share", "alpha", "bob"}, wantOut: "shared with bob"},
		{name: "bob now sees it", who: "bob", args: []string{"apps:info", "alpha"}, wantOut: "Owner:"},
		{name: "member cannot add users", who: "bob", args: []string{"users:add", "eve"}, wantCode: 1, wantErr: "only admins"},
		{name: "admin adds a user", who: "root1", args: []string{"users:add", "eve"}, wantOut: "Added member eve"},
		{name: "admin sees every app", who: "root1", args: []string{"apps:list"}, wantOut: "alpha"},
		{name: "bob adds his own key", who: "bob", stdin: "", args: []string{"keys:add", "bob", "second"}, wantCode: 1, wantErr: "nothing on stdin"},
		{name: "bob cannot add keys for alice", who: "bob", stdin: "ssh-ed25519 AAAA x", args: []string{"keys:add", "alice"}, wantCode: 1, wantErr: ""},
		{name: "shell metacharacters in a name", who: "alice", args: []string{"apps:create", "'a;b'"}, wantCode: 1, wantErr: "app name"},
		{name: "unknown command", who: "alice", args: []string{"frobnicate"}, wantCode: 2, wantErr: "unknown command"},
		{name: "missing arguments", who: "alice", args: []string{"config:get", "alpha"}, wantCode: 2, wantErr: "missing arguments"},
		{name: "destroy without confirmation", who: "alice", stdin: "wrong\n", args: []string{"apps:destroy", "alpha"}, wantCode: 1, wantErr: "did not match"},
		{name: "git push to another's app is refused", who: "eve-none", args: []string{"git-receive-pack", "'alpha'"}, wantCode: 255},
		{name: "fetching an unseen app is refused", who: "root1", args: []string{"git-upload-pack", "'/nope.git'"}, wantCode: 1, wantErr: "not found"},
		{name: "traversal in a repo path", who: "alice", args: []string{"git-receive-pack", "'../../etc'"}, wantCode: 1, wantErr: "app name"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			who := s.who
			if who == "eve-none" {
				who = stranger
			}
			out, errs, code := e.ssh(who, s.stdin, s.args...)
			if code != s.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, s.wantCode, out, errs)
			}
			if !strings.Contains(out, s.wantOut) {
				t.Errorf("stdout = %q, want it to contain %q", out, s.wantOut)
			}
			if !strings.Contains(errs, s.wantErr) {
				t.Errorf("stderr = %q, want it to contain %q", errs, s.wantErr)
			}
		})
	}
	// Nothing was created by the refused steps.
	apps, err := e.svc.Apps(context.Background(), platform.System())
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || apps[0].Name != "alpha" {
		t.Errorf("apps after the session = %v, want only alpha", apps)
	}
}
