package gitreceive

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/berthhq/berth/internal/buildlog"
	"github.com/berthhq/berth/platform"
)

// builds lists an app's deploys (Heroku's builds), newest first.
func (c *Commands) builds(inv *Invocation) error {
	app := inv.Args[0]
	ds, err := c.svc.Deploys(inv.ctx, inv.actor, app, 0)
	if err != nil {
		return err
	}
	w := inv.env.Stdout
	header(w, "%s builds", app)
	if len(ds) == 0 {
		_, err := fmt.Fprintln(w, "none yet: git push to deploy")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tRELEASE\tCOMMIT\tBY\tSTARTED\tREASON")
	for _, d := range ds {
		rel := "-"
		if d.ReleaseVersion > 0 {
			rel = "v" + strconv.Itoa(d.ReleaseVersion)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s", d.ID, d.Status, rel, orDash(shortSHA(d.GitCommit)), orDash(d.CreatedBy),
			d.StartedAt.UTC().Format("2006-01-02 15:04:05"))
		// Only a failure has a reason; leaving the cell out keeps the
		// other lines free of trailing padding.
		if d.Status == platform.DeployFailed && d.Reason != "" {
			fmt.Fprintf(tw, "\t%s", oneLine(d.Reason))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// buildsOutput prints a deploy's build output as it was kept: the end of it,
// as the dashboard shows it. Notes about it go to stderr, so that stdout is
// the log alone.
func (c *Commands) buildsOutput(inv *Invocation) error {
	app := inv.Args[0]
	var d platform.Deploy
	if len(inv.Args) == 2 {
		id, err := parseBuildID(inv.Args[1])
		if err != nil {
			return err
		}
		d, err = c.svc.Deploy(inv.ctx, inv.actor, app, id)
		var nf *platform.NotFoundError
		if errors.As(err, &nf) && nf.Kind == "deploy" {
			// Another app's deploy is not found either, so ids say
			// nothing about apps the actor may not see.
			return &platform.NotFoundError{Kind: "build", Name: inv.Args[1], Hint: "builds " + app + " lists " + app + "'s builds"}
		}
		if err != nil {
			return err
		}
	} else {
		ds, err := c.svc.Deploys(inv.ctx, inv.actor, app, 1)
		if err != nil {
			return err
		}
		if len(ds) == 0 {
			return fmt.Errorf("%s has no builds yet: git push to deploy it: %w", app, platform.ErrNotFound)
		}
		d = ds[0]
	}
	missing := fmt.Errorf("the output of build %d of %s is no longer kept (its log file is gone): %w", d.ID, app, platform.ErrNotFound)
	if d.BuildLogPath == "" {
		return missing
	}
	b, truncated, err := buildlog.ReadTail(d.BuildLogPath, buildlog.MaxShown)
	if errors.Is(err, os.ErrNotExist) {
		return missing
	}
	if err != nil {
		return fmt.Errorf("read the output of build %d of %s: %w", d.ID, app, err)
	}
	if !d.Status.Final() {
		fmt.Fprintf(inv.env.Stderr, "-----> build %d of %s is still %s; this is its output so far\n", d.ID, app, d.Status)
	}
	if truncated {
		fmt.Fprintf(inv.env.Stderr, "-----> build %d's output is longer than %d MiB; only its end is shown\n", d.ID, buildlog.MaxShown>>20)
	}
	_, err = inv.env.Stdout.Write(b)
	return err
}

// parseBuildID parses a deploy id as `builds` shows it.
func parseBuildID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, &platform.InvalidError{Field: "build id", Value: truncate(s, 64), Reason: "give a build's number as `builds APP` lists it"}
	}
	return id, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a reason on its line and in its cell: control characters
// (newlines, tabs, escapes from a build's output) become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
