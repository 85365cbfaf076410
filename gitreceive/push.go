package gitreceive

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/berthhq/berth/platform"
)

const zeroSHA = "0000000000000000000000000000000000000000"

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// refUpdate is one line git gives pre-receive: old and new object and the ref.
type refUpdate struct {
	old, new, ref string
}

// parseRefUpdates reads pre-receive's stdin; a malformed line is an error.
func parseRefUpdates(r io.Reader) ([]refUpdate, error) {
	var ups []refUpdate
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || !shaRE.MatchString(f[0]) || !shaRE.MatchString(f[1]) || !strings.HasPrefix(f[2], "refs/") {
			return nil, fmt.Errorf("malformed ref update %q: %w", truncate(sc.Text(), 120), ErrUsage)
		}
		ups = append(ups, refUpdate{old: f[0], new: f[1], ref: f[2]})
		if len(ups) > 10000 {
			return nil, fmt.Errorf("too many ref updates in one push: %w", ErrUsage)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read ref updates: %w", err)
	}
	return ups, nil
}

// isDeployRef says whether a push to ref deploys: the app's deploy branch,
// and master too while the deploy branch is the default main.
func isDeployRef(ref, branch string) bool {
	return ref == "refs/heads/"+branch || (branch == "main" && ref == "refs/heads/master")
}

// hook runs inside the daemon for `berth _hook pre-receive PUSH QUARANTINE`,
// which git runs during a push: it builds and rolls out the pushed commit
// and fails the push (so git keeps the old ref) when either fails.
func (c *Commands) hook(inv *Invocation) error {
	if inv.Args[0] != "pre-receive" {
		return &UsageError{Command: "_hook", Msg: "only pre-receive is handled"}
	}
	if c.hooks == nil {
		return errors.New("hook: no SSH server in this daemon")
	}
	p, ok := c.hooks.lookupPush(inv.Args[1])
	if !ok {
		return fmt.Errorf("hook: this push is not known to the daemon (was berth restarted during the push?): %w", platform.ErrNotFound)
	}
	quarantine := ""
	if len(inv.Args) == 3 {
		quarantine = inv.Args[2]
	}
	ups, err := parseRefUpdates(inv.env.Stdin)
	if err != nil {
		return err
	}
	return c.preReceive(inv.ctx, p, quarantine, ups, inv.env.Stdout)
}

func (c *Commands) preReceive(ctx context.Context, p *push, quarantine string, ups []refUpdate, out io.Writer) error {
	a, err := c.svc.App(ctx, p.actor, p.app)
	if err != nil {
		return err
	}
	var deployUp *refUpdate
	for i := range ups {
		u := &ups[i]
		switch {
		case isDeployRef(u.ref, a.DeployBranch):
			if u.new == zeroSHA {
				return fmt.Errorf("deleting %s would leave %s with nothing to deploy; it is refused: %w", strings.TrimPrefix(u.ref, "refs/heads/"), a.Name, platform.ErrConflict)
			}
			if deployUp != nil {
				return fmt.Errorf("push one deploy branch at a time (%s and %s both deploy %s): %w", deployUp.ref, u.ref, a.Name, platform.ErrConflict)
			}
			deployUp = u
		case strings.HasPrefix(u.ref, "refs/heads/"):
			fmt.Fprintf(out, "-----> %s accepted; only pushes to %s deploy %s\n", strings.TrimPrefix(u.ref, "refs/heads/"), a.DeployBranch, a.Name)
		}
	}
	if deployUp == nil {
		return nil
	}
	// The push already holds the app's lock (see Server.handleGit).
	return c.deployCommit(ctx, p, a, quarantine, deployUp.new, out)
}

func (c *Commands) deployCommit(ctx context.Context, p *push, a platform.App, quarantine, sha string, pusher io.Writer) error {
	start := time.Now()
	logPath, err := c.deploy.NewBuildLogPath(a.Name)
	if err != nil {
		return fmt.Errorf("build log: %w", err)
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create build log: %w", err)
	}
	defer logFile.Close()
	out := io.MultiWriter(pusher, logFile)

	d, err := c.svc.StartDeploy(ctx, p.actor, a.Name, sha, logPath)
	if err != nil {
		return err
	}
	fail := func(stage string, err error) error {
		reason := stage + ": " + userMessage(err)
		if _, serr := c.svc.SetDeployStatus(context.WithoutCancel(ctx), d.ID, platform.DeployFailed, reason, 0); serr != nil {
			c.logger.Error("record failed deploy", "app", a.Name, "err", serr)
		}
		fmt.Fprintf(out, " !     %s\n !     %s failed; the push is rejected and the previous release keeps serving\n", reason, a.Name)
		return exitError(1)
	}
	fmt.Fprintf(out, "-----> Deploying %s (%s) as %s\n", a.Name, shortSHA(sha), p.actor.Name)
	if _, err := c.svc.SetDeployStatus(ctx, d.ID, platform.DeployBuilding, "", 0); err != nil {
		return err
	}

	buildRoot := filepath.Join(c.cfg.DataDir, "builds")
	if err := os.MkdirAll(buildRoot, 0o700); err != nil {
		return fail("prepare build", err)
	}
	dir, err := os.MkdirTemp(buildRoot, a.Name+"-")
	if err != nil {
		return fail("prepare build", err)
	}
	defer os.RemoveAll(dir)
	t := time.Now()
	if _, err := checkoutTree(c.hooks.repoPath(a.Name), quarantine, sha, dir, out); err != nil {
		return fail("check out", err)
	}
	fmt.Fprintf(out, "-----> Checked out %s (%.2fs)\n", shortSHA(sha), time.Since(t).Seconds())

	t = time.Now()
	image, procs, err := c.builder.Build(ctx, a.Name, dir, a.Name+":"+sha[:12], out)
	if err != nil {
		return fail("build", err)
	}
	fmt.Fprintf(out, "-----> Built %s (%.2fs)\n", image, time.Since(t).Seconds())

	rel, err := c.svc.CreateRelease(ctx, p.actor, a.Name, platform.ReleaseSpec{Image: image, Processes: procs, Description: "Deploy " + shortSHA(sha)})
	if err != nil {
		return fail("release", err)
	}
	if _, err := c.svc.SetDeployStatus(ctx, d.ID, platform.DeployReleasing, "", rel.Version); err != nil {
		return err
	}
	fmt.Fprintf(out, "-----> Releasing v%d\n", rel.Version)
	t = time.Now()
	if err := c.deploy.Rollout(ctx, a.Name, rel, out); err != nil {
		return fail("rollout of v"+fmt.Sprint(rel.Version), err)
	}
	if _, err := c.svc.SetDeployStatus(ctx, d.ID, platform.DeploySucceeded, "", rel.Version); err != nil {
		c.logger.Error("record deploy", "app", a.Name, "err", err)
	}
	fmt.Fprintf(out, "-----> Rolled out v%d (%.2fs)\n", rel.Version, time.Since(t).Seconds())
	fmt.Fprintf(out, "=====> %s v%d deployed to http://%s.%s/ in %.1fs\n", a.Name, rel.Version, a.Name, c.cfg.Domain, time.Since(start).Seconds())
	return nil
}
