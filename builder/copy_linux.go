package builder

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// copyOptions says how copyTree writes what it copies.
type copyOptions struct {
	// chown, when set, owns every copied entry by uid:gid instead of the
	// source's owner.
	chown    bool
	uid, gid int
	// chmod, when set, replaces the permission bits of every copied entry.
	chmod bool
	mode  uint32
	// link hard-links regular files instead of copying their bytes (same
	// filesystem only; the source must never change afterwards).
	link bool
	// skip, when set, is asked about every entry below the source root by
	// its path relative to that root; true leaves it (and, for a
	// directory, everything in it) out.
	skip func(rel string, isDir bool) bool
}

// copyTree copies src (a file, symlink, device or directory, not followed
// if a symlink) to dst, which must not exist yet or be a directory to merge
// into when src is one. Writes never leave dst: the caller has made dst's
// parent and checked it with safeJoin, and copyTree only creates entries
// inside directories it created or checked itself.
func copyTree(src, dst string, opt copyOptions) error {
	return copyEntry(src, dst, "", opt)
}

func copyEntry(src, dst, rel string, opt copyOptions) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if opt.chown {
		uid, gid = opt.uid, opt.gid
	}
	perm := st.Mode & 0o7777
	if opt.chmod {
		perm = opt.mode
	}
	ft := st.Mode & unix.S_IFMT
	if ft != unix.S_IFDIR {
		if fi, err := os.Lstat(dst); err == nil {
			if fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
				return fmt.Errorf("copy %s: destination %s is a directory", src, dst)
			}
			if err := os.Remove(dst); err != nil {
				return fmt.Errorf("replace %s: %w", dst, err)
			}
		}
	}
	switch ft {
	case unix.S_IFDIR:
		fi, err := os.Lstat(dst)
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("stat %s: %w", dst, err)
		}
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%w: %s is a symlink", ErrUnsafePath, dst)
		}
		if err == nil && !fi.IsDir() {
			if err := os.Remove(dst); err != nil {
				return fmt.Errorf("replace %s: %w", dst, err)
			}
			fi = nil
		}
		if fi == nil {
			if err := os.Mkdir(dst, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", dst, err)
			}
		}
		names, err := readDirNames(src)
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		for _, n := range names {
			crel := filepath.Join(rel, n)
			if opt.skip != nil {
				var cst unix.Stat_t
				isDir := unix.Lstat(filepath.Join(src, n), &cst) == nil && cst.Mode&unix.S_IFMT == unix.S_IFDIR
				if opt.skip(crel, isDir) {
					continue
				}
			}
			if err := copyEntry(filepath.Join(src, n), filepath.Join(dst, n), crel, opt); err != nil {
				return err
			}
		}
		if v, ok := getXattr(src, opaqueXattr); ok && v == "y" {
			if err := unix.Lsetxattr(dst, opaqueXattr, []byte("y"), 0); err != nil {
				return fmt.Errorf("mark %s opaque: %w", dst, err)
			}
		}
	case unix.S_IFREG:
		if opt.link && !opt.chown && !opt.chmod {
			if err := os.Link(src, dst); err != nil {
				return fmt.Errorf("link %s: %w", dst, err)
			}
			return nil
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
	case unix.S_IFLNK:
		t, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("readlink %s: %w", src, err)
		}
		if err := os.Symlink(t, dst); err != nil {
			return fmt.Errorf("create symlink %s: %w", dst, err)
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		if err := unix.Mknod(dst, ft|perm, int(st.Rdev)); err != nil {
			return fmt.Errorf("create device %s: %w", dst, err)
		}
	case unix.S_IFSOCK:
		return nil // sockets are not content
	default:
		return fmt.Errorf("copy %s: unsupported file type %o", src, ft)
	}
	if err := unix.Lchown(dst, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dst, err)
	}
	if ft != unix.S_IFLNK {
		if err := unix.Chmod(dst, perm); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// copyDirContents copies the entries of directory src into the existing
// directory dst.
func copyDirContents(src, dst string, opt copyOptions) error {
	names, err := readDirNames(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	for _, n := range names {
		if opt.skip != nil {
			var st unix.Stat_t
			isDir := unix.Lstat(filepath.Join(src, n), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
			if opt.skip(n, isDir) {
				continue
			}
		}
		if err := copyEntry(filepath.Join(src, n), filepath.Join(dst, n), n, opt); err != nil {
			return err
		}
	}
	return nil
}
