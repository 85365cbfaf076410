package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/berthhq/berth/builder"
	"github.com/berthhq/berth/deploy"
	"github.com/berthhq/berth/gitreceive"
	"github.com/berthhq/berth/platform"
	"github.com/berthhq/berth/quota"
)

// builderAdapter gives gitreceive the one build call it needs.
type builderAdapter struct{ b *builder.Builder }

func (a builderAdapter) Build(ctx context.Context, app, dir, tag string, out io.Writer) (string, map[string]string, error) {
	res, err := a.b.Build(ctx, builder.BuildRequest{App: app, ContextDir: dir, Tag: tag, Output: out})
	if err != nil {
		return "", nil, err
	}
	procs := res.Image.Processes
	if len(procs) == 0 {
		// No Procfile: web runs the image's own ENTRYPOINT and CMD.
		procs = map[string]string{"web": platform.ImageCommand}
	}
	return res.Image.Ref, procs, nil
}

// appDeployer is the deployer the front doors use: deploy's, plus the
// quota's app-wide state (disk usage, and removal on apps:destroy).
type appDeployer struct {
	*deploy.Deployer
	quota *quota.EngineQuota
	disk  *quota.Disk
}

// Destroy removes the app's containers, then its disk quota, so that a new
// app of the same name starts from nothing.
func (a appDeployer) Destroy(ctx context.Context, app string) error {
	if err := a.Deployer.Destroy(ctx, app); err != nil {
		return err
	}
	if err := a.quota.RemoveApp(ctx, app); err != nil {
		return fmt.Errorf("remove %s's disk quota: %w", app, err)
	}
	return nil
}

// DiskReport writes the app's disk limit and use (resource:report).
func (a appDeployer) DiskReport(ctx context.Context, app string, w io.Writer) error {
	if a.disk == nil {
		_, err := fmt.Fprintln(w, "Disk driver:  none works on this host (disk limits are refused)")
		return err
	}
	u, err := a.disk.Usage(ctx, app)
	if err != nil && !errors.Is(err, quota.ErrNoQuota) {
		return err
	}
	_, err = quota.Report{App: app, DiskDriver: a.disk.Driver(), DiskLimit: u.LimitBytes, Disk: u}.WriteTo(w)
	return err
}

// extensions are the commands of the image store (admin only: images are
// shared by every app on the host).
func (d *daemon) extensions() []gitreceive.Extension {
	return []gitreceive.Extension{
		{Name: "base:create", Usage: "busybox|debian", Summary: "create a base image: busybox (from busybox-static) or debian (debootstrap from the host's apt sources)",
			MinArgs: 1, MaxArgs: 1, Admin: true, Run: d.baseCreate},
		{Name: "images:list", Summary: "list images with their layer counts and sizes", Admin: true, Run: d.imagesList},
		{Name: "images:inspect", Usage: "IMAGE", Summary: "show an image's config and the instruction behind each layer", MinArgs: 1, MaxArgs: 1, Admin: true, Run: d.imagesInspect},
		{Name: "images:rm", Usage: "IMAGE", Summary: "remove an image (its layers go at the next images:prune)", MinArgs: 1, MaxArgs: 1, Admin: true, Run: d.imagesRemove},
		{Name: "images:import", Usage: "PATH NAME:TAG", Summary: "import an OCI image layout (directory) or a `docker save` tarball from the host",
			MinArgs: 2, MaxArgs: 2, Admin: true, Run: d.imagesImport},
		{Name: "images:pull", Usage: "REGISTRY/NAME:TAG [NAME:TAG]", Summary: "pull an image from a registry",
			MinArgs: 1, MaxArgs: 2, Admin: true, Run: d.imagesPull},
		{Name: "images:prune", Summary: "delete layers no image or build cache uses", Admin: true, Run: d.imagesPrune},
		{Name: "info", Summary: "show how this host runs containers: user namespaces, cgroups, quota driver", Run: d.info},
	}
}

func (d *daemon) baseCreate(ctx context.Context, _ gitreceive.Actor, args []string, env *gitreceive.Env) error {
	switch args[0] {
	case "busybox":
		img, err := d.store.CreateBusyboxBase(ctx, "", "", env.Stdout)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "-----> %s ready (%d layer)\n", img.Ref, len(img.Layers))
	case "debian":
		img, err := d.store.CreateDebianBase(ctx, builder.DebianOptions{Output: env.Stdout})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "-----> %s ready (%d layers)\n", img.Ref, len(img.Layers))
	default:
		return &platform.InvalidError{Field: "base image", Value: args[0], Reason: "choose busybox or debian"}
	}
	return nil
}

func (d *daemon) imagesList(_ context.Context, _ gitreceive.Actor, _ []string, env *gitreceive.Env) error {
	imgs, err := d.store.Images()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tLAYERS\tSIZE\tCREATED")
	for _, img := range imgs {
		var size int64
		for _, l := range img.Layers {
			if info, err := d.store.LayerInfo(l); err == nil {
				size += info.Size
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", img.Ref, len(img.Layers), platform.FormatSize(size), img.Created.UTC().Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}

func (d *daemon) imagesInspect(_ context.Context, _ gitreceive.Actor, args []string, env *gitreceive.Env) error {
	img, err := d.store.Image(args[0])
	if err != nil {
		return err
	}
	w := env.Stdout
	fmt.Fprintf(w, "=====> %s (%s)\n", img.Ref, img.ID)
	c := img.Config
	fmt.Fprintf(w, "Entrypoint: %q\nCmd: %q\nWorkingDir: %s\nUser: %s\nEnv: %q\n", c.Entrypoint, c.Cmd, c.WorkingDir, c.User, c.Env)
	ports := make([]string, 0, len(c.ExposedPorts))
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	fmt.Fprintf(w, "ExposedPorts: %s\n", strings.Join(ports, " "))
	for t, cmd := range img.Processes {
		fmt.Fprintf(w, "Process %s: %s\n", t, cmd)
	}
	fmt.Fprintln(w, "=====> History")
	for _, h := range img.History {
		fmt.Fprintf(w, "%s\n", h.CreatedBy)
	}
	return nil
}

func (d *daemon) imagesImport(ctx context.Context, _ gitreceive.Actor, args []string, env *gitreceive.Env) error {
	img, err := d.store.Import(ctx, args[0], args[1], env.Stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "-----> imported %s (%d layers)\n", img.Ref, len(img.Layers))
	return nil
}

func (d *daemon) imagesPull(ctx context.Context, _ gitreceive.Actor, args []string, env *gitreceive.Env) error {
	opt := builder.PullOptions{}
	if len(args) == 2 {
		opt.Ref = args[1]
	}
	img, err := d.store.Pull(ctx, args[0], opt, env.Stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "-----> pulled %s (%d layers)\n", img.Ref, len(img.Layers))
	return nil
}

func (d *daemon) imagesRemove(_ context.Context, _ gitreceive.Actor, args []string, env *gitreceive.Env) error {
	if err := d.store.RemoveImage(args[0]); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "-----> removed %s\n", args[0])
	return nil
}

func (d *daemon) imagesPrune(_ context.Context, _ gitreceive.Actor, _ []string, env *gitreceive.Env) error {
	rep, err := d.store.Prune(true)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "-----> removed %d layers (%s) and %d cache entries\n", len(rep.Layers), platform.FormatSize(rep.Bytes), rep.CacheEntries)
	return nil
}

func (d *daemon) info(_ context.Context, _ gitreceive.Actor, _ []string, env *gitreceive.Env) error {
	w := env.Stdout
	fmt.Fprintf(w, "=====> berth %s\n", version)
	fmt.Fprintf(w, "Data directory:   %s\n", d.cfg.DataDir)
	fmt.Fprintf(w, "Database:         %s\n", d.db.where)
	fmt.Fprintf(w, "Domain:           %s\n", d.cfg.Domain)
	if d.disk != nil {
		fmt.Fprintf(w, "Disk quotas:      %s (%s)\n", d.disk.Driver(), d.disk.Mechanism())
		for _, st := range d.disk.Detect() {
			state := "available"
			if !st.Available {
				state = "unavailable: " + st.Reason
			}
			fmt.Fprintf(w, "  driver %-9s %s\n", st.Name+":", state)
		}
	} else {
		fmt.Fprintln(w, "Disk quotas:      none (no driver works on this host; disk limits are refused)")
	}
	fmt.Fprintln(w, "Network limits:   tc on each container's host veth (tbf, ifb for the other direction)")
	if d.engine.UserNamespaces() {
		fmt.Fprintln(w, "User namespaces:  yes (shared layers through idmapped mounts)")
	} else {
		fmt.Fprintln(w, "User namespaces:  no: this kernel cannot idmap the layers' filesystem; containers share the host's UIDs")
	}
	return nil
}
