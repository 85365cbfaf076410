package platform

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// formationOf loads the app's process types. The disk limit is the app's
// (one quota covers all its containers' writable layers), so every type
// carries the app's.
func formationOf(ctx context.Context, q querier, a App) ([]Process, error) {
	rows, err := q.Query(ctx, `select f.process_type, f.quantity, f.memory_bytes, f.cpu_millis, f.pids, a.disk_bytes, f.network_bps
		from formation f join apps a on a.id = f.app_id where f.app_id = $1 order by f.process_type`, a.ID)
	if err != nil {
		return nil, fmt.Errorf("load formation of %s: %w", a.Name, err)
	}
	procs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Process, error) {
		var p Process
		err := r.Scan(&p.Type, &p.Quantity, &p.Limits.MemoryBytes, &p.Limits.CPUMillis, &p.Limits.PIDs, &p.Limits.DiskBytes, &p.Limits.NetworkBPS)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("load formation of %s: %w", a.Name, err)
	}
	return procs, nil
}

// Formation returns the app's process types with their quantities and
// limits, sorted by type.
func (s *Service) Formation(ctx context.Context, actor Actor, app string) ([]Process, error) {
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return nil, err
	}
	return formationOf(ctx, s.pool, a)
}

// checkKnownTypes refuses process types the app's current release does not
// define. Before the first deploy any valid name is accepted, so an app can
// be scaled before it is pushed (as in Dokku).
func checkKnownTypes(ctx context.Context, tx pgx.Tx, a App, types []string) error {
	cur, ok, err := latestRelease(ctx, tx, a)
	if err != nil {
		return err
	}
	if !ok || len(cur.Processes) == 0 {
		return nil
	}
	for _, t := range types {
		if _, known := cur.Processes[t]; !known {
			known := make([]string, 0, len(cur.Processes))
			for k := range cur.Processes {
				known = append(known, k)
			}
			slices.Sort(known)
			return invalid("process type", t, fmt.Sprintf("%s v%d has %s", a.Name, cur.Version, strings.Join(known, ", ")))
		}
	}
	return nil
}

// Scale sets how many instances of each given process type should run.
// Types not given keep their quantity. It does not make a release. Nothing
// is written when any type or quantity is invalid.
func (s *Service) Scale(ctx context.Context, actor Actor, app string, quantities map[string]int) ([]Process, error) {
	if len(quantities) == 0 {
		return nil, invalid("formation", "", "give at least one TYPE=QUANTITY, e.g. web=2")
	}
	types := make([]string, 0, len(quantities))
	for t, n := range quantities {
		if err := ValidateProcessType(t); err != nil {
			return nil, err
		}
		if err := ValidateQuantity(t, n); err != nil {
			return nil, err
		}
		types = append(types, t)
	}
	slices.Sort(types)
	var procs []Process
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := s.appFor(ctx, tx, actor, app)
		if err != nil {
			return err
		}
		if err := lockApp(ctx, tx, a.ID); err != nil {
			return err
		}
		if err := checkKnownTypes(ctx, tx, a, types); err != nil {
			return err
		}
		for _, t := range types {
			if _, err := tx.Exec(ctx, `insert into formation (app_id, process_type, quantity) values ($1, $2, $3)
				on conflict (app_id, process_type) do update set quantity = excluded.quantity`, a.ID, t, quantities[t]); err != nil {
				return fmt.Errorf("scale %s: %w", t, err)
			}
		}
		procs, err = formationOf(ctx, tx, a)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("scaled", "app", app, "quantities", quantities, "by", actor.Name)
	return procs, nil
}

// LimitChange says which limits of a process type to change; nil fields are
// left as they are, 0 removes a limit.
type LimitChange struct {
	// MemoryBytes is the memory limit.
	MemoryBytes *int64
	// CPUMillis is the CPU limit in thousandths of a CPU.
	CPUMillis *int64
	// PIDs is the process-count limit.
	PIDs *int64
	// DiskBytes is the disk limit.
	DiskBytes *int64
	// NetworkBPS is the bandwidth limit in bits per second.
	NetworkBPS *int64
}

// ParseLimitChange builds a LimitChange from flag-style values keyed by
// limit name (memory, cpu, pids, disk, network), as resource:limit and the
// web form give them.
func ParseLimitChange(values map[string]string) (LimitChange, error) {
	var c LimitChange
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		v, err := ParseLimit(name, values[name])
		if err != nil {
			return LimitChange{}, err
		}
		switch name {
		case "memory":
			c.MemoryBytes = &v
		case "cpu":
			c.CPUMillis = &v
		case "pids":
			c.PIDs = &v
		case "disk":
			c.DiskBytes = &v
		case "network":
			c.NetworkBPS = &v
		}
	}
	return c, nil
}

func (c LimitChange) apply(l Limits) Limits {
	set := func(dst *int64, src *int64) {
		if src != nil {
			*dst = *src
		}
	}
	set(&l.MemoryBytes, c.MemoryBytes)
	set(&l.CPUMillis, c.CPUMillis)
	set(&l.PIDs, c.PIDs)
	set(&l.DiskBytes, c.DiskBytes)
	set(&l.NetworkBPS, c.NetworkBPS)
	return l
}

// SetLimits changes the resource limits of one process type and returns
// the process type as it is now. It does not make a release; the new limits
// apply to instances started from now on.
func (s *Service) SetLimits(ctx context.Context, actor Actor, app, processType string, change LimitChange) (Process, error) {
	if err := ValidateProcessType(processType); err != nil {
		return Process{}, err
	}
	if err := change.apply(Limits{}).Validate(); err != nil {
		return Process{}, err
	}
	var p Process
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := s.appFor(ctx, tx, actor, app)
		if err != nil {
			return err
		}
		if err := lockApp(ctx, tx, a.ID); err != nil {
			return err
		}
		if err := checkKnownTypes(ctx, tx, a, []string{processType}); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `insert into formation (app_id, process_type) values ($1, $2) on conflict do nothing`, a.ID, processType); err != nil {
			return fmt.Errorf("add process type %s: %w", processType, err)
		}
		procs, err := formationOf(ctx, tx, a)
		if err != nil {
			return err
		}
		for _, q := range procs {
			if q.Type == processType {
				p = q
			}
		}
		p.Limits = change.apply(p.Limits)
		if err := p.Limits.Validate(); err != nil {
			return err
		}
		l := p.Limits
		if _, err := tx.Exec(ctx, `update formation set memory_bytes = $3, cpu_millis = $4, pids = $5, network_bps = $6
			where app_id = $1 and process_type = $2`, a.ID, processType, l.MemoryBytes, l.CPUMillis, l.PIDs, l.NetworkBPS); err != nil {
			return fmt.Errorf("set limits of %s: %w", processType, err)
		}
		if _, err := tx.Exec(ctx, `update apps set disk_bytes = $2 where id = $1`, a.ID, l.DiskBytes); err != nil {
			return fmt.Errorf("set disk limit of %s: %w", app, err)
		}
		return nil
	})
	if err != nil {
		return Process{}, err
	}
	s.log.Info("limits set", "app", app, "process_type", processType, "memory", p.Limits.MemoryBytes,
		"cpu_millis", p.Limits.CPUMillis, "pids", p.Limits.PIDs, "disk", p.Limits.DiskBytes, "network_bps", p.Limits.NetworkBPS, "by", actor.Name)
	return p, nil
}
