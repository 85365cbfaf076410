package deploy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/platform"
	"github.com/berthhq/berth/router"
)

// Container labels that mark berth's app and one-off containers, so that a
// restarted daemon finds them again with engine.List.
const (
	labelRole     = "berth.role"
	labelApp      = "berth.app"
	labelType     = "berth.type"
	labelInstance = "berth.instance"
	labelRelease  = "berth.release"
	labelPort     = "berth.port"
	labelLog      = "berth.log"

	roleApp = "app"
	roleRun = "run"
)

// Deps are the subsystems a Deployer drives.
type Deps struct {
	// Platform is the desired state (apps, releases, formation, domains)
	// and receives the container records.
	Platform *platform.Service
	// Engine runs the containers.
	Engine *engine.Engine
	// Images resolves release images (see NewBuilderImages).
	Images ImageSource
	// Router receives the routing table on every change.
	Router *router.Router
}

// Deployer keeps every app's containers in line with its deployed release
// and formation: it rolls releases out, scales, restarts crashed
// instances, reconciles after a daemon restart and owns the routing table.
type Deployer struct {
	cfg    Config
	log    *slog.Logger
	svc    *platform.Service
	st     store
	eng    *engine.Engine
	images ImageSource
	rt     *router.Router
	client *http.Client

	// ctx lives until Close; instance watchers and delayed restarts use it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // guards apps, every appRun's state fields, certs, closed
	apps   map[string]*appRun
	certs  map[string]appCert // uploaded certificates by hostname
	closed bool

	runs runState

	tableMu sync.Mutex // serialises building and setting the routing table
	// leftOut holds the custom domains the last table left out, so each
	// is logged once, not at every build. Guarded by tableMu.
	leftOut map[hostClaim]string
	logMu   sync.Mutex // serialises berth.log writes and rotation
}

// appRun is the live state of one app.
type appRun struct {
	name string
	// op is held for a whole operation on the app (rollout, scale,
	// restart, stop), so two never interleave.
	op sync.Mutex

	// Guarded by Deployer.mu.
	info      appInfo
	rel       *releaseSpec // the deployed release; nil before the first
	img       *Image
	formation map[string]processFormation
	stopped   bool
	insts     map[string]*instance // by engine ID
	slots     map[string]*slot     // by "type.N"
}

// slot is the crash history of one "type.N".
type slot struct {
	restarts    int // crash restarts since the last rollout
	consecutive int // crashes without RestartReset of uptime in between
	lastExit    string
	lastExitAt  time.Time
	nextRestart time.Time
	timer       *time.Timer
	exitedID    string // engine ID of the crashed container whose record is kept
}

// instance states.
const (
	stateStarting = "starting" // started, not yet checked and committed
	stateUp       = "up"
	stateStopping = "stopping"
)

// instance is one running container of an app.
type instance struct {
	id      string
	logID   string // names the log file; see containerLogPath
	typ     string
	num     int
	release int
	ip      string
	port    int
	pid     int
	started time.Time
	env     []string
	uid     uint32
	gid     uint32
	groups  []uint32 // supplementary, for exec'd checks
	cwd     string

	// Guarded by Deployer.mu.
	state  string
	routed bool

	done chan struct{}      // closed once the container exited
	exit *engine.ExitStatus // set before done is closed
}

func (in *instance) proc() string { return fmt.Sprintf("%s.%d", in.typ, in.num) }
func (in *instance) addr() string { return fmt.Sprintf("%s:%d", in.ip, in.port) }

// exited reports the exit when the container has ended.
func (in *instance) exited() (*engine.ExitStatus, bool) {
	select {
	case <-in.done:
		return in.exit, true
	default:
		return nil, false
	}
}

// New returns a Deployer. Call Start to reconcile and run its loops.
func New(cfg Config, deps Deps) (*Deployer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if deps.Platform == nil || deps.Engine == nil || deps.Images == nil || deps.Router == nil {
		return nil, fmt.Errorf("new deployer: Deps needs Platform, Engine, Images and Router")
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Deployer{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "deploy"),
		svc:    deps.Platform,
		st:     platformStore{svc: deps.Platform},
		eng:    deps.Engine,
		images: deps.Images,
		rt:     deps.Router,
		ctx:    ctx,
		cancel: cancel,
		apps:   map[string]*appRun{},
		client: &http.Client{
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	return d, nil
}

// Start removes what interrupted engine operations left behind, reconciles
// the containers the engine still runs with the desired state in platform,
// publishes the routing table, and then keeps running the maintenance loop
// (log rotation) until ctx ends or Close is called. Crash restarts run from
// the first instance on, also before Start. An app that cannot be
// reconciled (its image is gone, say) is logged and left as it is; Start
// fails only when it cannot list containers or apps.
func (d *Deployer) Start(ctx context.Context) error {
	// Leftovers of creates and deletes a dead daemon did not finish.
	if err := d.eng.GC(ctx); err != nil {
		d.log.Warn("engine gc", "err", err)
	}
	if _, err := d.reconcile(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go d.maintain(ctx)
	return nil
}

// maintain rotates logs on a ticker until ctx or the deployer ends.
func (d *Deployer) maintain(ctx context.Context) {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.MaintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.safely("rotate logs", func() { d.rotateLogs(d.liveIDs()) })
		}
	}
}

// safely runs fn and logs a panic instead of taking the daemon down.
func (d *Deployer) safely(what string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("panic in background work", "work", what, "panic", r)
		}
	}()
	fn()
}

// liveIDs returns the log IDs of every instance the deployer runs.
func (d *Deployer) liveIDs() map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := map[string]bool{}
	for _, a := range d.apps {
		for _, in := range a.insts {
			ids[in.logID] = true
		}
	}
	return ids
}

// Close stops the background loops and pending restarts and waits for them.
// Containers keep running: a new Deployer re-adopts them.
func (d *Deployer) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	for _, a := range d.apps {
		for _, s := range a.slots {
			if s.timer != nil {
				s.timer.Stop()
			}
		}
	}
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	return nil
}

// goBackground runs fn on a goroutine the deployer waits for at Close; it
// returns false (and does not run fn) once the deployer is closed.
func (d *Deployer) goBackground(what string, fn func()) bool {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		d.safely(what, fn)
	}()
	return true
}

// newLogID returns a random 16-hex-digit name for a container's log file.
func newLogID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var appNameRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,29}$`)

func validAppName(app string) error {
	if !appNameRe.MatchString(app) {
		return fmt.Errorf("app name %q is not valid (lower-case letters, digits and -, starting with a letter)", app)
	}
	return nil
}

// app returns the live state of an app, making it on first use.
func (d *Deployer) app(name string) (*appRun, error) {
	if err := validAppName(name); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	a := d.apps[name]
	if a == nil {
		a = &appRun{name: name, insts: map[string]*instance{}, slots: map[string]*slot{}}
		d.apps[name] = a
	}
	return a, nil
}

// refresh reloads an app's record, formation and stopped flag, and (when
// the deployer has none yet) its deployed release. It runs under a.op.
func (d *Deployer) refresh(ctx context.Context, a *appRun) error {
	info, err := d.st.App(ctx, a.name)
	if err != nil {
		return fmt.Errorf("load app %s: %w", a.name, err)
	}
	form, err := d.st.Formation(ctx, a.name)
	if err != nil {
		return fmt.Errorf("load formation of %s: %w", a.name, err)
	}
	stopped, err := d.st.AppStopped(ctx, a.name)
	if err != nil {
		return fmt.Errorf("load app %s: %w", a.name, err)
	}
	d.mu.Lock()
	hasRel := a.rel != nil
	d.mu.Unlock()
	var rel *releaseSpec
	var img *Image
	if !hasRel {
		v, ok, err := d.st.DeployedRelease(ctx, a.name)
		if err != nil {
			return fmt.Errorf("load deployed release of %s: %w", a.name, err)
		}
		if ok {
			r, err := d.st.Release(ctx, a.name, v)
			if err != nil {
				return fmt.Errorf("load release v%d of %s: %w", v, a.name, err)
			}
			if img, err = d.resolve(ctx, r); err != nil {
				return err
			}
			rel = &r
		}
	}
	d.mu.Lock()
	a.info, a.formation, a.stopped = info, form, stopped
	if rel != nil && a.rel == nil {
		a.rel, a.img = rel, img
	}
	d.mu.Unlock()
	return nil
}

func (d *Deployer) resolve(ctx context.Context, r releaseSpec) (*Image, error) {
	if r.Image == "" {
		return nil, fmt.Errorf("release v%d: %w (push code first)", r.Version, ErrNoImage)
	}
	img, err := d.images.Resolve(ctx, r.Image)
	if err != nil {
		return nil, fmt.Errorf("release v%d: %w", r.Version, err)
	}
	return img, nil
}

// processTypes returns the process types of a release and their commands:
// the release's table, else the image's Procfile, else "web" running the
// image's entrypoint and command.
func processTypes(rel *releaseSpec, img *Image) map[string]string {
	if len(rel.Processes) > 0 {
		return rel.Processes
	}
	if len(img.Processes) > 0 {
		return img.Processes
	}
	return map[string]string{"web": ""}
}

// desired returns the wanted quantity of every process type of the
// deployed release: the formation's, or 1 web and 0 others when the
// formation does not mention a type. Caller holds d.mu.
func (a *appRun) desired() map[string]int {
	want := map[string]int{}
	if a.rel == nil || a.stopped {
		return want
	}
	for typ := range processTypes(a.rel, a.img) {
		f, ok := a.formation[typ]
		switch {
		case ok:
			want[typ] = f.Quantity
		case typ == "web":
			want[typ] = 1
		}
	}
	return want
}

func itoa(n int) string { return strconv.Itoa(n) }

// sortedTypes returns the keys of m, "web" first.
func sortedTypes[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i] == "web") != (out[j] == "web") {
			return out[i] == "web"
		}
		return out[i] < out[j]
	})
	return out
}

// publishTable builds the routing table from every app's routed web
// instances and hands it to the router.
func (d *Deployer) publishTable() {
	d.tableMu.Lock()
	defer d.tableMu.Unlock()
	t := &router.Table{Apps: map[string]*router.App{}, Certs: map[string]*tls.Certificate{}}
	custom := map[string][]string{}
	d.mu.Lock()
	for name, a := range d.apps {
		if a.rel == nil && len(a.insts) == 0 {
			continue
		}
		ra := &router.App{Name: name}
		for _, in := range a.insts {
			if in.routed {
				ra.Backends = append(ra.Backends, router.Backend{ID: in.proc() + "/" + in.id, Addr: in.addr()})
			}
		}
		sort.Slice(ra.Backends, func(i, j int) bool { return ra.Backends[i].ID < ra.Backends[j].ID })
		t.Apps[name] = ra
		custom[name] = a.info.Domains
	}
	var leftOut map[hostClaim]string
	t.Hosts, leftOut = hostTable(d.cfg.Domain, custom)
	for h, c := range d.certs {
		// A certificate is served only for a host routed to the app that
		// uploaded it, so a stale one (its domain removed, or routed
		// elsewhere) never answers for another app's host.
		if c.app == "" || t.Hosts[h] == c.app {
			t.Certs[h] = c.cert
		}
	}
	d.mu.Unlock()
	for c, why := range leftOut {
		if _, logged := d.leftOut[c]; !logged {
			d.log.Warn("custom domain left out of the routing table; remove it (domains:remove)", "app", c.app, "hostname", c.host, "reason", why)
		}
	}
	d.leftOut = leftOut
	d.rt.SetTable(t)
}

// hostClaim is an app's claim to a custom domain.
type hostClaim struct{ host, app string }

// hostTable maps hostnames to apps, given the global domain and every
// routed app's custom domains. An app's default name APP.<domain> always
// goes to APP. Custom domains equal to or under the global domain are left
// out, whoever claims them: platform refuses them, and rows written before
// it did (or past it) must not hand one tenant another's default hostname
// or names under it. A custom domain that two apps claim (stale domains
// between refreshes; the database keeps hostnames unique) goes to the first
// app by name, so it cannot flip between apps from one build to the next.
// leftOut says why each claim that lost was left out.
func hostTable(domain string, custom map[string][]string) (hosts map[string]string, leftOut map[hostClaim]string) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	names := make([]string, 0, len(custom))
	for name := range custom {
		names = append(names, name)
	}
	sort.Strings(names)
	hosts = make(map[string]string, len(names))
	leftOut = map[hostClaim]string{}
	for _, name := range names {
		hosts[name+"."+domain] = name
	}
	for _, name := range names {
		for _, h := range custom[name] {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			switch owner, taken := hosts[h]; {
			case h == domain || strings.HasSuffix(h, "."+domain):
				leftOut[hostClaim{h, name}] = "it is the global domain or under it, where apps have their default hostnames"
			case taken && owner != name:
				leftOut[hostClaim{h, name}] = "app " + owner + " has it"
			default:
				hosts[h] = name
			}
		}
	}
	return hosts, leftOut
}

// appCert is an uploaded certificate and the app it belongs to ("" for
// none).
type appCert struct {
	app  string
	cert *tls.Certificate
}

// loadCerts reads the uploaded certificates from platform; a pair that no
// longer parses is logged and left out.
func (d *Deployer) loadCerts(ctx context.Context) error {
	certs, err := d.svc.AllCerts(ctx)
	if err != nil {
		return fmt.Errorf("load certificates: %w", err)
	}
	m := make(map[string]appCert, len(certs))
	for _, c := range certs {
		pair, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM))
		if err != nil {
			d.log.Warn("certificate does not load; leaving it out", "hostname", c.Hostname, "app", c.App, "err", err)
			continue
		}
		m[strings.ToLower(c.Hostname)] = appCert{app: c.App, cert: &pair}
	}
	d.mu.Lock()
	d.certs = m
	d.mu.Unlock()
	return nil
}

// RefreshRoutes reloads every known app's domains and the uploaded
// certificates from platform and publishes the routing table; the command
// layer calls it after domains:add, domains:remove and certs changes.
func (d *Deployer) RefreshRoutes(ctx context.Context) error {
	if err := d.loadCerts(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	names := make([]string, 0, len(d.apps))
	for n := range d.apps {
		names = append(names, n)
	}
	d.mu.Unlock()
	for _, n := range names {
		info, err := d.st.App(ctx, n)
		if err != nil {
			continue // destroyed meanwhile
		}
		d.mu.Lock()
		if a := d.apps[n]; a != nil {
			a.info = info
		}
		d.mu.Unlock()
	}
	d.publishTable()
	return nil
}
