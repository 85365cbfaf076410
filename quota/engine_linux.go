package quota

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/berthhq/berth/internal/units"

	"github.com/berthhq/berth/engine"
)

// AppLabel is the container label that names a container's app; package
// deploy sets it on app and one-off containers.
const AppLabel = "berth.app"

// containerQuotaPrefix starts the quota name of a container that has a disk
// limit but no app label (a build step, say). App names cannot contain '_',
// so such a name never collides with an app's.
const containerQuotaPrefix = "ctr_"

// ErrAppHasContainers means RemoveApp was called while containers of the
// app still exist; delete them in the engine first.
var ErrAppHasContainers = errors.New("app still has containers")

// EngineConfig configures an EngineQuota.
type EngineConfig struct {
	// Disk enforces disk limits. Nil means this host has no disk quota:
	// network caps still work, and containers with a disk limit are
	// refused with ErrDriverUnavailable.
	Disk *Disk
	// ContainersRoot is the engine's Config.Root. Containers without a disk
	// limit keep their upper and work directories in their own directory
	// there, exactly as with no quota provider at all.
	ContainersRoot string
	// AppLabel is the label naming a container's app; empty means AppLabel.
	AppLabel string
}

// EngineQuota connects disk and network limits to the engine: it
// implements engine.Quota.
//
// Disk: all containers of an app with a disk limit share the app's one
// limited directory from Disk.Ensure, so the limit is app-wide, as the
// engine's Spec.Limits.DiskBytes of the app's latest container sets it.
// Each container gets its own subdirectory there, named by its ID, for its
// upper and work directories. The engine deletes a container's upper
// directory on Delete, so that room comes back; the app's quota itself (its
// limit and any other data in its directory) stays until RemoveApp. A
// container with a disk limit but no app label gets a quota of its own,
// dropped when the container is deleted. Containers without a disk limit
// use their engine directory, as if there were no quota provider, and an
// app does not get a default limit.
//
// Network: Spec.Limits.NetworkBitsPerSec caps both directions, into and out
// of the container, at the same rate, as Heroku's dyno network limits do.
//
// EngineQuota persists nothing of its own: after a restart, Restore
// recomputes what it needs from the Disk's state and the engine's
// containers. It is safe for concurrent use.
type EngineQuota struct {
	disk   *Disk
	root   string
	label  string
	logger *slog.Logger

	mu     sync.Mutex
	veths  map[string]string // container ID → capped host veth
	uppers map[string]string // container ID → its directory under an app quota
}

var _ engine.Quota = (*EngineQuota)(nil)

// NewEngineQuota returns the engine's quota provider. It refuses the
// setquota disk driver: the engine mounts overlays with the daemon's
// credentials, whose CAP_SYS_RESOURCE lets writes pass a user quota's hard
// limit, so such a limit would not bind. Configure the btrfs or loop
// driver on such hosts.
func NewEngineQuota(cfg EngineConfig, logger *slog.Logger) (*EngineQuota, error) {
	if !filepath.IsAbs(cfg.ContainersRoot) {
		return nil, fmt.Errorf("create engine quota: containers root %q is not an absolute path; pass the engine's Config.Root", cfg.ContainersRoot)
	}
	if cfg.Disk != nil && cfg.Disk.Driver() == DriverSetquota {
		return nil, fmt.Errorf("create engine quota: the setquota driver does not bind the engine's overlay writes (they run with the daemon's CAP_SYS_RESOURCE); set the disk driver to btrfs or loop: %w", ErrDriverUnavailable)
	}
	if cfg.AppLabel == "" {
		cfg.AppLabel = AppLabel
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &EngineQuota{
		disk:   cfg.Disk,
		root:   filepath.Clean(cfg.ContainersRoot),
		label:  cfg.AppLabel,
		logger: logger.With("component", "quota", "part", "engine"),
		veths:  map[string]string{},
		uppers: map[string]string{},
	}, nil
}

// NewEngineDisk is NewDisk for disks handed to NewEngineQuota: "auto"
// (or an empty driver) picks the best driver other than setquota, which
// does not bind the engine's overlay writes.
func NewEngineDisk(cfg DiskConfig, logger *slog.Logger) (*Disk, error) {
	d, err := NewDisk(cfg, logger)
	if err != nil {
		return nil, err
	}
	if (cfg.Driver != "" && cfg.Driver != DriverAuto) || d.Driver() != DriverSetquota {
		return d, nil
	}
	for _, s := range d.Detect() {
		if s.Available && s.Name != DriverSetquota {
			cfg.Driver = s.Name
			return NewDisk(cfg, logger)
		}
	}
	return nil, fmt.Errorf("create engine disk quota: only setquota works here, and it does not bind the engine's overlay writes (%s): %w", d.whyNot(), ErrDriverUnavailable)
}

// validContainerID reports whether id looks like an engine container ID
// (16 hex digits), so it is safe as a path component.
func validContainerID(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// quotaName returns the name of the quota a container's writes count
// against: its app, or a quota of its own without an app label.
func (q *EngineQuota) quotaName(id string, spec *engine.Spec) string {
	if app := spec.Labels[q.label]; app != "" {
		return app
	}
	return containerQuotaPrefix + id
}

// PrepareUpper returns the directory in which the engine makes the
// container's upper and work directories: with a disk limit, the
// container's subdirectory of its app's limited directory (whose limit it
// sets to spec.Limits.DiskBytes); without one, the container's own engine
// directory.
func (q *EngineQuota) PrepareUpper(ctx context.Context, id string, spec *engine.Spec) (string, error) {
	if !validContainerID(id) {
		return "", fmt.Errorf("prepare upper dir: container id %q is not 16 hex digits", id)
	}
	limit := spec.Limits.DiskBytes
	if limit <= 0 {
		dir := filepath.Join(q.root, id)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return "", fmt.Errorf("prepare upper dir of %s: %s is not the container's directory; is EngineConfig.ContainersRoot the engine's Config.Root? (%v)", id, dir, err)
		}
		return dir, nil
	}
	if q.disk == nil {
		return "", fmt.Errorf("prepare upper dir of %s: a %s disk limit needs a disk quota driver, and none works on this host: %w", id, units.FormatSize(limit), ErrDriverUnavailable)
	}
	name := q.quotaName(id, spec)
	appDir, err := q.disk.Ensure(ctx, name, int(spec.IDMap.HostUID), limit)
	if err != nil {
		return "", fmt.Errorf("prepare upper dir of %s: %w", id, err)
	}
	dir := filepath.Join(appDir, id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("prepare upper dir of %s: %s is at its disk limit of %s (its other containers' writes fill it): raise the limit with resource:limit or retire containers first: %w", id, name, units.FormatSize(limit), err)
		} else {
			err = fmt.Errorf("prepare upper dir of %s: %w", id, err)
		}
		if strings.HasPrefix(name, containerQuotaPrefix) {
			if rerr := q.disk.Remove(context.WithoutCancel(ctx), name); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return "", err
	}
	q.mu.Lock()
	q.uppers[id] = dir
	q.mu.Unlock()
	q.logger.Debug("upper dir under disk quota", "container", id, "quota", name, "limit", limit, "dir", dir)
	return dir, nil
}

// AttachNetwork caps the container's traffic in both directions at
// spec.Limits.NetworkBitsPerSec, on its host veth; zero means no cap.
func (q *EngineQuota) AttachNetwork(ctx context.Context, id string, hostVeth string, spec *engine.Spec) error {
	bps := spec.Limits.NetworkBitsPerSec
	if bps <= 0 {
		return nil
	}
	// Remember the veth first, so that Release clears a half-made cap.
	q.mu.Lock()
	q.veths[id] = hostVeth
	q.mu.Unlock()
	if err := SetBandwidth(hostVeth, uint64(bps), uint64(bps)); err != nil {
		return fmt.Errorf("attach network cap to %s: %w", id, err)
	}
	q.logger.Debug("network capped", "container", id, "veth", hostVeth, "bps", bps)
	return nil
}

// Release removes the container's network cap (its ifb device: the engine
// deletes the veth and its qdiscs itself) and its directory under its app's
// disk quota, and drops the quota of a container without an app. The app's
// quota stays until RemoveApp. Releasing twice, or a container that had no
// limits, is not an error.
func (q *EngineQuota) Release(ctx context.Context, id string) error {
	if !validContainerID(id) {
		return fmt.Errorf("release quota: container id %q is not 16 hex digits", id)
	}
	q.mu.Lock()
	veth, capped := q.veths[id]
	upper, limited := q.uppers[id]
	q.mu.Unlock()
	var errs []error
	if capped {
		if err := ClearBandwidth(veth); err != nil {
			errs = append(errs, fmt.Errorf("release quota of %s: %w", id, err))
		}
	}
	if q.disk != nil {
		if !limited {
			// Not made by this process (the daemon restarted since): look.
			upper = q.findUpper(id)
		}
		if upper != "" {
			if err := os.RemoveAll(upper); err != nil {
				errs = append(errs, fmt.Errorf("release quota of %s: remove upper dir: %w", id, err))
			}
		}
		if _, ok := q.disk.Limit(containerQuotaPrefix + id); ok {
			if err := q.disk.Remove(ctx, containerQuotaPrefix+id); err != nil {
				errs = append(errs, fmt.Errorf("release quota of %s: %w", id, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	q.mu.Lock()
	delete(q.veths, id)
	delete(q.uppers, id)
	q.mu.Unlock()
	return nil
}

// findUpper returns the container's directory under an app quota, or "".
func (q *EngineQuota) findUpper(id string) string {
	for _, app := range q.disk.Apps() {
		dir, err := q.disk.Dir(app)
		if err != nil {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dir, id)); err == nil {
			return filepath.Join(dir, id)
		}
	}
	return ""
}

// RemoveApp deletes the app's disk quota and all data under it. The engine
// must have deleted the app's containers first; otherwise it returns
// ErrAppHasContainers. An app without a quota is not an error.
func (q *EngineQuota) RemoveApp(ctx context.Context, app string) error {
	if q.disk == nil {
		return nil
	}
	dir, err := q.disk.Dir(app)
	if errors.Is(err, ErrNoQuota) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove app %s quota: %w", app, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove app %s quota: %w", app, err)
	}
	var live []string
	for _, ent := range ents {
		if validContainerID(ent.Name()) && q.engineHas(ent.Name()) {
			live = append(live, ent.Name())
		}
	}
	if len(live) > 0 {
		return fmt.Errorf("remove app %s quota: containers %s: delete them first: %w", app, strings.Join(live, ", "), ErrAppHasContainers)
	}
	if err := q.disk.Remove(ctx, app); err != nil {
		return fmt.Errorf("remove app %s quota: %w", app, err)
	}
	return nil
}

// engineHas reports whether the engine still has a directory for the
// container (it may be half created or half deleted).
func (q *EngineQuota) engineHas(id string) bool {
	_, err := os.Lstat(filepath.Join(q.root, id))
	return err == nil
}

// Restore brings the quota provider back after a daemon restart or a
// reboot: it re-attaches the Disk's pools and images (Disk.Restore),
// deletes container directories and container quotas left under app quotas
// by containers the engine no longer has, relearns which veths are capped
// from containers (the engine's List), re-applies the caps of running
// containers, and deletes ifb devices whose veth is gone. Call it after
// engine GC and before anything creates containers.
func (q *EngineQuota) Restore(ctx context.Context, containers []engine.Info) error {
	var errs []error
	if q.disk != nil {
		if err := q.disk.Restore(ctx); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, q.pruneDisk(ctx)...)
	}
	for _, c := range containers {
		bps := c.Spec.Limits.NetworkBitsPerSec
		if bps <= 0 || c.HostVeth == "" {
			continue
		}
		q.mu.Lock()
		q.veths[c.ID] = c.HostVeth
		q.mu.Unlock()
		if c.State != engine.StateRunning && c.State != engine.StatePaused {
			continue
		}
		if err := SetBandwidth(c.HostVeth, uint64(bps), uint64(bps)); err != nil {
			errs = append(errs, fmt.Errorf("restore network cap of %s: %w", c.ID, err))
		}
	}
	pruned, err := PruneBandwidth()
	if err != nil {
		errs = append(errs, err)
	}
	if len(pruned) > 0 {
		q.logger.Info("removed ifb devices of vanished veths", "ifbs", pruned)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore engine quota: %w", err)
	}
	q.mu.Lock()
	capped := len(q.veths)
	q.mu.Unlock()
	q.logger.Info("engine quota restored", "capped", capped)
	return nil
}

// pruneDisk deletes what containers the engine no longer has left under
// the disk quotas: their directories, and their own quotas.
func (q *EngineQuota) pruneDisk(ctx context.Context) []error {
	var errs []error
	for _, app := range q.disk.Apps() {
		if id, ok := strings.CutPrefix(app, containerQuotaPrefix); ok {
			if validContainerID(id) && !q.engineHas(id) {
				if err := q.disk.Remove(ctx, app); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		dir, err := q.disk.Dir(app)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("prune app %s quota: %w", app, err))
			continue
		}
		for _, ent := range ents {
			if !validContainerID(ent.Name()) || q.engineHas(ent.Name()) {
				continue
			}
			if err := os.RemoveAll(filepath.Join(dir, ent.Name())); err != nil {
				errs = append(errs, fmt.Errorf("prune app %s quota: %w", app, err))
				continue
			}
			q.logger.Info("removed upper dir of a vanished container", "app", app, "container", ent.Name())
		}
	}
	return errs
}
