package engine

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/opencontainers/cgroups"
	devconfig "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/cgroups/manager"

	"golang.org/x/sys/unix"

	// Registers the device controller setters (v1 devices.* files, v2 eBPF).
	_ "github.com/opencontainers/cgroups/devices"
)

// cgroupParent is the directory under each hierarchy that holds berth's
// container cgroups. It stays while containers come and go; GC removes it
// when empty.
const cgroupParent = "berth"

// cgroupParentLock orders creating a container's cgroup (shared) against
// GC removing the empty parent (exclusive), across every Engine on the
// host: without it GC of one Engine could remove the parent while another
// creates a cgroup below it (v1 cpuset then fails with ENODEV reading the
// dying parent's cpuset.mems).
const cgroupParentLock = "/run/berth-cgroup.lock"

// allowedDevices is deny-all plus the standard character devices.
var allowedDevices = []*devconfig.Rule{
	{Type: devconfig.WildcardDevice, Major: devconfig.Wildcard, Minor: devconfig.Wildcard, Permissions: "rwm", Allow: false},
	{Type: devconfig.CharDevice, Major: 1, Minor: 3, Permissions: "rwm", Allow: true},                    // null
	{Type: devconfig.CharDevice, Major: 1, Minor: 5, Permissions: "rwm", Allow: true},                    // zero
	{Type: devconfig.CharDevice, Major: 1, Minor: 7, Permissions: "rwm", Allow: true},                    // full
	{Type: devconfig.CharDevice, Major: 1, Minor: 8, Permissions: "rwm", Allow: true},                    // random
	{Type: devconfig.CharDevice, Major: 1, Minor: 9, Permissions: "rwm", Allow: true},                    // urandom
	{Type: devconfig.CharDevice, Major: 5, Minor: 0, Permissions: "rwm", Allow: true},                    // tty
	{Type: devconfig.CharDevice, Major: 5, Minor: 2, Permissions: "rwm", Allow: true},                    // ptmx
	{Type: devconfig.CharDevice, Major: 136, Minor: devconfig.Wildcard, Permissions: "rwm", Allow: true}, // pts/*
}

// cgroupPath is the container's cgroup path below each hierarchy's root.
func (e *Engine) cgroupPath(id string) string {
	return "/" + cgroupParent + "/" + e.tag + "-" + id
}

// cgroupRoots finds, once per Engine, the directory of each hierarchy in
// which berth's parent lives (v1: one per controller; v2: the unified
// root, under the key ""), so that opening a container's cgroup is string
// work instead of probing mounts again.
func cgroupRoots() (map[string]string, error) {
	const probe = "/" + cgroupParent + "/probe"
	m, err := manager.New(&cgroups.Cgroup{Path: probe, Resources: &cgroups.Resources{}})
	if err != nil {
		return nil, fmt.Errorf("find cgroup hierarchies: %w", err)
	}
	roots := map[string]string{}
	for subsys, p := range m.GetPaths() {
		dir, ok := strings.CutSuffix(p, probe)
		if !ok {
			return nil, fmt.Errorf("find cgroup hierarchies: unexpected path %s for %s", p, subsys)
		}
		roots[subsys] = dir
	}
	return roots, nil
}

func resources(l Limits) *cgroups.Resources {
	r := &cgroups.Resources{Devices: allowedDevices}
	if l.MemoryBytes > 0 {
		r.Memory = l.MemoryBytes
		r.MemorySwap = l.MemoryBytes // no swap beyond the limit
	}
	if l.CPUShares > 0 {
		r.CpuShares = uint64(l.CPUShares)
	}
	if l.CPUQuota > 0 {
		r.CpuPeriod = uint64(l.period().Microseconds())
		r.CpuQuota = l.quotaMicros()
	}
	r.CpusetCpus = l.Cpuset
	if l.Pids > 0 {
		p := l.Pids
		r.PidsLimit = &p
	}
	return r
}

// cgroupManager returns the manager of a container's cgroup; it creates nothing.
func (e *Engine) cgroupManager(id string, l Limits) (cgroups.Manager, error) {
	paths := make(map[string]string, len(e.cgRoots))
	for subsys, root := range e.cgRoots {
		paths[subsys] = root + e.cgroupPath(id)
	}
	m, err := manager.NewWithPaths(&cgroups.Cgroup{Path: e.cgroupPath(id), Resources: resources(l)}, paths)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	return m, nil
}

// createCgroup creates the container's cgroup with its limits and, for
// pid > 0, moves that process into it.
func (e *Engine) createCgroup(m cgroups.Manager, l Limits, pid int) error {
	lock, err := flockFile(cgroupParentLock, unix.LOCK_SH)
	if err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	err = m.Apply(pid)
	lock.Close()
	if err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	if err := m.Set(resources(l)); err != nil {
		return fmt.Errorf("set cgroup limits: %w", err)
	}
	return nil
}

// destroyCgroup removes a container's cgroup, which must be empty: its
// init has been reaped, and with it every process of its PID namespace.
// The library retries briefly while the kernel finishes removing exited
// tasks. The shared parent stays for the next container; GC removes it
// when empty.
func (e *Engine) destroyCgroup(id string) error {
	m, err := e.cgroupManager(id, Limits{})
	if err != nil {
		return err
	}
	if err := m.Destroy(); err != nil {
		return fmt.Errorf("remove cgroup: %w", err)
	}
	return nil
}

// removeEmptyParents removes berth's parent directory from every hierarchy
// where it is empty; a busy one belongs to a running container and stays.
// While any Engine is creating a cgroup, the parent is busy by definition:
// the removal is skipped rather than waited for.
func (e *Engine) removeEmptyParents() {
	lock, err := flockFile(cgroupParentLock, unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		return
	}
	defer lock.Close()
	for _, root := range e.cgRoots {
		_ = unix.Rmdir(filepath.Join(root, cgroupParent))
	}
}

// oomKills reads the OOM kill counter of a container's cgroup.
func (e *Engine) oomKills(id string) uint64 {
	m, err := e.cgroupManager(id, Limits{})
	if err != nil {
		return 0
	}
	n, err := m.OOMKillCount()
	if err != nil {
		return 0
	}
	return n
}
