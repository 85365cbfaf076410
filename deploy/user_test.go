package deploy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/engine"
)

// usersImage stores an image whose /etc/passwd and /etc/group (in its top
// layer, over busybox's) put app in group extra, with a file only extra's
// members can read, and returns its ref.
func (e *env) usersImage(ref string, procs map[string]string, extra ...layerFile) string {
	e.t.Helper()
	files := append([]layerFile{
		{name: "etc/passwd", mode: 0o644, body: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		// The malformed lines name app too: berth skips them. They come
		// last, since busybox's id stops at them ("bad record").
		{name: "etc/group", mode: 0o644, body: "root:x:0:\napp:x:1000:\nextra:x:2000:nobody,app\nother:x:3000:\nnogroup:x:65534:\nbad:x:zz:app\nshort:app\n:x:4000:app\n"},
		{name: "srv/secret", mode: 0o640, gid: 2000, body: "for extra's eyes"},
	}, extra...)
	return e.imageWithLayer(ref, procs, files)
}

// withUser stores a copy of the image ref under newRef with USER user.
func (e *env) withUser(ref, newRef, user string) string {
	e.t.Helper()
	img, err := e.images.Image(ref)
	if err != nil {
		e.t.Fatal(err)
	}
	cp := *img
	cp.Ref, cp.Config.User = newRef, user
	if err := e.images.PutImage(&cp); err != nil {
		e.t.Fatal(err)
	}
	return cp.Ref
}

// TestImageUserGetsSupplementaryGroups checks that an image's USER runs
// with the groups Docker gives it: a user named by name or uid gets every
// group of the image's /etc/group that lists it, an explicit group only
// that group, and a uid the image does not know group 0. It looks through
// each path that starts a process: one-off runs (exec), the app's own
// process (container start) and a command health check (exec), also of
// an instance a restarted daemon re-adopts.
func TestImageUserGetsSupplementaryGroups(t *testing.T) {
	e := newEnv(t, nil)
	e.start(t)
	ctx := context.Background()
	base := e.usersImage("users:base", nil)
	const member = "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)"
	tests := []struct {
		name string
		user string
		want string
	}{
		{name: "by name", user: "app", want: member},
		{name: "by uid", user: "1000", want: member},
		{name: "explicit group", user: "app:other", want: "uid=1000(app) gid=3000(other) groups=3000(other)"},
		{name: "explicit numeric group", user: "1000:2000", want: "uid=1000(app) gid=2000(extra) groups=2000(extra)"},
		{name: "uid not in passwd", user: "4242", want: "uid=4242 gid=0(root) groups=0(root)"},
		{name: "no user", user: "", want: "uid=0(root) gid=0(root) groups=0(root)"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := fmt.Sprintf("users%d", i)
			e.createApp(app)
			e.scale(app, map[string]int{"web": 0})
			rel := e.release(app, e.withUser(base, app+":v1", tt.user), nil)
			if err := e.d.Rollout(ctx, app, rel, nil); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			var stdout, stderr syncBuffer
			code, err := e.d.RunOneOff(ctx, app, []string{"id"}, strings.NewReader(""), &stdout, &stderr, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(stdout.String()); code != 0 || got != tt.want {
				t.Fatalf("id = %q (exit %d, stderr %q), want %q", got, code, stderr.String(), tt.want)
			}
		})
	}

	t.Run("app process and health check", func(t *testing.T) {
		procs := map[string]string{"web": `mkdir -p /tmp/www && { id; cat /srv/secret; } > /tmp/www/index.html 2>&1; exec httpd -f -p $PORT -h /tmp/www`}
		check := layerFile{name: "app.json", mode: 0o644, body: `{"healthchecks":{"web":[{"command":"id -G | grep -qw 2000","attempts":1}]}}`}
		ref := e.withUser(e.usersImage("usersweb:base", procs, check), "usersweb:v1", "app")
		e.createApp("usersweb")
		rel := e.release("usersweb", ref, nil)
		var out syncBuffer
		if err := e.d.Rollout(ctx, "usersweb", rel, &out); err != nil {
			t.Fatalf("rollout: %v\n%s", err, out.String())
		}
		c := &http.Client{Timeout: 5 * time.Second}
		st, body, err := e.get(c, "usersweb", "/")
		if want := member + "\nfor extra's eyes"; err != nil || st != 200 || body != want {
			t.Fatalf("web process says %d %q (%v), want %q", st, body, err, want)
		}

		// A restarted daemon checks the instance it re-adopts with the
		// groups recorded in the container's spec, and keeps it.
		before := e.report(t, "usersweb")["web.1"]
		e.d.Close()
		eng2, err := engine.New(e.engCfg)
		if err != nil {
			t.Fatal(err)
		}
		e.d = e.newDeployer(eng2)
		e.start(t)
		if after := e.report(t, "usersweb")["web.1"]; after.ContainerID != before.ContainerID || after.State != stateUp {
			t.Fatalf("after a daemon restart web.1 is %s (%s), want the re-adopted %s", after.ContainerID, after.State, before.ContainerID)
		}
	})
}
