package deploy

import "errors"

var (
	// ErrHealthCheck is returned when a new instance did not pass its checks;
	// the message says which check and why, and the old instances still serve.
	ErrHealthCheck = errors.New("health check failed")
	// ErrNoRelease is returned when an app has no deployable release yet.
	ErrNoRelease = errors.New("app has no deployed release")
	// ErrNoImage is returned for a release that carries no image (a config
	// change made before the first deploy).
	ErrNoImage = errors.New("release has no image")
	// ErrUnknownProcessType is returned for a process type the release does not define.
	ErrUnknownProcessType = errors.New("unknown process type")
	// ErrInvalidChecks wraps every parse failure of a CHECKS file or of
	// app.json healthchecks; the message names the line or field.
	ErrInvalidChecks = errors.New("invalid health checks")
	// ErrClosed is returned by operations on a Deployer after Close.
	ErrClosed = errors.New("deployer is closed")
	// ErrAppStopped is returned when an operation needs a running app that
	// was stopped with StopApp; StartApp starts it again.
	ErrAppStopped = errors.New("app is stopped")
)
