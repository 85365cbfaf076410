package migrations

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

// VersionTable is the table that records which migrations have been applied.
const VersionTable = "public.berth_schema_version"

//go:embed *.sql
var files embed.FS

// FS returns the embedded migration files, named NNN_description.sql.
func FS() embed.FS { return files }

// Latest returns the schema version this binary knows: the number of the
// newest embedded migration.
func Latest() (int32, error) {
	names, err := migrate.FindMigrations(files)
	if err != nil {
		return 0, fmt.Errorf("find migrations: %w", err)
	}
	return int32(len(names)), nil
}

// Apply brings the database behind pool up to the newest schema. Each
// migration runs in its own transaction and is recorded in VersionTable, so
// running Apply again is a no-op. Concurrent callers are serialized by an
// advisory lock. A database whose schema is newer than this binary knows is
// refused with ErrSchemaTooNew and left untouched.
func Apply(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection for migrations: %w", err)
	}
	defer conn.Release()

	m, err := migrate.NewMigrator(ctx, conn.Conn(), VersionTable)
	if err != nil {
		return fmt.Errorf("prepare migrations: %w", err)
	}
	if err := m.LoadMigrations(files); err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	latest := int32(len(m.Migrations))
	current, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current > latest {
		return fmt.Errorf("database schema is version %d but this berth knows up to %d: upgrade berth: %w",
			current, latest, ErrSchemaTooNew)
	}
	if current == latest {
		return nil
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("apply migrations (from version %d to %d): %w", current, latest, err)
	}
	return nil
}

// Version returns the schema version recorded in the database behind pool,
// or 0 when no migration has been applied yet.
func Version(ctx context.Context, pool *pgxpool.Pool) (int32, error) {
	var exists bool
	if err := pool.QueryRow(ctx, "select to_regclass($1) is not null", VersionTable).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int32
	if err := pool.QueryRow(ctx, "select version from "+VersionTable).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
