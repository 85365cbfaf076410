package testenv

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DialSSH connects to the SSH server at addr as user berth with the
// private key in keyFile, checking the server's key against the knownHosts
// file, as the stock ssh would; the client is closed when the test ends.
func DialSSH(t testing.TB, addr, keyFile, knownHosts string) *ssh.Client {
	t.Helper()
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatalf("parse %s: %v", keyFile, err)
	}
	hostKey, err := knownhosts.New(knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: "berth", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKey, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TermSession is a command run over SSH on a pseudo-terminal, as `ssh -t`
// runs it, read line by line.
type TermSession struct {
	t     testing.TB
	sess  *ssh.Session
	stdin io.WriteCloser
	lines chan string
	done  chan error
	// stderr is complete once Wait returned.
	stderr bytes.Buffer
}

// StartTermSession runs cmd in a new session of c: on a pseudo-terminal of
// width×height (a pty-req) when either is above zero, otherwise without
// one. The session is closed when the test ends.
func StartTermSession(t testing.TB, c *ssh.Client, width, height int, cmd string) *TermSession {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("new ssh session: %v", err)
	}
	t.Cleanup(func() { sess.Close() })
	if width > 0 || height > 0 {
		if err := sess.RequestPty("xterm", height, width, ssh.TerminalModes{}); err != nil {
			t.Fatalf("request a %dx%d pty: %v", width, height, err)
		}
	}
	ts := &TermSession{t: t, sess: sess, lines: make(chan string, 100), done: make(chan error, 1)}
	if ts.stdin, err = sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sess.Stderr = &ts.stderr
	if err := sess.Start(cmd); err != nil {
		t.Fatalf("start %q: %v", cmd, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ts.lines <- sc.Text()
		}
		close(ts.lines)
		ts.done <- sess.Wait()
	}()
	return ts
}

// NextLine is the command's next line of output, without its line end; a
// line not there within a minute fails the test.
func (ts *TermSession) NextLine() string {
	ts.t.Helper()
	select {
	case l, ok := <-ts.lines:
		if !ok {
			ts.t.Fatal("the command ended before the line the test waits for")
		}
		return l
	case <-time.After(time.Minute):
		ts.t.Fatal("no line from the command within a minute")
	}
	return ""
}

// Resize sends a window-change request, as ssh does when its terminal's
// window changes.
func (ts *TermSession) Resize(width, height int) {
	ts.t.Helper()
	if err := ts.sess.WindowChange(height, width); err != nil {
		ts.t.Fatalf("window-change to %dx%d: %v", width, height, err)
	}
}

// Input writes s to the command's stdin.
func (ts *TermSession) Input(s string) {
	ts.t.Helper()
	if _, err := io.WriteString(ts.stdin, s); err != nil {
		ts.t.Fatalf("write to the command: %v", err)
	}
}

// CloseInput ends the command's stdin.
func (ts *TermSession) CloseInput() { ts.stdin.Close() }

// Wait waits (a minute at most) for the command to end, skipping the rest
// of its output, and returns its exit status and what it wrote to stderr.
func (ts *TermSession) Wait() (int, string) {
	ts.t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case _, ok := <-ts.lines:
			if !ok {
				ts.lines = nil
			}
		case err := <-ts.done:
			var ee *ssh.ExitError
			if errors.As(err, &ee) {
				return ee.ExitStatus(), ts.stderr.String()
			}
			if err != nil {
				ts.t.Fatalf("ssh session: %v", err)
			}
			return 0, ts.stderr.String()
		case <-timeout:
			ts.t.Fatal("the command did not end within a minute")
		}
	}
}

// AuthorizedKey makes a new ed25519 public key and returns it as an
// authorized_keys line (with comment, if any) and its SHA256 fingerprint.
func AuthorizedKey(t testing.TB, comment string) (line, fingerprint string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
	if comment != "" {
		line += " " + comment
	}
	return line, ssh.FingerprintSHA256(sp)
}
