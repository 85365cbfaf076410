package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ConfigVars are an app's environment variables. Values are secrets: the
// type prints and logs only the names.
type ConfigVars map[string]string

// String lists the names only.
func (c ConfigVars) String() string { return "ConfigVars{" + strings.Join(c.Keys(), ", ") + "}" }

// GoString lists the names only, so %#v does not leak values either.
func (c ConfigVars) GoString() string { return c.String() }

// LogValue logs the names only.
func (c ConfigVars) LogValue() slog.Value { return slog.AnyValue(c.Keys()) }

// Keys returns the names, sorted.
func (c ConfigVars) Keys() []string { return slices.Sorted(maps.Keys(c)) }

// Env returns the vars as KEY=value strings, sorted by name, for a
// container's environment.
func (c ConfigVars) Env() []string {
	env := make([]string, 0, len(c))
	for _, k := range c.Keys() {
		env = append(env, k+"="+c[k])
	}
	return env
}

// Limits are the resource limits of one process type; 0 means no limit.
type Limits struct {
	// MemoryBytes caps memory (cgroup memory limit).
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// CPUMillis caps CPU time, in thousandths of a CPU.
	CPUMillis int64 `json:"cpu_millis,omitempty"`
	// PIDs caps the number of processes.
	PIDs int64 `json:"pids,omitempty"`
	// DiskBytes caps the container's writable layer.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
	// NetworkBPS caps network bandwidth, in bits per second.
	NetworkBPS int64 `json:"network_bps,omitempty"`
}

// Process is one process type of an app's formation.
type Process struct {
	// Type is the process type, e.g. "web".
	Type string `json:"type"`
	// Quantity is how many instances should run.
	Quantity int `json:"quantity"`
	// Limits apply to each instance.
	Limits Limits `json:"limits"`
}

// Release is an immutable, numbered version of an app: what to run (image
// and process commands), with which config and formation.
type Release struct {
	// App is the app's name.
	App string
	// Version is 1, 2, 3, … per app.
	Version int
	// Image is the image reference in berth's image store; empty for a
	// release made by a config change before the first deploy.
	Image string
	// Processes maps process type to command; ImageCommand means the
	// image's own ENTRYPOINT/CMD.
	Processes map[string]string
	// Config is the config vars of the release (secrets).
	Config ConfigVars
	// Formation is the formation when the release was made, by type.
	Formation map[string]Process
	// Description says what made it: "Deploy 1a2b3c4", "Set FOO, BAR",
	// "Rollback to v3".
	Description string
	// CreatedBy is the actor's name.
	CreatedBy string
	// CreatedAt is when it was made.
	CreatedAt time.Time
}

// String names the release without its config.
func (r Release) String() string { return fmt.Sprintf("%s v%d", r.App, r.Version) }

// ImageCommand as a process type's command means "the image's own
// ENTRYPOINT and CMD": a Dockerfile app without a Procfile runs its image's
// command as web.
const ImageCommand = ""

// ReleaseSpec is what a deploy provides for a new release; config and
// formation are taken from the app.
type ReleaseSpec struct {
	// Image is the built or imported image reference (required).
	Image string
	// Processes maps process type to command (from a Procfile; at least
	// one). ImageCommand as a command runs the image's own ENTRYPOINT/CMD.
	Processes map[string]string
	// Description defaults to "Deploy".
	Description string
}

const releaseColumns = `version, image, processes, config, formation, description, created_by, created_at`

func scanRelease(app string, row pgx.Row) (Release, error) {
	r := Release{App: app}
	err := row.Scan(&r.Version, &r.Image, &r.Processes, &r.Config, &r.Formation, &r.Description, &r.CreatedBy, &r.CreatedAt)
	if r.Processes == nil {
		r.Processes = map[string]string{}
	}
	if r.Config == nil {
		r.Config = ConfigVars{}
	}
	if r.Formation == nil {
		r.Formation = map[string]Process{}
	}
	return r, err
}

// latestRelease returns the app's newest release, or ok false when it has none.
func latestRelease(ctx context.Context, q querier, a App) (Release, bool, error) {
	r, err := scanRelease(a.Name, q.QueryRow(ctx, `select `+releaseColumns+` from releases where app_id = $1 order by version desc limit 1`, a.ID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Release{}, false, nil
	}
	if err != nil {
		return Release{}, false, fmt.Errorf("load latest release of %s: %w", a.Name, err)
	}
	return r, true, nil
}

// Releases lists an app's releases, newest first; limit <= 0 means all.
func (s *Service) Releases(ctx context.Context, actor Actor, app string, limit int) ([]Release, error) {
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := s.pool.Query(ctx, `select `+releaseColumns+` from releases where app_id = $1 order by version desc limit $2`, a.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("list releases of %s: %w", app, err)
	}
	rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Release, error) { return scanRelease(app, r) })
	if err != nil {
		return nil, fmt.Errorf("list releases of %s: %w", app, err)
	}
	return rels, nil
}

// Release returns version v of an app.
func (s *Service) Release(ctx context.Context, actor Actor, app string, v int) (Release, error) {
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return Release{}, err
	}
	return releaseByVersion(ctx, s.pool, a, v)
}

func releaseByVersion(ctx context.Context, q querier, a App, v int) (Release, error) {
	r, err := scanRelease(a.Name, q.QueryRow(ctx, `select `+releaseColumns+` from releases where app_id = $1 and version = $2`, a.ID, v))
	if errors.Is(err, pgx.ErrNoRows) {
		return Release{}, notFound("release", fmt.Sprintf("v%d of %s", v, a.Name), "see releases "+a.Name)
	}
	if err != nil {
		return Release{}, fmt.Errorf("load release v%d of %s: %w", v, a.Name, err)
	}
	return r, nil
}

// CurrentRelease returns the app's newest release; ok is false when the app
// has none yet.
func (s *Service) CurrentRelease(ctx context.Context, actor Actor, app string) (r Release, ok bool, err error) {
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return Release{}, false, err
	}
	return latestRelease(ctx, s.pool, a)
}

// CreateRelease records a new release of the app from a deploy: spec's image
// and processes with the app's current config and formation. Process types
// new to the app are added to its formation (web with 1 instance, others
// with 0), as Dokku does.
func (s *Service) CreateRelease(ctx context.Context, actor Actor, app string, spec ReleaseSpec) (Release, error) {
	if strings.TrimSpace(spec.Image) == "" {
		return Release{}, invalid("image", "", "a release needs an image")
	}
	if len(spec.Processes) == 0 {
		return Release{}, invalid("processes", "", "a release needs at least one process type (a Procfile or an image CMD)")
	}
	for t, cmd := range spec.Processes {
		if err := ValidateProcessType(t); err != nil {
			return Release{}, err
		}
		if cmd != ImageCommand && strings.TrimSpace(cmd) == "" {
			return Release{}, invalid("command of process type "+t, "", "give a command")
		}
	}
	if spec.Description == "" {
		spec.Description = "Deploy"
	}
	var rel Release
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := s.appFor(ctx, tx, actor, app)
		if err != nil {
			return err
		}
		if err := lockApp(ctx, tx, a.ID); err != nil {
			return err
		}
		for t := range spec.Processes {
			qty := 0
			if t == "web" {
				qty = 1
			}
			if _, err := tx.Exec(ctx, `insert into formation (app_id, process_type, quantity) values ($1, $2, $3) on conflict do nothing`, a.ID, t, qty); err != nil {
				return fmt.Errorf("add process type %s: %w", t, err)
			}
		}
		cfg, err := configOf(ctx, tx, a)
		if err != nil {
			return err
		}
		rel, err = s.insertRelease(ctx, tx, actor, a, spec.Image, spec.Processes, cfg, spec.Description)
		return err
	})
	if err != nil {
		return Release{}, err
	}
	s.log.Info("release created", "app", app, "version", rel.Version, "description", rel.Description, "by", actor.Name)
	return rel, nil
}

// insertRelease writes the next release; the caller holds the app lock.
func (s *Service) insertRelease(ctx context.Context, tx pgx.Tx, actor Actor, a App, image string, procs map[string]string, cfg ConfigVars, desc string) (Release, error) {
	form, err := formationOf(ctx, tx, a)
	if err != nil {
		return Release{}, err
	}
	snap := make(map[string]Process, len(form))
	for _, p := range form {
		snap[p.Type] = p
	}
	if procs == nil {
		procs = map[string]string{}
	}
	procsJSON, err := json.Marshal(procs)
	if err != nil {
		return Release{}, fmt.Errorf("encode processes: %w", err)
	}
	cfgJSON, err := json.Marshal(map[string]string(cfg))
	if err != nil {
		return Release{}, fmt.Errorf("encode config: %w", err)
	}
	formJSON, err := json.Marshal(snap)
	if err != nil {
		return Release{}, fmt.Errorf("encode formation: %w", err)
	}
	row := tx.QueryRow(ctx, `insert into releases (app_id, version, image, processes, config, formation, description, created_by)
		values ($1, (select coalesce(max(version), 0) + 1 from releases where app_id = $1), $2, $3, $4, $5, $6, $7)
		returning `+releaseColumns, a.ID, image, procsJSON, cfgJSON, formJSON, desc, actor.Name)
	rel, err := scanRelease(a.Name, row)
	if err != nil {
		return Release{}, fmt.Errorf("create release of %s: %w", a.Name, err)
	}
	return rel, nil
}

// Rollback makes a new release that runs version v's image and processes
// with v's config; the app's config vars are restored to v's, as on Heroku.
func (s *Service) Rollback(ctx context.Context, actor Actor, app string, v int) (Release, error) {
	var rel Release
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := s.appFor(ctx, tx, actor, app)
		if err != nil {
			return err
		}
		if err := lockApp(ctx, tx, a.ID); err != nil {
			return err
		}
		old, err := releaseByVersion(ctx, tx, a, v)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `delete from config_vars where app_id = $1`, a.ID); err != nil {
			return fmt.Errorf("restore config: %w", err)
		}
		for _, k := range old.Config.Keys() {
			if _, err := tx.Exec(ctx, `insert into config_vars (app_id, key, value) values ($1, $2, $3)`, a.ID, k, old.Config[k]); err != nil {
				return fmt.Errorf("restore config var %s: %w", k, err)
			}
		}
		rel, err = s.insertRelease(ctx, tx, actor, a, old.Image, old.Processes, old.Config, fmt.Sprintf("Rollback to v%d", v))
		return err
	})
	if err != nil {
		return Release{}, err
	}
	s.log.Info("rolled back", "app", app, "to", v, "version", rel.Version, "by", actor.Name)
	return rel, nil
}

// ParseVersion parses a release version such as "v3" or "3".
func ParseVersion(s string) (int, error) {
	t := strings.TrimPrefix(strings.TrimSpace(s), "v")
	n := 0
	for _, c := range t {
		if c < '0' || c > '9' || n > 1<<24 {
			return 0, invalid("release", shown(s), "give a version such as v3")
		}
		n = n*10 + int(c-'0')
	}
	if t == "" || n < 1 {
		return 0, invalid("release", shown(s), "give a version such as v3")
	}
	return n, nil
}
