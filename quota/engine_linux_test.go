package quota

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
)

// The engine starts a container's init by re-executing this test binary;
// package inits run before TestMain (which helpers_linux_test.go owns), so
// the init role is recognised here, first thing.
func init() { engine.MaybeInit() }

// rig is a real engine whose quota provider is an EngineQuota over a real
// Disk, each on private directories, with a private bridge and subnet.
type rig struct {
	t       *testing.T
	base    string // searchable directory holding rootfs and containers
	qroot   string // the Disk's root
	ctrRoot string // the engine's root
	rootfs  string
	bridge  string
	subnet  string
	logger  *slog.Logger
	noDisk  bool

	disk *Disk
	q    *EngineQuota
	eng  *engine.Engine

	veths map[string]bool // host veths of the test's containers
}

// newRig builds the rig; without a disk it has network caps only. Cleanup
// deletes the containers, the bridge and its rules, every app quota, and
// then checks that nothing of them is left on the host.
func newRig(t *testing.T, withDisk bool) *rig {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("busybox"); err != nil {
		skipOrFail(t, "busybox-static is not installed (scripts/deps.sh installs it)")
	}
	r := &rig{t: t, noDisk: !withDisk, veths: map[string]bool{}}
	r.qroot = quotaRoot(t) // its leak check runs last
	r.base = testenv.SearchableTempDir(t)
	r.ctrRoot = filepath.Join(r.base, "containers")
	r.rootfs = buildBusyboxRootfs(t, filepath.Join(r.base, "rootfs"))
	r.bridge = "bq" + randomHex(t, 4)
	r.logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r.open(false)
	t.Cleanup(r.cleanup)
	return r
}

// open makes the Disk, the EngineQuota and the engine, as the daemon does
// at start: engine GC first, then Restore with the engine's containers.
// With reuse it opens them over the roots of an earlier open.
func (r *rig) open(reuse bool) {
	t := r.t
	t.Helper()
	var err error
	if !r.noDisk {
		r.disk, err = NewEngineDisk(DiskConfig{Root: r.qroot}, r.logger)
		if err != nil {
			skipOrFail(t, "no disk quota driver for the engine works here: "+err.Error())
		}
	}
	r.q, err = NewEngineQuota(EngineConfig{Disk: r.disk, ContainersRoot: r.ctrRoot}, r.logger)
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.Config{Root: r.ctrRoot, BridgeName: r.bridge, Subnet: r.subnet, Logger: r.logger, Quota: r.q}
	if reuse {
		if r.eng, err = engine.New(cfg); err != nil {
			t.Fatal(err)
		}
	} else {
		for i := 0; ; i++ {
			a, _ := rand.Int(rand.Reader, big.NewInt(200))
			b, _ := rand.Int(rand.Reader, big.NewInt(256))
			cfg.Subnet = fmt.Sprintf("10.%d.%d.0/24", 20+a.Int64(), b.Int64())
			r.eng, err = engine.New(cfg)
			if err == nil || !errors.Is(err, engine.ErrSubnetCollision) || i == 50 {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		r.subnet = cfg.Subnet
	}
	ctx := context.Background()
	if err := r.eng.GC(ctx); err != nil {
		t.Fatal(err)
	}
	infos, err := r.eng.List()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.q.Restore(ctx, infos); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) cleanup() {
	t := r.t
	ctx := context.Background()
	infos, err := r.eng.List()
	if err != nil {
		t.Errorf("cleanup: list containers: %v", err)
	}
	for _, in := range infos {
		if err := r.eng.Delete(ctx, in.ID); err != nil {
			t.Errorf("cleanup: delete %s: %v", in.ID, err)
		}
	}
	if err := r.eng.GC(ctx); err != nil {
		t.Errorf("cleanup: engine gc: %v", err)
	}
	if err := r.eng.RemoveNetwork(); err != nil {
		t.Errorf("cleanup: remove network: %v", err)
	}
	if r.disk != nil {
		for _, app := range r.disk.Apps() {
			if err := r.q.RemoveApp(ctx, app); err != nil {
				t.Errorf("cleanup: remove app %s: %v", app, err)
			}
		}
		if err := r.disk.Close(ctx); err != nil {
			t.Errorf("cleanup: close disk: %v", err)
		}
	}
	// Left behind? (quotaRoot checks mounts and loop devices under the
	// Disk's root after this.)
	if m := mountsUnder(t, r.base); len(m) > 0 {
		t.Errorf("left behind: mounts %v", m)
	}
	for veth := range r.veths {
		for _, name := range []string{veth, IFBName(veth)} {
			if _, err := netlink.LinkByName(name); err == nil {
				t.Errorf("left behind: link %s", name)
			}
		}
	}
	if _, err := netlink.LinkByName(r.bridge); err == nil {
		t.Errorf("left behind: bridge %s", r.bridge)
	}
	if ipt, err := iptables.New(); err == nil {
		for _, tc := range [][2]string{{"nat", "POSTROUTING"}, {"filter", "FORWARD"}} {
			rules, err := ipt.List(tc[0], tc[1])
			if err != nil {
				t.Errorf("list iptables %s %s: %v", tc[0], tc[1], err)
			}
			for _, rule := range rules {
				if strings.Contains(rule, "berth:"+r.bridge) {
					t.Errorf("left behind: iptables %s rule %s", tc[0], rule)
				}
			}
		}
	}
}

// spec is a busybox container of app (none if empty) with the given limits
// on the bridge, running script.
func (r *rig) spec(app string, uid int, diskBytes, bps int64, script string) engine.Spec {
	s := engine.Spec{
		Layers:  []string{r.rootfs},
		Process: engine.Process{Args: []string{"sh", "-c", script}, Env: []string{"PATH=/bin", "HOME=/root"}},
		IDMap:   engine.IDMap{HostUID: uint32(uid), HostGID: uint32(uid)},
		Network: engine.Network{Mode: engine.NetworkBridge},
		Limits:  engine.Limits{DiskBytes: diskBytes, NetworkBitsPerSec: bps},
	}
	if app != "" {
		s.Labels = map[string]string{AppLabel: app, "berth.role": "app"}
	}
	return s
}

// run creates and starts a container.
func (r *rig) run(spec engine.Spec) string {
	r.t.Helper()
	id, err := r.eng.Run(context.Background(), spec)
	if err != nil {
		r.t.Fatalf("run container: %v", err)
	}
	info, err := r.eng.Inspect(id)
	if err != nil {
		r.t.Fatal(err)
	}
	if info.HostVeth != "" {
		r.veths[info.HostVeth] = true
	}
	return id
}

// wait waits up to d for the container to exit.
func (r *rig) wait(id string, d time.Duration) engine.ExitStatus {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	st, err := r.eng.Wait(ctx, id)
	if err != nil {
		r.t.Fatalf("wait for %s: %v", id, err)
	}
	return st
}

// logText returns the container's log so far.
func (r *rig) logText(id string) string {
	r.t.Helper()
	var b strings.Builder
	err := r.eng.Logs(context.Background(), id, false, func(le engine.LogEntry) error {
		b.WriteString(le.Text)
		if !le.Partial {
			b.WriteByte('\n')
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("logs of %s: %v", id, err)
	}
	return b.String()
}

// waitLog polls the container's log until it holds want, for at most d.
func (r *rig) waitLog(id, want string, d time.Duration) string {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		out := r.logText(id)
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("container %s did not log %q within %s; log:\n%s", id, want, d, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fillScript writes mib MiB of zeros to path with dd, then reports the
// file's size as "size=N" and exits with dd's status.
func fillScript(path string, mib int) string {
	return fmt.Sprintf("dd if=/dev/zero of=%[1]s bs=1M count=%[2]d; rc=$?; sync; echo size=$(stat -c %%s %[1]s); exit $rc", path, mib)
}

// fill runs fillScript in a running container and returns the size the
// file reached, dd's output and its exit code.
func (r *rig) fill(id, path string, mib int) (int64, string, int) {
	r.t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := r.eng.Exec(ctx, id, engine.ExecOptions{
		Process: engine.Process{Args: []string{"sh", "-c", fillScript(path, mib)}, Env: []string{"PATH=/bin"}},
		Stdout:  &stdout, Stderr: &stderr,
	})
	if err != nil {
		r.t.Fatalf("exec dd in %s: %v", id, err)
	}
	out := stderr.String() + stdout.String()
	return parseSize(r.t, out), out, st.Code
}

// parseSize finds "size=N" in out.
func parseSize(t *testing.T, out string) int64 {
	t.Helper()
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "size="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("bad size line %q", line)
			}
			return n
		}
	}
	t.Fatalf("no size= line in output:\n%s", out)
	return 0
}

// isQuotaError reports whether dd's output says the write hit a limit.
func isQuotaError(out string) bool {
	return strings.Contains(out, "Disk quota exceeded") || strings.Contains(out, "No space left on device")
}

// usage returns the app's disk use.
func (r *rig) usage(app string) int64 {
	r.t.Helper()
	u, err := r.disk.Usage(context.Background(), app)
	if err != nil {
		r.t.Fatal(err)
	}
	return u.Bytes
}

func TestEngineDiskLimit(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	sfx := strconv.Itoa(os.Getpid())
	appA, appB := "qa-"+sfx, "qb-"+sfx
	const limitA, limitB = 32 * mib, 64 * mib

	// App A, limited to 32 MiB, writes 64 MiB.
	idA := r.run(r.spec(appA, testUID(0), limitA, 0, fillScript("/big", 64)))
	st := r.wait(idA, 60*time.Second)
	log := r.logText(idA)
	wroteA := parseSize(t, log)
	t.Logf("app A (limit 32 MiB) wrote %d bytes (%.1f MiB) before: %s", wroteA, float64(wroteA)/mib, firstLine(log, "dd:"))
	if st.Code == 0 || !isQuotaError(log) {
		t.Fatalf("dd of 64 MiB under a 32 MiB limit: %v; log:\n%s", st, log)
	}
	if wroteA > limitA || wroteA < limitA*3/4 {
		t.Fatalf("app A wrote %d bytes under a %d limit, want between 3/4 of it and all of it", wroteA, limitA)
	}
	usedA := r.usage(appA)
	if usedA < wroteA || usedA > limitA+mib {
		t.Fatalf("Usage(%s) = %d after writing %d under a %d limit", appA, usedA, wroteA, limitA)
	}

	// The host is unaffected: its filesystem still takes a write.
	hostFile := filepath.Join(r.base, "host-write")
	if err := os.WriteFile(hostFile, make([]byte, 8*mib), 0o600); err != nil {
		t.Fatalf("host write after app A filled its quota: %v", err)
	}
	os.Remove(hostFile)

	// App B has its own limit: it writes more than A's whole limit, far
	// more than what is left of A's.
	idB := r.run(r.spec(appB, testUID(1), limitB, 0, "exec sleep 120"))
	wroteB, out, code := r.fill(idB, "/big", 48)
	t.Logf("app B (limit 64 MiB) wrote %d bytes (%.1f MiB); app A has %d bytes of room left", wroteB, float64(wroteB)/mib, limitA-usedA)
	if code != 0 || wroteB != 48*mib {
		t.Fatalf("app B wrote %d bytes of 48 MiB (exit %d): %s", wroteB, code, out)
	}
	if u := r.usage(appA); u != usedA {
		t.Fatalf("app A's usage moved from %d to %d while app B wrote", usedA, u)
	}
	if u := r.usage(appB); u < 48*mib || u > limitB {
		t.Fatalf("Usage(%s) = %d after writing 48 MiB", appB, u)
	}

	tests := []struct {
		name      string
		app       string
		limit     int64
		wantQuota bool // a quota of the container's own
	}{
		// Build steps and tests: no app label, no limit. Their upper dir
		// stays in the engine's container directory, as without a quota
		// provider, and no quota is made.
		{name: "no app, no limit", limit: 0},
		// An app without a disk limit gets no default limit.
		{name: "app without limit", app: "qc-" + sfx, limit: 0},
		// A limit without an app: a quota of the container's own.
		{name: "no app, limit", limit: 16 * mib, wantQuota: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.disk.Apps()
			id := r.run(r.spec(tt.app, testUID(2), tt.limit, 0, "exec sleep 120"))
			ownQuota := slicesContains(r.disk.Apps(), containerQuotaPrefix+id)
			if ownQuota != tt.wantQuota {
				t.Fatalf("container quota %s exists = %v, want %v (apps %v)", containerQuotaPrefix+id, ownQuota, tt.wantQuota, r.disk.Apps())
			}
			if !tt.wantQuota && len(r.disk.Apps()) != len(before) {
				t.Fatalf("apps with quotas went from %v to %v", before, r.disk.Apps())
			}
			if tt.app != "" {
				if _, ok := r.disk.Limit(tt.app); ok {
					t.Fatalf("app %s without a disk limit got a quota", tt.app)
				}
			}
			wrote, out, code := r.fill(id, "/big", 24)
			if tt.limit == 0 {
				if code != 0 || wrote != 24*mib {
					t.Fatalf("unlimited container wrote %d bytes of 24 MiB (exit %d): %s", wrote, code, out)
				}
				// The writes landed in the engine's own directory.
				fi, err := os.Stat(filepath.Join(r.ctrRoot, id, "upper", "big"))
				if err != nil || fi.Size() != 24*mib {
					t.Fatalf("upper dir not in the container's engine directory: %v", err)
				}
			} else if code == 0 || !isQuotaError(out) || wrote > tt.limit {
				t.Fatalf("container limited to %d wrote %d bytes (exit %d): %s", tt.limit, wrote, code, out)
			}
			if err := r.eng.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
			if slicesContains(r.disk.Apps(), containerQuotaPrefix+id) {
				t.Fatalf("container quota %s left after Delete", containerQuotaPrefix+id)
			}
		})
	}

	// RemoveApp refuses while the app has containers, then removes it.
	if err := r.q.RemoveApp(ctx, appB); !errors.Is(err, ErrAppHasContainers) {
		t.Fatalf("RemoveApp with a running container: %v, want ErrAppHasContainers", err)
	}
	for _, id := range []string{idA, idB} {
		if err := r.eng.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, app := range []string{appA, appB} {
		if err := r.q.RemoveApp(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	if apps := r.disk.Apps(); len(apps) != 0 {
		t.Fatalf("quotas left after RemoveApp: %v", apps)
	}
	if l := loopsUnder(t, r.qroot); len(l) > 0 {
		t.Fatalf("loop devices left after the last app was removed: %v", l)
	}
}

// netScript serves n bytes out of the container over HTTP on port 5001
// (busybox httpd sends a file with few system calls, so the sender is not
// what limits an uncapped transfer on a busy host), and counts what
// arrives on port 5002, logging "in-bytes=N". The sleep keeps nc's input
// open, so that nc closes the connection only when all the sender's data
// has arrived.
func netScript(n int64) string {
	return fmt.Sprintf(`dd if=/dev/zero of=/tmp/blob bs=65536 count=%d 2>/dev/null
httpd -p 5001 -h /tmp
sleep 60 | nc -l -p 5002 | wc -c | sed 's/^/in-bytes=/'
exec sleep 60`, n/65536)
}

// dialRetry connects to addr until it answers, for at most d.
func dialRetry(t *testing.T, addr string, d time.Duration) *net.TCPConn {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.(*net.TCPConn)
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// measure runs the two transfers of netScript(n) with the container and
// returns the rates seen, in bits per second: out of the container as the
// receiver here saw it from the first byte to the last, and into the
// container from the first byte sent until the container's nc, having
// received everything, closed the connection.
func (r *rig) measure(id string, n int64) (in, out float64) {
	t := r.t
	t.Helper()
	ip, err := r.eng.IP(id)
	if err != nil {
		t.Fatal(err)
	}
	c := dialRetry(t, net.JoinHostPort(ip.String(), "5001"), 10*time.Second)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, "GET /blob HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatalf("request from container: %v", err)
	}
	buf := make([]byte, 64<<10)
	first, err := c.Read(buf)
	if err != nil {
		t.Fatalf("receive from container: %v", err)
	}
	start := time.Now()
	// The body is n bytes after a header of a few hundred.
	rest, err := io.CopyBuffer(io.Discard, io.LimitReader(c, n+64<<10), buf)
	elapsed := time.Since(start)
	c.Close()
	if got := int64(first) + rest; err != nil || got < n || got > n+4096 {
		t.Fatalf("received %d bytes for a %d byte body from the container: %v", got, n, err)
	}
	out = float64(rest*8) / elapsed.Seconds()

	c = dialRetry(t, net.JoinHostPort(ip.String(), "5002"), 10*time.Second)
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	start = time.Now()
	for sent := int64(0); sent < n; {
		k, err := c.Write(buf[:min(int64(len(buf)), n-sent)])
		if err != nil {
			t.Fatalf("send to container: %v", err)
		}
		sent += int64(k)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got, err := io.Copy(io.Discard, io.LimitReader(c, 1<<20)); err != nil || got != 0 {
		t.Fatalf("waiting for the container to close: %d bytes, %v", got, err)
	}
	in = float64(n*8) / time.Since(start).Seconds()
	r.waitLog(id, "in-bytes="+strconv.FormatInt(n, 10)+"\n", 10*time.Second)
	t.Logf("container %s: into it %.2f mbit/s, out of it %.2f mbit/s (%d bytes each way)", id, in/1e6, out/1e6, n)
	return in, out
}

// checkCap checks the tc set-up of the container's veth: a root tbf at
// bps, an ingress qdisc, and the veth's ifb with a root tbf at bps.
func (r *rig) checkCap(id string, bps int64) {
	t := r.t
	t.Helper()
	info, err := r.eng.Inspect(id)
	if err != nil {
		t.Fatal(err)
	}
	rootRate := func(name string) (uint64, bool) {
		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		qs, err := netlink.QdiscList(link)
		if err != nil {
			t.Fatal(err)
		}
		var rate uint64
		ingress := false
		for _, q := range qs {
			if tbf, ok := q.(*netlink.Tbf); ok && q.Attrs().Parent == netlink.HANDLE_ROOT {
				rate = tbf.Rate
			}
			if q.Type() == "ingress" {
				ingress = true
			}
		}
		return rate, ingress
	}
	vethRate, ingress := rootRate(info.HostVeth)
	ifbRate, _ := rootRate(IFBName(info.HostVeth))
	if vethRate != uint64(bps/8) || ifbRate != uint64(bps/8) || !ingress {
		t.Fatalf("container %s: tbf into it %d B/s, out of it %d B/s, ingress redirect %v; want %d B/s both ways", id, vethRate, ifbRate, ingress, bps/8)
	}
}

func TestEngineNetworkCap(t *testing.T) {
	// Network caps need no disk driver: the rig has none, as on a host
	// where no disk quota works.
	r := newRig(t, false)
	const limit = 10_000_000
	const capped, uncapped = 4 << 20, 32 << 20
	sfx := strconv.Itoa(os.Getpid())

	if _, err := r.eng.Create(context.Background(), r.spec("qd-"+sfx, testUID(0), 32*mib, 0, "true")); !errors.Is(err, ErrDriverUnavailable) {
		t.Fatalf("disk limit without a disk driver: %v, want ErrDriverUnavailable", err)
	}

	idC := r.run(r.spec("qn-"+sfx, testUID(0), 0, limit, netScript(capped)))
	r.checkCap(idC, limit)
	in, out := r.measure(idC, capped)
	for _, m := range []struct {
		dir  string
		rate float64
	}{{"into the container", in}, {"out of the container", out}} {
		if m.rate < 0.8*limit || m.rate > 1.2*limit {
			t.Errorf("capped %s: %.2f mbit/s, want within 20%% of 10 mbit/s", m.dir, m.rate/1e6)
		}
	}

	idU := r.run(r.spec("qu-"+sfx, testUID(1), 0, 0, netScript(uncapped)))
	in, out = r.measure(idU, uncapped)
	if in < 5*limit || out < 5*limit {
		t.Errorf("uncapped: %.1f mbit/s in, %.1f out; want far above the 10 mbit/s cap", in/1e6, out/1e6)
	}

	info, err := r.eng.Inspect(idC)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.eng.Delete(context.Background(), idC); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(IFBName(info.HostVeth)); err == nil {
		t.Fatalf("ifb %s of a deleted container left behind", IFBName(info.HostVeth))
	}
}

func TestEngineLimitsSurviveRedeployAndRestart(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	app := "qr-" + strconv.Itoa(os.Getpid())
	uid := testUID(5)
	const limit, bps = 32 * mib, 10_000_000

	// Release 1 holds 20 MiB and keeps running while release 2 starts,
	// as during a redeploy.
	old := r.run(r.spec(app, uid, limit, bps, "exec sleep 120"))
	if wrote, out, code := r.fill(old, "/data", 20); code != 0 || wrote != 20*mib {
		t.Fatalf("release 1 wrote %d bytes of 20 MiB (exit %d): %s", wrote, code, out)
	}
	// A container directory that a crash left under the app's quota.
	appDir, err := r.disk.Dir(app)
	if err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(appDir, "00000000deadbeef")
	if err := os.MkdirAll(filepath.Join(stray, "upper"), 0o711); err != nil {
		t.Fatal(err)
	}

	newer := r.run(r.spec(app, uid, limit, bps, "exec sleep 120"))
	r.checkCap(old, bps)
	r.checkCap(newer, bps)
	used := r.usage(app)
	if used < 20*mib {
		t.Fatalf("Usage after release 1 wrote 20 MiB = %d", used)
	}
	// Release 2 shares the app's limit with release 1's data.
	wrote, out, code := r.fill(newer, "/big", 32)
	t.Logf("release 2 wrote %d bytes (%.1f MiB) next to release 1's %d", wrote, float64(wrote)/mib, used)
	if code == 0 || !isQuotaError(out) || used+wrote > limit+mib {
		t.Fatalf("release 2 wrote %d bytes (exit %d) with %d used of %d: %s", wrote, code, used, limit, out)
	}
	if err := r.q.RemoveApp(ctx, app); !errors.Is(err, ErrAppHasContainers) {
		t.Fatalf("RemoveApp with running containers: %v, want ErrAppHasContainers", err)
	}
	// The app is full: a new container gets no room. Where not even its
	// directories fit, Create says so. Btrfs before about 6.2 reserves
	// less for a mkdir: there the directories fit in the last few hundred
	// KiB and the container fails at start or at its first write.
	full := r.spec(app, uid, limit, bps, "dd if=/dev/zero of=/f bs=1M count=2")
	if id, err := r.eng.Create(ctx, full); err != nil {
		if !strings.Contains(err.Error(), "at its disk limit") {
			t.Fatalf("Create for a full app: %v, want an error saying the app is at its disk limit", err)
		}
	} else {
		t.Logf("a full app's new container directories fit; its writes must not")
		if err := r.eng.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		if id, err = r.eng.Run(ctx, full); err != nil {
			if !errors.Is(err, syscall.EDQUOT) && !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Run for a full app: %v, want a disk quota error", err)
			}
		} else {
			st, out := r.wait(id, 30*time.Second), r.logText(id)
			if st.Code == 0 || !isQuotaError(out) {
				t.Fatalf("a full app's new container wrote 2 MiB: %v: %s", st, out)
			}
			if err := r.eng.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The daemon restarts: new Disk, EngineQuota and engine over the same
	// roots, with the containers still running and the pool still mounted.
	r.open(true)
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stray container directory survived Restore: %v", err)
	}
	r.checkCap(newer, bps)
	info, err := r.eng.Inspect(old)
	if err != nil {
		t.Fatal(err)
	}
	// Release 1 retires after the restart: the new EngineQuota, which never
	// saw it start, still removes its ifb and its upper dir.
	if err := r.eng.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(IFBName(info.HostVeth)); err == nil {
		t.Fatalf("ifb of a container deleted after the restart left behind")
	}
	if u := r.usage(app); u > used+wrote-19*mib {
		t.Fatalf("Usage after deleting release 1 = %d, was %d + %d", u, used, wrote)
	}
	// Release 3, after the restart, gets the same caps, and they bind.
	third := r.run(r.spec(app, uid, limit, bps, netScript(4<<20)))
	r.checkCap(third, bps)
	in, outRate := r.measure(third, 4<<20)
	if in < 0.8*bps || in > 1.2*bps || outRate < 0.8*bps || outRate > 1.2*bps {
		t.Errorf("after the restart: %.2f mbit/s in, %.2f out; want within 20%% of 10", in/1e6, outRate/1e6)
	}

	// A full stop: containers gone, the pool unmounted and its loop device
	// detached; then a start from the state file alone.
	for _, id := range []string{newer, third} {
		if err := r.eng.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.disk.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if m, l := mountsUnder(t, r.qroot), loopsUnder(t, r.qroot); len(m) > 0 || len(l) > 0 {
		t.Fatalf("after Close: mounts %v, loop devices %v", m, l)
	}
	r.open(true)
	if l, ok := r.disk.Limit(app); !ok || l != limit {
		t.Fatalf("limit after the restart = %d, %v", l, ok)
	}
	fresh := r.run(r.spec(app, uid, limit, bps, fillScript("/big", 64)))
	st := r.wait(fresh, 60*time.Second)
	log := r.logText(fresh)
	wrote = parseSize(t, log)
	t.Logf("after a full restart the app wrote %d bytes (%.1f MiB) under its 32 MiB limit", wrote, float64(wrote)/mib)
	if st.Code == 0 || !isQuotaError(log) || wrote > limit || wrote < limit*3/4 {
		t.Fatalf("after a full restart: wrote %d bytes, %v: %s", wrote, st, log)
	}
	if err := r.eng.Delete(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if err := r.q.RemoveApp(ctx, app); err != nil {
		t.Fatal(err)
	}
}

// firstLine returns the first line of out that starts with prefix.
func firstLine(out, prefix string) string {
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// randomHex returns n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// buildBusyboxRootfs makes a tiny rootfs layer at root from the host's
// static busybox, with a symlink per applet.
func buildBusyboxRootfs(t *testing.T, root string) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		skipOrFail(t, "busybox-static is not installed: "+err.Error())
	}
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("list busybox applets: %v", err)
	}
	for _, app := range strings.Fields(string(list)) {
		if app == "busybox" || strings.ContainsAny(app, "/[") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}
