// Command proxy runs berth's router alone for the router benchmark: every
// host goes to one app with the given backends.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/berthhq/berth/router"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:18081", "listen address")
	backends := flag.String("backends", "127.0.0.1:18080", "comma-separated backend addresses")
	host := flag.String("host", "127.0.0.1", "host routed to the app")
	accessLog := flag.String("access-log", "", "access log file (empty: off)")
	policy := flag.String("policy", "round-robin", "round-robin or least-conn")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	runtime.GOMAXPROCS(router.ProcsForEventLoops(os.Getenv("GOMAXPROCS")))

	pol, err := router.ParsePolicy(*policy)
	if err != nil {
		return err
	}
	cfg := router.Config{HTTPAddr: *listen, Policy: pol}
	if *accessLog != "" {
		f, err := os.OpenFile(*accessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open access log: %w", err)
		}
		defer f.Close()
		cfg.AccessLog = f
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := router.New(cfg, logger)
	if err != nil {
		return fmt.Errorf("create router: %w", err)
	}
	app := &router.App{Name: "bench"}
	for i, a := range strings.Split(*backends, ",") {
		app.Backends = append(app.Backends, router.Backend{ID: fmt.Sprintf("web.%d", i+1), Addr: a})
	}
	rt.SetTable(&router.Table{
		Apps:  map[string]*router.App{"bench": app},
		Hosts: map[string]string{*host: "bench"},
	})
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("create profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rt.Serve(ctx); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
