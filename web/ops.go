package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/deploy"
	"github.com/berthhq/berth/platform"
)

// The operations below are the web's side of the SSH command set
// (gitreceive/commands.go): the same platform calls, in the same order,
// followed by the same deploy calls. Both the dashboard and the API use
// them.

// lockedBuffer collects a deploy's progress lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// maxOpTime bounds an operation that outlives its request.
const maxOpTime = 10 * time.Minute

// opContext detaches an operation from its request: a person closing the
// tab must not cut a rollout or a scale in half. The operation still ends
// after maxOpTime.
func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), maxOpTime)
}

// rolloutIfDeployed rolls a release out when it has an image: config
// changes before the first deploy only record the release.
func (s *Server) rolloutIfDeployed(ctx context.Context, rel platform.Release, out *lockedBuffer) error {
	if rel.Image == "" {
		return nil
	}
	if err := s.deploy.Rollout(ctx, rel.App, rel, out); err != nil {
		return fmt.Errorf("roll out %s v%d: %w", rel.App, rel.Version, err)
	}
	return nil
}

// lockApp takes the lock of an app the actor may see, keyed on its stored
// name. The app is looked up first, so a name from a URL that is no app,
// or one the actor may not see, takes no lock at all.
func (s *Server) lockApp(ctx context.Context, actor platform.Actor, app string) (platform.App, func(), error) {
	a, err := s.svc.App(ctx, actor, app)
	if err != nil {
		return platform.App{}, nil, err
	}
	return a, s.locks.Lock(a.Name), nil
}

func (s *Server) setConfig(ctx context.Context, actor platform.Actor, app string, vars map[string]string) (platform.Release, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	a, unlock, err := s.lockApp(ctx, actor, app)
	if err != nil {
		return platform.Release{}, err
	}
	defer unlock()
	rel, err := s.svc.SetConfig(ctx, actor, a.Name, vars)
	if err != nil {
		return platform.Release{}, err
	}
	return rel, s.rolloutIfDeployed(ctx, rel, &lockedBuffer{})
}

func (s *Server) unsetConfig(ctx context.Context, actor platform.Actor, app string, keys []string) (platform.Release, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	a, unlock, err := s.lockApp(ctx, actor, app)
	if err != nil {
		return platform.Release{}, err
	}
	defer unlock()
	rel, err := s.svc.UnsetConfig(ctx, actor, a.Name, keys)
	if err != nil {
		return platform.Release{}, err
	}
	return rel, s.rolloutIfDeployed(ctx, rel, &lockedBuffer{})
}

func (s *Server) scale(ctx context.Context, actor platform.Actor, app string, q map[string]int) ([]platform.Process, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	a, unlock, err := s.lockApp(ctx, actor, app)
	if err != nil {
		return nil, err
	}
	defer unlock()
	procs, err := s.svc.Scale(ctx, actor, a.Name, q)
	if err != nil {
		return nil, err
	}
	if err := s.deploy.Converge(ctx, a.Name, &lockedBuffer{}); err != nil && !errors.Is(err, deploy.ErrNoRelease) {
		return procs, fmt.Errorf("scale %s: %w", a.Name, err)
	}
	return procs, nil
}

func (s *Server) rollback(ctx context.Context, actor platform.Actor, app string, v int) (platform.Release, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	a, unlock, err := s.lockApp(ctx, actor, app)
	if err != nil {
		return platform.Release{}, err
	}
	defer unlock()
	rel, err := s.svc.Rollback(ctx, actor, a.Name, v)
	if err != nil {
		return platform.Release{}, err
	}
	return rel, s.rolloutIfDeployed(ctx, rel, &lockedBuffer{})
}

// psAction runs restart, stop or start for an app the actor may see.
func (s *Server) psAction(ctx context.Context, actor platform.Actor, app, action, processType string) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	a, unlock, err := s.lockApp(ctx, actor, app)
	if err != nil {
		return err
	}
	defer unlock()
	if processType != "" {
		if err := platform.ValidateProcessType(processType); err != nil {
			return err
		}
	}
	out := &lockedBuffer{}
	switch action {
	case "restart":
		err = s.deploy.Restart(ctx, a.Name, processType, out)
	case "stop":
		err = s.deploy.StopApp(ctx, a.Name, out)
	case "start":
		err = s.deploy.StartApp(ctx, a.Name, out)
	default:
		return fmt.Errorf("unknown action %q: %w", action, platform.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", action, a.Name, err)
	}
	return nil
}

// destroy removes an app's containers and then the app. The permission is
// checked before anything is stopped: only the owner or an admin may.
func (s *Server) destroy(ctx context.Context, actor platform.Actor, app string) error {
	a, err := s.svc.AppToDestroy(ctx, actor, app)
	if err != nil {
		return err
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	unlock := s.locks.Lock(a.Name)
	defer unlock()
	if err := s.deploy.Destroy(ctx, a.Name); err != nil {
		return fmt.Errorf("stop %s's containers: %w", a.Name, err)
	}
	if err := s.svc.DestroyApp(ctx, actor, a.Name); err != nil {
		return err
	}
	s.log.Info("app destroyed", "app", a.Name, "by", actor.Name)
	if s.destroyed != nil {
		s.destroyed(a.Name)
	}
	return nil
}

// appStatus is one app as the apps list shows it.
type appStatus struct {
	Name       string
	Owner      string
	URL        string
	Status     string // running, crashed, deploying, stopped, idle, new, unknown
	Up, Want   int
	Release    int
	LastDeploy time.Time
	Instances  []deploy.Instance
	Formation  []platform.Process
	Stopped    bool
}

// status gathers an app's state from platform and deploy.
func (s *Server) status(ctx context.Context, actor platform.Actor, a platform.App) (appStatus, error) {
	st := appStatus{Name: a.Name, Owner: a.Owner, URL: s.appURL(a.Name)}
	form, err := s.svc.Formation(ctx, actor, a.Name)
	if err != nil {
		return st, err
	}
	st.Formation = form
	for _, p := range form {
		st.Want += p.Quantity
	}
	deployed, ok, err := s.svc.DeployedRelease(ctx, a.Name)
	if err != nil {
		return st, err
	}
	st.Release = deployed
	if st.Stopped, err = s.svc.AppStopped(ctx, a.Name); err != nil {
		return st, err
	}
	deploys, err := s.svc.Deploys(ctx, actor, a.Name, 1)
	if err != nil {
		return st, err
	}
	building := false
	if len(deploys) > 0 {
		st.LastDeploy = deploys[0].StartedAt
		building = !deploys[0].Status.Final()
	} else if ok {
		if rel, err := s.svc.Release(ctx, actor, a.Name, deployed); err == nil {
			st.LastDeploy = rel.CreatedAt
		}
	}
	if ok {
		st.Instances, err = s.deploy.Instances(ctx, a.Name)
		if err != nil && !errors.Is(err, deploy.ErrNoRelease) {
			// One app's broken state must not take the whole list down.
			s.log.Warn("read instances", "app", a.Name, "err", err)
			st.Status = "unknown"
			return st, nil
		}
	}
	crashed, changing := false, building
	for _, in := range st.Instances {
		switch in.State {
		case "up":
			st.Up++
		case "crashed":
			crashed = true
		case "starting", "stopping":
			changing = true
		}
	}
	switch {
	case !ok && !building:
		st.Status = "new"
	case st.Stopped:
		st.Status = "stopped"
	case changing:
		st.Status = "deploying"
	case crashed:
		st.Status = "crashed"
	case st.Want == 0:
		st.Status = "idle"
	default:
		st.Status = "running"
	}
	return st, nil
}

func (s *Server) appURL(app string) string {
	scheme := "http"
	if s.cfg.Secure {
		scheme = "https"
	}
	return scheme + "://" + app + "." + s.cfg.Domain + "/"
}

// releaseDiff is what changed from one release to another. Config values
// are secrets: only the keys are compared and shown.
type releaseDiff struct {
	From, To       platform.Release
	Added          []string
	Changed        []string
	Removed        []string
	ImageChanged   bool
	ProcessChanges []string
}

func diffReleases(from, to platform.Release) releaseDiff {
	d := releaseDiff{From: from, To: to, ImageChanged: from.Image != to.Image}
	for _, k := range to.Config.Keys() {
		old, ok := from.Config[k]
		switch {
		case !ok:
			d.Added = append(d.Added, k)
		case old != to.Config[k]:
			d.Changed = append(d.Changed, k)
		}
	}
	for _, k := range from.Config.Keys() {
		if _, ok := to.Config[k]; !ok {
			d.Removed = append(d.Removed, k)
		}
	}
	types := slices.Sorted(maps.Keys(to.Processes))
	for _, t := range slices.Sorted(maps.Keys(from.Processes)) {
		if !slices.Contains(types, t) {
			d.ProcessChanges = append(d.ProcessChanges, "removed "+t)
		}
	}
	for _, t := range types {
		old, ok := from.Processes[t]
		switch {
		case !ok:
			d.ProcessChanges = append(d.ProcessChanges, "added "+t+": "+to.Processes[t])
		case old != to.Processes[t]:
			d.ProcessChanges = append(d.ProcessChanges, "changed "+t+": "+to.Processes[t])
		}
	}
	return d
}

// Empty reports whether nothing changed.
func (d releaseDiff) Empty() bool {
	return len(d.Added)+len(d.Changed)+len(d.Removed)+len(d.ProcessChanges) == 0 && !d.ImageChanged
}

// validProcessFilter checks a log filter: a process type or one instance
// ("web" or "web.1").
func validProcessFilter(f string) error {
	if f == "" {
		return nil
	}
	t, n, hasNum := strings.Cut(f, ".")
	if err := platform.ValidateProcessType(t); err != nil {
		return err
	}
	if hasNum {
		if n == "" || len(n) > 3 || strings.Trim(n, "0123456789") != "" {
			return &platform.InvalidError{Field: "process", Value: f, Reason: "give a process type (web) or an instance (web.1)"}
		}
	}
	return nil
}
