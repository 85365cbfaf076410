package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/berthhq/berth/internal/pgcluster"
	"github.com/berthhq/berth/migrations"
	"github.com/jackc/pgx/v5/pgxpool"
)

// database is berth's Postgres: an external server named by a URL, or the
// private cluster under the data directory that berth runs itself.
type database struct {
	pool    *pgxpool.Pool
	cluster *pgcluster.Cluster // nil with an external server
	where   string             // for messages: the URL without secrets, or the cluster dir
}

// openDatabase connects (starting the embedded cluster when no URL is
// configured) and brings the schema up to date.
func openDatabase(ctx context.Context, cfg Config, logger *slog.Logger) (*database, error) {
	db := &database{}
	url := cfg.DatabaseURL
	if url == "" {
		dir := filepath.Join(cfg.DataDir, "postgres")
		c, err := pgcluster.New(pgcluster.Options{Dir: dir, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("embedded postgres in %s: %w", dir, err)
		}
		if err := c.Start(ctx); err != nil {
			return nil, fmt.Errorf("start embedded postgres in %s (set BERTH_DATABASE_URL to use another server): %w", dir, err)
		}
		db.cluster = c
		db.where = "embedded cluster in " + dir
		url = c.ConnString("")
	} else {
		db.where = redactURL(url)
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		db.close()
		return nil, fmt.Errorf("parse database URL %s: %w", db.where, err)
	}
	// Each rollout holds one connection for its app lock; leave room for
	// several at once plus the front doors' queries.
	if pcfg.MaxConns < 32 {
		pcfg.MaxConns = 32
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		db.close()
		return nil, fmt.Errorf("connect to %s: %w", db.where, err)
	}
	db.pool = pool
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		db.close()
		return nil, fmt.Errorf("connect to %s: %w", db.where, err)
	}
	if err := migrations.Apply(ctx, pool); err != nil {
		db.close()
		return nil, fmt.Errorf("migrate %s: %w", db.where, err)
	}
	return db, nil
}

func (db *database) close() {
	if db.pool != nil {
		db.pool.Close()
	}
	if db.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = db.cluster.Stop(ctx)
	}
}

// redactURL drops the password from a connection URL for messages.
func redactURL(u string) string {
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return "the configured database URL"
	}
	return fmt.Sprintf("postgres server %s:%d database %s as %s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, cfg.ConnConfig.User)
}
