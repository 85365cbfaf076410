package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/platform"
)

// RolloutError is a failed rollout: the reason and the last lines the new
// instance printed. The old instances still serve.
type RolloutError struct {
	// Reason says what failed ("web.1: health check failed: …").
	Reason string
	// Output is the tail of the failing instance's output.
	Output string
	err    error
}

// Error returns the reason followed by the output tail.
func (e *RolloutError) Error() string {
	if e.Output == "" {
		return e.Reason
	}
	return e.Reason + "\nlast output:\n" + strings.TrimRight(e.Output, "\n")
}

// Unwrap returns the underlying error (ErrHealthCheck for a failed check).
func (e *RolloutError) Unwrap() error { return e.err }

// syncWriter serialises progress lines from parallel starts.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, format+"\n", args...)
}

func progress(out io.Writer) *syncWriter {
	if out == nil {
		out = io.Discard
	}
	return &syncWriter{w: out}
}

// Rollout deploys release rel of app: it starts the formation's instances
// of the new release, health-checks the web instances, switches the router
// to them, starts the other process types and then retires the old
// instances (out of the router first, SIGTERM, SIGKILL after StopTimeout).
// Progress lines go to out. If a check fails, the new instances are
// removed, the old ones keep serving, and the returned *RolloutError
// carries the reason and the tail of the app's output. On success rel
// becomes the app's deployed release (what a restarted daemon runs). A
// stopped app is started again. Deploy records are the caller's: the push
// hook marks its own.
func (d *Deployer) Rollout(ctx context.Context, app string, rel platform.Release, out io.Writer) error {
	a, unlock, err := d.lock(ctx, app)
	if err != nil {
		return err
	}
	defer unlock()
	p := progress(out)
	spec := fromPlatformRelease(rel)
	err = d.rollout(ctx, a, &spec, p)
	if err != nil {
		reason := err.Error()
		var re *RolloutError
		if errors.As(err, &re) {
			reason = re.Reason
		}
		d.event(app, "deploy of v%d failed: %s", rel.Version, reason)
		p.printf(" !     Deploy of v%d failed: %s", rel.Version, firstLine(reason))
	}
	return err
}

// Rollback makes a new release that runs version v's image and config
// (platform's Rollback, as the system) and rolls it out; it returns the
// new release.
func (d *Deployer) Rollback(ctx context.Context, app string, v int, out io.Writer) (platform.Release, error) {
	rel, err := d.svc.Rollback(ctx, platform.System(), app, v)
	if err != nil {
		return platform.Release{}, fmt.Errorf("roll back %s to v%d: %w", app, v, err)
	}
	fmt.Fprintf(progressWriter(out), "-----> Rolling back %s to v%d as v%d\n", app, v, rel.Version)
	return rel, d.Rollout(ctx, app, rel, out)
}

func progressWriter(out io.Writer) io.Writer {
	if out == nil {
		return io.Discard
	}
	return out
}

// lock finds app and takes its operation lock: in this process (a.op) and across
// processes (platform's rollout lock).
func (d *Deployer) lock(ctx context.Context, app string) (*appRun, func(), error) {
	a, err := d.app(app)
	if err != nil {
		return nil, nil, err
	}
	a.op.Lock()
	unlock, err := d.st.LockApp(ctx, a.name)
	if err != nil {
		a.op.Unlock()
		return nil, nil, fmt.Errorf("lock app %s: %w", a.name, err)
	}
	return a, func() {
		unlock()
		a.op.Unlock()
	}, nil
}

func (d *Deployer) rollout(ctx context.Context, a *appRun, rel *releaseSpec, p *syncWriter) error {
	img, err := d.resolve(ctx, *rel)
	if err != nil {
		return err
	}
	if err := d.refresh(ctx, a); err != nil {
		return err
	}
	if err := d.st.SetAppStopped(ctx, a.name, false); err != nil {
		return fmt.Errorf("mark app started: %w", err)
	}
	d.mu.Lock()
	a.stopped = false
	d.mu.Unlock()
	// The deployed release is recorded at the switch, before the old
	// instances go: a daemon that dies from then on comes back to the new
	// release, and before it to the old one.
	return d.replace(ctx, a, rel, img, "", p, func() error {
		if err := d.st.SetDeployedRelease(context.WithoutCancel(ctx), a.name, rel.Version); err != nil {
			return fmt.Errorf("record deployed release: %w", err)
		}
		return nil
	})
}

// replace starts a full set of new instances of rel (of one process type,
// or all when typ is empty), checks them, makes rel the deployed release,
// switches the router and retires the instances they replace. onSwitch,
// when set, runs once the web instances passed their checks and before
// the switch; its error abandons the new instances.
func (d *Deployer) replace(ctx context.Context, a *appRun, rel *releaseSpec, img *Image, typ string, p *syncWriter, onSwitch func() error) error {
	d.mu.Lock()
	probe := &appRun{rel: rel, img: img, formation: a.formation}
	want := probe.desired()
	uidBase := a.info.UIDBase
	formation := a.formation
	d.mu.Unlock()
	var specs []instanceSpec
	var summary []string
	for _, t := range sortedTypes(want) {
		if typ != "" && t != typ {
			continue
		}
		summary = append(summary, fmt.Sprintf("%s=%d", t, want[t]))
		for n := 1; n <= want[t]; n++ {
			specs = append(specs, instanceSpec{app: a.name, rel: rel, img: img, typ: t, num: n,
				uidBase: uidBase, limits: formation[t].Limits})
		}
	}
	if typ != "" {
		if _, ok := processTypes(rel, img)[typ]; !ok {
			return fmt.Errorf("restart %s: %w %q", a.name, ErrUnknownProcessType, typ)
		}
	}
	p.printf("-----> Releasing %s v%d (%s)", a.name, rel.Version, strings.Join(summary, ", "))
	var web, other []instanceSpec
	for _, s := range specs {
		if s.typ == "web" {
			web = append(web, s)
		} else {
			other = append(other, s)
		}
	}
	news, err := d.startChecked(ctx, a, img, web, p)
	if err != nil {
		return err
	}
	if onSwitch != nil {
		if err := onSwitch(); err != nil {
			for _, in := range news {
				d.discard(a, in)
			}
			return err
		}
	}
	// The switch: the new release becomes the deployed one and the router
	// moves to the new web instances in one table swap.
	d.mu.Lock()
	var old []*instance
	oldRouted := false
	for _, in := range a.insts {
		if in.state == stateStopping || containsInst(news, in) || (typ != "" && in.typ != typ) {
			continue
		}
		old = append(old, in)
		oldRouted = oldRouted || in.routed
		in.routed = false
		in.state = stateStopping // an exit from now on is no crash
	}
	a.rel, a.img = rel, img
	var staleRecords []string
	for proc, s := range a.slots {
		if typ == "" || strings.HasPrefix(proc, typ+".") {
			if s.timer != nil {
				s.timer.Stop()
			}
			if s.exitedID != "" {
				staleRecords = append(staleRecords, s.exitedID)
			}
			delete(a.slots, proc)
		}
	}
	d.mu.Unlock()
	for _, id := range staleRecords {
		d.dropRecordID(a.name, id)
	}
	d.commit(news)
	if len(web) > 0 {
		p.printf("-----> Router switched to v%d (%d web instance(s))", rel.Version, len(news))
	}
	others, err := d.startChecked(ctx, a, img, other, p)
	if err != nil {
		// The web part is live. The other instances are treated as
		// crashed: restarted with backoff, and the failure is reported.
		d.retire(ctx, a, old, oldRouted)
		for _, s := range other {
			d.mu.Lock()
			sl := a.slot(fmt.Sprintf("%s.%d", s.typ, s.num))
			sl.consecutive++
			sl.lastExit, sl.lastExitAt = "start failed: "+firstLine(err.Error()), time.Now()
			d.mu.Unlock()
			d.scheduleRestart(a, s.typ, s.num, d.cfg.RestartBackoff)
		}
		return err
	}
	d.commit(others)
	if len(old) > 0 {
		p.printf("-----> Stopping %d old instance(s)", len(old))
		d.retire(ctx, a, old, oldRouted)
	}
	p.printf("=====> %s v%d is live at http://%s.%s", a.name, rel.Version, a.name, d.cfg.Domain)
	d.event(a.name, "v%d deployed (%s)", rel.Version, strings.Join(summary, ", "))
	return nil
}

func containsInst(list []*instance, in *instance) bool {
	for _, x := range list {
		if x == in {
			return true
		}
	}
	return false
}

// startChecked starts instances in parallel and checks them. When one
// fails, all of them are removed and a *RolloutError is returned.
func (d *Deployer) startChecked(ctx context.Context, a *appRun, img *Image, specs []instanceSpec, p *syncWriter) ([]*instance, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	type result struct {
		in  *instance
		err error
	}
	res := make([]result, len(specs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, d.cfg.StartConcurrency)
	for i, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			sem <- struct{}{}
			in, err := d.startInstance(ctx, a, s)
			<-sem
			tStart := time.Since(t0)
			if err == nil {
				p.printf("       %s.%d started (%s)", s.typ, s.num, in.addr())
				err = d.checkWith(ctx, a.name, img, in)
				if err == nil && s.typ == "web" {
					p.printf("       %s.%d healthy", s.typ, s.num)
				}
			}
			if err == nil && d.log.Enabled(ctx, slog.LevelDebug) {
				d.log.Debug("instance ready", "app", a.name, "instance", in.proc(), "start", tStart, "ready", time.Since(t0))
			}
			res[i] = result{in, err}
		}()
	}
	wg.Wait()
	var failed *result
	var started []*instance
	for i := range res {
		if res[i].in != nil {
			started = append(started, res[i].in)
		}
		if res[i].err != nil && failed == nil {
			failed = &res[i]
		}
	}
	if failed == nil {
		return started, nil
	}
	re := &RolloutError{Reason: failed.err.Error(), err: failed.err}
	if failed.in != nil {
		re.Output = d.tailOutput(a.name, failed.in.proc(), failed.in.logID, 20)
	}
	for _, in := range started {
		d.discard(a, in)
	}
	if ctx.Err() != nil {
		re.err = errors.Join(failed.err, ctx.Err())
	}
	return nil, re
}

// Converge adds and removes instances until every process type of the
// deployed release runs the formation's quantity: the command layer calls
// it after ps:scale. New web instances join the router after their checks;
// removed ones leave it before they are stopped. Other types and
// instances are not touched.
func (d *Deployer) Converge(ctx context.Context, app string, out io.Writer) error {
	a, unlock, err := d.lock(ctx, app)
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.refresh(ctx, a); err != nil {
		return err
	}
	return d.converge(ctx, a, progress(out))
}

func (d *Deployer) converge(ctx context.Context, a *appRun, p *syncWriter) error {
	d.mu.Lock()
	want := a.desired()
	rel, img := a.rel, a.img
	var extra []*instance
	have := map[string]bool{}
	for _, in := range a.insts {
		if in.state == stateStopping {
			continue
		}
		if in.num > want[in.typ] {
			extra = append(extra, in)
			continue
		}
		have[in.proc()] = true
	}
	var specs []instanceSpec
	for _, t := range sortedTypes(want) {
		for n := 1; n <= want[t]; n++ {
			proc := fmt.Sprintf("%s.%d", t, n)
			if have[proc] {
				continue
			}
			if s := a.slots[proc]; s != nil && s.timer != nil {
				continue // a crash restart is pending for it
			}
			specs = append(specs, instanceSpec{app: a.name, rel: rel, img: img, typ: t, num: n,
				uidBase: a.info.UIDBase, limits: a.formation[t].Limits})
		}
	}
	var staleRecords []string
	for proc, s := range a.slots {
		t, n := splitProc(proc)
		if n > want[t] {
			if s.timer != nil {
				s.timer.Stop()
			}
			if s.exitedID != "" {
				staleRecords = append(staleRecords, s.exitedID)
			}
			delete(a.slots, proc)
		}
	}
	stopped := a.stopped
	d.mu.Unlock()
	for _, id := range staleRecords {
		d.dropRecordID(a.name, id)
	}
	if rel == nil && !stopped && len(extra) == 0 {
		return nil // nothing deployed yet: the first push starts the formation
	}
	if len(specs) > 0 {
		p.printf("-----> Starting %d instance(s) of %s v%d", len(specs), a.name, rel.Version)
	}
	news, err := d.startChecked(ctx, a, img, specs, p)
	if err != nil {
		return err
	}
	d.commit(news)
	if len(extra) > 0 {
		sort.Slice(extra, func(i, j int) bool { return extra[i].proc() < extra[j].proc() })
		p.printf("-----> Stopping %d instance(s)", len(extra))
		d.retire(ctx, a, extra, false)
	}
	if len(specs) > 0 || len(extra) > 0 {
		d.event(a.name, "scaled to %s", formatWant(want))
	}
	return nil
}

func formatWant(want map[string]int) string {
	var parts []string
	for _, t := range sortedTypes(want) {
		parts = append(parts, fmt.Sprintf("%s=%d", t, want[t]))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// splitProc splits "web.2" into "web" and 2.
func splitProc(proc string) (string, int) {
	i := strings.LastIndexByte(proc, '.')
	if i < 0 {
		return proc, 0
	}
	n := 0
	fmt.Sscanf(proc[i+1:], "%d", &n)
	return proc[:i], n
}

// Restart replaces the instances of one process type (all types when
// processType is empty) with fresh ones of the same release; web
// instances are replaced without downtime, as in a rollout.
func (d *Deployer) Restart(ctx context.Context, app, processType string, out io.Writer) error {
	a, unlock, err := d.lock(ctx, app)
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.refresh(ctx, a); err != nil {
		return err
	}
	d.mu.Lock()
	rel, img, stopped := a.rel, a.img, a.stopped
	d.mu.Unlock()
	if stopped {
		return fmt.Errorf("restart %s: %w (run ps:start)", app, ErrAppStopped)
	}
	if rel == nil {
		return fmt.Errorf("restart %s: %w", app, ErrNoRelease)
	}
	return d.replace(ctx, a, rel, img, processType, progress(out), nil)
}

// StopApp stops every instance of app without changing its formation
// (Dokku's ps:stop) and records it, so that neither crash restarts nor a
// daemon restart start them again; the router answers 503 meanwhile.
func (d *Deployer) StopApp(ctx context.Context, app string, out io.Writer) error {
	a, unlock, err := d.lock(ctx, app)
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.st.SetAppStopped(ctx, app, true); err != nil {
		return fmt.Errorf("stop %s: %w", app, err)
	}
	d.mu.Lock()
	a.stopped = true
	var all []*instance
	for _, in := range a.insts {
		all = append(all, in)
	}
	for _, s := range a.slots {
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
	}
	d.mu.Unlock()
	progress(out).printf("-----> Stopping %s (%d instance(s))", app, len(all))
	d.retire(ctx, a, all, false)
	d.event(app, "stopped")
	return nil
}

// StartApp starts a stopped app's formation again (Dokku's ps:start).
func (d *Deployer) StartApp(ctx context.Context, app string, out io.Writer) error {
	a, unlock, err := d.lock(ctx, app)
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.st.SetAppStopped(ctx, app, false); err != nil {
		return fmt.Errorf("start %s: %w", app, err)
	}
	if err := d.refresh(ctx, a); err != nil {
		return err
	}
	return d.converge(ctx, a, progress(out))
}

// Destroy removes every container, the log files and the routes of app;
// the command layer calls it before it deletes the app in platform.
func (d *Deployer) Destroy(ctx context.Context, app string) error {
	a, err := d.app(app)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	if unlock, err := d.st.LockApp(ctx, app); err == nil {
		defer unlock()
	}
	d.mu.Lock()
	a.stopped = true
	var all []*instance
	for _, in := range a.insts {
		all = append(all, in)
	}
	for _, s := range a.slots {
		if s.timer != nil {
			s.timer.Stop()
		}
	}
	a.slots = map[string]*slot{}
	d.mu.Unlock()
	d.retire(ctx, a, all, false)
	// One-off containers of the app go too.
	if infos, err := d.eng.List(); err == nil {
		for _, info := range infos {
			if info.Labels[labelApp] == app {
				_ = d.eng.Delete(ctx, info.ID)
			}
		}
	}
	d.mu.Lock()
	delete(d.apps, app)
	d.mu.Unlock()
	d.publishTable()
	d.logMu.Lock()
	err = os.RemoveAll(d.appLogDir(app))
	d.logMu.Unlock()
	if err != nil {
		return fmt.Errorf("remove logs of %s: %w", app, err)
	}
	return nil
}
