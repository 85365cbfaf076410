package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/berthhq/berth/internal/units"
)

// Disk driver names, as written in config and shown by `berth info`.
const (
	// DriverAuto picks the best driver that works on this host.
	DriverAuto = "auto"
	// DriverSetquota limits the app's host UID with a kernel user quota
	// on the filesystem holding Root (the Cloud Foundry warden way).
	DriverSetquota = "setquota"
	// DriverBtrfs puts each app in its own btrfs subvolume with a qgroup
	// limit, on the host's btrfs or on one loop-backed btrfs pool.
	DriverBtrfs = "btrfs"
	// DriverLoop gives each app its own fixed-size ext4 image on a loop
	// device.
	DriverLoop = "loop"
)

// MinDiskLimit is the smallest per-app disk limit: below it an ext4 image
// is mostly metadata and a container cannot even unpack a config file.
const MinDiskLimit int64 = 8 << 20

// stateFile is the name, under DiskConfig.Root, of the file recording which
// apps have quotas, so that Restore can re-attach them after a restart.
const stateFile = "state.json"

// DiskConfig configures a Disk.
type DiskConfig struct {
	// Root is the directory the quota package owns, e.g.
	// /var/lib/berth/quota. It holds the state file and, depending on the
	// driver, the app directories, loop images and mount points.
	Root string
	// Driver is "auto" (or empty), "setquota", "btrfs" or "loop".
	Driver string
	// PoolSize is the size of the sparse btrfs pool image used when Root
	// is not itself on btrfs. Zero means the free space of Root's
	// filesystem when the pool is created, so that the pool never refuses
	// what the host could hold; the per-app limits are what bind.
	PoolSize int64
}

// DriverStatus says whether one disk driver works on this host.
type DriverStatus struct {
	// Name is the driver name.
	Name string
	// Available is true when the driver can be used here.
	Available bool
	// Reason explains why the driver is unavailable, or how it would work
	// when it is available.
	Reason string
}

// Usage is an app's current disk use.
type Usage struct {
	// Bytes is the space the app's files take.
	Bytes int64
	// Inodes is the number of files and directories, or -1 when the
	// driver cannot count them.
	Inodes int64
	// LimitBytes is the app's byte limit.
	LimitBytes int64
	// LimitInodes is the app's inode limit, or 0 when the driver has none.
	LimitInodes int64
}

// appState is what the state file records per app.
type appState struct {
	// UID is the app's host UID (its user namespace root).
	UID int `json:"uid"`
	// Limit is the byte limit.
	Limit int64 `json:"limit"`
	// BaseBytes and BaseInodes are what a fresh, empty filesystem of the
	// loop driver already uses, subtracted from Usage.
	BaseBytes  int64 `json:"base_bytes,omitempty"`
	BaseInodes int64 `json:"base_inodes,omitempty"`
}

// state is the content of the state file.
type state struct {
	Driver string               `json:"driver"`
	Apps   map[string]*appState `json:"apps"`
}

// driver is one disk quota mechanism. Disk serialises all calls.
type driver interface {
	// name returns the driver name.
	name() string
	// probe returns nil when the driver works here, else why not.
	probe() error
	// describe says how the driver enforces limits here, for berth info.
	describe() string
	// dir returns the app's directory (without checking it exists).
	dir(app string) string
	// ensure creates (or re-attaches) the app's limited directory, applies
	// a.Limit and returns the directory. It may fill a's Base fields.
	ensure(ctx context.Context, app string, a *appState) (string, error)
	// setLimit changes the limit of an ensured app to limit.
	setLimit(ctx context.Context, app string, a *appState, limit int64) error
	// usage reports the app's disk use.
	usage(ctx context.Context, app string, a *appState) (Usage, error)
	// remove deletes everything the driver made for app; last is true
	// when no other app has a quota, so shared parts can go too.
	remove(ctx context.Context, app string, a *appState, last bool) error
	// close releases mounts and loop devices without deleting data.
	close(ctx context.Context) error
}

// Disk enforces per-app disk limits with one driver. It is safe for
// concurrent use.
type Disk struct {
	cfg      DiskConfig
	logger   *slog.Logger
	statuses []DriverStatus

	mu     sync.Mutex
	drv    driver
	st     state
	closed bool
}

// inodeLimit is the inode limit that goes with a byte limit, for drivers
// that have one: one inode per 16 KiB, mke2fs's default ratio, and never
// fewer than 4096 so that small apps can still hold a node_modules.
func inodeLimit(bytes int64) int64 {
	return max(bytes/16384, 4096)
}

// NewDisk detects which drivers work, picks cfg.Driver (or the best one for
// "auto") and loads the state file. It does not mount anything; call
// Restore to re-attach the apps a previous run limited.
func NewDisk(cfg DiskConfig, logger *slog.Logger) (*Disk, error) {
	if cfg.Root == "" {
		return nil, fmt.Errorf("create disk quota: empty root directory: %w", ErrDriverUnavailable)
	}
	if cfg.Driver == "" {
		cfg.Driver = DriverAuto
	}
	switch cfg.Driver {
	case DriverAuto, DriverSetquota, DriverBtrfs, DriverLoop:
	default:
		return nil, fmt.Errorf("create disk quota: driver %q; choose auto, setquota, btrfs or loop: %w", cfg.Driver, ErrUnknownDriver)
	}
	if cfg.PoolSize < 0 {
		return nil, fmt.Errorf("create disk quota: negative pool size %d: %w", cfg.PoolSize, ErrInvalidSize)
	}
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("create disk quota root: %w", err)
	}
	root, err := filepath.EvalSymlinks(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("resolve disk quota root: %w", err)
	}
	if root, err = filepath.Abs(root); err != nil {
		return nil, fmt.Errorf("resolve disk quota root: %w", err)
	}
	cfg.Root = root
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Disk{cfg: cfg, logger: logger.With("component", "quota")}

	st, err := d.loadState()
	if err != nil {
		return nil, err
	}
	d.st = st

	drivers := newDrivers(cfg, d.logger)
	byName := make(map[string]driver, len(drivers))
	for _, drv := range drivers {
		byName[drv.name()] = drv
		if err := drv.probe(); err != nil {
			d.statuses = append(d.statuses, DriverStatus{Name: drv.name(), Reason: err.Error()})
			continue
		}
		d.statuses = append(d.statuses, DriverStatus{Name: drv.name(), Available: true, Reason: drv.describe()})
	}

	want := cfg.Driver
	if st.Driver != "" && len(st.Apps) > 0 && want != st.Driver {
		// Existing quotas live where the old driver put them; switching
		// would orphan them, so keep the old driver until they are gone.
		if want != DriverAuto {
			return nil, fmt.Errorf("create disk quota: %d apps have %s quotas under %s; remove them before switching to %s: %w",
				len(st.Apps), st.Driver, cfg.Root, want, ErrDriverUnavailable)
		}
		want = st.Driver
	}
	if want == DriverAuto {
		for _, s := range d.statuses {
			if s.Available {
				d.drv = byName[s.Name]
				break
			}
		}
		if d.drv == nil {
			return nil, fmt.Errorf("create disk quota: no driver works here (%s): %w", d.whyNot(), ErrDriverUnavailable)
		}
	} else {
		for _, s := range d.statuses {
			if s.Name == want && !s.Available {
				return nil, fmt.Errorf("create disk quota: driver %s: %s: %w", want, s.Reason, ErrDriverUnavailable)
			}
		}
		if d.drv = byName[want]; d.drv == nil {
			return nil, fmt.Errorf("create disk quota: driver %s is not built for this OS: %w", want, ErrDriverUnavailable)
		}
	}
	d.logger.Info("disk quota driver chosen", "driver", d.drv.name(), "how", d.drv.describe(), "root", cfg.Root)
	return d, nil
}

// whyNot joins the reasons every driver is unavailable.
func (d *Disk) whyNot() string {
	var parts []string
	for _, s := range d.statuses {
		if !s.Available {
			parts = append(parts, s.Name+": "+s.Reason)
		}
	}
	if len(parts) == 0 {
		return "no driver is built for this OS"
	}
	return strings.Join(parts, "; ")
}

// Driver returns the name of the driver in use ("setquota", "btrfs" or
// "loop").
func (d *Disk) Driver() string {
	return d.drv.name()
}

// Mechanism says in one sentence how limits are enforced on this host, for
// `berth info` and resource:report.
func (d *Disk) Mechanism() string {
	return d.drv.describe()
}

// Detect reports, for every driver in order of preference, whether it works
// on this host and why (not), as found when the Disk was created.
func (d *Disk) Detect() []DriverStatus {
	return append([]DriverStatus(nil), d.statuses...)
}

// Root returns the resolved root directory.
func (d *Disk) Root() string {
	return d.cfg.Root
}

// Ensure gives app a disk limit of limitBytes, enforced on hostUID (the UID
// its user-namespace root maps to), and returns the directory on the limited
// filesystem under which the engine creates the upper and work directories
// of that app's containers. The directory is owned by hostUID. Calling
// Ensure again re-attaches the directory if needed and applies a changed
// limit.
func (d *Disk) Ensure(ctx context.Context, app string, hostUID int, limitBytes int64) (string, error) {
	if err := ValidateApp(app); err != nil {
		return "", fmt.Errorf("ensure disk quota: %w", err)
	}
	if hostUID <= 0 {
		return "", fmt.Errorf("ensure disk quota for %s: host uid %d: the app needs its own non-root uid: %w", app, hostUID, ErrInvalidLimit)
	}
	if err := checkLimit(limitBytes); err != nil {
		return "", fmt.Errorf("ensure disk quota for %s: %w", app, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return "", fmt.Errorf("ensure disk quota for %s: %w", app, ErrClosed)
	}
	if d.drv.name() == DriverSetquota {
		// A user quota limits the UID, not the app: two apps on one UID
		// would share (and fight over) one limit.
		for other, a := range d.st.Apps {
			if other != app && a.UID == hostUID {
				return "", fmt.Errorf("ensure disk quota for %s: uid %d belongs to app %s: %w", app, hostUID, other, ErrUIDInUse)
			}
		}
	}
	prev, existed := d.st.Apps[app]
	a := &appState{UID: hostUID, Limit: limitBytes}
	if existed {
		cp := *prev
		a = &cp
		if a.UID != hostUID {
			return "", fmt.Errorf("ensure disk quota for %s: app has uid %d, not %d; remove its quota first: %w", app, a.UID, hostUID, ErrUIDInUse)
		}
	}
	dir, err := d.drv.ensure(ctx, app, a)
	if err != nil {
		return "", fmt.Errorf("ensure disk quota for %s: %w", app, err)
	}
	if existed && a.Limit != limitBytes {
		if err := d.drv.setLimit(ctx, app, a, limitBytes); err != nil {
			return "", fmt.Errorf("ensure disk quota for %s: %w", app, err)
		}
		a.Limit = limitBytes
	}
	d.st.Apps[app] = a
	if err := d.saveState(); err != nil {
		return "", err
	}
	d.logger.Info("disk quota ensured", "app", app, "uid", hostUID, "limit", limitBytes, "dir", dir)
	return dir, nil
}

// checkLimit refuses limits no driver should be given.
func checkLimit(limit int64) error {
	if limit < MinDiskLimit || limit > units.MaxSize {
		return fmt.Errorf("check limit %d bytes: must be between %s and %s: %w", limit, units.FormatSize(MinDiskLimit), units.FormatSize(units.MaxSize), ErrInvalidSize)
	}
	return nil
}

// SetLimit changes the disk limit of an app that has a quota. Drivers that
// cannot shrink a filesystem in use (loop) refuse smaller limits with
// ErrShrinkUnsupported.
func (d *Disk) SetLimit(ctx context.Context, app string, limitBytes int64) error {
	if err := checkLimit(limitBytes); err != nil {
		return fmt.Errorf("set disk limit for %s: %w", app, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a, err := d.app(app)
	if err != nil {
		return fmt.Errorf("set disk limit: %w", err)
	}
	if a.Limit == limitBytes {
		return nil
	}
	cp := *a
	if err := d.drv.setLimit(ctx, app, &cp, limitBytes); err != nil {
		return fmt.Errorf("set disk limit for %s: %w", app, err)
	}
	cp.Limit = limitBytes
	d.st.Apps[app] = &cp
	if err := d.saveState(); err != nil {
		return err
	}
	d.logger.Info("disk limit changed", "app", app, "limit", limitBytes)
	return nil
}

// Usage reports how much of its limit an app uses.
func (d *Disk) Usage(ctx context.Context, app string) (Usage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, err := d.app(app)
	if err != nil {
		return Usage{}, fmt.Errorf("read disk usage: %w", err)
	}
	u, err := d.drv.usage(ctx, app, a)
	if err != nil {
		return Usage{}, fmt.Errorf("read disk usage of %s: %w", app, err)
	}
	return u, nil
}

// Limit returns an app's disk limit and whether it has one.
func (d *Disk) Limit(app string) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.st.Apps[app]
	if !ok {
		return 0, false
	}
	return a.Limit, true
}

// Dir returns the directory Ensure returned for app, or ErrNoQuota.
func (d *Disk) Dir(app string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.app(app); err != nil {
		return "", fmt.Errorf("find disk quota directory: %w", err)
	}
	return d.drv.dir(app), nil
}

// Apps lists the apps that have a disk quota, sorted.
func (d *Disk) Apps() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	apps := make([]string, 0, len(d.st.Apps))
	for app := range d.st.Apps {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	return apps
}

// Remove deletes an app's quota and everything under it: its files, its
// subvolume or loop image, and (with the last app) the btrfs pool's mount
// and loop device. The engine must have removed the app's containers
// first. Removing an app without a quota is not an error.
func (d *Disk) Remove(ctx context.Context, app string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("remove disk quota for %s: %w", app, ErrClosed)
	}
	a, ok := d.st.Apps[app]
	if !ok {
		return nil
	}
	if err := d.drv.remove(ctx, app, a, len(d.st.Apps) == 1); err != nil {
		return fmt.Errorf("remove disk quota for %s: %w", app, err)
	}
	delete(d.st.Apps, app)
	if err := d.saveState(); err != nil {
		return err
	}
	d.logger.Info("disk quota removed", "app", app)
	return nil
}

// Restore re-attaches (re-mounts loop images and pools, re-applies limits)
// every app quota recorded by a previous run, e.g. after a daemon restart
// or a reboot. It is idempotent: what is attached stays attached.
func (d *Disk) Restore(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("restore disk quotas: %w", ErrClosed)
	}
	var errs []error
	for app, a := range d.st.Apps {
		if _, err := d.drv.ensure(ctx, app, a); err != nil {
			errs = append(errs, fmt.Errorf("restore disk quota for %s: %w", app, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := d.saveState(); err != nil {
		return err
	}
	d.logger.Info("disk quotas restored", "apps", len(d.st.Apps))
	return nil
}

// Close unmounts what the driver mounted (detaching its loop devices) and
// keeps the data, so a later Disk with the same Root restores it. Call it
// only when no container uses the app directories any more.
func (d *Disk) Close(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if err := d.drv.close(ctx); err != nil {
		return fmt.Errorf("close disk quota: %w", err)
	}
	return nil
}

// app returns the state of an app with a quota.
func (d *Disk) app(app string) (*appState, error) {
	if d.closed {
		return nil, fmt.Errorf("app %s: %w", app, ErrClosed)
	}
	a, ok := d.st.Apps[app]
	if !ok {
		return nil, fmt.Errorf("app %s: %w", app, ErrNoQuota)
	}
	return a, nil
}

// loadState reads the state file; a missing file is an empty state.
func (d *Disk) loadState() (state, error) {
	st := state{Apps: map[string]*appState{}}
	b, err := os.ReadFile(filepath.Join(d.cfg.Root, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read disk quota state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("parse disk quota state %s: %w", filepath.Join(d.cfg.Root, stateFile), err)
	}
	if st.Apps == nil {
		st.Apps = map[string]*appState{}
	}
	return st, nil
}

// saveState writes the state file atomically.
func (d *Disk) saveState() error {
	d.st.Driver = d.drv.name()
	b, err := json.MarshalIndent(d.st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode disk quota state: %w", err)
	}
	path := filepath.Join(d.cfg.Root, stateFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write disk quota state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write disk quota state: %w", err)
	}
	return nil
}
