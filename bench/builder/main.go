// Command builder-bench measures berth's image builder: a cold build and
// no-change rebuilds of a 5-step Dockerfile app on the busybox base, with
// RUN steps in real engine containers. Run by bench/builder.sh as root.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/berthhq/berth/builder"
	"github.com/berthhq/berth/engine"
)

const dockerfile = `FROM busybox
COPY . /app
RUN cd /app && cat *.txt > all.txt
RUN echo built > /app/stamp
CMD ["cat", "/app/all.txt"]
`

func main() {
	engine.MaybeInit()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "builder-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	runs := flag.Int("runs", 20, "no-change rebuilds to time")
	goal := flag.Duration("goal", 300*time.Millisecond, "target for the median no-change rebuild")
	flag.Parse()
	ctx := context.Background()
	top, err := os.MkdirTemp("", "berth-builder-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(top)
	if err := os.Chmod(top, 0o711); err != nil {
		return err
	}
	store, err := builder.NewStore(filepath.Join(top, "data"), nil)
	if err != nil {
		return err
	}
	eng, err := newEngine(filepath.Join(top, "containers"))
	if err != nil {
		return err
	}
	defer func() {
		infos, _ := eng.List()
		for _, in := range infos {
			_ = eng.Delete(ctx, in.ID)
		}
		_ = eng.GC(ctx)
		_ = eng.RemoveNetwork()
	}()
	ids := builder.IDRange{HostUID: 310000, HostGID: 310000, Size: 65536}
	b, err := builder.New(builder.Options{Store: store,
		Runner: builder.NewEngineRunner(eng, func(string) (builder.IDRange, error) { return ids, nil }, nil),
		Limits: builder.Limits{MemoryBytes: 256 << 20, CPUQuota: 1}})
	if err != nil {
		return err
	}
	if _, err := store.CreateBusyboxBase(ctx, "", "", nil); err != nil {
		return err
	}
	app := filepath.Join(top, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		return err
	}
	files := map[string]string{"Dockerfile": dockerfile}
	for i := range 20 {
		files[fmt.Sprintf("f%02d.txt", i)] = fmt.Sprintf("file %d\n", i)
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(app, n), []byte(c), 0o644); err != nil {
			return err
		}
	}
	build := func() (*builder.BuildResult, time.Duration, error) {
		t0 := time.Now()
		res, err := b.Build(ctx, builder.BuildRequest{App: "bench", ContextDir: app, Output: io.Discard})
		return res, time.Since(t0), err
	}
	res, cold, err := build()
	if err != nil {
		return fmt.Errorf("cold build: %w", err)
	}
	fmt.Printf("cold build (5 steps, %d RUN in containers): %s\n", res.RunsExecuted(), cold.Round(time.Millisecond))
	var times []time.Duration
	for range *runs {
		res, d, err := build()
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		if res.RunsExecuted() != 0 {
			return fmt.Errorf("no-change rebuild ran %d RUN steps", res.RunsExecuted())
		}
		times = append(times, d)
	}
	slices.Sort(times)
	med := times[len(times)/2]
	fmt.Printf("no-change rebuild: median %s, min %s, max %s over %d runs (0 RUN steps)\n",
		med.Round(10*time.Microsecond), times[0].Round(10*time.Microsecond), times[len(times)-1].Round(10*time.Microsecond), len(times))
	verdict := "met"
	if med >= *goal {
		verdict = "MISSED"
	}
	fmt.Printf("goal no-change rebuild < %s: %s (cold/rebuild ratio %.1fx)\n", *goal, verdict, float64(cold)/float64(med))
	return nil
}

// newEngine makes an engine on its own bridge and a free 10.x.y.0/24.
func newEngine(root string) (*engine.Engine, error) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	bridge := "bbn" + hex.EncodeToString(b[:])
	var last error
	for range 20 {
		x, _ := rand.Int(rand.Reader, big.NewInt(200))
		y, _ := rand.Int(rand.Reader, big.NewInt(256))
		eng, err := engine.New(engine.Config{Root: root, BridgeName: bridge,
			Subnet: fmt.Sprintf("10.%d.%d.0/24", 20+x.Int64(), y.Int64()),
			Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			return eng, nil
		}
		last = err
	}
	return nil, fmt.Errorf("new engine: %w", last)
}
