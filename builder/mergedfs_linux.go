package builder

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// mergedFS reads the union of a stack of layer directories (bottom first)
// the way overlayfs presents it, without mounting anything: whiteouts hide
// lower entries, opaque directories hide everything below them, and a
// non-directory hides lower directories at the same path.
type mergedFS struct {
	layers []string
}

type probe int

const (
	probeAbsent probe = iota
	probePresent
	probeBlocked
)

func splitRel(rel string) []string {
	c := strings.TrimPrefix(filepath.Clean("/"+rel), "/")
	if c == "" {
		return nil
	}
	return strings.Split(c, "/")
}

// probeLayer looks for parts in one layer. stop says that lower layers can
// contribute nothing at this path (an opaque ancestor, or rel itself is an
// opaque directory).
func probeLayer(layer string, parts []string) (r probe, st unix.Stat_t, stop bool) {
	cur := layer
	if len(parts) == 0 {
		if err := unix.Lstat(cur, &st); err != nil {
			return probeAbsent, st, false
		}
		return probePresent, st, isOpaque(cur)
	}
	for j, part := range parts {
		cur = filepath.Join(cur, part)
		if err := unix.Lstat(cur, &st); err != nil {
			return probeAbsent, st, stop
		}
		if isWhiteout(&st) {
			return probeBlocked, st, true
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if j < len(parts)-1 {
			if !isDir {
				return probeBlocked, st, true
			}
			if isOpaque(cur) {
				stop = true
			}
			continue
		}
		if isDir && isOpaque(cur) {
			stop = true
		}
	}
	return probePresent, st, stop
}

// contributors returns the layers (top first) whose copy of rel is visible,
// with the stat of each.
func (m mergedFS) contributors(rel string) ([]int, []unix.Stat_t) {
	parts := splitRel(rel)
	var idx []int
	var sts []unix.Stat_t
	for i := len(m.layers) - 1; i >= 0; i-- {
		r, st, stop := probeLayer(m.layers[i], parts)
		if r == probeBlocked {
			break
		}
		if r == probePresent {
			isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			if len(idx) > 0 && !isDir {
				break // a lower non-directory under a directory is hidden
			}
			idx = append(idx, i)
			sts = append(sts, st)
			if !isDir {
				break
			}
		}
		if stop {
			break
		}
	}
	return idx, sts
}

// stat returns the visible entry at rel and the layer holding it.
func (m mergedFS) stat(rel string) (unix.Stat_t, string, bool) {
	idx, sts := m.contributors(rel)
	if len(idx) == 0 {
		return unix.Stat_t{}, "", false
	}
	return sts[0], filepath.Join(m.layers[idx[0]], filepath.Clean("/"+rel)), true
}

// readDir lists the visible names of directory rel, sorted.
func (m mergedFS) readDir(rel string) ([]string, error) {
	idx, sts := m.contributors(rel)
	seen := map[string]bool{}
	var names []string
	for k, i := range idx {
		if sts[k].Mode&unix.S_IFMT != unix.S_IFDIR {
			break
		}
		ents, err := readDirNames(filepath.Join(m.layers[i], filepath.Clean("/"+rel)))
		if err != nil {
			return nil, err
		}
		for _, n := range ents {
			if seen[n] {
				continue
			}
			seen[n] = true
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(m.layers[i], filepath.Clean("/"+rel), n), &st) == nil && isWhiteout(&st) {
				continue
			}
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// resolve follows symlinks in the directories of abs (not in its last
// component) inside the merged tree, never leaving its root, and returns
// the resolved absolute path.
func (m mergedFS) resolve(abs string) (string, error) {
	parts := splitRel(abs)
	if len(parts) == 0 {
		return "/", nil
	}
	resolved := "/"
	hops := 0
	for len(parts) > 1 {
		next := filepath.Join(resolved, parts[0])
		st, path, ok := m.stat(next)
		if ok && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if hops++; hops > 40 {
				return "", fmt.Errorf("resolve %s: too many levels of symbolic links", abs)
			}
			t, err := os.Readlink(path)
			if err != nil {
				return "", fmt.Errorf("readlink %s: %w", next, err)
			}
			if !filepath.IsAbs(t) {
				t = filepath.Join(resolved, t)
			}
			parts = append(splitRel(t), parts[1:]...)
			resolved = "/"
			continue
		}
		resolved = next
		parts = parts[1:]
	}
	return filepath.Join(resolved, parts[0]), nil
}

// copyOut copies the merged entry rel (recursively for a directory) to dst
// in a new layer.
func (m mergedFS) copyOut(rel, dst string, opt copyOptions) error {
	st, path, ok := m.stat(rel)
	if !ok {
		return fmt.Errorf("%s: no such file or directory", rel)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return copyEntry(path, dst, "", opt)
	}
	if fi, err := os.Lstat(dst); err == nil && !fi.IsDir() {
		if err := os.Remove(dst); err != nil {
			return fmt.Errorf("replace %s: %w", dst, err)
		}
	}
	if err := os.Mkdir(dst, 0o700); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	names, err := m.readDir(rel)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := m.copyOut(filepath.Join(rel, n), filepath.Join(dst, n), opt); err != nil {
			return err
		}
	}
	uid, gid, perm := int(st.Uid), int(st.Gid), st.Mode&0o7777
	if opt.chown {
		uid, gid = opt.uid, opt.gid
	}
	if opt.chmod {
		perm = opt.mode
	}
	if err := unix.Lchown(dst, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dst, err)
	}
	if err := unix.Chmod(dst, perm); err != nil {
		return fmt.Errorf("chmod %s: %w", dst, err)
	}
	return nil
}

// copyContents copies the entries of merged directory rel into the
// existing directory dst.
func (m mergedFS) copyContents(rel, dst string, opt copyOptions) error {
	names, err := m.readDir(rel)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := m.copyOut(filepath.Join(rel, n), filepath.Join(dst, n), opt); err != nil {
			return err
		}
	}
	return nil
}

// readFile reads a regular file of the merged tree; ok is false when it is
// not there.
func (m mergedFS) readFile(rel string) ([]byte, bool) {
	st, path, ok := m.stat(rel)
	if !ok || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, false
	}
	b, err := os.ReadFile(path)
	return b, err == nil
}

// maxUserDB caps what berth reads of an image's /etc/passwd or /etc/group:
// the daemon reads them at every deploy.
const maxUserDB = 4 << 20

// readUserDB reads /etc/passwd or /etc/group of the merged tree, nil when
// the image has none.
func (m mergedFS) readUserDB(rel string) ([]byte, error) {
	st, path, ok := m.stat(rel)
	if !ok || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil
	}
	if st.Size > maxUserDB {
		return nil, fmt.Errorf("the image's %s is %d bytes; berth reads at most %d", rel, st.Size, maxUserDB)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the image's %s: %w", rel, err)
	}
	return b, nil
}

// execUser resolves spec against the merged tree's /etc/passwd and
// /etc/group (see resolveExecUser).
func (m mergedFS) execUser(spec string, sameGID bool) (ExecUser, error) {
	passwd, err := m.readUserDB("/etc/passwd")
	if err != nil {
		return ExecUser{}, err
	}
	group, err := m.readUserDB("/etc/group")
	if err != nil {
		return ExecUser{}, err
	}
	return resolveExecUser(spec, passwd, group, sameGID)
}

// ResolveUser resolves an image's USER into the IDs and supplementary
// groups its processes run with, as Docker does, reading /etc/passwd and
// /etc/group from layers (bottom first) as the container sees them: the
// topmost copy wins, whiteouts and opaque directories hide lower ones.
// Build steps and deployed apps both resolve USER here.
func ResolveUser(layers []string, user string) (ExecUser, error) {
	return mergedFS{layers: layers}.execUser(user, false)
}
