package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/berthhq/berth/engine"
)

// Reconcile compares the desired state in the store with the containers
// the engine runs: it re-adopts running instances of each app's deployed
// release (without restarting them; web instances go back into the router
// once they answer), removes strays (other releases, surplus instances,
// destroyed or stopped apps, left-over one-off containers), starts what is
// missing and publishes the routing table. Start calls it; it is safe to
// call again.
func (d *Deployer) Reconcile(ctx context.Context) error {
	appErrs, err := d.reconcile(ctx)
	if err != nil {
		return err
	}
	return errors.Join(appErrs...)
}

// reconcile returns a fatal error (nothing could be compared) or the errors
// of single apps, each of which was left as it was.
func (d *Deployer) reconcile(ctx context.Context) ([]error, error) {
	infos, err := d.eng.List()
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	names, err := d.st.AppNames(ctx)
	if err != nil {
		return nil, fmt.Errorf("reconcile: list apps: %w", err)
	}
	if err := d.loadCerts(ctx); err != nil {
		d.log.Error("reconcile: serving without uploaded certificates", "err", err)
	}
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	byApp := map[string][]engine.Info{}
	for _, info := range infos {
		switch info.Labels[labelRole] {
		case roleRun:
			if d.isActiveRun(info.ID) {
				continue
			}
			d.removeStray(ctx, info, "one-off container left by an earlier daemon")
		case roleApp:
			app := info.Labels[labelApp]
			if !known[app] {
				d.removeStray(ctx, info, "its app no longer exists")
				continue
			}
			byApp[app] = append(byApp[app], info)
		}
	}
	var errs []error
	for _, n := range names {
		if err := d.reconcileApp(ctx, n, byApp[n]); err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", n, err))
		}
	}
	d.publishTable()
	for _, err := range errs {
		d.log.Error("reconcile app", "err", err)
	}
	return errs, nil
}

func (d *Deployer) removeStray(ctx context.Context, info engine.Info, why string) {
	d.log.Info("removing stray container", "id", info.ID, "app", info.Labels[labelApp],
		"instance", info.Labels[labelType]+"."+info.Labels[labelInstance], "why", why)
	if info.State == engine.StateRunning || info.State == engine.StatePaused {
		if _, err := d.eng.Stop(ctx, info.ID, d.cfg.StopTimeout); err != nil && !errors.Is(err, engine.ErrNotFound) {
			d.log.Warn("stop stray container", "id", info.ID, "err", err)
		}
	}
	if err := d.eng.Delete(ctx, info.ID); err != nil && !errors.Is(err, engine.ErrNotFound) {
		d.log.Warn("delete stray container", "id", info.ID, "err", err)
	}
	if app := info.Labels[labelApp]; app != "" && info.Labels[labelRole] == roleApp {
		if err := d.st.DeleteContainer(ctx, app, info.ID); err != nil {
			d.log.Warn("delete container record", "id", info.ID, "err", err)
		}
	}
}

func (d *Deployer) reconcileApp(ctx context.Context, name string, infos []engine.Info) error {
	a, err := d.app(name)
	if err != nil {
		return err
	}
	a.op.Lock()
	defer a.op.Unlock()
	if err := d.refresh(ctx, a); err != nil {
		return err
	}
	recs, err := d.st.Containers(ctx, name)
	if err != nil {
		return fmt.Errorf("load container records: %w", err)
	}
	exists := map[string]bool{}
	for _, info := range infos {
		exists[info.ID] = true
	}
	// Records of containers that are gone would only hold their IPs.
	for _, r := range recs {
		if !exists[r.EngineID] {
			if err := d.st.DeleteContainer(ctx, name, r.EngineID); err != nil {
				d.log.Warn("delete stale container record", "app", name, "id", r.EngineID, "err", err)
			}
		}
	}
	d.mu.Lock()
	for _, r := range recs {
		proc := fmt.Sprintf("%s.%d", r.ProcessType, r.Instance)
		s := a.slot(proc)
		if r.Restarts > s.restarts {
			s.restarts, s.lastExit = r.Restarts, r.LastExitReason
		}
	}
	want := a.desired()
	rel := a.rel
	// Running containers first, the newest first, so a duplicate slot
	// keeps one running instance.
	sort.Slice(infos, func(i, j int) bool {
		ri, rj := infos[i].State == engine.StateRunning, infos[j].State == engine.StateRunning
		if ri != rj {
			return ri
		}
		return infos[i].CreatedAt.After(infos[j].CreatedAt)
	})
	taken := map[string]bool{}
	for _, in := range a.insts {
		taken[in.proc()] = true
	}
	var keep []*instance
	type stray struct {
		info engine.Info
		why  string
	}
	var strays []stray
	var crashes []*instance
	for _, info := range infos {
		if a.insts[info.ID] != nil {
			continue
		}
		typ := info.Labels[labelType]
		num, _ := strconv.Atoi(info.Labels[labelInstance])
		version, _ := strconv.Atoi(info.Labels[labelRelease])
		port, _ := strconv.Atoi(info.Labels[labelPort])
		proc := fmt.Sprintf("%s.%d", typ, num)
		switch {
		case rel == nil || version != rel.Version:
			strays = append(strays, stray{info, "not the deployed release"})
			continue
		case num < 1 || num > want[typ]:
			strays = append(strays, stray{info, "beyond the formation"})
			continue
		case taken[proc]:
			strays = append(strays, stray{info, "duplicate of " + proc})
			continue
		}
		in := &instance{
			id: info.ID, logID: info.Labels[labelLog], typ: typ, num: num, release: version,
			ip: info.IP, port: port, pid: info.Pid, started: info.StartedAt,
			env: info.Spec.Process.Env, uid: info.Spec.Process.UID, gid: info.Spec.Process.GID,
			groups: info.Spec.Process.AdditionalGIDs, cwd: info.Spec.Process.Cwd,
			state: stateStarting, done: make(chan struct{}),
		}
		if info.State != engine.StateRunning {
			// It exited while no daemon watched it: a crash to restart.
			in.exit = info.Exit
			if in.exit == nil {
				in.exit = &engine.ExitStatus{Code: -1}
			}
			close(in.done)
			crashes = append(crashes, in)
			taken[proc] = true
			continue
		}
		taken[proc] = true
		keep = append(keep, in)
	}
	d.mu.Unlock()
	for _, s := range strays {
		d.removeStray(ctx, s.info, s.why)
	}
	for _, in := range crashes {
		d.crashed(a, in, *in.exit)
	}
	var mu sync.Mutex
	var healthy, sick []*instance
	var wg sync.WaitGroup
	for _, in := range keep {
		if !d.adopt(a, in) {
			return ErrClosed
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.check(ctx, a, in)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				d.event(name, "re-adopted %s does not pass its checks, replacing it: %v", in.proc(), err)
				sick = append(sick, in)
				return
			}
			healthy = append(healthy, in)
		}()
	}
	wg.Wait()
	for _, in := range sick {
		d.discard(a, in)
	}
	d.commit(healthy)
	if len(keep) > 0 {
		d.event(name, "re-adopted %d running instance(s) of v%d", len(healthy), rel.Version)
	}
	return d.converge(ctx, a, progress(nil))
}
