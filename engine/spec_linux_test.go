package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestInvalidSpecs(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	tests := []struct {
		name  string
		edit  func(*Spec)
		field string
	}{
		{name: "no layers", edit: func(s *Spec) { s.Layers = nil }, field: "Layers"},
		{name: "missing rootfs", edit: func(s *Spec) { s.Layers = []string{"/nonexistent/rootfs"} }, field: "Layers[0]"},
		{name: "relative layer", edit: func(s *Spec) { s.Layers = []string{"rootfs"} }, field: "Layers[0]"},
		{name: "no args", edit: func(s *Spec) { s.Process.Args = nil }, field: "Process.Args"},
		{name: "negative memory", edit: func(s *Spec) { s.Limits.MemoryBytes = -1 }, field: "Limits.MemoryBytes"},
		{name: "tiny memory", edit: func(s *Spec) { s.Limits.MemoryBytes = 1000 }, field: "Limits.MemoryBytes"},
		{name: "negative pids", edit: func(s *Spec) { s.Limits.Pids = -5 }, field: "Limits.Pids"},
		{name: "pids too low for the init", edit: func(s *Spec) { s.Limits.Pids = 3 }, field: "Limits.Pids"},
		{name: "negative cpu quota", edit: func(s *Spec) { s.Limits.CPUQuota = -0.5 }, field: "Limits.CPUQuota"},
		{name: "negative shares", edit: func(s *Spec) { s.Limits.CPUShares = -2 }, field: "Limits.CPUShares"},
		{name: "bad cpuset", edit: func(s *Spec) { s.Limits.Cpuset = "0-x" }, field: "Limits.Cpuset"},
		{name: "root uid map", edit: func(s *Spec) { s.IDMap.HostUID = 0 }, field: "IDMap"},
		{name: "overflowing uid map", edit: func(s *Spec) { s.IDMap.HostUID = 1<<32 - 100 }, field: "IDMap"},
		{name: "uid outside the map", edit: func(s *Spec) { s.IDMap.Size = 1000; s.Process.UID = 1000 }, field: "Process.UID"},
		{name: "bad network mode", edit: func(s *Spec) { s.Network.Mode = "host" }, field: "Network.Mode"},
		{name: "relative mount", edit: func(s *Spec) { s.Mounts = []Mount{{Source: "data", Destination: "/data"}} }, field: "Mounts[0].Source"},
		{name: "mount over root", edit: func(s *Spec) { s.Mounts = []Mount{{Source: "/tmp", Destination: "/"}} }, field: "Mounts[0].Destination"},
		{name: "missing mount source", edit: func(s *Spec) { s.Mounts = []Mount{{Source: "/nonexistent", Destination: "/data"}} }, field: "Mounts[0].Source"},
		{name: "bad env", edit: func(s *Spec) { s.Process.Env = []string{"NOEQUALS"} }, field: "Process.Env[0]"},
		{name: "variable over 128 KiB", edit: func(s *Spec) { s.Process.Env = []string{"V=" + strings.Repeat("v", 128<<10)} }, field: "Process"},
		{name: "environment over 512 KiB", edit: func(s *Spec) {
			for i := 0; i < 6; i++ {
				s.Process.Env = append(s.Process.Env, fmt.Sprintf("V%d=%s", i, strings.Repeat("v", 100<<10)))
			}
		}, field: "Process"},
		{name: "too many layers", edit: func(s *Spec) {
			for len(s.Layers) <= maxLayers {
				s.Layers = append(s.Layers, s.Layers[0])
			}
		}, field: "Layers"},
		{name: "disk quota without provider", edit: func(s *Spec) { s.Limits.DiskBytes = 1 << 30 }, field: "Limits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec("true")
			spec.Network.Mode = NetworkBridge
			tc.edit(&spec)
			_, err := e.Create(context.Background(), spec)
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("err = %v, want ErrInvalidSpec naming %s", err, tc.field)
			}
		})
	}
	ents, err := os.ReadDir(e.cfg.Root)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if validID(ent.Name()) {
			t.Errorf("invalid spec left %s behind", ent.Name())
		}
	}
	if n, err := e.network(); err != nil || n.created() {
		t.Errorf("invalid specs created the bridge (%v)", err)
	}
}

// TestStartFailureLeavesNothing starts a program that does not exist.
func TestStartFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	spec := testSpec("/no/such/program")
	spec.Network.Mode = NetworkBridge
	id, err := e.Create(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	testIDs.Store(id, true)
	err = e.Start(context.Background(), id)
	if err == nil || !strings.Contains(err.Error(), "/no/such/program") {
		t.Fatalf("start err = %v, want one naming the program", err)
	}
	info, err := e.Inspect(id)
	if err != nil || info.State != StateCreated {
		t.Fatalf("after failed start: %+v %v", info, err)
	}
	if err := e.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Inspect(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("inspect after delete: %v", err)
	}
}

func TestLifecycleErrors(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	if _, err := e.Inspect("0123456789abcdef"); !errors.Is(err, ErrNotFound) {
		t.Errorf("inspect unknown: %v", err)
	}
	if _, err := e.Inspect("../../etc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("inspect path: %v", err)
	}
	id := run(t, e, testSpec("true"))
	wait(t, e, id, 10*time.Second)
	if err := e.Start(context.Background(), id); !errors.Is(err, ErrAlreadyStarted) {
		t.Errorf("second start: %v", err)
	}
	if err := e.Signal(id, 15); !errors.Is(err, ErrNotRunning) {
		t.Errorf("signal exited: %v", err)
	}
	if err := e.Pause(id); !errors.Is(err, ErrNotRunning) {
		t.Errorf("pause exited: %v", err)
	}
	infos, err := e.List()
	if err != nil || len(infos) != 1 || infos[0].State != StateExited || infos[0].Exit.Code != 0 {
		t.Fatalf("list: %+v %v", infos, err)
	}
}

func TestGC(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	spec := testSpec("sleep", "60")
	spec.Network.Mode = NetworkBridge
	id := run(t, e, spec)
	// A Delete interrupted right after it removed the config.
	if err := os.Remove(e.dir(id) + "/config.json"); err != nil {
		t.Fatal(err)
	}
	if err := e.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.dir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("gc left the container dir: %v", err)
	}
	n, _ := e.network()
	var left int
	_ = n.withIPAM(func(s *ipamState) bool { left = len(s.Allocated); return false })
	if left != 0 {
		t.Fatalf("gc left %d addresses allocated", left)
	}
}

// TestLargeEnvironment starts an app whose config is past the ~208 KiB
// that one message on the init's socket took by default.
func TestLargeEnvironment(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	spec := testSpec("sh", "-c", "echo ${#V0} ${#V3} $LAST")
	for i := 0; i < 4; i++ {
		spec.Process.Env = append(spec.Process.Env, fmt.Sprintf("V%d=%s", i, strings.Repeat("v", 100<<10)))
	}
	spec.Process.Env = append(spec.Process.Env, "LAST=end")
	out, st := output(t, e, spec)
	if st.Code != 0 || strings.TrimSpace(out) != "102400 102400 end" {
		t.Fatalf("status %v, output %q", st, out)
	}
}
