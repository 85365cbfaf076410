package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/quota"
)

// cleanup removes what a stopped berth leaves on the host: containers whose
// create or delete never finished, their cgroups and addresses, and — once
// no container is left — the bridge and its NAT rules. It refuses to run
// beside a live daemon. Running app containers are kept: they are the
// apps' (apps:destroy removes them).
func cleanup(ctx context.Context, cfg Config, out io.Writer) error {
	if c, err := net.Dial("unix", cfg.Socket); err == nil {
		c.Close()
		return errors.New("cleanup: berth is running; stop it first")
	}
	eng, err := engine.New(engine.Config{
		Root:       filepath.Join(cfg.DataDir, "containers"),
		BridgeName: cfg.BridgeName,
		Subnet:     cfg.BridgeSubnet,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if err := eng.GC(ctx); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	left, err := eng.List()
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if len(left) > 0 {
		fmt.Fprintf(out, "%d containers remain (apps:destroy removes an app's); the bridge %s stays\n", len(left), cfg.BridgeName)
		return nil
	}
	if err := eng.RemoveNetwork(); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	// With no container left, nothing writes to the disk-quota pool:
	// unmount it and free its loop device (data stays for the next start).
	if disk, err := quota.NewEngineDisk(quota.DiskConfig{Root: filepath.Join(cfg.DataDir, "quota"), Driver: cfg.DiskQuotaDriver}, slog.New(slog.DiscardHandler)); err == nil {
		if err := disk.Restore(ctx); err == nil {
			if err := disk.Close(ctx); err != nil {
				return fmt.Errorf("cleanup: unmount disk quotas: %w", err)
			}
		}
	}
	fmt.Fprintf(out, "removed leftovers and the bridge %s\n", cfg.BridgeName)
	return nil
}
