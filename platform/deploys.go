package platform

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
)

// DeployStatus is where a deploy is.
type DeployStatus string

// The deploy statuses, in order; succeeded and failed are final.
const (
	DeployPending   DeployStatus = "pending"
	DeployBuilding  DeployStatus = "building"
	DeployReleasing DeployStatus = "releasing"
	DeploySucceeded DeployStatus = "succeeded"
	DeployFailed    DeployStatus = "failed"
)

// Final reports whether the status is succeeded or failed.
func (d DeployStatus) Final() bool { return d == DeploySucceeded || d == DeployFailed }

func (d DeployStatus) valid() bool {
	switch d {
	case DeployPending, DeployBuilding, DeployReleasing, DeploySucceeded, DeployFailed:
		return true
	}
	return false
}

// Deploy records one push (or other deploy) of an app.
type Deploy struct {
	// ID is the database id.
	ID int64
	// App is the app's name.
	App string
	// ReleaseVersion is the release it made; 0 until then.
	ReleaseVersion int
	// Status is where it is.
	Status DeployStatus
	// Reason explains a failure.
	Reason string
	// GitCommit is the pushed commit, if any.
	GitCommit string
	// BuildLogPath is the file holding the build output.
	BuildLogPath string
	// CreatedBy is the actor's name.
	CreatedBy string
	// StartedAt is when it began.
	StartedAt time.Time
	// FinishedAt is when it reached a final status; zero before.
	FinishedAt time.Time
}

const deployColumns = `d.id, a.name, coalesce(d.release_version, 0), d.status, d.reason, d.git_commit, d.build_log_path, d.created_by, d.started_at, coalesce(d.finished_at, 'epoch')`

func scanDeploy(row pgx.Row) (Deploy, error) {
	var d Deploy
	err := row.Scan(&d.ID, &d.App, &d.ReleaseVersion, &d.Status, &d.Reason, &d.GitCommit, &d.BuildLogPath, &d.CreatedBy, &d.StartedAt, &d.FinishedAt)
	if d.FinishedAt.Equal(time.Unix(0, 0)) {
		d.FinishedAt = time.Time{}
	}
	return d, err
}

// StartDeploy records a new deploy of the app, pending. The deploy package
// then moves it on with SetDeployStatus.
func (s *Service) StartDeploy(ctx context.Context, actor Actor, app, gitCommit, buildLogPath string) (Deploy, error) {
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return Deploy{}, err
	}
	var id int64
	if err := s.pool.QueryRow(ctx, `insert into deploys (app_id, git_commit, build_log_path, created_by) values ($1, $2, $3, $4) returning id`,
		a.ID, gitCommit, buildLogPath, actor.Name).Scan(&id); err != nil {
		return Deploy{}, fmt.Errorf("record deploy of %s: %w", app, err)
	}
	return s.deployByID(ctx, id)
}

func (s *Service) deployByID(ctx context.Context, id int64) (Deploy, error) {
	d, err := scanDeploy(s.pool.QueryRow(ctx, `select `+deployColumns+` from deploys d join apps a on a.id = d.app_id where d.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Deploy{}, notFound("deploy", fmt.Sprint(id), "")
	}
	if err != nil {
		return Deploy{}, fmt.Errorf("load deploy %d: %w", id, err)
	}
	return d, nil
}

// Deploy returns one deploy of an app the actor may see.
func (s *Service) Deploy(ctx context.Context, actor Actor, app string, id int64) (Deploy, error) {
	if _, err := s.appFor(ctx, s.pool, actor, app); err != nil {
		return Deploy{}, err
	}
	d, err := s.deployByID(ctx, id)
	if err != nil {
		return Deploy{}, err
	}
	if d.App != app {
		return Deploy{}, notFound("deploy", fmt.Sprint(id), "")
	}
	return d, nil
}

// SetDeployStatus moves a deploy on. A final status (succeeded, failed)
// sets its finish time and cannot be changed afterwards. releaseVersion, when
// not 0, records the release the deploy made. It is for the daemon and takes
// no actor.
func (s *Service) SetDeployStatus(ctx context.Context, id int64, status DeployStatus, reason string, releaseVersion int) (Deploy, error) {
	if !status.valid() {
		return Deploy{}, invalid("deploy status", string(status), "use pending, building, releasing, succeeded or failed")
	}
	tag, err := s.pool.Exec(ctx, `update deploys set status = $2, reason = $3,
		release_version = coalesce(nullif($4, 0), release_version),
		finished_at = case when $2 in ('succeeded', 'failed') then now() else null end
		where id = $1 and status not in ('succeeded', 'failed')`, id, string(status), reason, releaseVersion)
	if err != nil {
		return Deploy{}, fmt.Errorf("set status of deploy %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		d, err := s.deployByID(ctx, id)
		if err != nil {
			return Deploy{}, err
		}
		return Deploy{}, fmt.Errorf("deploy %d already %s: %w", id, d.Status, ErrConflict)
	}
	return s.deployByID(ctx, id)
}

// Deploys lists an app's deploys, newest first; limit <= 0 means all.
func (s *Service) Deploys(ctx context.Context, actor Actor, app string, limit int) ([]Deploy, error) {
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := s.pool.Query(ctx, `select `+deployColumns+` from deploys d join apps a on a.id = d.app_id
		where d.app_id = $1 order by d.id desc limit $2`, a.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("list deploys of %s: %w", app, err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Deploy, error) { return scanDeploy(r) })
	if err != nil {
		return nil, fmt.Errorf("list deploys of %s: %w", app, err)
	}
	return ds, nil
}

// FailInterruptedDeploys marks every unfinished deploy failed; the daemon
// calls it at start, since no deploy survives a restart. It returns how many
// it marked.
func (s *Service) FailInterruptedDeploys(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `update deploys set status = 'failed', reason = 'interrupted: berth restarted during the deploy; push again',
		finished_at = now() where status not in ('succeeded', 'failed')`)
	if err != nil {
		return 0, fmt.Errorf("fail interrupted deploys: %w", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		s.log.Warn("marked interrupted deploys failed", "count", n)
	}
	return tag.RowsAffected(), nil
}

// ContainerState is a container's lifecycle state.
type ContainerState string

// The container states.
const (
	ContainerCreated  ContainerState = "created"
	ContainerStarting ContainerState = "starting"
	ContainerRunning  ContainerState = "running"
	ContainerStopping ContainerState = "stopping"
	ContainerStopped  ContainerState = "stopped"
	ContainerExited   ContainerState = "exited"
	ContainerFailed   ContainerState = "failed"
)

func (c ContainerState) valid() bool {
	switch c {
	case ContainerCreated, ContainerStarting, ContainerRunning, ContainerStopping, ContainerStopped, ContainerExited, ContainerFailed:
		return true
	}
	return false
}

// Container records one app process instance, so a restarted daemon can
// find and re-adopt (or replace) what was running.
type Container struct {
	// ID is the database id.
	ID int64
	// App is the app's name.
	App string
	// ProcessType is e.g. "web".
	ProcessType string
	// Instance is 1, 2, … within the process type.
	Instance int
	// ReleaseVersion is the release it runs.
	ReleaseVersion int
	// EngineID is the engine's id for the container (unique).
	EngineID string
	// IP is its veth address; invalid when it has none.
	IP netip.Addr
	// HostPID is its init's pid on the host; 0 when not running.
	HostPID int
	// State is its lifecycle state.
	State ContainerState
	// Restarts counts crash restarts.
	Restarts int
	// LastExitReason says why it last exited ("exit status 1", "OOM killed").
	LastExitReason string
	// StartedAt is when it last started; zero if never.
	StartedAt time.Time
	// UpdatedAt is when the record last changed.
	UpdatedAt time.Time
}

const containerColumns = `c.id, a.name, c.process_type, c.instance, c.release_version, c.engine_id, c.ip, coalesce(c.host_pid, 0), c.state,
	c.restarts, c.last_exit_reason, coalesce(c.started_at, 'epoch'), c.updated_at`

func scanContainer(row pgx.Row) (Container, error) {
	var c Container
	var ip *netip.Addr
	err := row.Scan(&c.ID, &c.App, &c.ProcessType, &c.Instance, &c.ReleaseVersion, &c.EngineID, &ip, &c.HostPID, &c.State,
		&c.Restarts, &c.LastExitReason, &c.StartedAt, &c.UpdatedAt)
	if ip != nil {
		c.IP = *ip
	}
	if c.StartedAt.Equal(time.Unix(0, 0)) {
		c.StartedAt = time.Time{}
	}
	return c, err
}

// SaveContainer creates or updates (by EngineID) a container record and
// returns it as stored. Two live containers cannot share an IP. It is for
// the daemon and takes no actor.
func (s *Service) SaveContainer(ctx context.Context, c Container) (Container, error) {
	switch {
	case c.EngineID == "":
		return Container{}, invalid("engine id", "", "a container record needs the engine's id")
	case !c.State.valid():
		return Container{}, invalid("container state", string(c.State), "use created, starting, running, stopping, stopped, exited or failed")
	case c.Instance < 1:
		return Container{}, invalid("instance", fmt.Sprint(c.Instance), "instances are numbered from 1")
	}
	if err := ValidateProcessType(c.ProcessType); err != nil {
		return Container{}, err
	}
	a, err := s.appByName(ctx, s.pool, c.App)
	if err != nil {
		return Container{}, err
	}
	var ip *netip.Addr
	if c.IP.IsValid() {
		ip = &c.IP
	}
	var pid *int
	if c.HostPID > 0 {
		pid = &c.HostPID
	}
	var started *time.Time
	if !c.StartedAt.IsZero() {
		started = &c.StartedAt
	}
	var id int64
	err = s.pool.QueryRow(ctx, `insert into containers (app_id, process_type, instance, release_version, engine_id, ip, host_pid, state,
			restarts, last_exit_reason, started_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		on conflict (engine_id) do update set process_type = excluded.process_type, instance = excluded.instance,
			release_version = excluded.release_version, ip = excluded.ip, host_pid = excluded.host_pid, state = excluded.state,
			restarts = excluded.restarts, last_exit_reason = excluded.last_exit_reason, started_at = excluded.started_at,
			updated_at = now()
		where containers.app_id = excluded.app_id
		returning id`, a.ID, c.ProcessType, c.Instance, c.ReleaseVersion, c.EngineID, ip, pid, string(c.State),
		c.Restarts, c.LastExitReason, started).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Container{}, exists("container", c.EngineID, "the engine id belongs to another app")
	}
	if cn, ok := uniqueViolation(err); ok && cn == "containers_ip_live_key" {
		return Container{}, exists("container IP", c.IP.String(), "another live container has it")
	}
	if err != nil {
		return Container{}, fmt.Errorf("save container %s: %w", c.EngineID, err)
	}
	return scanContainer(s.pool.QueryRow(ctx, `select `+containerColumns+` from containers c join apps a on a.id = c.app_id where c.id = $1`, id))
}

// Containers lists container records of an app ("" for all apps), ordered
// by app, process type and instance. It is for the daemon and takes no
// actor.
func (s *Service) Containers(ctx context.Context, app string) ([]Container, error) {
	rows, err := s.pool.Query(ctx, `select `+containerColumns+` from containers c join apps a on a.id = c.app_id
		where $1 = '' or a.name = $1 order by a.name, c.process_type, c.instance, c.id`, app)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Container, error) { return scanContainer(r) })
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return cs, nil
}

// AppContainers lists an app's containers for an actor who may see it.
func (s *Service) AppContainers(ctx context.Context, actor Actor, app string) ([]Container, error) {
	if _, err := s.appFor(ctx, s.pool, actor, app); err != nil {
		return nil, err
	}
	return s.Containers(ctx, app)
}

// RemoveContainer deletes a container record by engine id. Removing one
// that is not there is not an error.
func (s *Service) RemoveContainer(ctx context.Context, engineID string) error {
	if _, err := s.pool.Exec(ctx, `delete from containers where engine_id = $1`, engineID); err != nil {
		return fmt.Errorf("remove container %s: %w", engineID, err)
	}
	return nil
}
