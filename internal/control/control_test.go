package control

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
			code, err := Run(ctx, path, Request{Args: tt.args}, strings.NewReader(tt.stdin), &out, &errb)
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
	_, err := Run(context.Background(), filepath.Join(t.TempDir(), "none.sock"), Request{Args: []string{"x"}}, nil, io.Discard, io.Discard)
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
	go Run(ctx, path, Request{Args: []string{"wait"}}, nil, io.Discard, io.Discard)
	<-started
	cancel()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("session not cancelled after the client went away")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{'R', 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{'x', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			typ, p, err := readFrame(r, nil)
			if err != nil {
				return
			}
			if typ == frameRequest {
				_, _ = decodeRequest(p)
			}
		}
	})
}
