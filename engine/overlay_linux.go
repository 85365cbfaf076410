package engine

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// buildOverlayByPath is buildOverlay for kernels whose overlayfs takes no
// layers as file descriptors (before Linux 6.13). There overlay finds each
// layer by path, and only on a mount attached in the mounter's mount
// namespace, so the same idmapped detached mounts are attached, on a
// thread of their own, in a private mount namespace: in a tmpfs over dir,
// under short names (0, 1, ...) so that even overlay's maxLayers fit the
// page-size option string of mount(2). The overlay is mounted there and a
// detached clone of it returned; the thread then exits, and its namespace
// and everything attached in it go with it. The host never sees a mount.
func buildOverlayByPath(c *containerConfig, userns int, dir string) (int, error) {
	var held []int
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	// The top layer comes first in lowerdir; Spec.Layers lists the base first.
	for i := len(c.Spec.Layers) - 1; i >= 0; i-- {
		fd, err := cloneLayer(c.Spec.Layers[i], userns)
		if err != nil {
			return -1, err
		}
		held = append(held, fd)
	}
	// Upper and work dir are siblings and must be on one mount: attach
	// their parent, idmapped when a caller's upper dir keeps container IDs
	// on disk (as buildOverlay does).
	idmapUpper := -1
	if !c.OwnUpper && userns >= 0 {
		idmapUpper = userns
	}
	if filepath.Dir(c.Upper) != filepath.Dir(c.Work) {
		return -1, fmt.Errorf("overlay upper dir %s and work dir %s are not siblings", c.Upper, c.Work)
	}
	parent, err := cloneTree(filepath.Dir(c.Upper), idmapUpper, false)
	if err != nil {
		return -1, fmt.Errorf("clone upper dir: %w", err)
	}
	held = append(held, parent)
	asCreator := func(fn func() error) error { return asOverlayCreator(c, userns, fn) }
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread exits with this goroutine rather than
		// run other goroutines with a working directory of its own. (The
		// runtime parks the main thread instead of ending it, which is why
		// the thread goes back to the daemon's mount namespace.)
		runtime.LockOSThread()
		fd, err := onPrivateMountNamespace(func() (int, error) {
			return mountOverlayPrivately(dir, held[:len(c.Spec.Layers)], parent,
				filepath.Base(c.Upper), filepath.Base(c.Work), asCreator)
		})
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

// onPrivateMountNamespace runs fn on the calling thread, locked and never
// returned to the Go scheduler, in a new mount namespace where nothing
// propagates to the host, and moves the thread back to its own namespace
// and working directory afterwards; the private namespace, and everything
// attached there, is gone once fn returns.
func onPrivateMountNamespace(fn func() (int, error)) (fd int, err error) {
	ns, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open mount namespace: %w", err)
	}
	defer unix.Close(ns)
	cwd, err := unix.Open(".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open working directory: %w", err)
	}
	defer unix.Close(cwd)
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return -1, fmt.Errorf("unshare a mount namespace: %w", err)
	}
	defer func() {
		back := unix.Setns(ns, unix.CLONE_NEWNS)
		if back == nil {
			back = unix.Fchdir(cwd)
		}
		if back != nil && err == nil {
			unix.Close(fd)
			fd, err = -1, fmt.Errorf("return to the daemon's mount namespace: %w", back)
		}
	}()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return -1, fmt.Errorf("make the mount namespace private: %w", err)
	}
	return fn()
}

// mountOverlayPrivately mounts the overlay in a tmpfs over dir and returns
// a detached clone of it. It runs in onPrivateMountNamespace.
func mountOverlayPrivately(dir string, layers []int, parent int, upper, work string, asCreator func(func() error) error) (int, error) {
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return -1, fmt.Errorf("mount scratch tmpfs: %w", err)
	}
	if err := unix.Chdir(dir); err != nil {
		return -1, fmt.Errorf("enter scratch tmpfs: %w", err)
	}
	attach := func(fd int, name string) error {
		if err := unix.Mkdir(name, 0o755); err != nil {
			return fmt.Errorf("make mount point %s: %w", name, err)
		}
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, name, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("attach %s: %w", name, err)
		}
		return nil
	}
	var opts strings.Builder
	opts.WriteString("lowerdir=")
	for i, fd := range layers {
		name := strconv.Itoa(i)
		if err := attach(fd, name); err != nil {
			return -1, fmt.Errorf("layer: %w", err)
		}
		if i > 0 {
			opts.WriteByte(':')
		}
		opts.WriteString(name)
	}
	if err := attach(parent, "u"); err != nil {
		return -1, fmt.Errorf("upper dir: %w", err)
	}
	// Symlinks spare the option string the directories' own names, which
	// may hold the characters overlay's options split on.
	if err := unix.Symlink("u/"+upper, "upper"); err != nil {
		return -1, fmt.Errorf("link upper dir: %w", err)
	}
	if err := unix.Symlink("u/"+work, "work"); err != nil {
		return -1, fmt.Errorf("link work dir: %w", err)
	}
	opts.WriteString(",upperdir=upper,workdir=work")
	if opts.Len() >= unix.Getpagesize() {
		return -1, fmt.Errorf("overlay options are %d bytes, over the page size", opts.Len())
	}
	if err := unix.Mkdir("m", 0o755); err != nil {
		return -1, fmt.Errorf("make overlay mount point: %w", err)
	}
	if err := asCreator(func() error { return unix.Mount("overlay", "m", "overlay", 0, opts.String()) }); err != nil {
		return -1, fmt.Errorf("mount overlay (%d layers): %w", len(layers), err)
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, "m", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("detach overlay: %w", err)
	}
	return fd, nil
}
