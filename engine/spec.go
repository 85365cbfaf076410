package engine

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Spec describes one container.
type Spec struct {
	// Layers are read-only lower directories, bottom (base) layer first and
	// top layer last, as in an OCI image manifest. Files in later layers hide
	// files of the same path in earlier ones. They are shared by every
	// container that uses them and never written to.
	Layers []string `json:"layers"`
	// UpperDir, if set, is a caller-owned directory that receives the
	// container's writes; Delete keeps it. Files in it are stored with
	// container IDs (a file made by container root is owned by uid 0 on
	// disk), so it can later serve as a layer. If empty, the engine makes a
	// private upper directory whose files are owned by the host ID range and
	// removes it on Delete.
	UpperDir string `json:"upperDir,omitempty"`
	// Process is the app started as the container's main process.
	Process Process `json:"process"`
	// Hostname is the container's host name; empty means the container ID.
	Hostname string `json:"hostname,omitempty"`
	// Limits are the cgroup limits; zero values mean unlimited.
	Limits Limits `json:"limits"`
	// Network selects the container's network.
	Network Network `json:"network"`
	// Mounts are bind mounts (volumes) from the host into the container.
	Mounts []Mount `json:"mounts,omitempty"`
	// IDMap is the host ID range that container IDs 0..Size-1 map to.
	IDMap IDMap `json:"idMap"`
	// Labels are free-form tags, returned by List.
	Labels map[string]string `json:"labels,omitempty"`
	// LogPath is where the log goes; empty means "log" in the container directory.
	LogPath string `json:"logPath,omitempty"`
}

// Process is a program to run inside a container.
type Process struct {
	// Args is the argv; Args[0] is looked up in PATH from Env if it has no slash.
	Args []string `json:"args"`
	// Env is the environment in KEY=value form.
	Env []string `json:"env,omitempty"`
	// Cwd is the working directory inside the container; empty means "/".
	Cwd string `json:"cwd,omitempty"`
	// UID is the user ID inside the container.
	UID uint32 `json:"uid"`
	// GID is the group ID inside the container.
	GID uint32 `json:"gid"`
	// AdditionalGIDs are supplementary groups inside the container.
	AdditionalGIDs []uint32 `json:"additionalGids,omitempty"`
}

// Limits are the resource limits of a container.
type Limits struct {
	// MemoryBytes caps memory use, the init's few MiB included; past it the
	// kernel OOM-kills a process of the container. At least 16 MiB.
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	// CPUShares is the relative CPU weight (cgroup v1 shares, 2..262144).
	CPUShares int64 `json:"cpuShares,omitempty"`
	// CPUQuota caps CPU time as a fraction of one core (0.5 = half a core).
	CPUQuota float64 `json:"cpuQuota,omitempty"`
	// CPUPeriod is the quota period; zero means 100ms.
	CPUPeriod time.Duration `json:"cpuPeriod,omitempty"`
	// Cpuset restricts the CPUs, in cpuset list form ("0-1", "0,2").
	Cpuset string `json:"cpuset,omitempty"`
	// Pids caps the number of processes and threads, the init's few
	// threads included.
	Pids int64 `json:"pids,omitempty"`
	// DiskBytes caps the upper directory's size; it needs a Quota provider.
	DiskBytes int64 `json:"diskBytes,omitempty"`
	// NetworkBitsPerSec caps the container's bandwidth, the same cap in
	// each direction; it needs a Quota provider.
	NetworkBitsPerSec int64 `json:"networkBitsPerSec,omitempty"`
}

// NetworkMode selects how a container is networked.
type NetworkMode string

const (
	// NetworkNone gives the container its own network namespace with only lo.
	NetworkNone NetworkMode = "none"
	// NetworkBridge adds eth0 on the engine's bridge with an allocated IP.
	NetworkBridge NetworkMode = "bridge"
)

// Network is the network part of a Spec.
type Network struct {
	// Mode is NetworkNone (the default when empty) or NetworkBridge.
	Mode NetworkMode `json:"mode,omitempty"`
}

// Mount is a bind mount from the host into the container.
type Mount struct {
	// Source is an absolute host path.
	Source string `json:"source"`
	// Destination is an absolute path inside the container.
	Destination string `json:"destination"`
	// ReadOnly makes the mount read-only.
	ReadOnly bool `json:"readOnly,omitempty"`
}

// IDMap is a contiguous host UID and GID range for the user namespace.
type IDMap struct {
	// HostUID is the host UID of container UID 0; it must not be 0.
	HostUID uint32 `json:"hostUid"`
	// HostGID is the host GID of container GID 0; it must not be 0.
	HostGID uint32 `json:"hostGid"`
	// Size is the number of IDs mapped; zero means 65536.
	Size uint32 `json:"size,omitempty"`
}

func (m IDMap) size() uint32 {
	if m.Size == 0 {
		return 65536
	}
	return m.Size
}

// Limits on a process's arguments and environment: the kernel's for one
// string (MAX_ARG_STRLEN) and, in all, well inside what execve takes with
// a default stack and what the init reads in one message.
const (
	maxArgString = 128 << 10
	maxArgsTotal = 512 << 10
)

// checkSize refuses arguments and environments execve would refuse (E2BIG)
// with an error that says which.
func (p *Process) checkSize() error {
	total := 0
	for _, l := range [][]string{p.Args, p.Env} {
		for _, a := range l {
			if len(a) >= maxArgString {
				name, _, _ := strings.Cut(a, "=")
				return invalid("Process", "%.40q… is %d bytes; one argument or variable may have at most %d", name, len(a), maxArgString-1)
			}
			total += len(a) + 1
		}
	}
	if total > maxArgsTotal {
		return invalid("Process", "arguments and environment are %d bytes in all; at most %d", total, maxArgsTotal)
	}
	return nil
}

// maxLayers is overlayfs' own limit on lower layers (OVL_MAX_STACK).
const maxLayers = 500

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
}

// Validate checks the parts of a spec that need no filesystem access.
func (s *Spec) Validate() error {
	if len(s.Layers) == 0 {
		return invalid("Layers", "at least one layer (the rootfs) is required")
	}
	if len(s.Layers) > maxLayers {
		return invalid("Layers", "%d layers; overlayfs stacks at most %d", len(s.Layers), maxLayers)
	}
	for i, l := range s.Layers {
		if !filepath.IsAbs(l) {
			return invalid(fmt.Sprintf("Layers[%d]", i), "%q is not an absolute path", l)
		}
	}
	if s.UpperDir != "" && !filepath.IsAbs(s.UpperDir) {
		return invalid("UpperDir", "%q is not an absolute path", s.UpperDir)
	}
	if len(s.Process.Args) == 0 || s.Process.Args[0] == "" {
		return invalid("Process.Args", "a program to run is required")
	}
	if s.Process.Cwd != "" && !strings.HasPrefix(s.Process.Cwd, "/") {
		return invalid("Process.Cwd", "%q is not an absolute path", s.Process.Cwd)
	}
	for i, e := range s.Process.Env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			return invalid(fmt.Sprintf("Process.Env[%d]", i), "%q is not KEY=value", e)
		}
	}
	if err := s.Process.checkSize(); err != nil {
		return err
	}
	size := s.IDMap.size()
	if s.IDMap.HostUID == 0 || s.IDMap.HostGID == 0 {
		return invalid("IDMap", "host UID and GID must be an unprivileged range, not 0 (got %d:%d)", s.IDMap.HostUID, s.IDMap.HostGID)
	}
	if uint64(s.IDMap.HostUID)+uint64(size) > 1<<32-1 || uint64(s.IDMap.HostGID)+uint64(size) > 1<<32-1 {
		return invalid("IDMap", "range %d+%d overflows the ID space", s.IDMap.HostUID, size)
	}
	if s.Process.UID >= size {
		return invalid("Process.UID", "%d is outside the mapped range 0..%d", s.Process.UID, size-1)
	}
	if s.Process.GID >= size {
		return invalid("Process.GID", "%d is outside the mapped range 0..%d", s.Process.GID, size-1)
	}
	for i, g := range s.Process.AdditionalGIDs {
		if g >= size {
			return invalid(fmt.Sprintf("Process.AdditionalGIDs[%d]", i), "%d is outside the mapped range", g)
		}
	}
	if len(s.Hostname) > 64 || strings.ContainsAny(s.Hostname, " /\x00") {
		return invalid("Hostname", "%q is not a valid host name", s.Hostname)
	}
	if err := s.Limits.validate(); err != nil {
		return err
	}
	switch s.Network.Mode {
	case "", NetworkNone, NetworkBridge:
	default:
		return invalid("Network.Mode", "%q is neither %q nor %q", s.Network.Mode, NetworkNone, NetworkBridge)
	}
	for i, m := range s.Mounts {
		f := fmt.Sprintf("Mounts[%d]", i)
		if !filepath.IsAbs(m.Source) {
			return invalid(f+".Source", "%q is not an absolute path", m.Source)
		}
		if !filepath.IsAbs(m.Destination) || filepath.Clean(m.Destination) == "/" {
			return invalid(f+".Destination", "%q is not an absolute path below /", m.Destination)
		}
		if strings.Contains(m.Destination, "..") {
			return invalid(f+".Destination", "%q must not contain ..", m.Destination)
		}
	}
	if s.LogPath != "" && !filepath.IsAbs(s.LogPath) {
		return invalid("LogPath", "%q is not an absolute path", s.LogPath)
	}
	return nil
}

func (l *Limits) validate() error {
	switch {
	case l.MemoryBytes < 0:
		return invalid("Limits.MemoryBytes", "%d is negative", l.MemoryBytes)
	case l.MemoryBytes > 0 && l.MemoryBytes < 16<<20:
		return invalid("Limits.MemoryBytes", "%d is below the 16 MiB minimum (the container's init alone uses about 8 MiB)", l.MemoryBytes)
	case l.CPUShares < 0:
		return invalid("Limits.CPUShares", "%d is negative", l.CPUShares)
	case l.CPUShares > 262144:
		return invalid("Limits.CPUShares", "%d is above 262144", l.CPUShares)
	case l.CPUQuota < 0:
		return invalid("Limits.CPUQuota", "%g is negative", l.CPUQuota)
	case l.CPUPeriod < 0 || (l.CPUPeriod != 0 && (l.CPUPeriod < time.Millisecond || l.CPUPeriod > time.Second)):
		return invalid("Limits.CPUPeriod", "%s is outside 1ms..1s", l.CPUPeriod)
	case l.Pids < 0:
		return invalid("Limits.Pids", "%d is negative", l.Pids)
	case l.Pids > 0 && l.Pids < 16:
		return invalid("Limits.Pids", "%d is below 16 (the container's init alone runs about 10 threads)", l.Pids)
	case l.DiskBytes < 0:
		return invalid("Limits.DiskBytes", "%d is negative", l.DiskBytes)
	case l.NetworkBitsPerSec < 0:
		return invalid("Limits.NetworkBitsPerSec", "%d is negative", l.NetworkBitsPerSec)
	}
	if l.Cpuset != "" {
		if err := validateCpuset(l.Cpuset); err != nil {
			return invalid("Limits.Cpuset", "%v", err)
		}
	}
	if l.CPUQuota > 0 && l.quotaMicros() < 1000 {
		return invalid("Limits.CPUQuota", "%g of a %s period is below the kernel's 1ms minimum", l.CPUQuota, l.period())
	}
	return nil
}

func (l *Limits) period() time.Duration {
	if l.CPUPeriod == 0 {
		return 100 * time.Millisecond
	}
	return l.CPUPeriod
}

func (l *Limits) quotaMicros() int64 {
	return int64(l.CPUQuota * float64(l.period().Microseconds()))
}

func validateCpuset(s string) error {
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return fmt.Errorf("%q is not a CPU list like 0-1,3", s)
		}
		if isRange {
			b, err := strconv.ParseUint(hi, 10, 16)
			if err != nil || b < a {
				return fmt.Errorf("%q is not a CPU list like 0-1,3", s)
			}
		}
	}
	return nil
}

// ExitStatus is how a container's main process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+signal when it was killed by a signal.
	Code int `json:"code"`
	// Signal is the signal number that killed the process, 0 if it exited.
	Signal int `json:"signal,omitempty"`
	// OOMKilled is true when the kernel's OOM killer killed the app itself.
	OOMKilled bool `json:"oomKilled,omitempty"`
	// OOMKills counts the processes of the container the OOM killer
	// killed, the app's children and Exec'd processes included.
	OOMKills int `json:"oomKills,omitempty"`
	// ExitedAt is when the engine saw the exit.
	ExitedAt time.Time `json:"exitedAt"`
}

// String describes the exit for a person.
func (s ExitStatus) String() string {
	var b strings.Builder
	if s.Signal != 0 {
		fmt.Fprintf(&b, "killed by signal %d", s.Signal)
	} else {
		fmt.Fprintf(&b, "exited with code %d", s.Code)
	}
	switch {
	case s.OOMKilled:
		b.WriteString(" (out of memory)")
	case s.OOMKills == 1:
		b.WriteString(" (a process of it was killed: out of memory)")
	case s.OOMKills > 1:
		fmt.Fprintf(&b, " (%d processes of it were killed: out of memory)", s.OOMKills)
	}
	return b.String()
}

// State is a container's life-cycle state.
type State string

const (
	// StateCreated is a container made by Create and not yet started.
	StateCreated State = "created"
	// StateRunning is a container whose init is alive.
	StateRunning State = "running"
	// StatePaused is a running container whose processes are frozen.
	StatePaused State = "paused"
	// StateExited is a container whose init has ended.
	StateExited State = "exited"
)

// Info is what List and Inspect report about a container.
type Info struct {
	// ID is the engine-assigned container ID.
	ID string `json:"id"`
	// State is the current state.
	State State `json:"state"`
	// Pid is the host PID of the container's init (0 when not running).
	Pid int `json:"pid,omitempty"`
	// IP is the container's bridge address, empty without a bridge network.
	IP string `json:"ip,omitempty"`
	// HostVeth is the host-side interface name, empty without a bridge network.
	HostVeth string `json:"hostVeth,omitempty"`
	// Labels are the spec's labels.
	Labels map[string]string `json:"labels,omitempty"`
	// CreatedAt is when Create ran.
	CreatedAt time.Time `json:"createdAt"`
	// StartedAt is when Start ran, zero before.
	StartedAt time.Time `json:"startedAt,omitzero"`
	// Exit is set once the container has exited.
	Exit *ExitStatus `json:"exit,omitempty"`
	// Spec is the spec the container was created from.
	Spec Spec `json:"spec"`
}

// Stats are resource usage readings of a running container.
type Stats struct {
	// MemoryBytes is the current memory use.
	MemoryBytes uint64
	// MemoryLimitBytes is the memory limit (0 when unlimited).
	MemoryLimitBytes uint64
	// CPUTime is the total CPU time used.
	CPUTime time.Duration
	// Pids is the number of processes and threads.
	Pids uint64
	// OOMKills counts the OOM kills in the container.
	OOMKills uint64
	// CPUThrottledPeriods counts the periods in which the CPU quota stopped the container.
	CPUThrottledPeriods uint64
}
