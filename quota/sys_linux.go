package quota

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// run runs a program and returns its standard output. Its standard error
// goes into the error, because that is where mkfs and btrfs say what went
// wrong.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return "", fmt.Errorf("run %s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

// mountOf returns the mount holding path (the longest mount point that is a
// prefix of it).
func mountOf(path string) (*mountinfo.Info, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(path))
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		if best == nil || len(m.Mountpoint) > len(best.Mountpoint) ||
			(len(m.Mountpoint) == len(best.Mountpoint) && m.ID > best.ID) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("find mount of %s: not found", path)
	}
	return best, nil
}

// mountAt returns the mount whose mount point is exactly path, or nil.
func mountAt(path string) (*mountinfo.Info, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	if len(mounts) == 0 {
		return nil, nil
	}
	return mounts[len(mounts)-1], nil
}

// unmountAll unmounts path until nothing is mounted there (mounts can be
// stacked). A path that does not exist or is not a mount point is fine.
func unmountAll(path string) error {
	for range 16 {
		m, err := mountAt(path)
		if err != nil {
			return err
		}
		if m == nil {
			return nil
		}
		if err := unix.Unmount(path, 0); err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 16 unmounts", path)
}

// loopAttach attaches image to a free loop device with LO_FLAGS_AUTOCLEAR
// and returns the open device. The caller mounts it and then closes the
// file: from then on the kernel detaches the device by itself when the
// filesystem is unmounted, so no loop device outlives its mount, even if
// this process dies. Other processes grab loop devices too, so a device
// that was free a moment ago may be taken; then it tries the next.
func loopAttach(image string) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("attach loop device: %w", err)
	}
	defer ctl.Close()
	backing, err := os.OpenFile(image, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("attach loop device: %w", err)
	}
	defer backing.Close()
	var lastErr error
	for range 32 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("attach loop device for %s: %v: %w", image, err, ErrNoLoopDevice)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("attach loop device for %s: open %s: %v: %w", image, dev, err, ErrNoLoopDevice)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], image)
		err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		if err == nil {
			return f, nil
		}
		f.Close()
		lastErr = err
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attach %s to %s: %w", image, dev, err)
		}
	}
	return nil, fmt.Errorf("attach loop device for %s: every device was busy (%v): %w", image, lastErr, ErrNoLoopDevice)
}

// loopFind returns the loop device (e.g. /dev/loop3) that image is attached
// to, or "" if none. A filesystem that was unmounted while an overlay still
// used it keeps its loop device; mounting that device again (instead of
// attaching the image a second time) keeps one writer per image. It reads
// sysfs rather than opening the devices, because an open loop device is
// not detached by autoclear until it is closed again.
func loopFind(image string) (string, error) {
	paths, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return "", fmt.Errorf("find loop device of %s: %w", image, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // detached meanwhile
		}
		if strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)") == image {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(p))), nil
		}
	}
	return "", nil
}

// releaseMount unmounts the loop-backed filesystem at target and, unless
// something else still uses that filesystem (another mount of it, or an
// overlay with its upper directory on it), waits for the kernel to detach
// the loop device. Autoclear detaches it on the device's last close, which
// can come a moment after the unmount when another process briefly has the
// device open (blkid, btrfs device scans, losetup -a).
func releaseMount(target string, logger *slog.Logger) error {
	m, err := mountAt(target)
	if err != nil || m == nil {
		return err
	}
	if err := unmountAll(target); err != nil {
		return err
	}
	dev, ok := strings.CutPrefix(m.Source, "/dev/")
	if !ok || !strings.HasPrefix(dev, "loop") {
		return nil
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	for _, o := range mounts {
		if (o.Major == m.Major && o.Minor == m.Minor) ||
			(o.FSType == "overlay" && strings.Contains(","+o.VFSOptions, ",upperdir="+target+"/")) {
			logger.Info("filesystem still in use after unmount; its loop device stays until then", "at", target, "device", m.Source, "user", o.Mountpoint)
			return nil
		}
	}
	bound := filepath.Join("/sys/block", dev, "loop")
	start := time.Now()
	// A busy host can take seconds to let go of a device; give up after
	// 15 s, when the kernel still detaches it later by itself.
	for wait := time.Millisecond; time.Since(start) < 15*time.Second; wait = min(2*wait, 250*time.Millisecond) {
		if _, err := os.Stat(bound); errors.Is(err, os.ErrNotExist) {
			if waited := time.Since(start); waited > 10*time.Millisecond {
				logger.Debug("loop device detached late", "device", m.Source, "waited", waited)
			}
			return nil
		}
		time.Sleep(wait)
	}
	logger.Warn("loop device still attached after unmount; the kernel detaches it when its last user closes it", "device", m.Source, "at", target)
	return nil
}

// loopSetCapacity makes a loop device pick up its image's new size.
func loopSetCapacity(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("resize loop device: %w", err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("resize loop device %s: %w", dev, err)
	}
	return nil
}

// mountImage mounts the filesystem in image at target, reusing the loop
// device the image is already attached to, if any.
func mountImage(image, target, fstype, data string) error {
	if err := os.MkdirAll(target, 0o700); err != nil {
		return fmt.Errorf("mount %s: %w", image, err)
	}
	dev, err := loopFind(image)
	if err != nil {
		return err
	}
	if dev != "" {
		if err := unix.Mount(dev, target, fstype, 0, data); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", image, dev, target, err)
		}
		return nil
	}
	f, err := loopAttach(image)
	if err != nil {
		return err
	}
	// Closing f after the mount hands the device's lifetime to the mount
	// (autoclear); closing it after a failed mount detaches it.
	defer f.Close()
	if err := unix.Mount(f.Name(), target, fstype, 0, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", image, f.Name(), target, err)
	}
	return nil
}

// kernelHasFS reports whether the running kernel supports a filesystem:
// registered already, or built as a module that mount(2) loads on first use
// (/proc/filesystems lists a module only once it is loaded, so a host that
// never mounted btrfs would otherwise lose the btrfs driver).
func kernelHasFS(fstype string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == fstype {
			return true
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	dep, err := os.ReadFile(filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]), "modules.dep"))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(dep)) {
		mod, _, _ := strings.Cut(line, ":")
		if name, _, _ := strings.Cut(filepath.Base(mod), ".ko"); name == fstype {
			return true
		}
	}
	return false
}

// kernelConfig returns the value of a kernel build option ("y", "m", or ""
// when unset) and whether the kernel configuration could be read at all
// (from /proc/config.gz or /boot/config-RELEASE).
func kernelConfig(option string) (string, bool) {
	var r io.Reader
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", false
		}
		r = zr
	} else {
		var uts unix.Utsname
		if err := unix.Uname(&uts); err != nil {
			return "", false
		}
		f, err := os.Open(filepath.Join("/boot", "config-"+unix.ByteSliceToString(uts.Release[:])))
		if err != nil {
			return "", false
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	prefix := option + "="
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return v, true
		}
	}
	if sc.Err() != nil {
		return "", false
	}
	return "", true
}

// lookTools returns an error naming the first program missing from PATH.
func lookTools(names ...string) error {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("%s not found in PATH (install it: scripts/deps.sh run)", n)
		}
	}
	return nil
}

// dirUsage counts the bytes (allocated blocks) and inodes under dir.
func dirUsage(dir string) (bytes, inodes int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		inodes++
		bytes += st.Blocks * 512
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	return bytes, inodes, nil
}
