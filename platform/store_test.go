package platform_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/pgtest"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/platform"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testDomain is the global domain of the tests' Service: app APP answers
// at APP.berth.test.
const testDomain = "berth.test"

// env is a Service on a fresh database with an admin and two members.
type env struct {
	svc               *platform.Service
	logs              *syncBuffer
	sys               platform.Actor
	admin, alice, bob platform.Actor
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	logs := &syncBuffer{}
	svc := platform.NewWithConfig(pgtest.New(t), platform.Config{Domain: testDomain},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	e := &env{svc: svc, logs: logs, sys: platform.System()}
	ctx := context.Background()
	mk := func(name string, role platform.Role) platform.Actor {
		t.Helper()
		u, err := svc.CreateUser(ctx, e.sys, name, role)
		if err != nil {
			t.Fatalf("create user %s: %v", name, err)
		}
		return u.Actor()
	}
	e.admin = mk("root-admin", platform.RoleAdmin)
	e.alice = mk("alice", platform.RoleMember)
	e.bob = mk("bob", platform.RoleMember)
	return e
}

func mustApp(t *testing.T, e *env, actor platform.Actor, name string) platform.App {
	t.Helper()
	a, err := e.svc.CreateApp(context.Background(), actor, name)
	if err != nil {
		t.Fatalf("create app %s: %v", name, err)
	}
	return a
}

func wantErr(t *testing.T, err, target error, contains ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("error %q does not mention %q", err, c)
		}
	}
}

func TestCreateApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := mustApp(t, e, e.alice, "web-shop")
	if a.Owner != "alice" || a.DeployBranch != "main" || a.UIDBase < 1_000_000 || (a.UIDBase-1_000_000)%platform.AppUIDRange != 0 {
		t.Fatalf("app = %+v", a)
	}
	b := mustApp(t, e, e.sys, "other")
	if b.Owner != "" || b.UIDBase == a.UIDBase {
		t.Fatalf("system app = %+v (first %+v)", b, a)
	}
	_, err := e.svc.CreateApp(ctx, e.bob, "web-shop")
	wantErr(t, err, platform.ErrExists, `app "web-shop" already exists`)

	// Bad names are refused, naming the field, and nothing is written.
	for _, name := range []string{"Bad", "x_y", "berth", strings.Repeat("a", 31), ""} {
		_, err := e.svc.CreateApp(ctx, e.alice, name)
		var inv *platform.InvalidError
		if !errors.As(err, &inv) || inv.Field != "app name" {
			t.Fatalf("CreateApp(%q) err = %v, want InvalidError for app name", name, err)
		}
	}
	apps, err := e.svc.Apps(ctx, e.admin)
	if err != nil || len(apps) != 2 {
		t.Fatalf("apps = %v, %v; want the 2 valid ones", apps, err)
	}
}

// race runs fn in n goroutines released at once and returns their errors.
func race(n int, fn func(i int) error) []error {
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWins checks that exactly one error is nil and the others are ErrExists.
func oneWins(t *testing.T, errs []error) {
	t.Helper()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, platform.ErrExists):
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d winners (errors %v), want exactly 1", wins, errs)
	}
}

func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "a1")
	mustApp(t, e, e.bob, "b1")
	line, _ := testenv.AuthorizedKey(t, "")
	tests := []struct {
		name  string
		fn    func(round, i int) error
		count func() int
	}{
		{
			name: "app",
			fn: func(round, i int) error {
				actor := []platform.Actor{e.alice, e.bob}[i]
				_, err := e.svc.CreateApp(ctx, actor, fmt.Sprintf("race-%d", round))
				return err
			},
		},
		{
			name: "domain",
			fn: func(round, i int) error {
				app := []string{"a1", "b1"}[i]
				actor := []platform.Actor{e.alice, e.bob}[i]
				_, err := e.svc.AddDomain(ctx, actor, app, fmt.Sprintf("race%d.example.com", round))
				return err
			},
		},
		{
			name: "key",
			fn: func(round, i int) error {
				if round > 0 {
					return nil
				}
				user := []string{"alice", "bob"}[i]
				actor := []platform.Actor{e.alice, e.bob}[i]
				_, err := e.svc.AddKey(ctx, actor, user, "laptop", line)
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rounds := 5
			if tt.name == "key" {
				rounds = 1
			}
			for round := range rounds {
				oneWins(t, race(2, func(i int) error { return tt.fn(round, i) }))
			}
		})
	}
	// The domain winner owns it; the loser's app has none.
	all, err := e.svc.AllDomains(ctx)
	if err != nil || len(all) != 5 {
		t.Fatalf("domains = %v, %v; want 5", all, err)
	}
	keys, err := e.svc.Keys(ctx, e.admin, "")
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v; want 1", keys, err)
	}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "alices")
	mustApp(t, e, e.bob, "bobs")

	// Bob cannot see Alice's app: everything says not found.
	checks := []struct {
		name string
		fn   func() error
	}{
		{"App", func() error { _, err := e.svc.App(ctx, e.bob, "alices"); return err }},
		{"SetConfig", func() error { _, err := e.svc.SetConfig(ctx, e.bob, "alices", map[string]string{"A": "1"}); return err }},
		{"Config", func() error { _, err := e.svc.Config(ctx, e.bob, "alices"); return err }},
		{"Releases", func() error { _, err := e.svc.Releases(ctx, e.bob, "alices", 0); return err }},
		{"Scale", func() error { _, err := e.svc.Scale(ctx, e.bob, "alices", map[string]int{"web": 2}); return err }},
		{"AddDomain", func() error { _, err := e.svc.AddDomain(ctx, e.bob, "alices", "x.example.com"); return err }},
		{"DestroyApp", func() error { return e.svc.DestroyApp(ctx, e.bob, "alices") }},
		{"StartDeploy", func() error { _, err := e.svc.StartDeploy(ctx, e.bob, "alices", "abc", ""); return err }},
		{"ShareApp", func() error { return e.svc.ShareApp(ctx, e.bob, "alices", "bob") }},
	}
	for _, c := range checks {
		t.Run("hidden "+c.name, func(t *testing.T) {
			wantErr(t, c.fn(), platform.ErrNotFound, `app "alices" not found`)
		})
	}
	apps, err := e.svc.Apps(ctx, e.bob)
	if err != nil || len(apps) != 1 || apps[0].Name != "bobs" {
		t.Fatalf("bob's apps = %v, %v", apps, err)
	}
	if cfg, err := e.svc.Config(ctx, e.alice, "alices"); err != nil || len(cfg) != 0 {
		t.Fatalf("nothing may have been written by bob: %v, %v", cfg, err)
	}

	// Shared, Bob manages it but cannot destroy or re-share it.
	if err := e.svc.ShareApp(ctx, e.alice, "alices", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetConfig(ctx, e.bob, "alices", map[string]string{"A": "1"}); err != nil {
		t.Fatalf("shared app config:set: %v", err)
	}
	apps, _ = e.svc.Apps(ctx, e.bob)
	if len(apps) != 2 {
		t.Fatalf("bob sees %d apps after share, want 2", len(apps))
	}
	wantErr(t, e.svc.DestroyApp(ctx, e.bob, "alices"), platform.ErrForbidden, "owner")
	wantErr(t, e.svc.ShareApp(ctx, e.bob, "alices", "root-admin"), platform.ErrForbidden)
	if err := e.svc.UnshareApp(ctx, e.alice, "alices", "bob"); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.App(ctx, e.bob, "alices")
	wantErr(t, err, platform.ErrNotFound)

	// Admin and system see everything; members cannot manage users.
	for _, a := range []platform.Actor{e.admin, e.sys} {
		if apps, err := e.svc.Apps(ctx, a); err != nil || len(apps) != 2 {
			t.Fatalf("%s sees %v, %v", a, apps, err)
		}
	}
	_, err = e.svc.CreateUser(ctx, e.alice, "carol", platform.RoleMember)
	wantErr(t, err, platform.ErrForbidden, "only admins")
	_, err = e.svc.Users(ctx, e.alice)
	wantErr(t, err, platform.ErrForbidden)
	_, err = e.svc.Apps(ctx, platform.Actor{})
	wantErr(t, err, platform.ErrForbidden)
	if err := e.svc.DestroyApp(ctx, e.admin, "alices"); err != nil {
		t.Fatalf("admin destroy: %v", err)
	}
}

func TestReleasesConfigRollback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "shop")

	r1, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"FOO": "1", "BAR": "2"})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Version != 1 || r1.Description != "Set BAR, FOO" || r1.Image != "" || r1.CreatedBy != "alice" {
		t.Fatalf("r1 = %+v", r1)
	}
	r2, err := e.svc.CreateRelease(ctx, e.alice, "shop", platform.ReleaseSpec{
		Image: "sha256:aaa", Processes: map[string]string{"web": "./server", "worker": "./work"}, Description: "Deploy 1a2b3c4",
	})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Version != 2 || r2.Config["FOO"] != "1" || r2.Formation["web"].Quantity != 1 || r2.Formation["worker"].Quantity != 0 {
		t.Fatalf("r2 = %+v", r2)
	}
	r3, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"FOO": "changed"})
	if err != nil {
		t.Fatal(err)
	}
	if r3.Version != 3 || r3.Image != "sha256:aaa" || r3.Processes["web"] != "./server" || r3.Config["FOO"] != "changed" {
		t.Fatalf("r3 = %+v", r3)
	}
	r4, err := e.svc.UnsetConfig(ctx, e.alice, "shop", []string{"BAR"})
	if err != nil {
		t.Fatal(err)
	}
	if r4.Version != 4 || r4.Description != "Unset BAR" || len(r4.Config) != 1 {
		t.Fatalf("r4 = %+v", r4)
	}
	// Unsetting an unknown var changes nothing.
	_, err = e.svc.UnsetConfig(ctx, e.alice, "shop", []string{"FOO", "NOPE"})
	wantErr(t, err, platform.ErrNotFound, "NOPE")
	if cfg, _ := e.svc.Config(ctx, e.alice, "shop"); cfg["FOO"] != "changed" {
		t.Fatalf("config after failed unset = %v", cfg)
	}

	r5, err := e.svc.Rollback(ctx, e.alice, "shop", 2)
	if err != nil {
		t.Fatal(err)
	}
	if r5.Version != 5 || r5.Description != "Rollback to v2" || r5.Image != "sha256:aaa" || r5.Config["FOO"] != "1" || r5.Config["BAR"] != "2" {
		t.Fatalf("r5 = %+v", r5)
	}
	cfg, err := e.svc.Config(ctx, e.alice, "shop")
	if err != nil || cfg["FOO"] != "1" || cfg["BAR"] != "2" || len(cfg) != 2 {
		t.Fatalf("config after rollback = %v, %v", cfg.Keys(), err)
	}
	_, err = e.svc.Rollback(ctx, e.alice, "shop", 42)
	wantErr(t, err, platform.ErrNotFound, "v42")

	// A Dockerfile app without a Procfile runs the image's command as web.
	r6, err := e.svc.CreateRelease(ctx, e.alice, "shop", platform.ReleaseSpec{Image: "sha256:bbb", Processes: map[string]string{"web": platform.ImageCommand}})
	if err != nil || r6.Version != 6 || r6.Processes["web"] != platform.ImageCommand {
		t.Fatalf("release with the image's command = %+v, %v", r6, err)
	}
	_, err = e.svc.CreateRelease(ctx, e.alice, "shop", platform.ReleaseSpec{Image: "i", Processes: map[string]string{"web": "  "}})
	wantErr(t, err, platform.ErrInvalid, "command of process type web")
	rels, err := e.svc.Releases(ctx, e.alice, "shop", 0)
	if err != nil || len(rels) != 6 || rels[0].Version != 6 || rels[5].Version != 1 {
		t.Fatalf("releases = %v, %v", rels, err)
	}
	// Old releases are unchanged (immutable).
	if old, err := e.svc.Release(ctx, e.alice, "shop", 3); err != nil || old.Config["FOO"] != "changed" {
		t.Fatalf("v3 = %+v, %v", old, err)
	}
	cur, ok, err := e.svc.CurrentRelease(ctx, e.alice, "shop")
	if err != nil || !ok || cur.Version != 6 {
		t.Fatalf("current = %v %v %v", cur, ok, err)
	}

	// Bad input is refused naming the field; no release is made.
	bad := []struct {
		name  string
		fn    func() error
		field string
	}{
		{"key", func() error {
			_, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"1BAD": "x"})
			return err
		}, "config var name"},
		{"value", func() error {
			_, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"OK": "a\x00b"})
			return err
		}, "value of OK"},
		{"empty", func() error { _, err := e.svc.SetConfig(ctx, e.alice, "shop", nil); return err }, "config vars"},
		{"over the total", func() error {
			big := map[string]string{}
			for i := 0; i < 5; i++ {
				big[fmt.Sprintf("BIG%d", i)] = strings.Repeat("x", platform.MaxConfigValueLen)
			}
			_, err := e.svc.SetConfig(ctx, e.alice, "shop", big)
			return err
		}, "config vars"},
		{"no image", func() error {
			_, err := e.svc.CreateRelease(ctx, e.alice, "shop", platform.ReleaseSpec{Processes: map[string]string{"web": "x"}})
			return err
		}, "image"},
		{"bad type", func() error {
			_, err := e.svc.CreateRelease(ctx, e.alice, "shop", platform.ReleaseSpec{Image: "i", Processes: map[string]string{"Web": "x"}})
			return err
		}, "process type"},
	}
	for _, b := range bad {
		t.Run("refuse "+b.name, func(t *testing.T) {
			err := b.fn()
			var inv *platform.InvalidError
			if !errors.As(err, &inv) || inv.Field != b.field {
				t.Fatalf("err = %v, want InvalidError for %q", err, b.field)
			}
		})
	}
	if rels, _ := e.svc.Releases(ctx, e.alice, "shop", 0); len(rels) != 6 {
		t.Fatalf("%d releases after refused changes, want 6", len(rels))
	}
}

func TestConcurrentConfigSetSerialized(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "shop")
	if _, err := e.svc.CreateRelease(ctx, e.alice, "shop", platform.ReleaseSpec{Image: "img", Processes: map[string]string{"web": "run"}}); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		keys := []string{fmt.Sprintf("A%d", round), fmt.Sprintf("B%d", round)}
		errs := race(2, func(i int) error {
			_, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{keys[i]: "v"})
			return err
		})
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		rels, err := e.svc.Releases(ctx, e.alice, "shop", 2)
		if err != nil {
			t.Fatal(err)
		}
		later, earlier := rels[0], rels[1]
		if later.Version != earlier.Version+1 {
			t.Fatalf("versions %d, %d are not consecutive", earlier.Version, later.Version)
		}
		if _, ok := later.Config[keys[0]]; !ok {
			t.Fatalf("later release v%d lacks %s: %v", later.Version, keys[0], later.Config.Keys())
		}
		if _, ok := later.Config[keys[1]]; !ok {
			t.Fatalf("later release v%d lacks %s: %v", later.Version, keys[1], later.Config.Keys())
		}
		if len(earlier.Config) != len(later.Config)-1 {
			t.Fatalf("earlier v%d has %v, later %v", earlier.Version, earlier.Config.Keys(), later.Config.Keys())
		}
	}
}

func TestConfigValuesStaySecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "shop")
	const secret = "hunter2-very-secret"
	rel, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"PASSWORD": secret})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"TOKEN": secret + "\x00"})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v; want an error without the value", err)
	}
	_, err = e.svc.SetConfig(ctx, e.bob, "shop", map[string]string{"X": secret})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v; want an error without the value", err)
	}
	slog.New(slog.NewTextHandler(e.logs, nil)).Info("release", "config", rel.Config, "release", rel)
	for _, s := range []string{e.logs.String(), fmt.Sprint(rel.Config), fmt.Sprintf("%v %+v %#v %s", rel.Config, rel.Config, rel.Config, rel.Config), fmt.Sprint(rel)} {
		if strings.Contains(s, secret) {
			t.Fatalf("secret value printed: %s", s)
		}
	}
	if !strings.Contains(e.logs.String(), "PASSWORD") {
		t.Fatalf("logs should name the changed key: %s", e.logs.String())
	}
	if env := rel.Config.Env(); len(env) != 1 || env[0] != "PASSWORD="+secret {
		t.Fatalf("Env() = %v", env)
	}
}

func TestFormationAndLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "shop")
	// Before the first deploy any valid type can be scaled.
	if _, err := e.svc.Scale(ctx, e.alice, "shop", map[string]int{"web": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateRelease(ctx, e.alice, "shop", platform.ReleaseSpec{Image: "img", Processes: map[string]string{"web": "run", "worker": "work"}}); err != nil {
		t.Fatal(err)
	}
	procs, err := e.svc.Scale(ctx, e.alice, "shop", map[string]int{"worker": 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 2 || procs[0].Type != "web" || procs[0].Quantity != 2 || procs[1].Quantity != 3 {
		t.Fatalf("formation = %+v", procs)
	}
	refuse := []struct {
		name  string
		fn    func() error
		field string
		msg   string
	}{
		{"unknown type", func() error {
			_, err := e.svc.Scale(ctx, e.alice, "shop", map[string]int{"web": 5, "clock": 1})
			return err
		}, "process type", "web, worker"},
		{"bad type", func() error { _, err := e.svc.Scale(ctx, e.alice, "shop", map[string]int{"We b": 1}); return err }, "process type", ""},
		{"negative", func() error { _, err := e.svc.Scale(ctx, e.alice, "shop", map[string]int{"web": -1}); return err }, "quantity of web", "0 to 100"},
		{"too many", func() error { _, err := e.svc.Scale(ctx, e.alice, "shop", map[string]int{"web": 101}); return err }, "quantity of web", ""},
		{"limit unknown type", func() error {
			_, err := e.svc.SetLimits(ctx, e.alice, "shop", "clock", platform.LimitChange{})
			return err
		}, "process type", ""},
		{"limit too small", func() error {
			m := int64(1024)
			_, err := e.svc.SetLimits(ctx, e.alice, "shop", "web", platform.LimitChange{MemoryBytes: &m})
			return err
		}, "memory", "4m"},
		{"limit negative cpu", func() error {
			c := int64(-5)
			_, err := e.svc.SetLimits(ctx, e.alice, "shop", "web", platform.LimitChange{CPUMillis: &c})
			return err
		}, "cpu", ""},
	}
	for _, r := range refuse {
		t.Run(r.name, func(t *testing.T) {
			err := r.fn()
			var inv *platform.InvalidError
			if !errors.As(err, &inv) || inv.Field != r.field || !strings.Contains(err.Error(), r.msg) {
				t.Fatalf("err = %v, want InvalidError for %q mentioning %q", err, r.field, r.msg)
			}
		})
	}
	if procs, _ := e.svc.Formation(ctx, e.alice, "shop"); procs[0].Quantity != 2 || len(procs) != 2 {
		t.Fatalf("formation changed by refused requests: %+v", procs)
	}

	change, err := platform.ParseLimitChange(map[string]string{"memory": "512m", "cpu": "0.5", "pids": "100", "disk": "1g", "network": "10mbit"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.svc.SetLimits(ctx, e.alice, "shop", "web", change)
	if err != nil {
		t.Fatal(err)
	}
	want := platform.Limits{MemoryBytes: 512 << 20, CPUMillis: 500, PIDs: 100, DiskBytes: 1 << 30, NetworkBPS: 10_000_000}
	if p.Limits != want || p.Quantity != 2 {
		t.Fatalf("limits = %+v, want %+v", p, want)
	}
	// Changing one limit keeps the others; 0 clears.
	zero := int64(0)
	p, err = e.svc.SetLimits(ctx, e.alice, "shop", "web", platform.LimitChange{PIDs: &zero})
	if err != nil || p.Limits.PIDs != 0 || p.Limits.MemoryBytes != 512<<20 {
		t.Fatalf("after clearing pids: %+v, %v", p, err)
	}
	// The disk limit is the app's: set through one type, every type has it.
	disk := func() map[string]int64 {
		procs, err := e.svc.Formation(ctx, e.alice, "shop")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int64{}
		for _, p := range procs {
			m[p.Type] = p.Limits.DiskBytes
		}
		return m
	}
	if d := disk(); d["web"] != 1<<30 || d["worker"] != 1<<30 {
		t.Fatalf("disk limits after setting web's: %v, want 1g for both", d)
	}
	half := int64(512 << 20)
	p, err = e.svc.SetLimits(ctx, e.alice, "shop", "worker", platform.LimitChange{DiskBytes: &half})
	if err != nil || p.Limits.MemoryBytes != 0 {
		t.Fatalf("worker after lowering the disk limit: %+v, %v (its memory limit must stay its own)", p, err)
	}
	if d := disk(); d["web"] != half || d["worker"] != half {
		t.Fatalf("disk limits after lowering through worker: %v, want 512m for both", d)
	}
	_, err = platform.ParseLimitChange(map[string]string{"memory": "lots"})
	wantErr(t, err, platform.ErrInvalid, "memory")
	// The next release snapshots the formation.
	rel, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"X": "1"})
	if err != nil || rel.Formation["web"].Limits.MemoryBytes != 512<<20 || rel.Formation["worker"].Quantity != 3 {
		t.Fatalf("release formation = %+v, %v", rel.Formation, err)
	}
}

func TestDomains(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "one")
	mustApp(t, e, e.bob, "two")
	h, err := e.svc.AddDomain(ctx, e.alice, "one", "WWW.Example.COM.")
	if err != nil || h != "www.example.com" {
		t.Fatalf("AddDomain = %q, %v", h, err)
	}
	_, err = e.svc.AddDomain(ctx, e.bob, "two", "www.example.com")
	wantErr(t, err, platform.ErrExists, "www.example.com", "remove it there first")
	if strings.Contains(err.Error(), `"one"`) {
		t.Fatalf("error reveals the other app: %v", err)
	}
	_, err = e.svc.AddDomain(ctx, e.alice, "one", "bad_host.example.com")
	wantErr(t, err, platform.ErrInvalid, "hostname")
	if _, err := e.svc.AddDomain(ctx, e.alice, "one", "api.example.com"); err != nil {
		t.Fatal(err)
	}
	ds, err := e.svc.Domains(ctx, e.alice, "one")
	if err != nil || !slices.Equal(ds, []string{"api.example.com", "www.example.com"}) {
		t.Fatalf("domains = %v, %v", ds, err)
	}
	wantErr(t, e.svc.RemoveDomain(ctx, e.bob, "two", "api.example.com"), platform.ErrNotFound)
	if err := e.svc.RemoveDomain(ctx, e.alice, "one", "API.example.com"); err != nil {
		t.Fatal(err)
	}
	all, err := e.svc.AllDomains(ctx)
	if err != nil || len(all) != 1 || all["www.example.com"] != "one" {
		t.Fatalf("AllDomains = %v, %v", all, err)
	}
	// Destroying the app frees its domains.
	if err := e.svc.DestroyApp(ctx, e.alice, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AddDomain(ctx, e.bob, "two", "www.example.com"); err != nil {
		t.Fatalf("domain of destroyed app not freed: %v", err)
	}
}

// TestAddDomainRefusesGlobalDomain: no app may claim the global domain or
// a name under it, since APP.<domain> is every app's default hostname and
// the router would otherwise have two apps for one host.
func TestAddDomainRefusesGlobalDomain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "evil")
	mustApp(t, e, e.bob, "victim")
	tests := []struct {
		name    string
		actor   platform.Actor
		host    string
		refused bool
	}{
		{name: "another app's default name", actor: e.alice, host: "victim.berth.test", refused: true},
		{name: "another app's default name, spelt otherwise", actor: e.alice, host: " VICTIM.Berth.Test. ", refused: true},
		{name: "a name under another app's default name", actor: e.alice, host: "x.victim.berth.test", refused: true},
		{name: "deeper under it", actor: e.alice, host: "a.b.victim.berth.test", refused: true},
		{name: "its own default name", actor: e.alice, host: "evil.berth.test", refused: true},
		{name: "an app not created yet", actor: e.alice, host: "later.berth.test", refused: true},
		{name: "the global domain itself", actor: e.alice, host: "berth.test", refused: true},
		{name: "admins too", actor: e.admin, host: "victim.berth.test", refused: true},
		{name: "the system too", actor: e.sys, host: "x.victim.berth.test", refused: true},
		{name: "a domain of its own", actor: e.alice, host: "www.evil.example"},
		{name: "a name that only ends like the global domain", actor: e.alice, host: "victimberth.test"},
		{name: "the global domain as a label elsewhere", actor: e.alice, host: "berth.test.evil.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := e.svc.AddDomain(ctx, tt.actor, "evil", tt.host)
			if !tt.refused {
				if err != nil {
					t.Fatalf("AddDomain(%q) = %v", tt.host, err)
				}
				return
			}
			var inv *platform.InvalidError
			if !errors.As(err, &inv) || inv.Field != "hostname" {
				t.Fatalf("AddDomain(%q) = %q, %v; want an InvalidError for hostname", tt.host, h, err)
			}
			wantErr(t, err, platform.ErrInvalid, "global domain berth.test", "a domain of your own")
		})
	}
	// Only the allowed ones were stored.
	ds, err := e.svc.Domains(ctx, e.alice, "evil")
	if want := []string{"berth.test.evil.example", "victimberth.test", "www.evil.example"}; err != nil || !slices.Equal(ds, want) {
		t.Fatalf("domains = %v, %v; want %v", ds, err, want)
	}
}

// TestSetPasswordEndsSessions: a password change ends the user's other web
// sessions, so a stolen session cookie dies with the old password.
func TestSetPasswordEndsSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	session := func(actor platform.Actor) string {
		t.Helper()
		tok, err := e.svc.CreateSession(ctx, actor, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	live := func(tok string) bool {
		t.Helper()
		_, err := e.svc.ActorForSession(ctx, tok)
		if err != nil && !errors.Is(err, platform.ErrBadCredentials) {
			t.Fatal(err)
		}
		return err == nil
	}
	api, err := e.svc.CreateAPIToken(ctx, e.alice, "ci")
	if err != nil {
		t.Fatal(err)
	}
	bobs := session(e.bob)
	tests := []struct {
		name string
		// change sets alice's password; keep is the session it passes on.
		change   func(keep string) error
		keepsOne bool
	}{
		{name: "her own change", change: func(string) error {
			return e.svc.SetPassword(ctx, e.alice, "alice", "correct horse")
		}},
		{name: "an admin's change", change: func(string) error {
			return e.svc.SetPassword(ctx, e.admin, "alice", "battery staple")
		}},
		{name: "her own change, keeping the session making it", keepsOne: true, change: func(keep string) error {
			return e.svc.SetPasswordKeepSession(ctx, e.alice, "alice", "staple battery", keep)
		}},
		{name: "another user's session keeps none of hers", change: func(string) error {
			return e.svc.SetPasswordKeepSession(ctx, e.admin, "alice", "horse correct", bobs)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			current, stolen := session(e.alice), session(e.alice)
			if !live(current) || !live(stolen) {
				t.Fatal("new sessions do not work")
			}
			if err := tt.change(current); err != nil {
				t.Fatal(err)
			}
			if live(stolen) {
				t.Fatal("an old session still works after the password change")
			}
			if live(current) != tt.keepsOne {
				t.Fatalf("session making the change live = %v, want %v", live(current), tt.keepsOne)
			}
			if !live(bobs) {
				t.Fatal("another user's session ended")
			}
			if a, err := e.svc.ActorForAPIToken(ctx, api); err != nil || a.Name != "alice" {
				t.Fatalf("API token after the password change: %v, %v", a, err)
			}
		})
	}
	// A refused change ends nothing.
	tok := session(e.alice)
	wantErr(t, e.svc.SetPassword(ctx, e.bob, "alice", "correct horse"), platform.ErrForbidden)
	wantErr(t, e.svc.SetPassword(ctx, e.alice, "alice", "short"), platform.ErrInvalid)
	wantErr(t, e.svc.SetPassword(ctx, e.admin, "nobody", "correct horse"), platform.ErrNotFound)
	if !live(tok) {
		t.Fatal("a refused password change ended a session")
	}
}

func TestUsersKeysAndAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.svc.CreateUser(ctx, e.admin, "alice", platform.RoleMember)
	wantErr(t, err, platform.ErrExists, `user "alice"`)
	_, err = e.svc.CreateUser(ctx, e.admin, "Carol!", platform.RoleMember)
	wantErr(t, err, platform.ErrInvalid, "user name")
	_, err = e.svc.CreateUser(ctx, e.admin, "carol", "owner")
	wantErr(t, err, platform.ErrInvalid, "role")

	line, fp := testenv.AuthorizedKey(t, "alice@laptop")
	k, err := e.svc.AddKey(ctx, e.alice, "alice", "", line)
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "alice@laptop" || k.Fingerprint != fp || !strings.HasPrefix(fp, "SHA256:") {
		t.Fatalf("key = %+v", k)
	}
	actor, err := e.svc.ActorForKey(ctx, fp)
	if err != nil || actor.Name != "alice" || actor.Role != platform.RoleMember {
		t.Fatalf("ActorForKey = %+v, %v", actor, err)
	}
	_, err = e.svc.AddKey(ctx, e.admin, "bob", "x", line)
	wantErr(t, err, platform.ErrExists, fp)
	line2, _ := testenv.AuthorizedKey(t, "")
	_, err = e.svc.AddKey(ctx, e.alice, "alice", "alice@laptop", line2)
	wantErr(t, err, platform.ErrExists, "key name")
	_, err = e.svc.AddKey(ctx, e.alice, "bob", "mine", line2)
	wantErr(t, err, platform.ErrForbidden)
	_, err = e.svc.AddKey(ctx, e.alice, "alice", "", "ssh-rsa notbase64")
	wantErr(t, err, platform.ErrInvalid, "SSH public key")
	k2, err := e.svc.AddKey(ctx, e.alice, "alice", "", line2)
	if err != nil || !strings.HasPrefix(k2.Name, "key-") {
		t.Fatalf("unnamed key = %+v, %v", k2, err)
	}
	keys, err := e.svc.Keys(ctx, e.alice, "alice")
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	if err := e.svc.RemoveKey(ctx, e.alice, "alice", fp); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.ActorForKey(ctx, fp)
	wantErr(t, err, platform.ErrBadCredentials)

	// Passwords, sessions, API tokens.
	err = e.svc.SetPassword(ctx, e.alice, "alice", "short")
	wantErr(t, err, platform.ErrInvalid, "password")
	if strings.Contains(err.Error(), "short") {
		t.Fatalf("error quotes the password: %v", err)
	}
	if err := e.svc.SetPassword(ctx, e.alice, "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.svc.SetPassword(ctx, e.alice, "bob", "correct horse"), platform.ErrForbidden)
	if a, err := e.svc.CheckPassword(ctx, "alice", "correct horse"); err != nil || a.Name != "alice" {
		t.Fatalf("CheckPassword = %v, %v", a, err)
	}
	for _, c := range [][2]string{{"alice", "wrong horse"}, {"nobody", "correct horse"}, {"bob", "correct horse"}} {
		_, err := e.svc.CheckPassword(ctx, c[0], c[1])
		wantErr(t, err, platform.ErrBadCredentials)
	}
	tok, err := e.svc.CreateSession(ctx, e.alice, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := e.svc.ActorForSession(ctx, tok); err != nil || a.Name != "alice" {
		t.Fatalf("ActorForSession = %v, %v", a, err)
	}
	if err := e.svc.DeleteSession(ctx, tok); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.ActorForSession(ctx, tok)
	wantErr(t, err, platform.ErrBadCredentials)
	api, err := e.svc.CreateAPIToken(ctx, e.bob, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := e.svc.ActorForAPIToken(ctx, api); err != nil || a.Name != "bob" {
		t.Fatalf("ActorForAPIToken = %v, %v", a, err)
	}
	_, err = e.svc.CreateAPIToken(ctx, e.bob, "ci")
	wantErr(t, err, platform.ErrExists)
	if _, err := e.svc.CreateAPIToken(ctx, e.bob, "backup"); err != nil {
		t.Fatal(err)
	}
	toks, err := e.svc.APITokens(ctx, e.bob)
	if err != nil || len(toks) != 2 || toks[0].Name != "backup" || toks[1].Name != "ci" ||
		!toks[0].LastUsedAt.IsZero() || toks[1].LastUsedAt.IsZero() || toks[1].CreatedAt.IsZero() {
		t.Fatalf("bob's tokens = %+v, %v; want backup (never used) and ci (used)", toks, err)
	}
	if toks, err := e.svc.APITokens(ctx, e.alice); err != nil || len(toks) != 0 {
		t.Fatalf("alice sees tokens %+v, %v", toks, err)
	}
	if _, err := e.svc.APITokens(ctx, platform.System()); !errors.Is(err, platform.ErrForbidden) {
		t.Fatalf("system actor lists tokens: %v", err)
	}

	// Deleting a user removes their keys; their apps stay.
	mustApp(t, e, e.alice, "kept")
	if err := e.svc.DeleteUser(ctx, e.admin, "alice"); err != nil {
		t.Fatal(err)
	}
	if a, err := e.svc.App(ctx, e.admin, "kept"); err != nil || a.Owner != "" {
		t.Fatalf("app after owner deleted = %+v, %v", a, err)
	}
	if keys, _ := e.svc.Keys(ctx, e.admin, ""); len(keys) != 0 {
		t.Fatalf("keys left: %v", keys)
	}
}

func TestDeploysAndContainers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "shop")
	d, err := e.svc.StartDeploy(ctx, e.alice, "shop", "1a2b3c4", "/var/lib/berth/logs/api/1.log")
	if err != nil || d.Status != platform.DeployPending || d.CreatedBy != "alice" || !d.FinishedAt.IsZero() {
		t.Fatalf("deploy = %+v, %v", d, err)
	}
	if d, err = e.svc.SetDeployStatus(ctx, d.ID, platform.DeployBuilding, "", 0); err != nil || d.Status != platform.DeployBuilding {
		t.Fatalf("building: %+v, %v", d, err)
	}
	if d, err = e.svc.SetDeployStatus(ctx, d.ID, platform.DeploySucceeded, "", 3); err != nil || d.ReleaseVersion != 3 || d.FinishedAt.IsZero() {
		t.Fatalf("succeeded: %+v, %v", d, err)
	}
	_, err = e.svc.SetDeployStatus(ctx, d.ID, platform.DeployFailed, "late", 0)
	wantErr(t, err, platform.ErrConflict, "already succeeded")
	_, err = e.svc.SetDeployStatus(ctx, d.ID, "done", "", 0)
	wantErr(t, err, platform.ErrInvalid, "deploy status")
	d2, _ := e.svc.StartDeploy(ctx, e.alice, "shop", "5d6e7f8", "")
	n, err := e.svc.FailInterruptedDeploys(ctx)
	if err != nil || n != 1 {
		t.Fatalf("FailInterruptedDeploys = %d, %v", n, err)
	}
	if got, _ := e.svc.Deploy(ctx, e.alice, "shop", d2.ID); got.Status != platform.DeployFailed || !strings.Contains(got.Reason, "interrupted") {
		t.Fatalf("interrupted deploy = %+v", got)
	}
	ds, err := e.svc.Deploys(ctx, e.alice, "shop", 10)
	if err != nil || len(ds) != 2 || ds[0].ID != d2.ID {
		t.Fatalf("deploys = %v, %v", ds, err)
	}

	ip := netip.MustParseAddr("10.88.0.5")
	c, err := e.svc.SaveContainer(ctx, platform.Container{App: "shop", ProcessType: "web", Instance: 1, ReleaseVersion: 1,
		EngineID: "c1", IP: ip, HostPID: 4242, State: platform.ContainerRunning, StartedAt: time.Now()})
	if err != nil || c.IP != ip || c.HostPID != 4242 || c.ID == 0 {
		t.Fatalf("saved = %+v, %v", c, err)
	}
	// Another live container cannot take the same IP.
	_, err = e.svc.SaveContainer(ctx, platform.Container{App: "shop", ProcessType: "web", Instance: 2, ReleaseVersion: 1,
		EngineID: "c2", IP: ip, State: platform.ContainerStarting})
	wantErr(t, err, platform.ErrExists, "10.88.0.5")
	// Update by engine id.
	c.State, c.Restarts, c.LastExitReason, c.HostPID = platform.ContainerExited, 1, "exit status 1", 0
	if c, err = e.svc.SaveContainer(ctx, c); err != nil || c.State != platform.ContainerExited || c.HostPID != 0 {
		t.Fatalf("updated = %+v, %v", c, err)
	}
	if _, err := e.svc.SaveContainer(ctx, platform.Container{App: "shop", ProcessType: "web", Instance: 2, ReleaseVersion: 1,
		EngineID: "c2", IP: ip, State: platform.ContainerRunning}); err != nil {
		t.Fatalf("IP of an exited container should be free: %v", err)
	}
	_, err = e.svc.SaveContainer(ctx, platform.Container{App: "shop", ProcessType: "web", Instance: 0, EngineID: "c3", State: platform.ContainerRunning})
	wantErr(t, err, platform.ErrInvalid, "instance")
	cs, err := e.svc.Containers(ctx, "")
	if err != nil || len(cs) != 2 || cs[0].EngineID != "c1" {
		t.Fatalf("containers = %+v, %v", cs, err)
	}
	if err := e.svc.RemoveContainer(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if cs, _ := e.svc.AppContainers(ctx, e.alice, "shop"); len(cs) != 1 {
		t.Fatalf("containers after remove = %v", cs)
	}
	_, err = e.svc.AppContainers(ctx, e.bob, "shop")
	wantErr(t, err, platform.ErrNotFound)
}

func TestLockApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "shop")
	unlock, err := e.svc.LockApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	// Config changes still work while a rollout holds the lock.
	if _, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"A": "1"}); err != nil {
		t.Fatalf("SetConfig during rollout: %v", err)
	}
	// A second rollout waits.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = e.svc.LockApp(short, "shop")
	cancel()
	if err == nil {
		t.Fatal("second LockApp succeeded while the first holds it")
	}
	got := make(chan time.Time, 1)
	go func() {
		err := e.svc.WithAppLock(ctx, "shop", func(context.Context) error { got <- time.Now(); return nil })
		if err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	released := time.Now()
	unlock()
	unlock() // idempotent
	select {
	case at := <-got:
		if at.Before(released) {
			t.Fatal("WithAppLock ran before the lock was released")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WithAppLock did not get the lock after release")
	}
	_, err = e.svc.LockApp(ctx, "nope")
	wantErr(t, err, platform.ErrNotFound)
}

func TestDestroyAppCascadesAndNeverReusesUIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := mustApp(t, e, e.alice, "shop")
	if _, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"A": "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AddDomain(ctx, e.alice, "shop", "api.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DestroyApp(ctx, e.alice, "shop"); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.App(ctx, e.alice, "shop")
	wantErr(t, err, platform.ErrNotFound, "apps:list")
	b := mustApp(t, e, e.alice, "shop")
	if b.UIDBase <= a.UIDBase {
		t.Fatalf("UID base reused: %d then %d", a.UIDBase, b.UIDBase)
	}
	if rels, _ := e.svc.Releases(ctx, e.alice, "shop", 0); len(rels) != 0 {
		t.Fatalf("new app inherited releases: %v", rels)
	}
}

func TestDeployedReleaseAndStopped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "shop")
	if _, ok, err := e.svc.DeployedRelease(ctx, "shop"); err != nil || ok {
		t.Fatalf("DeployedRelease before any = %v, %v", ok, err)
	}
	wantErr(t, e.svc.SetDeployedRelease(ctx, "shop", 1), platform.ErrNotFound, "v1")
	if _, err := e.svc.CreateRelease(ctx, e.alice, "shop", platform.ReleaseSpec{Image: "img", Processes: map[string]string{"web": "run"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetDeployedRelease(ctx, "shop", 1); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := e.svc.DeployedRelease(ctx, "shop"); err != nil || !ok || v != 1 {
		t.Fatalf("DeployedRelease = %d, %v, %v", v, ok, err)
	}
	if err := e.svc.SetAppStopped(ctx, "shop", true); err != nil {
		t.Fatal(err)
	}
	a, err := e.svc.App(ctx, e.alice, "shop")
	if err != nil || !a.Stopped || a.DeployedRelease != 1 {
		t.Fatalf("app = %+v, %v", a, err)
	}
	if stopped, err := e.svc.AppStopped(ctx, "shop"); err != nil || !stopped {
		t.Fatalf("AppStopped = %v, %v", stopped, err)
	}
	_, _, err = e.svc.DeployedRelease(ctx, "nope")
	wantErr(t, err, platform.ErrNotFound)
	wantErr(t, e.svc.SetAppStopped(ctx, "nope", true), platform.ErrNotFound)
}

func TestCertsAndDeployBranch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "shop")
	mustApp(t, e, e.bob, "other")
	cp, kp, _ := testenv.SelfSigned(t, "shop.example.com")
	certPEM, keyPEM := string(cp), string(kp)
	_, err := e.svc.SetCert(ctx, e.alice, "shop", "shop.example.com", certPEM, keyPEM)
	wantErr(t, err, platform.ErrNotFound, "domains:add")
	if _, err := e.svc.AddDomain(ctx, e.alice, "shop", "shop.example.com"); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.SetCert(ctx, e.bob, "other", "shop.example.com", certPEM, keyPEM)
	wantErr(t, err, platform.ErrNotFound)
	oc, _, _ := testenv.SelfSigned(t, "else.example.com")
	otherCert := string(oc)
	_, err = e.svc.SetCert(ctx, e.alice, "shop", "shop.example.com", otherCert, keyPEM)
	wantErr(t, err, platform.ErrInvalid, "certificate")
	if strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("error quotes the key: %v", err)
	}
	c, err := e.svc.SetCert(ctx, e.alice, "shop", "SHOP.example.com", certPEM, keyPEM)
	if err != nil || c.Hostname != "shop.example.com" || c.NotAfter.Before(time.Now()) {
		t.Fatalf("SetCert = %+v, %v", c.Hostname, err)
	}
	all, err := e.svc.AllCerts(ctx)
	if err != nil || len(all) != 1 || all[0].App != "shop" || all[0].KeyPEM != keyPEM {
		t.Fatalf("AllCerts = %d, %v", len(all), err)
	}
	if err := e.svc.RemoveCert(ctx, e.alice, "shop", "shop.example.com"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.logs.String(), "PRIVATE KEY") {
		t.Fatal("private key logged")
	}

	if err := e.svc.SetDeployBranch(ctx, e.alice, "shop", "release/v2"); err != nil {
		t.Fatal(err)
	}
	if a, _ := e.svc.App(ctx, e.alice, "shop"); a.DeployBranch != "release/v2" {
		t.Fatalf("deploy branch = %q", a.DeployBranch)
	}
	wantErr(t, e.svc.SetDeployBranch(ctx, e.alice, "shop", "../etc"), platform.ErrInvalid, "branch")
	wantErr(t, e.svc.SetDeployBranch(ctx, e.bob, "shop", "main"), platform.ErrNotFound)
}

// TestConfigChangeBuildsOnDeployedRelease: a release whose rollout failed
// (newer than the deployed one) is not what the next config change runs.
func TestConfigChangeBuildsOnDeployedRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	mustApp(t, e, e.alice, "shop")
	for _, img := range []string{"good", "broken"} {
		if _, err := e.svc.CreateRelease(ctx, e.alice, "shop", platform.ReleaseSpec{Image: img, Processes: map[string]string{"web": "run"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.SetDeployedRelease(ctx, "shop", 1); err != nil {
		t.Fatal(err)
	}
	rel, err := e.svc.SetConfig(ctx, e.alice, "shop", map[string]string{"A": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != 3 || rel.Image != "good" {
		t.Errorf("config change made v%d on image %q, want v3 on the deployed image \"good\"", rel.Version, rel.Image)
	}
}
