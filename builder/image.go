package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Image is a stored image: an ordered list of layers plus an OCI image
// config, known under one name:tag.
type Image struct {
	// Ref is the normalised name:tag.
	Ref string `json:"ref"`
	// ID is the sha256 (hex) of the layer list and config; two refs with
	// the same content have the same ID.
	ID string `json:"id"`
	// Layers are layer IDs, the bottom (base) layer first.
	Layers []string `json:"layers"`
	// Config is the OCI runtime config: Env, Cmd, Entrypoint, WorkingDir,
	// User, ExposedPorts, Labels, StopSignal.
	Config v1.Config `json:"config"`
	// History has one entry per instruction that made the image, in order.
	History []History `json:"history"`
	// Processes is the Procfile process table (type → command), nil when
	// the image has no Procfile; deploy then runs Entrypoint+Cmd as "web".
	Processes map[string]string `json:"processes,omitempty"`
	// Created is when the record was written.
	Created time.Time `json:"created"`
}

// History records the instruction that made one step of an image.
type History struct {
	// CreatedBy is the instruction, e.g. "RUN make".
	CreatedBy string `json:"created_by"`
	// Layer is the layer the step made; empty for config-only steps.
	Layer string `json:"layer,omitempty"`
	// Size is the layer's size in bytes on disk (0 for config-only steps).
	Size int64 `json:"size"`
	// EmptyLayer is true for steps that only changed the config.
	EmptyLayer bool `json:"empty_layer,omitempty"`
}

// Size is the sum of the image's layer sizes as recorded in its history.
func (img *Image) Size() int64 {
	var n int64
	for _, h := range img.History {
		n += h.Size
	}
	return n
}

// ProcessTypes lists the image's process types: the Procfile's, or "web"
// alone when the image has no Procfile but has a command.
func (img *Image) ProcessTypes() []string {
	if len(img.Processes) > 0 {
		out := make([]string, 0, len(img.Processes))
		for k := range img.Processes {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	if len(img.Config.Entrypoint)+len(img.Config.Cmd) > 0 {
		return []string{"web"}
	}
	return nil
}

// ProcessArgs returns the argv that starts process type typ. A Procfile
// command runs through "/bin/sh -c" (so $PORT and friends expand, as on
// Heroku); without a Procfile, "web" is the image's Entrypoint followed by
// its Cmd.
func (img *Image) ProcessArgs(typ string) ([]string, error) {
	if len(img.Processes) > 0 {
		cmd, ok := img.Processes[typ]
		if !ok {
			return nil, fmt.Errorf("%w: %q (the Procfile has %s)", ErrNoProcess, typ, strings.Join(img.ProcessTypes(), ", "))
		}
		return []string{"/bin/sh", "-c", cmd}, nil
	}
	args := append(append([]string{}, img.Config.Entrypoint...), img.Config.Cmd...)
	if typ != "web" || len(args) == 0 {
		return nil, fmt.Errorf("%w: %q (the image has no Procfile; only \"web\" runs its CMD)", ErrNoProcess, typ)
	}
	return args, nil
}

// computeID hashes the parts of the image that define its content.
func (img *Image) computeID() string {
	b, _ := json.Marshal(struct {
		Layers    []string          `json:"layers"`
		Config    v1.Config         `json:"config"`
		Processes map[string]string `json:"processes,omitempty"`
	}{img.Layers, img.Config, img.Processes})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

var refRe = regexp.MustCompile(`^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)

// NormalizeRef checks an image reference and adds ":latest" when it has no
// tag. Registry hosts are kept as part of the name.
func NormalizeRef(ref string) (string, error) {
	if ref == "" || len(ref) > 255 || !refRe.MatchString(ref) {
		return "", fmt.Errorf("%w: %q (want name[:tag] in lower case, e.g. myapp:v3)", ErrInvalidReference, ref)
	}
	last := ref[strings.LastIndex(ref, "/")+1:]
	if !strings.Contains(last, ":") {
		ref += ":latest"
	}
	return ref, nil
}
