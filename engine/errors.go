package engine

import "errors"

var (
	// ErrNotFound is returned for a container ID that the engine does not know.
	ErrNotFound = errors.New("container not found")
	// ErrInvalidSpec wraps every validation failure of a Spec; the message names the field.
	ErrInvalidSpec = errors.New("invalid container spec")
	// ErrNotRunning is returned by operations that need a running container.
	ErrNotRunning = errors.New("container is not running")
	// ErrAlreadyStarted is returned by Start on a container that was started before.
	ErrAlreadyStarted = errors.New("container was already started")
	// ErrSubnetCollision is returned by New when the bridge subnet overlaps a host route.
	ErrSubnetCollision = errors.New("bridge subnet collides with a host route")
	// ErrAddressesExhausted is returned when the bridge subnet has no free address left.
	ErrAddressesExhausted = errors.New("no free address in bridge subnet")
	// ErrUnsupported is returned when the kernel lacks a feature the engine needs.
	ErrUnsupported = errors.New("kernel feature not supported")
	// ErrInvalidLogLine is returned by ParseLogLine for a line that is not in the log format.
	ErrInvalidLogLine = errors.New("invalid log line")
)
