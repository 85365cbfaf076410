package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// minPoolSize is the smallest btrfs pool image: mkfs.btrfs needs about
// 114 MiB for its default (dup metadata) layout.
const minPoolSize int64 = 256 << 20

// btrfsDriver gives each app a btrfs subvolume with a qgroup limit on its
// referenced bytes. When Root is on btrfs the subvolumes live there;
// otherwise they live in one sparse, loop-backed btrfs image under Root
// (the pool), which costs one loop device for all apps together.
type btrfsDriver struct {
	root     string
	poolSize int64
	logger   *slog.Logger
}

// newBtrfsDriver returns the btrfs driver for root.
func newBtrfsDriver(cfg DiskConfig, logger *slog.Logger) *btrfsDriver {
	return &btrfsDriver{root: cfg.Root, poolSize: cfg.PoolSize, logger: logger.With("driver", DriverBtrfs)}
}

func (b *btrfsDriver) name() string { return DriverBtrfs }

// base is where the subvolumes live: the pool's mount point, or a plain
// directory when Root is on btrfs.
func (b *btrfsDriver) base() string { return filepath.Join(b.root, "btrfs") }

// image is the pool image, used when Root is not on btrfs.
func (b *btrfsDriver) image() string { return filepath.Join(b.root, "btrfs.img") }

// hostBtrfs reports whether Root itself is on btrfs.
func (b *btrfsDriver) hostBtrfs() bool {
	var st unix.Statfs_t
	return unix.Statfs(b.root, &st) == nil && st.Type == unix.BTRFS_SUPER_MAGIC
}

func (b *btrfsDriver) probe() error {
	if !kernelHasFS("btrfs") {
		return errors.New("the kernel has no btrfs support (not listed in /proc/filesystems)")
	}
	if err := lookTools("btrfs"); err != nil {
		return err
	}
	if b.hostBtrfs() {
		return nil
	}
	if err := lookTools("mkfs.btrfs"); err != nil {
		return err
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("%s is not on btrfs and loop devices are unavailable (%v)", b.root, err)
	}
	return nil
}

func (b *btrfsDriver) describe() string {
	if b.hostBtrfs() {
		return fmt.Sprintf("btrfs subvolume per app with a qgroup limit, on the host's btrfs at %s", b.base())
	}
	return fmt.Sprintf("btrfs subvolume per app with a qgroup limit, in a sparse loop-backed btrfs pool %s mounted at %s", b.image(), b.base())
}

// ensurePool makes sure base() is a btrfs filesystem with quotas enabled:
// it creates or mounts the pool image when Root is not on btrfs.
func (b *btrfsDriver) ensurePool(ctx context.Context) error {
	if b.hostBtrfs() {
		if err := os.MkdirAll(b.base(), 0o700); err != nil {
			return fmt.Errorf("create btrfs base: %w", err)
		}
		return b.enableQuota(ctx)
	}
	m, err := mountAt(b.base())
	if err != nil {
		return err
	}
	if m != nil && m.FSType == "btrfs" {
		return b.enableQuota(ctx)
	}
	if _, err := os.Stat(b.image()); errors.Is(err, os.ErrNotExist) {
		if err := b.createPool(ctx); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("check btrfs pool: %w", err)
	}
	if err := mountImage(b.image(), b.base(), "btrfs", ""); err != nil {
		return fmt.Errorf("mount btrfs pool: %w", err)
	}
	b.logger.Info("btrfs pool mounted", "image", b.image(), "at", b.base())
	return b.enableQuota(ctx)
}

// createPool makes the sparse pool image and its filesystem.
func (b *btrfsDriver) createPool(ctx context.Context) error {
	size := b.poolSize
	if size == 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(b.root, &st); err != nil {
			return fmt.Errorf("create btrfs pool: %w", err)
		}
		size = int64(st.Bavail) * st.Bsize
	}
	size = max(size, minPoolSize)
	tmp := b.image() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("create btrfs pool image: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create btrfs pool image: %w", err)
	}
	if _, err := run(ctx, "mkfs.btrfs", "-q", "-f", "-L", "berth-quota", tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create btrfs pool: %w", err)
	}
	if err := os.Rename(tmp, b.image()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create btrfs pool: %w", err)
	}
	b.logger.Info("btrfs pool created", "image", b.image(), "size", size)
	return nil
}

// enableQuota turns on qgroups on the filesystem at base(), if needed.
func (b *btrfsDriver) enableQuota(ctx context.Context) error {
	if _, err := run(ctx, "btrfs", "qgroup", "show", "--raw", b.base()); err == nil {
		return nil
	}
	if _, err := run(ctx, "btrfs", "quota", "enable", b.base()); err != nil {
		return fmt.Errorf("enable btrfs quota: %w", err)
	}
	// Data written before quotas were on is not accounted until a rescan.
	if _, err := run(ctx, "btrfs", "quota", "rescan", "-w", b.base()); err != nil {
		return fmt.Errorf("rescan btrfs quota: %w", err)
	}
	b.logger.Info("btrfs quotas enabled", "at", b.base())
	return nil
}

// subvol is the app's subvolume.
func (b *btrfsDriver) subvol(app string) string { return filepath.Join(b.base(), app) }

func (b *btrfsDriver) dir(app string) string { return b.subvol(app) }

// isSubvol reports whether path is the root of a btrfs subvolume.
func isSubvol(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("check subvolume %s: %w", path, err)
	}
	// Every subvolume's root directory is inode 256 (BTRFS_FIRST_FREE_OBJECTID).
	return st.Ino == 256 && st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

func (b *btrfsDriver) ensure(ctx context.Context, app string, a *appState) (string, error) {
	if err := b.ensurePool(ctx); err != nil {
		return "", err
	}
	dir := b.subvol(app)
	ok, err := isSubvol(dir)
	if err != nil {
		return "", err
	}
	if !ok {
		if _, err := os.Lstat(dir); err == nil {
			return "", fmt.Errorf("create subvolume: %s exists and is not a btrfs subvolume; move it away", dir)
		}
		if _, err := run(ctx, "btrfs", "subvolume", "create", dir); err != nil {
			return "", fmt.Errorf("create subvolume: %w", err)
		}
		b.logger.Info("subvolume created", "app", app, "path", dir)
	}
	if err := os.Chown(dir, a.UID, a.UID); err != nil {
		return "", fmt.Errorf("chown subvolume: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("chmod subvolume: %w", err)
	}
	if err := b.limit(ctx, dir, a.Limit); err != nil {
		return "", err
	}
	return dir, nil
}

// limit sets the referenced-bytes limit of the subvolume's qgroup, and
// grows the pool first if the limits would no longer fit in it.
func (b *btrfsDriver) limit(ctx context.Context, dir string, limit int64) error {
	if err := b.fitPool(ctx, dir, limit); err != nil {
		return err
	}
	if _, err := run(ctx, "btrfs", "qgroup", "limit", strconv.FormatInt(limit, 10), dir); err != nil {
		return fmt.Errorf("set qgroup limit: %w", err)
	}
	return nil
}

// fitPool grows the pool image (sparse, so it costs nothing until written)
// and its filesystem when the sum of all apps' limits, with dir's limit
// set to limit, exceeds it: otherwise apps would run out of pool space
// before reaching their own limits, and one app's use would eat another's.
func (b *btrfsDriver) fitPool(ctx context.Context, dir string, limit int64) error {
	if b.hostBtrfs() {
		return nil
	}
	own, err := qgroupID(ctx, dir)
	if err != nil {
		return err
	}
	out, err := run(ctx, "btrfs", "qgroup", "show", "--raw", "-r", b.base())
	if err != nil {
		return fmt.Errorf("read qgroup limits: %w", err)
	}
	sum := limit
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "0/") || f[0] == own {
			continue
		}
		if n, err := strconv.ParseInt(f[3], 10, 64); err == nil {
			sum += n
		}
	}
	fi, err := os.Stat(b.image())
	if err != nil {
		return fmt.Errorf("grow btrfs pool: %w", err)
	}
	// Metadata (dup) and the allocator's slack need room beyond the data.
	need := sum + sum/8 + minPoolSize
	if need <= fi.Size() {
		return nil
	}
	dev, err := loopFind(b.image())
	if err != nil {
		return err
	}
	if dev == "" {
		return fmt.Errorf("grow btrfs pool %s: not attached", b.image())
	}
	if err := os.Truncate(b.image(), need); err != nil {
		return fmt.Errorf("grow btrfs pool: %w", err)
	}
	if err := loopSetCapacity(dev); err != nil {
		return err
	}
	if _, err := run(ctx, "btrfs", "filesystem", "resize", "max", b.base()); err != nil {
		return fmt.Errorf("grow btrfs pool: %w", err)
	}
	b.logger.Info("btrfs pool grown to fit the limits", "image", b.image(), "size", need, "limits", sum)
	return nil
}

func (b *btrfsDriver) setLimit(ctx context.Context, app string, a *appState, limit int64) error {
	// A qgroup limit can go below current use: further writes then fail
	// with EDQUOT until files are deleted, which is what a lower limit means.
	return b.limit(ctx, b.subvol(app), limit)
}

// qgroupID returns the "0/ID" qgroup of a subvolume.
func qgroupID(ctx context.Context, dir string) (string, error) {
	out, err := run(ctx, "btrfs", "inspect-internal", "rootid", dir)
	if err != nil {
		return "", fmt.Errorf("read subvolume id: %w", err)
	}
	id := strings.TrimSpace(out)
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return "", fmt.Errorf("read subvolume id of %s: unexpected %q", dir, id)
	}
	return "0/" + id, nil
}

func (b *btrfsDriver) usage(ctx context.Context, app string, a *appState) (Usage, error) {
	dir := b.subvol(app)
	qg, err := qgroupID(ctx, dir)
	if err != nil {
		return Usage{}, err
	}
	// Qgroup numbers are updated when a transaction commits; --sync
	// commits one so the figure includes what was just written.
	out, err := run(ctx, "btrfs", "qgroup", "show", "--raw", "--sync", "-r", "-f", dir)
	if err != nil {
		return Usage{}, fmt.Errorf("read qgroup: %w", err)
	}
	var used int64 = -1
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == qg {
			if used, err = strconv.ParseInt(f[1], 10, 64); err != nil {
				return Usage{}, fmt.Errorf("read qgroup %s: bad referenced bytes %q", qg, f[1])
			}
		}
	}
	if used < 0 {
		return Usage{}, fmt.Errorf("read qgroup %s of %s: not listed", qg, dir)
	}
	// Qgroups count bytes only; count inodes by walking.
	_, inodes, err := dirUsage(dir)
	if err != nil {
		return Usage{}, err
	}
	return Usage{Bytes: used, Inodes: inodes, LimitBytes: a.Limit}, nil
}

func (b *btrfsDriver) remove(ctx context.Context, app string, a *appState, last bool) error {
	dir := b.subvol(app)
	ok, err := isSubvol(dir)
	if err != nil {
		return err
	}
	if ok {
		qg, qerr := qgroupID(ctx, dir)
		if _, err := run(ctx, "btrfs", "subvolume", "delete", "--commit-after", dir); err != nil {
			return fmt.Errorf("delete subvolume: %w", err)
		}
		// Recent kernels drop the qgroup with the subvolume; older ones
		// keep it until destroyed, and refuse while the subvolume's
		// blocks are still being freed. A leftover qgroup holds no data.
		if qerr == nil {
			if _, err := run(ctx, "btrfs", "qgroup", "destroy", qg, b.base()); err != nil &&
				!strings.Contains(err.Error(), "No such file or directory") {
				b.logger.Info("qgroup of deleted subvolume not destroyed yet; kernels from 6.9 drop it when the subvolume is cleaned, older ones keep an empty qgroup", "qgroup", qg, "err", err)
			}
		}
		b.logger.Info("subvolume deleted", "app", app, "path", dir)
	} else if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove app directory: %w", err)
	}
	if last && !b.hostBtrfs() {
		return b.dropPool()
	}
	return nil
}

// dropPool unmounts the pool (which detaches its loop device) and deletes
// its image, once no app is left in it.
func (b *btrfsDriver) dropPool() error {
	if err := releaseMount(b.base(), b.logger); err != nil {
		return fmt.Errorf("drop btrfs pool: %w", err)
	}
	if err := os.Remove(b.base()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("drop btrfs pool: %w", err)
	}
	if err := os.Remove(b.image()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("drop btrfs pool: %w", err)
	}
	b.logger.Info("btrfs pool removed", "image", b.image())
	return nil
}

func (b *btrfsDriver) close(ctx context.Context) error {
	if b.hostBtrfs() {
		return nil
	}
	if err := releaseMount(b.base(), b.logger); err != nil {
		return fmt.Errorf("close btrfs pool: %w", err)
	}
	return nil
}
