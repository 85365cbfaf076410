package engine

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestExec(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	spec := testSpec("sh", "-c", "echo app > /tmp/app-was-here; sleep 60")
	spec.Hostname = "execbox"
	id := run(t, e, spec)
	waitFile := func() {
		for i := 0; i < 100; i++ {
			st, err := e.Exec(context.Background(), id, ExecOptions{Process: Process{Args: []string{"test", "-f", "/tmp/app-was-here"}}})
			if err == nil && st.Code == 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("app file never appeared")
	}
	waitFile()
	tests := []struct {
		name     string
		opts     ExecOptions
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "sees the app's namespaces", opts: ExecOptions{Process: Process{Args: []string{"sh", "-c", "hostname; cat /tmp/app-was-here; cat /proc/1/cmdline | cut -c1-10"}}}, wantOut: "execbox\napp\nberth-init"},
		{name: "under the app's syscall filter", opts: ExecOptions{Process: Process{Args: []string{"sh", "-c", "grep -E '^Seccomp:' /proc/self/status; unshare -U true 2>/dev/null || echo userns=denied"}}}, wantOut: "Seccomp:\t2\nuserns=denied"},
		{name: "exit code and stderr", opts: ExecOptions{Process: Process{Args: []string{"sh", "-c", "echo e >&2; exit 4"}}}, wantCode: 4, wantErr: "e\n"},
		{name: "stdin", opts: ExecOptions{Process: Process{Args: []string{"tr", "a-z", "A-Z"}}, Stdin: strings.NewReader("shout\n")}, wantOut: "SHOUT\n"},
		{name: "user and env", opts: ExecOptions{Process: Process{Args: []string{"sh", "-c", "echo $(id -u):$(id -g) $FOO; pwd"}, UID: 1000, GID: 1000, Env: []string{"FOO=bar"}, Cwd: "/tmp"}}, wantOut: "1000:1000 bar\n/tmp\n"},
		{name: "tty", opts: ExecOptions{TTY: true, Process: Process{Args: []string{"sh", "-c", "tty; [ -t 0 ] && echo is-a-tty"}}}, wantOut: "/dev/pts/0"},
		{name: "tty size", opts: ExecOptions{TTY: true, Size: TermSize{Width: 100, Height: 30}, Process: Process{Args: []string{"sh", "-c", "stty size; [ -t 0 ] && echo is-a-tty"}}}, wantOut: "30 100\n"},
		{name: "tty of a user", opts: ExecOptions{TTY: true, Process: Process{Args: []string{"sh", "-c", "echo reopened > $(tty) && [ -t 0 ] && echo is-a-tty"}, UID: 1000, GID: 1000}}, wantOut: "reopened"},
		// Past the 36 KiB a stream socket hands over with the fds.
		{name: "large environment", opts: ExecOptions{Process: Process{Args: []string{"sh", "-c", "echo $(id -u):$(id -g) ${#BIG} $LAST; pwd"}, UID: 1000, GID: 1000, Cwd: "/tmp", Env: []string{"BIG=" + strings.Repeat("x", 100<<10), "LAST=end"}}}, wantOut: "1000:1000 102400 end\n/tmp\n"},
		{name: "tty resize", opts: ExecOptions{TTY: true, Size: TermSize{Width: 80, Height: 24}, Resize: resized(TermSize{Width: 120, Height: 40}), Process: Process{Args: []string{"sh", "-c", `while [ "$(stty size)" = "24 80" ]; do sleep 0.05; done; stty size; [ -t 0 ] && echo is-a-tty`}}}, wantOut: "40 120\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			tc.opts.Stdout, tc.opts.Stderr = &out, &errb
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := e.Exec(ctx, id, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if st.Code != tc.wantCode {
				t.Errorf("code %d, want %d (stderr %q)", st.Code, tc.wantCode, errb.String())
			}
			got := strings.ReplaceAll(out.String(), "\r\n", "\n")
			if !strings.Contains(got, tc.wantOut) {
				t.Errorf("stdout %q, want %q", got, tc.wantOut)
			}
			if tc.opts.TTY && !strings.Contains(got, "is-a-tty") {
				t.Errorf("tty stdout %q lacks is-a-tty", got)
			}
			if tc.wantErr != "" && errb.String() != tc.wantErr {
				t.Errorf("stderr %q, want %q", errb.String(), tc.wantErr)
			}
		})
	}
	if _, err := e.Exec(context.Background(), id, ExecOptions{Process: Process{Args: []string{"no-such-program"}}}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("exec of a missing program: %v", err)
	}
	if _, err := e.Exec(context.Background(), id, ExecOptions{Process: Process{Args: []string{"true"}, Cwd: "/no/such/dir"}}); err == nil || !strings.Contains(err.Error(), "/no/such/dir") {
		t.Errorf("exec in a missing directory: %v, want an error naming it", err)
	}
	if _, err := e.Exec(context.Background(), id, ExecOptions{Process: Process{Args: []string{"true"}, Env: []string{"HUGE=" + strings.Repeat("x", 200<<10)}}}); err == nil || !strings.Contains(err.Error(), "HUGE") {
		t.Errorf("exec with a 200 KiB variable: %v, want an error naming it", err)
	}
	rawExecChecks(t, e, id)
	// A caller that gives up (a health check's timeout) takes its process
	// along, children included.
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	go func() {
		for {
			if st, err := e.Exec(context.Background(), id, ExecOptions{Process: Process{Args: []string{"test", "-s", "/tmp/abandoned"}}}); err == nil && st.Code == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(started)
	}()
	go func() { <-started; cancel() }()
	if _, err := e.Exec(ctx, id, ExecOptions{Process: Process{Args: []string{"sh", "-c", "sleep 300 & echo $! > /tmp/abandoned; wait"}}}); err == nil {
		t.Error("an Exec whose context ended returned no error")
	}
	gone := false
	for i := 0; i < 100 && !gone; i++ {
		st, err := e.Exec(context.Background(), id, ExecOptions{Process: Process{Args: []string{"sh", "-c", "kill -0 $(cat /tmp/abandoned)"}}})
		gone = err == nil && st.Code != 0
		time.Sleep(20 * time.Millisecond)
	}
	if !gone {
		t.Error("the abandoned Exec's child still runs")
	}
	if _, err := e.Stop(context.Background(), id, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Exec(context.Background(), id, ExecOptions{Process: Process{Args: []string{"true"}}}); err == nil {
		t.Error("exec in a stopped container succeeded")
	}
}

// resized is a Resize channel holding the given window changes.
func resized(sizes ...TermSize) <-chan TermSize {
	c := make(chan TermSize, len(sizes))
	for _, s := range sizes {
		c <- s
	}
	return c
}

// rawExecChecks talks to a running container's exec socket as only root
// can: a caller that goes away at once must not take the app with it
// (the init's SIGPIPE was forwarded to it), and stdio that is not stdio
// (a host directory) is refused.
func rawExecChecks(t *testing.T, e *Engine, id string) {
	t.Helper()
	sock := filepath.Join(e.dir(id), "ctl.sock")
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("exec socket: %v, mode %v, want 0600", err, st.Mode().Perm())
	}
	send := func(fds []int) *net.UnixConn {
		t.Helper()
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		req, err := encodeExec(&Process{Args: []string{"sleep", "1"}}, false, TermSize{})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := conn.WriteMsgUnix(req, unix.UnixRights(fds...), nil); err != nil {
			t.Fatal(err)
		}
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	dir, err := os.Open("/etc")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	conn := send([]int{int(dir.Fd()), int(w.Fd()), int(w.Fd())})
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.Contains(string(reply), "not a pipe") {
		t.Errorf("exec with a directory as stdin: reply %q, want a refusal", reply)
	}
	for i := 0; i < 5; i++ {
		send([]int{int(r.Fd()), int(w.Fd()), int(w.Fd())}).Close()
	}
	time.Sleep(1500 * time.Millisecond)
	if in, err := e.Inspect(id); err != nil || in.State != StateRunning {
		t.Fatalf("after exec callers went away: %+v, %v; log: %s", in, err, logText(t, e, id))
	}
}
