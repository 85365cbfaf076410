package builder

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/sys/unix"
)

// Options configures a Builder.
type Options struct {
	// Store keeps the layers, images and cache. Required.
	Store *Store
	// Runner runs RUN steps; builds that reach a RUN step without one fail
	// with ErrNoRunner.
	Runner StepRunner
	// Logger is scoped to the builder component.
	Logger *slog.Logger
	// Limits are the default resource limits of RUN steps; zero fields
	// mean 2 GiB of memory, all CPUs' worth of quota and 4096 pids.
	Limits Limits
	// DebianBase is the buildpacks' base image; default "debian:bookworm".
	// It is made with CreateDebianBase on first use when missing.
	DebianBase string
	// Debian tunes that creation (RootfsCache in particular).
	Debian DebianOptions
}

// Builder builds images from app source.
type Builder struct {
	store  *Store
	runner StepRunner
	log    *slog.Logger
	opts   Options
	// baseMu keeps concurrent first builds from bootstrapping the Debian
	// base twice.
	baseMu sync.Mutex
}

// New makes a Builder.
func New(opts Options) (*Builder, error) {
	if opts.Store == nil {
		return nil, errors.New("create builder: a Store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DebianBase == "" {
		opts.DebianBase = "debian:bookworm"
	}
	// Every RUN step is limited; these defaults apply where neither the
	// options nor the request say otherwise.
	if opts.Limits.MemoryBytes == 0 {
		opts.Limits.MemoryBytes = 2 << 30
	}
	if opts.Limits.CPUQuota == 0 {
		opts.Limits.CPUQuota = float64(runtime.NumCPU())
	}
	if opts.Limits.Pids == 0 {
		opts.Limits.Pids = 4096
	}
	return &Builder{store: opts.Store, runner: opts.Runner, log: opts.Logger.With("component", "builder"), opts: opts}, nil
}

// Store returns the builder's store.
func (b *Builder) Store() *Store { return b.store }

// BuildRequest asks for one build.
type BuildRequest struct {
	// App is the app's name (for the build containers' ID range and the
	// default tag).
	App string
	// ContextDir is the checked-out source.
	ContextDir string
	// Output receives the live build log; nil discards it.
	Output io.Writer
	// Tag is the image name:tag to store; default "APP:latest".
	Tag string
	// Dockerfile is the Dockerfile's path in the context; default
	// "Dockerfile". Without one, a buildpack is used.
	Dockerfile string
	// BuildArgs set ARG values.
	BuildArgs map[string]string
	// Target builds up to the named stage instead of the last one.
	Target string
	// Limits override the builder's default RUN limits when non-zero.
	Limits Limits
	// IDs is the host ID range for RUN containers (zero: the runner's
	// default for App).
	IDs IDRange
}

// BuildResult is a finished build.
type BuildResult struct {
	// Image is the stored image.
	Image *Image
	// Kind is "dockerfile" or "buildpack:LANG".
	Kind string
	// Steps reports every step in order.
	Steps []StepReport
	// Duration is the whole build's wall time.
	Duration time.Duration
}

// RunsExecuted counts the RUN steps that actually ran (cache misses).
func (r *BuildResult) RunsExecuted() int {
	n := 0
	for _, s := range r.Steps {
		if s.Kind == "RUN" && !s.Cached {
			n++
		}
	}
	return n
}

// StepReport describes one executed or cached step.
type StepReport struct {
	// Number is the step's 1-based position in the build.
	Number int
	// Kind is the instruction (FROM, RUN, COPY, …).
	Kind string
	// Instruction is the source text.
	Instruction string
	// Line is the Dockerfile line (0 for generated steps).
	Line int
	// Cached is true when the step's layer came from the build cache.
	Cached bool
	// Layer is the layer the step made or reused, empty for config steps.
	Layer string
	// Duration is the step's wall time.
	Duration time.Duration
}

// Build builds the app in req.ContextDir: with its Dockerfile if it has
// one, else with the buildpack its files select. Every step streams to
// req.Output with a header and its duration. The image is stored under
// req.Tag. A cancelled ctx stops the running step; nothing of the build is
// left behind but cache entries of finished steps.
func (b *Builder) Build(ctx context.Context, req BuildRequest) (*BuildResult, error) {
	start := time.Now()
	if req.Output == nil {
		req.Output = io.Discard
	}
	tag := req.Tag
	if tag == "" {
		tag = req.App
	}
	tag, err := NormalizeRef(tag)
	if err != nil {
		return nil, err
	}
	bc, err := openBuildContext(req.ContextDir)
	if err != nil {
		return nil, err
	}
	dfName := req.Dockerfile
	if dfName == "" {
		dfName = "Dockerfile"
	}
	res := &BuildResult{}
	var plan *Plan
	var procs map[string]string
	if src, rerr := bc.readFile(dfName); rerr == nil {
		res.Kind = "dockerfile"
		if plan, err = ParseDockerfileBytes(src); err != nil {
			return nil, err
		}
		if pf, perr := bc.readFile("Procfile"); perr == nil {
			if procs, err = ParseProcfileBytes(pf); err != nil {
				return nil, err
			}
		} else if !os.IsNotExist(perr) {
			return nil, perr
		}
	} else if os.IsNotExist(rerr) && req.Dockerfile == "" {
		bp, p, err := DetectBuildpack(bc.dir)
		if err != nil {
			return nil, err
		}
		procs = p
		res.Kind = "buildpack:" + bp.Name
		bc.defaultIgnore(".git")
		fmt.Fprintf(req.Output, "-----> %s app detected (Procfile: %s)\n", bp.Name, strings.Join(sortedKeys(p), ", "))
		if err := b.ensureDebianBase(ctx, req.Output); err != nil {
			return nil, err
		}
		if plan, err = ParseDockerfile(strings.NewReader(bp.Dockerfile(b.opts.DebianBase))); err != nil {
			return nil, fmt.Errorf("render %s buildpack: %w", bp.Name, err)
		}
		for i := range plan.Stages {
			plan.Stages[i].Line = 0
			for j := range plan.Stages[i].Steps {
				plan.Stages[i].Steps[j].Line = 0
			}
		}
	} else if rerr != nil {
		return nil, fmt.Errorf("read %s: %w", dfName, rerr)
	}

	b.store.gc.RLock()
	defer b.store.gc.RUnlock()
	r := &run{b: b, req: req, bc: bc, plan: plan, res: res, lex: shell.NewLex(plan.Escape)}
	final, err := r.execute(ctx)
	if err != nil {
		return nil, err
	}
	img := &Image{Ref: tag, Layers: final.layers, Config: final.config, History: final.history, Processes: procs}
	if err := b.store.PutImage(img); err != nil {
		return nil, err
	}
	res.Image = img
	res.Duration = time.Since(start)
	fmt.Fprintf(req.Output, "-----> built %s (%d layers, %s) in %s\n", tag, len(img.Layers), humanSize(img.Size()), res.Duration.Round(time.Millisecond))
	b.log.Info("build finished", "app", req.App, "image", tag, "kind", res.Kind, "runs", res.RunsExecuted(), "duration", res.Duration)
	return res, nil
}

// ensureDebianBase makes the buildpacks' base image if it is missing.
func (b *Builder) ensureDebianBase(ctx context.Context, out io.Writer) error {
	b.baseMu.Lock()
	defer b.baseMu.Unlock()
	_, err := b.store.Image(b.opts.DebianBase)
	if !errors.Is(err, ErrImageNotFound) {
		return err
	}
	fmt.Fprintf(out, "-----> creating the %s base image (once per host)\n", b.opts.DebianBase)
	dopt := b.opts.Debian
	dopt.Ref, dopt.Output = b.opts.DebianBase, out
	_, err = b.store.CreateDebianBase(ctx, dopt)
	return err
}

// stageState is the image a stage has built so far.
type stageState struct {
	layers  []string
	history []History
	config  v1.Config
	key     string
	args    map[string]string
	shell   []string
}

func (s *stageState) clone() *stageState {
	c := &stageState{
		layers:  slices.Clone(s.layers),
		history: slices.Clone(s.history),
		config:  *s.config.DeepCopy(),
		key:     s.key,
		args:    map[string]string{},
		shell:   slices.Clone(s.shell),
	}
	return c
}

func (s *stageState) fs(st *Store) mergedFS {
	dirs := make([]string, len(s.layers))
	for i, l := range s.layers {
		dirs[i] = st.LayerDir(l)
	}
	return mergedFS{layers: dirs}
}

// run is one build in progress.
type run struct {
	b      *Builder
	req    BuildRequest
	bc     *buildContext
	plan   *Plan
	res    *BuildResult
	lex    *shell.Lex
	meta   map[string]string
	stages map[int]*stageState
	stepNo int
	total  int
}

func chainKey(parent string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(parent))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// needed returns the stages the target depends on, in order.
func (r *run) needed() ([]int, error) {
	target := len(r.plan.Stages) - 1
	if r.req.Target != "" {
		target = r.plan.stageIndex(r.req.Target)
		if target < 0 {
			return nil, fmt.Errorf("%w: target stage %q not found", ErrDockerfile, r.req.Target)
		}
	}
	need := map[int]bool{}
	var visit func(i int)
	visit = func(i int) {
		if need[i] {
			return
		}
		need[i] = true
		st := r.plan.Stages[i]
		if j := r.plan.stageIndex(r.expandMeta(st.Base)); j >= 0 && j < i {
			visit(j)
		}
		for _, s := range st.Steps {
			if s.From != "" {
				if j := r.plan.stageIndex(s.From); j >= 0 && j < i {
					visit(j)
				}
			}
		}
	}
	visit(target)
	var out []int
	for i := 0; i <= target; i++ {
		if need[i] {
			out = append(out, i)
		}
	}
	return out, nil
}

func (r *run) expandMeta(word string) string {
	v, _, err := r.lex.ProcessWord(word, mapEnv(r.meta))
	if err != nil {
		return word
	}
	return v
}

func (r *run) execute(ctx context.Context) (*stageState, error) {
	r.meta = map[string]string{}
	for _, a := range r.plan.MetaArgs {
		if v, ok := r.req.BuildArgs[a.Name]; ok {
			r.meta[a.Name] = v
		} else if a.Default != nil {
			r.meta[a.Name] = r.expandMeta(*a.Default)
		}
	}
	order, err := r.needed()
	if err != nil {
		return nil, err
	}
	for _, i := range order {
		r.total += 1 + len(r.plan.Stages[i].Steps)
	}
	r.stages = map[int]*stageState{}
	var last *stageState
	for _, i := range order {
		st, err := r.runStage(ctx, i)
		if err != nil {
			return nil, err
		}
		r.stages[i] = st
		last = st
	}
	return last, nil
}

func (r *run) header(s string) {
	r.stepNo++
	fmt.Fprintf(r.req.Output, "Step %d/%d : %s\n", r.stepNo, r.total, s)
}

func (r *run) runStage(ctx context.Context, idx int) (*stageState, error) {
	stage := r.plan.Stages[idx]
	t0 := time.Now()
	src := "FROM " + stage.Base
	if stage.Name != "" {
		src += " AS " + stage.Name
	}
	r.header(src)
	base := r.expandMeta(stage.Base)
	var st *stageState
	switch j := r.plan.stageIndex(base); {
	case j >= 0:
		prev, ok := r.stages[j]
		if !ok {
			return nil, planError(stage.Line, "FROM %s: stage was not built", base)
		}
		st = prev.clone()
	case strings.EqualFold(base, "scratch"):
		st = &stageState{key: chainKey("scratch"), args: map[string]string{}}
	default:
		img, err := r.b.store.Image(base)
		if err != nil {
			if errors.Is(err, ErrImageNotFound) || errors.Is(err, ErrInvalidReference) {
				return nil, planError(stage.Line, "FROM %s: image not found; import or pull it first", base)
			}
			return nil, err
		}
		st = &stageState{layers: slices.Clone(img.Layers), history: slices.Clone(img.History),
			config: *img.Config.DeepCopy(), key: chainKey("image", img.ID), args: map[string]string{}}
	}
	if len(st.shell) == 0 {
		st.shell = []string{"/bin/sh", "-c"}
	}
	r.report(StepReport{Kind: "FROM", Instruction: src, Line: stage.Line, Cached: true, Duration: time.Since(t0)})
	fmt.Fprintf(r.req.Output, " ---> %s\n", short(st.key))
	for _, step := range stage.Steps {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("build %s: %w", r.req.App, err)
		}
		if err := r.runStep(ctx, st, step); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (r *run) report(s StepReport) {
	s.Number = r.stepNo
	r.res.Steps = append(r.res.Steps, s)
}

// env is what $VAR expansion in a step sees: build args, overridden by
// the image's environment (as in Docker).
func (st *stageState) env() mapEnv {
	m := mapEnv{}
	for k, v := range st.args {
		m[k] = v
	}
	for _, e := range st.config.Env {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	return m
}

func (r *run) expand(st *stageState, step Step, word string) (string, error) {
	return r.expandWith(st.env(), step, word)
}

func (r *run) expandWith(env mapEnv, step Step, word string) (string, error) {
	v, _, err := r.lex.ProcessWord(word, env)
	if err != nil {
		return "", planError(step.Line, "%s: expand %q: %v", step.Kind, word, err)
	}
	return v, nil
}

func (r *run) runStep(ctx context.Context, st *stageState, step Step) error {
	r.header(step.Source)
	t0 := time.Now()
	rep := StepReport{Kind: step.Kind, Instruction: step.Source, Line: step.Line}
	var err error
	switch step.Kind {
	case "RUN":
		err = r.stepRun(ctx, st, step, &rep)
	case "COPY", "ADD":
		err = r.stepCopy(ctx, st, step, &rep)
	case "WORKDIR":
		err = r.stepWorkdir(st, step, &rep)
	default:
		err = r.stepConfig(st, step)
	}
	if err != nil {
		var se *StepError
		switch {
		case errors.As(err, &se):
			fmt.Fprintf(r.req.Output, " ---> failed after %s: exit code %d\n", time.Since(t0).Round(time.Millisecond), se.ExitCode)
		case ctx.Err() != nil:
			fmt.Fprintf(r.req.Output, " ---> cancelled after %s\n", time.Since(t0).Round(time.Millisecond))
		default:
			fmt.Fprintf(r.req.Output, " ---> failed after %s: %v\n", time.Since(t0).Round(time.Millisecond), err)
		}
		return err
	}
	rep.Duration = time.Since(t0)
	r.report(rep)
	switch {
	case rep.Layer != "" && rep.Cached:
		fmt.Fprintf(r.req.Output, " ---> using cache %s\n", short(rep.Layer))
	case rep.Layer != "":
		fmt.Fprintf(r.req.Output, " ---> layer %s in %s\n", short(rep.Layer), rep.Duration.Round(time.Millisecond))
	case rep.Cached:
		fmt.Fprintf(r.req.Output, " ---> using cache\n")
	default:
		fmt.Fprintf(r.req.Output, " ---> done in %s\n", rep.Duration.Round(time.Millisecond))
	}
	return nil
}

// stepConfig applies the instructions that only change the image config.
func (r *run) stepConfig(st *stageState, step Step) error {
	cfg := &st.config
	var canon []string
	switch step.Kind {
	case "ENV":
		// Every pair of one ENV line sees the environment from before it.
		before := st.env()
		for _, kv := range step.Pairs {
			k, err := r.expandWith(before, step, kv.Key)
			if err != nil {
				return err
			}
			v, err := r.expandWith(before, step, kv.Value)
			if err != nil {
				return err
			}
			if k == "" {
				return planError(step.Line, "ENV with an empty name")
			}
			cfg.Env = setEnv(cfg.Env, k, v)
			canon = append(canon, k+"="+v)
		}
	case "LABEL":
		for _, kv := range step.Pairs {
			k, err := r.expand(st, step, kv.Key)
			if err != nil {
				return err
			}
			v, err := r.expand(st, step, kv.Value)
			if err != nil {
				return err
			}
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			cfg.Labels[k] = v
			canon = append(canon, k+"="+v)
		}
	case "ARG":
		for _, a := range step.Args {
			name := a.Name
			if v, ok := r.req.BuildArgs[name]; ok {
				st.args[name] = v
			} else if a.Default != nil {
				v, err := r.expand(st, step, *a.Default)
				if err != nil {
					return err
				}
				st.args[name] = v
			} else if v, ok := r.meta[name]; ok {
				st.args[name] = v
			}
			// The value is not part of the key here: it enters the key
			// of the RUN steps (and of expanded words) that see it, so a
			// changed value invalidates only from its first use.
			canon = append(canon, name)
		}
	case "USER":
		v, err := r.expand(st, step, step.Value)
		if err != nil {
			return err
		}
		cfg.User = v
		canon = append(canon, v)
	case "EXPOSE":
		for _, p := range step.Ports {
			v, err := r.expand(st, step, p)
			if err != nil {
				return err
			}
			for _, port := range strings.Fields(v) {
				if !strings.Contains(port, "/") {
					port += "/tcp"
				}
				num, proto, _ := strings.Cut(port, "/")
				if n, err := strconv.Atoi(num); err != nil || n < 1 || n > 65535 || (proto != "tcp" && proto != "udp" && proto != "sctp") {
					return planError(step.Line, "EXPOSE %q is not a port like 8080 or 53/udp", port)
				}
				if cfg.ExposedPorts == nil {
					cfg.ExposedPorts = map[string]struct{}{}
				}
				cfg.ExposedPorts[port] = struct{}{}
				canon = append(canon, port)
			}
		}
	case "CMD", "ENTRYPOINT":
		args := slices.Clone(step.Cmd)
		if step.Shell && len(args) > 0 {
			args = append(slices.Clone(st.shell), strings.Join(args, " "))
		}
		if step.Kind == "CMD" {
			cfg.Cmd = args
		} else {
			cfg.Entrypoint = args
			cfg.Cmd = nil // as in Docker: a new ENTRYPOINT resets an inherited CMD
		}
		b, _ := json.Marshal(args)
		canon = append(canon, string(b))
	case "SHELL":
		st.shell = slices.Clone(step.Cmd)
		cfg.Shell = slices.Clone(step.Cmd)
		b, _ := json.Marshal(step.Cmd)
		canon = append(canon, string(b))
	case "STOPSIGNAL":
		v, err := r.expand(st, step, step.Value)
		if err != nil {
			return err
		}
		cfg.StopSignal = v
		canon = append(canon, v)
	default:
		return planError(step.Line, "%s is not supported", step.Kind)
	}
	st.key = chainKey(st.key, step.Kind, strings.Join(canon, "\x00"))
	st.history = append(st.history, History{CreatedBy: step.Source, EmptyLayer: true})
	return nil
}

// argEnv is the build-arg part of a RUN step's environment and key: every
// arg declared in the stage so far that the image env does not override.
func (st *stageState) argEnv() []string {
	var out []string
	envKeys := map[string]bool{}
	for _, e := range st.config.Env {
		k, _, _ := strings.Cut(e, "=")
		envKeys[k] = true
	}
	for k, v := range st.args {
		if !envKeys[k] {
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return out
}

func (r *run) limits() Limits {
	l := r.b.opts.Limits
	if r.req.Limits.MemoryBytes != 0 {
		l.MemoryBytes = r.req.Limits.MemoryBytes
	}
	if r.req.Limits.CPUQuota != 0 {
		l.CPUQuota = r.req.Limits.CPUQuota
	}
	if r.req.Limits.Pids != 0 {
		l.Pids = r.req.Limits.Pids
	}
	return l
}

func (r *run) stepRun(ctx context.Context, st *stageState, step Step, rep *StepReport) error {
	args := slices.Clone(step.Cmd)
	if step.Shell {
		args = append(slices.Clone(st.shell), strings.Join(step.Cmd, " "))
	}
	argEnv := st.argEnv()
	argv, _ := json.Marshal(args)
	key := chainKey(st.key, "RUN", string(argv), strings.Join(argEnv, "\x00"))
	if r.useCache(st, key, step, rep) {
		return nil
	}
	if r.b.runner == nil {
		return fmt.Errorf("run step %d (%s): %w", r.stepNo, step.Source, ErrNoRunner)
	}
	if len(st.layers) == 0 {
		return planError(step.Line, "RUN needs a base image with a shell, not scratch")
	}
	mfs := st.fs(r.b.store)
	user, err := mfs.execUser(st.config.User, false)
	if err != nil {
		return planError(step.Line, "USER %s: %v", st.config.User, err)
	}
	cwd := st.config.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	env := append(slices.Clone(st.config.Env), argEnv...)
	if !hasEnv(env, "PATH") {
		env = append(env, defaultPath)
	}
	tmp, diff, err := r.b.store.newTempLayer()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op once committed
	tail := newTailBuffer(8 << 10)
	out := io.MultiWriter(r.req.Output, tail)
	var nb [4]byte
	_, _ = rand.Read(nb[:])
	spec := StepSpec{
		Name:     fmt.Sprintf("build-%s-%d-%s", sanitizeName(r.req.App), r.stepNo, hex.EncodeToString(nb[:])),
		App:      r.req.App,
		Layers:   mfs.layers,
		UpperDir: diff,
		Args:     args,
		Env:      env,
		Cwd:      cwd,
		UID:      user.UID,
		GID:      user.GID,
		Groups:   user.Groups,
		Limits:   r.limits(),
		IDs:      r.req.IDs,
		Output:   out,
	}
	res, err := r.b.runner.RunStep(ctx, spec)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("build %s: step %d cancelled: %w", r.req.App, r.stepNo, ctx.Err())
		}
		return fmt.Errorf("run step %d (%s): %w", r.stepNo, step.Source, err)
	}
	if res.ExitCode != 0 {
		return &StepError{Step: r.stepNo, Line: step.Line, Instruction: step.Source, ExitCode: res.ExitCode, OOMKilled: res.OOMKilled, Tail: tail.lines(20)}
	}
	if err := normalizeUpper(diff, res.UIDShift, res.GIDShift); err != nil {
		return fmt.Errorf("normalize step %d layer: %w", r.stepNo, err)
	}
	return r.commitStep(st, key, tmp, diff, step, rep)
}

// commitStep turns a step's finished layer directory into a stored layer
// (or an empty step when it holds nothing), records it in the cache and
// appends it to the stage.
func (r *run) commitStep(st *stageState, key, tmp, diff string, step Step, rep *StepReport) error {
	empty, err := isEmptyDir(diff)
	if err != nil {
		return err
	}
	entry := cacheEntry{Empty: empty, Made: time.Now().UTC()}
	if !empty {
		l, err := r.b.store.commitLayer(tmp)
		if err != nil {
			return err
		}
		entry.Layer, entry.Size = l.ID, l.Size
	}
	if err := r.b.store.cachePut(key, entry); err != nil {
		return err
	}
	r.apply(st, key, entry, step, rep)
	return nil
}

func (r *run) apply(st *stageState, key string, e cacheEntry, step Step, rep *StepReport) {
	st.key = key
	h := History{CreatedBy: step.Source, EmptyLayer: e.Empty}
	if !e.Empty {
		st.layers = append(st.layers, e.Layer)
		h.Layer, h.Size = e.Layer, e.Size
		rep.Layer = e.Layer
	}
	st.history = append(st.history, h)
}

func (r *run) useCache(st *stageState, key string, step Step, rep *StepReport) bool {
	e, ok := r.b.store.cacheGet(key)
	if !ok {
		return false
	}
	rep.Cached = true
	r.apply(st, key, e, step, rep)
	return true
}

func (r *run) absPath(st *stageState, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	wd := st.config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	abs := path.Join(wd, p)
	if strings.HasSuffix(p, "/") && abs != "/" {
		abs += "/"
	}
	return abs
}

func (r *run) stepWorkdir(st *stageState, step Step, rep *StepReport) error {
	v, err := r.expand(st, step, step.Value)
	if err != nil {
		return err
	}
	if v == "" {
		return planError(step.Line, "WORKDIR needs a path")
	}
	dir := path.Clean(r.absPath(st, v))
	st.config.WorkingDir = dir
	key := chainKey(st.key, "WORKDIR", dir)
	if r.useCache(st, key, step, rep) {
		return nil
	}
	tmp, diff, err := r.b.store.newTempLayer()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	mfs := st.fs(r.b.store)
	real, err := mfs.resolve(path.Join(dir, "x"))
	if err != nil {
		return planError(step.Line, "WORKDIR %s: %v", dir, err)
	}
	real = path.Dir(real)
	if _, _, ok := mfs.stat(real); !ok {
		if err := makeParents(mfs, diff, real+"/x"); err != nil {
			return planError(step.Line, "WORKDIR %s: %v", dir, err)
		}
	}
	return r.commitStep(st, key, tmp, diff, step, rep)
}

// makeParents creates, in the new layer at diff, the directories above the
// absolute path abs that the lower layers lack, and copies of those they
// have (same owner and mode), so the new layer can hold abs.
func makeParents(mfs mergedFS, diff, abs string) error {
	parts := splitRel(path.Dir(abs))
	cur := "/"
	for _, part := range parts {
		cur = path.Join(cur, part)
		p, err := safeJoin(diff, cur)
		if err != nil {
			return err
		}
		if fi, err := os.Lstat(p); err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", cur)
			}
			continue
		}
		uid, gid, mode := 0, 0, uint32(0o755)
		if st, _, ok := mfs.stat(cur); ok {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return fmt.Errorf("%s is not a directory in the image", cur)
			}
			uid, gid, mode = int(st.Uid), int(st.Gid), st.Mode&0o7777
		}
		if err := os.Mkdir(p, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", cur, err)
		}
		if err := unix.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", cur, err)
		}
		if err := unix.Chmod(p, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", cur, err)
		}
	}
	return nil
}

func (r *run) stepCopy(ctx context.Context, st *stageState, step Step, rep *StepReport) error {
	fail := func(format string, args ...any) error {
		return planError(step.Line, "%s: %s", step.Kind, fmt.Sprintf(format, args...))
	}
	var srcs []string
	for _, s := range step.Sources {
		v, err := r.expand(st, step, s)
		if err != nil {
			return err
		}
		srcs = append(srcs, v)
	}
	destWord, err := r.expand(st, step, step.Dest)
	if err != nil {
		return err
	}
	chown, err := r.expand(st, step, step.Chown)
	if err != nil {
		return err
	}
	from, err := r.expand(st, step, step.From)
	if err != nil {
		return err
	}
	var chmod uint64
	if step.Chmod != "" {
		if chmod, err = strconv.ParseUint(step.Chmod, 8, 32); err != nil || chmod > 0o7777 {
			return fail("--chmod=%s is not an octal mode", step.Chmod)
		}
	}
	dest := r.absPath(st, destWord)
	destIsDir := strings.HasSuffix(destWord, "/") || destWord == "." || len(srcs) > 1

	// What is copied, and the part of the key that says what it is.
	var fromFS *mergedFS
	var contextRels []string
	var content string
	if from != "" {
		var layers []string
		if j := r.plan.stageIndex(from); j >= 0 {
			src, ok := r.stages[j]
			if !ok {
				return fail("--from=%s: stage was not built", from)
			}
			layers, content = src.layers, "stage:"+src.key
		} else {
			img, err := r.b.store.Image(from)
			if err != nil {
				return fail("--from=%s: %v", from, err)
			}
			layers, content = img.Layers, "image:"+img.ID
		}
		m := (&stageState{layers: layers}).fs(r.b.store)
		fromFS = &m
	} else {
		if contextRels, err = r.bc.expand(srcs); err != nil {
			return fail("%v", err)
		}
		if len(contextRels) > 1 {
			destIsDir = true
		}
		if content, err = r.bc.hash(contextRels); err != nil {
			return fmt.Errorf("hash %s sources: %w", step.Kind, err)
		}
	}
	keyDoc, _ := json.Marshal(map[string]any{"srcs": srcs, "dest": dest, "dir": destIsDir, "chown": chown, "chmod": step.Chmod, "from": from})
	key := chainKey(st.key, step.Kind, string(keyDoc), content)
	if r.useCache(st, key, step, rep) {
		return nil
	}

	mfs := st.fs(r.b.store)
	opt := copyOptions{chown: true}
	if chown != "" {
		u, err := mfs.execUser(chown, true)
		if err != nil {
			return fail("--chown=%s: %v", chown, err)
		}
		opt.uid, opt.gid = int(u.UID), int(u.GID)
	}
	if step.Chmod != "" {
		opt.chmod, opt.mode = true, uint32(chmod)
	}
	tmp, diff, err := r.b.store.newTempLayer()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// place returns where in the new layer a source named base goes.
	place := func(base string, srcIsDir bool) (string, error) {
		target := strings.TrimSuffix(dest, "/")
		if target == "" {
			target = "/"
		}
		if destIsDir && !srcIsDir {
			target = path.Join(target, base)
		}
		if !destIsDir && !srcIsDir {
			if st, _, ok := mfs.stat(target); ok && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				target = path.Join(target, base)
			}
		}
		real, err := mfs.resolve(target)
		if err != nil {
			return "", err
		}
		if srcIsDir {
			// The directory itself keeps the image's owner and mode when
			// it exists there, and is made 0755 root-owned otherwise; the
			// source directory's own metadata is not copied.
			if err := makeParents(mfs, diff, path.Join(real, "x")); err != nil {
				return "", err
			}
		} else if err := makeParents(mfs, diff, real); err != nil {
			return "", err
		}
		return safeJoin(diff, real)
	}

	if fromFS != nil {
		if opt.chown = chown != ""; !opt.chown {
			opt.uid, opt.gid = 0, 0
		}
		for _, s := range srcs {
			if err := ctx.Err(); err != nil {
				return err
			}
			abs := r.absPathIn("/", s)
			rs, err := fromFS.resolve(abs)
			if err != nil {
				return fail("%v", err)
			}
			sst, _, ok := fromFS.stat(rs)
			if !ok {
				return fail("%s: not found in %s", s, from)
			}
			isDir := sst.Mode&unix.S_IFMT == unix.S_IFDIR
			dst, err := place(path.Base(rs), isDir)
			if err != nil {
				return fail("%v", err)
			}
			if isDir {
				err = fromFS.copyContents(rs, dst, opt)
			} else {
				err = fromFS.copyOut(rs, dst, opt)
			}
			if err != nil {
				return fail("%v", err)
			}
		}
	} else {
		for _, rel := range contextRels {
			if err := ctx.Err(); err != nil {
				return err
			}
			src := filepath.Join(r.bc.dir, rel)
			var sst unix.Stat_t
			if err := unix.Lstat(src, &sst); err != nil {
				return fail("%s: %v", rel, err)
			}
			isDir := sst.Mode&unix.S_IFMT == unix.S_IFDIR
			if step.Kind == "ADD" && !isDir && isArchive(src) {
				dst, err := place("x", true)
				if err != nil {
					return fail("%v", err)
				}
				if err := os.MkdirAll(dst, 0o755); err != nil {
					return fail("%v", err)
				}
				if err := extractArchive(ctx, src, dst, opt); err != nil {
					return fail("extract %s: %v", rel, err)
				}
				continue
			}
			dst, err := place(filepath.Base(rel), isDir)
			if err != nil {
				return fail("%v", err)
			}
			o := opt
			o.skip = r.bc.skipFunc(rel)
			if isDir {
				err = copyDirContents(src, dst, o)
			} else {
				err = copyTree(src, dst, o)
			}
			if err != nil {
				return fail("%v", err)
			}
		}
	}
	return r.commitStep(st, key, tmp, diff, step, rep)
}

func (r *run) absPathIn(wd, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(wd, p)
}

// mapEnv is an EnvGetter over a map.
type mapEnv map[string]string

// Get returns the value of key.
func (m mapEnv) Get(key string) (string, bool) { v, ok := m[key]; return v, ok }

// Keys lists the names.
func (m mapEnv) Keys() []string { return sortedKeys(m) }

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

func hasEnv(env []string, k string) bool {
	for _, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			return true
		}
	}
	return false
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func sanitizeName(s string) string {
	var b bytes.Buffer
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		} else if c >= 'A' && c <= 'Z' {
			b.WriteRune(c + 32)
		}
	}
	if b.Len() == 0 {
		return "app"
	}
	if b.Len() > 32 {
		return b.String()[:32]
	}
	return b.String()
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
