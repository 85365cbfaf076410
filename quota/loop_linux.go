package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/berthhq/berth/internal/units"

	"golang.org/x/sys/unix"
)

// loopDriver gives each app its own sparse ext4 image mounted through a
// loop device; a root-only reserve file takes up the room beyond the app's
// limit. It needs no kernel quota support, but costs one loop device per
// app.
type loopDriver struct {
	root   string
	logger *slog.Logger
}

// newLoopDriver returns the loop driver for root.
func newLoopDriver(cfg DiskConfig, logger *slog.Logger) *loopDriver {
	return &loopDriver{root: cfg.Root, logger: logger.With("driver", DriverLoop)}
}

func (l *loopDriver) name() string { return DriverLoop }

func (l *loopDriver) probe() error {
	if !kernelHasFS("ext4") {
		return errors.New("the kernel has no ext4 support (not listed in /proc/filesystems)")
	}
	if err := lookTools("mkfs.ext4", "resize2fs"); err != nil {
		return err
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("loop devices are unavailable: %v", err)
	}
	return nil
}

func (l *loopDriver) describe() string {
	return fmt.Sprintf("sparse ext4 image per app on a loop device, under %s", filepath.Join(l.root, "loop"))
}

func (l *loopDriver) image(app string) string { return filepath.Join(l.root, "loop", app+".img") }
func (l *loopDriver) mnt(app string) string   { return filepath.Join(l.root, "loop", app) }

// dir is the app directory inside the mounted image; lost+found stays out
// of the engine's way.
func (l *loopDriver) dir(app string) string { return filepath.Join(l.mnt(app), "data") }

// statfs returns the filesystem statistics of the app's mount.
func (l *loopDriver) statfs(app string) (unix.Statfs_t, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(l.mnt(app), &st); err != nil {
		return st, fmt.Errorf("statfs %s: %w", l.mnt(app), err)
	}
	return st, nil
}

// mounted reports whether the app's image is mounted.
func (l *loopDriver) mounted(app string) (bool, error) {
	m, err := mountAt(l.mnt(app))
	if err != nil {
		return false, err
	}
	return m != nil, nil
}

func (l *loopDriver) ensure(ctx context.Context, app string, a *appState) (string, error) {
	if err := os.MkdirAll(filepath.Join(l.root, "loop"), 0o700); err != nil {
		return "", fmt.Errorf("create loop directory: %w", err)
	}
	ok, err := l.mounted(app)
	if err != nil {
		return "", err
	}
	if !ok {
		if _, err := os.Stat(l.image(app)); errors.Is(err, os.ErrNotExist) {
			if err := l.create(ctx, app, a); err != nil {
				return "", err
			}
		} else if err != nil {
			return "", fmt.Errorf("check loop image: %w", err)
		}
		if err := mountImage(l.image(app), l.mnt(app), "ext4", ""); err != nil {
			return "", err
		}
		l.logger.Info("loop image mounted", "app", app, "image", l.image(app))
	}
	// What the empty filesystem uses is not the app's.
	if a.BaseBytes == 0 {
		st, err := l.statfs(app)
		if err != nil {
			return "", err
		}
		a.BaseBytes = int64(st.Blocks-st.Bfree) * st.Bsize
		a.BaseInodes = int64(st.Files - st.Ffree)
	}
	dir := l.dir(app)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create app directory: %w", err)
	}
	if err := os.Chown(dir, a.UID, a.UID); err != nil {
		return "", fmt.Errorf("chown app directory: %w", err)
	}
	if err := l.applyLimit(ctx, app, a, a.Limit); err != nil {
		return "", err
	}
	return dir, nil
}

// create makes the app's image, sparse and big enough for twice the limit:
// the space beyond the limit is held by a reserve file (see applyLimit),
// so the limit can move within that room while the filesystem is in use.
func (l *loopDriver) create(ctx context.Context, app string, a *appState) error {
	size := 2*a.Limit + a.Limit/16 + 16<<20
	tmp := l.image(app) + ".tmp"
	if err := l.mkfs(ctx, tmp, size, inodeLimit(a.Limit)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, l.image(app)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create loop image: %w", err)
	}
	l.logger.Info("loop image created", "app", app, "image", l.image(app), "size", size, "limit", a.Limit)
	return nil
}

// mkfs (re)creates a sparse image of size bytes with an ext4 filesystem.
func (l *loopDriver) mkfs(ctx context.Context, image string, size, inodes int64) error {
	if err := os.Remove(image); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("create loop image: %w", err)
	}
	f, err := os.OpenFile(image, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("create loop image: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create loop image: %w", err)
	}
	// -m 0: no root-reserved blocks, the limit is the limit for everyone;
	// -N: a fixed inode count, the driver's inode limit.
	if _, err := run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-N", strconv.FormatInt(inodes, 10),
		"-L", "berth-quota", image); err != nil {
		return fmt.Errorf("create loop filesystem: %w", err)
	}
	return nil
}

// reserve is the root-only file that holds the space of the app's
// filesystem beyond its limit.
func (l *loopDriver) reserve(app string) string { return filepath.Join(l.mnt(app), ".berth-reserve") }

// space returns what the app's filesystem holds: bytes an unprivileged
// writer can still take, the reserve's size, and what the app uses.
func (l *loopDriver) space(app string, a *appState) (avail, reserve, used int64, err error) {
	st, err := l.statfs(app)
	if err != nil {
		return 0, 0, 0, err
	}
	var rst unix.Stat_t
	if err := unix.Stat(l.reserve(app), &rst); err == nil {
		reserve = rst.Blocks * 512
	} else if !errors.Is(err, unix.ENOENT) {
		return 0, 0, 0, fmt.Errorf("stat reserve: %w", err)
	}
	used = int64(st.Blocks-st.Bfree)*st.Bsize - a.BaseBytes - reserve
	return int64(st.Bavail) * st.Bsize, reserve, max(used, 0), nil
}

// applyLimit sizes the reserve file so that the app can use limit bytes in
// all: shrinking the reserve raises the limit, growing it lowers the
// limit. Both work on a mounted filesystem with plain file operations.
// Only a limit beyond the image's room needs the image and filesystem
// grown, which ext4 does online only with CAP_SYS_RESOURCE.
func (l *loopDriver) applyLimit(ctx context.Context, app string, a *appState, limit int64) error {
	avail, reserve, used, err := l.space(app, a)
	if err != nil {
		return err
	}
	want := avail + reserve + used - limit
	if want < 0 {
		if err := l.grow(ctx, app, -want); err != nil {
			return err
		}
		if avail, reserve, used, err = l.space(app, a); err != nil {
			return err
		}
		want = max(avail+reserve+used-limit, 0)
	}
	want &^= 4095 // whole blocks; the app may get up to a block more
	f, err := os.OpenFile(l.reserve(app), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open reserve: %w", err)
	}
	defer f.Close()
	if want <= reserve {
		if err := f.Truncate(want); err != nil {
			return fmt.Errorf("shrink reserve: %w", err)
		}
		return nil
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, want); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("lower limit to %s: the app already uses %s; delete files first: %w", units.FormatSize(limit), units.HumanSize(used), ErrShrinkUnsupported)
		}
		return fmt.Errorf("grow reserve: %w", err)
	}
	return nil
}

// grow enlarges the app's image and filesystem by at least by bytes.
func (l *loopDriver) grow(ctx context.Context, app string, by int64) error {
	fi, err := os.Stat(l.image(app))
	if err != nil {
		return fmt.Errorf("grow loop image: %w", err)
	}
	// New block groups bring inode tables along; add a margin for them.
	newSize := fi.Size() + by + by/16 + 8<<20
	dev, err := loopFind(l.image(app))
	if err != nil {
		return err
	}
	if dev == "" {
		return fmt.Errorf("grow loop image %s: not attached", l.image(app))
	}
	if err := os.Truncate(l.image(app), newSize); err != nil {
		return fmt.Errorf("grow loop image: %w", err)
	}
	if err := loopSetCapacity(dev); err != nil {
		return err
	}
	if _, err := run(ctx, "resize2fs", dev); err != nil {
		return fmt.Errorf("grow loop filesystem beyond its %s image (online ext4 resize needs CAP_SYS_RESOURCE): %w", units.HumanSize(fi.Size()), err)
	}
	l.logger.Info("loop image grown", "app", app, "size", newSize)
	return nil
}

func (l *loopDriver) setLimit(ctx context.Context, app string, a *appState, limit int64) error {
	return l.applyLimit(ctx, app, a, limit)
}

func (l *loopDriver) usage(ctx context.Context, app string, a *appState) (Usage, error) {
	st, err := l.statfs(app)
	if err != nil {
		return Usage{}, err
	}
	_, _, used, err := l.space(app, a)
	if err != nil {
		return Usage{}, err
	}
	return Usage{
		Bytes:       used,
		Inodes:      max(int64(st.Files-st.Ffree)-a.BaseInodes-1, 0),
		LimitBytes:  a.Limit,
		LimitInodes: int64(st.Files) - a.BaseInodes,
	}, nil
}

func (l *loopDriver) remove(ctx context.Context, app string, a *appState, last bool) error {
	if err := releaseMount(l.mnt(app), l.logger); err != nil {
		return fmt.Errorf("remove loop image: %w", err)
	}
	for _, p := range []string{l.mnt(app), l.image(app), l.image(app) + ".tmp"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove loop image: %w", err)
		}
	}
	l.logger.Info("loop image removed", "app", app)
	return nil
}

func (l *loopDriver) close(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(l.root, "loop"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("close loop images: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			if err := releaseMount(filepath.Join(l.root, "loop", e.Name()), l.logger); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
