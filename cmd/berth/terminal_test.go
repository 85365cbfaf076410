package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthhq/berth/internal/testenv"
)

// sizeScript prints the terminal's size, waits for it to change from
// 100x40 and prints it again.
const sizeScript = `stty size; while [ "$(stty size)" = "40 100" ]; do sleep 0.1; done; stty size`

// TestRunFollowsTerminalSize: berth run on a terminal, over ssh and from
// the local CLI, starts the command on a terminal of the client's size and
// passes the client's window changes on, as heroku run does.
func TestRunFollowsTerminalSize(t *testing.T) {
	d, p := deployGreeter(t)

	t.Run("ssh", func(t *testing.T) {
		c := testenv.DialSSH(t, net.JoinHostPort("127.0.0.1", d.sshPort), p.key, p.kh)
		s := testenv.StartTermSession(t, c, 100, 40, "run myapp sh -c '"+sizeScript+"'")
		if got := s.NextLine(); got != "40 100" {
			t.Fatalf("run on a 100x40 pty: stty size = %q, want 40 100", got)
		}
		s.Resize(120, 50)
		if got := s.NextLine(); got != "50 120" {
			t.Fatalf("after a window change to 120x50: stty size = %q, want 50 120", got)
		}
		if code, errs := s.Wait(); code != 0 {
			t.Fatalf("run: exit %d: %s", code, errs)
		}
	})

	t.Run("local cli", func(t *testing.T) {
		master, slave := openTerminal(t)
		setSize(t, master, 100, 40)
		cmd := exec.Command(d.bin, "run", "myapp", "sh", "-c", sizeScript)
		cmd.Env = d.env
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		// berth gets the terminal as its controlling one, so the kernel
		// sends it SIGWINCH when the size changes.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		slave.Close()
		var waitErr error
		exited := make(chan struct{})
		go func() { waitErr = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
		})
		lines := make(chan string, 10)
		go func() {
			// Two line disciplines (the container's, this terminal's) each
			// turn \n into \r\n.
			sc := bufio.NewScanner(master)
			for sc.Scan() {
				lines <- strings.TrimRight(sc.Text(), "\r")
			}
			close(lines)
		}()
		next := func() string {
			t.Helper()
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("berth run ended before the line the test waits for")
				}
				return l
			case <-time.After(time.Minute):
				t.Fatal("no line from berth run within a minute")
				return ""
			}
		}
		if got := next(); got != "40 100" {
			t.Fatalf("berth run on a 100x40 terminal: stty size = %q, want 40 100", got)
		}
		setSize(t, master, 120, 50)
		if got := next(); got != "50 120" {
			t.Fatalf("after the terminal changed to 120x50: stty size = %q, want 50 120", got)
		}
		select {
		case <-exited:
			if waitErr != nil {
				t.Fatalf("berth run: %v", waitErr)
			}
		case <-time.After(time.Minute):
			t.Fatal("berth run did not exit")
		}
	})
}

// openTerminal opens a new pseudo-terminal pair, closed when the test ends.
func openTerminal(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY)
	if errno != 0 {
		t.Fatalf("open pty peer: %v", errno)
	}
	s := os.NewFile(fd, "pty-slave")
	t.Cleanup(func() { s.Close() })
	return m, s
}

// setSize sets the size of the terminal f is a side of, as a terminal
// emulator does when its window changes.
func setSize(t *testing.T, f *os.File, width, height uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: width, Row: height}); err != nil {
		t.Fatalf("set terminal size: %v", err)
	}
}
