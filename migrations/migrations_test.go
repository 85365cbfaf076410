package migrations_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/pgtest"
	"github.com/berthhq/berth/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestApplyFromEmptyThenNoop(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewEmpty(t)
	latest, err := migrations.Latest()
	if err != nil {
		t.Fatal(err)
	}
	if latest < 1 {
		t.Fatalf("Latest() = %d, want at least 1", latest)
	}
	if v, err := migrations.Version(ctx, pool); err != nil || v != 0 {
		t.Fatalf("Version on empty database = %d, %v; want 0, nil", v, err)
	}
	if err := migrations.Apply(ctx, pool); err != nil {
		t.Fatalf("first Apply: %v", err)
	}
	if v, err := migrations.Version(ctx, pool); err != nil || v != latest {
		t.Fatalf("Version after Apply = %d, %v; want %d", v, err, latest)
	}
	// Write a row; a second Apply must neither fail nor touch data.
	if _, err := pool.Exec(ctx, "insert into users (name, role) values ('alice', 'admin')"); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Apply(ctx, pool); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from users").Scan(&n); err != nil || n != 1 {
		t.Fatalf("users after re-apply = %d, %v; want 1", n, err)
	}
	var rows int
	if err := pool.QueryRow(ctx, "select count(*) from "+migrations.VersionTable).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("version table rows = %d, %v; want 1", rows, err)
	}
}

func TestApplyConcurrent(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewEmpty(t)
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- migrations.Apply(ctx, pool) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Apply: %v", err)
		}
	}
	latest, _ := migrations.Latest()
	if v, err := migrations.Version(ctx, pool); err != nil || v != latest {
		t.Fatalf("Version = %d, %v; want %d", v, err, latest)
	}
}

func TestRefuseNewerSchema(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.New(t) // already migrated
	latest, _ := migrations.Latest()
	if _, err := pool.Exec(ctx, "update "+migrations.VersionTable+" set version = $1", latest+2); err != nil {
		t.Fatal(err)
	}
	err := migrations.Apply(ctx, pool)
	if !errors.Is(err, migrations.ErrSchemaTooNew) {
		t.Fatalf("Apply on newer schema: err = %v, want ErrSchemaTooNew", err)
	}
	want := "upgrade berth"
	if got := err.Error(); !strings.Contains(got, want) || !strings.Contains(got, "version") {
		t.Fatalf("error %q should say the versions and %q", got, want)
	}
	// Nothing changed.
	if v, _ := migrations.Version(ctx, pool); v != latest+2 {
		t.Fatalf("Version = %d, want %d untouched", v, latest+2)
	}
}

func TestSchemaConstraints(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.New(t)
	tests := []struct {
		name string
		sql  string
	}{
		{"bad app name", "insert into apps (name) values ('Bad_Name')"},
		{"bad role", "insert into users (name, role) values ('bob', 'owner')"},
		{"uppercase domain", "insert into domains (hostname, app_id) values ('A.example.com', 1)"},
		{"negative quantity", "insert into formation (app_id, process_type, quantity) values (1, 'web', -1)"},
		{"bad deploy status", "insert into deploys (app_id, status, created_by) values (1, 'done', 'x')"},
	}
	if _, err := pool.Exec(ctx, "insert into apps (name) values ('ok')"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := pool.Exec(ctx, tt.sql); err == nil {
				t.Fatalf("%s: accepted, want a constraint violation", tt.sql)
			}
		})
	}
	// UID bases are 65536 apart and never reused, even after a destroy.
	var first, second, third int64
	if err := pool.QueryRow(ctx, "insert into apps (name) values ('two') returning uid_base").Scan(&second); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "delete from apps where name = 'two'"); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, "insert into apps (name) values ('three') returning uid_base").Scan(&third); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, "select uid_base from apps where name = 'ok'").Scan(&first); err != nil {
		t.Fatal(err)
	}
	for _, b := range []int64{first, second, third} {
		if b < 1_000_000 || (b-1_000_000)%65536 != 0 {
			t.Fatalf("uid base %d is not 1000000 + k*65536", b)
		}
	}
	if first != 1_000_000 || !(second > first) || !(third > second) {
		t.Fatalf("uid bases = %d, %d, %d; want 1000000 first and strictly increasing", first, second, third)
	}
}
