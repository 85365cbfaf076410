//go:build !linux

package quota

import "log/slog"

// newDrivers returns no drivers: disk quotas need Linux.
func newDrivers(cfg DiskConfig, logger *slog.Logger) []driver {
	return nil
}
