package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/cgroups"
	devconfig "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/cgroups/manager"

	// Registers the device controller setters (v1 devices.* files, v2 eBPF).
	_ "github.com/opencontainers/cgroups/devices"
)

// cgroupParent is the directory under each hierarchy that holds berth's
// container cgroups; it is removed again when it becomes empty.
const cgroupParent = "berth"

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
	m, err := manager.New(&cgroups.Cgroup{Path: e.cgroupPath(id), Resources: resources(l)})
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	return m, nil
}

// destroyCgroup removes a container's cgroup (killing nothing: it must be
// empty) and the shared parent when it is empty.
func (e *Engine) destroyCgroup(id string) error {
	m, err := e.cgroupManager(id, Limits{})
	if err != nil {
		return err
	}
	var derr error
	for i := 0; i < 50; i++ {
		if derr = m.Destroy(); derr == nil {
			break
		}
		// The kernel removes exited tasks from the cgroup a moment after they die.
		time.Sleep(10 * time.Millisecond)
	}
	if derr != nil {
		return fmt.Errorf("remove cgroup: %w", derr)
	}
	removeEmptyParents()
	return nil
}

// removeEmptyParents removes berth's parent directory from every hierarchy
// where it is empty; a busy one belongs to another engine and stays.
func removeEmptyParents() {
	if cgroups.IsCgroup2UnifiedMode() {
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", cgroupParent))
		return
	}
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return
	}
	for _, ent := range ents {
		err := os.Remove(filepath.Join("/sys/fs/cgroup", ent.Name(), cgroupParent))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			continue
		}
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
