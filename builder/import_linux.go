package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ImportImage stores a go-containerregistry image under ref: each layer is
// unpacked once (layers already stored, by diff ID, are reused) with OCI
// whiteouts turned into overlay whiteouts. Progress lines go to out, which
// may be nil.
func (s *Store) ImportImage(ctx context.Context, img v1.Image, ref string, out io.Writer) (*Image, error) {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = io.Discard
	}
	s.gc.RLock()
	defer s.gc.RUnlock()
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("list image layers: %w", err)
	}
	rec := &Image{Ref: ref, Config: cf.Config}
	var sizes []int64
	for i, l := range layers {
		diffID, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("read layer %d diff id: %w", i, err)
		}
		id := diffID.Hex
		if !hexIDRe.MatchString(id) {
			return nil, fmt.Errorf("import layer %d: unsupported digest %s", i, diffID)
		}
		if s.HasLayer(id) {
			fmt.Fprintf(out, "layer %d/%d %.12s: already stored\n", i+1, len(layers), id)
		} else {
			fmt.Fprintf(out, "layer %d/%d %.12s: unpacking\n", i+1, len(layers), id)
			if err := s.unpackLayer(ctx, l, id); err != nil {
				return nil, fmt.Errorf("import layer %.12s: %w", id, err)
			}
		}
		info, err := s.LayerInfo(id)
		if err != nil {
			return nil, err
		}
		rec.Layers = append(rec.Layers, id)
		sizes = append(sizes, info.Size)
	}
	rec.History = importHistory(cf.History, rec.Layers, sizes)
	if err := s.PutImage(rec); err != nil {
		return nil, err
	}
	s.log.Info("image imported", "ref", ref, "layers", len(rec.Layers))
	return rec, nil
}

func (s *Store) unpackLayer(ctx context.Context, l v1.Layer, id string) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return fmt.Errorf("open layer: %w", err)
	}
	defer rc.Close()
	tmp, diff, err := s.newTempLayer()
	if err != nil {
		return err
	}
	if err := unpackTar(ctx, rc, diff, unpackOptions{whiteouts: true, keepOwner: true}); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	// Reading to the end lets the verifying reader check the digest.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("verify layer: %w", err)
	}
	_, size, err := digestTree(diff)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("measure layer: %w", err)
	}
	_, err = s.commitLayerAs(tmp, id, size)
	return err
}

// importHistory pairs the config's history with the layers when they line
// up, and otherwise describes each layer as imported.
func importHistory(h []v1.History, layers []string, sizes []int64) []History {
	var out []History
	nonEmpty := 0
	for _, e := range h {
		if !e.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty == len(layers) && len(h) > 0 {
		li := 0
		for _, e := range h {
			hh := History{CreatedBy: e.CreatedBy, EmptyLayer: e.EmptyLayer}
			if !e.EmptyLayer {
				hh.Layer, hh.Size = layers[li], sizes[li]
				li++
			}
			out = append(out, hh)
		}
		return out
	}
	for i, l := range layers {
		out = append(out, History{CreatedBy: "imported layer", Layer: l, Size: sizes[i]})
	}
	return out
}

// ImportOCILayout imports the image of an OCI image layout directory. When
// the layout holds several images (or a multi-platform index), the one for
// this machine's platform is taken.
func (s *Store) ImportOCILayout(ctx context.Context, dir, ref string, out io.Writer) (*Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("open oci layout: %w", err)
	}
	img, err := pickImage(idx)
	if err != nil {
		return nil, fmt.Errorf("open oci layout %s: %w", dir, err)
	}
	return s.ImportImage(ctx, img, ref, out)
}

func pickImage(idx v1.ImageIndex) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	var fallback *v1.Descriptor
	for i := range m.Manifests {
		d := m.Manifests[i]
		if d.Platform != nil && (d.Platform.OS != "linux" || d.Platform.Architecture != runtime.GOARCH) {
			continue
		}
		if d.MediaType.IsIndex() {
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("open nested index: %w", err)
			}
			if img, err := pickImage(child); err == nil {
				return img, nil
			}
			continue
		}
		if d.MediaType.IsImage() {
			if d.Platform != nil {
				return idx.Image(d.Digest)
			}
			if fallback == nil {
				fallback = &d
			}
		}
	}
	if fallback == nil {
		return nil, fmt.Errorf("no linux/%s image in index", runtime.GOARCH)
	}
	return idx.Image(fallback.Digest)
}

// ImportDockerArchive imports the image of a `docker save` tarball. tag
// picks one image when the archive holds several; empty takes the only one.
func (s *Store) ImportDockerArchive(ctx context.Context, path, tag, ref string, out io.Writer) (*Image, error) {
	var t *name.Tag
	if tag != "" {
		nt, err := name.NewTag(tag)
		if err != nil {
			return nil, fmt.Errorf("parse tag %q: %w", tag, err)
		}
		t = &nt
	}
	img, err := tarball.ImageFromPath(path, t)
	if err != nil {
		return nil, fmt.Errorf("open docker archive: %w", err)
	}
	return s.ImportImage(ctx, img, ref, out)
}

// Import stores the image at path under ref: an OCI image layout when path
// is a directory, a `docker save` tarball when it is a file.
func (s *Store) Import(ctx context.Context, path, ref string, out io.Writer) (*Image, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	if fi.IsDir() {
		return s.ImportOCILayout(ctx, path, ref, out)
	}
	return s.ImportDockerArchive(ctx, path, "", ref, out)
}

// PullOptions tunes Pull.
type PullOptions struct {
	// Insecure allows plain HTTP to the registry (for a local registry).
	Insecure bool
	// Ref is the local name:tag; empty stores it under the remote name.
	Ref string
}

// Pull fetches src (e.g. "localhost:5000/busybox:1.36") from its registry
// for this machine's platform and stores it.
func (s *Store) Pull(ctx context.Context, src string, opt PullOptions, out io.Writer) (*Image, error) {
	var nopts []name.Option
	if opt.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(src, nopts...)
	if err != nil {
		return nil, fmt.Errorf("parse reference %q: %w", src, err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", src, err)
	}
	ref := opt.Ref
	if ref == "" {
		ref = r.Context().RepositoryStr()
		if t, ok := r.(name.Tag); ok {
			ref += ":" + t.TagStr()
		}
	}
	return s.ImportImage(ctx, img, ref, out)
}
