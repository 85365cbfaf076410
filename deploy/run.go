package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/berthhq/berth/engine"
)

// runState tracks the one-off containers in use, so a Reconcile running
// meanwhile does not take them for strays.
type runState struct {
	mu     sync.Mutex
	active map[string]bool
	seq    int
}

func (d *Deployer) isActiveRun(id string) bool {
	d.runs.mu.Lock()
	defer d.runs.mu.Unlock()
	return d.runs.active[id]
}

// RunOneOff runs args in a one-off container of app's deployed release
// (Heroku's run): the release's image, config vars in the environment, not
// in the router, removed afterwards. With tty the command gets a
// pseudo-terminal and its output arrives on stdout. It returns the
// command's exit code.
func (d *Deployer) RunOneOff(ctx context.Context, app string, args []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error) {
	if len(args) == 0 {
		return 0, fmt.Errorf("run: a command is required, e.g. run %s sh", app)
	}
	a, err := d.app(app)
	if err != nil {
		return 0, err
	}
	a.op.Lock()
	err = d.refresh(ctx, a)
	d.mu.Lock()
	rel, img, info := a.rel, a.img, a.info
	limits := a.formation["web"].Limits
	d.mu.Unlock()
	a.op.Unlock()
	if err != nil {
		return 0, err
	}
	if rel == nil {
		return 0, fmt.Errorf("run in %s: %w (push code first)", app, ErrNoRelease)
	}
	d.runs.mu.Lock()
	d.runs.seq++
	num := d.runs.seq
	d.runs.mu.Unlock()
	dyno := "run." + strconv.Itoa(num)
	env := processEnv(rel, img, dyno, appPort(rel, img))
	// The container idles under its init; the command is exec'd into it,
	// which gives it stdin and, when asked, a terminal.
	spec := engine.Spec{
		Layers: img.Layers,
		Process: engine.Process{
			Args: []string{"sleep", "2147483647"}, Env: env, Cwd: img.WorkingDir, UID: img.UID, GID: img.GID,
		},
		Hostname: hostname(app, "run", num),
		Limits:   limits,
		Network:  engine.Network{Mode: engine.NetworkBridge},
		IDMap:    engine.IDMap{HostUID: info.UIDBase, HostGID: info.UIDBase},
		Labels:   map[string]string{labelRole: roleRun, labelApp: app, labelType: "run", labelInstance: strconv.Itoa(num)},
	}
	id, err := d.eng.Create(ctx, spec)
	if err != nil {
		return 0, fmt.Errorf("create one-off container: %w", err)
	}
	d.runs.mu.Lock()
	if d.runs.active == nil {
		d.runs.active = map[string]bool{}
	}
	d.runs.active[id] = true
	d.runs.mu.Unlock()
	defer func() {
		if err := d.eng.Delete(context.WithoutCancel(ctx), id); err != nil && !errors.Is(err, engine.ErrNotFound) {
			d.log.Warn("delete one-off container", "app", app, "id", id, "err", err)
		}
		d.runs.mu.Lock()
		delete(d.runs.active, id)
		d.runs.mu.Unlock()
	}()
	if err := d.eng.Start(ctx, id); err != nil {
		return 0, fmt.Errorf("start one-off container: %w", err)
	}
	d.event(app, "%s started: %s", dyno, args[0])
	es, err := d.eng.Exec(ctx, id, engine.ExecOptions{
		Process: engine.Process{Args: args, Env: env, Cwd: img.WorkingDir, UID: img.UID, GID: img.GID},
		TTY:     tty, Stdin: stdin, Stdout: stdout, Stderr: stderr,
	})
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", args[0], err)
	}
	d.event(app, "%s %s", dyno, es)
	return es.Code, nil
}
