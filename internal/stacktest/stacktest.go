// Package stacktest holds the harness that tests running berth's real stack
// share: an engine on a private bridge and subnet that cleans up after
// itself, and a router on a loopback port.
//
// The engine package's own tests cannot use it (it imports engine).
package stacktest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/router"
)

// NewEngine makes an engine over root on a fresh bridge (prefix plus a
// random suffix) and a random 10.x.y.0/24 subnet no host route uses, and
// returns it with its config (engine.New(cfg) is the same engine after a
// daemon restart). At cleanup it deletes every container, collects garbage
// and removes the bridge.
func NewEngine(t testing.TB, root, prefix string) (*engine.Engine, engine.Config) {
	t.Helper()
	testenv.RequireRoot(t)
	bridge := prefix + testenv.Suffix()
	var (
		eng *engine.Engine
		cfg engine.Config
		err error
	)
	for range 30 {
		a, _ := rand.Int(rand.Reader, big.NewInt(200))
		b, _ := rand.Int(rand.Reader, big.NewInt(256))
		cfg = engine.Config{Root: root, BridgeName: bridge, Subnet: fmt.Sprintf("10.%d.%d.0/24", 20+a.Int64(), b.Int64()),
			Logger: slog.New(slog.DiscardHandler)}
		eng, err = engine.New(cfg)
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	t.Cleanup(func() { cleanupEngine(t, eng) })
	return eng, cfg
}

// cleanupEngine deletes every container under eng's root (every engine over
// that root sees the same ones), collects garbage and removes the network.
func cleanupEngine(t testing.TB, eng *engine.Engine) {
	t.Helper()
	ctx := context.Background()
	infos, err := eng.List()
	if err != nil {
		t.Errorf("list containers: %v", err)
	}
	for _, in := range infos {
		if err := eng.Delete(ctx, in.ID); err != nil && !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("delete container %s: %v", in.ID, err)
		}
	}
	if err := eng.GC(ctx); err != nil {
		t.Errorf("engine gc: %v", err)
	}
	if err := eng.RemoveNetwork(); err != nil {
		t.Errorf("remove network: %v", err)
	}
}

// ServeRouter serves a router on a loopback port until the test ends and
// returns it with its address. Unhealthy backends recover quickly.
func ServeRouter(t testing.TB) (*router.Router, string) {
	t.Helper()
	rt, err := router.New(router.Config{HTTPAddr: "127.0.0.1:0", FailTimeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- rt.ServeListeners(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("router: %v", err)
		}
	})
	return rt, ln.Addr().String()
}
