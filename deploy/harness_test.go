package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berthhq/berth/builder"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/pgtest"
	"github.com/berthhq/berth/platform"
	"github.com/berthhq/berth/router"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// requireRoot skips without root, except under CI where it fails.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("deploy tests need root (real containers); CI=true does not allow skipping")
		}
		t.Skip("deploy tests need root: they run real containers (namespaces, cgroups, veth)")
	}
	if _, err := os.Stat(builder.DefaultBusybox); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("deploy tests need busybox-static (scripts/deps.sh test installs it)")
		}
		t.Skip("deploy tests need Debian's busybox-static at /bin/busybox (scripts/deps.sh test installs it)")
	}
}

// searchableTempDir is a t.TempDir whose parents a container's init,
// running as an unprivileged host UID, can traverse.
func searchableTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// freeSubnet returns a random 10.x.y.0/24 that no host route uses, by
// letting engine.New check it.
func freeNetwork(t testing.TB, root string) (bridge, subnet string, eng *engine.Engine) {
	t.Helper()
	bridge = "bd" + randHex(4)
	var err error
	for i := 0; i < 30; i++ {
		a, _ := rand.Int(rand.Reader, big.NewInt(200))
		b, _ := rand.Int(rand.Reader, big.NewInt(256))
		subnet = fmt.Sprintf("10.%d.%d.0/24", 20+a.Int64(), b.Int64())
		eng, err = engine.New(engine.Config{Root: root, BridgeName: bridge, Subnet: subnet, Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			return bridge, subnet, eng
		}
	}
	t.Fatalf("new engine: %v", err)
	return "", "", nil
}

// env is one test's berth: engine, image store, router, store and deployer.
type env struct {
	t      testing.TB
	dir    string
	root   string // engine root
	bridge string
	subnet string
	eng    *engine.Engine
	images *builder.Store
	base   *builder.Image
	rt     *router.Router
	rtAddr string
	svc    *platform.Service
	d      *Deployer
	cfg    Config
	domain string
}

// newEnv builds a test environment; cfg tweaks the deployer's config.
func newEnv(t testing.TB, tweak func(*Config)) *env {
	t.Helper()
	requireRoot(t)
	e := &env{t: t, dir: searchableTempDir(t), domain: "berth.test"}
	e.root = filepath.Join(e.dir, "containers")
	e.bridge, e.subnet, e.eng = freeNetwork(t, e.root)
	t.Cleanup(func() {
		ctx := context.Background()
		// Every engine over this root sees the same containers.
		infos, err := e.eng.List()
		if err != nil {
			t.Errorf("list containers: %v", err)
		}
		for _, in := range infos {
			if err := e.eng.Delete(ctx, in.ID); err != nil && !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("delete container %s: %v", in.ID, err)
			}
		}
		if err := e.eng.GC(ctx); err != nil {
			t.Errorf("engine gc: %v", err)
		}
		if err := e.eng.RemoveNetwork(); err != nil {
			t.Errorf("remove network: %v", err)
		}
	})
	var err error
	e.images, err = builder.NewStore(filepath.Join(e.dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.base, err = e.images.CreateBusyboxBase(context.Background(), "", "busybox:latest", io.Discard)
	if err != nil {
		t.Fatalf("create busybox base: %v", err)
	}
	e.rt, e.rtAddr = newTestRouter(t)
	e.svc = platform.New(pgtest.New(t), nil)
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

// newTestRouter serves a router on a loopback port until the test ends.
func newTestRouter(t testing.TB) (*router.Router, string) {
	t.Helper()
	rt, err := router.New(router.Config{HTTPAddr: "127.0.0.1:0", FailTimeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- rt.ServeListeners(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	return rt, ln.Addr().String()
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
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		mode := int64(0o644)
		if strings.HasPrefix(name, "app/") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: time.Unix(0, 0)}); err != nil {
			e.t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
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
