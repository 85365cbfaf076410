package gitreceive

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/tty"
	"github.com/berthhq/berth/platform"
)

// termDeployer runs no container: its one-off reports the terminal it was
// given, its size and then each window change, until stdin ends.
type termDeployer struct{ Deployer }

func (termDeployer) RunOneOff(ctx context.Context, app string, args []string, stdin io.Reader, stdout, stderr io.Writer, term *tty.Terminal) (int, error) {
	if term == nil {
		fmt.Fprintln(stdout, "no terminal")
		return 0, nil
	}
	fmt.Fprintf(stdout, "start %dx%d\n", term.Size.Width, term.Size.Height)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, stdin); close(eof) }()
	for {
		select {
		case s, ok := <-term.Resize:
			if !ok {
				return 0, nil
			}
			fmt.Fprintf(stdout, "resize %dx%d\n", s.Width, s.Height)
		case <-eof:
			return 0, nil
		case <-ctx.Done():
			return 1, ctx.Err()
		}
	}
}

// TestSSHTerminalSize: `run` over an SSH session with a pty gets the
// pty-req's size and its window changes; sizes a client should not send
// leave the default or are skipped.
func TestSSHTerminalSize(t *testing.T) {
	e := newSSHEnv(t, termDeployer{})
	e.user("alice", platform.RoleMember)
	if _, errs, code := e.ssh("alice", "", "apps:create", "termapp"); code != 0 {
		t.Fatalf("apps:create: %s", errs)
	}
	c := testenv.DialSSH(t, net.JoinHostPort("127.0.0.1", e.port), e.keys["alice"], e.knownHosts)

	type size struct{ w, h int }
	tests := []struct {
		name      string
		pty       size // zero: no pty-req
		wantStart string
		// changes are sent in turn; each valid one must come through
		// before the next is sent, an invalid one never.
		changes []size
	}{
		{name: "size and changes", pty: size{100, 40}, wantStart: "start 100x40", changes: []size{{120, 50}, {80, 24}}},
		{name: "no pty", wantStart: "no terminal"},
		{name: "zero width leaves the default", pty: size{0, 40}, wantStart: "start 0x0", changes: []size{{90, 30}}},
		{name: "absurd size leaves the default", pty: size{100000, 40}, wantStart: "start 0x0", changes: []size{{90, 30}}},
		{name: "absurd changes are skipped", pty: size{100, 40}, wantStart: "start 100x40",
			changes: []size{{20000, 50}, {120, 1 << 20}, {1<<32 - 1, 1<<32 - 1}, {120, 50}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testenv.StartTermSession(t, c, tt.pty.w, tt.pty.h, "run termapp sh")
			if got := s.NextLine(); got != tt.wantStart {
				t.Fatalf("the one-off started with %q, want %q", got, tt.wantStart)
			}
			for _, ch := range tt.changes {
				s.Resize(ch.w, ch.h)
				if !tty.SizeOf(ch.w, ch.h).Valid() {
					continue
				}
				if got, want := s.NextLine(), fmt.Sprintf("resize %dx%d", ch.w, ch.h); got != want {
					t.Fatalf("after a window change to %dx%d the one-off saw %q, want %q", ch.w, ch.h, got, want)
				}
			}
			s.CloseInput()
			if code, errs := s.Wait(); code != 0 {
				t.Fatalf("run: exit %d: %s", code, errs)
			}
		})
	}

	// A command that takes no window changes still gets its input after
	// many: the session drains them rather than holding up its requests.
	t.Run("window changes to a command that ignores them", func(t *testing.T) {
		s := testenv.StartTermSession(t, c, 100, 40, "apps:destroy termapp")
		for i := range 50 {
			s.Resize(80+i, 24)
		}
		s.Input("wrong\n")
		code, errs := s.Wait()
		if code != 1 || !strings.Contains(errs, "did not match") {
			t.Fatalf("apps:destroy after window changes: exit %d, stderr %q", code, errs)
		}
	})
}
