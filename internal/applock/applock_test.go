package applock

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEveryWayLeavesNothing: every way of taking and giving back an app's
// lock leaves the map as it was, and the lock still excludes.
func TestEveryWayLeavesNothing(t *testing.T) {
	l := New()
	for i := 0; i < 100; i++ {
		name := strings.Repeat("x", i+1)
		l.Lock(name)()
		if u, ok := l.TryLock(name); ok {
			u()
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if u, err := l.LockCtx(ctx, name+"-cancelled"); err == nil {
			u()
		}
	}
	held := l.Lock("app")
	if _, ok := l.TryLock("app"); ok {
		t.Fatal("tryLock took a held lock")
	}
	var wg sync.WaitGroup
	got := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); l.Lock("app")(); close(got) }()
	select {
	case <-got:
		t.Fatal("lock taken twice")
	case <-time.After(50 * time.Millisecond):
	}
	held()
	wg.Wait()
	if n := l.Len(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}

// TestQueueAndForget: lockers of one app queue, other apps are not held
// up, and the map is empty once all let go.
func TestQueueAndForget(t *testing.T) {
	l := New()
	entries := l.Len
	unlockA := l.Lock("a")
	unlockB := l.Lock("b") // another app is not held up
	if n := entries(); n != 2 {
		t.Fatalf("%d entries while two apps are held, want 2", n)
	}
	unlockB()

	// A second locker of a waits for the first and keeps the entry.
	var order []string
	var mu sync.Mutex
	got := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		unlock := l.Lock("a")
		close(got)
		mu.Lock()
		order = append(order, "second")
		mu.Unlock()
		unlock()
	}()
	for {
		l.mu.Lock()
		refs := l.m["a"].refs
		l.mu.Unlock()
		if refs == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-got:
		t.Fatal("the second locker got a while the first held it")
	default:
	}
	mu.Lock()
	order = append(order, "first")
	mu.Unlock()
	unlockA()
	<-done
	if !reflect.DeepEqual(order, []string{"first", "second"}) {
		t.Errorf("order %v", order)
	}
	if n := entries(); n != 0 {
		t.Errorf("%d entries after every lock was released, want 0", n)
	}

	// Many lockers at once: all serialised, none left behind.
	var wg sync.WaitGroup
	held := 0
	for range 50 {
		wg.Go(func() {
			unlock := l.Lock("c")
			held++ // a race, and a lost count, unless the lock holds
			unlock()
		})
	}
	wg.Wait()
	if held != 50 || entries() != 0 {
		t.Errorf("held %d times (want 50), %d entries left (want 0)", held, entries())
	}
}
