package deploy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/platform"
)

func TestOOMKilledInstanceShowsWhy(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RestartBackoff = 500 * time.Millisecond })
	e.createApp("hungry")
	e.scale("hungry", map[string]int{"web": 0, "worker": 1})
	mem := int64(32 << 20)
	if _, err := e.svc.SetLimits(context.Background(), platform.System(), "hungry", "worker", platform.LimitChange{MemoryBytes: &mem}); err != nil {
		t.Fatal(err)
	}
	// tail keeps a line without newline whole in memory: 256 MiB of zeros.
	v1 := e.release("hungry", e.image("hungry:v1", map[string]string{
		"web":    webCommand("v1"),
		"worker": `echo eating; head -c 268435456 /dev/zero | tail -n 1 > /dev/null; echo survived`,
	}), nil)
	e.start(t)
	if err := e.d.Rollout(context.Background(), "hungry", v1, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the worker to be OOM-killed and restarted", func() bool {
		return e.report(t, "hungry")["worker.1"].Restarts >= 1
	})
	w := e.report(t, "hungry")["worker.1"]
	if !strings.Contains(w.LastExit, "out of memory") {
		t.Fatalf("worker.1 last exit = %q, want it to say out of memory", w.LastExit)
	}
	var rep strings.Builder
	if err := e.d.Report(context.Background(), "hungry", &rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.String(), "INSTANCE") || !strings.Contains(rep.String(), "worker.1") || !strings.Contains(rep.String(), "out of memory") {
		t.Fatalf("ps:report does not show the OOM kill:\n%s", rep.String())
	}
}
