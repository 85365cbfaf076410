package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/tty"
)

func startServer(t *testing.T, h Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sock", "berth.sock")
	s, err := Listen(path, h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return path
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{name: "echo args", args: []string{"echo", "a", "b"}, wantOut: "a b\n"},
		{name: "stdin copied", args: []string{"cat"}, stdin: strings.Repeat("x", 3<<20), wantOut: strings.Repeat("x", 3<<20)},
		{name: "stderr and exit status", args: []string{"fail"}, wantErr: "boom\n", wantCode: 3},
	}
	path := startServer(t, func(ctx context.Context, s *Session) int {
		if s.UID != 0 {
			t.Errorf("peer uid = %d, want 0", s.UID)
		}
		switch s.Request.Args[0] {
		case "echo":
			io.WriteString(s.Stdout, strings.Join(s.Request.Args[1:], " ")+"\n")
		case "cat":
			io.Copy(s.Stdout, s.Stdin)
		case "fail":
			io.WriteString(s.Stderr, "boom\n")
			return 3
		}
		return 0
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			code, err := Run(ctx, path, Request{Args: tt.args}, strings.NewReader(tt.stdin), &out, &errb, nil)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if code != tt.wantCode {
				t.Errorf("exit = %d, want %d", code, tt.wantCode)
			}
			if out.String() != tt.wantOut {
				t.Errorf("stdout = %d bytes %.40q, want %d bytes", out.Len(), out.String(), len(tt.wantOut))
			}
			if errb.String() != tt.wantErr {
				t.Errorf("stderr = %q, want %q", errb.String(), tt.wantErr)
			}
		})
	}
}

func TestNoDaemon(t *testing.T) {
	_, err := Run(context.Background(), filepath.Join(t.TempDir(), "none.sock"), Request{Args: []string{"x"}}, nil, io.Discard, io.Discard, nil)
	if !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("err = %v, want ErrNoDaemon", err)
	}
}

func TestSecondListenerRefused(t *testing.T) {
	path := startServer(t, func(context.Context, *Session) int { return 0 })
	if _, err := Listen(path, nil, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second listen: err = %v, want ErrAlreadyRunning", err)
	}
}

func TestClientGoneCancelsSession(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan struct{})
	path := startServer(t, func(ctx context.Context, s *Session) int {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return 0
	})
	ctx, cancel := context.WithCancel(context.Background())
	go Run(ctx, path, Request{Args: []string{"wait"}}, nil, io.Discard, io.Discard, nil)
	<-started
	cancel()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("session not cancelled after the client went away")
	}
}

// TestTerminal: a client on a terminal gives the session its size and its
// window changes; bad sizes leave the default or are skipped, and a client
// without a terminal gives none.
func TestTerminal(t *testing.T) {
	// The session waits for as many window changes as it has arguments;
	// each case sends at most one valid one, since a change the session
	// has not taken yet is replaced by the next.
	path := startServer(t, func(ctx context.Context, s *Session) int {
		if s.Terminal == nil {
			io.WriteString(s.Stdout, "no terminal\n")
			return 0
		}
		fmt.Fprintf(s.Stdout, "start %dx%d\n", s.Terminal.Size.Width, s.Terminal.Size.Height)
		for range s.Request.Args {
			select {
			case size := <-s.Terminal.Resize:
				fmt.Fprintf(s.Stdout, "resize %dx%d\n", size.Width, size.Height)
			case <-ctx.Done():
				return 1
			}
		}
		return 0
	})
	tests := []struct {
		name    string
		req     Request
		resizes []tty.Size
		want    string
	}{
		{name: "size and a change", req: Request{Args: []string{"1"}, TTY: true, Width: 100, Height: 40},
			resizes: []tty.Size{{Width: 120, Height: 50}}, want: "start 100x40\nresize 120x50\n"},
		{name: "zero size leaves the default", req: Request{Args: []string{}, TTY: true}, want: "start 0x0\n"},
		{name: "absurd size leaves the default", req: Request{Args: []string{}, TTY: true, Width: 100000, Height: 40}, want: "start 0x0\n"},
		{name: "bad changes are skipped", req: Request{Args: []string{"1"}, TTY: true, Width: 100, Height: 40},
			resizes: []tty.Size{{Width: 0, Height: 50}, {Width: 20000, Height: 50}, {Width: 90, Height: 30}}, want: "start 100x40\nresize 90x30\n"},
		{name: "no terminal", req: Request{Args: []string{"1"}}, resizes: []tty.Size{{Width: 90, Height: 30}}, want: "no terminal\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resize := make(chan tty.Size)
			go func() {
				for _, s := range tt.resizes {
					select {
					case resize <- s:
					case <-ctx.Done():
						return
					}
				}
			}()
			var out bytes.Buffer
			code, err := Run(ctx, path, tt.req, nil, &out, io.Discard, resize)
			if err != nil || code != 0 {
				t.Fatalf("run: exit %d, %v", code, err)
			}
			if out.String() != tt.want {
				t.Errorf("session saw %q, want %q", out.String(), tt.want)
			}
		})
	}
}

// TestBadWindowFrame: a window frame that is not two uint16 ends the
// session as a protocol error.
func TestBadWindowFrame(t *testing.T) {
	cancelled := make(chan struct{})
	path := startServer(t, func(ctx context.Context, s *Session) int {
		<-ctx.Done()
		close(cancelled)
		return 1
	})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, _ := encodeRequest(Request{Args: []string{"x"}, TTY: true})
	if err := writeFrame(c, frameRequest, req); err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(c, frameWindow, []byte{0, 80, 0}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("session not cancelled by a malformed window frame")
	}
}

// TestUnknownFrameSkipped: a frame type this daemon does not know (from a
// newer client) is passed over; the session goes on and reads stdin.
func TestUnknownFrameSkipped(t *testing.T) {
	got := make(chan string, 1)
	path := startServer(t, func(ctx context.Context, s *Session) int {
		b, _ := io.ReadAll(s.Stdin)
		got <- string(b)
		return 0
	})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, _ := encodeRequest(Request{Args: []string{"x"}})
	for _, f := range []struct {
		typ byte
		p   string
	}{{frameRequest, string(req)}, {'?', "from the future"}, {frameStdin, "still here"}, {frameStdinEOF, ""}} {
		if err := writeFrame(c, f.typ, []byte(f.p)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case s := <-got:
		if s != "still here" {
			t.Fatalf("stdin %q, want %q", s, "still here")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("session did not go on past an unknown frame")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{'R', 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{'x', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{'w', 0, 0, 0, 4, 0, 100, 0, 40})
	f.Add([]byte{'w', 0, 0, 0, 4, 0xff, 0xff, 0, 40})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			typ, p, err := readFrame(r, nil)
			if err != nil {
				return
			}
			switch typ {
			case frameRequest:
				_, _ = decodeRequest(p)
			case frameWindow:
				if s, err := decodeWindow(p); err == nil && s != (tty.Size{}) && !s.Valid() {
					t.Fatalf("decodeWindow(%x) = %+v, neither valid nor unknown", p, s)
				}
			}
		}
	})
}
