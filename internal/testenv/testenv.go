// Package testenv holds helpers berth's tests share: the rule that a test
// needing root or a host feature may skip only outside CI, unique names for
// host-wide resources, and building the berth binary once per test process.
package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// InCI reports whether the tests run under CI=true, where skipping a
// privileged test is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// Skip skips the test with reason, or fails it under CI.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("cannot run under CI=true: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (outside CI) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root: it starts real containers, postgres and listeners")
	}
}

// RequireCommands skips (outside CI) unless every named program is on PATH.
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Skip(t, n+" is not installed (make test installs it)")
		}
	}
}

// Suffix returns a short random hex string for names of host-wide resources
// (bridges, veths, cgroups) that must not collide with a parallel test process.
func Suffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// BerthBinary builds ./cmd/berth once per test process and returns its path.
// Cleanup is the caller's TestMain's job via RemoveBuilt.
func BerthBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "berth-bin-")
		if build.err != nil {
			return
		}
		// Container init runs as an unprivileged host UID and must be able
		// to exec the binary.
		_ = os.Chmod(build.dir, 0o755)
		build.path = filepath.Join(build.dir, "berth")
		cmd := exec.Command("go", "build", "-o", build.path, "github.com/berthhq/berth/cmd/berth")
		build.out, build.err = cmd.CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("build berth: %v\n%s", build.err, build.out)
	}
	return build.path
}

// RemoveBuilt deletes the binary BerthBinary built, if any.
func RemoveBuilt() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// Logger writes to the test log when -v is on and discards otherwise.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(&tWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type tWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// RequireBusybox skips (outside CI) unless Debian's busybox-static is at
// /bin/busybox, where the tests' container images get their userland.
func RequireBusybox(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		Skip(t, "needs Debian's busybox-static at /bin/busybox (scripts/deps.sh test installs it)")
	}
}

// Run runs cmd with stdin and returns its stdout, stderr and exit code; a
// command that cannot be started at all fails the test.
func Run(t testing.TB, cmd *exec.Cmd, stdin string) (stdout, stderr string, code int) {
	t.Helper()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	return out.String(), errb.String(), code
}

// SearchableTempDir is a t.TempDir, symlinks resolved, whose parents a
// container's init, running as an unprivileged host UID, can traverse.
func SearchableTempDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tmp, _ := filepath.EvalSymlinks(os.TempDir())
	for d := dir; d != tmp && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
