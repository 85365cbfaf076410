//go:build !linux

package engine

// MaybeInit returns at once: the engine's re-exec roles exist only on Linux.
func MaybeInit() {}
