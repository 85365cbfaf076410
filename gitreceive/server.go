package gitreceive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/berthhq/berth/internal/tty"
)

// Config configures the SSH front door.
type Config struct {
	// Addr is the SSH listen address, e.g. ":2222".
	Addr string
	// DataDir holds repos/ and ssh/ (the host key).
	DataDir string
	// Socket and Executable are how the pre-receive hook calls back into the
	// daemon: `Executable --socket Socket _hook pre-receive …`.
	Socket     string
	Executable string
	// Domain is the global domain; apps answer at APP.Domain.
	Domain string
	// Version is reported by the version command.
	Version string
}

// Server is berth's SSH server: git push to deploy and the command set.
type Server struct {
	cfg    Config
	cmds   *Commands
	logger *slog.Logger
	ssh    *ssh.Server
	ln     net.Listener
	// hostKey is the public half of the persisted host key.
	hostKey gossh.PublicKey

	mu     sync.Mutex
	pushes map[string]*push // push ID → the SSH session it belongs to
}

// push is a git push in progress, known to the hook through its ID.
type push struct {
	app   string
	actor Actor
}

// ctxKeyFingerprint holds the verified key's fingerprint in the SSH context.
type ctxKey string

const (
	ctxKeyFingerprint ctxKey = "berth-fingerprint"
	ctxKeyActor       ctxKey = "berth-actor"
)

// NewServer prepares the SSH server (host key created once and kept under
// DataDir/ssh) and binds its listener.
func NewServer(cfg Config, cmds *Commands, logger *slog.Logger) (*Server, error) {
	signer, err := loadOrCreateHostKey(cfg.DataDir + "/ssh/host_ed25519_key")
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, cmds: cmds, logger: logger.With("component", "ssh"), pushes: map[string]*push{}, hostKey: signer.PublicKey()}
	s.ssh = &ssh.Server{
		Addr:             cfg.Addr,
		Handler:          s.handleSession,
		PublicKeyHandler: s.authKey,
		Version:          "berth",
		IdleTimeout:      30 * time.Minute,
	}
	s.ssh.AddHostKey(signer)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for ssh on %s: %w", cfg.Addr, err)
	}
	s.ln = ln
	cmds.hooks = s
	return s, nil
}

// Addr is the bound listen address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves SSH until ctx ends, then closes the listener and waits a
// little for sessions to finish.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.ssh.Serve(s.ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, ssh.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve ssh: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.ssh.Shutdown(sctx); err != nil {
			s.ssh.Close()
		}
		return nil
	}
}

// authKey accepts a key registered in platform and records which one, so the
// session handler can check that the session is bound to that key.
func (s *Server) authKey(ctx ssh.Context, key ssh.PublicKey) bool {
	fp := gossh.FingerprintSHA256(key)
	actor, err := s.cmds.keyActor(ctx, fp)
	if err != nil {
		s.logger.Info("ssh key refused", "fingerprint", fp, "remote", ctx.RemoteAddr().String(), "err", err)
		return false
	}
	ctx.SetValue(ctxKeyFingerprint, fp)
	ctx.SetValue(ctxKeyActor, actor)
	return true
}

// sessionActor re-checks, in the session, that the key the client proved it
// owns is the one the auth handler accepted (CVE-2024-45337: a client can
// offer several keys, and only the last verified one may be trusted).
func (s *Server) sessionActor(sess ssh.Session) (Actor, bool) {
	pk := sess.PublicKey()
	if pk == nil {
		return Actor{}, false
	}
	fp, _ := sess.Context().Value(ctxKeyFingerprint).(string)
	if fp == "" || fp != gossh.FingerprintSHA256(pk) {
		return Actor{}, false
	}
	actor, ok := sess.Context().Value(ctxKeyActor).(Actor)
	return actor, ok
}

func (s *Server) handleSession(sess ssh.Session) {
	actor, ok := s.sessionActor(sess)
	if !ok {
		fmt.Fprintln(sess.Stderr(), "berth: your key could not be verified for this session")
		sess.Exit(1)
		return
	}
	term := s.sessionTerminal(sess)
	args := sess.Command()
	ctx := sess.Context()
	if len(args) > 0 {
		switch args[0] {
		case "git-receive-pack", "git-upload-pack":
			sess.Exit(s.handleGit(ctx, sess, actor, args))
			return
		}
	}
	code := s.cmds.Run(ctx, actor, args, &Env{Stdin: sess, Stdout: sess, Stderr: sess.Stderr(), Terminal: term})
	sess.Exit(code)
}

// sessionTerminal is the terminal the client asked for with a pty-req, of
// its size and following its window-change requests, or nil without one.
// Every session with a pty drains its window changes, whatever it runs:
// gliderlabs/ssh holds up the session's requests until each one is taken.
func (s *Server) sessionTerminal(sess ssh.Session) *tty.Terminal {
	pty, winCh, ok := sess.Pty()
	if !ok {
		return nil
	}
	sizeOf := func(w ssh.Window) tty.Size {
		size := tty.SizeOf(w.Width, w.Height)
		if !size.Valid() && w != (ssh.Window{}) {
			s.logger.Debug("ignore terminal size", "width", w.Width, "height", w.Height, "remote", sess.RemoteAddr().String())
		}
		return size
	}
	resize := tty.NewResize()
	go func() {
		defer close(resize)
		// The first value is the pty-req's own size, already in pty.
		<-winCh
		for w := range winCh {
			if size := sizeOf(w); size.Valid() {
				tty.Send(resize, size)
			}
		}
	}()
	return &tty.Terminal{Size: sizeOf(pty.Window), Resize: resize}
}

// repoApp turns git's repository argument ('/myapp', 'myapp.git', '~/myapp')
// into an app name.
func repoApp(arg string) string {
	a := strings.TrimPrefix(arg, "~/")
	a = strings.TrimPrefix(a, "/")
	a = strings.TrimSuffix(a, "/")
	return strings.TrimSuffix(a, ".git")
}

func (s *Server) handleGit(ctx context.Context, sess ssh.Session, actor Actor, args []string) int {
	stderr := sess.Stderr()
	if len(args) != 2 {
		fmt.Fprintln(stderr, "berth: expected one repository argument, as git sends it")
		return 1
	}
	app := repoApp(args[1])
	receive := args[0] == "git-receive-pack"
	if err := s.cmds.authorizeGit(ctx, actor, app, receive, stderr); err != nil {
		fmt.Fprintln(stderr, " !", userMessage(err))
		return 1
	}
	if receive {
		// One push of an app at a time, from receive-pack's start to its
		// ref update: a second push waits and then sees the first's refs,
		// so it can never deploy a commit whose ref update then fails.
		unlock, ok := s.cmds.locks.TryLock(app)
		if !ok {
			fmt.Fprintf(stderr, "-----> Another deploy of %s is running; waiting for it to finish...\n", app)
			var err error
			if unlock, err = s.cmds.locks.LockCtx(ctx, app); err != nil {
				return 1
			}
		}
		defer unlock()
	}
	dir, err := s.ensureRepo(ctx, app)
	if err != nil {
		s.logger.Error("prepare repository", "app", app, "err", err)
		fmt.Fprintln(stderr, " ! could not prepare the repository; see the berth log")
		return 1
	}
	cmd := exec.CommandContext(ctx, args[0], dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = sess, sess, stderr
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1")
	if receive {
		// Check every pushed object, as GitHub does: a malformed tree
		// (duplicate entries, "..", ".git") is refused before any hook.
		cmd.Env = append(cmd.Env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=receive.fsckObjects", "GIT_CONFIG_VALUE_0=true")
		id := randomID()
		s.mu.Lock()
		s.pushes[id] = &push{app: app, actor: actor}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.pushes, id)
			s.mu.Unlock()
		}()
		cmd.Env = append(cmd.Env, "BERTH_PUSH_ID="+id)
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if ctx.Err() != nil {
			return 1
		}
		s.logger.Error("run git", "cmd", args[0], "app", app, "err", err)
		return 1
	}
	return 0
}

// lookupPush finds the push a hook belongs to.
func (s *Server) lookupPush(id string) (*push, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pushes[id]
	return p, ok
}

// HostKey is the server's public host key, for known_hosts files.
func (s *Server) HostKey() gossh.PublicKey { return s.hostKey }
