package engine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// Config configures an Engine.
type Config struct {
	// Root holds the per-container directories; the daemon uses <data>/containers.
	// Every directory above it must be searchable by others (o+x), because
	// container init runs as the app's unprivileged host UID.
	Root string
	// BridgeName is the host bridge for NetworkBridge containers; default "berth0".
	BridgeName string
	// Subnet is the bridge subnet in CIDR form; default "10.213.0.0/16".
	// New refuses a subnet that overlaps a host route.
	Subnet string
	// Logger receives the engine's logs; nil means slog.Default().
	Logger *slog.Logger
	// Quota, if set, limits disk and network use; nil means no limits.
	Quota Quota
}

// Quota is the seam for disk and network limits, implemented by package quota.
type Quota interface {
	// PrepareUpper returns the directory in which the engine creates the
	// container's private upper and work directories (for example a
	// per-container filesystem with a size limit). It is called by Create.
	PrepareUpper(ctx context.Context, id string, spec *Spec) (dir string, err error)
	// AttachNetwork is called by Start after the host-side veth exists.
	AttachNetwork(ctx context.Context, id string, hostVeth string, spec *Spec) error
	// Release undoes PrepareUpper and AttachNetwork; it is called by Delete
	// after the upper directory was removed.
	Release(ctx context.Context, id string) error
}

const (
	defaultBridge = "berth0"
	defaultSubnet = "10.213.0.0/16"
	roleEnv       = "_BERTH_ENGINE_ROLE"
)

// Engine creates and manages containers below one Root.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	tag    string // short hash of Root, part of cgroup names
	userNS bool   // idmapped mounts work: containers get a user namespace
	// layersByPath: overlayfs cannot take layers as file descriptors
	// (before Linux 6.13); they are named by path in a private mount
	// namespace instead (see buildOverlayByPath).
	layersByPath bool
	cgRoots      map[string]string // hierarchy directory by controller (v2: key "")

	netMu sync.Mutex
	net   *network // set up on first use

	mu       sync.Mutex
	children map[string]*initChild // containers whose init this process started

	bg sync.WaitGroup // background removals of deleted containers' directories
}

// New returns an Engine over cfg.Root, creating the directory if needed.
func New(cfg Config) (*Engine, error) {
	if cfg.Root == "" || !filepath.IsAbs(cfg.Root) {
		return nil, fmt.Errorf("new engine: Config.Root must be an absolute path, got %q", cfg.Root)
	}
	if cfg.BridgeName == "" {
		cfg.BridgeName = defaultBridge
	}
	if len(cfg.BridgeName) > 15 {
		return nil, fmt.Errorf("new engine: Config.BridgeName %q is longer than 15 bytes", cfg.BridgeName)
	}
	if cfg.Subnet == "" {
		cfg.Subnet = defaultSubnet
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Root = filepath.Clean(cfg.Root)
	if err := os.MkdirAll(cfg.Root, 0o711); err != nil {
		return nil, fmt.Errorf("create engine root: %w", err)
	}
	if err := os.Chmod(cfg.Root, 0o711); err != nil {
		return nil, fmt.Errorf("chmod engine root: %w", err)
	}
	for d := filepath.Dir(cfg.Root); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("stat engine root parent: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return nil, fmt.Errorf("new engine: %s is not searchable by others; container init runs as an unprivileged host UID and needs o+x on every parent of Config.Root (chmod o+x %s)", d, d)
		}
		if d == "/" {
			break
		}
	}
	sum := sha256.Sum256([]byte(cfg.Root))
	var err error
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "engine"),
		tag:      hex.EncodeToString(sum[:4]),
		children: map[string]*initChild{},
	}
	if _, err := parseSubnet(cfg.Subnet); err != nil {
		return nil, fmt.Errorf("new engine: Config.Subnet: %w", err)
	}
	if err := checkSubnet(cfg.BridgeName, cfg.Subnet); err != nil {
		return nil, err
	}
	if e.cgRoots, err = cgroupRoots(); err != nil {
		return nil, fmt.Errorf("new engine: %w", err)
	}
	if err := probeOverlayFDs(cfg.Root); errors.Is(err, errNoOverlayFDs) {
		e.layersByPath = true
		e.log.Info("overlayfs takes no layers as file descriptors on this kernel (Linux 6.13 has it): each container's layers are attached in a private mount namespace and named by path instead, at most "+strconv.Itoa(maxLayers)+" layers", "err", err)
	} else if err != nil {
		return nil, fmt.Errorf("new engine: %w", err)
	}
	if err := probeIDMappedMounts(cfg.Root, e.layersByPath); err != nil {
		e.log.Warn("idmapped mounts unsupported: containers run without a user namespace (container root is host root, with reduced capabilities and no_new_privs); layers stay shared", "err", err)
	} else {
		e.userNS = true
	}
	return e, nil
}

// UserNamespaces reports whether containers get a user namespace (it needs
// idmapped mounts so that shared layers stay shared).
func (e *Engine) UserNamespaces() bool { return e.userNS }

// containerConfig is config.json: the spec plus what Create allocated.
type containerConfig struct {
	ID        string    `json:"id"`
	Spec      Spec      `json:"spec"`
	CreatedAt time.Time `json:"createdAt"`
	IP        string    `json:"ip,omitempty"`
	HostVeth  string    `json:"hostVeth,omitempty"`
	Upper     string    `json:"upper"` // the upper dir used
	Work      string    `json:"work"`  // the work dir used
	OwnUpper  bool      `json:"ownUpper"`
	UserNS    bool      `json:"userNS"`
	LogPath   string    `json:"logPath"`
}

// stateFile is state.json, written once the init runs.
type stateFile struct {
	Pid       int       `json:"pid"`
	StartTime uint64    `json:"startTime"` // /proc/<pid>/stat field 22, against PID reuse
	StartedAt time.Time `json:"startedAt"`
}

func (e *Engine) dir(id string) string { return filepath.Join(e.cfg.Root, id) }

func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (e *Engine) loadConfig(id string) (*containerConfig, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var c containerConfig
	if err := readJSON(filepath.Join(e.dir(id), "config.json"), &c); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, fmt.Errorf("read container config: %w", err)
	}
	return &c, nil
}

// Create validates spec, prepares the container's directories (and IP for a
// bridge network) and returns its ID. Nothing runs until Start.
func (e *Engine) Create(ctx context.Context, spec Spec) (id string, err error) {
	if err := spec.Validate(); err != nil {
		return "", err
	}
	if e.cfg.Quota == nil && (spec.Limits.DiskBytes > 0 || spec.Limits.NetworkBitsPerSec > 0) {
		return "", invalid("Limits", "disk and network limits need a quota provider in engine.Config.Quota")
	}
	for i, l := range spec.Layers {
		st, err := os.Stat(l)
		if err != nil || !st.IsDir() {
			return "", invalid(fmt.Sprintf("Layers[%d]", i), "%q is not a directory", l)
		}
	}
	for i, m := range spec.Mounts {
		if _, err := os.Stat(m.Source); err != nil {
			return "", invalid(fmt.Sprintf("Mounts[%d].Source", i), "%q does not exist", m.Source)
		}
	}
	if spec.UpperDir != "" {
		st, err := os.Stat(spec.UpperDir)
		if err != nil || !st.IsDir() {
			return "", invalid("UpperDir", "%q is not a directory", spec.UpperDir)
		}
	}
	if spec.Network.Mode == "" {
		spec.Network.Mode = NetworkNone
	}
	id = newID()
	dir := e.dir(id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		return "", fmt.Errorf("create container dir: %w", err)
	}
	c := &containerConfig{ID: id, Spec: spec, CreatedAt: time.Now().UTC(), UserNS: e.userNS}
	defer func() {
		if err != nil {
			e.cleanup(context.WithoutCancel(ctx), c)
		}
	}()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		return "", fmt.Errorf("create rootfs dir: %w", err)
	}
	uid, gid := 0, 0
	if e.userNS {
		uid, gid = int(spec.IDMap.HostUID), int(spec.IDMap.HostGID)
	}
	if spec.UpperDir != "" {
		if spec.Limits.DiskBytes > 0 {
			return "", invalid("Limits.DiskBytes", "a disk limit applies to the engine's own upper directory; it cannot be combined with a caller-provided UpperDir")
		}
		c.Upper = filepath.Clean(spec.UpperDir)
		c.Work = filepath.Join(filepath.Dir(c.Upper), "."+filepath.Base(c.Upper)+".work-"+id)
		if err := os.Mkdir(c.Work, 0o700); err != nil {
			return "", fmt.Errorf("create work dir: %w", err)
		}
	} else {
		base := dir
		if e.cfg.Quota != nil {
			base, err = e.cfg.Quota.PrepareUpper(ctx, id, &spec)
			if err != nil {
				return "", fmt.Errorf("prepare upper dir quota: %w", err)
			}
		}
		c.OwnUpper = true
		c.Upper = filepath.Join(base, "upper")
		c.Work = filepath.Join(base, "work")
		for _, d := range []string{c.Upper, c.Work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return "", fmt.Errorf("create upper dir: %w", err)
			}
		}
		if err := os.Chown(c.Upper, uid, gid); err != nil {
			return "", fmt.Errorf("chown upper dir: %w", err)
		}
	}
	c.LogPath = spec.LogPath
	if c.LogPath == "" {
		c.LogPath = filepath.Join(dir, "log")
	}
	if spec.Network.Mode == NetworkBridge {
		n, err := e.network()
		if err != nil {
			return "", err
		}
		ip, err := n.allocate(id)
		if err != nil {
			return "", err
		}
		c.IP = ip.String()
		c.HostVeth = "bv" + id[:13]
	}
	if err := writeJSON(filepath.Join(dir, "config.json"), c); err != nil {
		return "", fmt.Errorf("write container config: %w", err)
	}
	e.log.Debug("created container", "id", id, "ip", c.IP)
	return id, nil
}

// procStartTime reads field 22 of /proc/<pid>/stat.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); zombies count as exited.
	if f[0] == "Z" || f[0] == "X" {
		return 0, os.ErrNotExist
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive reports whether the init recorded in state.json still runs.
func (s *stateFile) alive() bool {
	if s == nil || s.Pid == 0 {
		return false
	}
	st, err := procStartTime(s.Pid)
	return err == nil && st == s.StartTime
}

func (e *Engine) loadState(id string) (*stateFile, error) {
	var s stateFile
	if err := readJSON(filepath.Join(e.dir(id), "state.json"), &s); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read container state: %w", err)
	}
	return &s, nil
}

// exitStatus reads exit.json; ok is false when the init wrote none.
func (e *Engine) exitStatus(id string) (ExitStatus, bool) {
	var st ExitStatus
	b, err := os.ReadFile(filepath.Join(e.dir(id), "exit.json"))
	if err != nil || len(b) == 0 {
		return st, false
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false
	}
	return st, true
}

// Inspect returns the current information about one container.
func (e *Engine) Inspect(id string) (Info, error) {
	c, err := e.loadConfig(id)
	if err != nil {
		return Info{}, err
	}
	st, err := e.loadState(id)
	if err != nil {
		return Info{}, err
	}
	info := Info{ID: id, IP: c.IP, HostVeth: c.HostVeth, Labels: c.Spec.Labels, CreatedAt: c.CreatedAt, Spec: c.Spec, State: StateCreated}
	if st == nil {
		return info, nil
	}
	info.StartedAt = st.StartedAt
	if st.alive() {
		info.State = StateRunning
		info.Pid = st.Pid
		if m, err := e.cgroupManager(id, Limits{}); err == nil {
			if fs, err := m.GetFreezerState(); err == nil && fs == cgroups.Frozen {
				info.State = StatePaused
			}
		}
		return info, nil
	}
	info.State = StateExited
	es := e.finalStatus(id)
	info.Exit = &es
	return info, nil
}

// finalStatus is the exit status of an exited container: what init wrote,
// or (when init itself was killed) SIGKILL, and whether that was the OOM
// killer's.
func (e *Engine) finalStatus(id string) ExitStatus {
	es, ok := e.exitStatus(id)
	if !ok {
		es = ExitStatus{Code: 128 + int(syscall.SIGKILL), Signal: int(syscall.SIGKILL)}
		if st, err := os.Stat(filepath.Join(e.dir(id), "exit.json")); err == nil {
			es.ExitedAt = st.ModTime().UTC()
		}
	}
	// The app was OOM-killed if it died of SIGKILL in a cgroup that saw an
	// OOM kill; one of an Exec'd process or a child the app outlived is not
	// the app's exit reason.
	es.OOMKills = int(e.oomKills(id))
	if es.Signal == int(syscall.SIGKILL) && es.OOMKills > 0 {
		es.OOMKilled = true
	}
	return es
}

// List returns every container below Root, running or not.
func (e *Engine) List() ([]Info, error) {
	ents, err := os.ReadDir(e.cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []Info
	for _, ent := range ents {
		if !ent.IsDir() || !validID(ent.Name()) {
			continue
		}
		info, err := e.Inspect(ent.Name())
		if errors.Is(err, ErrNotFound) {
			continue // half-created or being deleted
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Wait blocks until the container's init has exited and returns the exit
// status. It works for containers started by another Engine or process.
func (e *Engine) Wait(ctx context.Context, id string) (ExitStatus, error) {
	if _, err := e.loadConfig(id); err != nil {
		return ExitStatus{}, err
	}
	st, err := e.loadState(id)
	if err != nil {
		return ExitStatus{}, err
	}
	if st == nil {
		return ExitStatus{}, fmt.Errorf("wait for container %s: %w", id, ErrNotRunning)
	}
	e.mu.Lock()
	ch := e.children[id]
	e.mu.Unlock()
	if ch != nil {
		select {
		case <-ch.reaped:
		case <-ctx.Done():
			return ExitStatus{}, ctx.Err()
		}
		return e.finalStatus(id), nil
	}
	if err := waitPid(ctx, st); err != nil {
		return ExitStatus{}, err
	}
	return e.finalStatus(id), nil
}

// waitPid waits for a process that is not our child through a pidfd.
func waitPid(ctx context.Context, st *stateFile) error {
	fd, err := unix.PidfdOpen(st.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("open pidfd: %w", err)
	}
	defer unix.Close(fd)
	if !st.alive() { // the PID may have been reused before we opened it
		return nil
	}
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 50)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 || !st.alive() {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Signal sends sig to the container's init, which forwards it to the app
// (SIGKILL kills the init and with it the whole container). Real-time
// signals are not forwarded.
func (e *Engine) Signal(id string, sig syscall.Signal) error {
	if _, err := e.loadConfig(id); err != nil {
		return err
	}
	st, err := e.loadState(id)
	if err != nil {
		return err
	}
	if !st.alive() {
		return fmt.Errorf("signal container %s: %w", id, ErrNotRunning)
	}
	fd, err := unix.PidfdOpen(st.Pid, 0)
	if err != nil {
		return fmt.Errorf("signal container %s: %w", id, ErrNotRunning)
	}
	defer unix.Close(fd)
	if !st.alive() {
		return fmt.Errorf("signal container %s: %w", id, ErrNotRunning)
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal container %s: %w", id, ErrNotRunning)
		}
		return fmt.Errorf("signal container %s: %w", id, err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to timeout for the container to exit, then
// kills it with SIGKILL, and returns the exit status.
func (e *Engine) Stop(ctx context.Context, id string, timeout time.Duration) (ExitStatus, error) {
	info, err := e.Inspect(id)
	if err != nil {
		return ExitStatus{}, err
	}
	switch info.State {
	case StateExited:
		return *info.Exit, nil
	case StateCreated:
		return ExitStatus{}, fmt.Errorf("stop container %s: %w", id, ErrNotRunning)
	case StatePaused:
		if err := e.Resume(id); err != nil {
			return ExitStatus{}, err
		}
	}
	if err := e.Signal(id, syscall.SIGTERM); err != nil && !errors.Is(err, ErrNotRunning) {
		return ExitStatus{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	es, err := e.Wait(wctx, id)
	cancel()
	if err == nil {
		return es, nil
	}
	if ctx.Err() != nil {
		return ExitStatus{}, ctx.Err()
	}
	if err := e.kill(id); err != nil {
		return ExitStatus{}, err
	}
	return e.Wait(ctx, id)
}

// kill SIGKILLs the init; as PID 1 of its namespace, its death kills every
// other process of the container.
func (e *Engine) kill(id string) error {
	if m, err := e.cgroupManager(id, Limits{}); err == nil {
		if fs, err := m.GetFreezerState(); err == nil && fs == cgroups.Frozen {
			_ = m.Freeze(cgroups.Thawed)
		}
	}
	if err := e.Signal(id, syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	return nil
}

// Pause freezes every process of the container.
func (e *Engine) Pause(id string) error {
	return e.freeze(id, cgroups.Frozen)
}

// Resume thaws a paused container.
func (e *Engine) Resume(id string) error {
	return e.freeze(id, cgroups.Thawed)
}

func (e *Engine) freeze(id string, state cgroups.FreezerState) error {
	if _, err := e.runningState(id); err != nil {
		return err
	}
	m, err := e.cgroupManager(id, Limits{})
	if err != nil {
		return err
	}
	if err := m.Freeze(state); err != nil {
		return fmt.Errorf("set freezer state %s: %w", state, err)
	}
	return nil
}

func (e *Engine) runningState(id string) (*stateFile, error) {
	if _, err := e.loadConfig(id); err != nil {
		return nil, err
	}
	st, err := e.loadState(id)
	if err != nil {
		return nil, err
	}
	if !st.alive() {
		return nil, fmt.Errorf("container %s: %w", id, ErrNotRunning)
	}
	return st, nil
}

// Stats returns the container's current resource usage.
func (e *Engine) Stats(id string) (Stats, error) {
	if _, err := e.runningState(id); err != nil {
		return Stats{}, err
	}
	m, err := e.cgroupManager(id, Limits{})
	if err != nil {
		return Stats{}, err
	}
	s, err := m.GetStats()
	if err != nil {
		return Stats{}, fmt.Errorf("read cgroup stats: %w", err)
	}
	out := Stats{
		MemoryBytes: s.MemoryStats.Usage.Usage,
		CPUTime:     time.Duration(s.CpuStats.CpuUsage.TotalUsage),
		Pids:        s.PidsStats.Current,

		CPUThrottledPeriods: s.CpuStats.ThrottlingData.ThrottledPeriods,
	}
	if l := s.MemoryStats.Usage.Limit; l > 0 && l < 1<<60 {
		out.MemoryLimitBytes = l
	}
	out.OOMKills, _ = m.OOMKillCount()
	return out, nil
}

// Delete kills the container if it still runs and removes everything it
// owns: cgroup, veth, IP, upper and work directories (not a caller's
// UpperDir), logs kept in the container directory, and the directory
// itself. The container is gone from List when Delete returns; its
// directory may still be on its way out in the background, which GC
// waits for.
func (e *Engine) Delete(ctx context.Context, id string) error {
	c, err := e.loadConfig(id)
	if err != nil {
		return err
	}
	st, err := e.loadState(id)
	if err != nil {
		return err
	}
	if st.alive() {
		if err := e.kill(id); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := e.Wait(wctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("delete container %s: wait for exit: %w", id, err)
		}
	}
	return e.cleanup(ctx, c)
}

// cleanup removes what Create and Start made; it tolerates missing parts.
// The container directory, with the upper and work directories the engine
// made inside it, is renamed into Root/.trash and removed in the
// background: a rename is one system call, the removal is one per file.
// GC waits for background removals and removes what a crash left in the
// trash.
func (e *Engine) cleanup(ctx context.Context, c *containerConfig) error {
	var errs []error
	dir := e.dir(c.ID)
	e.mu.Lock()
	var tornDown <-chan struct{}
	if ch := e.children[c.ID]; ch != nil {
		tornDown = ch.tornDown
	}
	delete(e.children, c.ID)
	e.mu.Unlock()
	// Mark the container as going away first so List skips it.
	_ = os.Remove(filepath.Join(dir, "config.json"))
	if err := e.destroyCgroup(c.ID); err != nil {
		errs = append(errs, err)
	}
	if c.HostVeth != "" {
		removeLink(c.HostVeth)
	}
	if c.IP != "" {
		if n, err := e.network(); err == nil {
			if err := n.release(c.ID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// The upper and work directories inside dir go with it to the trash;
	// those outside it, and a quota's, are removed here.
	inDir := func(p string) bool { return strings.HasPrefix(p, dir+string(filepath.Separator)) }
	removeWork := c.Work != "" && !inDir(c.Work)
	removeUpper := c.OwnUpper && c.Upper != "" && !inDir(c.Upper)
	releaseQuota := e.cfg.Quota != nil && c.OwnUpper
	if tornDown != nil && (removeWork || removeUpper || releaseQuota) {
		// The overlay must be gone before its directories are.
		<-tornDown
		tornDown = nil
	}
	if removeWork {
		if err := os.RemoveAll(c.Work); err != nil {
			errs = append(errs, fmt.Errorf("remove work dir: %w", err))
		}
	}
	if removeUpper {
		if err := os.RemoveAll(c.Upper); err != nil {
			errs = append(errs, fmt.Errorf("remove upper dir: %w", err))
		}
	}
	if releaseQuota {
		if err := e.cfg.Quota.Release(ctx, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("release quota: %w", err))
		}
	}
	if err := e.trash(dir, tornDown); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// trashDir holds container directories on their way out, below Root.
const trashDir = ".trash"

// trash moves dir into the trash and removes it in the background, once
// tornDown (if not nil) is closed; if the rename fails (dir is already
// gone, say), it removes dir at once.
func (e *Engine) trash(dir string, tornDown <-chan struct{}) error {
	t := filepath.Join(e.cfg.Root, trashDir)
	dst := filepath.Join(t, filepath.Base(dir)+"-"+newID())
	err := os.Rename(dir, dst)
	if errors.Is(err, os.ErrNotExist) {
		// No trash yet, or GC just removed it.
		if err = os.Mkdir(t, 0o700); err == nil || errors.Is(err, os.ErrExist) {
			err = os.Rename(dir, dst)
		}
	}
	if err != nil {
		if tornDown != nil {
			<-tornDown
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove container dir: %w", err)
		}
		return nil
	}
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		if tornDown != nil {
			<-tornDown
		}
		if err := os.RemoveAll(dst); err != nil {
			e.log.Warn("remove deleted container dir", "dir", dst, "err", err)
		}
	}()
	return nil
}

// GC removes what crashed or interrupted operations left behind in Root:
// container directories without a config (a Create or Delete that did not
// finish), with their cgroups and IP allocations, and deleted containers'
// directories still in the trash. It waits for this Engine's background
// removals and removes berth's cgroup parents where they are empty.
func (e *Engine) GC(ctx context.Context) error {
	ents, err := os.ReadDir(e.cfg.Root)
	if err != nil {
		return fmt.Errorf("read engine root: %w", err)
	}
	var errs []error
	for _, ent := range ents {
		id := ent.Name()
		if !ent.IsDir() || !validID(id) {
			continue
		}
		if _, err := os.Stat(filepath.Join(e.dir(id), "config.json")); err == nil {
			continue
		}
		// Without config, an init may still run if a Delete was interrupted.
		if st, _ := e.loadState(id); st.alive() {
			_ = unix.Kill(st.Pid, unix.SIGKILL)
			_ = waitPid(ctx, st)
		}
		c := &containerConfig{ID: id}
		if err := e.cleanup(ctx, c); err != nil {
			errs = append(errs, err)
		}
		// An interrupted Create may have prepared a quota directory or
		// a bandwidth cap; Release is safe for IDs it does not know.
		if e.cfg.Quota != nil {
			if err := e.cfg.Quota.Release(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// What Deletes of this Engine left to the background, then what
	// crashed processes left in the trash.
	e.bg.Wait()
	if err := os.RemoveAll(filepath.Join(e.cfg.Root, trashDir)); err != nil {
		errs = append(errs, fmt.Errorf("empty trash: %w", err))
	}
	e.removeEmptyParents()
	if n, err := e.network(); err == nil && n.created() {
		if err := n.releaseUnknown(func(id string) bool {
			_, err := os.Stat(filepath.Join(e.dir(id), "config.json"))
			return err == nil
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run is Create followed by Start; on a Start error the container is deleted.
func (e *Engine) Run(ctx context.Context, spec Spec) (string, error) {
	id, err := e.Create(ctx, spec)
	if err != nil {
		return "", err
	}
	if err := e.Start(ctx, id); err != nil {
		_ = e.Delete(context.WithoutCancel(ctx), id)
		return "", err
	}
	return id, nil
}

// Logs calls fn for every log entry of the container, in order. With follow
// it keeps reading new entries until the container has exited and its log is
// read to the end, or ctx ends.
func (e *Engine) Logs(ctx context.Context, id string, follow bool, fn func(LogEntry) error) error {
	c, err := e.loadConfig(id)
	if err != nil {
		return err
	}
	f, err := os.Open(c.LogPath)
	if errors.Is(err, os.ErrNotExist) && follow {
		for errors.Is(err, os.ErrNotExist) {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(50 * time.Millisecond):
			}
			if info, ierr := e.Inspect(id); ierr != nil || info.State == StateExited {
				return ierr
			}
			f, err = os.Open(c.LogPath)
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open container log: %w", err)
	}
	defer f.Close()
	var pending []byte
	buf := make([]byte, 64<<10)
	for {
		n, rerr := f.Read(buf)
		pending = append(pending, buf[:n]...)
		for {
			i := strings.IndexByte(string(pending), '\n')
			if i < 0 {
				break
			}
			ent, perr := ParseLogLine(pending[:i])
			pending = pending[i+1:]
			if perr != nil {
				continue
			}
			if err := fn(ent); err != nil {
				return err
			}
		}
		if rerr == nil {
			continue
		}
		if rerr != io.EOF {
			return fmt.Errorf("read container log: %w", rerr)
		}
		if !follow {
			return nil
		}
		info, err := e.Inspect(id)
		if err != nil {
			return err
		}
		if info.State == StateExited {
			// One more read catches what the init wrote before exiting.
			n, _ := f.Read(buf)
			if n == 0 {
				return nil
			}
			pending = append(pending, buf[:n]...)
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// network returns the engine's bridge network, setting it up on first use.
func (e *Engine) network() (*network, error) {
	e.netMu.Lock()
	defer e.netMu.Unlock()
	if e.net != nil {
		return e.net, nil
	}
	n, err := newNetwork(e.cfg.Root, e.cfg.BridgeName, e.cfg.Subnet, e.log)
	if err != nil {
		return nil, err
	}
	e.net = n
	return n, nil
}

// RemoveNetwork deletes the bridge and its NAT rules when no container of
// this engine uses them. The daemon keeps them; tests call it in cleanup.
func (e *Engine) RemoveNetwork() error {
	n, err := e.network()
	if err != nil {
		return err
	}
	return n.remove()
}

// IP returns the container's bridge address, nil without a bridge network.
func (e *Engine) IP(id string) (net.IP, error) {
	c, err := e.loadConfig(id)
	if err != nil {
		return nil, err
	}
	return net.ParseIP(c.IP), nil
}

// errNoOverlayFDs is probeOverlayFDs' answer on kernels before 6.13.
var errNoOverlayFDs = errors.New("overlayfs takes no layers as file descriptors")

// probeOverlayFDs checks that overlayfs takes its layers as file
// descriptors (fsconfig FSCONFIG_SET_FD "lowerdir+", Linux 6.13 and
// later), the engine's fast way to build a root filesystem: no option
// string, whose page-size limit caps the number of layers, and no layer
// ever attached anywhere. Without it (errNoOverlayFDs) the engine names
// layers by path in a private mount namespace.
func probeOverlayFDs(dir string) error {
	fso, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("%w: overlayfs is not available (fsopen overlay: %v); load the overlay module", ErrUnsupported, err)
	}
	defer unix.Close(fso)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.FsconfigSetFd(fso, "lowerdir+", fd); err != nil {
		var uts unix.Utsname
		_ = unix.Uname(&uts)
		return fmt.Errorf("%w (kernel %s): fsconfig lowerdir+: %v", errNoOverlayFDs, unix.ByteSliceToString(uts.Release[:]), err)
	}
	return nil
}
