//go:build linux

package builder

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/stacktest"
	"github.com/berthhq/berth/internal/testenv"

	"github.com/berthhq/berth/engine"
	"golang.org/x/sys/unix"
)

// testCacheDir is the per-machine cache shared by runs of the slow tests:
// the debootstrapped Debian tree and a builder store holding the Debian
// base image and the language runtime layers, so `make test` pays for
// debootstrap and apt-get once per machine.
const testCacheDir = "/var/cache/berth-test"

// lockTestCache takes an exclusive lock on the shared cache for the test.
func lockTestCache(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(testCacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(testCacheDir, "builder-store.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

func needDebootstrap(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("debootstrap"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("debootstrap is required under CI (scripts/deps.sh installs it)")
		}
		t.Skip("debootstrap not installed; it makes the Debian base image")
	}
}

// newCachedEnv is a test env whose store is the per-machine cache store;
// images tagged under berth-test/<token> are removed and their layers
// pruned at cleanup, while the Debian base and pinned runtime layers stay.
func newCachedEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	needRoot(t)
	needDebootstrap(t)
	lockTestCache(t)
	token := randHex(8)
	dir := testenv.SearchableTempDir(t)
	s, err := NewStore(filepath.Join(testCacheDir, "builder-store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	eng, _ := stacktest.NewEngine(t, filepath.Join(dir, "containers"), "bb")
	runner := &countingRunner{StepRunner: NewEngineRunner(eng, func(string) (IDRange, error) { return testIDs, nil }, nil)}
	b, err := New(Options{Store: s, Runner: runner, Limits: Limits{MemoryBytes: 1 << 30, CPUQuota: 2, Pids: 1024},
		Debian: DebianOptions{RootfsCache: testCacheDir}})
	if err != nil {
		t.Fatal(err)
	}
	appRef := "berth-test/app-" + token
	t.Cleanup(func() {
		imgs, _ := s.Images()
		for _, img := range imgs {
			if strings.HasPrefix(img.Ref, appRef) {
				_ = s.RemoveImage(img.Ref)
			}
		}
		if _, err := s.Prune(true); err != nil {
			t.Errorf("prune test store: %v", err)
		}
	})
	return &testEnv{dir: dir, store: s, eng: eng, runner: runner, b: b}, appRef
}

// pinRuntime keeps a buildpack's runtime layer (base + apt-get) in the
// cache store for later runs.
func pinRuntime(t *testing.T, te *testEnv, lang string, img *Image) {
	t.Helper()
	pin := &Image{Ref: "berth-test/" + lang + "-runtime:pinned", Layers: img.Layers[:2], Config: img.Config}
	if err := te.store.PutImage(pin); err != nil {
		t.Fatal(err)
	}
}

func TestPythonBuildpackServesHTTP(t *testing.T) {
	te, appRef := newCachedEnv(t)
	token := randHex(8)
	eng := te.eng

	app := t.TempDir()
	writeFiles(t, app, map[string]string{
		"requirements.txt": "# standard library only\n",
		"Procfile":         "web: python3 app.py\n",
		"app.py": fmt.Sprintf(`import http.server, os

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from python %s\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
`, token),
	})
	res, out, err := te.build(t, BuildRequest{App: "py", ContextDir: app, Tag: appRef + ":1"})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Logf("python build: %s, %d RUN steps ran", res.Duration.Round(time.Millisecond), res.RunsExecuted())
	if res.Kind != "buildpack:python" || res.Image.Processes["web"] != "python3 app.py" {
		t.Fatalf("kind %s processes %v", res.Kind, res.Image.Processes)
	}
	if !strings.Contains(out, "python app detected") {
		t.Fatalf("no detection line in output:\n%s", out)
	}
	pinRuntime(t, te, "python", res.Image)

	id := te.startImage(t, res.Image, engine.NetworkBridge, "/bin/sh", "-c", res.Image.Processes["web"])
	ip, err := eng.IP(id)
	if err != nil {
		t.Fatal(err)
	}
	body := httpGetUntil(t, fmt.Sprintf("http://%s:5000/", ip), 90*time.Second)
	if body != "hello from python "+token+"\n" {
		t.Fatalf("app answered %q", body)
	}

	// A second Python app reuses the runtime layer instead of installing
	// it again.
	app2 := t.TempDir()
	writeFiles(t, app2, map[string]string{"requirements.txt": "", "Procfile": "web: python3 -m http.server $PORT\n", "index.html": "x"})
	res2, out, err := te.build(t, BuildRequest{App: "py2", ContextDir: app2, Tag: appRef + ":2"})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	runs := stepsByKind(res2, "RUN")
	if !runs[0].Cached || res2.Image.Layers[1] != res.Image.Layers[1] {
		t.Fatalf("second python app did not share the runtime layer: %+v", runs[0])
	}
}

// httpGetUntil polls url until it answers 200 or ctx's deadline passes
// (a server starting up), and returns the body.
func httpGetUntil(t *testing.T, url string, limit time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	var last error
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(b)
			}
			last = fmt.Errorf("status %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("GET %s never answered: %v", url, last)
	return ""
}

func TestStaticBuildpackServesHTTP(t *testing.T) {
	te, appRef := newCachedEnv(t)
	token := randHex(8)
	app := t.TempDir()
	writeFiles(t, app, map[string]string{
		"index.html": "<h1>static " + token + "</h1>\n",
		"Procfile":   "web: busybox httpd -f -p $PORT -h /app\n",
	})
	res, out, err := te.build(t, BuildRequest{App: "site", ContextDir: app, Tag: appRef + ":1"})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if res.Kind != "buildpack:static" {
		t.Fatalf("kind %s", res.Kind)
	}
	pinRuntime(t, te, "static", res.Image)
	id := te.startImage(t, res.Image, engine.NetworkBridge, "/bin/sh", "-c", res.Image.Processes["web"])
	ip, err := te.eng.IP(id)
	if err != nil {
		t.Fatal(err)
	}
	if body := httpGetUntil(t, fmt.Sprintf("http://%s:5000/index.html", ip), 60*time.Second); body != "<h1>static "+token+"</h1>\n" {
		t.Fatalf("site answered %q", body)
	}
}
