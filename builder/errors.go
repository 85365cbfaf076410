package builder

import "errors"

var (
	// ErrImageNotFound means no image record has the requested name:tag.
	ErrImageNotFound = errors.New("image not found")
	// ErrLayerNotFound means a layer an image refers to is not in the store.
	ErrLayerNotFound = errors.New("layer not found")
	// ErrInvalidReference means an image name:tag is malformed.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrDockerfile means a Dockerfile could not be parsed or uses an
	// unsupported instruction; the error names the line.
	ErrDockerfile = errors.New("invalid Dockerfile")
	// ErrProcfile means a Procfile is missing or malformed; the error names
	// the line.
	ErrProcfile = errors.New("invalid Procfile")
	// ErrNoBuildpack means an app has no Dockerfile and none of the
	// buildpacks recognises its files.
	ErrNoBuildpack = errors.New("no buildpack detected")
	// ErrNoProcess means an image has no such process type.
	ErrNoProcess = errors.New("no such process type")
	// ErrStepFailed means a build step ran and failed; see StepError.
	ErrStepFailed = errors.New("build step failed")
	// ErrNoRunner means a build needs to run a RUN step but the Builder was
	// made without a StepRunner.
	ErrNoRunner = errors.New("no step runner configured")
	// ErrUnsafePath means an archive entry or a copy would write outside
	// the layer being made.
	ErrUnsafePath = errors.New("path escapes the layer")
	// ErrNoMirror means no Debian mirror was found in the host's apt sources.
	ErrNoMirror = errors.New("no Debian mirror in the host's apt sources")
)
