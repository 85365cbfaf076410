package quota

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The test binary re-executes itself as an app's host UID to write into
// the app's directory; these variables select and configure that mode.
const (
	helperEnv      = "BERTH_QUOTA_TEST_HELPER"
	helperFileEnv  = "BERTH_QUOTA_TEST_FILE"
	helperBytesEnv = "BERTH_QUOTA_TEST_BYTES"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "write" {
		writeHelper()
		return
	}
	os.Exit(m.Run())
}

// writeResult is what the write helper reports on stdout.
type writeResult struct {
	Written int64  `json:"written"`
	Errno   int    `json:"errno"`
	Op      string `json:"op"`
}

// writeHelper runs in the re-executed child: it creates a file in the
// directory open as fd 3 and writes zeros until it has written the asked
// number of bytes or a write fails, then reports as JSON.
func writeHelper() {
	name := os.Getenv(helperFileEnv)
	want, err := strconv.ParseInt(os.Getenv(helperBytesEnv), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad byte count:", err)
		os.Exit(2)
	}
	res := writeResult{}
	report := func(op string, err error) {
		res.Op = op
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res.Errno = int(errno)
		} else if err != nil {
			fmt.Fprintln(os.Stderr, op+":", err)
			os.Exit(2)
		}
		json.NewEncoder(os.Stdout).Encode(res)
		os.Exit(0)
	}
	fd, err := unix.Openat(3, name, unix.O_CREAT|unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0o644)
	if err != nil {
		report("open", err)
	}
	buf := make([]byte, 1<<20)
	for res.Written < want {
		chunk := buf[:min(int64(len(buf)), want-res.Written)]
		n, err := unix.Write(fd, chunk)
		if n > 0 {
			res.Written += int64(n)
		}
		if err != nil {
			report("write", err)
		}
		if n == 0 {
			report("write", unix.EIO)
		}
	}
	// Some filesystems only find out at writeback that the space is gone.
	if err := unix.Fsync(fd); err != nil {
		report("fsync", err)
	}
	report("", nil)
}

// writeAs writes n bytes to dir/name in a child process running as uid
// (without capabilities, so quotas apply) and returns how many bytes it
// wrote and the error that stopped it (0 if none).
func writeAs(t *testing.T, uid int, dir, name string, n int64) (int64, syscall.Errno) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// /proc/self/exe: the child runs as uid before exec and could not
	// reach the test binary through go test's private temp directory.
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), helperEnv+"=write", helperFileEnv+"="+name, helperBytesEnv+"="+strconv.FormatInt(n, 10))
	cmd.ExtraFiles = []*os.File{d}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("write helper as uid %d: %v: %s", uid, err, ee.Stderr)
		}
		t.Fatalf("write helper as uid %d: %v", uid, err)
	}
	var res writeResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("write helper output %q: %v", out, err)
	}
	t.Logf("uid %d wrote %d bytes to %s/%s, stopped by %q %v", uid, res.Written, dir, name, res.Op, syscall.Errno(res.Errno))
	return res.Written, syscall.Errno(res.Errno)
}

// skipOrFail skips the test, or fails it under CI=true, where every test
// must run.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run: %s (CI=true forbids skipping)", why)
	}
	t.Skip(why)
}

// requireRoot skips (or fails under CI) unless the test runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root for mounts, loop devices, quotas and network namespaces")
	}
}

// testUID returns a host UID unique to this test process and k, far above
// any real account.
func testUID(k int) int {
	return 3_000_000 + (os.Getpid()%100_000)*8 + k
}

// testLogger logs through t.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter adapts t.Log to io.Writer.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// loopsUnder lists the loop devices whose backing file is under dir.
func loopsUnder(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // detached meanwhile
		}
		if strings.HasPrefix(strings.TrimSpace(string(b)), dir+"/") {
			devs = append(devs, p)
		}
	}
	return devs
}

// mountsUnder lists the mount points at or under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var mps []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mps = append(mps, f[4])
		}
	}
	return mps
}

// quotaRoot returns a fresh directory for a Disk root, and checks at the
// end of the test that nothing is left mounted or attached under it.
func quotaRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if m := mountsUnder(t, root); len(m) > 0 {
			t.Errorf("left mounted: %v", m)
			for i := len(m) - 1; i >= 0; i-- {
				unix.Unmount(m[i], unix.MNT_DETACH)
			}
		}
		if l := loopsUnder(t, root); len(l) > 0 {
			t.Errorf("left attached: %v", l)
		}
	})
	return root
}
