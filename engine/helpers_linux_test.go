package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// testRootfs is the busybox layer shared by the package's tests, built in TestMain.
var testRootfs string

// testIDs records every container this test process created, for the
// suite-end leak check.
var testIDs sync.Map

// testBridges records the bridges of this test process's engines.
var testBridges sync.Map

func TestMain(m *testing.M) {
	MaybeInit()
	if role := os.Getenv("BERTH_ENGINE_TEST_ROLE"); role != "" {
		os.Exit(runTestRole(role))
	}
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := buildBusyboxRootfs()
			if err != nil {
				fmt.Fprintln(os.Stderr, "build busybox rootfs:", err)
				if os.Getenv("CI") == "true" {
					return 1
				}
			}
			testRootfs = dir
			defer os.RemoveAll(filepath.Dir(dir))
		}
		code := m.Run()
		if code == 0 && os.Geteuid() == 0 {
			if err := checkNoLeaks(); err != nil {
				fmt.Fprintln(os.Stderr, "leak check:", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}

// buildBusyboxRootfs makes a tiny rootfs from Debian's busybox-static.
func buildBusyboxRootfs() (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static is not installed (scripts/deps.sh installs it): %w", err)
	}
	top, err := os.MkdirTemp("", "berth-engine-test-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(top, 0o755); err != nil {
		return "", err
	}
	root := filepath.Join(top, "rootfs")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return "", err
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("list busybox applets: %w", err)
	}
	for _, app := range strings.Fields(string(out)) {
		if app == "busybox" || strings.ContainsAny(app, "/[") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil {
			return "", err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			return "", err
		}
	}
	return root, nil
}

// requireRoot skips without root, except under CI where it fails.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 || testRootfs == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("engine tests need root and busybox-static; CI=true does not allow skipping")
		}
		t.Skip("engine tests need root (real namespaces, cgroups, mounts) and busybox-static")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freeSubnet picks a random 10.x.y.0/24 that no host route uses.
func freeSubnet(t *testing.T, bridge string) string {
	t.Helper()
	for i := 0; i < 50; i++ {
		a, _ := rand.Int(rand.Reader, big.NewInt(200))
		b, _ := rand.Int(rand.Reader, big.NewInt(256))
		s := fmt.Sprintf("10.%d.%d.0/24", 20+a.Int64(), b.Int64())
		if checkSubnet(bridge, s) == nil {
			return s
		}
	}
	t.Fatal("no free test subnet")
	return ""
}

// searchableTempDir is a t.TempDir whose parents container init can traverse.
func searchableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newTestEngine returns an Engine on a private root and bridge; cleanup
// deletes every container and the bridge.
func newTestEngine(t *testing.T) *Engine {
	t.Helper()
	requireRoot(t)
	root := filepath.Join(searchableTempDir(t), "containers")
	bridge := "bt" + randHex(4)
	testBridges.Store(bridge, true)
	e, err := New(Config{Root: root, BridgeName: bridge, Subnet: freeSubnet(t, bridge), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupEngine(t, e) })
	return e
}

func cleanupEngine(t *testing.T, e *Engine) {
	t.Helper()
	infos, err := e.List()
	if err != nil {
		t.Errorf("cleanup list: %v", err)
	}
	for _, in := range infos {
		if err := e.Delete(context.Background(), in.ID); err != nil {
			t.Errorf("cleanup delete %s: %v", in.ID, err)
		}
	}
	if err := e.GC(context.Background()); err != nil {
		t.Errorf("cleanup gc: %v", err)
	}
	if err := e.RemoveNetwork(); err != nil {
		t.Errorf("cleanup network: %v", err)
	}
}

// testSpec is a busybox container running args.
func testSpec(args ...string) Spec {
	return Spec{
		Layers:  []string{testRootfs},
		Process: Process{Args: args, Env: []string{"PATH=/bin", "HOME=/root"}},
		IDMap:   IDMap{HostUID: 200000, HostGID: 200000},
	}
}

// run creates and starts a container and registers it for the leak check.
func run(t *testing.T, e *Engine, spec Spec) string {
	t.Helper()
	id, err := e.Create(context.Background(), spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	testIDs.Store(id, true)
	if err := e.Start(context.Background(), id); err != nil {
		t.Fatalf("start: %v", err)
	}
	return id
}

// wait waits for a container with a deadline.
func wait(t *testing.T, e *Engine, id string, d time.Duration) ExitStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	st, err := e.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return st
}

// output runs a container to its end and returns its stdout and stderr.
func output(t *testing.T, e *Engine, spec Spec) (string, ExitStatus) {
	t.Helper()
	id := run(t, e, spec)
	st := wait(t, e, id, 30*time.Second)
	return logText(t, e, id), st
}

func logText(t *testing.T, e *Engine, id string) string {
	t.Helper()
	var b bytes.Buffer
	err := e.Logs(context.Background(), id, false, func(le LogEntry) error {
		b.WriteString(le.Text)
		if !le.Partial {
			b.WriteByte('\n')
		}
		return nil
	})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	return b.String()
}

// checkNoLeaks looks for anything of this test process's containers left
// on the host: mounts, links, cgroups, processes.
func checkNoLeaks() error {
	var ids []string
	testIDs.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	var problems []string
	for _, id := range ids {
		if bytes.Contains(mi, []byte(id)) {
			problems = append(problems, "mount of "+id)
		}
		for _, l := range links {
			if l.Attrs().Name == "bv"+id[:13] {
				problems = append(problems, "veth of "+id)
			}
		}
		cgs, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupParent + "/*-" + id)
		cgs2, _ := filepath.Glob("/sys/fs/cgroup/" + cgroupParent + "/*-" + id)
		for _, c := range append(cgs, cgs2...) {
			problems = append(problems, "cgroup "+c)
		}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, _ := os.ReadFile(p)
			if bytes.Equal(b, []byte("berth-init\x00"+id+"\x00")) {
				problems = append(problems, "process "+p)
			}
		}
	}
	testBridges.Range(func(k, _ any) bool {
		if _, err := netlink.LinkByName(k.(string)); err == nil {
			problems = append(problems, "bridge "+k.(string))
		}
		return true
	})
	if len(problems) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(problems, ", "))
	}
	return nil
}

// dialRetry connects to addr until it answers or the deadline passes.
func dialRetry(t *testing.T, addr string, d time.Duration) net.Conn {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
