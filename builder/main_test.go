//go:build linux

package builder

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/stacktest"
	"github.com/berthhq/berth/internal/testenv"
)

func TestMain(m *testing.M) {
	// The engine re-executes the test binary as container init.
	engine.MaybeInit()
	os.Exit(m.Run())
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testIDs is the host ID range of the tests' build and app containers.
var testIDs = IDRange{HostUID: 300000, HostGID: 300000, Size: 65536}

// countingRunner counts the RUN steps that reach the engine.
type countingRunner struct {
	StepRunner
	mu sync.Mutex
	n  int
}

func (c *countingRunner) RunStep(ctx context.Context, spec StepSpec) (StepResult, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.StepRunner.RunStep(ctx, spec)
}

func (c *countingRunner) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// testEnv is a store, an engine on a private bridge, and a builder.
type testEnv struct {
	dir    string
	store  *Store
	eng    *engine.Engine
	runner *countingRunner
	b      *Builder
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	needRoot(t)
	dir := testenv.SearchableTempDir(t)
	return newTestEnvAt(t, dir)
}

func newTestEnvAt(t *testing.T, dir string) *testEnv {
	t.Helper()
	s, err := NewStore(filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	eng, _ := stacktest.NewEngine(t, filepath.Join(dir, "containers"), "bb")
	r := &countingRunner{StepRunner: NewEngineRunner(eng, func(string) (IDRange, error) { return testIDs, nil }, nil)}
	b, err := New(Options{Store: s, Runner: r, Limits: Limits{MemoryBytes: 512 << 20, CPUQuota: 1, Pids: 512}})
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{dir: dir, store: s, eng: eng, runner: r, b: b}
}

// writeFiles writes name → content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for n, c := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// build runs a build and checks that it left no container, mount or
// temporary layer behind.
func (te *testEnv) build(t *testing.T, req BuildRequest) (*BuildResult, string, error) {
	t.Helper()
	var out bytes.Buffer
	req.Output = &out
	res, err := te.b.Build(context.Background(), req)
	te.checkClean(t)
	return res, out.String(), err
}

func (te *testEnv) checkClean(t *testing.T) {
	t.Helper()
	infos, err := te.eng.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.Labels["berth.role"] == "build" {
			t.Errorf("build container %s left after the build", in.ID)
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), te.dir) {
		t.Errorf("mounts left under %s:\n%s", te.dir, mi)
	}
	ents, err := os.ReadDir(te.store.tmpDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%d temporary layers left", len(ents))
	}
}

// runImage runs img's Entrypoint+Cmd (or args) in the engine and returns
// its output and exit code.
func (te *testEnv) runImage(t *testing.T, img *Image, args ...string) (string, int) {
	t.Helper()
	id := te.startImage(t, img, engine.NetworkNone, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := te.eng.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	var b strings.Builder
	if err := te.eng.Logs(context.Background(), id, false, func(le engine.LogEntry) error {
		b.WriteString(le.Text)
		if !le.Partial {
			b.WriteByte('\n')
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := te.eng.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	return b.String(), st.Code
}

func (te *testEnv) startImage(t *testing.T, img *Image, net engine.NetworkMode, args ...string) string {
	t.Helper()
	dirs, err := te.store.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(args) == 0 {
		args = append(append([]string{}, img.Config.Entrypoint...), img.Config.Cmd...)
	}
	id, err := te.eng.Create(context.Background(), engine.Spec{
		Layers:  dirs,
		Process: engine.Process{Args: args, Env: img.Config.Env, Cwd: img.Config.WorkingDir},
		Network: engine.Network{Mode: net},
		IDMap:   engine.IDMap{HostUID: testIDs.HostUID, HostGID: testIDs.HostGID},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := te.eng.Delete(context.Background(), id); err != nil && !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("delete container: %v", err)
		}
	})
	if err := te.eng.Start(context.Background(), id); err != nil {
		t.Fatalf("start: %v", err)
	}
	return id
}
