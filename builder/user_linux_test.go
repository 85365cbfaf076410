//go:build linux

package builder

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestResolveUserReadsTheMergedTree checks that ResolveUser reads
// /etc/passwd and /etc/group as the container sees them: the topmost
// layer's copy wins, and a whiteout or an opaque /etc hides lower ones.
func TestResolveUserReadsTheMergedTree(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	layer := func(name string, files map[string]string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		writeFiles(t, p, files)
		return p
	}
	base := layer("base", map[string]string{
		"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
		"etc/group":  "app:x:1000:\nold:x:2000:app\n",
	})
	newer := layer("newer", map[string]string{"etc/group": "app:x:1000:\nnew:x:3000:app\n"})
	whiteout := filepath.Join(dir, "whiteout")
	if err := os.MkdirAll(filepath.Join(whiteout, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(whiteout, "etc/group"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	opaque := layer("opaque", map[string]string{"etc/passwd": "app:x:1000:1500::/:/bin/sh\n"})
	if err := unix.Lsetxattr(filepath.Join(opaque, "etc"), opaqueXattr, []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		layers []string
		want   ExecUser
	}{
		{name: "one layer", layers: []string{base}, want: ExecUser{UID: 1000, GID: 1000, Groups: []uint32{1000, 2000}}},
		{name: "the topmost group file wins", layers: []string{base, newer}, want: ExecUser{UID: 1000, GID: 1000, Groups: []uint32{1000, 3000}}},
		{name: "a whiteout hides the group file", layers: []string{base, newer, whiteout}, want: ExecUser{UID: 1000, GID: 1000, Groups: []uint32{1000}}},
		{name: "an opaque /etc hides both lower files", layers: []string{base, newer, opaque}, want: ExecUser{UID: 1000, GID: 1500, Groups: []uint32{1500}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveUser(tt.layers, "app")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestRunStepGetsSupplementaryGroups runs RUN steps as users of the image
// and checks that each gets the groups Docker would give it: a user named
// by name or by uid gets every /etc/group entry listing it; an explicit
// group gets that group alone. /shared is writable through group 2000 only,
// so the touch proves the kernel sees the membership, not just id.
func TestRunStepGetsSupplementaryGroups(t *testing.T) {
	te := newTestEnv(t)
	te.busybox(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox
RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && \
    printf 'app:x:1000:\nextra:x:2000:nobody,app\nother:x:3000:\nbad:x:zz:app\n' >> /etc/group && \
    mkdir -m 0770 /shared && chown 0:2000 /shared
USER app
RUN echo "as-name: $(id)" && touch /shared/by-name
USER 1000
RUN echo "as-uid: $(id)" && touch /shared/by-uid
USER app:other
RUN echo "as-group: $(id)"
`})
	res, out, err := te.build(t, BuildRequest{App: "groups", ContextDir: ctx})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, want := range []string{
		"as-name: uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)",
		"as-uid: uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)",
		"as-group: uid=1000(app) gid=3000(other) groups=3000(other)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}
	got, code := te.runImage(t, res.Image, "ls", "/shared")
	if code != 0 || got != "by-name\nby-uid\n" {
		t.Fatalf("/shared holds %q (exit %d), want the files both steps made", got, code)
	}
}
