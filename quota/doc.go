// Package quota enforces per-app disk and network limits for the engine's containers.
package quota
