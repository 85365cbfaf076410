package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/berthhq/berth/internal/tty"
)

// Session is one command invocation arriving over the socket.
type Session struct {
	Request Request
	// Stdin reads what the client sends on its standard input.
	Stdin io.Reader
	// Stdout and Stderr go back to the client's.
	Stdout io.Writer
	Stderr io.Writer
	// UID is the peer's user ID as the kernel reports it (SO_PEERCRED).
	UID uint32
	// Terminal is the client's terminal, of its size and following its
	// window changes, when Request.TTY; nil otherwise.
	Terminal *tty.Terminal
}

// Handler runs one session and returns its exit status.
type Handler func(ctx context.Context, s *Session) int

// Server accepts local admin connections on a unix socket that only root can
// reach.
type Server struct {
	path    string
	handler Handler
	logger  *slog.Logger

	ln net.Listener
	wg sync.WaitGroup
}

// Listen creates the socket at path (its directory, when missing, made 0700;
// the socket 0600; a stale socket from a killed daemon replaced) and returns a server
// ready to Serve.
func Listen(path string, handler Handler, logger *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create control socket dir: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, ErrAlreadyRunning)
	}
	_ = os.Remove(path)
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return &Server{path: path, handler: handler, logger: logger.With("component", "control"), ln: ln}, nil
}

// ErrAlreadyRunning reports that another daemon answers on the socket.
var ErrAlreadyRunning = errors.New("another berth daemon is already running")

// Serve accepts connections until ctx is cancelled, then waits for running
// sessions to end.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.ln.Close()
	}()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.wg.Wait()
				return nil
			}
			return fmt.Errorf("accept control connection: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c.(*net.UnixConn))
		}()
	}
}

func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("control session panicked", "panic", r)
		}
	}()
	uid, err := peerUID(c)
	if err != nil {
		s.logger.Warn("read peer credentials", "err", err)
		return
	}
	var mu sync.Mutex
	stdout := frameWriter{mu: &mu, w: c, typ: frameStdout}
	stderr := frameWriter{mu: &mu, w: c, typ: frameStderr}
	exit := func(code int) {
		mu.Lock()
		defer mu.Unlock()
		_ = writeFrame(c, frameExit, []byte{byte(code)})
	}
	if uid != 0 {
		fmt.Fprintln(stderr, "berth: the local admin socket is for root only; use ssh for other users")
		exit(1)
		return
	}
	typ, p, err := readFrame(c, nil)
	if err != nil || typ != frameRequest {
		s.logger.Warn("bad control request", "err", err)
		return
	}
	req, err := decodeRequest(p)
	if err != nil {
		fmt.Fprintln(stderr, "berth:", err)
		exit(1)
		return
	}

	var term *tty.Terminal
	var resize chan tty.Size
	if req.TTY {
		resize = tty.NewResize()
		term = &tty.Terminal{Size: tty.SizeOf(req.Width, req.Height), Resize: resize}
	}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		// Stdin and window frames until the connection ends; a vanished
		// client cancels the session.
		if resize != nil {
			defer close(resize)
		}
		var buf []byte
		for {
			typ, p, err := readFrame(c, buf)
			if err != nil {
				pw.CloseWithError(io.ErrUnexpectedEOF)
				cancel()
				return
			}
			buf = p[:0]
			switch typ {
			case frameStdin:
				if _, err := pw.Write(p); err != nil {
					continue
				}
			case frameStdinEOF:
				pw.Close()
			case frameWindow:
				size, err := decodeWindow(p)
				if err != nil {
					pw.CloseWithError(err)
					cancel()
					return
				}
				if resize != nil && size.Valid() {
					tty.Send(resize, size)
				}
			default:
				// A frame of a newer client (as the window frame was once):
				// what this daemon does not know, it does without.
				continue
			}
		}
	}()
	code := s.handler(sctx, &Session{Request: req, Stdin: pr, Stdout: stdout, Stderr: stderr, UID: uid, Terminal: term})
	pr.Close()
	exit(code)
}

// Addr is the socket path.
func (s *Server) Addr() string { return s.path }
