package quota

import "errors"

// Sentinel errors returned (wrapped) by the quota package. Check them with
// errors.Is.
var (
	// ErrInvalidSize means a disk size is out of range.
	ErrInvalidSize = errors.New("invalid size")
	// ErrInvalidRate means a network rate is out of range.
	ErrInvalidRate = errors.New("invalid rate")
	// ErrInvalidLimit means a limit cannot be applied as asked (e.g. a
	// disk quota for the root uid).
	ErrInvalidLimit = errors.New("invalid limit")
	// ErrInvalidApp means an app name cannot be used as a quota name.
	ErrInvalidApp = errors.New("invalid app name")
	// ErrUnknownDriver means the configured disk driver is not one of
	// auto, setquota, btrfs or loop.
	ErrUnknownDriver = errors.New("unknown disk quota driver")
	// ErrDriverUnavailable means the configured disk driver (or, for auto,
	// every driver) does not work on this host; the error says why.
	ErrDriverUnavailable = errors.New("disk quota driver unavailable")
	// ErrNoQuota means the app has no disk quota yet; call Ensure first.
	ErrNoQuota = errors.New("no disk quota for app")
	// ErrUIDInUse means another app already owns the host UID, which the
	// setquota driver limits as a whole.
	ErrUIDInUse = errors.New("host uid already used by another app")
	// ErrShrinkUnsupported means the driver cannot lower this limit while
	// the app's filesystem is in use.
	ErrShrinkUnsupported = errors.New("cannot shrink disk limit")
	// ErrNoLoopDevice means no free loop device could be attached.
	ErrNoLoopDevice = errors.New("no free loop device")
	// ErrClosed means the Disk was closed.
	ErrClosed = errors.New("disk quota closed")
)
