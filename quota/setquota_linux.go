package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// quotactl(2) commands and flags, from <linux/quota.h>.
const (
	qGetInfo  = 0x800005
	qGetQuota = 0x800007
	qSetQuota = 0x800008
	usrQuota  = 0
	// qifLimits marks the block and inode limits of a dqblk as valid.
	qifLimits = 1 | 4
	// qifDqblkSize is the unit of dqblk block limits.
	qifDqblkSize = 1024
)

// dqblk is struct if_dqblk from <linux/quota.h>.
type dqblk struct {
	bHardLimit uint64
	bSoftLimit uint64
	curSpace   uint64
	iHardLimit uint64
	iSoftLimit uint64
	curInodes  uint64
	bTime      uint64
	iTime      uint64
	valid      uint32
	_          uint32
}

// dqinfo is struct if_dqinfo from <linux/quota.h>.
type dqinfo struct {
	bGrace uint64
	iGrace uint64
	flags  uint32
	valid  uint32
}

// quotactl calls quotactl(2) on the block device dev for user quotas.
func quotactl(cmd int, dev string, id int, addr unsafe.Pointer) error {
	p, err := unix.BytePtrFromString(dev)
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL, uintptr(uint32(cmd<<8|usrQuota&0xff)), uintptr(unsafe.Pointer(p)), uintptr(id), uintptr(addr), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// setquotaDriver limits each app's host UID with a kernel user quota on the
// filesystem holding Root, as Cloud Foundry's warden does. The filesystem
// must be mounted with usrquota (ext4 built with CONFIG_QFMT_V2, or xfs
// with CONFIG_XFS_QUOTA). It needs no extra devices and limits inodes as
// well as bytes.
type setquotaDriver struct {
	root   string
	logger *slog.Logger
}

// newSetquotaDriver returns the setquota driver for root.
func newSetquotaDriver(cfg DiskConfig, logger *slog.Logger) *setquotaDriver {
	return &setquotaDriver{root: cfg.Root, logger: logger.With("driver", DriverSetquota)}
}

func (s *setquotaDriver) name() string { return DriverSetquota }

// device returns the block device and mount holding root.
func (s *setquotaDriver) device() (dev, fstype, mountpoint string, err error) {
	m, err := mountOf(s.root)
	if err != nil {
		return "", "", "", err
	}
	return m.Source, m.FSType, m.Mountpoint, nil
}

// kernelQuotaHint says which kernel options a filesystem's quotas need, if
// the kernel configuration shows them missing.
func kernelQuotaHint(fstype string) string {
	var missing []string
	opts := []string{"CONFIG_QUOTA", "CONFIG_QUOTACTL"}
	switch fstype {
	case "xfs":
		opts = append(opts, "CONFIG_XFS_QUOTA")
	default:
		opts = append(opts, "CONFIG_QFMT_V2")
	}
	for _, o := range opts {
		v, known := kernelConfig(o)
		if !known {
			return ""
		}
		if v != "y" && v != "m" {
			missing = append(missing, o)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return "; the kernel is built without " + strings.Join(missing, " and ") + ", so it cannot enforce " + fstype + " user quotas"
}

func (s *setquotaDriver) probe() error {
	dev, fstype, mp, err := s.device()
	if err != nil {
		return err
	}
	var info dqinfo
	err = quotactl(qGetInfo, dev, 0, unsafe.Pointer(&info))
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("the kernel has no quotactl (built without CONFIG_QUOTACTL)%s", kernelQuotaHint(fstype))
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.ENOENT), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOTBLK), errors.Is(err, unix.ENODEV):
		return fmt.Errorf("user quotas are off on %s (%s on %s): remount it with usrquota%s", mp, fstype, dev, kernelQuotaHint(fstype))
	default:
		return fmt.Errorf("query quotas of %s (%s on %s): %v%s", mp, fstype, dev, err, kernelQuotaHint(fstype))
	}
	// ext4 with the quota feature accounts usage even without usrquota but
	// only enforces limits with it.
	m, err := mountOf(s.root)
	if err != nil {
		return err
	}
	for _, o := range strings.Split(m.Options+","+m.VFSOptions, ",") {
		switch o {
		case "usrquota", "usrjquota", "quota", "uquota", "uqnoenforce":
			if o != "uqnoenforce" {
				return nil
			}
		}
	}
	return fmt.Errorf("%s (%s on %s) accounts user quotas but is not mounted with usrquota, so it does not enforce them", mp, fstype, dev)
}

func (s *setquotaDriver) describe() string {
	dev, fstype, mp, err := s.device()
	if err != nil {
		return "user quota on each app's host uid"
	}
	return fmt.Sprintf("user quota on each app's host uid, on %s (%s on %s)", mp, fstype, dev)
}

func (s *setquotaDriver) dir(app string) string { return filepath.Join(s.root, "setquota", app) }

// set writes the uid's block and inode limits (zero removes them).
func (s *setquotaDriver) set(uid int, bytes, inodes int64) error {
	dev, _, _, err := s.device()
	if err != nil {
		return err
	}
	blocks := uint64((bytes + qifDqblkSize - 1) / qifDqblkSize)
	q := dqblk{bHardLimit: blocks, bSoftLimit: blocks, iHardLimit: uint64(inodes), iSoftLimit: uint64(inodes), valid: qifLimits}
	if err := quotactl(qSetQuota, dev, uid, unsafe.Pointer(&q)); err != nil {
		return fmt.Errorf("set user quota of uid %d on %s: %w", uid, dev, err)
	}
	return nil
}

func (s *setquotaDriver) ensure(ctx context.Context, app string, a *appState) (string, error) {
	dir := s.dir(app)
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return "", fmt.Errorf("create app directory: %w", err)
	}
	// Other users must be able to reach their own app directory.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		return "", fmt.Errorf("create app directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create app directory: %w", err)
	}
	if err := os.Chown(dir, a.UID, a.UID); err != nil {
		return "", fmt.Errorf("chown app directory: %w", err)
	}
	if err := s.set(a.UID, a.Limit, inodeLimit(a.Limit)); err != nil {
		return "", err
	}
	return dir, nil
}

func (s *setquotaDriver) setLimit(ctx context.Context, app string, a *appState, limit int64) error {
	return s.set(a.UID, limit, inodeLimit(limit))
}

func (s *setquotaDriver) usage(ctx context.Context, app string, a *appState) (Usage, error) {
	dev, _, _, err := s.device()
	if err != nil {
		return Usage{}, err
	}
	var q dqblk
	if err := quotactl(qGetQuota, dev, a.UID, unsafe.Pointer(&q)); err != nil {
		return Usage{}, fmt.Errorf("read user quota of uid %d on %s: %w", a.UID, dev, err)
	}
	return Usage{
		Bytes:       int64(q.curSpace),
		Inodes:      int64(q.curInodes),
		LimitBytes:  int64(q.bHardLimit) * qifDqblkSize,
		LimitInodes: int64(q.iHardLimit),
	}, nil
}

func (s *setquotaDriver) remove(ctx context.Context, app string, a *appState, last bool) error {
	if err := os.RemoveAll(s.dir(app)); err != nil {
		return fmt.Errorf("remove app directory: %w", err)
	}
	if err := s.set(a.UID, 0, 0); err != nil {
		return err
	}
	return nil
}

func (s *setquotaDriver) close(ctx context.Context) error { return nil }
