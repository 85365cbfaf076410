package platform

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

func configOf(ctx context.Context, q querier, a App) (ConfigVars, error) {
	rows, err := q.Query(ctx, `select key, value from config_vars where app_id = $1`, a.ID)
	if err != nil {
		return nil, fmt.Errorf("load config of %s: %w", a.Name, err)
	}
	defer rows.Close()
	cfg := ConfigVars{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("load config of %s: %w", a.Name, err)
		}
		cfg[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load config of %s: %w", a.Name, err)
	}
	return cfg, nil
}

// Config returns the app's config vars.
func (s *Service) Config(ctx context.Context, actor Actor, app string) (ConfigVars, error) {
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return nil, err
	}
	return configOf(ctx, s.pool, a)
}

// SetConfig sets several config vars at once and makes one new release
// ("Set FOO, BAR") that runs the current image with the new config. Nothing
// is written when any name or value is invalid. Values never appear in logs
// or errors.
func (s *Service) SetConfig(ctx context.Context, actor Actor, app string, vars map[string]string) (Release, error) {
	if len(vars) == 0 {
		return Release{}, invalid("config vars", "", "give at least one KEY=value")
	}
	keys := ConfigVars(vars).Keys()
	for _, k := range keys {
		if err := ValidateConfigKey(k); err != nil {
			return Release{}, err
		}
		if err := validateConfigValue(k, vars[k]); err != nil {
			return Release{}, err
		}
	}
	return s.changeConfig(ctx, actor, app, "Set "+strings.Join(keys, ", "), func(ctx context.Context, tx pgx.Tx, a App) error {
		for _, k := range keys {
			if _, err := tx.Exec(ctx, `insert into config_vars (app_id, key, value) values ($1, $2, $3)
				on conflict (app_id, key) do update set value = excluded.value`, a.ID, k, vars[k]); err != nil {
				return fmt.Errorf("set config var %s: %w", k, err)
			}
		}
		var total int64
		if err := tx.QueryRow(ctx, `select coalesce(sum(octet_length(key) + octet_length(value) + 2), 0) from config_vars where app_id = $1`, a.ID).Scan(&total); err != nil {
			return fmt.Errorf("size config vars: %w", err)
		}
		if total > MaxConfigTotal {
			return invalid("config vars", "", fmt.Sprintf("they would hold %d KiB in all; an app's may hold at most %d KiB", (total+1023)/1024, MaxConfigTotal>>10))
		}
		return nil
	})
}

// UnsetConfig removes several config vars at once and makes one new release
// ("Unset FOO, BAR"). Every name must be set; otherwise nothing changes.
func (s *Service) UnsetConfig(ctx context.Context, actor Actor, app string, keys []string) (Release, error) {
	if len(keys) == 0 {
		return Release{}, invalid("config vars", "", "give at least one name to unset")
	}
	seen := map[string]bool{}
	var uniq []string
	for _, k := range keys {
		if err := ValidateConfigKey(k); err != nil {
			return Release{}, err
		}
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	return s.changeConfig(ctx, actor, app, "Unset "+strings.Join(uniq, ", "), func(ctx context.Context, tx pgx.Tx, a App) error {
		for _, k := range uniq {
			tag, err := tx.Exec(ctx, `delete from config_vars where app_id = $1 and key = $2`, a.ID, k)
			if err != nil {
				return fmt.Errorf("unset config var %s: %w", k, err)
			}
			if tag.RowsAffected() == 0 {
				return notFound("config var", k, "it is not set on "+a.Name+"; see config "+a.Name)
			}
		}
		return nil
	})
}

// baseRelease is the release a config change builds on: the one running
// (deployed) when there is one, so that a newer release whose rollout failed
// is not picked up by the next config change; else the newest.
func baseRelease(ctx context.Context, q querier, a App) (Release, error) {
	if a.DeployedRelease > 0 {
		r, err := releaseByVersion(ctx, q, a, a.DeployedRelease)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Release{}, err
		}
	}
	r, _, err := latestRelease(ctx, q, a)
	return r, err
}

// changeConfig applies change under the app's lock and records a release
// with the current image and the resulting config.
func (s *Service) changeConfig(ctx context.Context, actor Actor, app, desc string, change func(context.Context, pgx.Tx, App) error) (Release, error) {
	var rel Release
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := s.appFor(ctx, tx, actor, app)
		if err != nil {
			return err
		}
		if err := lockApp(ctx, tx, a.ID); err != nil {
			return err
		}
		if err := change(ctx, tx, a); err != nil {
			return err
		}
		cfg, err := configOf(ctx, tx, a)
		if err != nil {
			return err
		}
		cur, err := baseRelease(ctx, tx, a)
		if err != nil {
			return err
		}
		rel, err = s.insertRelease(ctx, tx, actor, a, cur.Image, cur.Processes, cfg, desc)
		return err
	})
	if err != nil {
		return Release{}, err
	}
	// The description holds names only, never values.
	s.log.Info("config changed", "app", app, "version", rel.Version, "change", desc, "by", actor.Name)
	return rel, nil
}
