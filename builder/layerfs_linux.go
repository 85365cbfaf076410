package builder

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	opaqueXattr      = "trusted.overlay.opaque"
	userOpaqueXattr  = "user.overlay.opaque"
	whiteoutXattr    = "trusted.overlay.whiteout"
	userWhiteoutXatt = "user.overlay.whiteout"
)

// digestTree computes the content address of a layer directory: a sha256
// over every entry's path, type, permissions, owner, device number, link
// target, opaque mark and file contents, in path order. Timestamps are left
// out so that the same files made twice are stored once.
func digestTree(root string) (id string, size int64, err error) {
	h := sha256.New()
	var num [8]byte
	writeNum := func(v uint64) {
		binary.LittleEndian.PutUint64(num[:], v)
		h.Write(num[:])
	}
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		names, err := readDirNames(dir)
		if err != nil {
			return err
		}
		for _, name := range names {
			p := filepath.Join(dir, name)
			r := rel + "/" + name
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return fmt.Errorf("stat %s: %w", r, err)
			}
			h.Write([]byte(r))
			h.Write([]byte{0})
			writeNum(uint64(st.Mode))
			writeNum(uint64(st.Uid))
			writeNum(uint64(st.Gid))
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				writeNum(uint64(st.Size))
				size += st.Size
				f, err := os.Open(p)
				if err != nil {
					return fmt.Errorf("open %s: %w", r, err)
				}
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					return fmt.Errorf("read %s: %w", r, err)
				}
			case unix.S_IFLNK:
				t, err := os.Readlink(p)
				if err != nil {
					return fmt.Errorf("readlink %s: %w", r, err)
				}
				h.Write([]byte(t))
				h.Write([]byte{0})
			case unix.S_IFCHR, unix.S_IFBLK:
				writeNum(uint64(st.Rdev))
			case unix.S_IFDIR:
				if isOpaque(p) {
					h.Write([]byte("opaque"))
				}
				h.Write([]byte{0})
				if err := walk(p, r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, ""); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open directory: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

func getXattr(path, attr string) (string, bool) {
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(path, attr, buf)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

// isOpaque reports whether dir hides the contents of lower layers.
func isOpaque(dir string) bool {
	v, ok := getXattr(dir, opaqueXattr)
	return ok && v == "y"
}

// isWhiteout reports whether st is an overlay whiteout (a 0:0 char device).
func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// makeWhiteout records in a layer that path is deleted.
func makeWhiteout(path string) error {
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("clear whiteout target: %w", err)
	}
	if err := unix.Mknod(path, unix.S_IFCHR|0o000, 0); err != nil {
		return fmt.Errorf("create whiteout %s: %w", filepath.Base(path), err)
	}
	return nil
}

// normalizeUpper turns a RUN step's overlay upper directory into a layer
// in the store's format: IDs shifted from the container's host range back
// to image IDs (uidBase/gidBase are the host IDs container root had; 0
// means no user namespace), overlay bookkeeping xattrs dropped, opaque
// marks and whiteouts kept in their trusted.* / char-device form.
func normalizeUpper(root string, uidBase, gidBase uint32) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if uidBase != 0 || gidBase != 0 {
			uid, gid := shiftID(st.Uid, uidBase), shiftID(st.Gid, gidBase)
			if uid != st.Uid || gid != st.Gid {
				if err := unix.Lchown(p, int(uid), int(gid)); err != nil {
					return fmt.Errorf("chown %s: %w", p, err)
				}
				// chown clears set-id bits; put them back.
				if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 && st.Mode&unix.S_IFMT != unix.S_IFLNK {
					if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
						return fmt.Errorf("chmod %s: %w", p, err)
					}
				}
			}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil
		}
		return normalizeXattrs(p, &st)
	})
}

// shiftID maps a host ID of the build container's range back to the image
// ID; IDs outside the range (none should exist) become nobody.
func shiftID(id, base uint32) uint32 {
	if base == 0 {
		return id
	}
	if id >= base && id-base < 1<<16 {
		return id - base
	}
	return 65534
}

func normalizeXattrs(p string, st *unix.Stat_t) error {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil
	}
	opaque := false
	xwhiteout := false
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if !strings.HasPrefix(name, "trusted.overlay.") && !strings.HasPrefix(name, "user.overlay.") {
			continue
		}
		switch name {
		case opaqueXattr, userOpaqueXattr:
			if v, _ := getXattr(p, name); v == "y" {
				opaque = true
			}
		case whiteoutXattr, userWhiteoutXatt:
			xwhiteout = true
		}
		if err := unix.Lremovexattr(p, name); err != nil {
			return fmt.Errorf("remove xattr %s of %s: %w", name, p, err)
		}
	}
	if xwhiteout && st.Mode&unix.S_IFMT == unix.S_IFREG {
		return makeWhiteout(p)
	}
	if opaque && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := unix.Lsetxattr(p, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %s opaque: %w", p, err)
		}
	}
	return nil
}

// isEmptyDir reports whether dir has no entries.
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", dir, err)
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if err == io.EOF {
		return true, nil
	}
	return false, err
}

// safeJoin joins rel to root and checks that no existing component of the
// result below root is a symlink, so writing there stays inside root.
func safeJoin(root, rel string) (string, error) {
	clean := filepath.Clean("/" + rel)
	if clean == "/" {
		return root, nil
	}
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	cur := root
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		if i == len(parts)-1 {
			break
		}
		fi, err := os.Lstat(cur)
		if err != nil {
			if os.IsNotExist(err) {
				return filepath.Join(root, clean), nil
			}
			return "", fmt.Errorf("stat %s: %w", cur, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("%w: %s passes through symlink %s", ErrUnsafePath, rel, strings.Join(parts[:i+1], "/"))
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("%w: %s: %s is not a directory", ErrUnsafePath, rel, strings.Join(parts[:i+1], "/"))
		}
	}
	return filepath.Join(root, clean), nil
}
