package gitreceive

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/berthhq/berth/platform"
)

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
