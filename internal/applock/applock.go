// Package applock serialises a daemon's changes of one app (a push, config,
// scale, rollback, restart, destroy), so that a release is never rolled out
// after a newer one. An app's entry lives only while someone holds or waits
// for its lock, so names that are not apps leave nothing behind: the map
// holds no more apps than there are operations in flight.
package applock

import (
	"context"
	"sync"
)

// Locks holds one lock per app name.
type Locks struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds a token while locked
	refs int           // holders and waiters; guarded by Locks.mu
}

// New returns an empty set of app locks.
func New() *Locks {
	return &Locks{m: map[string]*entry{}}
}

// ref returns app's entry, counting the caller in until unref.
func (l *Locks) ref(app string) *entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[app]
	if !ok {
		e = &entry{ch: make(chan struct{}, 1)}
		l.m[app] = e
	}
	e.refs++
	return e
}

func (l *Locks) unref(app string, e *entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, app)
	}
}

// release returns the function that gives app's lock back; it must be
// called once.
func (l *Locks) release(app string, e *entry) func() {
	return func() {
		<-e.ch
		l.unref(app, e)
	}
}

// Lock waits for app's lock and returns its release.
func (l *Locks) Lock(app string) func() {
	e := l.ref(app)
	e.ch <- struct{}{}
	return l.release(app, e)
}

// TryLock takes app's lock if it is free.
func (l *Locks) TryLock(app string) (func(), bool) {
	e := l.ref(app)
	select {
	case e.ch <- struct{}{}:
		return l.release(app, e), true
	default:
		l.unref(app, e)
		return nil, false
	}
}

// LockCtx waits for app's lock until ctx ends.
func (l *Locks) LockCtx(ctx context.Context, app string) (func(), error) {
	e := l.ref(app)
	select {
	case e.ch <- struct{}{}:
		return l.release(app, e), nil
	case <-ctx.Done():
		l.unref(app, e)
		return nil, ctx.Err()
	}
}

// Len is the number of apps whose lock is held or awaited.
func (l *Locks) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
