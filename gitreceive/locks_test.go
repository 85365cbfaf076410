package gitreceive

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/platform"
)

// TestAppLocksLeaveNothing: every way of taking and giving back an app's
// lock leaves the map as it was, and the lock still excludes.
func TestAppLocksLeaveNothing(t *testing.T) {
	l := newAppLocks()
	for i := 0; i < 100; i++ {
		name := strings.Repeat("x", i+1)
		l.lock(name)()
		if u, ok := l.tryLock(name); ok {
			u()
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if u, err := l.lockCtx(ctx, name+"-cancelled"); err == nil {
			u()
		}
	}
	held := l.lock("app")
	if _, ok := l.tryLock("app"); ok {
		t.Fatal("tryLock took a held lock")
	}
	var wg sync.WaitGroup
	got := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); l.lock("app")(); close(got) }()
	select {
	case <-got:
		t.Fatal("lock taken twice")
	case <-time.After(50 * time.Millisecond):
	}
	held()
	wg.Wait()
	if n := len(l.m); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}

// destroyRecorder is a Deployer that runs nothing and records Destroy.
type destroyRecorder struct {
	Deployer
	mu        sync.Mutex
	destroyed []string
}

func (d *destroyRecorder) Destroy(ctx context.Context, app string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.destroyed = append(d.destroyed, app)
	return nil
}

// TestDestroyBySharedMemberTouchesNothing: a member an app is shared with
// may not destroy it, and its containers are not stopped on the way to
// that refusal.
func TestDestroyBySharedMemberTouchesNothing(t *testing.T) {
	d := &destroyRecorder{}
	e := newSSHEnv(t, d)
	e.user("alice", platform.RoleMember)
	e.user("bob", platform.RoleMember)
	for _, args := range [][]string{{"apps:create", "prod"}, {"apps:share", "prod", "bob"}} {
		if _, errOut, code := e.ssh("alice", "", args...); code != 0 {
			t.Fatalf("%v: %d %s", args, code, errOut)
		}
	}
	_, errOut, code := e.ssh("bob", "", "apps:destroy", "prod", "--force")
	if code == 0 || !strings.Contains(errOut, "only the owner") {
		t.Fatalf("bob's apps:destroy: exit %d, %s", code, errOut)
	}
	if len(d.destroyed) != 0 {
		t.Fatalf("containers of %v were torn down before the refusal", d.destroyed)
	}
	if _, errOut, code := e.ssh("alice", "", "apps:destroy", "prod", "--force"); code != 0 {
		t.Fatalf("alice's apps:destroy: %d %s", code, errOut)
	}
	if len(d.destroyed) != 1 {
		t.Fatalf("the owner's destroy stopped %v", d.destroyed)
	}
}
