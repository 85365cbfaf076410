package quota

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/berthhq/berth/internal/units"
	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// newTestDisk creates a Disk with the given driver under root and removes
// every app quota it still has at the end of the test.
func newTestDisk(t *testing.T, root, driver string) *Disk {
	t.Helper()
	d, err := NewDisk(DiskConfig{Root: root, Driver: driver, PoolSize: 512 * mib}, testLogger(t))
	if err != nil {
		t.Fatalf("NewDisk(%s): %v", driver, err)
	}
	t.Cleanup(func() { cleanupDisk(t, d) })
	return d
}

// cleanupDisk removes all of d's app quotas.
func cleanupDisk(t *testing.T, d *Disk) {
	t.Helper()
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return
	}
	for _, app := range d.Apps() {
		if err := d.Remove(context.Background(), app); err != nil {
			t.Errorf("cleanup: remove %s: %v", app, err)
		}
	}
	if err := d.Close(context.Background()); err != nil {
		t.Errorf("cleanup: close: %v", err)
	}
}

// isFull reports whether errno is what a write past a disk limit gets.
func isFull(errno syscall.Errno) bool {
	return errno == unix.EDQUOT || errno == unix.ENOSPC
}

// checkFilled asserts that a write stopped by the limit wrote about
// limit bytes: not much less (the limit is usable) and not more than a
// little allocation slack.
func checkFilled(t *testing.T, what string, written int64, errno syscall.Errno, limit int64) {
	t.Helper()
	if !isFull(errno) {
		t.Fatalf("%s: write past the limit ended with %v after %d bytes, want EDQUOT or ENOSPC", what, errno, written)
	}
	if written < limit*85/100 || written > limit+limit/50+mib {
		t.Fatalf("%s: wrote %d bytes before %v, want about the limit %d", what, written, errno, limit)
	}
}

// driverScenario is the acceptance scenario every disk driver passes: two
// apps with independent limits, enforced on writes by their host UIDs,
// changeable, surviving a restart, and removed without trace.
func driverScenario(t *testing.T, driver string, root string) {
	ctx := context.Background()
	d := newTestDisk(t, root, driver)
	if d.Driver() != driver {
		t.Fatalf("Driver() = %s, want %s", d.Driver(), driver)
	}
	uidA, uidB := testUID(1), testUID(2)
	const limitA, limitB = 32 * mib, 64 * mib

	dirA, err := d.Ensure(ctx, "app-a", uidA, limitA)
	if err != nil {
		t.Fatal(err)
	}
	dirB, err := d.Ensure(ctx, "app-b", uidB, limitB)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dirA, &st); err != nil || int(st.Uid) != uidA {
		t.Fatalf("app dir %s owner = %d (%v), want %d", dirA, st.Uid, err, uidA)
	}

	// App A writes past its limit and is stopped at it.
	written, errno := writeAs(t, uidA, dirA, "fill", 2*limitA)
	checkFilled(t, "app-a", written, errno, limitA)

	// App B, with a larger independent limit, can still write more than
	// A's limit; then it too is stopped at its own.
	written, errno = writeAs(t, uidB, dirB, "fill", limitA+16*mib)
	if errno != 0 || written != limitA+16*mib {
		t.Fatalf("app-b wrote %d bytes (%v) while app-a was full, want %d", written, errno, limitA+16*mib)
	}
	written2, errno := writeAs(t, uidB, dirB, "more", limitB)
	checkFilled(t, "app-b", written+written2, errno, limitB)

	// The host is unaffected: its own filesystem still takes writes.
	if err := os.WriteFile(filepath.Join(root, "host-probe"), make([]byte, 4*mib), 0o600); err != nil {
		t.Fatalf("host write after apps filled up: %v", err)
	}

	u, err := d.Usage(ctx, "app-a")
	if err != nil {
		t.Fatal(err)
	}
	if u.Bytes < limitA*85/100 || u.Bytes > limitA+2*mib || u.LimitBytes != limitA {
		t.Fatalf("Usage(app-a) = %+v, want about %d bytes of %d", u, limitA, limitA)
	}
	if u.Inodes < 2 && u.Inodes != -1 {
		t.Fatalf("Usage(app-a).Inodes = %d, want the directory and file counted", u.Inodes)
	}

	// Raising the limit lets app A write about the difference more.
	if err := d.SetLimit(ctx, "app-a", limitA+16*mib); err != nil {
		t.Fatal(err)
	}
	written, errno = writeAs(t, uidA, dirA, "after-raise", 64*mib)
	if !isFull(errno) || written < 12*mib || written > 18*mib {
		t.Fatalf("after raising the limit by 16 MiB app-a wrote %d bytes (%v), want about 16 MiB then EDQUOT/ENOSPC", written, errno)
	}

	// A restart: Close releases mounts and loop devices, a new Disk
	// restores them with the data in place.
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if l := loopsUnder(t, root); len(l) > 0 {
		t.Fatalf("loop devices still attached after Close: %v", l)
	}
	d2 := newTestDisk(t, root, DriverAuto)
	if d2.Driver() != driver {
		t.Fatalf("restarted Disk chose %s, want the recorded %s", d2.Driver(), driver)
	}
	if err := d2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dirA, "fill")); err != nil || fi.Size() < limitA*85/100 {
		t.Fatalf("app-a's file after restore: %v, %v", fi, err)
	}
	if got, err := d2.Dir("app-a"); err != nil || got != dirA {
		t.Fatalf("Dir after restore = %q, %v; want %q", got, err, dirA)
	}
	again, err := d2.Ensure(ctx, "app-a", uidA, limitA+16*mib)
	if err != nil || again != dirA {
		t.Fatalf("Ensure after restore = %q, %v; want %q", again, err, dirA)
	}
	written, errno = writeAs(t, uidA, dirA, "after-restore", 8*mib)
	if !isFull(errno) || written > mib {
		t.Fatalf("after restore app-a (full) wrote %d bytes (%v), want the limit still enforced", written, errno)
	}

	// Remove deletes everything.
	for _, app := range []string{"app-a", "app-b"} {
		if err := d2.Remove(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	if l := loopsUnder(t, root); len(l) > 0 {
		t.Fatalf("loop devices still attached after Remove: %v", l)
	}
	if m := mountsUnder(t, root); len(m) > 0 {
		t.Fatalf("still mounted after Remove: %v", m)
	}
	for _, dir := range []string{dirA, dirB} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still exists after Remove: %v", dir, err)
		}
	}
	if _, err := d2.Usage(ctx, "app-a"); !errors.Is(err, ErrNoQuota) {
		t.Fatalf("Usage after Remove: %v, want ErrNoQuota", err)
	}
}

// requireDriver skips (or fails under CI) when a driver does not work.
func requireDriver(t *testing.T, root, driver string) {
	t.Helper()
	d, err := NewDisk(DiskConfig{Root: root, Driver: DriverAuto}, testLogger(t))
	if err != nil {
		skipOrFail(t, err.Error())
	}
	for _, s := range d.Detect() {
		if s.Name == driver && !s.Available {
			skipOrFail(t, driver+" driver unavailable: "+s.Reason)
		}
	}
}

func TestBtrfsPoolDriver(t *testing.T) {
	requireRoot(t)
	root := quotaRoot(t)
	requireDriver(t, root, DriverBtrfs)
	driverScenario(t, DriverBtrfs, root)
	// The pool went with the last app.
	for _, p := range []string{"btrfs.img", "btrfs"} {
		if _, err := os.Stat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left after the last app was removed: %v", p, err)
		}
	}
}

func TestLoopDriver(t *testing.T) {
	requireRoot(t)
	root := quotaRoot(t)
	requireDriver(t, root, DriverLoop)
	driverScenario(t, DriverLoop, root)
	if ents, err := filepath.Glob(filepath.Join(root, "loop", "*")); err != nil || len(ents) > 0 {
		t.Fatalf("loop images left after Remove: %v %v", ents, err)
	}
}

func TestLowerLimit(t *testing.T) {
	requireRoot(t)
	for _, driver := range []string{DriverBtrfs, DriverLoop} {
		t.Run(driver, func(t *testing.T) {
			root := quotaRoot(t)
			requireDriver(t, root, driver)
			ctx := context.Background()
			d := newTestDisk(t, root, driver)
			uid := testUID(3)
			dir, err := d.Ensure(ctx, "lower", uid, 64*mib)
			if err != nil {
				t.Fatal(err)
			}
			if written, errno := writeAs(t, uid, dir, "first", 8*mib); errno != 0 || written != 8*mib {
				t.Fatalf("wrote %d bytes (%v) under a 64 MiB limit, want 8 MiB", written, errno)
			}
			// Lowered to 24 MiB with 8 MiB used, about 16 MiB more fit.
			if err := d.SetLimit(ctx, "lower", 24*mib); err != nil {
				t.Fatal(err)
			}
			written, errno := writeAs(t, uid, dir, "second", 64*mib)
			checkFilled(t, "after lowering", 8*mib+written, errno, 24*mib)
			if l, _ := d.Limit("lower"); l != 24*mib {
				t.Fatalf("Limit = %d, want 24 MiB", l)
			}
			// Below current use: btrfs accepts (writes fail until files are
			// deleted); the loop driver cannot take back used space.
			err = d.SetLimit(ctx, "lower", 16*mib)
			switch driver {
			case DriverLoop:
				if !errors.Is(err, ErrShrinkUnsupported) {
					t.Fatalf("lowering the loop limit below use: %v, want ErrShrinkUnsupported", err)
				}
				if l, _ := d.Limit("lower"); l != 24*mib {
					t.Fatalf("limit after refused lowering = %d, want unchanged", l)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if written, errno := writeAs(t, uid, dir, "third", mib); !isFull(errno) || written > 0 {
					t.Fatalf("over the lowered limit the app wrote %d bytes (%v), want EDQUOT at once", written, errno)
				}
			}
		})
	}
}

func TestBtrfsHostFilesystem(t *testing.T) {
	requireRoot(t)
	outer := quotaRoot(t)
	requireDriver(t, outer, DriverBtrfs)
	// A btrfs filesystem standing in for a host whose data directory is on
	// btrfs: the driver must use it directly, without a pool image.
	image := filepath.Join(outer, "host.img")
	if err := os.WriteFile(image, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, 300*mib); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.btrfs", "-q", "-f", image).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v: %s", err, out)
	}
	host := filepath.Join(outer, "host")
	if err := mountImage(image, host, "btrfs", ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := releaseMount(host, testLogger(t)); err != nil {
			t.Error(err)
		}
	})
	root := filepath.Join(host, "var", "lib", "berth", "quota")
	ctx := context.Background()
	d := newTestDisk(t, root, DriverBtrfs)
	if !strings.Contains(d.Mechanism(), "host's btrfs") {
		t.Fatalf("Mechanism() = %q, want the host's btrfs used directly", d.Mechanism())
	}
	dir, err := d.Ensure(ctx, "onhost", testUID(4), 16*mib)
	if err != nil {
		t.Fatal(err)
	}
	written, errno := writeAs(t, testUID(4), dir, "fill", 64*mib)
	checkFilled(t, "onhost", written, errno, 16*mib)
	if _, err := os.Stat(filepath.Join(root, "btrfs.img")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a pool image was made on a btrfs host: %v", err)
	}
	if err := d.Remove(ctx, "onhost"); err != nil {
		t.Fatal(err)
	}
	if ok, err := isSubvol(dir); err != nil || ok {
		t.Fatalf("subvolume %s left after Remove: %v %v", dir, ok, err)
	}
}

func TestDetectExplains(t *testing.T) {
	root := t.TempDir()
	d, err := NewDisk(DiskConfig{Root: root}, testLogger(t))
	if err != nil {
		skipOrFail(t, "no disk driver works here: "+err.Error())
	}
	statuses := d.Detect()
	var names []string
	for _, s := range statuses {
		names = append(names, s.Name)
		if s.Reason == "" {
			t.Errorf("driver %s has no reason", s.Name)
		}
	}
	if strings.Join(names, ",") != "setquota,btrfs,loop" {
		t.Fatalf("drivers = %v, want setquota,btrfs,loop in order of preference", names)
	}
	// auto takes the first available driver.
	for _, s := range statuses {
		if s.Available {
			if d.Driver() != s.Name {
				t.Fatalf("auto chose %s, want the first available %s", d.Driver(), s.Name)
			}
			break
		}
	}
	t.Logf("chosen: %s (%s)", d.Driver(), d.Mechanism())
	for _, s := range statuses {
		t.Logf("%s available=%v: %s", s.Name, s.Available, s.Reason)
	}
}

func TestNewDiskValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  DiskConfig
		want error
	}{
		{name: "unknown driver", cfg: DiskConfig{Driver: "zfs"}, want: ErrUnknownDriver},
		{name: "no root", cfg: DiskConfig{Root: "-"}, want: ErrDriverUnavailable},
		{name: "negative pool", cfg: DiskConfig{PoolSize: -1}, want: ErrInvalidSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			switch cfg.Root {
			case "":
				cfg.Root = t.TempDir()
			case "-":
				cfg.Root = ""
			}
			if _, err := NewDisk(cfg, nil); !errors.Is(err, tt.want) {
				t.Fatalf("NewDisk(%+v) = %v, want %v", cfg, err, tt.want)
			}
		})
	}
}

func TestEnsureValidation(t *testing.T) {
	root := t.TempDir()
	d, err := NewDisk(DiskConfig{Root: root}, testLogger(t))
	if err != nil {
		skipOrFail(t, "no disk driver works here: "+err.Error())
	}
	tests := []struct {
		name  string
		app   string
		uid   int
		limit int64
		want  error
	}{
		{name: "path in app name", app: "../x", uid: 5000, limit: 64 * mib, want: ErrInvalidApp},
		{name: "empty app", app: "", uid: 5000, limit: 64 * mib, want: ErrInvalidApp},
		{name: "root uid", app: "ok", uid: 0, limit: 64 * mib, want: ErrInvalidLimit},
		{name: "tiny limit", app: "ok", uid: 5000, limit: 1024, want: ErrInvalidSize},
		{name: "negative limit", app: "ok", uid: 5000, limit: -1, want: ErrInvalidSize},
		{name: "absurd limit", app: "ok", uid: 5000, limit: units.MaxSize + 1, want: ErrInvalidSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := d.Ensure(context.Background(), tt.app, tt.uid, tt.limit); !errors.Is(err, tt.want) {
				t.Fatalf("Ensure(%q, %d, %d) = %v, want %v", tt.app, tt.uid, tt.limit, err, tt.want)
			}
		})
	}
	if err := d.SetLimit(context.Background(), "nope", 64*mib); !errors.Is(err, ErrNoQuota) {
		t.Fatalf("SetLimit on unknown app = %v, want ErrNoQuota", err)
	}
	if err := d.Remove(context.Background(), "nope"); err != nil {
		t.Fatalf("Remove of unknown app = %v, want nil", err)
	}
}

// kernelLacksQuota returns which kernel options ext4 user quotas need are
// missing from the running kernel's configuration, or "" when they are
// all present or the configuration cannot be read.
func kernelLacksQuota() string {
	var missing []string
	for _, opt := range []string{"CONFIG_QUOTA", "CONFIG_QUOTACTL", "CONFIG_QFMT_V2"} {
		v, known := kernelConfig(opt)
		if !known {
			// No readable kernel config: the quota core registers
			// /proc/sys/fs/quota, so its absence still proves the lack.
			if _, err := os.Stat("/proc/sys/fs/quota"); errors.Is(err, os.ErrNotExist) {
				return "CONFIG_QUOTA (no /proc/sys/fs/quota)"
			}
			return ""
		}
		if v != "y" && v != "m" {
			missing = append(missing, opt)
		}
	}
	return strings.Join(missing, ", ")
}

func TestSetquotaDriver(t *testing.T) {
	requireRoot(t)
	// The skip below is the one allowed under CI: the kernel genuinely
	// cannot enforce ext4 user quotas. Anything else that stops the test
	// fails it under CI.
	if missing := kernelLacksQuota(); missing != "" {
		t.Skipf("kernel built without %s: ext4 user quotas cannot be enforced on this kernel; the btrfs and loop drivers cover it", missing)
	}
	outer := quotaRoot(t)
	image := filepath.Join(outer, "quota.img")
	if err := os.WriteFile(image, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, 128*mib); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "quota", "-E", "quotatype=usrquota", image).CombinedOutput(); err != nil {
		skipOrFail(t, "mkfs.ext4 -O quota: "+err.Error()+": "+string(out))
	}
	fs := filepath.Join(outer, "fs")
	if err := mountImage(image, fs, "ext4", "usrquota"); err != nil {
		skipOrFail(t, "the kernel config has quota support but mounting ext4 with usrquota failed: "+err.Error())
	}
	t.Cleanup(func() {
		if err := releaseMount(fs, testLogger(t)); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	d := newTestDisk(t, filepath.Join(fs, "quota"), DriverAuto)
	if d.Driver() != DriverSetquota {
		t.Fatalf("auto chose %s on a usrquota filesystem, want setquota; detect: %+v", d.Driver(), d.Detect())
	}
	uidA, uidB := testUID(5), testUID(6)
	dirA, err := d.Ensure(ctx, "quota-a", uidA, 16*mib)
	if err != nil {
		t.Fatal(err)
	}
	dirB, err := d.Ensure(ctx, "quota-b", uidB, 32*mib)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Ensure(ctx, "quota-c", uidA, 16*mib); !errors.Is(err, ErrUIDInUse) {
		t.Fatalf("second app on uid %d: %v, want ErrUIDInUse", uidA, err)
	}
	written, errno := writeAs(t, uidA, dirA, "fill", 64*mib)
	checkFilled(t, "quota-a", written, errno, 16*mib)
	if written, errno := writeAs(t, uidB, dirB, "fill", 24*mib); errno != 0 || written != 24*mib {
		t.Fatalf("quota-b wrote %d bytes (%v) while quota-a was full, want 24 MiB", written, errno)
	}
	u, err := d.Usage(ctx, "quota-a")
	if err != nil {
		t.Fatal(err)
	}
	if u.Bytes < 16*mib*85/100 || u.LimitBytes != 16*mib || u.LimitInodes != inodeLimit(16*mib) || u.Inodes < 2 {
		t.Fatalf("Usage(quota-a) = %+v", u)
	}
	if err := d.SetLimit(ctx, "quota-a", 32*mib); err != nil {
		t.Fatal(err)
	}
	written, errno = writeAs(t, uidA, dirA, "more", 64*mib)
	if !isFull(errno) || written < 12*mib || written > 17*mib {
		t.Fatalf("after raising by 16 MiB quota-a wrote %d bytes (%v)", written, errno)
	}
	for _, app := range []string{"quota-a", "quota-b"} {
		if err := d.Remove(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	var q dqblk
	dev, _, _, err := newSetquotaDriver(DiskConfig{Root: fs}, testLogger(t)).device()
	if err != nil {
		t.Fatal(err)
	}
	if err := quotactl(qGetQuota, dev, uidA, unsafe.Pointer(&q)); err != nil || q.bHardLimit != 0 || q.iHardLimit != 0 {
		t.Fatalf("uid %d quota after Remove: %+v, %v; want no limits", uidA, q, err)
	}
}

func TestRestoreReusesAttachedLoop(t *testing.T) {
	requireRoot(t)
	for _, driver := range []string{DriverBtrfs, DriverLoop} {
		t.Run(driver, func(t *testing.T) {
			root := quotaRoot(t)
			requireDriver(t, root, driver)
			ctx := context.Background()
			d := newTestDisk(t, root, driver)
			uid := testUID(7)
			dir, err := d.Ensure(ctx, "held", uid, 16*mib)
			if err != nil {
				t.Fatal(err)
			}
			// A second mount of the app directory stands in for a running
			// container's overlay, which keeps the filesystem (and so its
			// loop device) alive after the daemon unmounts its own view.
			held := filepath.Join(root, "held-by-container")
			if err := os.Mkdir(held, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount(dir, held, "", unix.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Unmount(held, 0) })
			if err := d.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if l := loopsUnder(t, root); len(l) != 1 {
				t.Fatalf("loop devices while a container holds the filesystem: %v, want 1", l)
			}
			d2 := newTestDisk(t, root, driver)
			if err := d2.Restore(ctx); err != nil {
				t.Fatal(err)
			}
			if l := loopsUnder(t, root); len(l) != 1 {
				t.Fatalf("loop devices after Restore: %v, want the held one reused", l)
			}
			// Both views are the same filesystem: a file written through
			// one appears in the other.
			if written, errno := writeAs(t, uid, dir, "shared", mib); errno != 0 || written != mib {
				t.Fatalf("write after restore: %d, %v", written, errno)
			}
			if _, err := os.Stat(filepath.Join(held, "shared")); err != nil {
				t.Fatalf("restored mount is not the held filesystem: %v", err)
			}
			if err := unix.Unmount(held, 0); err != nil {
				t.Fatal(err)
			}
			if err := d2.Remove(ctx, "held"); err != nil {
				t.Fatal(err)
			}
			if l := loopsUnder(t, root); len(l) != 0 {
				t.Fatalf("loop devices after Remove: %v", l)
			}
		})
	}
}

func TestOverlayUpperLimited(t *testing.T) {
	requireRoot(t)
	if !kernelHasFS("overlay") {
		skipOrFail(t, "the kernel has no overlayfs")
	}
	for _, driver := range []string{DriverBtrfs, DriverLoop} {
		t.Run(driver, func(t *testing.T) {
			root := quotaRoot(t)
			requireDriver(t, root, driver)
			ctx := context.Background()
			d := newTestDisk(t, root, driver)
			uid := testUID(8)
			dir, err := d.Ensure(ctx, "ovl", uid, 16*mib)
			if err != nil {
				t.Fatal(err)
			}
			// What the engine does: a container's upper and work dirs
			// under the app directory, a read-only lower layer elsewhere.
			lower := filepath.Join(root, "lower")
			merged := filepath.Join(root, "merged")
			for _, p := range []string{lower, merged, filepath.Join(dir, "c1", "upper"), filepath.Join(dir, "c1", "work")} {
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// The engine hands the upper dir to the container's root.
			if err := os.Chown(filepath.Join(dir, "c1", "upper"), uid, uid); err != nil {
				t.Fatal(err)
			}
			opts := "lowerdir=" + lower + ",upperdir=" + filepath.Join(dir, "c1", "upper") + ",workdir=" + filepath.Join(dir, "c1", "work")
			if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
				t.Fatalf("mount overlay: %v", err)
			}
			t.Cleanup(func() { unix.Unmount(merged, 0) })
			written, errno := writeAs(t, uid, merged, "fill", 64*mib)
			checkFilled(t, "through overlay", written, errno, 16*mib)
			// The writes landed in the app's limited directory.
			u, err := d.Usage(ctx, "ovl")
			if err != nil {
				t.Fatal(err)
			}
			if u.Bytes < 16*mib*85/100 {
				t.Fatalf("Usage after filling through the overlay = %+v", u)
			}
			if err := unix.Unmount(merged, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBtrfsPoolGrowsToFitLimits(t *testing.T) {
	requireRoot(t)
	root := quotaRoot(t)
	requireDriver(t, root, DriverBtrfs)
	ctx := context.Background()
	d := newTestDisk(t, root, DriverBtrfs) // a 512 MiB pool
	uid := testUID(9)
	if _, err := d.Ensure(ctx, "big-a", uid, 400*mib); err != nil {
		t.Fatal(err)
	}
	dirB, err := d.Ensure(ctx, "big-b", uid+1, 400*mib)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "btrfs.img"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 800*mib {
		t.Fatalf("pool image is %d bytes for 800 MiB of limits, want it grown", fi.Size())
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dirB, &st); err != nil {
		t.Fatal(err)
	}
	if total := int64(st.Blocks) * st.Bsize; total < 800*mib {
		t.Fatalf("pool filesystem is %d bytes after growing, want at least 800 MiB", total)
	}
	// Growing is sparse: the image holds little real data.
	var ist unix.Stat_t
	if err := unix.Stat(filepath.Join(root, "btrfs.img"), &ist); err != nil {
		t.Fatal(err)
	}
	if ist.Blocks*512 > 128*mib {
		t.Fatalf("pool image allocates %d bytes on the host, want it sparse", ist.Blocks*512)
	}
}
