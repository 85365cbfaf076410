package pgcluster

import "errors"

// ErrNoBinaries is returned when no PostgreSQL server binaries (initdb,
// postgres) are found on the host.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found")

// ErrNoUser is returned when berth runs as root and the unprivileged OS user
// that should own the cluster does not exist.
var ErrNoUser = errors.New("no unprivileged user to run PostgreSQL")

// ErrNotStarted is returned by methods that need a running cluster.
var ErrNotStarted = errors.New("cluster not started")

// ErrStopped is returned by Start on a cluster that was already stopped.
var ErrStopped = errors.New("cluster stopped")
