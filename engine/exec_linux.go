package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ExecOptions describes a process to run in a running container.
type ExecOptions struct {
	// Process is the program; UID and GID are container IDs.
	Process Process
	// TTY runs the process on a new pseudo-terminal of the container; its
	// output then arrives on Stdout only.
	TTY bool
	// Stdin feeds the process; nil means /dev/null (without TTY) or nothing.
	Stdin io.Reader
	// Stdout and Stderr receive its output; nil discards it.
	Stdout, Stderr io.Writer
	// Size is the terminal's size when the process starts (TTY only); the
	// zero value leaves the kernel's default of 0x0.
	Size TermSize
	// Resize delivers window changes while the process runs (TTY only),
	// for example an SSH session's window-change requests; each one
	// resizes the terminal, which sends the process SIGWINCH. Exec stops
	// reading it when it returns; nil means a fixed size.
	Resize <-chan TermSize
}

// TermSize is a terminal's size in character cells.
type TermSize struct {
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// setTermSize sets the size of the terminal f is a side of.
func setTermSize(f *os.File, s TermSize) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: s.Height, Col: s.Width})
}

type execReply struct {
	Pid    int         `json:"pid,omitempty"`
	Error  string      `json:"error,omitempty"`
	Status *ExitStatus `json:"status,omitempty"`
}

// Exec runs another process in a running container, in all its namespaces
// and under the same restrictions as the app, and returns its exit status
// once it exits and its output is copied.
func (e *Engine) Exec(ctx context.Context, id string, opts ExecOptions) (ExitStatus, error) {
	c, err := e.loadConfig(id)
	if err != nil {
		return ExitStatus{}, err
	}
	if _, err := e.runningState(id); err != nil {
		return ExitStatus{}, err
	}
	p := opts.Process
	if len(p.Args) == 0 || p.Args[0] == "" {
		return ExitStatus{}, invalid("Process.Args", "a program to run is required")
	}
	if err := p.checkSize(); err != nil {
		return ExitStatus{}, err
	}
	if size := c.Spec.IDMap.size(); c.UserNS && (p.UID >= size || p.GID >= size) {
		return ExitStatus{}, invalid("Process.UID", "%d:%d is outside the mapped range", p.UID, p.GID)
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: filepath.Join(e.dir(id), "ctl.sock"), Net: "unix"})
	if err != nil {
		return ExitStatus{}, fmt.Errorf("connect to container init: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req, err := encodeExec(&p, opts.TTY, opts.Size)
	if err != nil {
		return ExitStatus{}, invalid("Process", "%v", err)
	}

	var copiers sync.WaitGroup
	var local []*os.File // our ends, closed when done
	defer func() {
		for _, f := range local {
			f.Close()
		}
	}()
	if !opts.TTY {
		var remote []*os.File
		mk := func(write bool) error {
			r, w, err := os.Pipe()
			if err != nil {
				return fmt.Errorf("create exec pipe: %w", err)
			}
			if write { // the process writes: we keep the read end
				remote, local = append(remote, w), append(local, r)
			} else {
				remote, local = append(remote, r), append(local, w)
			}
			return nil
		}
		for _, w := range []bool{false, true, true} {
			if err := mk(w); err != nil {
				return ExitStatus{}, err
			}
		}
		fds := []int{int(remote[0].Fd()), int(remote[1].Fd()), int(remote[2].Fd())}
		_, _, err = conn.WriteMsgUnix(req, unix.UnixRights(fds...), nil)
		for _, f := range remote {
			f.Close()
		}
		if err == nil {
			err = conn.CloseWrite()
		}
		if err != nil {
			return ExitStatus{}, fmt.Errorf("send exec request: %w", err)
		}
		stdin, stdout, stderr := local[0], local[1], local[2]
		if opts.Stdin != nil {
			go func() { _, _ = io.Copy(stdin, opts.Stdin); stdin.Close() }()
		} else {
			stdin.Close()
		}
		copiers.Add(2)
		outW, errW := opts.Stdout, opts.Stderr
		if outW != nil && outW == errW {
			// One writer for both streams (as os/exec allows): serialise
			// the two copiers' writes so neither loses output.
			w := &lockedWriter{w: outW}
			outW, errW = w, w
		}
		go func() { defer copiers.Done(); copyOut(outW, stdout) }()
		go func() { defer copiers.Done(); copyOut(errW, stderr) }()
	} else {
		_, _, err := conn.WriteMsgUnix(req, nil, nil)
		if err == nil {
			err = conn.CloseWrite()
		}
		if err != nil {
			return ExitStatus{}, fmt.Errorf("send exec request: %w", err)
		}
	}
	dec := json.NewDecoder(conn)
	var rep execReply
	if opts.TTY {
		// The reply to a TTY request carries the terminal's master side.
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return ExitStatus{}, fmt.Errorf("read exec reply: %w", err)
		}
		if err := json.Unmarshal(buf[:n], &rep); err != nil {
			return ExitStatus{}, fmt.Errorf("decode exec reply: %w", err)
		}
		if rep.Error != "" {
			return ExitStatus{}, fmt.Errorf("exec in container %s: %s", id, rep.Error)
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		var master *os.File
		for _, m := range msgs {
			if fds, err := unix.ParseUnixRights(&m); err == nil && len(fds) == 1 {
				master = os.NewFile(uintptr(fds[0]), "pty-master")
			}
		}
		if master == nil {
			return ExitStatus{}, fmt.Errorf("exec in container %s: no terminal received", id)
		}
		local = append(local, master)
		if opts.Resize != nil {
			quit, resizerDone := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(resizerDone)
				for {
					select {
					case s, ok := <-opts.Resize:
						if !ok {
							return
						}
						if err := setTermSize(master, s); err != nil {
							e.log.Debug("resize exec terminal", "id", id, "err", err)
						}
					case <-quit:
						return
					}
				}
			}()
			// Runs before the deferred close of master, whose descriptor
			// number could otherwise be reused under the resizer.
			defer func() { close(quit); <-resizerDone }()
		}
		if opts.Stdin != nil {
			go func() { _, _ = io.Copy(master, opts.Stdin) }()
		}
		copiers.Add(1)
		go func() { defer copiers.Done(); copyOut(opts.Stdout, master) }()
	} else if err := dec.Decode(&rep); err != nil {
		return ExitStatus{}, fmt.Errorf("read exec reply: %w", err)
	} else if rep.Error != "" {
		return ExitStatus{}, fmt.Errorf("exec in container %s: %s", id, rep.Error)
	}
	var fin execReply
	if err := dec.Decode(&fin); err != nil || fin.Status == nil {
		if ctx.Err() != nil {
			return ExitStatus{}, ctx.Err()
		}
		return ExitStatus{}, fmt.Errorf("exec in container %s: container exited before the process", id)
	}
	if opts.TTY {
		// The master reads EIO once the process and its children closed the slave.
		done := make(chan struct{})
		go func() { copiers.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	} else {
		copiers.Wait()
	}
	return *fin.Status, nil
}

func copyOut(w io.Writer, r io.Reader) {
	if w == nil {
		w = io.Discard
	}
	_, _ = io.Copy(w, r)
}

// lockedWriter serialises writes to a writer shared by two copiers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
