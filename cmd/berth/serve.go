package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/berthhq/berth/router"
)

// serve runs the daemon until SIGTERM or SIGINT.
func serve(cfg Config, logOut io.Writer) error {
	level, _ := parseLogLevel(cfg.LogLevel)
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	if os.Geteuid() != 0 {
		return errors.New("serve: berth runs containers and must run as root (try: sudo berth serve)")
	}
	runtime.GOMAXPROCS(router.ProcsForEventLoops(os.Getenv("GOMAXPROCS")))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d, err := newDaemon(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer d.close()
	logger.Info("berth is up", "data_dir", cfg.DataDir, "socket", cfg.Socket, "version", version)
	err = d.run(ctx)
	logger.Info("berth stopped")
	return err
}

func ensureDataDirs(root string) error {
	for _, sub := range []string{"", "repos", "layers", "images", "containers", "logs"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o711); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
	}
	return nil
}
