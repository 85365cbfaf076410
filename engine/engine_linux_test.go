package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestRunExitCodeAndLogs(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	out, st := output(t, e, testSpec("sh", "-c", "echo hello; echo oops >&2; exit 3"))
	if st.Code != 3 || st.Signal != 0 || st.OOMKilled {
		t.Fatalf("status = %+v, want code 3", st)
	}
	if !strings.Contains(out, "hello\n") || !strings.Contains(out, "oops\n") {
		t.Fatalf("log = %q", out)
	}
	id := run(t, e, testSpec("sh", "-c", "echo out; echo err >&2"))
	wait(t, e, id, 10*time.Second)
	streams := map[string]string{}
	if err := e.Logs(context.Background(), id, false, func(le LogEntry) error {
		if le.Time.IsZero() {
			t.Errorf("entry without time: %+v", le)
		}
		streams[le.Text] = le.Stream
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if streams["out"] != "stdout" || streams["err"] != "stderr" {
		t.Fatalf("streams = %v", streams)
	}
}

// TestNamespaces checks each namespace from inside the container.
func TestNamespaces(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	spec := testSpec("sh", "-c", `
echo "pid=$$"
echo "init=$(cat /proc/1/cmdline | tr '\0' ' ')"
echo "procs=$(ls -d /proc/[0-9]* | wc -l)"
echo "hostname=$(hostname)"
echo "uidmap=$(cat /proc/self/uid_map | tr -s ' ')"
echo "id=$(id -u):$(id -g)"
echo "links=$(ls /sys/class/net | tr '\n' ' ')"
echo "mounts=$(wc -l < /proc/self/mountinfo)"
echo "marker=$(grep -c MARKER /proc/self/mountinfo)"
echo "roots=$(cut -d' ' -f5 /proc/self/mountinfo | grep -c '^/$')"
echo "ipcs=$(cat /proc/sysvipc/shm | wc -l)"
echo "cgroup=$(cat /proc/self/cgroup | grep -c ':/$')"
`)
	spec.Hostname = "inside"
	spec.Network.Mode = NetworkBridge
	// A mount made on the host before the start must not be in the
	// container's table (the old root is detached, not just hidden).
	marker := "berthmark" + randHex(6)
	markDir := t.TempDir()
	if err := syscall.Mount(marker, markDir, "tmpfs", 0, "size=4k"); err != nil {
		t.Fatalf("mount marker: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(markDir, syscall.MNT_DETACH) })
	spec.Process.Args[2] = strings.ReplaceAll(spec.Process.Args[2], "MARKER", marker)
	// A SysV shm segment on the host must be invisible inside.
	shm, _, errno := syscall.Syscall(syscall.SYS_SHMGET, 0 /* IPC_PRIVATE */, 4096, 0o600|0o1000 /* IPC_CREAT */)
	if errno != 0 {
		t.Fatalf("shmget: %v", errno)
	}
	t.Cleanup(func() { syscall.Syscall(syscall.SYS_SHMCTL, shm, 0 /* IPC_RMID */, 0) })
	out, st := output(t, e, spec)
	if st.Code != 0 {
		t.Fatalf("status %v, output %s", st, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = strings.TrimSpace(v)
		}
	}
	t.Logf("inside: %v", got)
	hostname, _ := os.Hostname()
	checks := []struct {
		name string
		ok   bool
	}{
		{"app has a small pid under the init", len(got["pid"]) <= 2 && got["pid"] != "1"},
		{"pid 1 is the engine init", strings.HasPrefix(got["init"], "berth-init")},
		{"/proc shows only the container (init, sh, subshell, ls)", len(got["procs"]) == 1 && got["procs"] <= "5"},
		{"own hostname", got["hostname"] == "inside" && hostname != "inside"},
		{"uid_map maps root to the unprivileged range", got["uidmap"] == "0 200000 65536"},
		{"root inside", got["id"] == "0:0"},
		{"only lo and eth0", got["links"] == "eth0 lo"},
		{"own mount table rooted at /", got["roots"] != "0"},
		{"ipc namespace hides host shm", got["ipcs"] == "1"},
		{"cgroup namespace rooted at the container", got["cgroup"] != "0"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: inside saw %v", c.name, got)
		}
	}
	// The container's own mounts: root, /proc, /dev and its children,
	// /sys, /etc files, masked and read-only paths; about 30.
	if n, _ := strconv.Atoi(got["mounts"]); n == 0 || n > 40 || got["marker"] != "0" {
		t.Errorf("container mount table has %s entries, %s of them the host's marker", got["mounts"], got["marker"])
	}
	// Outside: the app runs under the app's host UID.
	id := run(t, e, testSpec("sleep", "30"))
	info, err := e.Inspect(id)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := os.Stat(fmt.Sprintf("/proc/%d", info.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if uid := st2.Sys().(*syscall.Stat_t).Uid; uid != 200000 {
		t.Errorf("init runs as host uid %d, want 200000", uid)
	}
}

// TestLayersShared runs two containers on the same layers.
func TestLayersShared(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	top := filepath.Join(searchableTempDir(t), "top")
	if err := os.MkdirAll(filepath.Join(top, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "etc", "motd"), []byte("top layer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := treeDigest(t, testRootfs) + treeDigest(t, top)
	var ids []string
	for _, name := range []string{"a", "b"} {
		spec := testSpec("sh", "-c", "echo "+name+" > /mine-"+name+"; ls / | grep mine-; cat /etc/motd; stat -c %u /bin/busybox; touch /bin/new")
		spec.Layers = []string{testRootfs, top}
		id := run(t, e, spec)
		ids = append(ids, id)
		if st := wait(t, e, id, 20*time.Second); st.Code != 0 {
			t.Fatalf("container %s: %v: %s", name, st, logText(t, e, id))
		}
		out := logText(t, e, id)
		other := map[string]string{"a": "b", "b": "a"}[name]
		if !strings.Contains(out, "mine-"+name) || strings.Contains(out, "mine-"+other) {
			t.Errorf("container %s sees: %q", name, out)
		}
		if !strings.Contains(out, "top layer") {
			t.Errorf("top layer not visible over the base: %q", out)
		}
		if !strings.Contains(out, "\n0\n") {
			t.Errorf("layer files are not owned by container root: %q", out)
		}
	}
	if after := treeDigest(t, testRootfs) + treeDigest(t, top); after != before {
		t.Fatal("layers changed")
	}
	// Each write landed in its own upper dir, owned by the app's range.
	c, err := e.loadConfig(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(c.Upper, "mine-a"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 200000 {
		t.Errorf("upper file owned by %d, want 200000", uid)
	}
	for _, id := range ids {
		if err := e.Delete(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(c.Upper); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("upper dir survived Delete: %v", err)
	}
	if treeDigest(t, testRootfs) != treeDigest(t, testRootfs) || treeDigest(t, top) == "" {
		t.Fatal("layers gone after delete")
	}
}

// TestCallerUpperDir keeps a caller's upper dir with container IDs on disk.
func TestCallerUpperDir(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	upper := filepath.Join(searchableTempDir(t), "step")
	if err := os.Mkdir(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := testSpec("sh", "-c", "mkdir -p /app && echo built > /app/out && chown 1000:1000 /app/out")
	spec.UpperDir = upper
	id := run(t, e, spec)
	if st := wait(t, e, id, 20*time.Second); st.Code != 0 {
		t.Fatalf("status %v: %s", st, logText(t, e, id))
	}
	if err := e.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(upper, "app", "out"))
	if err != nil {
		t.Fatalf("caller upper dir lost the write: %v", err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 1000 {
		t.Errorf("file owned by %d on disk, want container uid 1000", uid)
	}
	ents, _ := os.ReadDir(filepath.Dir(upper))
	if len(ents) != 1 {
		t.Errorf("work dir left next to the upper dir: %v", ents)
	}
}

// TestMountThroughSymlinkStaysInside mounts a volume below a path that an
// image layer made a symlink to an absolute host path: the symlink must
// resolve inside the container's root, never on the host.
func TestMountThroughSymlinkStaysInside(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	tmp := searchableTempDir(t)
	host := filepath.Join(tmp, "host")
	layer := filepath.Join(tmp, "layer")
	vol := filepath.Join(tmp, "vol")
	for _, d := range []string{host, layer, vol} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(host, filepath.Join(layer, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "marker"), []byte("volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := testSpec("sh", "-c", "cat /escape/data/marker; ls -d "+host+"/data")
	spec.Layers = []string{testRootfs, layer}
	spec.Mounts = []Mount{{Source: vol, Destination: "/escape/data", ReadOnly: true}}
	out, st := output(t, e, spec)
	if st.Code != 0 || !strings.Contains(out, "volume") {
		t.Fatalf("status %v: %s", st, out)
	}
	if ents, _ := os.ReadDir(host); len(ents) != 0 {
		t.Errorf("the mount point was made on the host: %v", ents)
	}
}

func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// longLayers makes the busybox rootfs plus 60 layers in dir, whose /layer
// holds the layer's number, with names of 120 characters, sep and the
// number: long paths times many layers exceed the page-size limit of the
// classic lowerdir= option string.
func longLayers(t *testing.T, dir, sep string) []string {
	t.Helper()
	layers := []string{testRootfs}
	long := strings.Repeat("l", 120)
	for i := 0; i < 60; i++ {
		d := filepath.Join(dir, fmt.Sprintf("%s%s%02d", long, sep, i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "layer"), []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, d)
	}
	return layers
}

func TestManyLayers(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	spec := testSpec("cat", "/layer")
	spec.Layers = longLayers(t, searchableTempDir(t), "-")
	out, st := output(t, e, spec)
	if st.Code != 0 || strings.TrimSpace(out) != "59" {
		t.Fatalf("status %v, top layer content %q, want 59", st, out)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		spec := testSpec("sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived ${#x}")
		spec.Limits.MemoryBytes = 32 << 20
		out, st := output(t, e, spec)
		if !st.OOMKilled || strings.Contains(out, "survived") {
			t.Fatalf("status %v (oom=%v), output %q; want an OOM kill", st, st.OOMKilled, out)
		}
		if !strings.Contains(st.String(), "out of memory") {
			t.Errorf("exit does not say so: %s", st)
		}
	})
	t.Run("memory of a child", func(t *testing.T) {
		t.Parallel()
		spec := testSpec("sh", "-c", "(x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived ${#x}); echo app-goes-on; exit 3")
		spec.Limits.MemoryBytes = 32 << 20
		out, st := output(t, e, spec)
		if st.OOMKilled || st.Code != 3 || !strings.Contains(out, "app-goes-on") {
			t.Fatalf("status %v (oom=%v), output %q; want the app's own exit 3, not an OOM kill", st, st.OOMKilled, out)
		}
		if st.OOMKills != 1 || st.String() != "exited with code 3 (a process of it was killed: out of memory)" {
			t.Errorf("status %q (%d OOM kills), want the child's OOM kill told", st, st.OOMKills)
		}
	})
	t.Run("pids", func(t *testing.T) {
		t.Parallel()
		// A fork bomb: the shell gives up at the first failed fork.
		spec := testSpec("sh", "-c", "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); echo $i > /tmp/n; done; echo all-forked")
		spec.Limits.Pids = 16 // the init's few threads count too
		out, st := output(t, e, spec)
		if strings.Contains(out, "all-forked") || !strings.Contains(out, "can't fork") || st.Code == 0 {
			t.Fatalf("status %v, output %q; want a failed fork", st, out)
		}
	})
	t.Run("cpuset and shares", func(t *testing.T) {
		t.Parallel()
		spec := testSpec("cat", "/proc/self/status")
		spec.Limits.Cpuset = "0"
		spec.Limits.CPUShares = 512
		out, st := output(t, e, spec)
		if st.Code != 0 || !strings.Contains(out, "Cpus_allowed_list:\t0\n") {
			t.Fatalf("status %v, output %q", st, out)
		}
	})
}

// TestCPUQuota runs a busy loop under a quota of half a core beside an
// unlimited one. The quota must cap it; "near 50%" is checked when the
// unlimited loop shows the host had a free core.
func TestCPUQuota(t *testing.T) {
	e := newTestEngine(t)
	spec := testSpec("sh", "-c", "while :; do :; done")
	spec.Limits.CPUQuota = 0.5
	limited := run(t, e, spec)
	free := run(t, e, testSpec("sh", "-c", "while :; do :; done"))
	usage := func(d time.Duration) (float64, float64) {
		l0, err := e.Stats(limited)
		if err != nil {
			t.Fatal(err)
		}
		f0, err := e.Stats(free)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		time.Sleep(d)
		l1, _ := e.Stats(limited)
		f1, _ := e.Stats(free)
		el := float64(time.Since(t0))
		return float64(l1.CPUTime-l0.CPUTime) / el, float64(f1.CPUTime-f0.CPUTime) / el
	}
	for try := 0; ; try++ {
		lim, unl := usage(time.Second)
		t.Logf("cpu use %.2f of a core under a quota of 0.5; %.2f without", lim, unl)
		if lim > 0.6 {
			t.Fatalf("cpu use %.2f exceeds the quota of 0.5", lim)
		}
		if unl > 0.85 { // a core was free for the unlimited loop
			if lim < 0.4 {
				t.Fatalf("cpu use %.2f with a free core, want about 0.5", lim)
			}
			st, err := e.Stats(limited)
			if err != nil {
				t.Fatal(err)
			}
			if st.CPUThrottledPeriods == 0 {
				t.Errorf("quota never throttled the loop: %+v", st)
			}
			return
		}
		if try == 4 {
			t.Logf("host too busy to check the lower bound; the cap held")
			return
		}
	}
}

func TestPauseResumeStats(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	id := run(t, e, testSpec("sh", "-c", "while :; do :; done"))
	if err := e.Pause(id); err != nil {
		t.Fatal(err)
	}
	info, _ := e.Inspect(id)
	if info.State != StatePaused {
		t.Fatalf("state %s, want paused", info.State)
	}
	s0, _ := e.Stats(id)
	time.Sleep(300 * time.Millisecond)
	s1, _ := e.Stats(id)
	if s1.CPUTime != s0.CPUTime {
		t.Errorf("paused container used %v of cpu", s1.CPUTime-s0.CPUTime)
	}
	if err := e.Resume(id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	s2, _ := e.Stats(id)
	if s2.CPUTime <= s1.CPUTime {
		t.Errorf("resumed container used no cpu")
	}
	st, err := e.Stop(context.Background(), id, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// sh ignores nothing: SIGTERM forwarded by the init ends the loop.
	if st.Signal != int(syscall.SIGTERM) && st.Signal != int(syscall.SIGKILL) {
		t.Errorf("stop status %v", st)
	}
}

func TestStopEscalates(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	id := run(t, e, testSpec("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"))
	waitLog(t, e, id, "ready")
	t0 := time.Now()
	st, err := e.Stop(context.Background(), id, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if st.Signal != int(syscall.SIGKILL) || time.Since(t0) < 300*time.Millisecond {
		t.Fatalf("status %v after %v, want SIGKILL after the timeout", st, time.Since(t0))
	}
	id = run(t, e, testSpec("sh", "-c", "trap 'echo bye; exit 5' TERM; echo ready; while :; do sleep 0.1; done"))
	waitLog(t, e, id, "ready")
	st, err = e.Stop(context.Background(), id, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 5 || !strings.Contains(logText(t, e, id), "bye") {
		t.Fatalf("status %v, want the app's own exit 5 on SIGTERM", st)
	}
}

func waitLog(t *testing.T, e *Engine, id, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errFound := errors.New("found")
	err := e.Logs(ctx, id, true, func(le LogEntry) error {
		if strings.Contains(le.Text, want) {
			return errFound
		}
		return nil
	})
	if !errors.Is(err, errFound) {
		t.Fatalf("log line %q not seen: %v", want, err)
	}
}

// TestBridgeAddressFixed: the bridge keeps its own address while veths
// come and go (a bridge follows its lowest port's address otherwise, and
// containers that knew the old one lose the host).
func TestBridgeAddressFixed(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	spec := testSpec("sleep", "30")
	spec.Network.Mode = NetworkBridge
	mac := func() string {
		l, err := netlink.LinkByName(e.cfg.BridgeName)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().HardwareAddr.String()
	}
	var macs []string
	var ids []string
	for range 3 {
		ids = append(ids, run(t, e, spec))
		macs = append(macs, mac())
	}
	for _, id := range ids[:2] {
		if _, err := e.Stop(context.Background(), id, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := e.Delete(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		macs = append(macs, mac())
	}
	n, err := e.network()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range macs {
		if m != n.bridgeMAC().String() {
			t.Fatalf("bridge addresses as veths came and went: %v, want %s throughout", macs, n.bridgeMAC())
		}
	}
}

func TestNetwork(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	server := testSpec("sh", "-c", "while :; do echo pong-$(hostname) | nc -l -p 8080; done")
	server.Network.Mode = NetworkBridge
	server.Hostname = "srv"
	a := run(t, e, server)
	ipA, err := e.IP(a)
	if err != nil || ipA == nil {
		t.Fatalf("ip: %v %v", ipA, err)
	}
	// The host reaches the container.
	conn := dialRetry(t, net.JoinHostPort(ipA.String(), "8080"), 10*time.Second)
	line, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if line != "pong-srv\n" {
		t.Fatalf("host got %q from container", line)
	}
	// A second container reaches the first, and the host through the bridge.
	n, err := e.network()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(n.gw.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.WriteString(c, "hello-from-host\n")
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	client := testSpec("sh", "-c", fmt.Sprintf("ip route; nc %s 8080 </dev/null; nc %s %d </dev/null; cat /etc/hosts", ipA, n.gw, port))
	client.Network.Mode = NetworkBridge
	out, st := output(t, e, client)
	if st.Code != 0 || !strings.Contains(out, "pong-srv") || !strings.Contains(out, "hello-from-host") {
		t.Fatalf("status %v, client saw %q", st, out)
	}
	if !strings.Contains(out, "default via "+n.gw.String()) {
		t.Errorf("no default route via the bridge: %q", out)
	}
	// Egress is masqueraded (builds fetch packages); only the rule is
	// checked, tests send no traffic beyond the host.
	ipt, err := iptables.New()
	if err != nil {
		t.Fatal(err)
	}
	r := n.rules()[0]
	if ok, err := ipt.Exists(r.table, r.chain, r.spec...); err != nil || !ok {
		t.Errorf("no NAT rule for the bridge subnet: %v", err)
	}
}

func TestIPAllocatorPersists(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	root := searchableTempDir(t)
	sn, _ := parseSubnet("10.99.0.0/29") // 5 usable addresses
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		// A new allocator each time, as after a daemon restart.
		n := &network{root: root, bridge: "unused", subnet: sn, gw: nthIP(sn, 1)}
		ip, err := n.allocate(fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if seen[ip.String()] || ip.Equal(n.gw) {
			t.Fatalf("address %s handed out twice or is the gateway", ip)
		}
		seen[ip.String()] = true
	}
	n := &network{root: root, bridge: "unused", subnet: sn, gw: nthIP(sn, 1)}
	if _, err := n.allocate("c3"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.allocate("c4"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.allocate("c5"); !errors.Is(err, ErrAddressesExhausted) {
		t.Fatalf("allocation past the subnet: %v", err)
	}
	if err := n.release("c1"); err != nil {
		t.Fatal(err)
	}
	if ip, err := n.allocate("c6"); err != nil || !seen[ip.String()] {
		t.Fatalf("released address not reused once the subnet is full: %v %v", ip, err)
	}
}

func TestSubnetCollision(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	// Every host has the loopback route 127.0.0.0/8 (in its local table).
	_, err := New(Config{Root: filepath.Join(searchableTempDir(t), "c"), BridgeName: "bt" + randHex(4), Subnet: "127.0.0.0/8"})
	if !errors.Is(err, ErrSubnetCollision) || !strings.Contains(err.Error(), "Config.Subnet") {
		t.Fatalf("err = %v, want ErrSubnetCollision", err)
	}
}

func TestHardening(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	out, st := output(t, e, testSpec("sh", "-c", `
echo c > /proc/sysrq-trigger 2>/dev/null && echo sysrq=written || echo sysrq=denied
mount -t tmpfs x /mnt 2>/dev/null && echo mount=ok || echo mount=denied
echo kcore=$(head -c 100 /proc/kcore | wc -c)
echo keys=$(cat /proc/keys 2>/dev/null | wc -c)
grep -E '^(CapEff|CapBnd|NoNewPrivs|SigIgn|SigBlk)' /proc/self/status | tr '\t' ' '
echo fds=$(ls /proc/self/fd | wc -l)
(echo x >> /proc/1/exe) 2>/dev/null && echo exe=written || echo exe=denied
echo 1 > /proc/sys/kernel/panic 2>/dev/null && echo procsys=written || echo procsys=denied
ls /sys/firmware | wc -l | sed 's/^/firmware=/'
echo sysro=$(grep -c ' /sys ro,' /proc/self/mountinfo)
unshare -U true 2>/dev/null && echo userns=created || echo userns=denied
unshare -n true 2>/dev/null && echo netns=created || echo netns=denied
grep -E '^Seccomp:' /proc/self/status | tr '\t' ' '
`))
	if st.Code != 0 {
		t.Fatalf("status %v: %s", st, out)
	}
	want := fmt.Sprintf("CapEff: %016x", capMask())
	for _, w := range []string{"sysrq=denied", "mount=denied", "kcore=0", "keys=0", want, "CapBnd: " + want[len("CapEff: "):], "NoNewPrivs: 1", "SigIgn: 0000000000000000", "SigBlk: 0000000000000000", "exe=denied", "procsys=denied", "firmware=0", "sysro=1", "userns=denied", "netns=denied", "Seccomp: 2"} {
		if !strings.Contains(out, w) {
			t.Errorf("want %q in:\n%s", w, out)
		}
	}
	// ls itself holds fd 3 for the directory; nothing else may be open.
	if !strings.Contains(out, "fds=4") {
		t.Errorf("extra fds open in the app:\n%s", out)
	}
}

func capMask() uint64 {
	var m uint64
	for _, c := range keptCaps {
		m |= 1 << c
	}
	return m
}

func TestDevices(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	out, st := output(t, e, testSpec("sh", "-c", "head -c 4 /dev/urandom | wc -c; echo x > /dev/null && echo null-ok; ls /dev"))
	if st.Code != 0 || !strings.Contains(out, "4\n") || !strings.Contains(out, "null-ok") {
		t.Fatalf("status %v: %s", st, out)
	}
}

// TestReadoption kills the process that started a container and lets a new
// Engine find, read, stop and delete it.
func TestReadoption(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	root := filepath.Join(searchableTempDir(t), "containers")
	bridge := "bt" + randHex(4)
	testBridges.Store(bridge, true)
	subnet := freeSubnet(t, bridge)
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), "BERTH_ENGINE_TEST_ROLE=parent", "BERTH_ENGINE_TEST_ROOT="+root,
		"BERTH_ENGINE_TEST_BRIDGE="+bridge, "BERTH_ENGINE_TEST_SUBNET="+subnet, "BERTH_ENGINE_TEST_ROOTFS="+testRootfs)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	id, ok := strings.CutPrefix(strings.TrimSpace(line), "id: ")
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	e, err := New(Config{Root: root, BridgeName: bridge, Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupEngine(t, e) })
	if !ok {
		t.Fatalf("parent said %q", line)
	}
	testIDs.Store(id, true)
	infos, err := e.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].ID != id || infos[0].State != StateRunning || infos[0].Labels["app"] != "adopt" || infos[0].IP == "" {
		t.Fatalf("list after parent death: %+v", infos)
	}
	waitLog(t, e, id, "adopted-log-line")
	var out strings.Builder
	if st, err := e.Exec(context.Background(), id, ExecOptions{Process: Process{Args: []string{"echo", "exec-after-adoption"}}, Stdout: &out}); err != nil || st.Code != 0 || out.String() != "exec-after-adoption\n" {
		t.Errorf("exec in re-adopted container: %v %v %q", st, err, out.String())
	}
	if s, err := e.Stats(id); err != nil || s.Pids == 0 {
		t.Errorf("stats of re-adopted container: %+v %v", s, err)
	}
	st, err := e.Stop(context.Background(), id, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 7 {
		t.Errorf("stop of re-adopted container: %v, want exit 7 from its TERM trap", st)
	}
	waitLog(t, e, id, "got-term")
	if err := e.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container dir survived delete: %v", err)
	}
}

// TestWithoutUserNamespace runs the fallback used on kernels without
// idmapped mounts: no user namespace, everything else the same.
func TestWithoutUserNamespace(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	e.userNS = false
	out, st := output(t, e, testSpec("sh", "-c", "cat /proc/self/uid_map | tr -s ' '; echo x > /new; grep CapEff /proc/self/status | tr '\\t' ' '"))
	if st.Code != 0 || !strings.Contains(out, "0 0 4294967295") || !strings.Contains(out, fmt.Sprintf("CapEff: %016x", capMask())) {
		t.Fatalf("status %v, output %q", st, out)
	}
}

// TestLayersByPath runs the overlay that kernels before 6.13 get, whose
// overlayfs takes no layers as file descriptors: many long-named layers,
// idmapped, with a caller's upper dir, and not one mount seen by the host.
func TestLayersByPath(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	e.layersByPath = true
	tmp := searchableTempDir(t)
	// What New checks on such a kernel before it gives containers a user
	// namespace: an overlay over an idmapped layer (Linux 5.19).
	if err := probeIDMappedMounts(tmp, true); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("the probe left %v", ents)
	}
	// With characters that overlay's option string splits on.
	layers := longLayers(t, tmp, ",:")
	upper := filepath.Join(tmp, "up,per:dir")
	if err := os.Mkdir(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := testSpec("sh", "-c", "cat /layer; echo; stat -c %u /bin/busybox; echo x > /new && chown 1000 /new; cat /proc/self/uid_map | tr -s ' '; sleep 30")
	spec.Layers = layers
	spec.UpperDir = upper
	id := run(t, e, spec)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logText(t, e, id), "200000") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logText(t, e, id)
	if !strings.Contains(out, "59\n0\n") || !strings.Contains(out, "0 200000 65536") {
		t.Fatalf("top layer, layer owner and uid map: %q", out)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), tmp) || strings.Contains(string(mi), e.dir(id)) {
		t.Errorf("the host sees a mount of the container's:\n%s", mi)
	}
	if err := e.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(upper, "new"))
	if err != nil {
		t.Fatalf("caller upper dir lost the write: %v", err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 1000 {
		t.Errorf("file owned by %d on disk, want container uid 1000", uid)
	}

	spec = testSpec("true")
	for len(spec.Layers) <= maxLayers {
		spec.Layers = append(spec.Layers, testRootfs)
	}
	if _, err := e.Create(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "at most 500") {
		t.Errorf("create with %d layers: %v, want a clear refusal", len(spec.Layers), err)
	}
}

// TestVolumePropagationPrivate mounts a volume whose source sits on a shared
// mount, as everything does under systemd: what the host mounts below the
// source after the start must not appear in the container.
func TestVolumePropagationPrivate(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	src := searchableTempDir(t)
	if err := unix.Mount(src, src, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(src, unix.MNT_DETACH) })
	if err := unix.Mount("", src, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	later := filepath.Join(src, "later")
	if err := os.Mkdir(later, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := testSpec("sh", "-c", "while [ ! -e /vol/go ]; do sleep 0.02; done; grep ' /vol ' /proc/self/mountinfo; ls /vol/later; echo end")
	spec.Mounts = []Mount{{Source: src, Destination: "/vol"}}
	id := run(t, e, spec)
	if err := unix.Mount("tmpfs", later, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(later, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(later, "host-secret"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, e, id, 20*time.Second); st.Code != 0 {
		t.Fatalf("status %v: %s", st, logText(t, e, id))
	}
	out := logText(t, e, id)
	if strings.Contains(out, "host-secret") || strings.Contains(out, "shared:") || !strings.Contains(out, "end") {
		t.Errorf("the volume follows the host's mounts:\n%s", out)
	}
}
