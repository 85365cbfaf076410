package main

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
)

// ssh runs `ssh berth@127.0.0.1 ARGS…` as the pusher's user.
func (p *pusher) ssh(stdin string, args ...string) (string, string, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return testenv.Run(p.t, p.sshCmd(ctx, args...), stdin)
}

func (p *pusher) sshCmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append(strings.Fields(p.sshCommand())[1:], "-p", p.d.sshPort, "berth@127.0.0.1")
	return exec.CommandContext(ctx, "ssh", append(full, args...)...)
}

func (p *pusher) mustSSH(args ...string) string {
	p.t.Helper()
	out, errs, code := p.ssh("", args...)
	if code != 0 {
		p.t.Fatalf("ssh %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

const greeter = `FROM busybox
COPY index.html /www/index.html
CMD echo "boot $DYNO"; echo "$GREETING" > /www/greeting.txt; exec busybox httpd -f -v -p $PORT -h /www
`

// deployGreeter starts a daemon and pushes the greeter app to it as myapp,
// owned by alice (the pusher), destroyed when the test ends.
func deployGreeter(t *testing.T) (*testDaemon, *pusher) {
	t.Helper()
	d := newTestDaemon(t)
	d.start()
	t.Cleanup(func() { d.run(nil, "apps:destroy", "myapp", "--force") })
	d.mustRun(nil, "base:create", "busybox")
	p := newPusher(t, d, "alice")
	p.commit("v1", map[string]string{"Dockerfile": greeter, "index.html": "hi\n"})
	p.git("push", "berth", "main")
	return d, p
}

// TestSSHCommandsOnADeployedApp runs the command set over ssh against a
// real deployed app: config, scale, logs, run, restart/stop/start, domains,
// releases and destroy, and the permission rules of another user.
func TestSSHCommandsOnADeployedApp(t *testing.T) {
	d := newTestDaemon(t)
	d.start()
	d.mustRun(nil, "base:create", "busybox")
	p := newPusher(t, d, "alice")
	host := "myapp.berth.test"
	p.commit("v1", map[string]string{"Dockerfile": greeter, "index.html": "hi\n"})
	p.git("push", "berth", "main")

	if out := p.mustSSH("config:set", "myapp", "GREETING='hello world'"); !strings.Contains(out, "v2") {
		t.Errorf("config:set: %q", out)
	}
	if body := d.mustGet(host, "/greeting.txt"); body != "hello world\n" {
		t.Errorf("after config:set the app sees GREETING=%q", body)
	}
	if out := p.mustSSH("config:get", "myapp", "GREETING"); out != "hello world\n" {
		t.Errorf("config:get = %q", out)
	}

	p.mustSSH("ps:scale", "myapp", "web=2")
	report := p.mustSSH("ps:report", "myapp")
	if !strings.Contains(report, "web.1") || !strings.Contains(report, "web.2") {
		t.Errorf("ps:report after scale:\n%s", report)
	}

	if out := p.mustSSH("logs", "myapp", "-n", "50"); !strings.Contains(out, "boot web.2") {
		t.Errorf("logs lack web.2's boot line:\n%s", out)
	}
	// logs -t follows across a restart of the instances.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	follow := p.sshCmd(ctx, "logs", "myapp", "-t", "-n", "0")
	stdout, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(time.Second)
	p.mustSSH("ps:restart", "myapp")
	seen := false
	for !seen {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("logs -t ended")
			}
			seen = strings.Contains(l, "boot web.1")
		case <-time.After(60 * time.Second):
			t.Fatal("logs -t did not show the restarted instance's line")
		}
	}
	cancel()
	follow.Wait()

	if out := p.mustSSH("run", "myapp", "sh", "-c", "'echo one-off $GREETING'"); !strings.Contains(out, "one-off hello world") {
		t.Errorf("run: %q", out)
	}
	if out, _, code := p.ssh("", "run", "myapp", "sh", "-c", "'exit 7'"); code != 7 {
		t.Errorf("run exit status = %d (%q), want 7", code, out)
	}
	// With a terminal: ssh -tt gives the one-off a TTY.
	ttyCtx, ttyCancel := context.WithTimeout(context.Background(), time.Minute)
	defer ttyCancel()
	ttyCmd := exec.CommandContext(ttyCtx, "ssh", append(append(strings.Fields(p.sshCommand())[1:], "-tt", "-p", d.sshPort, "berth@127.0.0.1"), "run", "myapp", "tty")...)
	ttyOut, _ := ttyCmd.CombinedOutput()
	if !strings.Contains(string(ttyOut), "/dev/pts/") {
		t.Errorf("run with -tt: tty printed %q", ttyOut)
	}

	p.mustSSH("ps:stop", "myapp")
	if code, _, _ := d.get(host, "/"); code != 503 {
		t.Errorf("stopped app answers %d, want 503", code)
	}
	p.mustSSH("ps:start", "myapp")
	if body := d.mustGet(host, "/"); body != "hi\n" {
		t.Errorf("started app serves %q", body)
	}
	p.mustSSH("ps:scale", "myapp", "web=0")
	if code, _, _ := d.get(host, "/"); code != 503 {
		t.Errorf("app at web=0 answers %d, want 503", code)
	}
	p.mustSSH("ps:scale", "myapp", "web=1")

	p.mustSSH("domains:add", "myapp", "www.example.test")
	if body := d.mustGet("www.example.test", "/"); body != "hi\n" {
		t.Errorf("custom domain serves %q", body)
	}
	if out := p.mustSSH("domains:list", "myapp"); !strings.Contains(out, "www.example.test") {
		t.Errorf("domains:list: %q", out)
	}
	p.mustSSH("domains:remove", "myapp", "www.example.test")
	if code, _, _ := d.get("www.example.test", "/"); code != 404 {
		t.Errorf("removed domain answers %d, want 404", code)
	}
	if code, _, _ := d.get("nope.berth.test", "/"); code != 404 {
		t.Errorf("unknown host answers %d, want 404", code)
	}

	// Another member may neither see nor push to alice's app.
	d.mustRun(nil, "users:add", "bob")
	b := newPusherFor(t, d, "bob")
	if _, errs, code := b.ssh("", "apps:info", "myapp"); code == 0 || !strings.Contains(errs, "not found") {
		t.Errorf("bob's apps:info: exit %d %q", code, errs)
	}
	b.commit("bob", map[string]string{"Dockerfile": greeter, "index.html": "bob\n"})
	if out, err := b.gitErr("push", "berth", "main"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("bob's push to alice's app: %v\n%s", err, out)
	}
	if body := d.mustGet(host, "/"); body != "hi\n" {
		t.Errorf("after bob's refused push the app serves %q", body)
	}
	// Shared with bob, the app is his to run but not to destroy: refused
	// before anything is torn down, so it goes on serving.
	p.mustSSH("apps:share", "myapp", "bob")
	if _, errs, code := b.ssh("", "apps:destroy", "myapp", "--force"); code == 0 || !strings.Contains(errs, "only the owner") {
		t.Errorf("bob's apps:destroy of a shared app: exit %d %q", code, errs)
	}
	if body := d.mustGet(host, "/"); body != "hi\n" {
		t.Errorf("after bob's refused destroy the app serves %q", body)
	}

	// destroy asks for the name.
	if _, errs, code := p.ssh("wrong\n", "apps:destroy", "myapp"); code == 0 || !strings.Contains(errs, "did not match") {
		t.Errorf("destroy with the wrong name: exit %d %q", code, errs)
	}
	if out, errs, code := p.ssh("myapp\n", "apps:destroy", "myapp"); code != 0 {
		t.Fatalf("destroy: exit %d %q %q", code, out, errs)
	}
	if code, _, _ := d.get(host, "/"); code != 404 {
		t.Errorf("destroyed app answers %d, want 404", code)
	}
}

// TestResourceLimits: resource:limit caps a deployed app's disk and memory
// for real, resource:report shows the driver and the use, and bad values
// are refused without changing anything.
func TestResourceLimits(t *testing.T) {
	d, p := deployGreeter(t)

	for _, bad := range [][]string{
		{"resource:limit", "myapp", "--memory", "-5m"},
		{"resource:limit", "myapp", "--disk", "12parsecs"},
		{"resource:limit", "myapp", "--network", "999999999tbit"},
		{"resource:limit", "myapp", "--cpu", "abc"},
	} {
		if out, errs, code := p.ssh("", bad...); code == 0 || !strings.Contains(errs, "invalid") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", bad, code, out, errs)
		}
	}
	if out := p.mustSSH("resource:report", "myapp"); !strings.Contains(out, "Disk limit:") || strings.Contains(out, "32m") {
		t.Errorf("report before limits:\n%s", out)
	}

	p.mustSSH("resource:limit", "myapp", "--disk", "32m", "--memory", "64m", "--network", "10mbit")
	p.mustSSH("ps:restart", "myapp")
	if body := d.mustGet("myapp.berth.test", "/"); body != "hi\n" {
		t.Fatalf("after limits the app serves %q", body)
	}
	out, _, code := p.ssh("", "run", "myapp", "sh", "-c", "'dd if=/dev/zero of=/big bs=1M count=64 2>&1; echo dd-exit=$?'")
	if code != 0 || !strings.Contains(out, "dd-exit=1") || !(strings.Contains(out, "quota") || strings.Contains(out, "space")) {
		t.Errorf("writing 64 MiB under a 32 MiB disk limit: exit %d\n%s", code, out)
	}
	report := p.mustSSH("resource:report", "myapp")
	for _, want := range []string{"Disk driver:  btrfs", "32m", "memory=64m", "network=10mbit", "/64.0MiB"} {
		if !strings.Contains(report, want) {
			t.Errorf("resource:report lacks %q:\n%s", want, report)
		}
	}
}
