package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// loopDriver gives each app its own sparse ext4 image, sized so that the
// space an unprivileged writer can fill is the app's limit, mounted through
// a loop device. It needs no kernel quota support, but costs one loop
// device per app and can grow a limit online but not shrink it.
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
	dir := l.dir(app)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create app directory: %w", err)
	}
	if err := os.Chown(dir, a.UID, a.UID); err != nil {
		return "", fmt.Errorf("chown app directory: %w", err)
	}
	if a.BaseBytes == 0 {
		st, err := l.statfs(app)
		if err != nil {
			return "", err
		}
		a.BaseBytes = int64(st.Blocks-st.Bfree) * st.Bsize
		a.BaseInodes = int64(st.Files - st.Ffree)
	}
	return dir, nil
}

// create makes the app's image. The space left for files is the image size
// minus ext4's overhead (journal, inode tables, the delayed-allocation
// reserve), which depends on the size, so it makes the filesystem once,
// measures what a non-root writer can use, and makes it again with the
// difference corrected.
func (l *loopDriver) create(ctx context.Context, app string, a *appState) error {
	size := a.Limit + a.Limit/16 + 8<<20
	tmp := l.image(app) + ".tmp"
	tmpMnt := l.mnt(app) + ".probe"
	defer os.Remove(tmpMnt)
	for attempt := 0; ; attempt++ {
		if err := l.mkfs(ctx, tmp, size, inodeLimit(a.Limit)); err != nil {
			os.Remove(tmp)
			return err
		}
		avail, err := l.measure(tmp, tmpMnt)
		if err != nil {
			os.Remove(tmp)
			return err
		}
		diff := avail - a.Limit
		// Within 1 MiB (or 1%) above the limit is as close as ext4's
		// allocation granularity gets; never below it.
		if diff >= 0 && (diff <= 1<<20 || diff <= a.Limit/100) || attempt == 3 {
			break
		}
		size -= diff
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
	// -N: a fixed inode count, the driver's inode limit;
	// lazy init off so the first mount does not write inode tables in the
	// background, which would count against nothing but slow the host.
	if _, err := run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-N", strconv.FormatInt(inodes, 10),
		"-E", "lazy_itable_init=0,lazy_journal_init=0", "-L", "berth-quota", image); err != nil {
		return fmt.Errorf("create loop filesystem: %w", err)
	}
	return nil
}

// measure mounts image briefly and returns the bytes a non-root writer can
// use on it.
func (l *loopDriver) measure(image, target string) (int64, error) {
	if err := mountImage(image, target, "ext4", ""); err != nil {
		return 0, err
	}
	var st unix.Statfs_t
	err := unix.Statfs(target, &st)
	if uerr := unmountAll(target); err == nil {
		err = uerr
	}
	if err != nil {
		return 0, fmt.Errorf("measure loop filesystem: %w", err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

func (l *loopDriver) setLimit(ctx context.Context, app string, a *appState, limit int64) error {
	if limit < a.Limit {
		return fmt.Errorf("set loop limit to %s (now %s): an ext4 image in use can only grow; remove the app's quota while no container runs and ensure it again, or use the btrfs driver: %w",
			FormatSize(limit), FormatSize(a.Limit), ErrShrinkUnsupported)
	}
	st, err := l.statfs(app)
	if err != nil {
		return err
	}
	grow := limit - int64(st.Bavail)*st.Bsize - (a.BaseBytes - int64(st.Blocks-st.Bfree)*st.Bsize)
	if grow <= 0 {
		return nil
	}
	fi, err := os.Stat(l.image(app))
	if err != nil {
		return fmt.Errorf("grow loop image: %w", err)
	}
	// Growing the filesystem adds inode tables too, so add a margin; the
	// limit is approximate to ext4's block-group granularity anyway.
	newSize := fi.Size() + grow + grow/32
	if err := os.Truncate(l.image(app), newSize); err != nil {
		return fmt.Errorf("grow loop image: %w", err)
	}
	dev, err := loopFind(l.image(app))
	if err != nil {
		return err
	}
	if dev == "" {
		return fmt.Errorf("grow loop image %s: not attached", l.image(app))
	}
	if err := loopSetCapacity(dev); err != nil {
		return err
	}
	if _, err := run(ctx, "resize2fs", dev); err != nil {
		return fmt.Errorf("grow loop filesystem: %w", err)
	}
	l.logger.Info("loop image grown", "app", app, "size", newSize, "limit", limit)
	return nil
}

func (l *loopDriver) usage(ctx context.Context, app string, a *appState) (Usage, error) {
	st, err := l.statfs(app)
	if err != nil {
		return Usage{}, err
	}
	return Usage{
		Bytes:       max(int64(st.Blocks-st.Bfree)*st.Bsize-a.BaseBytes, 0),
		Inodes:      max(int64(st.Files-st.Ffree)-a.BaseInodes, 0),
		LimitBytes:  a.Limit,
		LimitInodes: int64(st.Files) - a.BaseInodes,
	}, nil
}

func (l *loopDriver) remove(ctx context.Context, app string, a *appState, last bool) error {
	if err := unmountAll(l.mnt(app)); err != nil {
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
			if err := unmountAll(filepath.Join(l.root, "loop", e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
