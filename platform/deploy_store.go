package platform

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// DeployedRelease returns the version of the release most recently rolled
// out with success; ok is false before the first one. It is for the daemon
// and takes no actor.
func (s *Service) DeployedRelease(ctx context.Context, app string) (version int, ok bool, err error) {
	var v *int
	if err := s.pool.QueryRow(ctx, `select deployed_release from apps where name = $1`, app).Scan(&v); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, false, appNotFound(app)
		}
		return 0, false, fmt.Errorf("load deployed release of %s: %w", app, err)
	}
	if v == nil {
		return 0, false, nil
	}
	return *v, true, nil
}

// SetDeployedRelease records that release v of the app now runs; the
// release must exist. It is for the daemon and takes no actor.
func (s *Service) SetDeployedRelease(ctx context.Context, app string, v int) error {
	a, err := s.appByName(ctx, s.pool, app)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `update apps set deployed_release = $2 where id = $1
		and exists (select 1 from releases where app_id = $1 and version = $2)`, a.ID, v)
	if err != nil {
		return fmt.Errorf("record deployed release of %s: %w", app, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("release", fmt.Sprintf("v%d of %s", v, app), "see releases "+app)
	}
	return nil
}

// AppStopped reports whether the app was stopped with ps:stop. It is for
// the daemon and takes no actor.
func (s *Service) AppStopped(ctx context.Context, app string) (bool, error) {
	var stopped bool
	if err := s.pool.QueryRow(ctx, `select stopped from apps where name = $1`, app).Scan(&stopped); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return false, appNotFound(app)
		}
		return false, fmt.Errorf("load app %s: %w", app, err)
	}
	return stopped, nil
}

// SetAppStopped records ps:stop (true) or ps:start (false). It is for the
// daemon and takes no actor.
func (s *Service) SetAppStopped(ctx context.Context, app string, stopped bool) error {
	tag, err := s.pool.Exec(ctx, `update apps set stopped = $2 where name = $1`, app, stopped)
	if err != nil {
		return fmt.Errorf("record stopped state of %s: %w", app, err)
	}
	if tag.RowsAffected() == 0 {
		return appNotFound(app)
	}
	return nil
}
