// Command container runs the router benchmark's backend in a berth
// container on a bridge of its own, so that nginx and berth's router proxy
// to a container as they do in production. It prints the backend's
// address once the container runs, and on SIGTERM or SIGINT removes all it
// made: the container, its cgroup, veth and IP, the bridge with its NAT
// rules, and its directories.
//
// Usage:
//
//	container -backend PATH [-port N]
//
// PATH is a statically linked backend (CGO_ENABLED=0), run as
// "PATH -listen :N" in the container. It needs root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/berthhq/berth/engine"
)

func main() {
	engine.MaybeInit()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "container:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	bin := flag.String("backend", "", "statically linked backend binary to run in the container")
	port := flag.Int("port", 8080, "port the backend listens on in the container")
	flag.Parse()
	if *bin == "" {
		return errors.New("-backend is required")
	}
	// The handler stays installed until run returns: a second signal (the
	// script's trap after a Ctrl-C) must not cut the cleanup short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "berth-router-backend-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove work dir: %w", rerr))
		}
	}()
	// Container init runs as an unprivileged host UID and must reach Root.
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("chmod work dir: %w", err)
	}
	layer, err := buildLayer(filepath.Join(dir, "rootfs"), *bin)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := newEngine(filepath.Join(dir, "containers"), logger)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, removeEngine(e)) }()

	id, err := e.Run(ctx, engine.Spec{
		Layers:  []string{layer},
		Process: engine.Process{Args: []string{"/backend", "-listen", ":" + strconv.Itoa(*port)}},
		IDMap:   engine.IDMap{HostUID: 410000, HostGID: 410000},
		Network: engine.Network{Mode: engine.NetworkBridge},
	})
	if err != nil {
		return fmt.Errorf("run backend container: %w", err)
	}
	defer func() { err = errors.Join(err, removeContainer(e, id)) }()
	info, err := e.Inspect(id)
	if err != nil {
		return err
	}
	fmt.Println(net.JoinHostPort(info.IP, strconv.Itoa(*port)))

	exited := make(chan engine.ExitStatus, 1)
	go func() {
		if st, err := e.Wait(ctx, id); err == nil {
			exited <- st
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case st := <-exited:
		dumpLog(e, id)
		return fmt.Errorf("backend container %s: %s", id, st)
	}
}

// buildLayer makes a root filesystem holding only the backend, as /backend,
// and the mount points the container init expects.
func buildLayer(root, bin string) (string, error) {
	for _, d := range []string{"dev", "proc", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", fmt.Errorf("create rootfs: %w", err)
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("read backend: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "backend"), data, 0o755); err != nil {
		return "", fmt.Errorf("copy backend into rootfs: %w", err)
	}
	return root, nil
}

// newEngine returns an engine with a bridge named after this process, on a
// random 10.x.y.0/24 that no host route (a running berth's bridge among
// them) uses.
func newEngine(root string, logger *slog.Logger) (*engine.Engine, error) {
	bridge := fmt.Sprintf("brbench%d", os.Getpid())
	for range 50 {
		subnet := fmt.Sprintf("10.%d.%d.0/24", 200+rand.IntN(50), rand.IntN(256))
		e, err := engine.New(engine.Config{Root: root, BridgeName: bridge, Subnet: subnet, Logger: logger})
		if errors.Is(err, engine.ErrSubnetCollision) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create engine: %w", err)
		}
		return e, nil
	}
	return nil, errors.New("create engine: no free 10.x.y.0/24 subnet for the bench bridge in 50 tries")
}

// removeContainer stops the backend and deletes its container (cgroup,
// veth, IP and directories).
func removeContainer(e *engine.Engine, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.Stop(ctx, id, 5*time.Second); err != nil && !errors.Is(err, engine.ErrNotRunning) {
		return fmt.Errorf("stop backend container: %w", err)
	}
	if err := e.Delete(ctx, id); err != nil {
		return fmt.Errorf("delete backend container: %w", err)
	}
	return nil
}

// removeEngine waits for the engine's background removals and takes down
// the bridge and its NAT rules.
func removeEngine(e *engine.Engine) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return errors.Join(e.GC(ctx), e.RemoveNetwork())
}

// dumpLog copies the container's log to stderr, to say why it ended.
func dumpLog(e *engine.Engine, id string) {
	_ = e.Logs(context.Background(), id, false, func(le engine.LogEntry) error {
		fmt.Fprintf(os.Stderr, "backend %s: %s\n", le.Stream, le.Text)
		return nil
	})
}
