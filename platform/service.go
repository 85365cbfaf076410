package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Service carries berth's business rules over the Postgres store. Every front
// door (SSH, web, local CLI) and the daemon's own loops call it; none of them
// talks SQL. Its methods take the Actor doing the work and check what that
// actor may do. It is safe for concurrent use.
type Service struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	domain string // the global domain, normalized; "" when not configured
}

// Config configures a Service.
type Config struct {
	// Domain is the global domain: app APP answers at APP.<Domain>. Custom
	// domains equal to it or under it are refused (see
	// ValidateCustomDomain). Empty turns that check off, so only a Service
	// that never adds domains for users should leave it out.
	Domain string
}

// New returns a Service over pool, whose database must have berth's schema
// (migrations.Apply). It knows no global domain, so AddDomain checks only a
// hostname's syntax; the daemon uses NewWithConfig.
func New(pool *pgxpool.Pool, logger *slog.Logger) *Service {
	return NewWithConfig(pool, Config{}, logger)
}

// NewWithConfig returns a Service over pool, whose database must have
// berth's schema (migrations.Apply), configured by cfg.
func NewWithConfig(pool *pgxpool.Pool, cfg Config, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{pool: pool, log: logger.With("component", "platform"), domain: normalizeHost(cfg.Domain)}
}

// Role is a user's role.
type Role string

// The roles. Admins may do everything; members see and manage only the apps
// they own or that were shared with them, and their own keys.
const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RoleAdmin, RoleMember:
		return Role(s), nil
	}
	return "", invalid("role", shown(s), "use admin or member")
}

// Actor is whoever asks for something: a user, or the system (the local
// admin socket and the daemon itself), which may do everything.
type Actor struct {
	// UserID is the user's id; 0 for the system.
	UserID int64
	// Name is the user name, or "system".
	Name string
	// Role is the user's role; the system acts as an admin.
	Role   Role
	system bool
}

// System returns the actor for the daemon itself and the local admin socket.
func System() Actor { return Actor{Name: "system", Role: RoleAdmin, system: true} }

// IsSystem reports whether a is the system actor.
func (a Actor) IsSystem() bool { return a.system }

// IsAdmin reports whether a may do everything.
func (a Actor) IsAdmin() bool { return a.system || a.Role == RoleAdmin }

// String returns the actor's name.
func (a Actor) String() string { return a.Name }

func (a Actor) valid() error {
	if a.system || (a.UserID > 0 && a.Name != "" && (a.Role == RoleAdmin || a.Role == RoleMember)) {
		return nil
	}
	return forbidden("no user: sign in first")
}

// advisory lock namespaces (the first key of the two-int form); the second
// key is the app id.
const (
	// lockAppWrite serializes changes to one app's config, formation and
	// releases; held for one transaction.
	lockAppWrite int32 = 0x62657274 // "bert"
	// lockAppRollout serializes rollouts of one app; held by LockApp for as
	// long as the deploy package needs.
	lockAppRollout int32 = 0x62657275
)

// lockKey maps an app id onto the 32-bit second key of an advisory lock.
func lockKey(appID int64) int32 { return int32(appID & 0x7fffffff) }

// lockApp takes the app's write lock for the rest of tx.
func lockApp(ctx context.Context, tx pgx.Tx, appID int64) error {
	if _, err := tx.Exec(ctx, "select pg_advisory_xact_lock($1, $2)", lockAppWrite, lockKey(appID)); err != nil {
		return fmt.Errorf("lock app: %w", err)
	}
	return nil
}

// LockApp takes the app's rollout lock, waiting for any other holder, and
// returns the function that releases it. The deploy package holds it for the
// whole rollout of a release, so two deploys, scales or restarts of one app
// never interleave. It is a different lock from the one SetConfig, Scale and
// CreateRelease take for their short transactions, so they can be called
// while it is held. The lock lives on a dedicated connection: if the
// connection dies, the lock is gone. Waiting ends when ctx does.
func (s *Service) LockApp(ctx context.Context, app string) (unlock func(), err error) {
	a, err := s.appByName(ctx, s.pool, app)
	if err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection for app lock: %w", err)
	}
	if _, err := conn.Exec(ctx, "select pg_advisory_lock($1, $2)", lockAppRollout, lockKey(a.ID)); err != nil {
		// The connection may be mid-query; do not reuse it.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
		return nil, fmt.Errorf("lock app %s: %w", app, err)
	}
	released := false
	return func() {
		if released {
			return
		}
		released = true
		if _, err := conn.Exec(context.Background(), "select pg_advisory_unlock($1, $2)", lockAppRollout, lockKey(a.ID)); err != nil {
			s.log.Warn("unlock app; dropping its connection", "app", app, "err", err)
			_ = conn.Conn().Close(context.Background())
		}
		conn.Release()
	}, nil
}

// WithAppLock runs fn while holding the app's rollout lock (see LockApp).
func (s *Service) WithAppLock(ctx context.Context, app string, fn func(ctx context.Context) error) error {
	unlock, err := s.LockApp(ctx, app)
	if err != nil {
		return err
	}
	defer unlock()
	return fn(ctx)
}

// querier is what pool and tx have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Service) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// uniqueViolation returns the constraint name when err is a unique violation.
func uniqueViolation(err error) (string, bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return pgErr.ConstraintName, true
	}
	return "", false
}

// isForeignKeyViolation reports whether err is a foreign key violation.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}
