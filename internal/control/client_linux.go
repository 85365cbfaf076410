package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"

	"github.com/berthhq/berth/internal/tty"
)

// ErrNoDaemon reports that nothing answers on the control socket.
var ErrNoDaemon = errors.New("berth daemon is not running")

// Run sends args to the daemon at socketPath, copies stdin to it and its
// output to stdout and stderr, and returns the command's exit status.
// resize, when not nil, delivers the client terminal's window changes,
// which go to the daemon as they come.
func Run(ctx context.Context, socketPath string, req Request, stdin io.Reader, stdout, stderr io.Writer, resize <-chan tty.Size) (int, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return 1, fmt.Errorf("connect to %s: %w (start it with `berth serve` or `make run`)", socketPath, ErrNoDaemon)
		}
		return 1, fmt.Errorf("connect to %s: %w", socketPath, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	p, err := encodeRequest(req)
	if err != nil {
		return 1, err
	}
	var mu sync.Mutex
	if err := writeFrame(c, frameRequest, p); err != nil {
		return 1, fmt.Errorf("send request: %w", err)
	}
	if stdin != nil {
		go func() {
			buf := make([]byte, 32*1024)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					mu.Lock()
					werr := writeFrame(c, frameStdin, buf[:n])
					mu.Unlock()
					if werr != nil {
						return
					}
				}
				if err != nil {
					mu.Lock()
					_ = writeFrame(c, frameStdinEOF, nil)
					mu.Unlock()
					return
				}
			}
		}()
	} else {
		mu.Lock()
		_ = writeFrame(c, frameStdinEOF, nil)
		mu.Unlock()
	}
	if resize != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case s, ok := <-resize:
					if !ok {
						return
					}
					mu.Lock()
					err := writeFrame(c, frameWindow, encodeWindow(s))
					mu.Unlock()
					if err != nil {
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	var buf []byte
	for {
		typ, p, err := readFrame(c, buf)
		if err != nil {
			if ctx.Err() != nil {
				return 130, ctx.Err()
			}
			return 1, fmt.Errorf("read from daemon: connection lost before the command finished: %w", err)
		}
		buf = p[:0]
		switch typ {
		case frameStdout:
			if _, err := stdout.Write(p); err != nil {
				return 1, err
			}
		case frameStderr:
			if _, err := stderr.Write(p); err != nil {
				return 1, err
			}
		case frameExit:
			if len(p) != 1 {
				return 1, ErrProtocol
			}
			return int(p[0]), nil
		default:
			// A frame of a newer daemon that this client does without.
			continue
		}
	}
}
