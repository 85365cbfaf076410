package builder

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whPrefix = ".wh."
	whOpaque = ".wh..wh..opq"
)

// unpackOptions says how unpackTar treats an archive.
type unpackOptions struct {
	// whiteouts converts OCI whiteout entries into overlay whiteouts (for
	// image layers); off, they are ordinary files (for ADD of a tarball).
	whiteouts bool
	// keepOwner applies the archive's uid/gid; off, files get uid/gid.
	keepOwner bool
	uid, gid  int
}

// unpackTar extracts a tar stream into dir. No entry can write outside dir:
// paths are cleaned against dir and an entry whose parent is a symlink is
// refused.
func unpackTar(ctx context.Context, r io.Reader, dir string, opt unpackOptions) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirTimes []dirTime
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := filepath.Clean("/" + hdr.Name)
		if name == "/" {
			continue
		}
		base := filepath.Base(name)
		parentRel := filepath.Dir(name)
		if opt.whiteouts && strings.HasPrefix(base, whPrefix) {
			parent, err := ensureDir(dir, parentRel)
			if err != nil {
				return err
			}
			if base == whOpaque {
				if err := unix.Lsetxattr(parent, opaqueXattr, []byte("y"), 0); err != nil {
					return fmt.Errorf("mark %s opaque: %w", parentRel, err)
				}
				continue
			}
			if err := makeWhiteout(filepath.Join(parent, strings.TrimPrefix(base, whPrefix))); err != nil {
				return err
			}
			continue
		}
		parent, err := ensureDir(dir, parentRel)
		if err != nil {
			return err
		}
		target := filepath.Join(parent, base)
		uid, gid := hdr.Uid, hdr.Gid
		if !opt.keepOwner {
			uid, gid = opt.uid, opt.gid
		}
		mode := uint32(hdr.Mode & 0o7777)
		if fi, err := os.Lstat(target); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(target); err != nil {
				return fmt.Errorf("replace %s: %w", name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("create %s: %w", name, err)
			}
			dirTimes = append(dirTimes, dirTime{target, hdr.ModTime})
		case tar.TypeReg, tar.TypeRegA:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return fmt.Errorf("create symlink %s: %w", name, err)
			}
		case tar.TypeLink:
			src, err := safeJoin(dir, hdr.Linkname)
			if err != nil {
				return err
			}
			if err := os.Link(src, target); err != nil {
				return fmt.Errorf("create hard link %s: %w", name, err)
			}
			continue // the link shares the target's inode and metadata
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			ft := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			if err := unix.Mknod(target, ft|mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
				return fmt.Errorf("create device %s: %w", name, err)
			}
		case tar.TypeXGlobalHeader:
			continue
		default:
			return fmt.Errorf("unpack %s: unsupported tar entry type %q", name, hdr.Typeflag)
		}
		if err := unix.Lchown(target, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", name, err)
		}
		if hdr.Typeflag != tar.TypeSymlink {
			if err := unix.Chmod(target, mode); err != nil {
				return fmt.Errorf("chmod %s: %w", name, err)
			}
		}
		for k, v := range hdr.PAXRecords {
			if attr, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				// Best effort: a filesystem without user xattrs still
				// gets a usable layer.
				_ = unix.Lsetxattr(target, attr, []byte(v), 0)
			}
		}
		if hdr.Typeflag != tar.TypeDir {
			ts := []unix.Timespec{unix.NsecToTimespec(hdr.AccessTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
			if hdr.AccessTime.IsZero() {
				ts[0] = ts[1]
			}
			_ = unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	for i := len(dirTimes) - 1; i >= 0; i-- {
		ts := unix.NsecToTimespec(dirTimes[i].t.UnixNano())
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, dirTimes[i].path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// ensureDir makes sure directory rel exists under root (creating missing
// parents 0755 root-owned) without following symlinks, and returns its path.
func ensureDir(root, rel string) (string, error) {
	p, err := safeJoin(root, filepath.Join(rel, "x"))
	if err != nil {
		return "", err
	}
	p = filepath.Dir(p)
	fi, err := os.Lstat(p)
	if err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			return "", fmt.Errorf("%w: %s is a symlink", ErrUnsafePath, rel)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("%w: %s is not a directory", ErrUnsafePath, rel)
		}
		return p, nil
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", fmt.Errorf("create directory %s: %w", rel, err)
	}
	return p, nil
}
