package main

import (
	"context"
	"fmt"
	"io"

	"github.com/berthhq/berth/builder"
	"github.com/berthhq/berth/gitreceive"
)

// builderAdapter gives gitreceive the one build call it needs.
type builderAdapter struct{ b *builder.Builder }

func (a builderAdapter) Build(ctx context.Context, app, dir string, out io.Writer) (string, map[string]string, error) {
	res, err := a.b.Build(ctx, builder.BuildRequest{App: app, ContextDir: dir, Output: out})
	if err != nil {
		return "", nil, err
	}
	return res.Image.Ref, res.Image.Processes, nil
}

func (d *daemon) extensions() []gitreceive.Extension {
	return []gitreceive.Extension{
		{Name: "images:list", Summary: "list images (admin)", Admin: true, Run: func(ctx context.Context, _ gitreceive.Actor, _ []string, env *gitreceive.Env) error {
			imgs, err := d.store.Images()
			if err != nil {
				return err
			}
			for _, img := range imgs {
				fmt.Fprintf(env.Stdout, "%s\t%d layers\n", img.Ref, len(img.Layers))
			}
			return nil
		}},
	}
}
