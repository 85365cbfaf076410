package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
)

// pusher is a user's side of berth: an SSH key, a known_hosts file with the
// daemon's host key, and a git working copy pushed with the stock clients.
type pusher struct {
	t    *testing.T
	d    *testDaemon
	key  string
	kh   string
	repo string
}

// newPusher makes an admin user with a fresh key and a git working copy.
func newPusher(t *testing.T, d *testDaemon, user string) *pusher {
	t.Helper()
	d.mustRun(nil, "users:add", user, "--admin")
	return newPusherFor(t, d, user)
}

// newPusherFor gives an existing user a fresh key and a git working copy.
func newPusherFor(t *testing.T, d *testDaemon, user string) *pusher {
	t.Helper()
	testenv.RequireCommands(t, "ssh", "ssh-keygen", "ssh-keyscan", "git")
	dir := t.TempDir()
	p := &pusher{t: t, d: d, key: filepath.Join(dir, "id"), kh: filepath.Join(dir, "known_hosts"), repo: filepath.Join(dir, "app")}
	runCmd(t, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", user, "-f", p.key)
	pub, _ := os.ReadFile(p.key + ".pub")
	d.mustRun(pub, "keys:add", user)
	scan := runCmd(t, "", "ssh-keyscan", "-t", "ed25519", "-p", d.sshPort, "127.0.0.1")
	if err := os.WriteFile(p.kh, []byte(scan), 0o600); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(p.repo, 0o755)
	p.git("init", "-q", "-b", "main")
	p.git("config", "user.email", "test@berth.test")
	p.git("config", "user.name", "test")
	p.git("remote", "add", "berth", fmt.Sprintf("ssh://berth@127.0.0.1:%s/myapp", d.sshPort))
	return p
}

func runCmd(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (p *pusher) sshCommand() string {
	return fmt.Sprintf("ssh -F /dev/null -i %s -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes", p.key, p.kh)
}

func (p *pusher) git(args ...string) string {
	p.t.Helper()
	out, err := p.gitErr(args...)
	if err != nil {
		p.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (p *pusher) gitErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = p.repo
	cmd.Env = append(os.Environ(), "GIT_SSH_COMMAND="+p.sshCommand())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// commit writes files (name → content) and commits them.
func (p *pusher) commit(msg string, files map[string]string) {
	p.t.Helper()
	for name, content := range files {
		path := filepath.Join(p.repo, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
	p.git("add", "-A")
	p.git("commit", "-q", "-m", msg)
}

// get fetches path from app through the router.
func (d *testDaemon) get(host, path string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+d.httpPort+path, nil)
	req.Host = host
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (d *testDaemon) mustGet(host, path string) string {
	d.t.Helper()
	code, body, err := d.get(host, path)
	if err != nil || code != 200 {
		d.t.Fatalf("GET %s%s: %d %v %q", host, path, code, err, body)
	}
	return body
}

const dockerfile = `FROM busybox
COPY index.html /www/index.html
RUN echo "built at step" > /www/built.txt
CMD busybox httpd -f -p $PORT -h /www
`

// TestPushToDeploy is the everyday path with the stock git and ssh: push,
// see the build live, get served through the router; push a change, push a
// broken build, roll back; SIGKILL the daemon and get the same app back.
func TestPushToDeploy(t *testing.T) {
	d := newTestDaemon(t)
	d.start()
	t.Cleanup(func() { d.mustRun(nil, "apps:destroy", "myapp", "--force") })
	d.mustRun(nil, "base:create", "busybox")
	p := newPusher(t, d, "alice")
	host := "myapp.berth.test"

	p.commit("v1", map[string]string{"Dockerfile": dockerfile, "index.html": "hello v1\n"})
	out := p.git("push", "berth", "main")
	for _, want := range []string{"remote: -----> Deploying myapp", "remote: Step", "RUN echo", "remote: =====> myapp v1 deployed to http://myapp.berth.test/"} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	if body := d.mustGet(host, "/"); body != "hello v1\n" {
		t.Fatalf("v1 serves %q", body)
	}
	if body := d.mustGet(host, "/built.txt"); !strings.Contains(body, "built at step") {
		t.Errorf("RUN output missing: %q", body)
	}

	p.commit("v2", map[string]string{"index.html": "hello v2\n"})
	p.git("push", "berth", "main")
	if body := d.mustGet(host, "/"); body != "hello v2\n" {
		t.Fatalf("v2 serves %q", body)
	}

	// A failing build: rejected, ref not updated, v2 still serves.
	p.commit("broken", map[string]string{"Dockerfile": strings.Replace(dockerfile, `RUN echo`, `RUN exit 3; echo`, 1)})
	out, err := p.gitErr("push", "berth", "main")
	if err == nil {
		t.Fatalf("push of a failing build succeeded:\n%s", out)
	}
	if !strings.Contains(out, "pre-receive hook declined") || !strings.Contains(out, "exit") {
		t.Errorf("rejected push output does not explain:\n%s", out)
	}
	if body := d.mustGet(host, "/"); body != "hello v2\n" {
		t.Fatalf("after a failed push the app serves %q", body)
	}
	remote := strings.Fields(p.git("ls-remote", "berth", "refs/heads/main"))[0]
	if remote == strings.TrimSpace(p.git("rev-parse", "HEAD")) {
		t.Error("the remote ref moved to the rejected commit")
	}

	// Every build is on record: builds (here through the local CLI) shows
	// the broken one failed and why, and builds:output (over ssh) gives
	// back what that push printed, by default and by id.
	builds := strings.Split(strings.TrimSpace(d.mustRun(nil, "builds", "myapp")), "\n")
	if len(builds) != 5 {
		t.Fatalf("builds: want a header, a column line and three builds:\n%s", strings.Join(builds, "\n"))
	}
	for i, want := range []string{"failed", "succeeded", "succeeded"} {
		if f := strings.Fields(builds[i+2]); len(f) < 2 || f[1] != want {
			t.Errorf("builds line %q: want %s", builds[i+2], want)
		}
	}
	if head := strings.TrimSpace(p.git("rev-parse", "HEAD")); !strings.Contains(builds[2], " "+head[:7]+" ") || !strings.Contains(builds[2], "build: ") {
		t.Errorf("builds: the failed build's line lacks its commit or reason: %q", builds[2])
	}
	if out := p.mustSSH("builds:output", "myapp"); !strings.Contains(out, "RUN exit 3") || !strings.Contains(out, "failed; the push is rejected") {
		t.Errorf("builds:output of the broken build:\n%s", out)
	}
	firstID := strings.Fields(builds[4])[0]
	if out := p.mustSSH("builds:output", "myapp", firstID); !strings.Contains(out, "=====> myapp v1 deployed") {
		t.Errorf("builds:output myapp %s:\n%s", firstID, out)
	}
	if _, errs, code := d.run(nil, "builds:output", "myapp", "newest"); code != 1 || !strings.Contains(errs, `invalid build id "newest"`) {
		t.Errorf("builds:output with a bad id: exit %d %q", code, errs)
	}

	// Another branch is accepted without a deploy.
	p.git("reset", "-q", "--hard", "HEAD~1")
	p.git("checkout", "-q", "-b", "feature")
	p.commit("feature", map[string]string{"index.html": "feature\n"})
	out = p.git("push", "berth", "feature")
	if !strings.Contains(out, "only pushes to main deploy") {
		t.Errorf("branch push output:\n%s", out)
	}
	if body := d.mustGet(host, "/"); body != "hello v2\n" {
		t.Fatalf("a feature push changed what serves: %q", body)
	}

	out = d.mustRun(nil, "releases:rollback", "myapp", "v1")
	if !strings.Contains(out, "v3") {
		t.Errorf("rollback output: %q", out)
	}
	if body := d.mustGet(host, "/"); body != "hello v1\n" {
		t.Fatalf("after rollback to v1 the app serves %q", body)
	}
	if out := d.mustRun(nil, "releases", "myapp"); !strings.Contains(out, "Rollback to v1") {
		t.Errorf("releases: %q", out)
	}

	// The daemon dies hard; the app keeps running and the new daemon
	// serves the same routes without restarting it.
	time.Sleep(2 * time.Second)
	before := d.mustRun(nil, "ps:report", "myapp")
	d.stop(syscall.SIGKILL)
	d.start()
	if body := d.mustGet(host, "/"); body != "hello v1\n" {
		t.Fatalf("after a daemon restart the app serves %q", body)
	}
	after := d.mustRun(nil, "ps:report", "myapp")
	if uptimeOf(t, after) < uptimeOf(t, before) {
		t.Errorf("the instance was restarted by the daemon restart:\nbefore: %s\nafter: %s", before, after)
	}
}

// uptimeOf returns web.1's uptime from a ps:report.
func uptimeOf(t *testing.T, report string) time.Duration {
	t.Helper()
	for _, line := range strings.Split(report, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[0] == "web.1" {
			d, err := time.ParseDuration(f[3])
			if err != nil {
				t.Fatalf("uptime in %q: %v", line, err)
			}
			return d
		}
	}
	t.Fatalf("no web.1 in ps:report:\n%s", report)
	return 0
}

// TestConcurrentPushesSerialize: a second push while the first builds waits
// for it and both end deployed in order.
func TestConcurrentPushesSerialize(t *testing.T) {
	d := newTestDaemon(t)
	d.start()
	t.Cleanup(func() { d.mustRun(nil, "apps:destroy", "myapp", "--force") })
	d.mustRun(nil, "base:create", "busybox")
	a := newPusher(t, d, "alice")
	b := newPusher(t, d, "bob")
	slow := strings.Replace(dockerfile, `RUN echo`, `RUN sleep 3; echo`, 1)
	a.commit("a", map[string]string{"Dockerfile": slow, "index.html": "from a\n"})
	b.commit("b", map[string]string{"Dockerfile": dockerfile, "index.html": "from b\n"})
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); outs[0], errs[0] = a.gitErr("push", "berth", "main") }()
	time.Sleep(1500 * time.Millisecond)
	go func() { defer wg.Done(); outs[1], errs[1] = b.gitErr("push", "--force", "berth", "main") }()
	wg.Wait()
	if errs[0] != nil {
		t.Fatalf("first push: %v\n%s", errs[0], outs[0])
	}
	if errs[1] != nil {
		t.Fatalf("second (force) push: %v\n%s", errs[1], outs[1])
	}
	if !strings.Contains(outs[1], "waiting for it to finish") {
		t.Errorf("second push did not wait for the first:\n%s", outs[1])
	}
	if body := d.mustGet("myapp.berth.test", "/"); body != "from b\n" {
		t.Errorf("after both pushes the app serves %q, want the second push's", body)
	}
	var buf bytes.Buffer
	buf.WriteString(d.mustRun(nil, "releases", "myapp"))
	if !strings.Contains(buf.String(), "v2") {
		t.Errorf("releases: %s", buf.String())
	}
}
