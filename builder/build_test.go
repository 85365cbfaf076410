//go:build linux

package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func (te *testEnv) busybox(t *testing.T) *Image {
	t.Helper()
	busyboxImage(t) // skips or fails clearly without busybox-static
	img, err := te.store.CreateBusyboxBase(context.Background(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func stepsByKind(res *BuildResult, kind string) []StepReport {
	var out []StepReport
	for _, s := range res.Steps {
		if s.Kind == kind {
			out = append(out, s)
		}
	}
	return out
}

const appDockerfile = `FROM busybox
WORKDIR /app
COPY base.txt /app/
RUN cat base.txt > stage1.txt && echo step-one-ran
COPY hello.txt ./
RUN cat hello.txt stage1.txt > out.txt
CMD ["cat", "/app/out.txt"]
`

func TestBuildRunCacheAndRebuild(t *testing.T) {
	te := newTestEnv(t)
	te.busybox(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": appDockerfile, "base.txt": "base\n", "hello.txt": "hello\n"})

	res, out, err := te.build(t, BuildRequest{App: "web", ContextDir: ctx, Tag: "web:v1"})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if res.RunsExecuted() != 2 || te.runner.count() != 2 {
		t.Fatalf("cold build ran %d/%d RUN steps, want 2", res.RunsExecuted(), te.runner.count())
	}
	for _, want := range []string{"Step 1/7 : FROM busybox", "Step 4/7 : RUN cat base.txt", "step-one-ran", "---> layer", "built web:v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	got, code := te.runImage(t, res.Image)
	if code != 0 || got != "hello\nbase\n" {
		t.Fatalf("app printed %q (exit %d)", got, code)
	}
	if res.Image.Config.WorkingDir != "/app" {
		t.Fatalf("WorkingDir = %q", res.Image.Config.WorkingDir)
	}
	// RUN output is owned by image root, not by the build container's host IDs.
	var st unix.Stat_t
	top := te.store.LayerDir(res.Image.Layers[len(res.Image.Layers)-1])
	if err := unix.Lstat(filepath.Join(top, "app/out.txt"), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("out.txt owner %d:%d (%v), want 0:0", st.Uid, st.Gid, err)
	}

	// No change: nothing runs, the same image comes out.
	before := te.runner.count()
	res2, out, err := te.build(t, BuildRequest{App: "web", ContextDir: ctx, Tag: "web:v2"})
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	if res2.RunsExecuted() != 0 || te.runner.count() != before {
		t.Fatalf("no-change rebuild ran %d RUN steps", te.runner.count()-before)
	}
	if res2.Image.ID != res.Image.ID {
		t.Fatalf("no-change rebuild made a different image")
	}

	// Change the second copied file: only the steps from that COPY on run.
	writeFiles(t, ctx, map[string]string{"hello.txt": "changed\n"})
	res3, out, err := te.build(t, BuildRequest{App: "web", ContextDir: ctx, Tag: "web:v3"})
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	var cached []bool
	for _, s := range res3.Steps {
		cached = append(cached, s.Cached)
	}
	want := []bool{true, true, true, true, false, false, false}
	if len(cached) != len(want) {
		t.Fatalf("steps %v", cached)
	}
	for i := range want[:4] {
		if cached[i] != want[i] {
			t.Fatalf("step %d cached=%v; cached flags %v, want %v", i+1, cached[i], cached, want)
		}
	}
	if cached[4] || cached[5] || res3.RunsExecuted() != 1 {
		t.Fatalf("COPY and RUN after the change: cached %v, runs %d", cached, res3.RunsExecuted())
	}
	got, _ = te.runImage(t, res3.Image)
	if got != "changed\nbase\n" {
		t.Fatalf("rebuilt app printed %q", got)
	}
}

func TestTwoAppsShareBaseLayers(t *testing.T) {
	te := newTestEnv(t)
	base := te.busybox(t)
	common := "FROM busybox\nRUN mkdir -p /srv && echo shared > /srv/common\n"
	a, b := t.TempDir(), t.TempDir()
	writeFiles(t, a, map[string]string{"Dockerfile": common + "COPY a.txt /srv/\n", "a.txt": "a"})
	writeFiles(t, b, map[string]string{"Dockerfile": common + "COPY b.txt /srv/\n", "b.txt": "b"})
	ra, out, err := te.build(t, BuildRequest{App: "app-a", ContextDir: a})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	rb, out, err := te.build(t, BuildRequest{App: "app-b", ContextDir: b})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rb.RunsExecuted() != 0 {
		t.Fatalf("second app re-ran the shared RUN step")
	}
	la, lb := ra.Image.Layers, rb.Image.Layers
	if len(la) != 3 || len(lb) != 3 || la[0] != base.Layers[0] || la[0] != lb[0] || la[1] != lb[1] || la[2] == lb[2] {
		t.Fatalf("layers a=%v b=%v", la, lb)
	}
	// Each distinct layer exists once on disk: 1 base + 1 shared RUN + 2 COPY.
	layers, err := te.store.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 4 {
		t.Fatalf("%d layers on disk, want 4", len(layers))
	}
	da, _ := te.store.LayerDirs(ra.Image)
	db, _ := te.store.LayerDirs(rb.Image)
	if inode(t, filepath.Join(da[0], "bin/busybox")) != inode(t, filepath.Join(db[0], "bin/busybox")) {
		t.Fatal("the two apps' base layers are different files")
	}
	refs, err := te.store.LayerRefs()
	if err != nil {
		t.Fatal(err)
	}
	if refs[la[0]] < 3 { // busybox, app-a, app-b
		t.Fatalf("base layer refs = %d", refs[la[0]])
	}
}

func TestWhiteoutsInsideContainer(t *testing.T) {
	te := newTestEnv(t)
	if _, err := te.store.ImportImage(context.Background(), whiteoutImage(t), "wh:1", nil); err != nil {
		t.Fatal(err)
	}
	ctx := t.TempDir()
	// A RUN layer deletes files of its parents too.
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM wh:1\nRUN rm /data/keep && rm -rf /cache && mkdir /cache && echo fresh > /cache/only\n"})
	res, out, err := te.build(t, BuildRequest{App: "wh", ContextDir: ctx})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	top := te.store.LayerDir(res.Image.Layers[len(res.Image.Layers)-1])
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(top, "data/keep"), &st); err != nil || !isWhiteout(&st) {
		t.Fatalf("RUN's deletion of data/keep is not a whiteout in its layer: %v mode %o", err, st.Mode)
	}
	got, code := te.runImage(t, res.Image, "sh", "-c",
		"ls -A /data; echo --; ls -A /cache; test -e /data/secret && echo SECRET-VISIBLE; test -e /cache/old && echo OLD-VISIBLE; true")
	if code != 0 || got != "--\nonly\n" {
		t.Fatalf("container sees %q (exit %d), want only /cache/only", got, code)
	}
	imported, _ := te.store.Image("wh:1")
	got, _ = te.runImage(t, imported, "sh", "-c", "ls -A /data /cache")
	if strings.Contains(got, "secret") || strings.Contains(got, "old") || !strings.Contains(got, "keep") || !strings.Contains(got, "new") {
		t.Fatalf("imported image shows %q", got)
	}
}

func TestMultiStageAndBuildArgs(t *testing.T) {
	te := newTestEnv(t)
	te.busybox(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `ARG BASE=busybox
FROM ${BASE} AS build
RUN echo first > /first.txt
ARG GREETING=hello
RUN echo "$GREETING" > /greeting.txt
FROM busybox
ARG UNUSED
COPY --from=build /greeting.txt /out/greeting.txt
RUN cat /out/greeting.txt > /out/copy.txt
CMD ["cat", "/out/copy.txt"]
`})
	res, out, err := te.build(t, BuildRequest{App: "ms", ContextDir: ctx})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.RunsExecuted() != 3 {
		t.Fatalf("cold build ran %d RUN steps", res.RunsExecuted())
	}
	if got, _ := te.runImage(t, res.Image); got != "hello\n" {
		t.Fatalf("app printed %q", got)
	}
	// The final image has only busybox and its own layers, not the build stage's.
	if len(res.Image.Layers) != 3 {
		t.Fatalf("final image has %d layers, want 3", len(res.Image.Layers))
	}

	tests := []struct {
		name      string
		args      map[string]string
		wantRuns  []bool // per RUN step: ran (not cached)
		wantPrint string
	}{
		{"greeting changes", map[string]string{"GREETING": "bye"}, []bool{false, true, true}, "bye\n"},
		{"same again", map[string]string{"GREETING": "bye"}, []bool{false, false, false}, "bye\n"},
		{"arg of the final stage", map[string]string{"GREETING": "bye", "UNUSED": "x"}, []bool{false, false, true}, "bye\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, out, err := te.build(t, BuildRequest{App: "ms", ContextDir: ctx, BuildArgs: tt.args})
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			runs := stepsByKind(res, "RUN")
			if len(runs) != len(tt.wantRuns) {
				t.Fatalf("%d RUN steps", len(runs))
			}
			for i, r := range runs {
				if r.Cached == tt.wantRuns[i] {
					t.Fatalf("RUN step %d (%s): cached=%v, want ran=%v", i+1, r.Instruction, r.Cached, tt.wantRuns[i])
				}
			}
			if got, _ := te.runImage(t, res.Image); got != tt.wantPrint {
				t.Fatalf("app printed %q", got)
			}
		})
	}

	// --target builds only up to the named stage.
	res, out, err = te.build(t, BuildRequest{App: "ms", ContextDir: ctx, Target: "build", Tag: "ms:build"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got, _ := te.runImage(t, res.Image, "cat", "/greeting.txt"); got != "hello\n" {
		t.Fatalf("target stage has %q", got)
	}
}

func TestFailedStepReportsExitAndTail(t *testing.T) {
	te := newTestEnv(t)
	te.busybox(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\n\nRUN echo preparing; echo boom >&2; exit 3\n"})
	_, out, err := te.build(t, BuildRequest{App: "bad", ContextDir: ctx})
	var se *StepError
	if !errors.As(err, &se) || !errors.Is(err, ErrStepFailed) {
		t.Fatalf("err = %v, want a StepError", err)
	}
	if se.ExitCode != 3 || se.Line != 3 || !strings.Contains(se.Tail, "boom") || !strings.Contains(err.Error(), "line 3") || !strings.Contains(out, "failed after") {
		t.Fatalf("step error %+v", se)
	}
	if !strings.Contains(out, "preparing") {
		t.Fatalf("output not streamed: %q", out)
	}
	if _, err := te.store.Image("bad"); !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("failed build stored an image: %v", err)
	}
}

// signalWriter closes ready when the output contains marker.
type signalWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	ready  chan struct{}
	once   sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.marker) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

func TestBuildCancelLeavesNothing(t *testing.T) {
	te := newTestEnv(t)
	te.busybox(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM busybox\nRUN echo sleeping-now && sleep 600\n"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &signalWriter{marker: "sleeping-now", ready: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := te.b.Build(ctx, BuildRequest{App: "slow", ContextDir: dir, Output: w})
		errc <- err
	}()
	select {
	case <-w.ready:
	case err := <-errc:
		t.Fatalf("build ended before the step ran: %v\n%s", err, w.buf.String())
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	te.checkClean(t)
}

func TestCopyFeatures(t *testing.T) {
	te := newTestEnv(t)
	te.busybox(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		"Dockerfile": `FROM busybox
COPY --chown=nobody:nogroup owned.txt /srv/
COPY --chmod=0600 secret.txt /srv/secret.txt
COPY src/ /srv/src/
COPY *.md /docs/
ADD bundle.tar.gz /opt/
COPY link /srv/link
`,
		".dockerignore": "src/tmp\n**/*.log\n",
		"owned.txt":     "o", "secret.txt": "s",
		"src/main.c": "int main;", "src/tmp/junk": "junk", "src/debug.log": "log",
		"a.md": "a", "b.md": "b",
	})
	if err := os.Symlink("/etc/passwd", filepath.Join(ctx, "link")); err != nil {
		t.Fatal(err)
	}
	writeTarGz(t, filepath.Join(ctx, "bundle.tar.gz"), map[string]string{"pkg/readme": "inside"})

	res, out, err := te.build(t, BuildRequest{App: "cp", ContextDir: ctx})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dirs, _ := te.store.LayerDirs(res.Image)
	m := mergedFS{layers: dirs}
	checks := []struct {
		name     string
		path     string
		uid, gid uint32
		perm     uint32
		exists   bool
	}{
		{"chown by name", "/srv/owned.txt", 65534, 65534, 0o644, true},
		{"chmod", "/srv/secret.txt", 0, 0, 0o600, true},
		{"dir contents", "/srv/src/main.c", 0, 0, 0o644, true},
		{"ignored dir", "/srv/src/tmp", 0, 0, 0, false},
		{"ignored glob", "/srv/src/debug.log", 0, 0, 0, false},
		{"wildcard", "/docs/b.md", 0, 0, 0o644, true},
		{"add extracts", "/opt/pkg/readme", 0, 0, 0o644, true},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			st, _, ok := m.stat(c.path)
			if ok != c.exists {
				t.Fatalf("%s exists=%v", c.path, ok)
			}
			if ok && (st.Uid != c.uid || st.Gid != c.gid || st.Mode&0o7777 != c.perm) {
				t.Fatalf("%s is %d:%d %o", c.path, st.Uid, st.Gid, st.Mode&0o7777)
			}
		})
	}
	// A symlink in the context is copied as a link, not followed.
	st, p, ok := m.stat("/srv/link")
	if !ok || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("link copied as %o", st.Mode)
	}
	if target, _ := os.Readlink(p); target != "/etc/passwd" {
		t.Fatalf("link target %q", target)
	}

	// An excluded or missing source is a clear error naming the line.
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nCOPY debug.log /x\n", "debug.log": "x"})
	_, _, err = te.build(t, BuildRequest{App: "cp", ContextDir: ctx})
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), ".dockerignore") {
		t.Fatalf("err = %v", err)
	}
}

func TestCopyThroughImageSymlinkStaysInLayer(t *testing.T) {
	te := newTestEnv(t)
	te.busybox(t)
	ctx := t.TempDir()
	// /web is a symlink to /srv/www inside the image; COPY to /web/ must land
	// in the image's /srv/www, never the host's.
	writeFiles(t, ctx, map[string]string{
		"Dockerfile": "FROM busybox\nRUN mkdir -p /srv/www && ln -s /srv/www /web && ln -s ../../.. /srv/up\nCOPY f.txt /web/\nCOPY f.txt /srv/up/etc/escaped.txt\n",
		"f.txt":      "f",
	})
	res, out, err := te.build(t, BuildRequest{App: "sym", ContextDir: ctx})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat("/etc/escaped.txt"); err == nil {
		t.Fatal("COPY wrote to the host's /etc")
	}
	dirs, _ := te.store.LayerDirs(res.Image)
	m := mergedFS{layers: dirs}
	if b, ok := m.readFile("/srv/www/f.txt"); !ok || string(b) != "f" {
		t.Fatal("COPY through /web did not land in /srv/www")
	}
	if _, _, ok := m.stat("/etc/escaped.txt"); !ok {
		t.Fatal("COPY through ../../.. did not stay at the image root")
	}
}

func TestUnsupportedInstructionFailsBeforeWork(t *testing.T) {
	te := newTestEnv(t)
	te.busybox(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nRUN echo never\nHEALTHCHECK CMD true\n"})
	_, _, err := te.build(t, BuildRequest{App: "hc", ContextDir: ctx})
	if !errors.Is(err, ErrDockerfile) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("err = %v", err)
	}
	if te.runner.count() != 0 {
		t.Fatal("a step ran before the Dockerfile was rejected")
	}
}

func writeTarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for n, c := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(c)), Uid: 1234}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestContextFilesAreNotFollowedOutside(t *testing.T) {
	te := newTestEnv(t)
	te.busybox(t)
	secret := filepath.Join(t.TempDir(), "secret")
	writeFiles(t, filepath.Dir(secret), map[string]string{"secret": "TOPSECRET line\n"})
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"dockerfile symlink", func(t *testing.T, dir string) {
			if err := os.Symlink(secret, filepath.Join(dir, "Dockerfile")); err != nil {
				t.Fatal(err)
			}
		}},
		{"procfile symlink", func(t *testing.T, dir string) {
			writeFiles(t, dir, map[string]string{"Dockerfile": "FROM busybox\n"})
			if err := os.Symlink(secret, filepath.Join(dir, "Procfile")); err != nil {
				t.Fatal(err)
			}
		}},
		{"copy through symlinked dir", func(t *testing.T, dir string) {
			writeFiles(t, dir, map[string]string{"Dockerfile": "FROM busybox\nCOPY out/* /x/\n"})
			if err := os.Symlink(filepath.Dir(secret), filepath.Join(dir, "out")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			res, _, err := te.build(t, BuildRequest{App: "sym", ContextDir: dir})
			if err == nil {
				dirs, _ := te.store.LayerDirs(res.Image)
				if b, ok := (mergedFS{layers: dirs}).readFile("/x/secret"); ok {
					t.Fatalf("host file copied into the image: %q", b)
				}
				t.Fatal("build through a symlink out of the context succeeded")
			}
			if strings.Contains(err.Error(), "TOPSECRET") {
				t.Fatalf("error leaks the host file: %v", err)
			}
		})
	}
}

func TestRunWritesOnlyItsLayer(t *testing.T) {
	te := newTestEnv(t)
	base := te.busybox(t)
	baseDir := te.store.LayerDir(base.Layers[0])
	passwd, err := os.ReadFile(filepath.Join(baseDir, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nRUN echo intruder:x:0:0::/:/bin/sh >> /etc/passwd && rm /bin/ls\n"})
	res, out, err := te.build(t, BuildRequest{App: "w", ContextDir: ctx})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(baseDir, "etc/passwd")); !bytes.Equal(got, passwd) {
		t.Fatal("RUN changed the shared base layer")
	}
	if _, err := os.Lstat(filepath.Join(baseDir, "bin/ls")); err != nil {
		t.Fatalf("RUN deleted from the shared base layer: %v", err)
	}
	top := te.store.LayerDir(res.Image.Layers[1])
	if got, _ := os.ReadFile(filepath.Join(top, "etc/passwd")); !strings.Contains(string(got), "intruder") {
		t.Fatal("the step's change is not in its own layer")
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(top, "bin/ls"), &st); err != nil || !isWhiteout(&st) {
		t.Fatalf("bin/ls deletion is not a whiteout in the step's layer: %v", err)
	}
}
