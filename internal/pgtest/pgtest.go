// Package pgtest gives tests a real, private, migrated Postgres database.
//
// Use it from any package's tests:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		pool := pgtest.New(t) // fresh database, berth's schema applied
//		...
//	}
//
// Where the server comes from:
//
//   - With BERTH_TEST_DATABASE_URL set (for example the server from
//     docker-compose.test.yml), every test gets a new uniquely named database
//     on that server; the URL's user must be allowed to create databases.
//   - Without it, the first test that asks starts one throwaway cluster for
//     the whole test process (the host's PostgreSQL binaries, a private temp
//     directory and unix socket, no fsync), and every test still gets its own
//     database on it. Main stops the cluster and removes its directory when
//     the tests are done; should the test process die first, the server
//     shuts itself down (parent-death signal).
//
// Databases are cloned from a template that already holds the schema, so a
// new database costs a few milliseconds rather than a migration run. Each
// test's database is dropped in t.Cleanup.
//
// Without PostgreSQL binaries or a URL, tests are skipped with the reason,
// except under CI=true, where they fail.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/berthhq/berth/internal/pgcluster"
	"github.com/berthhq/berth/migrations"
)

// EnvURL names the environment variable that points the tests at an existing
// server instead of a throwaway cluster.
const EnvURL = "BERTH_TEST_DATABASE_URL"

// server is the one Postgres a test process uses. It lives in package state
// because a test process has exactly one, shared by all its tests, and Main
// must find it again to shut it down.
type server struct {
	cluster  *pgcluster.Cluster // nil when using EnvURL
	tmpDir   string
	baseURL  string // maintenance database URL
	admin    *pgxpool.Pool
	template string
	prefix   string
	seq      atomic.Int64
	createMu sync.Mutex // CREATE DATABASE ... TEMPLATE needs the template idle
}

var state struct {
	mainCalled atomic.Bool
	once       sync.Once
	srv        *server
	err        error
}

// Main runs the tests of m, then stops the shared server and exits with the
// tests' status. Call it from TestMain in every package that uses pgtest.
func Main(m *testing.M) {
	state.mainCalled.Store(true)
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// New returns a pool on a fresh database with berth's schema applied. The
// pool is closed and the database dropped when the test ends.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return connect(t, URL(t))
}

// URL returns the connection URL of a fresh database with berth's schema
// applied, dropped when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	return fresh(t, true)
}

// EmptyURL returns the connection URL of a fresh, empty database (no
// migrations applied), dropped when the test ends.
func EmptyURL(t testing.TB) string {
	t.Helper()
	return fresh(t, false)
}

// NewEmpty returns a pool on a fresh, empty database; see EmptyURL.
func NewEmpty(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return connect(t, EmptyURL(t))
}

func connect(t testing.TB, u string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatalf("pgtest: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func fresh(t testing.TB, migrated bool) string {
	t.Helper()
	if !state.mainCalled.Load() {
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain in this package, so the test server is stopped at exit")
	}
	state.once.Do(func() { state.srv, state.err = start() })
	if state.err != nil {
		if errors.Is(state.err, pgcluster.ErrNoBinaries) || errors.Is(state.err, pgcluster.ErrNoUser) {
			if os.Getenv("CI") != "true" {
				t.Skipf("pgtest: no Postgres for tests: %v (set %s or install postgresql)", state.err, EnvURL)
			}
		}
		t.Fatalf("pgtest: %v", state.err)
	}
	s := state.srv
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("%s_%d", s.prefix, s.seq.Add(1))
	if err := s.create(ctx, name, migrated); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := s.admin.Exec(ctx, "drop database if exists "+pgx.Identifier{name}.Sanitize()+" with (force)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.dbURL(name)
}

// start brings up the server: the one named by EnvURL, or a throwaway cluster.
func start() (*server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	s := &server{prefix: fmt.Sprintf("berth_test_%d_%s", os.Getpid(), hex.EncodeToString(suffix))}
	s.template = s.prefix + "_tpl"
	if u := os.Getenv(EnvURL); u != "" {
		s.baseURL = u
	} else {
		dir, err := os.MkdirTemp("", "berth-pgtest-")
		if err != nil {
			return nil, fmt.Errorf("make cluster directory: %w", err)
		}
		s.tmpDir = dir
		// The server runs as the postgres user, which must reach its directory.
		if err := os.Chmod(dir, 0o755); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("set mode of cluster directory: %w", err)
		}
		c, err := pgcluster.New(pgcluster.Options{
			Dir:       dir + "/pg",
			Database:  "postgres",
			Ephemeral: true,
			Settings:  map[string]string{"max_connections": "200", "shared_buffers": "32MB"},
		})
		if err == nil {
			err = c.Start(ctx)
		}
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("start throwaway cluster: %w", err)
		}
		s.cluster = c
		s.baseURL = c.ConnString("postgres")
	}
	admin, err := pgxpool.New(ctx, s.baseURL)
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		s.stop()
		return nil, fmt.Errorf("connect to test server: %w", err)
	}
	s.admin = admin
	if err := s.makeTemplate(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// makeTemplate creates the database every migrated test database is cloned from.
func (s *server) makeTemplate(ctx context.Context) error {
	if _, err := s.admin.Exec(ctx, "create database "+pgx.Identifier{s.template}.Sanitize()); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	pool, err := pgxpool.New(ctx, s.dbURL(s.template))
	if err != nil {
		return fmt.Errorf("connect to template database: %w", err)
	}
	defer pool.Close()
	if err := migrations.Apply(ctx, pool); err != nil {
		return fmt.Errorf("migrate template database: %w", err)
	}
	return nil
}

func (s *server) create(ctx context.Context, name string, migrated bool) error {
	q := "create database " + pgx.Identifier{name}.Sanitize()
	if migrated {
		q += " template " + pgx.Identifier{s.template}.Sanitize()
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	for attempt := 0; ; attempt++ {
		_, err := s.admin.Exec(ctx, q)
		var pgErr *pgconn.PgError
		// 55006: the template is briefly in use (the pool that migrated it
		// may still be closing).
		if err != nil && errors.As(err, &pgErr) && pgErr.Code == "55006" && attempt < 50 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("create database %s: %w", name, err)
		}
		return nil
	}
}

// dbURL returns baseURL pointed at database name.
func (s *server) dbURL(name string) string {
	if strings.HasPrefix(s.baseURL, "postgres://") || strings.HasPrefix(s.baseURL, "postgresql://") {
		u, err := url.Parse(s.baseURL)
		if err == nil {
			u.Path = "/" + name
			return u.String()
		}
	}
	return s.baseURL + " dbname=" + name
}

// stop drops the template, closes connections and stops the cluster.
func (s *server) stop() error {
	var errs []error
	if s.admin != nil {
		if s.cluster == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, err := s.admin.Exec(ctx, "drop database if exists "+pgx.Identifier{s.template}.Sanitize()+" with (force)")
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("drop template database: %w", err))
			}
		}
		s.admin.Close()
	}
	if s.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := s.cluster.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop throwaway cluster: %w", err))
		}
		cancel()
	}
	if s.tmpDir != "" {
		if err := os.RemoveAll(s.tmpDir); err != nil {
			errs = append(errs, fmt.Errorf("remove cluster directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

func shutdown() error {
	if state.srv == nil {
		return nil
	}
	return state.srv.stop()
}
