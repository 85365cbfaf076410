package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/berthhq/berth/engine"
)

// EngineRunner runs RUN steps as engine containers: the step's layers as
// read-only overlay lowers, its upper directory as the container's
// caller-owned UpperDir, a bridge network for egress (NAT), the step's
// limits as cgroup limits, and the app's host ID range as the user
// namespace. The container is deleted before RunStep returns, whatever
// happened.
type EngineRunner struct {
	eng *engine.Engine
	ids func(app string) (IDRange, error)
	log *slog.Logger
}

// NewEngineRunner makes a StepRunner over eng. ids gives the host ID range
// of an app's build containers when a step does not carry one.
func NewEngineRunner(eng *engine.Engine, ids func(app string) (IDRange, error), logger *slog.Logger) *EngineRunner {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &EngineRunner{eng: eng, ids: ids, log: logger.With("component", "builder")}
}

// RunStep runs spec's process to its end in a fresh container, streaming
// its output, and removes the container.
func (r *EngineRunner) RunStep(ctx context.Context, spec StepSpec) (StepResult, error) {
	ids := spec.IDs
	if ids.HostUID == 0 {
		if r.ids == nil {
			return StepResult{}, fmt.Errorf("run step %s: no host ID range for app %q", spec.Name, spec.App)
		}
		var err error
		if ids, err = r.ids(spec.App); err != nil {
			return StepResult{}, fmt.Errorf("run step %s: host ID range: %w", spec.Name, err)
		}
	}
	out := spec.Output
	if out == nil {
		out = io.Discard
	}
	es := engine.Spec{
		Layers:   spec.Layers,
		UpperDir: spec.UpperDir,
		Process: engine.Process{
			Args: spec.Args, Env: spec.Env, Cwd: spec.Cwd, UID: spec.UID, GID: spec.GID,
			AdditionalGIDs: spec.Groups,
		},
		Hostname: "build",
		Limits: engine.Limits{
			MemoryBytes: spec.Limits.MemoryBytes,
			CPUQuota:    spec.Limits.CPUQuota,
			Pids:        spec.Limits.Pids,
		},
		Network: engine.Network{Mode: engine.NetworkBridge},
		IDMap:   engine.IDMap{HostUID: ids.HostUID, HostGID: ids.HostGID, Size: ids.Size},
		Labels:  map[string]string{"berth.role": "build", "berth.app": spec.App, "berth.step": spec.Name},
	}
	id, err := r.eng.Create(ctx, es)
	if err != nil {
		return StepResult{}, fmt.Errorf("create build container: %w", err)
	}
	defer func() {
		if err := r.eng.Delete(context.WithoutCancel(ctx), id); err != nil {
			r.log.Error("delete build container", "id", id, "err", err)
		}
	}()
	if err := r.eng.Start(ctx, id); err != nil {
		if ctx.Err() != nil {
			return StepResult{}, ctx.Err()
		}
		return StepResult{}, fmt.Errorf("start build container: %w", err)
	}
	// Follow the log file while the step runs; Logs returns once the
	// container has exited and the log is read to its end.
	lctx, stopLogs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLogs()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := r.eng.Logs(lctx, id, true, func(le engine.LogEntry) error {
			line := le.Text
			if !le.Partial {
				line += "\n"
			}
			_, err := io.WriteString(out, line)
			return err
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			r.log.Warn("follow build log", "id", id, "err", err)
		}
	}()
	st, err := r.eng.Wait(ctx, id)
	if err != nil {
		stopLogs()
		wg.Wait()
		if ctx.Err() != nil {
			return StepResult{}, ctx.Err()
		}
		return StepResult{}, fmt.Errorf("wait for build container: %w", err)
	}
	wg.Wait()
	return StepResult{ExitCode: st.Code, Signal: st.Signal, OOMKilled: st.OOMKilled}, nil
}
