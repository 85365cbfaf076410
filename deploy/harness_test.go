package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/stacktest"
	"github.com/berthhq/berth/internal/testenv"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/berthhq/berth/builder"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/pgtest"
	"github.com/berthhq/berth/platform"
	"github.com/berthhq/berth/router"
)

// env is one test's berth: engine, image store, router, store and deployer.
type env struct {
	t      testing.TB
	dir    string
	engCfg engine.Config // reopens the engine as a restarted daemon would
	eng    *engine.Engine
	images *builder.Store
	base   *builder.Image
	rt     *router.Router
	rtAddr string
	pool   *pgxpool.Pool // the test's database, for rows written past platform
	svc    *platform.Service
	d      *Deployer
	cfg    Config
	domain string
}

// newEnv builds a test environment; cfg tweaks the deployer's config.
func newEnv(t testing.TB, tweak func(*Config)) *env {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBusybox(t)
	e := &env{t: t, dir: testenv.SearchableTempDir(t), domain: "berth.test"}
	e.eng, e.engCfg = stacktest.NewEngine(t, filepath.Join(e.dir, "containers"), "bd")
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
	e.pool = pgtest.New(t)
	e.svc = platform.NewWithConfig(e.pool, platform.Config{Domain: e.domain}, nil)
	e.cfg = Config{
		DataDir:         filepath.Join(e.dir, "data"),
		Domain:          e.domain,
		StopTimeout:     5 * time.Second,
		HealthTimeout:   20 * time.Second,
		DrainDelay:      300 * time.Millisecond,
		RestartBackoff:  200 * time.Millisecond,
		LogPollInterval: 50 * time.Millisecond,
		Logger:          testenv.Logger(t),
	}
	if tweak != nil {
		tweak(&e.cfg)
	}
	e.d = e.newDeployer(e.eng)
	return e
}

// newDeployer makes a Deployer over eng, closed at cleanup.
func (e *env) newDeployer(eng *engine.Engine) *Deployer {
	e.t.Helper()
	return e.newDeployerWith(eng, e.rt)
}

func (e *env) newDeployerWith(eng *engine.Engine, rt *router.Router) *Deployer {
	e.t.Helper()
	d, err := New(e.cfg, Deps{Platform: e.svc, Engine: eng, Images: NewBuilderImages(e.images), Router: rt})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { d.Close() })
	return d
}

// image stores an image on the busybox base with a process table.
func (e *env) image(ref string, procs map[string]string) string {
	e.t.Helper()
	img := &builder.Image{Ref: ref, Layers: e.base.Layers, Config: e.base.Config, History: e.base.History, Processes: procs}
	if err := e.images.PutImage(img); err != nil {
		e.t.Fatal(err)
	}
	return img.Ref
}

// webCommand is a busybox httpd that serves "MSG DYNO" at / on $PORT.
func webCommand(msg string) string {
	return fmt.Sprintf(`mkdir -p /tmp/www && echo "%s $DYNO" > /tmp/www/index.html && echo "serving %s on $PORT as $DYNO" && exec httpd -f -p $PORT -h /tmp/www`, msg, msg)
}

// get sends one request for app through the test's router.
func (e *env) get(client *http.Client, app, path string) (int, string, error) {
	return e.getVia(client, e.rtAddr, app, path)
}

// getVia sends one request for app through the router at addr.
func (e *env) getVia(client *http.Client, addr, app, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = app + "." + e.domain
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(b)), err
}

// imageWithFiles stores an image on a fresh busybox base with an extra
// layer holding files (path relative to / → content) and a process table.
func (e *env) imageWithFiles(ref string, procs map[string]string, files map[string]string) string {
	e.t.Helper()
	var entries []layerFile
	for name, body := range files {
		mode := int64(0o644)
		if strings.HasPrefix(name, "app/") {
			mode = 0o755
		}
		entries = append(entries, layerFile{name: name, body: body, mode: mode})
	}
	return e.imageWithLayer(ref, procs, entries)
}

// layerFile is one regular file of a test image's extra layer.
type layerFile struct {
	name, body string
	mode       int64
	uid, gid   int
}

// imageWithLayer stores an image on a fresh busybox base with an extra
// layer holding files and a process table.
func (e *env) imageWithLayer(ref string, procs map[string]string, files []layerFile) string {
	e.t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, Size: int64(len(f.body)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			e.t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		e.t.Fatal(err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		e.t.Fatal(err)
	}
	base, err := builder.BusyboxImage(builder.DefaultBusybox)
	if err != nil {
		e.t.Fatal(err)
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer})
	if err != nil {
		e.t.Fatal(err)
	}
	stored, err := e.images.ImportImage(context.Background(), img, ref, io.Discard)
	if err != nil {
		e.t.Fatalf("import image: %v", err)
	}
	stored.Processes = procs
	if err := e.images.PutImage(stored); err != nil {
		e.t.Fatal(err)
	}
	return stored.Ref
}

var webapp struct {
	once sync.Once
	bin  []byte
	err  error
}

// webappBinary builds testdata/webapp (a static Go web server) once per
// test process and returns the executable's bytes; the build directory is
// removed at once.
func webappBinary(t testing.TB) []byte {
	t.Helper()
	webapp.once.Do(func() {
		dir, err := os.MkdirTemp("", "berth-deploy-webapp-")
		if err != nil {
			webapp.err = err
			return
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "webapp")
		cmd := exec.Command("go", "build", "-o", path, "./testdata/webapp")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			webapp.err = fmt.Errorf("build webapp: %v\n%s", err, out)
			return
		}
		webapp.bin, webapp.err = os.ReadFile(path)
	})
	if webapp.err != nil {
		t.Fatal(webapp.err)
	}
	return webapp.bin
}

// goWebImage stores an image holding the Go web app as /app/webapp, whose
// web process answers "$MSG $DYNO".
func (e *env) goWebImage(ref string) string {
	e.t.Helper()
	b := webappBinary(e.t)
	return e.imageWithFiles(ref, map[string]string{"web": "exec /app/webapp"}, map[string]string{"app/webapp": string(b)})
}

// createApp creates an app in platform.
func (e *env) createApp(name string) {
	e.t.Helper()
	if _, err := e.svc.CreateApp(context.Background(), platform.System(), name); err != nil {
		e.t.Fatalf("create app: %v", err)
	}
}

// release sets config vars (when given) and makes a release of the image
// stored under ref with the image's process table, as a push does.
func (e *env) release(app, ref string, cfg map[string]string) platform.Release {
	e.t.Helper()
	ctx := context.Background()
	if len(cfg) > 0 {
		if _, err := e.svc.SetConfig(ctx, platform.System(), app, cfg); err != nil {
			e.t.Fatalf("set config: %v", err)
		}
	}
	img, err := e.images.Image(ref)
	if err != nil {
		e.t.Fatal(err)
	}
	procs := img.Processes
	if len(procs) == 0 {
		procs = map[string]string{"web": strings.Join(img.Config.Cmd, " ")}
	}
	rel, err := e.svc.CreateRelease(ctx, platform.System(), app, platform.ReleaseSpec{Image: img.Ref, Processes: procs, Description: "Deploy " + ref})
	if err != nil {
		e.t.Fatalf("create release: %v", err)
	}
	return rel
}

// scale sets quantities in platform's formation.
func (e *env) scale(app string, q map[string]int) {
	e.t.Helper()
	if _, err := e.svc.Scale(context.Background(), platform.System(), app, q); err != nil {
		e.t.Fatalf("scale: %v", err)
	}
}
