//go:build linux

package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// newTestStore makes a store in a fresh temporary data directory.
func newTestStore(t *testing.T) *Store {
	t.Helper()
	needRoot(t)
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// needRoot skips without root outside CI; under CI=true it fails, since
// CI runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("builder tests need root (mknod, chown, trusted xattrs) and CI runs as root")
		}
		t.Skip("builder tests need root: layers hold device whiteouts, other owners and trusted.overlay xattrs")
	}
}

// busyboxImage returns the busybox-static image, skipping (failing under
// CI) when the package is missing.
func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := BusyboxImage(DefaultBusybox)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("busybox-static is required under CI (scripts/deps.sh installs it): %v", err)
		}
		t.Skipf("busybox-static not installed: %v", err)
	}
	return img
}

// tarLayer makes a layer from tar entries; body is used for regular files.
func tarLayer(t *testing.T, entries ...tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Linkname) // the test's file content rides in Linkname
			h.Linkname = ""
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestImportBusyboxSharesLayers(t *testing.T) {
	s := newTestStore(t)
	img := busyboxImage(t)
	ctx := context.Background()
	a, err := s.ImportImage(ctx, img, "busybox", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Ref != "busybox:latest" || len(a.Layers) != 1 {
		t.Fatalf("imported %+v", a)
	}
	b, err := s.ImportImage(ctx, img, "other/busybox:v2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Layers[0] != b.Layers[0] {
		t.Fatalf("same content imported as two layers: %s %s", a.Layers[0], b.Layers[0])
	}
	ls, err := s.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 {
		t.Fatalf("%d layers on disk, want 1", len(ls))
	}
	dir := s.LayerDir(a.Layers[0])
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "bin/busybox"), &st); err != nil || st.Mode&0o111 == 0 {
		t.Fatalf("bin/busybox in layer: %v mode %o", err, st.Mode)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "/bin/busybox" {
		t.Fatalf("bin/sh -> %q, %v", target, err)
	}
	if got := a.Config.Cmd; len(got) != 1 || got[0] != "sh" {
		t.Fatalf("Cmd = %v", got)
	}
	refs, err := s.LayerRefs()
	if err != nil {
		t.Fatal(err)
	}
	if refs[a.Layers[0]] != 2 {
		t.Fatalf("refs = %d, want 2", refs[a.Layers[0]])
	}

	imgs, err := s.Images()
	if err != nil || len(imgs) != 2 {
		t.Fatalf("Images() = %d, %v", len(imgs), err)
	}
	if err := s.RemoveImage("busybox"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image("busybox"); !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("removed image still there: %v", err)
	}
	rep, err := s.Prune(true)
	if err != nil || len(rep.Layers) != 0 {
		t.Fatalf("prune removed %v (%v) while another image uses the layer", rep.Layers, err)
	}
	if err := s.RemoveImage("other/busybox:v2"); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Prune(true)
	if err != nil || len(rep.Layers) != 1 {
		t.Fatalf("prune removed %v, %v; want the unreferenced layer", rep.Layers, err)
	}
	if s.HasLayer(a.Layers[0]) {
		t.Fatal("layer still stored after prune")
	}
}

func TestImportOCILayoutAndDockerArchive(t *testing.T) {
	s := newTestStore(t)
	img := busyboxImage(t)
	ctx := context.Background()

	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})); err != nil {
		t.Fatal(err)
	}
	fromLayout, err := s.Import(ctx, dir, "bb-layout:1", nil)
	if err != nil {
		t.Fatal(err)
	}

	tag, err := name.NewTag("busybox:saved")
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	fromArchive, err := s.Import(ctx, archive, "bb-archive:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if fromLayout.Layers[0] != fromArchive.Layers[0] {
		t.Fatalf("layout and archive imports differ: %v %v", fromLayout.Layers, fromArchive.Layers)
	}
	if fromArchive.ID != fromLayout.ID {
		t.Fatalf("same image, different IDs: %s %s", fromArchive.ID, fromLayout.ID)
	}
}

func TestPullFromInProcessRegistry(t *testing.T) {
	s := newTestStore(t)
	img := busyboxImage(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	src := u.Host + "/tools/busybox:1.36"
	ref, err := name.ParseReference(src, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	got, err := s.Pull(context.Background(), src, PullOptions{Insecure: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != "tools/busybox:1.36" {
		t.Fatalf("ref = %s", got.Ref)
	}
	want, _ := img.ConfigFile()
	if len(got.Layers) != len(want.RootFS.DiffIDs) || got.Layers[0] != want.RootFS.DiffIDs[0].Hex {
		t.Fatalf("layers %v, want %v", got.Layers, want.RootFS.DiffIDs)
	}
	if !strings.Contains(out.String(), "unpacking") {
		t.Fatalf("no progress: %q", out.String())
	}
	if _, err := s.Pull(context.Background(), u.Host+"/tools/missing:1", PullOptions{Insecure: true}, nil); err == nil {
		t.Fatal("pulling a missing image succeeded")
	}
}

// whiteoutImage is busybox plus a layer that adds files and one that
// deletes some of them (a whiteout) and hides a directory (opaque).
func whiteoutImage(t *testing.T) v1.Image {
	t.Helper()
	l1 := tarLayer(t,
		tar.Header{Typeflag: tar.TypeDir, Name: "data/"},
		tar.Header{Typeflag: tar.TypeReg, Name: "data/keep", Linkname: "keep"},
		tar.Header{Typeflag: tar.TypeReg, Name: "data/secret", Linkname: "secret"},
		tar.Header{Typeflag: tar.TypeDir, Name: "cache/"},
		tar.Header{Typeflag: tar.TypeReg, Name: "cache/old", Linkname: "old"},
	)
	l2 := tarLayer(t,
		tar.Header{Typeflag: tar.TypeReg, Name: "data/.wh.secret"},
		tar.Header{Typeflag: tar.TypeDir, Name: "cache/"},
		tar.Header{Typeflag: tar.TypeReg, Name: "cache/.wh..wh..opq"},
		tar.Header{Typeflag: tar.TypeReg, Name: "cache/new", Linkname: "new"},
	)
	img, err := mutate.AppendLayers(busyboxImage(t), l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImportWhiteoutsBecomeOverlayWhiteouts(t *testing.T) {
	s := newTestStore(t)
	got, err := s.ImportImage(context.Background(), whiteoutImage(t), "wh:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != 3 {
		t.Fatalf("layers = %d", len(got.Layers))
	}
	top := s.LayerDir(got.Layers[2])
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(top, "data/secret"), &st); err != nil {
		t.Fatal(err)
	}
	if !isWhiteout(&st) || st.Uid != 0 {
		t.Fatalf("data/secret in top layer is mode %o rdev %d, want a 0:0 char device", st.Mode, st.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(top, "data/.wh.secret")); !os.IsNotExist(err) {
		t.Fatalf(".wh. file kept: %v", err)
	}
	if !isOpaque(filepath.Join(top, "cache")) {
		t.Fatal("cache/ is not opaque")
	}
	dirs, err := s.LayerDirs(got)
	if err != nil {
		t.Fatal(err)
	}
	m := mergedFS{layers: dirs}
	if _, _, ok := m.stat("/data/secret"); ok {
		t.Fatal("deleted file visible in the merged view")
	}
	if b, ok := m.readFile("/data/keep"); !ok || string(b) != "keep" {
		t.Fatalf("data/keep = %q %v", b, ok)
	}
	names, err := m.readDir("/cache")
	if err != nil || strings.Join(names, ",") != "new" {
		t.Fatalf("cache/ lists %v, %v; want only new", names, err)
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name    string
		entries []tar.Header
	}{
		{"through symlink", []tar.Header{
			{Typeflag: tar.TypeSymlink, Name: "evil", Linkname: "/tmp", Mode: 0o777},
			{Typeflag: tar.TypeReg, Name: "evil/pwned", Linkname: "x"},
		}},
		{"through nested symlink", []tar.Header{
			{Typeflag: tar.TypeDir, Name: "a/"},
			{Typeflag: tar.TypeSymlink, Name: "a/b", Linkname: "../..", Mode: 0o777},
			{Typeflag: tar.TypeReg, Name: "a/b/pwned", Linkname: "x"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			rc, err := tarLayer(t, tt.entries...).Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			err = unpackTar(context.Background(), rc, filepath.Join(dir, "root"), unpackOptions{whiteouts: true, keepOwner: true})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("err = %v, want ErrUnsafePath", err)
			}
		})
	}
	// A dotdot name is cleaned into the root, not outside it.
	dir := t.TempDir()
	rc, _ := tarLayer(t, tar.Header{Typeflag: tar.TypeReg, Name: "../../escaped", Linkname: "x"}).Uncompressed()
	defer rc.Close()
	if err := unpackTar(context.Background(), rc, filepath.Join(dir, "root"), unpackOptions{keepOwner: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "root", "escaped")); err != nil {
		t.Fatalf("cleaned entry not inside root: %v", err)
	}
}

func TestNormalizeRef(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"bare", "busybox", "busybox:latest", true},
		{"tagged", "myapp:v3", "myapp:v3", true},
		{"path", "library/debian:bookworm", "library/debian:bookworm", true},
		{"registry port", "localhost:5000/x", "localhost:5000/x:latest", true},
		{"upper case", "MyApp", "", false},
		{"empty", "", "", false},
		{"spaces", "my app", "", false},
		{"traversal", "../x", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeRef(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("NormalizeRef(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

func TestPruneKeepsBuildCacheUntilAsked(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.ImportImage(context.Background(), busyboxImage(t), "busybox", nil); err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Store: s}) // no runner: this build has no RUN step
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nCOPY a /a\nENV X=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := b.Build(context.Background(), BuildRequest{App: "p", ContextDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	img, dirs, err := s.Lookup("p")
	if err != nil || len(dirs) != 2 || img.Config.Env[len(img.Config.Env)-1] != "X=1" {
		t.Fatalf("lookup: %v %v %v", img, dirs, err)
	}
	copyLayer := res.Image.Layers[1]
	if err := s.RemoveImage("p"); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Prune(false)
	if err != nil || len(rep.Layers) != 0 || !s.HasLayer(copyLayer) {
		t.Fatalf("prune without cache removed %v (%v)", rep.Layers, err)
	}
	rep, err = s.Prune(true)
	if err != nil || len(rep.Layers) != 1 || rep.Layers[0] != copyLayer || s.HasLayer(copyLayer) {
		t.Fatalf("prune with cache removed %v (%v), want the COPY layer", rep.Layers, err)
	}
	if !s.HasLayer(res.Image.Layers[0]) {
		t.Fatal("prune removed the busybox layer that an image still uses")
	}
	// A build without a runner that reaches RUN says so.
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nRUN true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(context.Background(), BuildRequest{App: "p", ContextDir: dir}); !errors.Is(err, ErrNoRunner) {
		t.Fatalf("err = %v, want ErrNoRunner", err)
	}
}
