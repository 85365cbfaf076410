package deploy

import (
	"context"
	"time"

	"github.com/berthhq/berth/engine"
)

// appInfo is what deploy needs to know about an app.
type appInfo struct {
	// Name is the app's name.
	Name string
	// UIDBase is the first host UID (and GID) of the app's private ID range.
	UIDBase uint32
	// Domains are the app's custom domains (APP.<domain> is added by deploy).
	Domains []string
}

// releaseSpec is one release as deploy runs it.
type releaseSpec struct {
	// Version is the release number (vN).
	Version int
	// Image is the image reference in the builder's store.
	Image string
	// Config holds the config vars (secrets: never logged).
	Config map[string]string
	// Processes maps a process type to its command.
	Processes map[string]string
}

// processFormation is the desired quantity and limits of one process type.
type processFormation struct {
	// Quantity is the number of instances.
	Quantity int
	// Limits are the cgroup limits of each instance.
	Limits engine.Limits
}

// containerRecord is the state of one container kept in Postgres, so the
// web dashboard and a restarted daemon see restarts and exit reasons.
type containerRecord struct {
	// EngineID is the engine's container ID.
	EngineID string
	// ProcessType and Instance name the slot ("web", 1).
	ProcessType string
	Instance    int
	// Release is the release version the container runs.
	Release int
	// IP is the container's bridge address.
	IP string
	// Pid is the host PID of the container's init.
	Pid int
	// State is one of created, starting, running, stopping, stopped, exited, failed.
	State string
	// Restarts counts the crash restarts of the slot.
	Restarts int
	// LastExitReason describes the slot's last crash.
	LastExitReason string
	// StartedAt is when the container started.
	StartedAt time.Time
}

// store is the part of platform that deploy uses: desired state in,
// records out. platformStore implements it over *platform.Service.
type store interface {
	// AppNames lists every app.
	AppNames(ctx context.Context) ([]string, error)
	// App returns one app with its custom domains.
	App(ctx context.Context, app string) (appInfo, error)
	// Release returns release vN of an app.
	Release(ctx context.Context, app string, version int) (releaseSpec, error)
	// DeployedRelease returns the version of the release most recently
	// rolled out with success; ok is false when none was.
	DeployedRelease(ctx context.Context, app string) (version int, ok bool, err error)
	// SetDeployedRelease records a successful rollout.
	SetDeployedRelease(ctx context.Context, app string, version int) error
	// Formation returns the desired formation by process type.
	Formation(ctx context.Context, app string) (map[string]processFormation, error)
	// AppStopped reports whether the app was stopped with ps:stop.
	AppStopped(ctx context.Context, app string) (bool, error)
	// SetAppStopped records ps:stop (true) or ps:start (false).
	SetAppStopped(ctx context.Context, app string, stopped bool) error
	// LockApp takes the app's rollout lock across processes.
	LockApp(ctx context.Context, app string) (unlock func(), err error)
	// SaveContainer inserts or updates a container record.
	SaveContainer(ctx context.Context, app string, rec containerRecord) error
	// DeleteContainer removes a container record.
	DeleteContainer(ctx context.Context, app, engineID string) error
	// Containers returns the app's container records.
	Containers(ctx context.Context, app string) ([]containerRecord, error)
}
