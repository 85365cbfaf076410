package builder

import (
	"context"
	"io"
)

// StepRunner runs one RUN step in an isolated container: the step's
// layers stacked read-only, UpperDir as the writable layer, the given
// process, limits and egress network. It streams the process's output to
// Output, returns once the process has ended and its container is gone,
// and leaves UpperDir in place with the container's writes, stored with
// container IDs (container root owns its files as uid 0) unless it reports
// a shift in StepResult. A cancelled ctx stops the container and returns
// ctx's error.
type StepRunner interface {
	RunStep(ctx context.Context, spec StepSpec) (StepResult, error)
}

// StepSpec is what a StepRunner needs to run one RUN step.
type StepSpec struct {
	// Name identifies the step's container (unique per build step).
	Name string
	// App is the app being built; runners use it to pick the app's host ID
	// range unless IDs is set.
	App string
	// Layers are the read-only layer directories, bottom first.
	Layers []string
	// UpperDir is an empty directory that receives the step's writes.
	UpperDir string
	// Args is the argv; Env is KEY=value; Cwd is absolute.
	Args []string
	Env  []string
	Cwd  string
	// UID and GID are the IDs inside the container.
	UID, GID uint32
	// Groups are the supplementary groups inside the container.
	Groups []uint32
	// Limits caps the step's resources.
	Limits Limits
	// IDs is the host ID range container IDs map to (zero: the runner's
	// default for App).
	IDs IDRange
	// Output receives stdout and stderr.
	Output io.Writer
}

// StepResult is how a step's process ended.
type StepResult struct {
	// ExitCode is the exit code, or 128+signal.
	ExitCode int
	// Signal is the killing signal, 0 if the process exited.
	Signal int
	// OOMKilled is true when the step ran out of memory.
	OOMKilled bool
	// UIDShift and GIDShift are host IDs that container ID 0 appears as in
	// UpperDir; the builder subtracts them. Zero means UpperDir already
	// holds container IDs.
	UIDShift, GIDShift uint32
}

// Limits caps a build step's resources; zero values mean the runner's
// defaults.
type Limits struct {
	// MemoryBytes caps memory.
	MemoryBytes int64
	// CPUQuota caps CPU time as a fraction of one core (1.5 = one and a
	// half cores).
	CPUQuota float64
	// Pids caps processes and threads.
	Pids int64
}

// IDRange is a contiguous host UID/GID range for a user namespace.
type IDRange struct {
	// HostUID and HostGID are the host IDs of container ID 0.
	HostUID, HostGID uint32
	// Size is how many IDs are mapped; zero means 65536.
	Size uint32
}
