// Command enginebench drives berth's container engine, and the runc and
// crun binaries, for bench/engine.sh: it runs N sequential /bin/true
// containers and prints the median and mean times.
//
// Usage:
//
//	enginebench berth   -root DIR -rootfs DIR -n N -net none|bridge
//	enginebench peer    -runtime runc|crun -bundle DIR -n N
//	enginebench ocispec -bundle DIR -rootfs DIR -netns=true|false
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/berthhq/berth/engine"
)

func main() {
	engine.MaybeInit()
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "enginebench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: enginebench berth|peer|ocispec [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	root := fs.String("root", "", "engine root directory")
	rootfs := fs.String("rootfs", "", "busybox rootfs directory")
	n := fs.Int("n", 100, "number of sequential containers")
	netMode := fs.String("net", "none", "none or bridge")
	runtime := fs.String("runtime", "runc", "peer runtime binary")
	bundle := fs.String("bundle", "", "OCI bundle directory")
	netns := fs.Bool("netns", true, "give the OCI container a network namespace")
	bridge := fs.String("bridge", "berthbench0", "bridge name")
	subnet := fs.String("subnet", "10.231.0.0/24", "bridge subnet")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "berth":
		return benchBerth(*root, *rootfs, *bridge, *subnet, engine.NetworkMode(*netMode), *n)
	case "peer":
		return benchPeer(*runtime, *bundle, *n)
	case "ocispec":
		return ociSpec(*bundle, *rootfs, *netns)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

type samples []time.Duration

func (s samples) median() float64 {
	c := slices.Clone(s)
	slices.Sort(c)
	return ms(c[len(c)/2])
}

func (s samples) mean() float64 {
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return ms(t / time.Duration(len(s)))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchBerth(root, rootfs, bridge, subnet string, mode engine.NetworkMode, n int) error {
	e, err := engine.New(engine.Config{Root: root, BridgeName: bridge, Subnet: subnet, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	if mode == engine.NetworkBridge {
		defer e.RemoveNetwork()
	}
	ctx := context.Background()
	spec := engine.Spec{
		Layers:  []string{rootfs},
		Process: engine.Process{Args: []string{"/bin/true"}},
		IDMap:   engine.IDMap{HostUID: 400000, HostGID: 400000},
		Network: engine.Network{Mode: mode},
	}
	var start, full, overlay, veth, cgroup, spawn, initT, waitT, delT samples
	for i := 0; i < n+3; i++ { // the first three warm up
		t0 := time.Now()
		id, err := e.Create(ctx, spec)
		if err != nil {
			return err
		}
		tm, err := e.StartTimed(ctx, id)
		if err != nil {
			_ = e.Delete(ctx, id)
			return err
		}
		tStart := time.Since(t0)
		tw := time.Now()
		st, err := e.Wait(ctx, id)
		if err != nil {
			return err
		}
		if st.Code != 0 {
			return fmt.Errorf("container %s: %s", id, st)
		}
		tWait := time.Since(tw)
		td := time.Now()
		if err := e.Delete(ctx, id); err != nil {
			return err
		}
		tDel := time.Since(td)
		if i < 3 {
			continue
		}
		start = append(start, tStart)
		full = append(full, time.Since(t0))
		overlay = append(overlay, tm.Overlay)
		veth = append(veth, tm.Network)
		cgroup = append(cgroup, tm.Cgroup)
		spawn = append(spawn, tm.Spawn)
		initT = append(initT, tm.Init)
		waitT = append(waitT, tWait)
		delT = append(delT, tDel)
	}
	fmt.Printf("berth-%s n=%d start_ms=%.2f full_ms=%.2f start_mean_ms=%.2f full_mean_ms=%.2f overlay_ms=%.2f veth_ms=%.2f cgroup_ms=%.2f spawn_ms=%.2f init_ms=%.2f wait_ms=%.2f delete_ms=%.2f userns=%v\n",
		mode, n, start.median(), full.median(), start.mean(), full.mean(), overlay.median(), veth.median(), cgroup.median(), spawn.median(), initT.median(), waitT.median(), delT.median(), e.UserNamespaces())
	return nil
}

func benchPeer(rt, bundle string, n int) error {
	// Output goes to a file, not a pipe: the container process of
	// "create" inherits it and would hold a pipe open until "start".
	outF, err := os.CreateTemp("", "enginebench-peer-")
	if err != nil {
		return err
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	runq := func(args ...string) error {
		_ = outF.Truncate(0)
		_, _ = outF.Seek(0, 0)
		cmd := exec.Command(rt, args...)
		cmd.Stdout, cmd.Stderr = outF, outF
		if err := cmd.Run(); err != nil {
			out, _ := os.ReadFile(outF.Name())
			return fmt.Errorf("%s %v: %w: %s", rt, args, err, out)
		}
		return nil
	}
	var start, full samples
	for i := 0; i < n+3; i++ {
		id := fmt.Sprintf("bench-%d-%d", os.Getpid(), i)
		t0 := time.Now()
		if err := runq("create", "--bundle", bundle, id); err != nil {
			return err
		}
		if err := runq("start", id); err != nil {
			_ = runq("delete", "-f", id)
			return err
		}
		tStart := time.Since(t0)
		if err := runq("delete", "-f", id); err != nil {
			return err
		}
		t1 := time.Now()
		if err := runq("run", "--bundle", bundle, id+"r"); err != nil {
			return err
		}
		tFull := time.Since(t1)
		if i < 3 {
			continue
		}
		start = append(start, tStart)
		full = append(full, tFull)
	}
	fmt.Printf("%s n=%d start_ms=%.2f full_ms=%.2f start_mean_ms=%.2f full_mean_ms=%.2f\n", rt, n, start.median(), full.median(), start.mean(), full.mean())
	return nil
}

// ociSpec rewrites the config.json made by `runc spec` in bundle: no
// terminal, /bin/true, the shared busybox rootfs, and with or without a
// network namespace.
func ociSpec(bundle, rootfs string, netns bool) error {
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/true"}
	cfg["root"] = map[string]any{"path": rootfs, "readonly": true}
	linux := cfg["linux"].(map[string]any)
	var nss []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] == "network" && !netns {
			continue
		}
		nss = append(nss, ns)
	}
	linux["namespaces"] = nss
	out, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}
