package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/stacktest"
	"github.com/berthhq/berth/internal/tty"
)

// waitFor polls cond every 50ms until it holds or limit passes.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e *env) report(t testing.TB, app string) map[string]Instance {
	t.Helper()
	rep, err := e.d.Instances(context.Background(), app)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	out := map[string]Instance{}
	for _, in := range rep {
		if in.State == stateStopping {
			continue
		}
		out[in.Name] = in
	}
	return out
}

func (e *env) start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := e.d.Start(ctx); err != nil {
		t.Fatalf("start deployer: %v", err)
	}
}

// load is a bounded load generator: conns clients each sending requests
// for app through the router, one at a time, until stop or the limits.
type load struct {
	ok, non2xx, errs atomic.Int64
	mu               sync.Mutex
	bodies           map[string]int
	firstErr         string
	stop             chan struct{}
	wg               sync.WaitGroup
}

func startLoad(e *env, app string, conns int, maxDur time.Duration, maxReqs int64) *load {
	l := &load{bodies: map[string]int{}, stop: make(chan struct{})}
	deadline := time.Now().Add(maxDur)
	var sent atomic.Int64
	for i := 0; i < conns; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for time.Now().Before(deadline) && sent.Add(1) <= maxReqs {
				select {
				case <-l.stop:
					return
				default:
				}
				st, body, err := e.get(c, app, "/")
				switch {
				case err != nil:
					l.errs.Add(1)
					l.note(err.Error())
				case st < 200 || st > 299:
					l.non2xx.Add(1)
					l.note(fmt.Sprintf("status %d: %s", st, body))
				default:
					l.ok.Add(1)
					ver, _, _ := strings.Cut(body, " ")
					l.mu.Lock()
					l.bodies[ver]++
					l.mu.Unlock()
				}
			}
		}()
	}
	return l
}

func (l *load) note(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.firstErr == "" {
		l.firstErr = s
	}
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

func TestRolloutUnderLoadHasNoFailedRequests(t *testing.T) {
	e := newEnv(t, nil)
	e.createApp("loaded")
	e.scale("loaded", map[string]int{"web": 2})
	ref := e.goWebImage("loaded:v1")
	v1 := e.release("loaded", ref, map[string]string{"MSG": "v1"})
	e.start(t)
	ctx := context.Background()
	var out syncBuffer
	if err := e.d.Rollout(ctx, "loaded", v1, &out); err != nil {
		t.Fatalf("rollout v1: %v\n%s", err, out.String())
	}
	l := startLoad(e, "loaded", 64, 60*time.Second, 2000000)
	waitFor(t, 30*time.Second, "load to reach the app", func() bool { return l.ok.Load()+l.errs.Load()+l.non2xx.Load() >= 500 })
	// A config change makes the new release, as config:set does.
	v2 := e.release("loaded", ref, map[string]string{"MSG": "v2"})
	before := l.ok.Load()
	err := e.d.Rollout(ctx, "loaded", v2, &out)
	atRollout := l.ok.Load()
	during := atRollout - before
	if err == nil {
		waitFor(t, 30*time.Second, "requests after the rollout", func() bool {
			return l.ok.Load()+l.errs.Load()+l.non2xx.Load() >= atRollout+500
		})
	}
	l.finish()
	if err != nil {
		t.Fatalf("rollout v2: %v\n%s", err, out.String())
	}
	t.Logf("requests: %d ok (%d during the rollout), %d non-2xx, %d errors; by version %v", l.ok.Load(), during, l.non2xx.Load(), l.errs.Load(), l.bodies)
	if during < 100 {
		t.Fatalf("only %d requests completed during the rollout; the load did not cover it", during)
	}
	if n, m := l.non2xx.Load(), l.errs.Load(); n != 0 || m != 0 {
		t.Fatalf("%d non-2xx responses and %d socket errors during the rollout; first: %s", n, m, l.firstErr)
	}
	if l.bodies["v1"] == 0 || l.bodies["v2"] == 0 {
		t.Fatalf("want answers from both releases, got %v", l.bodies)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 4; i++ {
		st, body, err := e.get(c, "loaded", "/")
		if err != nil || st != 200 || !strings.HasPrefix(body, "v2 web.") {
			t.Fatalf("after rollout: %d %q %v; want 200 from v2", st, body, err)
		}
	}
	rep := e.report(t, "loaded")
	if len(rep) != 2 || rep["web.1"].Release != v2.Version || rep["web.2"].Release != v2.Version {
		t.Fatalf("report after rollout: %+v", rep)
	}
	infos, _ := e.eng.List()
	if len(infos) != 2 {
		t.Fatalf("engine runs %d containers after the rollout, want the 2 new ones", len(infos))
	}
}

func TestRolloutFailedCheckKeepsOldRelease(t *testing.T) {
	tests := []struct {
		name       string
		procs      map[string]string
		checksFile string
		wantReason string
		wantOutput string
	}{
		{
			name:       "process exits at start",
			procs:      map[string]string{"web": `echo "v2 booting"; echo "fatal: DATABASE_URL is not set" >&2; exit 3`},
			wantReason: "exited with code 3",
			wantOutput: "fatal: DATABASE_URL is not set",
		},
		{
			name:       "CHECKS content does not match",
			procs:      map[string]string{"web": `echo "v2 says hello"; ` + webCommand("v2")},
			checksFile: "WAIT=0\nATTEMPTS=2\nTIMEOUT=2\n/ ready-for-traffic\n",
			wantReason: `does not contain "ready-for-traffic"`,
			wantOutput: "v2 says hello",
		},
	}
	e := newEnv(t, func(c *Config) { c.HealthTimeout = 10 * time.Second })
	e.start(t)
	ctx := context.Background()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := fmt.Sprintf("failing%d", i)
			e.createApp(app)
			v1 := e.release(app, e.image(app+":v1", map[string]string{"web": webCommand("v1")}), nil)
			if err := e.d.Rollout(ctx, app, v1, nil); err != nil {
				t.Fatalf("rollout v1: %v", err)
			}
			before := e.report(t, app)["web.1"]
			ref := app + ":v2"
			if tt.checksFile != "" {
				e.imageWithFiles(ref, tt.procs, map[string]string{"CHECKS": tt.checksFile})
			} else {
				e.image(ref, tt.procs)
			}
			v2 := e.release(app, ref, nil)
			var out syncBuffer
			err := e.d.Rollout(ctx, app, v2, &out)
			var re *RolloutError
			if !errors.As(err, &re) || !errors.Is(err, ErrHealthCheck) {
				t.Fatalf("rollout v2 = %v, want a *RolloutError wrapping ErrHealthCheck", err)
			}
			if !strings.Contains(re.Reason, tt.wantReason) || !strings.Contains(re.Output, tt.wantOutput) {
				t.Fatalf("error = %q\nwant reason containing %q and output containing %q", err, tt.wantReason, tt.wantOutput)
			}
			if !strings.Contains(out.String(), "failed") {
				t.Fatalf("progress does not say the deploy failed:\n%s", out.String())
			}
			c := &http.Client{Timeout: 5 * time.Second}
			st, body, gerr := e.get(c, app, "/")
			if gerr != nil || st != 200 || body != "v1 web.1" {
				t.Fatalf("after failed rollout: %d %q %v; want v1 still serving", st, body, gerr)
			}
			after := e.report(t, app)
			if len(after) != 1 || after["web.1"].ContainerID != before.ContainerID {
				t.Fatalf("instances after failed rollout: %+v; want the untouched v1 web.1 %s", after, before.ContainerID)
			}
			infos, _ := e.eng.List()
			for _, in := range infos {
				if in.Labels[labelApp] == app && in.Labels[labelRelease] == fmt.Sprint(v2.Version) {
					t.Fatalf("container %s of the failed release is left", in.ID)
				}
			}
			if v, ok, err := e.svc.DeployedRelease(ctx, app); err != nil || !ok || v != v1.Version {
				t.Fatalf("deployed release = v%d %v %v, want v%d still", v, ok, err, v1.Version)
			}
		})
	}
}

var restartEventRe = regexp.MustCompile(`worker\.1 crashed: exited with code 4; restart (\d+) in (\S+)`)

func TestCrashedInstancesRestartWithBackoff(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RestartBackoff = 200 * time.Millisecond
		c.RestartBackoffMax = 800 * time.Millisecond
	})
	e.createApp("crashy")
	e.scale("crashy", map[string]int{"web": 1, "worker": 1})
	v1 := e.release("crashy", e.image("crashy:v1", map[string]string{
		"web":    webCommand("ok"),
		"worker": `echo "worker up"; sleep 0.2; echo "worker dying" >&2; exit 4`,
	}), nil)
	e.start(t)
	ctx := context.Background()
	if err := e.d.Rollout(ctx, "crashy", v1, nil); err != nil {
		t.Fatal(err)
	}

	// The worker crashes in a loop: it is restarted each time, with
	// growing delays: 0, base, 2·base, then the cap.
	waitFor(t, 60*time.Second, "five worker restarts", func() bool {
		return e.report(t, "crashy")["worker.1"].Restarts >= 5
	})
	var logs bytes.Buffer
	if err := e.d.ReadLogs(ctx, "crashy", LogOptions{Lines: 1000, ProcessType: "berth"}, &logs); err != nil {
		t.Fatal(err)
	}
	var delays []string
	for _, m := range restartEventRe.FindAllStringSubmatch(logs.String(), -1) {
		delays = append(delays, m[2])
	}
	want := []string{"0s", "200ms", "400ms", "800ms", "800ms"}
	if len(delays) < len(want) || strings.Join(delays[:len(want)], " ") != strings.Join(want, " ") {
		t.Fatalf("restart delays = %v, want %v first\n%s", delays, want, logs.String())
	}
	w := e.report(t, "crashy")["worker.1"]
	if !strings.Contains(w.LastExit, "exited with code 4") {
		t.Fatalf("worker.1 last exit = %q", w.LastExit)
	}
	// The container records in platform carry the count and the reason.
	recs, err := e.svc.Containers(ctx, "crashy")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.ProcessType == "worker" && r.Restarts >= 4 && strings.Contains(r.LastExitReason, "exited with code 4") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no worker record with the restarts and the exit reason: %+v", recs)
	}
	var workerLogs bytes.Buffer
	if err := e.d.ReadLogs(ctx, "crashy", LogOptions{Lines: 100, ProcessType: "worker"}, &workerLogs); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(workerLogs.String(), "worker.1[stdout]: worker up"); n < 3 {
		t.Fatalf("worker printed %d start lines, want one per run:\n%s", n, workerLogs.String())
	}

	// A web instance killed from outside comes back and serves again.
	web := e.report(t, "crashy")["web.1"]
	if err := e.eng.Signal(web.ContainerID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "web.1 to come back", func() bool {
		in := e.report(t, "crashy")["web.1"]
		return in.State == stateUp && in.ContainerID != web.ContainerID
	})
	in := e.report(t, "crashy")["web.1"]
	if in.Restarts != 1 || !strings.Contains(in.LastExit, "signal 9") {
		t.Fatalf("web.1 after kill: restarts %d, last exit %q", in.Restarts, in.LastExit)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	st, body, err := e.get(c, "crashy", "/")
	if err != nil || st != 200 || body != "ok web.1" {
		t.Fatalf("after restart: %d %q %v", st, body, err)
	}
}

func TestDaemonRestartReadoptsWithoutRestarting(t *testing.T) {
	e := newEnv(t, nil)
	e.createApp("steady")
	e.scale("steady", map[string]int{"web": 2, "worker": 1})
	v1 := e.release("steady", e.image("steady:v1", map[string]string{
		"web":    webCommand("v1"),
		"worker": `echo working; exec sleep 100000`,
	}), nil)
	e.start(t)
	ctx := context.Background()
	if err := e.d.Rollout(ctx, "steady", v1, nil); err != nil {
		t.Fatal(err)
	}
	before := e.report(t, "steady")
	if len(before) != 3 {
		t.Fatalf("before: %+v", before)
	}
	// The daemon goes away; its containers keep running.
	e.d.Close()

	// What happened meanwhile: the worker disappeared and a stray of
	// another release showed up.
	if err := e.eng.Delete(ctx, before["worker.1"].ContainerID); err != nil {
		t.Fatal(err)
	}
	stray, err := e.eng.Run(ctx, engine.Spec{
		Layers:  NewBuilderImagesLayers(t, e),
		Process: engine.Process{Args: []string{"sleep", "100000"}},
		Network: engine.Network{Mode: engine.NetworkBridge},
		IDMap:   engine.IDMap{HostUID: 900000, HostGID: 900000},
		Labels:  map[string]string{labelRole: roleApp, labelApp: "steady", labelType: "web", labelInstance: "3", labelRelease: "99"},
	})
	if err != nil {
		t.Fatal(err)
	}

	// A new daemon: new engine instance over the same data, new router.
	eng2, err := engine.New(e.engCfg)
	if err != nil {
		t.Fatal(err)
	}
	rt2, addr2 := stacktest.ServeRouter(t)
	e.d = e.newDeployerWith(eng2, rt2)
	e.start(t)

	after := e.report(t, "steady")
	for _, name := range []string{"web.1", "web.2"} {
		b, a := before[name], after[name]
		if a.ContainerID != b.ContainerID || a.Pid != b.Pid || a.State != stateUp {
			t.Fatalf("%s: before %s pid %d, after %s pid %d state %s; want the same running container", name, b.ContainerID, b.Pid, a.ContainerID, a.Pid, a.State)
		}
	}
	if w := after["worker.1"]; w.State != stateUp || w.ContainerID == before["worker.1"].ContainerID {
		t.Fatalf("worker.1 after reconcile: %+v; want a new running container", w)
	}
	if _, err := eng2.Inspect(stray); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("stray container: %v; want it removed", err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	seen := map[string]bool{}
	for i := 0; i < 6; i++ {
		st, body, err := e.getVia(c, addr2, "steady", "/")
		if err != nil || st != 200 {
			t.Fatalf("through the new router: %d %q %v", st, body, err)
		}
		seen[body] = true
	}
	if !seen["v1 web.1"] || !seen["v1 web.2"] {
		t.Fatalf("the new router reaches %v, want both web instances", seen)
	}
	infos, _ := eng2.List()
	if len(infos) != 3 {
		t.Fatalf("%d containers after reconcile, want 3", len(infos))
	}
	// The container records match the engine again: the deleted worker's
	// record is gone, the new one is there.
	recs, err := e.svc.Containers(ctx, "steady")
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, in := range infos {
		live[in.ID] = true
	}
	if len(recs) != 3 {
		t.Fatalf("%d container records after reconcile, want 3: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if !live[r.EngineID] || r.State != "running" {
			t.Fatalf("record %+v does not match a running container", r)
		}
	}
}

// NewBuilderImagesLayers returns the busybox base's layer directories.
func NewBuilderImagesLayers(t *testing.T, e *env) []string {
	t.Helper()
	dirs, err := e.images.LayerDirs(e.base)
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func TestLogsFollowAcrossRedeploy(t *testing.T) {
	e := newEnv(t, nil)
	e.createApp("chatty")
	v1 := e.release("chatty", e.image("chatty:v1", map[string]string{"web": webCommand("first")}), nil)
	e.start(t)
	ctx := context.Background()
	if err := e.d.Rollout(ctx, "chatty", v1, nil); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	var followed syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- e.d.ReadLogs(fctx, "chatty", LogOptions{Lines: 10, Follow: true, ProcessType: "web"}, &followed)
	}()
	waitFor(t, 20*time.Second, "the follower to print v1's line", func() bool {
		return strings.Contains(followed.String(), "serving first")
	})
	v2 := e.release("chatty", e.image("chatty:v2", map[string]string{"web": webCommand("second")}), nil)
	if err := e.d.Rollout(ctx, "chatty", v2, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the follower to print the new instance's line", func() bool {
		return strings.Contains(followed.String(), "serving second")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow: %v", err)
	}
	if !regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z web\.1\[stdout\]: serving second on 5000 as web\.1$`).MatchString(followed.String()) {
		t.Fatalf("followed lines are not in the TIME web.1[stream]: line form:\n%s", followed.String())
	}
	var last bytes.Buffer
	if err := e.d.ReadLogs(ctx, "chatty", LogOptions{Lines: 50}, &last); err != nil {
		t.Fatal(err)
	}
	s := last.String()
	i1, i2 := strings.Index(s, "serving first"), strings.Index(s, "serving second")
	if i1 < 0 || i2 < 0 || i1 > i2 {
		t.Fatalf("logs -n 50 after the redeploy should hold both releases' lines, oldest first:\n%s", s)
	}
	if !strings.Contains(s, "berth[stdout]: v2 deployed") {
		t.Fatalf("logs do not show the deploy event:\n%s", s)
	}
	var one bytes.Buffer
	if err := e.d.ReadLogs(ctx, "chatty", LogOptions{Lines: 1, ProcessType: "web"}, &one); err != nil {
		t.Fatal(err)
	}
	if strings.Count(one.String(), "\n") != 1 || !strings.Contains(one.String(), "serving second") {
		t.Fatalf("logs -n 1 = %q", one.String())
	}
	// releases:rollback v1 rolls v1's image and config out as a new release.
	rb, err := e.d.Rollback(ctx, "chatty", v1.Version, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Version <= v2.Version || rb.Image != v1.Image {
		t.Fatalf("rollback made %+v", rb)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	if st, body, err := e.get(c, "chatty", "/"); err != nil || st != 200 || body != "first web.1" {
		t.Fatalf("after rollback: %d %q %v", st, body, err)
	}
	if v, ok, err := e.svc.DeployedRelease(ctx, "chatty"); err != nil || !ok || v != rb.Version {
		t.Fatalf("deployed release after rollback = v%d %v %v, want v%d", v, ok, err, rb.Version)
	}

	p, err := e.d.BuildLogPath("chatty", 7)
	if err != nil || p != filepath.Join(e.cfg.DataDir, "logs", "chatty", "builds", "7.log") {
		t.Fatalf("BuildLogPath = %q, %v", p, err)
	}
	if st, err := os.Stat(filepath.Dir(p)); err != nil || !st.IsDir() {
		t.Fatalf("build log dir: %v", err)
	}
}

func TestScaleStopStartAndDestroy(t *testing.T) {
	e := newEnv(t, nil)
	e.createApp("scaly")
	e.scale("scaly", map[string]int{"web": 1, "worker": 1})
	v1 := e.release("scaly", e.image("scaly:v1", map[string]string{
		"web":    webCommand("v1"),
		"worker": `echo working; exec sleep 100000`,
	}), nil)
	e.start(t)
	ctx := context.Background()
	if err := e.d.Rollout(ctx, "scaly", v1, nil); err != nil {
		t.Fatal(err)
	}
	worker := e.report(t, "scaly")["worker.1"].ContainerID
	web1 := e.report(t, "scaly")["web.1"].ContainerID
	c := &http.Client{Timeout: 5 * time.Second}

	steps := []struct {
		name       string
		web        int
		wantStatus int
	}{
		{name: "scale up", web: 3, wantStatus: 200},
		{name: "scale to zero", web: 0, wantStatus: 503},
		{name: "scale to two", web: 2, wantStatus: 200},
	}
	for _, s := range steps {
		e.scale("scaly", map[string]int{"web": s.web})
		if err := e.d.Converge(ctx, "scaly", nil); err != nil {
			t.Fatalf("%s: converge: %v", s.name, err)
		}
		rep := e.report(t, "scaly")
		webs := 0
		for _, in := range rep {
			if in.Type == "web" {
				webs++
			}
		}
		if webs != s.web || rep["worker.1"].ContainerID != worker {
			t.Fatalf("%s: report %+v; want %d web and the untouched worker", s.name, rep, s.web)
		}
		if s.web == 3 && rep["web.1"].ContainerID != web1 {
			t.Fatalf("%s: web.1 was replaced", s.name)
		}
		st, body, err := e.get(c, "scaly", "/")
		if err != nil || st != s.wantStatus {
			t.Fatalf("%s: GET = %d %q %v, want %d", s.name, st, body, err, s.wantStatus)
		}
	}

	if err := e.d.StopApp(ctx, "scaly", nil); err != nil {
		t.Fatal(err)
	}
	if infos, _ := e.eng.List(); len(infos) != 0 {
		t.Fatalf("%d containers after ps:stop", len(infos))
	}
	if st, _, err := e.get(c, "scaly", "/"); err != nil || st != 503 {
		t.Fatalf("stopped app: %d %v, want 503", st, err)
	}
	// A reconcile (daemon restart) keeps a stopped app stopped.
	if err := e.d.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if infos, _ := e.eng.List(); len(infos) != 0 {
		t.Fatalf("reconcile started %d containers of a stopped app", len(infos))
	}
	if err := e.d.StartApp(ctx, "scaly", nil); err != nil {
		t.Fatal(err)
	}
	if rep := e.report(t, "scaly"); len(rep) != 3 || rep["web.2"].State != stateUp {
		t.Fatalf("after ps:start: %+v", rep)
	}
	if st, _, err := e.get(c, "scaly", "/"); err != nil || st != 200 {
		t.Fatalf("started app: %d %v", st, err)
	}

	// ps:restart web replaces the web instances and leaves the worker.
	before := e.report(t, "scaly")
	if err := e.d.Restart(ctx, "scaly", "web", nil); err != nil {
		t.Fatal(err)
	}
	after := e.report(t, "scaly")
	if after["web.1"].ContainerID == before["web.1"].ContainerID || after["web.2"].ContainerID == before["web.2"].ContainerID ||
		after["worker.1"].ContainerID != before["worker.1"].ContainerID || len(after) != 3 {
		t.Fatalf("ps:restart web: before %+v after %+v", before, after)
	}
	if err := e.d.Restart(ctx, "scaly", "nosuch", nil); !errors.Is(err, ErrUnknownProcessType) {
		t.Fatalf("restart of an unknown type = %v", err)
	}

	if err := e.d.Destroy(ctx, "scaly"); err != nil {
		t.Fatal(err)
	}
	if infos, _ := e.eng.List(); len(infos) != 0 {
		t.Fatalf("%d containers after destroy", len(infos))
	}
	if st, _, err := e.get(c, "scaly", "/"); err != nil || st != 404 {
		t.Fatalf("destroyed app: %d %v, want 404", st, err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.DataDir, "logs", "scaly")); !os.IsNotExist(err) {
		t.Fatalf("logs of the destroyed app: %v", err)
	}
}

func TestRunOneOff(t *testing.T) {
	e := newEnv(t, nil)
	e.createApp("runner")
	e.scale("runner", map[string]int{"web": 0})
	v1 := e.release("runner", e.image("runner:v1", map[string]string{"web": webCommand("v1")}), map[string]string{"GREETING": "hello there"})
	e.start(t)
	ctx := context.Background()
	if err := e.d.Rollout(ctx, "runner", v1, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		stdin      string
		term       *tty.Terminal
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "config vars, streams and exit code", args: []string{"sh", "-c", `echo "$GREETING from $DYNO"; echo oops >&2; exit 7`},
			wantCode: 7, wantStdout: "hello there from run.", wantStderr: "oops"},
		{name: "stdin", args: []string{"sh", "-c", "read line; echo got $line"}, stdin: "ping\n", wantStdout: "got ping"},
		{name: "terminal", args: []string{"tty"}, term: &tty.Terminal{}, wantStdout: "/dev/pts/"},
		{name: "terminal size", args: []string{"stty", "size"}, term: &tty.Terminal{Size: tty.Size{Width: 100, Height: 40}}, wantStdout: "40 100"},
		// busybox stty prints no size for the kernel's default, 0x0.
		{name: "absurd terminal size leaves the default", args: []string{"sh", "-c", `echo "size=[$(stty size 2>/dev/null)]"`},
			term: &tty.Terminal{Size: tty.Size{Width: 20000, Height: 40}}, wantStdout: "size=[]"},
		// The absurd change is skipped: stty would print it, since the
		// loop ends at the first change.
		{name: "window change", args: []string{"sh", "-c", `while [ "$(stty size)" = "40 100" ]; do sleep 0.05; done; stty size`},
			term: &tty.Terminal{Size: tty.Size{Width: 100, Height: 40}, Resize: sizes(tty.Size{Width: 20000, Height: 50}, tty.Size{Width: 120, Height: 50})}, wantStdout: "50 120"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			var stdout, stderr syncBuffer
			code, err := e.d.RunOneOff(ctx, "runner", tt.args, strings.NewReader(tt.stdin), &stdout, &stderr, tt.term)
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("code %d stdout %q stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
	if infos, _ := e.eng.List(); len(infos) != 0 {
		t.Fatalf("%d containers left after the one-off runs", len(infos))
	}
}

// sizes is a channel of window changes holding the given sizes, then closed.
func sizes(s ...tty.Size) <-chan tty.Size {
	c := make(chan tty.Size, len(s))
	for _, size := range s {
		c <- size
	}
	close(c)
	return c
}
