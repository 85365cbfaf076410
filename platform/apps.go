package platform

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// App is an application.
type App struct {
	// ID is the database id.
	ID int64
	// Name is the app's unique name (see ValidateAppName).
	Name string
	// Owner is the owning user's name; empty when the system created it.
	Owner string
	// OwnerID is the owning user's id; 0 when the system created it.
	OwnerID int64
	// DeployBranch is the git branch whose pushes deploy; default "main".
	DeployBranch string
	// UIDBase is the first host UID of the app's private range of
	// AppUIDRange UIDs, for its containers' user namespace. It is allocated
	// once and never given to another app, even after this one is destroyed.
	UIDBase int64
	// DeployedRelease is the version most recently rolled out with
	// success; 0 before the first one.
	DeployedRelease int
	// Stopped says the app was stopped with ps:stop.
	Stopped bool
	// CreatedAt is when the app was created.
	CreatedAt time.Time
}

const appColumns = `a.id, a.name, coalesce(u.name, ''), coalesce(a.owner_id, 0), a.deploy_branch, a.uid_base,
	coalesce(a.deployed_release, 0), a.stopped, a.created_at`

func scanApp(row pgx.Row) (App, error) {
	var a App
	err := row.Scan(&a.ID, &a.Name, &a.Owner, &a.OwnerID, &a.DeployBranch, &a.UIDBase, &a.DeployedRelease, &a.Stopped, &a.CreatedAt)
	return a, err
}

func appNotFound(name string) error {
	return notFound("app", name, "see apps:list")
}

// appByName loads an app without checking permissions.
func (s *Service) appByName(ctx context.Context, q querier, name string) (App, error) {
	a, err := scanApp(q.QueryRow(ctx, `select `+appColumns+` from apps a left join users u on u.id = a.owner_id where a.name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return App{}, appNotFound(name)
	}
	if err != nil {
		return App{}, fmt.Errorf("load app %s: %w", name, err)
	}
	return a, nil
}

// appFor loads an app the actor may see; apps it may not see are not found.
func (s *Service) appFor(ctx context.Context, q querier, actor Actor, name string) (App, error) {
	if err := actor.valid(); err != nil {
		return App{}, err
	}
	if name == "" {
		return App{}, ValidateAppName(name)
	}
	if ValidateAppName(name) != nil {
		// Not a name any app can have; say not found rather than invalid,
		// as for any other app the actor cannot see.
		return App{}, appNotFound(name)
	}
	a, err := s.appByName(ctx, q, name)
	if err != nil {
		return App{}, err
	}
	if actor.IsAdmin() || a.OwnerID == actor.UserID {
		return a, nil
	}
	var shared bool
	if err := q.QueryRow(ctx, `select exists (select 1 from app_shares where app_id = $1 and user_id = $2)`, a.ID, actor.UserID).Scan(&shared); err != nil {
		return App{}, fmt.Errorf("check app permission: %w", err)
	}
	if !shared {
		return App{}, appNotFound(name)
	}
	return a, nil
}

// appForOwner loads an app the actor owns (or any app, for admins).
func (s *Service) appForOwner(ctx context.Context, q querier, actor Actor, name, what string) (App, error) {
	a, err := s.appFor(ctx, q, actor, name)
	if err != nil {
		return App{}, err
	}
	if !actor.IsAdmin() && a.OwnerID != actor.UserID {
		return App{}, forbidden(fmt.Sprintf("only the owner of %s or an admin can %s", name, what))
	}
	return a, nil
}

// CreateApp creates an app owned by the actor (no owner for the system).
// A name that is taken gives an *ExistsError, also when two requests race.
func (s *Service) CreateApp(ctx context.Context, actor Actor, name string) (App, error) {
	if err := actor.valid(); err != nil {
		return App{}, err
	}
	if err := ValidateAppName(name); err != nil {
		return App{}, err
	}
	var owner *int64
	if !actor.system {
		owner = &actor.UserID
	}
	var id int64
	err := s.pool.QueryRow(ctx, `insert into apps (name, owner_id) values ($1, $2) returning id`, name, owner).Scan(&id)
	if c, ok := uniqueViolation(err); ok && c == "apps_name_key" {
		return App{}, exists("app", name, "choose another name")
	}
	if err != nil {
		return App{}, fmt.Errorf("create app %s: %w", name, err)
	}
	s.log.Info("app created", "app", name, "by", actor.Name)
	return s.appByName(ctx, s.pool, name)
}

// App returns the app the actor may see.
func (s *Service) App(ctx context.Context, actor Actor, name string) (App, error) {
	return s.appFor(ctx, s.pool, actor, name)
}

// Apps lists the apps the actor may see, by name.
func (s *Service) Apps(ctx context.Context, actor Actor) ([]App, error) {
	if err := actor.valid(); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `select `+appColumns+` from apps a left join users u on u.id = a.owner_id
		where $1 or a.owner_id = $2 or exists (select 1 from app_shares sh where sh.app_id = a.id and sh.user_id = $2)
		order by a.name`, actor.IsAdmin(), actor.UserID)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	apps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (App, error) { return scanApp(r) })
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return apps, nil
}

// AppToDestroy returns the app if the actor may destroy it (its owner or an
// admin), so that a caller can stop its containers before DestroyApp
// removes its records, and refuse before either.
func (s *Service) AppToDestroy(ctx context.Context, actor Actor, name string) (App, error) {
	return s.appForOwner(ctx, s.pool, actor, name, "destroy it")
}

// DestroyApp deletes an app with its releases, config, formation, domains,
// deploy and container records. Only its owner or an admin may. The caller
// stops the app's containers first.
func (s *Service) DestroyApp(ctx context.Context, actor Actor, name string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := s.appForOwner(ctx, tx, actor, name, "destroy it")
		if err != nil {
			return err
		}
		if err := lockApp(ctx, tx, a.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `delete from apps where id = $1`, a.ID); err != nil {
			return fmt.Errorf("destroy app %s: %w", name, err)
		}
		s.log.Info("app destroyed", "app", name, "by", actor.Name)
		return nil
	})
}

// SetDeployBranch sets the git branch whose pushes deploy the app.
func (s *Service) SetDeployBranch(ctx context.Context, actor Actor, app, branch string) error {
	if err := ValidateBranch(branch); err != nil {
		return err
	}
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `update apps set deploy_branch = $2 where id = $1`, a.ID, branch); err != nil {
		return fmt.Errorf("set deploy branch of %s: %w", app, err)
	}
	return nil
}

// ShareApp lets user see and manage the app. Only its owner or an admin may
// share it. Sharing twice is not an error.
func (s *Service) ShareApp(ctx context.Context, actor Actor, app, user string) error {
	a, err := s.appForOwner(ctx, s.pool, actor, app, "share it")
	if err != nil {
		return err
	}
	u, err := s.userByName(ctx, s.pool, user)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `insert into app_shares (app_id, user_id) values ($1, $2) on conflict do nothing`, a.ID, u.ID); err != nil {
		return fmt.Errorf("share app %s: %w", app, err)
	}
	s.log.Info("app shared", "app", app, "user", user, "by", actor.Name)
	return nil
}

// UnshareApp takes back what ShareApp gave.
func (s *Service) UnshareApp(ctx context.Context, actor Actor, app, user string) error {
	a, err := s.appForOwner(ctx, s.pool, actor, app, "change who shares it")
	if err != nil {
		return err
	}
	u, err := s.userByName(ctx, s.pool, user)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `delete from app_shares where app_id = $1 and user_id = $2`, a.ID, u.ID)
	if err != nil {
		return fmt.Errorf("unshare app %s: %w", app, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("share of app "+app+" with user", user, "see apps:info")
	}
	return nil
}

// AppShares lists the users an app is shared with, by name.
func (s *Service) AppShares(ctx context.Context, actor Actor, app string) ([]string, error) {
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `select u.name from app_shares sh join users u on u.id = sh.user_id where sh.app_id = $1 order by u.name`, a.ID)
	if err != nil {
		return nil, fmt.Errorf("list shares of %s: %w", app, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list shares of %s: %w", app, err)
	}
	return names, nil
}
