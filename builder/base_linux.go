package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// DefaultBusybox is where Debian's busybox-static package puts its binary.
const DefaultBusybox = "/bin/busybox"

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BusyboxImage makes a one-layer image from a statically linked busybox
// binary (Debian's busybox-static): the binary, a symlink for every applet,
// /etc/passwd and /etc/group with root and nobody, and the usual top-level
// directories. The layer is reproducible for a given binary.
func BusyboxImage(busybox string) (v1.Image, error) {
	if err := checkStatic(busybox); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	fi, err := os.Stat(busybox)
	if err != nil {
		return nil, fmt.Errorf("stat busybox: %w", err)
	}
	mtime := fi.ModTime().UTC().Truncate(time.Second)
	list, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) error {
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write %s: %w", h.Name, err)
		}
		if body != nil {
			if _, err := tw.Write(body); err != nil {
				return fmt.Errorf("write %s: %w", h.Name, err)
			}
		}
		return nil
	}
	dirs := map[string]int64{"bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
		"etc": 0o755, "tmp": 0o1777, "root": 0o700, "proc": 0o555, "sys": 0o555, "dev": 0o755,
		"home": 0o755, "var": 0o755, "var/tmp": 0o1777, "run": 0o755}
	dnames := make([]string, 0, len(dirs))
	for d := range dirs {
		dnames = append(dnames, d)
	}
	sort.Strings(dnames)
	for _, d := range dnames {
		if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: dirs[d]}, nil); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		body []byte
	}{
		{"bin/busybox", 0o755, bin},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	for _, f := range files {
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.body))}, f.body); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{"bin/busybox": true}
	applets := strings.Fields(string(list))
	sort.Strings(applets)
	for _, a := range applets {
		a = strings.TrimPrefix(filepath.Clean("/"+a), "/")
		if seen[a] || dirs[filepath.Dir(a)] == 0 {
			continue
		}
		seen[a] = true
		if err := add(&tar.Header{Typeflag: tar.TypeSymlink, Name: a, Linkname: "/bin/busybox", Mode: 0o777}, nil); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("finish busybox layer: %w", err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("make busybox layer: %w", err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{
		CreatedBy: "busybox-static " + filepath.Base(busybox), Created: v1.Time{Time: mtime}}})
	if err != nil {
		return nil, fmt.Errorf("make busybox image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read busybox config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", runtime.GOARCH, v1.Time{Time: mtime}
	cf.Config = v1.Config{Env: []string{defaultPath}, Cmd: []string{"sh"}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set busybox config: %w", err)
	}
	return img, nil
}

func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("open busybox %s (install Debian's busybox-static): %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox %s is dynamically linked; install Debian's busybox-static", path)
		}
	}
	return nil
}

// CreateBusyboxBase stores the busybox image (see BusyboxImage) made from
// the binary at busybox (DefaultBusybox when empty) under ref
// ("busybox:latest" when empty).
func (s *Store) CreateBusyboxBase(ctx context.Context, busybox, ref string, out io.Writer) (*Image, error) {
	if busybox == "" {
		busybox = DefaultBusybox
	}
	if ref == "" {
		ref = "busybox:latest"
	}
	img, err := BusyboxImage(busybox)
	if err != nil {
		return nil, err
	}
	return s.ImportImage(ctx, img, ref, out)
}

// DebianOptions tunes CreateDebianBase.
type DebianOptions struct {
	// Suite is the Debian release; default "bookworm".
	Suite string
	// Ref is the image name:tag; default "debian:SUITE".
	Ref string
	// Mirror overrides the mirror read from the host's apt sources.
	Mirror string
	// AptDir is the host apt configuration directory; default /etc/apt.
	AptDir string
	// RootfsCache, when set, keeps the debootstrapped tree in this
	// directory and reuses it (hard-linked, when on the same filesystem)
	// the next time, so a machine pays for debootstrap once.
	RootfsCache string
	// Output receives debootstrap's output; nil discards it.
	Output io.Writer
}

// CreateDebianBase makes the default Debian base image with
// `debootstrap --variant=minbase` from the mirror of the host's apt
// sources, and stores it.
func (s *Store) CreateDebianBase(ctx context.Context, opt DebianOptions) (*Image, error) {
	if opt.Suite == "" {
		opt.Suite = "bookworm"
	}
	if opt.Ref == "" {
		opt.Ref = "debian:" + opt.Suite
	}
	if opt.AptDir == "" {
		opt.AptDir = "/etc/apt"
	}
	if opt.Output == nil {
		opt.Output = io.Discard
	}
	if _, err := NormalizeRef(opt.Ref); err != nil {
		return nil, err
	}
	if opt.Mirror == "" {
		srcs, err := HostAptSources(opt.AptDir)
		if err != nil {
			return nil, err
		}
		if opt.Mirror, err = DebianMirror(srcs, opt.Suite); err != nil {
			return nil, err
		}
	}
	s.gc.RLock()
	defer s.gc.RUnlock()
	tmp, diff, err := s.newTempLayer()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // a no-op once committed
	if opt.RootfsCache != "" {
		cached, err := cachedDebootstrap(ctx, opt)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(opt.Output, "using cached %s rootfs from %s\n", opt.Suite, cached)
		if err := os.Remove(diff); err != nil {
			return nil, fmt.Errorf("prepare layer: %w", err)
		}
		err = copyTree(cached, diff, copyOptions{link: true})
		if err != nil && errors.Is(err, unix.EXDEV) {
			_ = os.RemoveAll(diff)
			err = copyTree(cached, diff, copyOptions{})
		}
		if err != nil {
			return nil, fmt.Errorf("copy cached rootfs: %w", err)
		}
	} else if err := debootstrap(ctx, opt, diff); err != nil {
		return nil, err
	}
	layer, err := s.commitLayer(tmp)
	if err != nil {
		return nil, err
	}
	img := &Image{
		Ref:    opt.Ref,
		Layers: []string{layer.ID},
		Config: v1.Config{Env: []string{defaultPath}, Cmd: []string{"bash"}},
		History: []History{{CreatedBy: fmt.Sprintf("debootstrap --variant=minbase %s %s", opt.Suite, opt.Mirror),
			Layer: layer.ID, Size: layer.Size}},
	}
	if err := s.PutImage(img); err != nil {
		return nil, err
	}
	s.log.Info("debian base created", "ref", img.Ref, "layer", layer.ID, "size", layer.Size)
	return img, nil
}

func debootstrap(ctx context.Context, opt DebianOptions, target string) error {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return fmt.Errorf("find debootstrap (apt-get install debootstrap): %w", err)
	}
	fmt.Fprintf(opt.Output, "debootstrap --variant=minbase %s %s\n", opt.Suite, opt.Mirror)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", opt.Suite, target, opt.Mirror)
	cmd.Stdout, cmd.Stderr = opt.Output, opt.Output
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("run debootstrap: %w", err)
	}
	// Package downloads and indexes are not part of a base image; builds
	// run apt-get update themselves.
	for _, glob := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "var/cache/apt/*.bin"} {
		m, _ := filepath.Glob(filepath.Join(target, glob))
		for _, p := range m {
			_ = os.Remove(p)
		}
	}
	return nil
}

// cachedDebootstrap returns a complete debootstrapped tree in
// opt.RootfsCache, making it first if needed. A file lock keeps
// concurrent processes from bootstrapping twice.
func cachedDebootstrap(ctx context.Context, opt DebianOptions) (string, error) {
	if err := os.MkdirAll(opt.RootfsCache, 0o755); err != nil {
		return "", fmt.Errorf("create rootfs cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(opt.RootfsCache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("open rootfs cache lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock rootfs cache: %w", err)
	}
	dir := filepath.Join(opt.RootfsCache, "debian-"+opt.Suite+"-minbase")
	if _, err := os.Stat(dir + ".complete"); err == nil {
		return dir, nil
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create rootfs cache: %w", err)
	}
	if err := debootstrap(ctx, opt, dir); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	if err := os.WriteFile(dir+".complete", []byte(opt.Mirror+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("mark rootfs cache complete: %w", err)
	}
	return dir, nil
}
