package deploy

import (
	"context"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkScaleWeb1To20 measures ps:scale web=1 → web=20: the time from
// the scale until all 20 instances answer through the router. bench/deploy.sh
// runs it; it is not part of the default test run.
func BenchmarkScaleWeb1To20(b *testing.B) {
	e := newEnv(b, func(c *Config) {
		c.DrainDelay = -1
		// DEPLOY_BENCH_START_CONCURRENCY compares start caps.
		if n, err := strconv.Atoi(os.Getenv("DEPLOY_BENCH_START_CONCURRENCY")); err == nil {
			c.StartConcurrency = n
		}
	})
	e.createApp("bench")
	e.scale("bench", map[string]int{"web": 1})
	rel := e.release("bench", e.goWebImage("bench:v1"), map[string]string{"MSG": "v1"})
	e.start(b)
	ctx := context.Background()
	if err := e.d.Rollout(ctx, "bench", rel, nil); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}
	var runs []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e.scale("bench", map[string]int{"web": 1})
		if err := e.d.Converge(ctx, "bench", nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		e.scale("bench", map[string]int{"web": 20})
		if err := e.d.Converge(ctx, "bench", nil); err != nil {
			b.Fatal(err)
		}
		converged := time.Since(start)
		seen := map[string]bool{}
		for tries := 0; len(seen) < 20; tries++ {
			if tries > 20000 {
				b.Fatalf("only %d of 20 instances answered through the router", len(seen))
			}
			st, body, err := e.get(client, "bench", "/")
			if err != nil || st != 200 {
				b.Fatalf("GET through the router: %d %q %v", st, body, err)
			}
			if _, dyno, ok := strings.Cut(body, " "); ok {
				seen[dyno] = true
			}
		}
		d := time.Since(start)
		runs = append(runs, d)
		b.Logf("N=%d run %d: converge %s, all 20 serving after %s", b.N, i, converged.Round(time.Millisecond), d.Round(time.Millisecond))
	}
	var total time.Duration
	for _, r := range runs {
		total += r
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i] < runs[j] })
	b.ReportMetric(total.Seconds()/float64(b.N), "s/scale")
	b.ReportMetric(runs[len(runs)/2].Seconds(), "s/scale-median")
	b.ReportMetric(runs[0].Seconds(), "s/scale-min")
}
