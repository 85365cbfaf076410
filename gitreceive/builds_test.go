package gitreceive

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/buildlog"
	"github.com/berthhq/berth/platform"
)

// recordDeploy records a deploy of app by user as a push does: its build
// log on disk (none when log is empty) and its status, with the release it
// made when rel is set.
func (e *sshEnv) recordDeploy(user, app, sha, log string, status platform.DeployStatus, reason string, rel bool) platform.Deploy {
	e.t.Helper()
	ctx := context.Background()
	actor, err := e.svc.ActorForUser(ctx, user)
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.dir, "logs", app, "builds", sha+".log")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		e.t.Fatal(err)
	}
	if log != "" {
		if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
	d, err := e.svc.StartDeploy(ctx, actor, app, sha, path)
	if err != nil {
		e.t.Fatal(err)
	}
	version := 0
	if rel {
		r, err := e.svc.CreateRelease(ctx, actor, app, platform.ReleaseSpec{Image: app + ":" + sha[:12], Processes: map[string]string{"web": platform.ImageCommand},
			Description: "Deploy " + shortSHA(sha)})
		if err != nil {
			e.t.Fatal(err)
		}
		version = r.Version
	}
	if status != platform.DeployPending {
		if d, err = e.svc.SetDeployStatus(ctx, d.ID, status, reason, version); err != nil {
			e.t.Fatal(err)
		}
	}
	return d
}

// TestSSHBuilds: builds lists an app's deploys newest first and
// builds:output prints one's kept output, the newest by default, under the
// permission rules of the other app commands; a bad, unknown or foreign id
// and a lost log are refused with a clear error.
func TestSSHBuilds(t *testing.T) {
	e := newSSHEnv(t, nil)
	e.user("root1", platform.RoleAdmin)
	e.user("alice", platform.RoleMember)
	e.user("bob", platform.RoleMember)
	e.user("carol", platform.RoleMember)
	for _, app := range []string{"alpha", "beta", "gamma", "empty"} {
		if _, errs, code := e.ssh("alice", "", "apps:create", app); code != 0 {
			t.Fatalf("apps:create %s: %s", app, errs)
		}
	}
	if _, errs, code := e.ssh("alice", "", "apps:share", "alpha", "carol"); code != 0 {
		t.Fatalf("apps:share: %s", errs)
	}

	okLog := "-----> Deploying alpha (1111111) as alice\nStep 1/3 : FROM busybox\n=====> alpha v1 deployed\n"
	brokenLog := "-----> Deploying alpha (3333333) as carol\nStep 2/3 : RUN exit 3\n !     build: exit status 3\n"
	ok := e.recordDeploy("alice", "alpha", strings.Repeat("1", 40), okLog, platform.DeploySucceeded, "", true)
	other := e.recordDeploy("alice", "beta", strings.Repeat("2", 40), "beta's build\n", platform.DeploySucceeded, "", true)
	lost := e.recordDeploy("alice", "alpha", strings.Repeat("4", 40), "", platform.DeployFailed, "interrupted: berth restarted during the deploy; push again", false)
	broken := e.recordDeploy("carol", "alpha", strings.Repeat("3", 40), brokenLog, platform.DeployFailed, "build: step 2/3\tRUN exit 3:\nexit status 3", false)
	// gamma: an old build with more output than is shown, and one still
	// building.
	bigLog := strings.Repeat("x", buildlog.MaxShown) + "\n" + strings.Repeat("y", 99) + "the end\n"
	big := e.recordDeploy("alice", "gamma", strings.Repeat("5", 40), bigLog, platform.DeploySucceeded, "", true)
	e.recordDeploy("alice", "gamma", strings.Repeat("6", 40), "-----> Deploying gamma\n", platform.DeployBuilding, "", false)
	id := func(d platform.Deploy) string { return fmt.Sprint(d.ID) }

	steps := []struct {
		name     string
		who      string
		args     []string
		wantCode int
		wantOut  string
		// exact: stdout must be wantOut, not merely contain it.
		exact   bool
		wantErr string
		check   func(t *testing.T, out string)
	}{
		{name: "help lists builds", who: "alice", args: []string{"help"}, wantOut: "builds:output APP [ID]"},
		{name: "builds lists newest first", who: "alice", args: []string{"builds", "alpha"}, wantOut: "=====> alpha builds\nID",
			check: func(t *testing.T, out string) {
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 5 {
					t.Fatalf("want a header, a column line and three builds:\n%s", out)
				}
				for i, want := range [][]string{
					{id(broken), "failed", "-", "3333333", "carol", "build: step 2/3 RUN exit 3: exit status 3"},
					{id(lost), "failed", "-", "4444444", "alice", "interrupted: berth restarted during the deploy; push again"},
					{id(ok), "succeeded", "v1", "1111111", "alice"},
				} {
					f := strings.Fields(lines[i+2])
					if len(f) < 5 || f[0] != want[0] || f[1] != want[1] || f[2] != want[2] || f[3] != want[3] || f[4] != want[4] {
						t.Errorf("line %d = %q, want it to start %q", i+2, lines[i+2], want[:5])
					}
					if len(want) == 6 && !strings.HasSuffix(lines[i+2], want[5]) {
						t.Errorf("line %d = %q, want it to end with the reason %q", i+2, lines[i+2], want[5])
					}
					if strings.HasSuffix(lines[i+2], " ") {
						t.Errorf("line %d = %q ends in spaces", i+2, lines[i+2])
					}
				}
				if strings.Contains(out, "2222222") {
					t.Errorf("alpha's builds show beta's:\n%s", out)
				}
			}},
		{name: "builds of an app never deployed", who: "alice", args: []string{"builds", "empty"}, wantOut: "none yet: git push to deploy"},
		{name: "output of the newest build", who: "alice", args: []string{"builds:output", "alpha"}, wantOut: brokenLog, exact: true},
		{name: "output of a build by id", who: "alice", args: []string{"builds:output", "alpha", id(ok)}, wantOut: okLog, exact: true},
		{name: "a shared user reads it", who: "carol", args: []string{"builds:output", "alpha", id(ok)}, wantOut: okLog, exact: true},
		{name: "an admin reads it", who: "root1", args: []string{"builds:output", "alpha", id(ok)}, wantOut: okLog, exact: true},
		{name: "another app's build", who: "alice", args: []string{"builds:output", "alpha", id(other)}, wantCode: 1,
			wantErr: fmt.Sprintf(`build %q not found: builds alpha lists alpha's builds`, id(other))},
		{name: "unknown id", who: "alice", args: []string{"builds:output", "alpha", "999999999"}, wantCode: 1, wantErr: `build "999999999" not found`},
		{name: "non-numeric id", who: "alice", args: []string{"builds:output", "alpha", "latest"}, wantCode: 1, wantErr: `invalid build id "latest": give a build's number`},
		{name: "zero id", who: "alice", args: []string{"builds:output", "alpha", "0"}, wantCode: 1, wantErr: `invalid build id "0"`},
		{name: "negative id", who: "alice", args: []string{"builds:output", "alpha", "-3"}, wantCode: 2, wantErr: "flag provided but not defined"},
		{name: "too many arguments", who: "alice", args: []string{"builds:output", "alpha", id(ok), "x"}, wantCode: 2, wantErr: `unexpected argument "x"`},
		{name: "a lost log", who: "alice", args: []string{"builds:output", "alpha", id(lost)}, wantCode: 1,
			wantErr: fmt.Sprintf("the output of build %s of alpha is no longer kept", id(lost))},
		{name: "no builds yet", who: "alice", args: []string{"builds:output", "empty"}, wantCode: 1, wantErr: "empty has no builds yet: git push to deploy it"},
		{name: "a build in progress", who: "alice", args: []string{"builds:output", "gamma"}, wantOut: "-----> Deploying gamma\n", exact: true,
			wantErr: "is still building; this is its output so far"},
		{name: "a long output is cut to its end", who: "alice", args: []string{"builds:output", "gamma", id(big)}, wantErr: "only its end is shown",
			check: func(t *testing.T, out string) {
				if len(out) != buildlog.MaxShown || !strings.HasSuffix(out, "the end\n") {
					t.Errorf("stdout is %d bytes ending %q; want the last %d of the log", len(out), out[max(0, len(out)-20):], buildlog.MaxShown)
				}
			}},
		{name: "bob cannot list alice's builds", who: "bob", args: []string{"builds", "alpha"}, wantCode: 1, wantErr: `app "alpha" not found`},
		{name: "bob cannot read alice's build", who: "bob", args: []string{"builds:output", "alpha", id(ok)}, wantCode: 1, wantErr: `app "alpha" not found`},
		{name: "bob cannot read alice's newest build", who: "bob", args: []string{"builds:output", "alpha"}, wantCode: 1, wantErr: `app "alpha" not found`},
	}
	before, err := e.svc.Deploys(context.Background(), platform.System(), "alpha", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, errs, code := e.ssh(s.who, "", s.args...)
			if code != s.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %.2000s\nstderr: %s", code, s.wantCode, out, errs)
			}
			if s.exact && out != s.wantOut {
				t.Errorf("stdout = %q, want %q", out, s.wantOut)
			}
			if !strings.Contains(out, s.wantOut) {
				t.Errorf("stdout = %.2000q, want it to contain %q", out, s.wantOut)
			}
			if !strings.Contains(errs, s.wantErr) {
				t.Errorf("stderr = %q, want it to contain %q", errs, s.wantErr)
			}
			if s.check != nil {
				s.check(t, out)
			}
		})
	}
	// Reading changed nothing.
	after, err := e.svc.Deploys(context.Background(), platform.System(), "alpha", 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("alpha's deploys changed:\nbefore: %v\nafter:  %v", before, after)
	}
}
