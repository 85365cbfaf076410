package web

import (
	"errors"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/berthhq/berth/platform"
)

func TestDiffReleases(t *testing.T) {
	rel := func(image string, cfg map[string]string, procs map[string]string) platform.Release {
		return platform.Release{Image: image, Config: cfg, Processes: procs}
	}
	tests := []struct {
		name                    string
		from, to                platform.Release
		added, changed, removed []string
		image                   bool
		procs                   []string
		empty                   bool
	}{
		{name: "same", from: rel("a", map[string]string{"A": "1"}, map[string]string{"web": "x"}),
			to: rel("a", map[string]string{"A": "1"}, map[string]string{"web": "x"}), empty: true},
		{name: "config", from: rel("a", map[string]string{"A": "1", "B": "2", "C": "3"}, nil),
			to:    rel("a", map[string]string{"A": "1", "B": "changed", "D": "4"}, nil),
			added: []string{"D"}, changed: []string{"B"}, removed: []string{"C"}},
		{name: "image", from: rel("a", nil, nil), to: rel("b", nil, nil), image: true},
		{name: "processes", from: rel("a", nil, map[string]string{"web": "x", "old": "y"}),
			to:    rel("a", nil, map[string]string{"web": "z", "worker": "w"}),
			procs: []string{"removed old", "changed web: z", "added worker: w"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diffReleases(tt.from, tt.to)
			if !reflect.DeepEqual(d.Added, tt.added) || !reflect.DeepEqual(d.Changed, tt.changed) || !reflect.DeepEqual(d.Removed, tt.removed) {
				t.Errorf("config diff +%v ~%v -%v", d.Added, d.Changed, d.Removed)
			}
			if d.ImageChanged != tt.image || !reflect.DeepEqual(d.ProcessChanges, tt.procs) || d.Empty() != tt.empty {
				t.Errorf("image %v procs %v empty %v", d.ImageChanged, d.ProcessChanges, d.Empty())
			}
		})
	}
}

func TestValidProcessFilter(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		ok     bool
	}{
		{name: "all", filter: "", ok: true},
		{name: "type", filter: "web", ok: true},
		{name: "instance", filter: "worker.12", ok: true},
		{name: "uppercase", filter: "Web", ok: false},
		{name: "empty instance", filter: "web.", ok: false},
		{name: "bad instance", filter: "web.x", ok: false},
		{name: "path", filter: "../web", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validProcessFilter(tt.filter)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, platform.ErrInvalid)) {
				t.Errorf("validProcessFilter(%q) = %v", tt.filter, err)
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	tests := []struct {
		name, next, want string
	}{
		{name: "local", next: "/apps/x?y=1", want: "/apps/x?y=1"},
		{name: "empty", next: "", want: "/apps"},
		{name: "other site", next: "https://evil.example.com/", want: "/apps"},
		{name: "scheme-relative", next: "//evil.example.com/", want: "/apps"},
		{name: "backslash", next: "/\\evil.example.com", want: "/apps"},
		{name: "tab between slashes", next: "/\t/evil.example.com", want: "/apps"},
		{name: "newline between slashes", next: "/\n/evil.example.com", want: "/apps"},
		{name: "carriage return between slashes", next: "/\r/evil.example.com", want: "/apps"},
		{name: "tab before backslash", next: "/\t\\evil.example.com", want: "/apps"},
		{name: "leading tab", next: "\t//evil.example.com", want: "/apps"},
		{name: "nul", next: "/apps\x00", want: "/apps"},
		{name: "del", next: "/apps\x7f", want: "/apps"},
		{name: "c1 control", next: "/\u0085/evil.example.com", want: "/apps"},
		{name: "scheme", next: "javascript:alert(1)", want: "/apps"},
		{name: "slash scheme", next: "/javascript:alert(1)", want: "/javascript:alert(1)"},
		{name: "relative", next: "apps", want: "/apps"},
		{name: "encoded slashes stay a path", next: "/%2F%2Fevil.example.com", want: "/%2F%2Fevil.example.com"},
		{name: "query with a url", next: "/apps?next=https://example.com/", want: "/apps?next=https://example.com/"},
		{name: "fragment", next: "/apps/x#logs", want: "/apps/x#logs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := safeNext(tt.next); got != tt.want {
				t.Errorf("safeNext(%q) = %q", tt.next, got)
			}
		})
	}
}

func TestLoginLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLoginLimiter(3, time.Second, 10*time.Second)
	l.now = func() time.Time { return now }
	steps := []struct {
		name     string
		failures int
		wait     time.Duration
	}{
		{name: "free attempts", failures: 2, wait: 0},
		{name: "third failure waits base", failures: 1, wait: time.Second},
		{name: "then it doubles", failures: 1, wait: 2 * time.Second},
		{name: "up to the max", failures: 5, wait: 10 * time.Second},
	}
	for _, s := range steps {
		for i := 0; i < s.failures; i++ {
			l.fail("user:x", "ip:1.2.3.4")
		}
		if got := l.wait("user:x"); got != s.wait {
			t.Errorf("%s: wait %v, want %v", s.name, got, s.wait)
		}
	}
	// The address allows five times as many failures.
	if got := l.wait("ip:1.2.3.4"); got != 0 {
		t.Errorf("address waits %v after 9 failures", got)
	}
	now = now.Add(11 * time.Second)
	if got := l.wait("user:x"); got != 0 {
		t.Errorf("after the wait: %v", got)
	}
	l.reset("user:x")
	l.fail("user:x")
	if got := l.wait("user:x"); got != 0 {
		t.Errorf("reset did not forget: %v", got)
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		user   bool
	}{
		{name: "csrf", err: ErrCSRF, status: http.StatusForbidden, user: true},
		{name: "cross origin", err: ErrCrossOrigin, status: http.StatusForbidden, user: true},
		{name: "not found", err: &platform.NotFoundError{Kind: "app", Name: "x"}, status: http.StatusNotFound, user: true},
		{name: "invalid", err: &platform.InvalidError{Field: "f", Reason: "r"}, status: http.StatusBadRequest, user: true},
		{name: "exists", err: &platform.ExistsError{Kind: "app", Name: "x"}, status: http.StatusConflict, user: true},
		{name: "forbidden", err: platform.ErrForbidden, status: http.StatusForbidden, user: true},
		{name: "bad credentials", err: platform.ErrBadCredentials, status: http.StatusUnauthorized, user: true},
		{name: "internal", err: errors.New("disk on fire"), status: http.StatusInternalServerError, user: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, user := statusOf(tt.err)
			if status != tt.status || user != tt.user {
				t.Errorf("statusOf(%v) = %d, %v", tt.err, status, user)
			}
		})
	}
}

func TestNewChecksConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		deps Deps
	}{
		{name: "no domain", cfg: Config{}, deps: Deps{Platform: &platform.Service{}, Deployer: nil}},
		{name: "cert without key", cfg: Config{Domain: "x", CertFile: "c.pem"}, deps: Deps{Platform: &platform.Service{}}},
		{name: "no deployer", cfg: Config{Domain: "x"}, deps: Deps{Platform: &platform.Service{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg, tt.deps, nil); err == nil {
				t.Error("New accepted a bad config")
			}
		})
	}
}
