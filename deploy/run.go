package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/tty"
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
// in the router, removed afterwards. With a terminal the command gets a
// pseudo-terminal of its size that follows its window changes, and its
// output arrives on stdout; nil runs it without one. It returns the
// command's exit code.
func (d *Deployer) RunOneOff(ctx context.Context, app string, args []string, stdin io.Reader, stdout, stderr io.Writer, term *tty.Terminal) (int, error) {
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
			Args: []string{"sleep", "2147483647"}, Env: env, Cwd: img.WorkingDir,
			UID: img.UID, GID: img.GID, AdditionalGIDs: img.Groups,
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
	opts := engine.ExecOptions{
		Process: engine.Process{Args: args, Env: env, Cwd: img.WorkingDir, UID: img.UID, GID: img.GID, AdditionalGIDs: img.Groups},
		Stdin:   stdin, Stdout: stdout, Stderr: stderr,
	}
	if term != nil {
		opts.TTY = true
		if term.Size.Valid() {
			opts.Size = engine.TermSize(term.Size)
		}
		if term.Resize != nil {
			resize, stop := forwardResize(term.Resize)
			defer stop()
			opts.Resize = resize
		}
	}
	es, err := d.eng.Exec(ctx, id, opts)
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", args[0], err)
	}
	d.event(app, "%s %s", dyno, es)
	return es.Code, nil
}

// forwardResize passes the valid sizes from in on to the engine until in
// closes or stop is called; stop waits for it to end.
func forwardResize(in <-chan tty.Size) (out <-chan engine.TermSize, stop func()) {
	c, quit, done := make(chan engine.TermSize), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer close(c)
		for {
			var s tty.Size
			var ok bool
			select {
			case s, ok = <-in:
				if !ok {
					return
				}
			case <-quit:
				return
			}
			if !s.Valid() {
				continue
			}
			select {
			case c <- engine.TermSize(s):
			case <-quit:
				return
			}
		}
	}()
	return c, func() { close(quit); <-done }
}
