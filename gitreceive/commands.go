package gitreceive

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berthhq/berth/internal/applock"
	"github.com/berthhq/berth/internal/tty"
	"github.com/berthhq/berth/platform"
)

// Actor is whoever runs a command: a user, or the system for the local socket.
type Actor = platform.Actor

// Env is one command invocation's standard streams.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Terminal is the client's terminal, with its size and window changes,
	// when it asked for one (ssh -t, berth on a terminal); nil otherwise.
	Terminal *tty.Terminal
	// Local is true for the root-only socket on the host.
	Local bool
}

// Deployer is what the commands need from the deploy package: bringing
// containers in line with releases and formation, and reading their state.
type Deployer interface {
	Rollout(ctx context.Context, app string, rel platform.Release, out io.Writer) error
	Converge(ctx context.Context, app string, out io.Writer) error
	RefreshRoutes(ctx context.Context) error
	Restart(ctx context.Context, app, processType string, out io.Writer) error
	StopApp(ctx context.Context, app string, out io.Writer) error
	StartApp(ctx context.Context, app string, out io.Writer) error
	Destroy(ctx context.Context, app string) error
	Logs(ctx context.Context, app string, lines int, follow bool, processType string, w io.Writer) error
	Report(ctx context.Context, app string, w io.Writer) error
	RunOneOff(ctx context.Context, app string, args []string, stdin io.Reader, stdout, stderr io.Writer, term *tty.Terminal) (int, error)
	// NewBuildLogPath returns the file that keeps a new deploy's build
	// output, making room for it: an app keeps a bounded number.
	NewBuildLogPath(app string) (string, error)
}

// diskReporter is the optional ability of a Deployer to report an app's
// disk limit and use (resource:report).
type diskReporter interface {
	DiskReport(ctx context.Context, app string, w io.Writer) error
}

// Builder is what a push needs from the builder: source in, image out.
type Builder interface {
	// Build builds the source in dir for app, streaming its steps to out,
	// stores the image under tag (one per commit, so every release keeps
	// its own image for rollbacks) and returns the image reference and the
	// process table.
	Build(ctx context.Context, app, dir, tag string, out io.Writer) (image string, processes map[string]string, err error)
}

// Extension adds commands owned by another subsystem (images:*, base:*,
// certs:*, info…) to the set.
type Extension struct {
	Name    string
	Usage   string
	Summary string
	MinArgs int
	MaxArgs int
	Admin   bool
	// Run gets the positional arguments.
	Run func(ctx context.Context, actor Actor, args []string, env *Env) error
}

// Commands is berth's command set, shared by the SSH server and the local
// admin socket so both run the same code.
type Commands struct {
	svc     *platform.Service
	deploy  Deployer
	builder Builder
	cfg     Config
	logger  *slog.Logger
	specs   map[string]*spec
	hooks   *Server // set by NewServer; the push hook needs it
	locks   *applock.Locks
}

// NewCommands builds the command set over platform, deploy and builder.
func NewCommands(cfg Config, svc *platform.Service, d Deployer, b Builder, logger *slog.Logger, ext ...Extension) *Commands {
	c := &Commands{svc: svc, deploy: d, builder: b, cfg: cfg, logger: logger.With("component", "commands"), locks: applock.New()}
	c.specs = builtinSpecs()
	for _, e := range ext {
		e := e
		c.specs[e.Name] = &spec{name: e.Name, usage: e.Usage, summary: e.Summary, minArgs: e.MinArgs, maxArgs: e.MaxArgs, admin: e.Admin,
			run: func(c *Commands, inv *Invocation) error {
				return e.Run(inv.ctx, inv.actor, inv.Args, inv.env)
			}}
	}
	return c
}

// Run parses and runs one command line for actor and returns its exit
// status. Errors go to env.Stderr.
func (c *Commands) Run(ctx context.Context, actor Actor, args []string, env *Env) int {
	inv, err := parse(c.specs, args)
	if err != nil {
		fmt.Fprintln(env.Stderr, " !", err)
		return 2
	}
	if inv.spec.admin && !actor.IsAdmin() {
		fmt.Fprintf(env.Stderr, " ! %s: only admins may do this\n", inv.spec.name)
		return 1
	}
	if inv.spec.name == "_hook" && !env.Local {
		fmt.Fprintf(env.Stderr, " ! unknown command %q; `help` lists the commands\n", args[0])
		return 2
	}
	inv.ctx, inv.actor, inv.env = ctx, actor, env
	defer func() {
		if r := recover(); r != nil {
			c.logger.Error("command panicked", "command", inv.spec.name, "panic", r)
			fmt.Fprintln(env.Stderr, " ! internal error; see the berth log")
		}
	}()
	if err := inv.spec.run(c, inv); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return int(ee)
		}
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return 130
		}
		fmt.Fprintln(env.Stderr, " !", userMessage(err))
		if isInternal(err) {
			c.logger.Error("command failed", "command", inv.spec.name, "actor", actor.Name, "err", err)
		}
		return 1
	}
	return 0
}

// exitError carries an exit status out of a command that already reported.
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// isInternal tells errors that are the system's fault (logged) from the
// user's (not logged).
func isInternal(err error) bool {
	for _, s := range []error{platform.ErrNotFound, platform.ErrExists, platform.ErrInvalid, platform.ErrForbidden, platform.ErrConflict, ErrUsage} {
		if errors.Is(err, s) {
			return false
		}
	}
	return true
}

// userMessage is what a user sees of an error.
func userMessage(err error) string { return err.Error() }

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func builtinSpecs() map[string]*spec {
	list := []*spec{
		{name: "help", summary: "list every command", maxArgs: 1, run: (*Commands).help},
		{name: "version", summary: "print berth's version", run: (*Commands).version},
		{name: "apps:list", summary: "list the apps you may see", run: (*Commands).appsList},
		{name: "apps:create", usage: "APP", summary: "create an app", minArgs: 1, maxArgs: 1, run: (*Commands).appsCreate},
		{name: "apps:destroy", usage: "APP [--force]", summary: "destroy an app, its containers, releases and repository (asks for the name unless --force)", minArgs: 1, maxArgs: 1,
			flags: func(fs *flag.FlagSet, inv *Invocation) { inv.boolFlag(fs, "force", "do not ask") }, run: (*Commands).appsDestroy},
		{name: "apps:info", usage: "APP", summary: "show an app's owner, URL, release and formation", minArgs: 1, maxArgs: 1, run: (*Commands).appsInfo},
		{name: "apps:share", usage: "APP USER", summary: "let another user manage an app", minArgs: 2, maxArgs: 2, run: (*Commands).appsShare},
		{name: "apps:unshare", usage: "APP USER", summary: "stop sharing an app with a user", minArgs: 2, maxArgs: 2, run: (*Commands).appsUnshare},
		{name: "apps:branch", usage: "APP BRANCH", summary: "set the git branch whose pushes deploy (default main)", minArgs: 2, maxArgs: 2, run: (*Commands).appsBranch},
		{name: "config", usage: "APP", summary: "show an app's config vars", minArgs: 1, maxArgs: 1, run: (*Commands).configShow},
		{name: "config:get", usage: "APP KEY", summary: "print one config var's value", minArgs: 2, maxArgs: 2, run: (*Commands).configGet},
		{name: "config:set", usage: "APP KEY=VALUE…", summary: "set config vars: makes a release and restarts the app", minArgs: 2, maxArgs: -1, run: (*Commands).configSet},
		{name: "config:unset", usage: "APP KEY…", summary: "remove config vars: makes a release and restarts the app", minArgs: 2, maxArgs: -1, run: (*Commands).configUnset},
		{name: "ps:scale", usage: "APP TYPE=N…", summary: "set how many instances of each process type run (no arguments: show)", minArgs: 1, maxArgs: -1, run: (*Commands).psScale},
		{name: "ps:restart", usage: "APP [TYPE]", summary: "restart an app's instances, web without downtime", minArgs: 1, maxArgs: 2, run: (*Commands).psRestart},
		{name: "ps:stop", usage: "APP", summary: "stop every instance of an app (the formation is kept)", minArgs: 1, maxArgs: 1, run: (*Commands).psStop},
		{name: "ps:start", usage: "APP", summary: "start a stopped app again", minArgs: 1, maxArgs: 1, run: (*Commands).psStart},
		{name: "ps:report", usage: "APP", summary: "show an app's instances: state, uptime, restarts, memory, cpu", minArgs: 1, maxArgs: 1, run: (*Commands).psReport},
		{name: "logs", usage: "APP [-t] [-n N] [-p TYPE]", summary: "show an app's logs; -t follows them", minArgs: 1, maxArgs: 1,
			flags: func(fs *flag.FlagSet, inv *Invocation) {
				inv.boolFlag(fs, "t", "follow")
				inv.boolFlag(fs, "tail", "follow")
				inv.intFlag(fs, "n", 100, "lines")
				inv.intFlag(fs, "num", 0, "lines")
				inv.stringFlag(fs, "p", "", "process type")
				inv.stringFlag(fs, "ps", "", "process type")
			}, run: (*Commands).logs},
		{name: "releases", usage: "APP", summary: "list an app's releases, newest first", minArgs: 1, maxArgs: 1, run: (*Commands).releases},
		{name: "releases:info", usage: "APP vN", summary: "show one release", minArgs: 2, maxArgs: 2, run: (*Commands).releasesInfo},
		{name: "releases:rollback", usage: "APP vN", summary: "roll back to release vN (as a new release)", minArgs: 2, maxArgs: 2, run: (*Commands).releasesRollback},
		{name: "builds", usage: "APP", summary: "list an app's builds (deploys), newest first: status, release, commit, who, when, why it failed", minArgs: 1, maxArgs: 1, run: (*Commands).builds},
		{name: "builds:output", usage: "APP [ID]", summary: "print the output of build ID as kept (default: the newest build); the end of it when it is long", minArgs: 1, maxArgs: 2, run: (*Commands).buildsOutput},
		{name: "domains:add", usage: "APP HOSTNAME", summary: "route a custom domain to an app", minArgs: 2, maxArgs: 2, run: (*Commands).domainsAdd},
		{name: "domains:remove", usage: "APP HOSTNAME", summary: "stop routing a custom domain", minArgs: 2, maxArgs: 2, run: (*Commands).domainsRemove},
		{name: "domains:list", usage: "APP", summary: "list an app's domains", minArgs: 1, maxArgs: 1, run: (*Commands).domainsList},
		{name: "certs:add", usage: "APP HOSTNAME  (certificate chain and key, PEM, on stdin)", summary: "serve one of an app's domains over TLS with an uploaded certificate", minArgs: 2, maxArgs: 2, run: (*Commands).certsAdd},
		{name: "certs:remove", usage: "APP HOSTNAME", summary: "remove an uploaded certificate", minArgs: 2, maxArgs: 2, run: (*Commands).certsRemove},
		{name: "certs:list", usage: "APP", summary: "list an app's uploaded certificates", minArgs: 1, maxArgs: 1, run: (*Commands).certsList},
		{name: "resource:limit", usage: "APP [-p TYPE] [--memory 512m] [--cpu 0.5] [--pids 256] [--disk 1g] [--network 10mbit]", summary: "set resource limits of a process type (applied on restart); --disk is the whole app's", minArgs: 1, maxArgs: 1,
			flags: func(fs *flag.FlagSet, inv *Invocation) {
				inv.stringFlag(fs, "p", "web", "process type")
				for _, n := range limitNames {
					inv.stringFlag(fs, n, "", n+" limit")
				}
			}, run: (*Commands).resourceLimit},
		{name: "resource:report", usage: "APP", summary: "show resource limits and current usage", minArgs: 1, maxArgs: 1, run: (*Commands).resourceReport},
		{name: "run", usage: "APP CMD…", summary: "run a one-off command in a new container of the app", minArgs: 2, maxArgs: -1, passthrough: true, run: (*Commands).runOneOff},
		{name: "keys:add", usage: "USER [NAME]  (the public key on stdin)", summary: "add an SSH key for a user", minArgs: 1, maxArgs: 2, run: (*Commands).keysAdd},
		{name: "keys:remove", usage: "USER NAME|FINGERPRINT", summary: "remove an SSH key", minArgs: 2, maxArgs: 2, run: (*Commands).keysRemove},
		{name: "keys:list", usage: "[USER]", summary: "list SSH keys", maxArgs: 1, run: (*Commands).keysList},
		{name: "users:add", usage: "USER [--admin]", summary: "add a user (admin)", minArgs: 1, maxArgs: 1, admin: true,
			flags: func(fs *flag.FlagSet, inv *Invocation) { inv.boolFlag(fs, "admin", "make an admin") }, run: (*Commands).usersAdd},
		{name: "users:list", summary: "list users (admin)", admin: true, run: (*Commands).usersList},
		{name: "users:remove", usage: "USER", summary: "remove a user (admin)", minArgs: 1, maxArgs: 1, admin: true, run: (*Commands).usersRemove},
		{name: "users:passwd", usage: "USER  (the password on stdin)", summary: "set a user's dashboard password", minArgs: 1, maxArgs: 1, run: (*Commands).usersPasswd},
		{name: "_hook", usage: "pre-receive PUSH QUARANTINE", summary: "internal: the git hook of a push", minArgs: 2, maxArgs: 3, run: (*Commands).hook},
	}
	m := make(map[string]*spec, len(list))
	for _, s := range list {
		m[s.name] = s
	}
	return m
}

var limitNames = []string{"memory", "cpu", "pids", "disk", "network"}

func (c *Commands) help(inv *Invocation) error {
	specs := map[string]*spec{}
	for n, s := range c.specs {
		if !strings.HasPrefix(n, "_") {
			specs[n] = s
		}
	}
	if len(inv.Args) == 1 {
		name := inv.Args[0]
		if canon, ok := aliases[name]; ok {
			name = canon
		}
		s, ok := specs[name]
		if !ok {
			return &UsageError{Msg: fmt.Sprintf("unknown command %q; `help` lists the commands", truncate(inv.Args[0], 64))}
		}
		fmt.Fprintf(inv.env.Stdout, "Usage: %s %s\n\n%s\n", s.name, s.usage, s.summary)
		return nil
	}
	_, err := io.WriteString(inv.env.Stdout, helpText(specs, inv.actor.IsAdmin()))
	return err
}

func (c *Commands) version(inv *Invocation) error {
	_, err := fmt.Fprintln(inv.env.Stdout, "berth", c.cfg.Version)
	return err
}

func header(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "=====> "+format+"\n", args...)
}

func (c *Commands) appsList(inv *Invocation) error {
	apps, err := c.svc.Apps(inv.ctx, inv.actor)
	if err != nil {
		return err
	}
	header(inv.env.Stdout, "Apps")
	for _, a := range apps {
		fmt.Fprintln(inv.env.Stdout, a.Name)
	}
	return nil
}

func (c *Commands) appsCreate(inv *Invocation) error {
	a, err := c.svc.CreateApp(inv.ctx, inv.actor, inv.Args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Creating %s... done\n", a.Name)
	fmt.Fprintf(inv.env.Stdout, "       git remote: berth@HOST:%s   URL: http://%s.%s/\n", a.Name, a.Name, c.cfg.Domain)
	return nil
}

func (c *Commands) appsDestroy(inv *Invocation) error {
	name := inv.Args[0]
	// Refused before anything is torn down, not by DestroyApp after the
	// containers are gone.
	a, err := c.svc.AppToDestroy(inv.ctx, inv.actor, name)
	if err != nil {
		return err
	}
	if !inv.Bool("force") {
		fmt.Fprintf(inv.env.Stdout, " !     WARNING: this destroys %s: its containers, releases, config, domains and repository.\n", a.Name)
		fmt.Fprintf(inv.env.Stdout, " !     To proceed, type %q (or run again with --force)\n\n> ", a.Name)
		typed, err := readLine(inv.env.Stdin)
		if err != nil || typed != a.Name {
			return fmt.Errorf("confirmation did not match %q; nothing destroyed: %w", a.Name, platform.ErrConflict)
		}
	}
	unlock := c.locks.Lock(a.Name)
	defer unlock()
	if err := c.deploy.Destroy(inv.ctx, a.Name); err != nil {
		return fmt.Errorf("stop %s's containers: %w", a.Name, err)
	}
	if err := c.svc.DestroyApp(inv.ctx, inv.actor, a.Name); err != nil {
		return err
	}
	if c.hooks != nil {
		c.hooks.removeRepo(a.Name)
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Destroying %s... done\n", a.Name)
	return nil
}

// readLine reads one line of at most 256 bytes.
func readLine(r io.Reader) (string, error) {
	if r == nil {
		return "", io.EOF
	}
	br := bufio.NewReaderSize(io.LimitReader(r, 256), 256)
	line, err := br.ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

func (c *Commands) appsInfo(inv *Invocation) error {
	a, err := c.svc.App(inv.ctx, inv.actor, inv.Args[0])
	if err != nil {
		return err
	}
	w := inv.env.Stdout
	header(w, "%s info", a.Name)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	owner := a.Owner
	if owner == "" {
		owner = "(system)"
	}
	fmt.Fprintf(tw, "Owner:\t%s\n", owner)
	fmt.Fprintf(tw, "Created:\t%s\n", a.CreatedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "URL:\thttp://%s.%s/\n", a.Name, c.cfg.Domain)
	fmt.Fprintf(tw, "Deploy branch:\t%s\n", a.DeployBranch)
	if rel, ok, err := c.svc.CurrentRelease(inv.ctx, inv.actor, a.Name); err != nil {
		return err
	} else if ok {
		fmt.Fprintf(tw, "Release:\tv%d (%s)\n", rel.Version, rel.Description)
		fmt.Fprintf(tw, "Image:\t%s\n", orNone(rel.Image))
	} else {
		fmt.Fprintf(tw, "Release:\tnone yet: git push to deploy\n")
	}
	procs, err := c.svc.Formation(inv.ctx, inv.actor, a.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(tw, "Formation:\t%s\n", formatFormation(procs))
	if shares, err := c.svc.AppShares(inv.ctx, inv.actor, a.Name); err == nil && len(shares) > 0 {
		fmt.Fprintf(tw, "Shared with:\t%s\n", strings.Join(shares, ", "))
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func formatFormation(procs []platform.Process) string {
	if len(procs) == 0 {
		return "(none)"
	}
	parts := make([]string, 0, len(procs))
	for _, p := range procs {
		parts = append(parts, fmt.Sprintf("%s=%d", p.Type, p.Quantity))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func (c *Commands) appsShare(inv *Invocation) error {
	if err := c.svc.ShareApp(inv.ctx, inv.actor, inv.Args[0], inv.Args[1]); err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> %s is now shared with %s\n", inv.Args[0], inv.Args[1])
	return nil
}

func (c *Commands) appsUnshare(inv *Invocation) error {
	if err := c.svc.UnshareApp(inv.ctx, inv.actor, inv.Args[0], inv.Args[1]); err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> %s is no longer shared with %s\n", inv.Args[0], inv.Args[1])
	return nil
}

func (c *Commands) appsBranch(inv *Invocation) error {
	if err := c.svc.SetDeployBranch(inv.ctx, inv.actor, inv.Args[0], inv.Args[1]); err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> pushes to %s now deploy %s\n", inv.Args[1], inv.Args[0])
	return nil
}

func (c *Commands) configShow(inv *Invocation) error {
	vars, err := c.svc.Config(inv.ctx, inv.actor, inv.Args[0])
	if err != nil {
		return err
	}
	header(inv.env.Stdout, "%s env vars", inv.Args[0])
	tw := tabwriter.NewWriter(inv.env.Stdout, 0, 4, 2, ' ', 0)
	for _, k := range vars.Keys() {
		fmt.Fprintf(tw, "%s:\t%s\n", k, vars[k])
	}
	return tw.Flush()
}

func (c *Commands) configGet(inv *Invocation) error {
	vars, err := c.svc.Config(inv.ctx, inv.actor, inv.Args[0])
	if err != nil {
		return err
	}
	key := inv.Args[1]
	if err := platform.ValidateConfigKey(key); err != nil {
		return err
	}
	v, ok := vars[key]
	if !ok {
		return &platform.NotFoundError{Kind: "config var", Name: key, Hint: "see config " + inv.Args[0]}
	}
	_, err = fmt.Fprintln(inv.env.Stdout, v)
	return err
}

func (c *Commands) configSet(inv *Invocation) error {
	app := inv.Args[0]
	vars := make(map[string]string, len(inv.Args)-1)
	for _, kv := range inv.Args[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return &UsageError{Command: "config:set", Msg: fmt.Sprintf("%q is not KEY=VALUE", truncate(k, 64))}
		}
		vars[k] = v
	}
	unlock := c.locks.Lock(app)
	defer unlock()
	rel, err := c.svc.SetConfig(inv.ctx, inv.actor, app, vars)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Setting config vars and restarting %s: v%d %s\n", app, rel.Version, rel.Description)
	return c.rolloutIfDeployed(inv, rel)
}

func (c *Commands) configUnset(inv *Invocation) error {
	app := inv.Args[0]
	unlock := c.locks.Lock(app)
	defer unlock()
	rel, err := c.svc.UnsetConfig(inv.ctx, inv.actor, app, inv.Args[1:])
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Unsetting config vars and restarting %s: v%d %s\n", app, rel.Version, rel.Description)
	return c.rolloutIfDeployed(inv, rel)
}

// rolloutIfDeployed rolls a new release out when it has an image: config
// changes before the first push only record the release.
func (c *Commands) rolloutIfDeployed(inv *Invocation, rel platform.Release) error {
	if rel.Image == "" {
		fmt.Fprintln(inv.env.Stdout, "       (nothing deployed yet: the config applies from the first push)")
		return nil
	}
	return c.deploy.Rollout(inv.ctx, rel.App, rel, inv.env.Stdout)
}

func (c *Commands) psScale(inv *Invocation) error {
	app := inv.Args[0]
	if len(inv.Args) == 1 {
		procs, err := c.svc.Formation(inv.ctx, inv.actor, app)
		if err != nil {
			return err
		}
		header(inv.env.Stdout, "%s formation", app)
		for _, p := range procs {
			fmt.Fprintf(inv.env.Stdout, "%s=%d\n", p.Type, p.Quantity)
		}
		return nil
	}
	q := make(map[string]int, len(inv.Args)-1)
	for _, kv := range inv.Args[1:] {
		t, n, ok := strings.Cut(kv, "=")
		if !ok {
			return &UsageError{Command: "ps:scale", Msg: fmt.Sprintf("%q is not TYPE=N", truncate(kv, 64))}
		}
		if err := platform.ValidateProcessType(t); err != nil {
			return err
		}
		v, err := platform.ParseQuantity(t, n)
		if err != nil {
			return err
		}
		q[t] = v
	}
	unlock := c.locks.Lock(app)
	defer unlock()
	procs, err := c.svc.Scale(inv.ctx, inv.actor, app, q)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Scaling %s: %s\n", app, formatFormation(procs))
	return c.deploy.Converge(inv.ctx, app, inv.env.Stdout)
}

func (c *Commands) psRestart(inv *Invocation) error {
	app := inv.Args[0]
	if _, err := c.svc.App(inv.ctx, inv.actor, app); err != nil {
		return err
	}
	pt := ""
	if len(inv.Args) == 2 {
		pt = inv.Args[1]
		if err := platform.ValidateProcessType(pt); err != nil {
			return err
		}
	}
	unlock := c.locks.Lock(app)
	defer unlock()
	return c.deploy.Restart(inv.ctx, app, pt, inv.env.Stdout)
}

func (c *Commands) psStop(inv *Invocation) error {
	app := inv.Args[0]
	if _, err := c.svc.App(inv.ctx, inv.actor, app); err != nil {
		return err
	}
	unlock := c.locks.Lock(app)
	defer unlock()
	return c.deploy.StopApp(inv.ctx, app, inv.env.Stdout)
}

func (c *Commands) psStart(inv *Invocation) error {
	app := inv.Args[0]
	if _, err := c.svc.App(inv.ctx, inv.actor, app); err != nil {
		return err
	}
	unlock := c.locks.Lock(app)
	defer unlock()
	return c.deploy.StartApp(inv.ctx, app, inv.env.Stdout)
}

func (c *Commands) psReport(inv *Invocation) error {
	app := inv.Args[0]
	if _, err := c.svc.App(inv.ctx, inv.actor, app); err != nil {
		return err
	}
	return c.deploy.Report(inv.ctx, app, inv.env.Stdout)
}

func (c *Commands) logs(inv *Invocation) error {
	app := inv.Args[0]
	if _, err := c.svc.App(inv.ctx, inv.actor, app); err != nil {
		return err
	}
	n := inv.Int("n")
	if v := inv.Int("num"); v != 0 {
		n = v
	}
	if n < 0 || n > 100000 {
		return &UsageError{Command: "logs", Msg: fmt.Sprintf("-n %d: give a number of lines from 0 to 100000", n)}
	}
	pt := inv.String("p")
	if v := inv.String("ps"); v != "" {
		pt = v
	}
	if pt != "" {
		if err := platform.ValidateProcessType(pt); err != nil {
			return err
		}
	}
	return c.deploy.Logs(inv.ctx, app, n, inv.Bool("t") || inv.Bool("tail"), pt, inv.env.Stdout)
}

func (c *Commands) releases(inv *Invocation) error {
	rels, err := c.svc.Releases(inv.ctx, inv.actor, inv.Args[0], 0)
	if err != nil {
		return err
	}
	header(inv.env.Stdout, "%s releases", inv.Args[0])
	tw := tabwriter.NewWriter(inv.env.Stdout, 0, 4, 2, ' ', 0)
	for _, r := range rels {
		fmt.Fprintf(tw, "v%d\t%s\t%s\t%s\n", r.Version, r.Description, r.CreatedBy, r.CreatedAt.UTC().Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

func (c *Commands) releasesInfo(inv *Invocation) error {
	v, err := platform.ParseVersion(inv.Args[1])
	if err != nil {
		return err
	}
	r, err := c.svc.Release(inv.ctx, inv.actor, inv.Args[0], v)
	if err != nil {
		return err
	}
	w := inv.env.Stdout
	header(w, "%s v%d", r.App, r.Version)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Description:\t%s\n", r.Description)
	fmt.Fprintf(tw, "By:\t%s\n", r.CreatedBy)
	fmt.Fprintf(tw, "When:\t%s\n", r.CreatedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Image:\t%s\n", orNone(r.Image))
	fmt.Fprintf(tw, "Config keys:\t%s\n", strings.Join(r.Config.Keys(), ", "))
	types := make([]string, 0, len(r.Processes))
	for t := range r.Processes {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		cmd := r.Processes[t]
		if cmd == platform.ImageCommand {
			cmd = "(the image's ENTRYPOINT and CMD)"
		}
		fmt.Fprintf(tw, "Process %s:\t%s\n", t, cmd)
	}
	return tw.Flush()
}

func (c *Commands) releasesRollback(inv *Invocation) error {
	app := inv.Args[0]
	v, err := platform.ParseVersion(inv.Args[1])
	if err != nil {
		return err
	}
	unlock := c.locks.Lock(app)
	defer unlock()
	rel, err := c.svc.Rollback(inv.ctx, inv.actor, app, v)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Rolling back %s to v%d as v%d\n", app, v, rel.Version)
	if err := c.rolloutIfDeployed(inv, rel); err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> %s is at v%d\n", app, rel.Version)
	return nil
}

func (c *Commands) resourceLimit(inv *Invocation) error {
	app := inv.Args[0]
	vals := map[string]string{}
	for _, n := range limitNames {
		if v := inv.String(n); v != "" {
			vals[n] = v
		}
	}
	pt := inv.String("p")
	if len(vals) == 0 {
		return c.resourceReport(inv)
	}
	change, err := platform.ParseLimitChange(vals)
	if err != nil {
		return err
	}
	p, err := c.svc.SetLimits(inv.ctx, inv.actor, app, pt, change)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> %s %s limits: %s (applied to instances started from now on; ps:restart applies them now)\n", app, p.Type, formatLimits(p.Limits))
	return nil
}

func formatLimits(l platform.Limits) string {
	f := func(v int64, format func(int64) string) string {
		if v == 0 {
			return "unlimited"
		}
		return format(v)
	}
	return fmt.Sprintf("memory=%s cpu=%s pids=%s disk=%s network=%s",
		f(l.MemoryBytes, platform.FormatSize), f(l.CPUMillis, platform.FormatCPU),
		f(l.PIDs, func(v int64) string { return strconv.FormatInt(v, 10) }),
		f(l.DiskBytes, platform.FormatSize), f(l.NetworkBPS, platform.FormatRate))
}

func (c *Commands) resourceReport(inv *Invocation) error {
	app := inv.Args[0]
	procs, err := c.svc.Formation(inv.ctx, inv.actor, app)
	if err != nil {
		return err
	}
	header(inv.env.Stdout, "%s resource limits", app)
	for _, p := range procs {
		fmt.Fprintf(inv.env.Stdout, "%s: %s\n", p.Type, formatLimits(p.Limits))
	}
	if dr, ok := c.deploy.(diskReporter); ok {
		if err := dr.DiskReport(inv.ctx, app, inv.env.Stdout); err != nil {
			return err
		}
	}
	header(inv.env.Stdout, "%s usage", app)
	return c.deploy.Report(inv.ctx, app, inv.env.Stdout)
}

func (c *Commands) runOneOff(inv *Invocation) error {
	app := inv.Args[0]
	if _, err := c.svc.App(inv.ctx, inv.actor, app); err != nil {
		return err
	}
	code, err := c.deploy.RunOneOff(inv.ctx, app, inv.Args[1:], inv.env.Stdin, inv.env.Stdout, inv.env.Stderr, inv.env.Terminal)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError(code)
	}
	return nil
}
