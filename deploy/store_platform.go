package deploy

import (
	"context"
	"net/netip"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/platform"
)

// platformStore is the store over platform's Service, acting as the system.
type platformStore struct {
	svc *platform.Service
}

// AppNames implements store.
func (p platformStore) AppNames(ctx context.Context) ([]string, error) {
	apps, err := p.svc.Apps(ctx, platform.System())
	if err != nil {
		return nil, err
	}
	names := make([]string, len(apps))
	for i, a := range apps {
		names[i] = a.Name
	}
	return names, nil
}

// App implements store.
func (p platformStore) App(ctx context.Context, app string) (appInfo, error) {
	a, err := p.svc.App(ctx, platform.System(), app)
	if err != nil {
		return appInfo{}, err
	}
	domains, err := p.svc.Domains(ctx, platform.System(), app)
	if err != nil {
		return appInfo{}, err
	}
	return appInfo{Name: a.Name, UIDBase: uint32(a.UIDBase), Domains: domains}, nil
}

// fromPlatformRelease converts a platform release.
func fromPlatformRelease(r platform.Release) releaseSpec {
	return releaseSpec{Version: r.Version, Image: r.Image, Config: r.Config, Processes: r.Processes}
}

// Release implements store.
func (p platformStore) Release(ctx context.Context, app string, version int) (releaseSpec, error) {
	r, err := p.svc.Release(ctx, platform.System(), app, version)
	if err != nil {
		return releaseSpec{}, err
	}
	return fromPlatformRelease(r), nil
}

// DeployedRelease implements store.
func (p platformStore) DeployedRelease(ctx context.Context, app string) (int, bool, error) {
	return p.svc.DeployedRelease(ctx, app)
}

// SetDeployedRelease implements store.
func (p platformStore) SetDeployedRelease(ctx context.Context, app string, version int) error {
	return p.svc.SetDeployedRelease(ctx, app, version)
}

// engineLimits converts platform limits into cgroup limits.
func engineLimits(l platform.Limits) engine.Limits {
	return engine.Limits{
		MemoryBytes:       l.MemoryBytes,
		CPUQuota:          float64(l.CPUMillis) / 1000,
		Pids:              l.PIDs,
		DiskBytes:         l.DiskBytes,
		NetworkBitsPerSec: l.NetworkBPS,
	}
}

// Formation implements store.
func (p platformStore) Formation(ctx context.Context, app string) (map[string]processFormation, error) {
	procs, err := p.svc.Formation(ctx, platform.System(), app)
	if err != nil {
		return nil, err
	}
	out := make(map[string]processFormation, len(procs))
	for _, pr := range procs {
		out[pr.Type] = processFormation{Quantity: pr.Quantity, Limits: engineLimits(pr.Limits)}
	}
	return out, nil
}

// AppStopped implements store.
func (p platformStore) AppStopped(ctx context.Context, app string) (bool, error) {
	return p.svc.AppStopped(ctx, app)
}

// SetAppStopped implements store.
func (p platformStore) SetAppStopped(ctx context.Context, app string, stopped bool) error {
	return p.svc.SetAppStopped(ctx, app, stopped)
}

// LockApp implements store.
func (p platformStore) LockApp(ctx context.Context, app string) (func(), error) {
	return p.svc.LockApp(ctx, app)
}

// SaveContainer implements store.
func (p platformStore) SaveContainer(ctx context.Context, app string, r containerRecord) error {
	ip, _ := netip.ParseAddr(r.IP)
	_, err := p.svc.SaveContainer(ctx, platform.Container{
		App: app, ProcessType: r.ProcessType, Instance: r.Instance, ReleaseVersion: r.Release,
		EngineID: r.EngineID, IP: ip, HostPID: r.Pid, State: platform.ContainerState(r.State),
		Restarts: r.Restarts, LastExitReason: r.LastExitReason, StartedAt: r.StartedAt,
	})
	return err
}

// DeleteContainer implements store.
func (p platformStore) DeleteContainer(ctx context.Context, _, engineID string) error {
	return p.svc.RemoveContainer(ctx, engineID)
}

// Containers implements store.
func (p platformStore) Containers(ctx context.Context, app string) ([]containerRecord, error) {
	cs, err := p.svc.Containers(ctx, app)
	if err != nil {
		return nil, err
	}
	out := make([]containerRecord, len(cs))
	for i, c := range cs {
		ip := ""
		if c.IP.IsValid() {
			ip = c.IP.String()
		}
		out[i] = containerRecord{
			EngineID: c.EngineID, ProcessType: c.ProcessType, Instance: c.Instance, Release: c.ReleaseVersion,
			IP: ip, Pid: c.HostPID, State: string(c.State), Restarts: c.Restarts, LastExitReason: c.LastExitReason,
			StartedAt: c.StartedAt,
		}
	}
	return out, nil
}
