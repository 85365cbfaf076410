package pgtest_test

import (
	"context"
	"testing"

	"github.com/berthhq/berth/internal/pgtest"
	"github.com/berthhq/berth/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestFreshMigratedDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.New(t), pgtest.New(t)
	latest, err := migrations.Latest()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := migrations.Version(ctx, a); err != nil || v != latest {
		t.Fatalf("schema version = %d, %v; want %d", v, err, latest)
	}
	if _, err := a.Exec(ctx, "insert into users (name, role) values ('alice', 'admin')"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(ctx, "select count(*) from users").Scan(&n); err != nil || n != 0 {
		t.Fatalf("second database sees %d users (%v); databases must be separate", n, err)
	}
	var dbA, dbB string
	_ = a.QueryRow(ctx, "select current_database()").Scan(&dbA)
	_ = b.QueryRow(ctx, "select current_database()").Scan(&dbB)
	if dbA == dbB {
		t.Fatalf("both pools on database %s", dbA)
	}
}

func TestEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewEmpty(t)
	if v, err := migrations.Version(ctx, pool); err != nil || v != 0 {
		t.Fatalf("empty database schema version = %d, %v; want 0", v, err)
	}
}

func TestParallelCreation(t *testing.T) {
	for i := range 4 {
		t.Run("db", func(t *testing.T) {
			t.Parallel()
			pool := pgtest.New(t)
			if _, err := pool.Exec(context.Background(), "insert into users (name, role) values ($1, 'member')", "u"+string(rune('a'+i))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDatabaseDroppedAfterTest(t *testing.T) {
	ctx := context.Background()
	var name string
	t.Run("inner", func(t *testing.T) {
		pool := pgtest.New(t)
		if err := pool.QueryRow(ctx, "select current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	admin := pgtest.New(t)
	var exists bool
	if err := admin.QueryRow(ctx, "select exists (select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}
