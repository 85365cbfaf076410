package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/engine"
)

const defaultPort = 5000

// instanceSpec is everything needed to start one instance.
type instanceSpec struct {
	app     string
	rel     *releaseSpec
	img     *Image
	typ     string
	num     int
	uidBase uint32
	limits  engine.Limits
}

// port returns the port a release's web instances listen on: the PORT
// config var, else the image's exposed port, else 5000.
func appPort(rel *releaseSpec, img *Image) int {
	if p, err := strconv.Atoi(rel.Config["PORT"]); err == nil && p > 0 && p < 65536 {
		return p
	}
	if img.Port > 0 {
		return img.Port
	}
	return defaultPort
}

// processArgs returns the argv of a process type.
func processArgs(rel *releaseSpec, img *Image, typ string) ([]string, error) {
	procs := processTypes(rel, img)
	cmd, ok := procs[typ]
	if !ok {
		names := sortedTypes(procs)
		return nil, fmt.Errorf("%w %q (the release has: %s)", ErrUnknownProcessType, typ, strings.Join(names, ", "))
	}
	exec := append(append([]string{}, img.Entrypoint...), img.Cmd...)
	if len(img.Processes) == 0 && typ == "web" && len(exec) > 0 &&
		(cmd == strings.Join(img.Cmd, " ") || cmd == strings.Join(exec, " ")) {
		// The release's web command is the image's own CMD (an image
		// without a Procfile): run it in exec form, as the image says, so
		// images without a shell work too.
		cmd = ""
	}
	if cmd == "" {
		args := exec
		if len(args) == 0 {
			return nil, fmt.Errorf("start %s: the image has neither a Procfile nor a CMD; add one of them", typ)
		}
		return args, nil
	}
	return append(append([]string{}, img.Entrypoint...), "/bin/sh", "-c", cmd), nil
}

// processEnv is the image's environment, then PORT and DYNO, then the
// app's config vars (which may override PORT).
func processEnv(rel *releaseSpec, img *Image, dyno string, port int) []string {
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, kv := range img.Env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	set("PORT", strconv.Itoa(port))
	set("DYNO", dyno)
	keys := make([]string, 0, len(rel.Config))
	for k := range rel.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, rel.Config[k])
	}
	if _, ok := vals["PATH"]; !ok {
		set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vals[k])
	}
	return env
}

// hostname is "app-type-N", shortened to the 63 bytes a host name may have.
func hostname(app, typ string, num int) string {
	h := fmt.Sprintf("%s-%s-%d", app, typ, num)
	if len(h) > 63 {
		h = h[:63]
	}
	return h
}

// startInstance creates and starts one container and registers it in the
// starting state; a watcher goroutine follows its exit.
func (d *Deployer) startInstance(ctx context.Context, a *appRun, s instanceSpec) (*instance, error) {
	dyno := fmt.Sprintf("%s.%d", s.typ, s.num)
	args, err := processArgs(s.rel, s.img, s.typ)
	if err != nil {
		return nil, err
	}
	port := appPort(s.rel, s.img)
	env := processEnv(s.rel, s.img, dyno, port)
	if err := os.MkdirAll(d.appLogDir(s.app), 0o700); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	cwd := s.img.WorkingDir
	logID := newLogID()
	spec := engine.Spec{
		Layers: s.img.Layers,
		Process: engine.Process{
			Args: args, Env: env, Cwd: cwd, UID: s.img.UID, GID: s.img.GID, AdditionalGIDs: s.img.Groups,
		},
		Hostname: hostname(s.app, s.typ, s.num),
		Limits:   s.limits,
		Network:  engine.Network{Mode: engine.NetworkBridge},
		IDMap:    engine.IDMap{HostUID: s.uidBase, HostGID: s.uidBase},
		Labels: map[string]string{
			labelRole: roleApp, labelApp: s.app, labelType: s.typ,
			labelInstance: strconv.Itoa(s.num), labelRelease: strconv.Itoa(s.rel.Version),
			labelPort: strconv.Itoa(port), labelLog: logID,
		},
		LogPath: d.containerLogPath(s.app, dyno, logID),
	}
	tc := time.Now()
	id, err := d.eng.Create(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", dyno, err)
	}
	dc := time.Since(tc)
	in := &instance{
		id: id, logID: logID, typ: s.typ, num: s.num, release: s.rel.Version, port: port,
		env: env, uid: s.img.UID, gid: s.img.GID, groups: s.img.Groups, cwd: cwd,
		state: stateStarting, done: make(chan struct{}),
	}
	ts := time.Now()
	tim, err := d.eng.StartTimed(ctx, id)
	if err != nil {
		_ = d.eng.Delete(context.WithoutCancel(ctx), id)
		return nil, fmt.Errorf("start %s: %w", dyno, err)
	}
	if d.log.Enabled(ctx, slog.LevelDebug) {
		d.log.Debug("container started", "app", s.app, "instance", dyno, "id", id, "create", dc,
			"start", time.Since(ts), "overlay", tim.Overlay, "network", tim.Network)
	}
	info, err := d.eng.Inspect(id)
	if err != nil {
		_ = d.eng.Delete(context.WithoutCancel(ctx), id)
		return nil, fmt.Errorf("inspect %s: %w", dyno, err)
	}
	in.ip, in.pid, in.started = info.IP, info.Pid, info.StartedAt
	if !d.adopt(a, in) {
		_ = d.eng.Delete(context.WithoutCancel(ctx), id)
		return nil, ErrClosed
	}
	// Its record is written when it is committed (running): a database
	// round trip here would sit on the start path of every instance.
	return in, nil
}

// adopt registers an instance with its app and starts its watcher; it
// returns false once the deployer is closed.
func (d *Deployer) adopt(a *appRun, in *instance) bool {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false
	}
	a.insts[in.id] = in
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		d.safely("watch "+in.id, func() { d.watch(a, in) })
	}()
	return true
}

// watch waits for the container to exit. An exit the deployer did not ask
// for is a crash: the instance leaves the router and its slot is restarted
// with backoff.
func (d *Deployer) watch(a *appRun, in *instance) {
	es, err := d.eng.Wait(d.ctx, in.id)
	if err != nil {
		if d.ctx.Err() != nil {
			return // the deployer is closing; a new one re-adopts the container
		}
		es = engine.ExitStatus{Code: -1, ExitedAt: time.Now()}
		if !errors.Is(err, engine.ErrNotFound) {
			d.log.Warn("wait for container", "app", a.name, "instance", in.proc(), "id", in.id, "err", err)
		}
	}
	d.mu.Lock()
	in.exit = &es
	close(in.done)
	crashed := in.state == stateUp && a.insts[in.id] == in
	if crashed {
		delete(a.insts, in.id)
	}
	wasRouted := in.routed
	in.routed = false
	d.mu.Unlock()
	if !crashed {
		return
	}
	if wasRouted {
		d.publishTable()
	}
	d.crashed(a, in, es)
}

// exitReason describes an exit for ps:report.
func exitReason(es engine.ExitStatus) string {
	if es.Code == -1 {
		return "container disappeared"
	}
	return es.String()
}

// crashed records a crash, removes the container and schedules the restart.
func (d *Deployer) crashed(a *appRun, in *instance, es engine.ExitStatus) {
	reason := exitReason(es)
	d.mu.Lock()
	s := a.slot(in.proc())
	s.restarts++
	if time.Since(in.started) >= d.cfg.RestartReset {
		s.consecutive = 0
	}
	s.consecutive++
	s.lastExit, s.lastExitAt = reason, es.ExitedAt
	delay := backoff(s.consecutive, d.cfg.RestartBackoff, d.cfg.RestartBackoffMax)
	s.nextRestart = time.Now().Add(delay)
	restarts := s.restarts
	d.mu.Unlock()
	d.event(a.name, "%s crashed: %s; restart %d in %s", in.proc(), reason, restarts, delay.Round(time.Millisecond))
	// The record stays (exited, with the restart count and reason) until
	// the slot runs again, so a daemon restart meanwhile keeps the count.
	d.saveRecord(a, in, "exited")
	d.mu.Lock()
	prev := s.exitedID
	s.exitedID = in.id
	d.mu.Unlock()
	if prev != "" && prev != in.id {
		d.dropRecordID(a.name, prev)
	}
	if err := d.eng.Delete(d.ctx, in.id); err != nil && !errors.Is(err, engine.ErrNotFound) {
		d.log.Warn("delete crashed container", "app", a.name, "id", in.id, "err", err)
	}
	d.scheduleRestart(a, in.typ, in.num, delay)
}

// slot returns the crash history of "type.N". Caller holds d.mu.
func (a *appRun) slot(proc string) *slot {
	s := a.slots[proc]
	if s == nil {
		s = &slot{}
		a.slots[proc] = s
	}
	return s
}

// scheduleRestart starts "type.N" again after delay, if it is still wanted then.
func (d *Deployer) scheduleRestart(a *appRun, typ string, num int, delay time.Duration) {
	proc := fmt.Sprintf("%s.%d", typ, num)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	s := a.slot(proc)
	if s.timer != nil {
		s.timer.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		d.goBackground("restart "+proc, func() {
			d.mu.Lock()
			current := s.timer == t
			if current {
				s.timer = nil
			}
			d.mu.Unlock()
			if current {
				d.restartSlot(a, typ, num)
			}
		})
	})
	s.timer = t
}

// restartSlot starts a crashed "type.N" again.
func (d *Deployer) restartSlot(a *appRun, typ string, num int) {
	a.op.Lock()
	defer a.op.Unlock()
	d.mu.Lock()
	want := a.desired()[typ]
	occupied := false
	for _, in := range a.insts {
		if in.typ == typ && in.num == num && in.state != stateStopping {
			occupied = true
		}
	}
	rel, img := a.rel, a.img
	spec := instanceSpec{app: a.name, rel: rel, img: img, typ: typ, num: num, uidBase: a.info.UIDBase,
		limits: a.formation[typ].Limits}
	d.mu.Unlock()
	if num > want || occupied || rel == nil {
		return
	}
	ctx := d.ctx
	in, err := d.startInstance(ctx, a, spec)
	if err == nil && typ == "web" {
		err = d.check(ctx, a, in)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if in != nil {
			d.discard(a, in)
		}
		d.mu.Lock()
		s := a.slot(fmt.Sprintf("%s.%d", typ, num))
		s.consecutive++
		s.restarts++
		s.lastExit, s.lastExitAt = "restart failed: "+firstLine(err.Error()), time.Now()
		delay := backoff(s.consecutive, d.cfg.RestartBackoff, d.cfg.RestartBackoffMax)
		s.nextRestart = time.Now().Add(delay)
		d.mu.Unlock()
		d.event(a.name, "%s.%d failed to restart: %s; next try in %s", typ, num, firstLine(err.Error()), delay)
		d.scheduleRestart(a, typ, num, delay)
		return
	}
	d.commit([]*instance{in})
	d.mu.Lock()
	s := a.slot(in.proc())
	old := s.exitedID
	s.exitedID = ""
	d.mu.Unlock()
	if old != "" {
		d.dropRecordID(a.name, old)
	}
	d.event(a.name, "%s restarted", in.proc())
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// commit marks started instances up, puts web instances in the router
// and publishes the table, then writes their records.
func (d *Deployer) commit(ins []*instance) {
	d.mu.Lock()
	for _, in := range ins {
		if _, gone := in.exited(); gone {
			continue
		}
		in.state = stateUp
		in.routed = in.typ == "web"
	}
	d.mu.Unlock()
	d.publishTable()
	for _, in := range ins {
		if _, gone := in.exited(); gone {
			// It died between its check and now: treat it as a crash.
			d.goBackground("late crash", func() {
				d.mu.Lock()
				a := d.appOf(in)
				d.mu.Unlock()
				if a != nil {
					d.watchLate(a, in)
				}
			})
			continue
		}
		d.saveRecordByID(in, "running")
	}
}

// appOf finds the app an instance belongs to. Caller holds d.mu.
func (d *Deployer) appOf(in *instance) *appRun {
	for _, a := range d.apps {
		if a.insts[in.id] == in {
			return a
		}
	}
	return nil
}

// watchLate handles an instance whose watcher saw it exit before commit.
func (d *Deployer) watchLate(a *appRun, in *instance) {
	d.mu.Lock()
	owned := a.insts[in.id] == in
	if owned {
		delete(a.insts, in.id)
	}
	in.routed = false
	d.mu.Unlock()
	if owned {
		d.publishTable()
		d.crashed(a, in, *in.exit)
	}
}

// check runs a new instance's health checks: its port answers HTTP, then
// the app's own checks, if any.
func (d *Deployer) check(ctx context.Context, a *appRun, in *instance) error {
	d.mu.Lock()
	img := a.img
	d.mu.Unlock()
	return d.checkWith(ctx, a.name, img, in)
}

func (d *Deployer) checkWith(ctx context.Context, app string, img *Image, in *instance) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.HealthTimeout)
	defer cancel()
	alive := func() error {
		if es, gone := in.exited(); gone {
			return fmt.Errorf("the process %s", exitReason(*es))
		}
		return nil
	}
	host := app + "." + d.cfg.Domain
	if in.typ == "web" {
		if err := waitListening(ctx, d.client, in.addr(), host, alive); err != nil {
			return fmt.Errorf("%s: %w: %v", in.proc(), ErrHealthCheck, err)
		}
	}
	checks, err := checksFor(img, in.typ)
	if err != nil {
		return fmt.Errorf("%s: %w", in.proc(), err)
	}
	for _, c := range checks {
		if err := d.runCheck(ctx, host, in, c, alive); err != nil {
			return fmt.Errorf("%s: %w: %s: %v", in.proc(), ErrHealthCheck, c.Name, err)
		}
	}
	return nil
}

// runCheck tries one check up to its attempts.
func (d *Deployer) runCheck(ctx context.Context, host string, in *instance, c Check, alive func() error) error {
	if c.Path != "" && in.typ != "web" {
		return nil // HTTP checks need a port; only web instances have one
	}
	if err := sleepCtx(ctx, c.InitialDelay); err != nil {
		return err
	}
	var last error
	for i := 0; i < c.Attempts; i++ {
		if i > 0 {
			if err := sleepCtx(ctx, c.Wait); err != nil {
				return fmt.Errorf("%v (then: %w)", last, err)
			}
		}
		actx, cancel := context.WithTimeout(ctx, c.Timeout)
		if len(c.Command) > 0 {
			var out bytes.Buffer
			es, err := d.eng.Exec(actx, in.id, engine.ExecOptions{
				Process: engine.Process{Args: c.Command, Env: in.env, Cwd: in.cwd, UID: in.uid, GID: in.gid, AdditionalGIDs: in.groups},
				Stdout:  &out, Stderr: &out,
			})
			switch {
			case err != nil:
				last = err
			case es.Code != 0:
				last = fmt.Errorf("command %s: %s", es, strings.TrimSpace(lastBytes(out.String(), 300)))
			default:
				last = nil
			}
		} else {
			last = probeHTTP(actx, d.client, in.addr(), host, c.Path, func(status int, body []byte) error {
				if status >= 400 {
					return fmt.Errorf("status %d", status)
				}
				if c.Content != "" && !bytes.Contains(body, []byte(c.Content)) {
					return fmt.Errorf("the response does not contain %q", c.Content)
				}
				return nil
			})
		}
		cancel()
		if last == nil {
			return nil
		}
		if err := alive(); err != nil {
			return err
		}
	}
	return fmt.Errorf("%d attempts failed, last: %v", c.Attempts, last)
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// discard removes a started instance that never served (a failed check).
func (d *Deployer) discard(a *appRun, in *instance) {
	d.mu.Lock()
	in.state = stateStopping
	in.routed = false
	delete(a.insts, in.id)
	d.mu.Unlock()
	if err := d.eng.Delete(context.WithoutCancel(d.ctx), in.id); err != nil && !errors.Is(err, engine.ErrNotFound) {
		d.log.Warn("delete container", "app", a.name, "id", in.id, "err", err)
	}
	d.dropRecord(a, in)
}

// retire takes instances out of the router, waits DrainDelay for requests
// already on their way, then stops them (SIGTERM, SIGKILL after
// StopTimeout) and removes them, all in parallel. wasRouted says that the
// caller already took routed instances out of the table, so the drain
// pause is still owed.
func (d *Deployer) retire(ctx context.Context, a *appRun, ins []*instance, wasRouted bool) {
	if len(ins) == 0 {
		return
	}
	routed := false
	d.mu.Lock()
	for _, in := range ins {
		routed = routed || in.routed
		in.routed = false
		in.state = stateStopping
	}
	d.mu.Unlock()
	if routed {
		d.publishTable()
	}
	if routed || wasRouted {
		_ = sleepCtx(ctx, d.cfg.DrainDelay)
	}
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.saveRecordByID(in, "stopping")
			sctx := context.WithoutCancel(ctx)
			if _, err := d.eng.Stop(sctx, in.id, d.cfg.StopTimeout); err != nil && !errors.Is(err, engine.ErrNotFound) && !errors.Is(err, engine.ErrNotRunning) {
				d.log.Warn("stop container", "app", a.name, "instance", in.proc(), "id", in.id, "err", err)
			}
			if err := d.eng.Delete(sctx, in.id); err != nil && !errors.Is(err, engine.ErrNotFound) {
				d.log.Warn("delete container", "app", a.name, "instance", in.proc(), "id", in.id, "err", err)
			}
			d.mu.Lock()
			if a.insts[in.id] == in {
				delete(a.insts, in.id)
			}
			d.mu.Unlock()
			d.dropRecord(a, in)
		}()
	}
	wg.Wait()
}

// record returns the container record of an instance. Caller holds d.mu.
func (a *appRun) record(in *instance, state string) containerRecord {
	r := containerRecord{
		EngineID: in.id, ProcessType: in.typ, Instance: in.num, Release: in.release,
		IP: in.ip, Pid: in.pid, State: state, StartedAt: in.started,
	}
	if s := a.slots[in.proc()]; s != nil {
		r.Restarts, r.LastExitReason = s.restarts, s.lastExit
	}
	return r
}

// saveRecord writes an instance's container record; a failure is logged,
// since the engine, not the record, is the truth about containers.
func (d *Deployer) saveRecord(a *appRun, in *instance, state string) {
	d.mu.Lock()
	rec := a.record(in, state)
	d.mu.Unlock()
	if err := d.st.SaveContainer(context.WithoutCancel(d.ctx), a.name, rec); err != nil {
		d.log.Warn("save container record", "app", a.name, "instance", in.proc(), "err", err)
	}
}

func (d *Deployer) saveRecordByID(in *instance, state string) {
	d.mu.Lock()
	a := d.appOf(in)
	d.mu.Unlock()
	if a != nil {
		d.saveRecord(a, in, state)
	}
}

func (d *Deployer) dropRecord(a *appRun, in *instance) {
	d.dropRecordID(a.name, in.id)
}

func (d *Deployer) dropRecordID(app, engineID string) {
	if err := d.st.DeleteContainer(context.WithoutCancel(d.ctx), app, engineID); err != nil {
		d.log.Warn("delete container record", "app", app, "id", engineID, "err", err)
	}
}
