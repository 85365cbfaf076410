package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berthhq/berth/builder"
)

// Image is what deploy needs to know about a release's image.
type Image struct {
	// Layers are the image's layer directories, the bottom layer first.
	Layers []string
	// Env is the image's environment in KEY=value form.
	Env []string
	// Entrypoint and Cmd are the image's OCI entrypoint and command.
	Entrypoint, Cmd []string
	// WorkingDir is the image's working directory; empty means "/".
	WorkingDir string
	// UID and GID are the container IDs the app runs as (the image's User).
	UID, GID uint32
	// Groups are the app's supplementary groups, GID first, as Docker
	// sets them from the image's /etc/group.
	Groups []uint32
	// Port is the image's lowest exposed TCP port, 0 when it exposes none.
	Port int
	// Processes is the Procfile process table; nil means "web" runs
	// Entrypoint+Cmd.
	Processes map[string]string
	// AppJSON is app.json from the working directory, nil when absent.
	AppJSON []byte
	// Checks is the CHECKS file from the working directory, nil when absent.
	Checks []byte
}

// ImageSource resolves an image reference of a release into its layers and
// configuration. BuilderImages is the implementation over builder's store.
type ImageSource interface {
	// Resolve returns the image stored under ref.
	Resolve(ctx context.Context, ref string) (*Image, error)
}

// BuilderImages is the ImageSource over builder's layer and image store.
type BuilderImages struct {
	store *builder.Store
}

// NewBuilderImages returns an ImageSource that reads images from store.
func NewBuilderImages(store *builder.Store) *BuilderImages {
	return &BuilderImages{store: store}
}

// Resolve implements ImageSource.
func (b *BuilderImages) Resolve(_ context.Context, ref string) (*Image, error) {
	img, err := b.store.Image(ref)
	if err != nil {
		return nil, fmt.Errorf("resolve image %s: %w", ref, err)
	}
	dirs, err := b.store.LayerDirs(img)
	if err != nil {
		return nil, fmt.Errorf("resolve image %s: %w", ref, err)
	}
	c := img.Config
	out := &Image{
		Layers:     dirs,
		Env:        c.Env,
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		WorkingDir: c.WorkingDir,
		Port:       lowestTCPPort(c.ExposedPorts),
		Processes:  img.Processes,
	}
	u, err := builder.ResolveUser(dirs, c.User)
	if err != nil {
		return nil, fmt.Errorf("resolve image %s: %w", ref, err)
	}
	out.UID, out.GID, out.Groups = u.UID, u.GID, u.Groups
	wd := c.WorkingDir
	if wd == "" {
		wd = "/"
	}
	out.AppJSON, _ = readLayerFile(dirs, path.Join(wd, "app.json"))
	out.Checks, _ = readLayerFile(dirs, path.Join(wd, "CHECKS"))
	return out, nil
}

// lowestTCPPort picks the lowest "N/tcp" (or bare "N") exposed port.
func lowestTCPPort(ports map[string]struct{}) int {
	var found []int
	for p := range ports {
		num, proto, _ := strings.Cut(p, "/")
		if proto != "" && proto != "tcp" {
			continue
		}
		if n, err := strconv.Atoi(num); err == nil && n > 0 && n < 65536 {
			found = append(found, n)
		}
	}
	if len(found) == 0 {
		return 0
	}
	sort.Ints(found)
	return found[0]
}

// readLayerFile reads rel from the topmost layer that has it; a whiteout
// in a higher layer hides lower copies.
func readLayerFile(layers []string, rel string) ([]byte, bool) {
	rel = strings.TrimPrefix(path.Clean("/"+rel), "/")
	for i := len(layers) - 1; i >= 0; i-- {
		p := filepath.Join(layers[i], rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			return nil, false // whiteout
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > 1<<20 {
			return nil, false
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, false
		}
		return b, true
	}
	return nil, false
}

// isNotExist reports whether err means a missing file.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
