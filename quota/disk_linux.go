package quota

import "log/slog"

// newDrivers returns the disk drivers in order of preference. setquota is
// first: it limits the app's UID on the host filesystem itself, bytes and
// inodes, with no extra devices. btrfs is next: one loop device (or none,
// on a btrfs host) serves every app, and limits change up or down live.
// loop is last: it needs only ext4 and loop devices, but takes one of the
// host's few loop devices per app and can only grow a limit while in use.
func newDrivers(cfg DiskConfig, logger *slog.Logger) []driver {
	return []driver{
		newSetquotaDriver(cfg, logger),
		newBtrfsDriver(cfg, logger),
		newLoopDriver(cfg, logger),
	}
}
