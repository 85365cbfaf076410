// Command enginebench drives berth's container engine, and the runc and
// crun binaries, for bench/engine.sh: it runs N sequential /bin/true
// containers per runtime, interleaved, and prints the median and mean times.
//
// Usage:
//
//	enginebench compare -root DIR -rootfs DIR -bundles WITH,WITHOUT -n N -bridge NAME -subnet CIDR
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
	"strings"
	"time"

	"github.com/berthhq/berth/engine"
	"golang.org/x/sys/unix"
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
		return fmt.Errorf("usage: enginebench compare|ocispec [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	root := fs.String("root", "", "engine root directory")
	rootfs := fs.String("rootfs", "", "busybox rootfs directory")
	n := fs.Int("n", 100, "number of sequential containers per runtime")
	bundles := fs.String("bundles", "", "OCI bundle directories with and without a network namespace, comma-separated")
	bundle := fs.String("bundle", "", "OCI bundle directory (ocispec)")
	netns := fs.Bool("netns", true, "give the OCI container a network namespace (ocispec)")
	bridge := fs.String("bridge", "berthbench0", "bridge name")
	subnet := fs.String("subnet", "10.231.0.0/24", "bridge subnet")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "compare":
		with, without, ok := strings.Cut(*bundles, ",")
		if !ok {
			return fmt.Errorf("compare: -bundles needs two directories, with and without a network namespace")
		}
		return compare(*root, *rootfs, *bridge, *subnet, with, without, *n)
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

// runner runs one container of one runtime and records its times.
type runner struct {
	name        string
	once        func(record bool) error
	start, full samples
	cpu         samples            // CPU time of a full run: user and system, this process and its reaped children
	parts       map[string]samples // berth only: parts of start, wait, delete
}

// cpuTime is the user and system time used so far by this process and
// its reaped children (container inits, runc and crun with their
// containers). It is far less sensitive to other load on the host than
// wall-clock time, though work the kernel defers to its own threads (such
// as network namespace teardown) is in neither side's figure.
func cpuTime() time.Duration {
	var self, kids unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &kids)
	var t time.Duration
	for _, tv := range []unix.Timeval{self.Utime, self.Stime, kids.Utime, kids.Stime} {
		t += time.Duration(tv.Nano())
	}
	return t
}

// compare runs berth (no network, bridge) and runc and crun (with and
// without a network namespace) interleaved: round i runs one container of
// each, in an order that rotates from round to round. A busy shared host
// then slows every runtime alike instead of whichever ran during a burst,
// so the ratios stay meaningful.
func compare(root, rootfs, bridge, subnet, bundleWith, bundleWithout string, n int) error {
	e, err := engine.New(engine.Config{Root: root, BridgeName: bridge, Subnet: subnet, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer e.RemoveNetwork()
	var runners []*runner
	for _, mode := range []engine.NetworkMode{engine.NetworkNone, engine.NetworkBridge} {
		r := &runner{name: "berth-" + string(mode), parts: map[string]samples{}}
		r.once = func(record bool) error { return berthOnce(e, rootfs, mode, r, record) }
		runners = append(runners, r)
	}
	outF, err := os.CreateTemp("", "enginebench-peer-")
	if err != nil {
		return err
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	for _, rt := range []string{"runc", "crun"} {
		for _, b := range []struct{ name, dir string }{{"with", bundleWith}, {"without", bundleWithout}} {
			r := &runner{name: rt + "-netns-" + b.name}
			r.once = func(record bool) error { return peerOnce(rt, b.dir, outF, r, record) }
			runners = append(runners, r)
		}
	}
	for i := 0; i < n+3; i++ { // the first three rounds warm up
		for j := range runners {
			r := runners[(i+j)%len(runners)]
			if err := r.once(i >= 3); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
		}
	}
	for _, r := range runners {
		fmt.Printf("%s n=%d start_ms=%.2f full_ms=%.2f start_mean_ms=%.2f full_mean_ms=%.2f full_cpu_ms=%.2f", r.name, n, r.start.median(), r.full.median(), r.start.mean(), r.full.mean(), r.cpu.mean())
		for _, k := range []string{"overlay", "veth", "cgroup", "spawn", "init", "wait", "delete"} {
			if s, ok := r.parts[k]; ok {
				fmt.Printf(" %s_ms=%.2f", k, s.median())
			}
		}
		if r.parts != nil {
			fmt.Printf(" userns=%v", e.UserNamespaces())
		}
		fmt.Println()
	}
	return nil
}

// berthOnce runs one /bin/true container in-process, as the daemon does:
// start is Create and Start, full adds Wait and Delete.
func berthOnce(e *engine.Engine, rootfs string, mode engine.NetworkMode, r *runner, record bool) error {
	ctx := context.Background()
	spec := engine.Spec{
		Layers:  []string{rootfs},
		Process: engine.Process{Args: []string{"/bin/true"}},
		IDMap:   engine.IDMap{HostUID: 400000, HostGID: 400000},
		Network: engine.Network{Mode: mode},
	}
	c0 := cpuTime()
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
	cpu := cpuTime() - c0
	if !record {
		return nil
	}
	r.start = append(r.start, tStart)
	r.full = append(r.full, time.Since(t0))
	r.cpu = append(r.cpu, cpu)
	for k, d := range map[string]time.Duration{
		"overlay": tm.Overlay, "veth": tm.Network, "cgroup": tm.Cgroup, "spawn": tm.Spawn,
		"init": tm.Init, "wait": tWait, "delete": tDel,
	} {
		r.parts[k] = append(r.parts[k], d)
	}
	return nil
}

// peerOnce runs one /bin/true container with runc or crun, as containerd
// or podman would: start is create and start, full is one `run` (create,
// start, wait, delete).
func peerOnce(rt, bundle string, outF *os.File, r *runner, record bool) error {
	// Output goes to a file, not a pipe: the container process of
	// "create" inherits it and would hold a pipe open until "start".
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
	id := fmt.Sprintf("bench-%d-%d", os.Getpid(), len(r.full))
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
	c1 := cpuTime()
	t1 := time.Now()
	if err := runq("run", "--bundle", bundle, id+"r"); err != nil {
		return err
	}
	tFull := time.Since(t1)
	cpu := cpuTime() - c1
	if record {
		r.start = append(r.start, tStart)
		r.full = append(r.full, tFull)
		r.cpu = append(r.cpu, cpu)
	}
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
