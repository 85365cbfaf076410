//go:build linux

package builder

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNormalizeUpper(t *testing.T) {
	needRoot(t)
	const base = 400000
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"app/file": "x", "suid": "s", "xwh": ""})
	mustChown := func(p string, uid, gid int) {
		t.Helper()
		if err := os.Lchown(filepath.Join(dir, p), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	mustChown("app", base, base)
	mustChown("app/file", base+1000, base+1000)
	mustChown("suid", base, base)
	if err := unix.Chmod(filepath.Join(dir, "suid"), 0o4755); err != nil {
		t.Fatal(err)
	}
	// A directory marked opaque the way an overlay mounted with userxattr
	// does, and a bookkeeping xattr that must go.
	if err := unix.Lsetxattr(filepath.Join(dir, "app"), userOpaqueXattr, []byte("y"), 0); err != nil {
		t.Skipf("user xattrs unsupported here: %v", err)
	}
	if err := unix.Lsetxattr(filepath.Join(dir, "app"), "trusted.overlay.impure", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	// An xwhiteout: an empty file carrying the overlay whiteout xattr.
	if err := unix.Lsetxattr(filepath.Join(dir, "xwh"), userWhiteoutXatt, []byte(""), 0); err != nil {
		t.Fatal(err)
	}
	if err := normalizeUpper(dir, base, base); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		uid, gid uint32
		mode     uint32
	}{
		{"root dir", "app", 0, 0, 0},
		{"user file", "app/file", 1000, 1000, 0},
		{"setuid kept", "suid", 0, 0, 0o4755},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(dir, tt.path), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != tt.uid || st.Gid != tt.gid || (tt.mode != 0 && st.Mode&0o7777 != tt.mode) {
				t.Fatalf("%s: %d:%d %o", tt.path, st.Uid, st.Gid, st.Mode&0o7777)
			}
		})
	}
	if !isOpaque(filepath.Join(dir, "app")) {
		t.Fatal("user.overlay.opaque not turned into trusted.overlay.opaque")
	}
	if _, ok := getXattr(filepath.Join(dir, "app"), "trusted.overlay.impure"); ok {
		t.Fatal("overlay bookkeeping xattr kept")
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "xwh"), &st); err != nil || !isWhiteout(&st) {
		t.Fatalf("xwhiteout not turned into a char device whiteout: %v %o", err, st.Mode)
	}
}
