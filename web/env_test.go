package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/builder"
	"github.com/berthhq/berth/deploy"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/pgtest"
	"github.com/berthhq/berth/internal/stacktest"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/platform"
	"github.com/berthhq/berth/router"
)

func TestMain(m *testing.M) {
	// The engine re-executes the test binary as the containers' init.
	engine.MaybeInit()
	pgtest.Main(m)
}

const testPassword = "correct horse battery"

// env is one test's berth: Postgres, engine, image store, router, deployer
// and the web server on a loopback port.
type env struct {
	t      testing.TB
	dir    string
	eng    *engine.Engine
	images *builder.Store
	base   *builder.Image
	rt     *router.Router
	rtAddr string
	svc    *platform.Service
	dep    *deploy.Deployer
	srv    *Server
	url    string // the dashboard's base URL
	domain string

	mu        sync.Mutex
	destroyed []string // apps the AppDestroyed hook saw
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newEnv builds the whole stack for one test; cfg tweaks the web config.
func newEnv(t testing.TB, tweak func(*Config)) *env {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBusybox(t)
	e := &env{t: t, domain: "berth.test"}
	e.dir = testenv.SearchableTempDir(t)
	e.eng, _ = stacktest.NewEngine(t, filepath.Join(e.dir, "containers"), "bw")
	var err error
	e.images, err = builder.NewStore(filepath.Join(e.dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.base, err = e.images.CreateBusyboxBase(context.Background(), "", "busybox:latest", io.Discard)
	if err != nil {
		t.Fatalf("create busybox base: %v", err)
	}
	e.rt, e.rtAddr = stacktest.ServeRouter(t)
	e.svc = platform.New(pgtest.New(t), nil)
	e.dep, err = deploy.New(deploy.Config{
		DataDir: filepath.Join(e.dir, "data"), Domain: e.domain,
		StopTimeout: 5 * time.Second, HealthTimeout: 20 * time.Second, DrainDelay: 100 * time.Millisecond,
		RestartBackoff: 200 * time.Millisecond, LogPollInterval: 50 * time.Millisecond, Logger: testenv.Logger(t),
	}, deploy.Deps{Platform: e.svc, Engine: e.eng, Images: deploy.NewBuilderImages(e.images), Router: e.rt})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		if err := e.dep.Close(); err != nil {
			t.Errorf("close deployer: %v", err)
		}
	})
	if err := e.dep.Start(ctx); err != nil {
		t.Fatalf("start deployer: %v", err)
	}
	cfg := Config{Addr: "127.0.0.1:0", Domain: e.domain, Version: "test"}
	if tweak != nil {
		tweak(&cfg)
	}
	e.srv, err = New(cfg, Deps{Platform: e.svc, Deployer: e.dep, AppDestroyed: func(app string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.destroyed = append(e.destroyed, app)
	}}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.srv.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return e
}

// webCommand is the busybox web process: it serves a page on $PORT and,
// with -vv, logs every request's URL to stderr, which gives the tests a
// way to make the app write a log line of their choosing.
const webCommand = `mkdir -p /tmp/www && echo "hello from $DYNO" > /tmp/www/index.html && echo "serving $DYNO on $PORT" && exec httpd -f -vv -p $PORT -h /tmp/www`

// user creates a user with the test password.
func (e *env) user(name string, role platform.Role) platform.Actor {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.svc.CreateUser(ctx, platform.System(), name, role)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.svc.SetPassword(ctx, platform.System(), name, testPassword); err != nil {
		e.t.Fatal(err)
	}
	return u.Actor()
}

// push deploys the busybox web app to app as a git push does: an image in
// the store, a release in platform, a deploy record with its build log,
// and the rollout of real containers.
func (e *env) push(actor platform.Actor, app string) platform.Release {
	e.t.Helper()
	ctx := context.Background()
	ref := "berth/" + app + ":" + randHex(4)
	img := &builder.Image{Ref: ref, Layers: e.base.Layers, Config: e.base.Config, History: e.base.History,
		Processes: map[string]string{"web": webCommand}}
	if err := e.images.PutImage(img); err != nil {
		e.t.Fatal(err)
	}
	logPath := filepath.Join(e.dir, "build-"+randHex(4)+".log")
	if err := os.WriteFile(logPath, []byte("-----> Building "+app+"\n-----> Using the busybox base\n-----> Done: "+ref+"\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
	d, err := e.svc.StartDeploy(ctx, actor, app, "0123456789abcdef0123456789abcdef01234567", logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	rel, err := e.svc.CreateRelease(ctx, actor, app, platform.ReleaseSpec{Image: ref, Processes: img.Processes, Description: "Deploy 0123456"})
	if err != nil {
		e.t.Fatalf("create release: %v", err)
	}
	if err := e.dep.Rollout(ctx, app, rel, io.Discard); err != nil {
		e.t.Fatalf("rollout: %v", err)
	}
	if _, err := e.svc.SetDeployStatus(ctx, d.ID, platform.DeploySucceeded, "", rel.Version); err != nil {
		e.t.Fatal(err)
	}
	return rel
}

// appRequest sends a request for app through the router, as its users do.
// The path goes on the wire as given, so it may hold characters a browser
// would escape.
func (e *env) appRequest(app, path string) error {
	conn, err := net.DialTimeout("tcp", e.rtAddr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s.%s\r\nConnection: close\r\n\r\n", path, app, e.domain); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, conn)
	return err
}

// client is a browser-like HTTP client with its own cookie jar that does
// not follow redirects, so tests see them.
type client struct {
	t    testing.TB
	e    *env
	http *http.Client
}

func (e *env) client() *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return &client{t: e.t, e: e, http: &http.Client{Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// get fetches a page and returns status, Location and body.
func (c *client) get(path string) (int, string, string) {
	c.t.Helper()
	resp, err := c.http.Get(c.e.url + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// post submits a form as is (no CSRF token added).
func (c *client) post(path string, form url.Values) (int, string, string) {
	c.t.Helper()
	resp, err := c.http.PostForm(c.e.url+path, form)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// postHeader submits a form as is, with extra request headers.
func (c *client) postHeader(path string, form url.Values, header http.Header) (int, string, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.e.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// cookie returns the value of the client's cookie name for path, or "".
func (c *client) cookie(path, name string) string {
	c.t.Helper()
	u, err := url.Parse(c.e.url + path)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

var csrfRe = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

// token fetches a page and returns the CSRF token in its forms.
func (c *client) token(path string) string {
	c.t.Helper()
	status, _, body := c.get(path)
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("GET %s: %d, no CSRF token in the page", path, status)
	}
	return m[1]
}

// submit posts a form with the CSRF token of the page it is on.
func (c *client) submit(pagePath, action string, form url.Values) (int, string, string) {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("_csrf", c.token(pagePath))
	return c.post(action, form)
}

// login signs in and fails the test unless it works.
func (c *client) login(user string) {
	c.t.Helper()
	status, loc, body := c.submit("/login", "/login", url.Values{"user": {user}, "password": {testPassword}})
	if status != http.StatusSeeOther || loc != "/apps" {
		c.t.Fatalf("login as %s: %d %q\n%s", user, status, loc, body)
	}
}
