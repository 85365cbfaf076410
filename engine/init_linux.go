package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaybeInit runs the engine's re-exec roles (the container init) when this
// process was started as one, and never returns then. Otherwise it returns
// at once. main calls it first; so does TestMain in tests.
func MaybeInit() {
	role := os.Getenv(roleEnv)
	if role == "" {
		return
	}
	// Namespace, capability and credential changes below are per thread:
	// keep this goroutine on one thread and do everything from it.
	runtime.LockOSThread()
	switch role {
	case "init":
		runInit()
	case "pause":
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "berth: unknown engine role %q\n", role)
		os.Exit(2)
	}
	os.Exit(1)
}

// keptCaps is the container's capability set: runc's minimal set
// (AUDIT_WRITE, KILL, NET_BIND_SERVICE) plus what builds and apps that
// switch users need (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETGID, SETUID),
// all within Docker's default set.
var keptCaps = []uintptr{
	unix.CAP_AUDIT_WRITE, unix.CAP_KILL, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_SETGID, unix.CAP_SETUID,
}

// forwardedSignals are the signals the init catches: SIGCHLD for reaping,
// and every standard signal a process can catch, which it forwards to the
// app (a standard signal it did not catch would kill or crash the Go
// runtime). Each enabled signal costs the init's start a round trip
// between two runtime threads, so real-time signals, which the runtime
// ignores when nobody wants them, are not caught; nor are SIGURG and
// SIGPROF (the runtime's own) and SIGPIPE, SIGTTIN and SIGTTOU (ignored).
var forwardedSignals = []os.Signal{
	syscall.SIGCHLD,
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP,
	syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGUSR1, syscall.SIGSEGV,
	syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGTERM, syscall.SIGSTKFLT, syscall.SIGCONT,
	syscall.SIGTSTP, syscall.SIGXCPU, syscall.SIGXFSZ, syscall.SIGVTALRM, syscall.SIGWINCH,
	syscall.SIGIO, syscall.SIGPWR, syscall.SIGSYS,
}

// Paths hidden from the container (runc's defaults).
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// Paths made read-only in the container (runc's defaults).
var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// initFail reports a setup error to the engine and exits.
func initFail(sync *os.File, format string, args ...any) {
	b, _ := json.Marshal(initReply{Error: fmt.Sprintf(format, args...)})
	_, _ = sync.Write(b)
	os.Exit(1)
}

func runInit() {
	// Enabling each signal is a round trip between this goroutine and the
	// runtime's signal thread, and spare threads take a while to make:
	// done on the side, both overlap with the setup. The app starts only
	// after both, so no signal the engine sends is lost and the init does
	// not need a new thread once the app may have used up pids.max.
	sigs := make(chan os.Signal, 128)
	sideReady := make(chan struct{})
	go func() {
		signal.Notify(sigs, forwardedSignals...)
		signal.Ignore(syscall.SIGPIPE, syscall.SIGTTIN, syscall.SIGTTOU)
		prewarmThreads(2)
		close(sideReady)
	}()
	sync := os.NewFile(fdSync, "sync")
	// Inherited descriptors must not reach the app.
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, ent := range ents {
			if fd, err := strconv.Atoi(ent.Name()); err == nil && fd >= 3 {
				unix.CloseOnExec(fd)
			}
		}
	}
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(4*250))
	n, oobn, _, _, err := unix.Recvmsg(fdSync, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil || n == 0 {
		os.Exit(1)
	}
	var cfg initConfig
	if err := json.Unmarshal(buf[:n], &cfg); err != nil {
		initFail(sync, "decode init config: %v", err)
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if r, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, r...)
			}
		}
	}
	if len(fds) != initFiles+len(cfg.Mounts)+1 {
		initFail(sync, "init got %d fds, want %d", len(fds), initFiles+len(cfg.Mounts)+1)
	}
	files, fds := fds[:initFiles], fds[initFiles:]
	if err := setupRootfs(&cfg, fds); err != nil {
		initFail(sync, "%v", err)
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		initFail(sync, "set hostname: %v", err)
	}
	// A cgroup namespace rooted at the container's cgroup, which the engine
	// joined us to before sending the config.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		initFail(sync, "create cgroup namespace: %v", err)
	}
	// The app (same UID) must not ptrace the init or open /proc/1/fd or
	// /proc/1/exe; non-dumpable processes are off limits to it.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	if err := dropPrivileges(); err != nil {
		initFail(sync, "%v", err)
	}
	in := &initProc{
		log:   &logWriter{w: os.NewFile(uintptr(files[initFileLog]), "log")},
		exitF: os.NewFile(uintptr(files[initFileExit]), "exit"),
		waits: map[int]chan unix.WaitStatus{},
		spawn: make(chan func()),
	}
	<-sideReady
	pid, err := in.startApp(&cfg.Process)
	if err != nil {
		initFail(sync, "%v", err)
	}
	b, _ := json.Marshal(initReply{Pid: pid})
	_, _ = sync.Write(b)
	sync.Close()
	go in.serveExec(os.NewFile(uintptr(files[initFileCtl]), "ctl"))
	in.loop(pid, sigs)
}

// prewarmThreads makes the Go runtime create n spare threads now. The Go
// runtime dies when it cannot create a thread, which an app hitting
// pids.max would otherwise cause; idle threads are kept and reused. Each
// goroutine holds its own thread until all hold one, so they cannot share.
func prewarmThreads(n int) {
	var locked, done sync.WaitGroup
	locked.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			locked.Done()
			locked.Wait()
			runtime.UnlockOSThread()
		}()
	}
	done.Wait()
}

// dropPrivileges limits this thread, and so every process forked from it,
// to keptCaps with no_new_privs.
func dropPrivileges() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	keep := map[uintptr]bool{}
	var mask uint64
	for _, c := range keptCaps {
		keep[c] = true
		mask |= 1 << c
	}
	for c := uintptr(0); c <= unix.CAP_LAST_CAP; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from bounding set: %w", c, err)
		}
	}
	_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(mask), Permitted: uint32(mask), Inheritable: 0},
		{Effective: uint32(mask >> 32), Permitted: uint32(mask >> 32), Inheritable: 0},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	return nil
}

// mountAt mounts with a target relative to the new root (the cwd).
func mountAt(src, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype+src, target, err)
	}
	return nil
}

// setupRootfs attaches the overlay, mounts /proc, /dev, /sys and the bind
// mounts into it, hides and protects kernel paths, and pivots into it.
func setupRootfs(cfg *initConfig, fds []int) error {
	// Nothing mounted from here on propagates to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.MoveMount(fds[0], "", unix.AT_FDCWD, cfg.Rootfs, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach rootfs: %w", err)
	}
	unix.Close(fds[0])
	if err := unix.Chdir(cfg.Rootfs); err != nil {
		return fmt.Errorf("enter rootfs: %w", err)
	}
	const nosuidNodevNoexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	for _, d := range []string{"proc", "dev", "sys", "etc"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create /%s: %w", d, err)
		}
	}
	if err := mountAt("proc", "proc", "proc", nosuidNodevNoexec, ""); err != nil {
		return err
	}
	if err := mountAt("tmpfs", "dev", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	for _, d := range []string{"dev/pts", "dev/shm", "dev/mqueue"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("create /%s: %w", d, err)
		}
	}
	if err := mountAt("devpts", "dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return err
	}
	if err := mountAt("shm", "dev/shm", "tmpfs", nosuidNodevNoexec, "mode=1777,size=65536k"); err != nil {
		return err
	}
	if err := mountAt("mqueue", "dev/mqueue", "mqueue", nosuidNodevNoexec, ""); err != nil {
		return err
	}
	for _, dev := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := os.WriteFile("dev/"+dev, nil, 0o666); err != nil {
			return fmt.Errorf("create /dev/%s: %w", dev, err)
		}
		if err := mountAt("/dev/"+dev, "dev/"+dev, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	for link, target := range map[string]string{
		"dev/ptmx": "pts/ptmx", "dev/fd": "/proc/self/fd", "dev/stdin": "/proc/self/fd/0",
		"dev/stdout": "/proc/self/fd/1", "dev/stderr": "/proc/self/fd/2", "dev/core": "/proc/kcore",
	} {
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("create /%s: %w", link, err)
		}
	}
	if err := mountAt("sysfs", "sys", "sysfs", nosuidNodevNoexec|unix.MS_RDONLY, ""); err != nil {
		// Without a sysfs of its own (a kernel refusing it in a user
		// namespace), the container gets an empty read-only /sys.
		if err := mountAt("tmpfs", "sys", "tmpfs", nosuidNodevNoexec|unix.MS_RDONLY, "size=0"); err != nil {
			return err
		}
	}
	for i, m := range cfg.Mounts {
		target := "." + m.Destination
		if err := mkMountpoint(target, m.File); err != nil {
			return err
		}
		if err := unix.MoveMount(fds[i+1], "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		unix.Close(fds[i+1])
	}
	for _, p := range maskedPaths {
		rel := "." + p
		st, err := os.Lstat(rel)
		if err != nil {
			continue
		}
		if st.IsDir() {
			err = mountAt("tmpfs", rel, "tmpfs", unix.MS_RDONLY|nosuidNodevNoexec, "size=0")
		} else {
			err = mountAt("/dev/null", rel, "", unix.MS_BIND, "")
		}
		if err != nil {
			return err
		}
	}
	for _, p := range readonlyPaths {
		rel := "." + p
		if _, err := os.Lstat(rel); err != nil {
			continue
		}
		if err := mountAt(rel, rel, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := mountAt(rel, rel, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|nosuidNodevNoexec, ""); err != nil {
			return err
		}
	}
	// pivot_root(".", ".") stacks the old root on the new one; detaching it
	// leaves the container only its own tree.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to new root: %w", err)
	}
	return nil
}

// mkMountpoint creates a directory or empty file to mount on.
func mkMountpoint(path string, file bool) error {
	if !file {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("create mount point %s: %w", path, err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create mount point dir %s: %w", path, err)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() {
		return nil
	}
	_ = os.Remove(path) // e.g. a dangling symlink such as /etc/resolv.conf
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create mount point %s: %w", path, err)
	}
	return f.Close()
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath resolves a program name against PATH from the app's env.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := defaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in PATH %s", name, path)
}

// initProc is the running init: it reaps, forwards signals and serves Exec.
type initProc struct {
	log   *logWriter
	exitF *os.File

	mu    sync.Mutex
	waits map[int]chan unix.WaitStatus // exec'd processes waiting for their status
	// spawn runs fork requests on the init's locked, privilege-dropped thread.
	spawn chan func()
	copy  sync.WaitGroup
}

// startApp forks and execs the app with its stdout and stderr on pipes to the log.
func (in *initProc) startApp(p *Process) (int, error) {
	null, err := os.Open("/dev/null")
	if err != nil {
		return 0, fmt.Errorf("open /dev/null: %w", err)
	}
	defer null.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("create stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("create stderr pipe: %w", err)
	}
	pid, err := forkExec(p, []uintptr{null.Fd(), outW.Fd(), errW.Fd()}, false)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return 0, err
	}
	in.copy.Add(2)
	go func() { defer in.copy.Done(); in.log.copyStream("stdout", outR); outR.Close() }()
	go func() { defer in.copy.Done(); in.log.copyStream("stderr", errR); errR.Close() }()
	return pid, nil
}

// forkExec starts p with the given stdio; it must run on the locked thread.
func forkExec(p *Process, files []uintptr, tty bool) (int, error) {
	env := p.Env
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append(env[:len(env):len(env)], "PATH="+defaultPath)
	}
	prog, err := lookPath(p.Args[0], env)
	if err != nil {
		return 0, err
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	groups := make([]uint32, len(p.AdditionalGIDs))
	copy(groups, p.AdditionalGIDs)
	attr := &syscall.ProcAttr{
		Dir:   cwd,
		Env:   env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Setsid:     true,
			Setctty:    tty,
			Credential: &syscall.Credential{Uid: p.UID, Gid: p.GID, Groups: groups},
		},
	}
	pid, err := syscall.ForkExec(prog, p.Args, attr)
	if err != nil {
		return 0, fmt.Errorf("exec %s: %w", prog, err)
	}
	return pid, nil
}

// loop forwards signals to the app and reaps children until the app exits.
func (in *initProc) loop(app int, sigs chan os.Signal) {
	for {
		select {
		case f := <-in.spawn:
			f()
		case s := <-sigs:
			// Only forwardedSignals arrive here: SIGCHLD is reaping, the
			// rest go to the app.
			sig := s.(syscall.Signal)
			if sig != syscall.SIGCHLD {
				_ = unix.Kill(app, sig)
				continue
			}
			if ws, done := in.reap(app); done {
				in.finish(ws)
			}
		}
	}
}

// reap collects every exited child; done is true once the app has exited.
func (in *initProc) reap(app int) (appStatus unix.WaitStatus, done bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return appStatus, done
		}
		if pid == app {
			appStatus, done = ws, true
			continue
		}
		in.mu.Lock()
		ch := in.waits[pid]
		delete(in.waits, pid)
		in.mu.Unlock()
		if ch != nil {
			ch <- ws
		}
	}
}

// finish records the app's exit, lets the log copiers drain and exits; the
// kernel then kills whatever else runs in the container.
func (in *initProc) finish(ws unix.WaitStatus) {
	es := ExitStatus{ExitedAt: time.Now().UTC()}
	if ws.Signaled() {
		es.Signal = int(ws.Signal())
		es.Code = 128 + es.Signal
	} else {
		es.Code = ws.ExitStatus()
	}
	done := make(chan struct{})
	go func() { in.copy.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(500 * time.Millisecond): // a background process holds the pipes
	}
	b, _ := json.Marshal(es)
	_, _ = in.exitF.Write(b)
	os.Exit(es.Code)
}
