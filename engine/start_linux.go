package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// fdSync is the init's SOCK_SEQPACKET socket to the engine (its only
// ExtraFile): the config and the files come in, the result goes out.
const fdSync = 3

// initConfig is what the engine sends the init with the mount fds (see
// encodeInit).
type initConfig struct {
	Rootfs   string
	Hostname string
	Process  Process
	Mounts   []initMount // fd initFiles+1+i of the message, after the rootfs
}

type initMount struct {
	Destination string
	File        bool
}

// initReply is the init's answer once the app runs (or failed to).
type initReply struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// StartTimings are the durations of the parts of Start, for benchmarks and diagnostics.
type StartTimings struct {
	// Cgroup is creating the cgroup and applying limits.
	Cgroup time.Duration
	// Overlay is building the idmapped layers and the overlay rootfs.
	Overlay time.Duration
	// Network is creating and configuring the veth (zero without a bridge).
	Network time.Duration
	// Spawn is cloning the init into its namespaces.
	Spawn time.Duration
	// Init is the init's own work: mounts, pivot_root, privileges, exec of the app.
	Init time.Duration
	// Total is the whole Start, until the app's exec succeeded.
	Total time.Duration
}

// Start runs the container's init and its app. It returns once the app's
// program was executed (or failed to be).
func (e *Engine) Start(ctx context.Context, id string) error {
	_, err := e.StartTimed(ctx, id)
	return err
}

// StartTimed is Start that also reports how long its parts took.
func (e *Engine) StartTimed(ctx context.Context, id string) (StartTimings, error) {
	var tm StartTimings
	t0 := time.Now()
	c, err := e.loadConfig(id)
	if err != nil {
		return tm, err
	}
	dir := e.dir(id)
	stPath := filepath.Join(dir, "state.json")
	if _, err := os.Stat(stPath); err == nil {
		return tm, fmt.Errorf("start container %s: %w", id, ErrAlreadyStarted)
	}
	// Claim the start: a second Start sees state.json.
	if err := os.WriteFile(stPath, []byte("{}"), 0o600); err != nil {
		return tm, fmt.Errorf("write container state: %w", err)
	}
	ok := false
	var cmd *exec.Cmd
	defer func() {
		if ok {
			return
		}
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		_ = e.destroyCgroup(id)
		_ = os.Remove(stPath)
	}()

	cg, err := e.cgroupManager(id, c.Spec.Limits)
	if err != nil {
		return tm, err
	}
	// On cgroup v2 the init is cloned straight into its cgroup, which must
	// exist first. On v1 the engine creates it while the init's runtime
	// starts and moves the init in before sending it the config.
	v2 := cgroups.IsCgroup2UnifiedMode()
	if v2 {
		tc := time.Now()
		if err := e.createCgroup(cg, c.Spec.Limits, -1); err != nil {
			return tm, err
		}
		tm.Cgroup = time.Since(tc)
	}

	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return tm, fmt.Errorf("create sync socket: %w", err)
	}
	// The config goes in one message, which must fit the send buffer
	// (wmem_max, about 208 KiB by default, is less than maxInitMessage).
	if err := unix.SetsockoptInt(sp[0], unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*maxInitMessage); err != nil {
		e.log.Debug("raise sync socket send buffer", "err", err)
	}
	parent := os.NewFile(uintptr(sp[0]), "sync")
	child := os.NewFile(uintptr(sp[1]), "sync-child")
	defer parent.Close()
	defer child.Close()

	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET)
	attr := &syscall.SysProcAttr{Setsid: true}
	if c.UserNS {
		flags |= unix.CLONE_NEWUSER
		size := int(c.Spec.IDMap.size())
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(c.Spec.IDMap.HostUID), Size: size}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(c.Spec.IDMap.HostGID), Size: size}}
		attr.GidMappingsEnableSetgroups = true
		// Become container root before exec, or exec drops every capability.
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	attr.Cloneflags = flags
	if v2 {
		cgfd, err := unix.Open(cg.Path(""), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return tm, fmt.Errorf("open cgroup dir: %w", err)
		}
		defer unix.Close(cgfd)
		attr.UseCgroupFD = true
		attr.CgroupFD = cgfd
	}
	// The init's own stderr (Go runtime failures) goes to init.log.
	initLog, err := os.OpenFile(filepath.Join(dir, "init.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return tm, fmt.Errorf("open init log: %w", err)
	}
	defer initLog.Close()
	cmd = &exec.Cmd{
		Stderr: initLog,
		Path:   "/proc/self/exe",
		Args:   []string{"berth-init", id},
		// The init is C (init_linux.c), run before the Go runtime would start.
		Env:         []string{roleEnv + "=init"},
		ExtraFiles:  []*os.File{child},
		SysProcAttr: attr,
	}
	tsp := time.Now()
	if err := cmd.Start(); err != nil {
		return tm, fmt.Errorf("start container init: %w", err)
	}
	tm.Spawn = time.Since(tsp)
	child.Close()
	pid := cmd.Process.Pid
	// The init waits for its config, so it is surely alive here.
	startTime, err := procStartTime(pid)
	if err != nil {
		return tm, fmt.Errorf("read init start time: %w", err)
	}
	// Holding the init's mount namespace lets its teardown (every mount
	// of the container, the overlay among them) run after the init was
	// reaped, on the side, instead of in the init's exit before Wait can
	// return. cleanup waits for it before removing the directories. Not
	// with a veth: the container's sysfs pins its network namespace, and
	// the kernel retiring that namespace later, while Delete removes the
	// veth, made Delete slower than the exit became faster.
	mntNS := -1
	if c.HostVeth == "" {
		if fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			mntNS = fd
		}
	}
	ch := &initChild{reaped: make(chan struct{}), tornDown: make(chan struct{})}
	e.mu.Lock()
	e.children[id] = ch
	e.mu.Unlock()
	initCmd := cmd
	exitPath := filepath.Join(dir, "exit.json")
	go func() {
		err := initCmd.Wait()
		e.recordInitExit(exitPath, initCmd.ProcessState, err)
		close(ch.reaped)
		if mntNS >= 0 {
			unix.Close(mntNS)
		}
		close(ch.tornDown)
	}()
	defer func() {
		if !ok {
			_ = unix.Kill(pid, unix.SIGKILL)
			<-ch.tornDown
		}
	}()
	cmd = nil // the goroutine above owns Wait now

	// Everything else overlaps with the init's runtime start: it blocks
	// until the config arrives.
	var (
		wg            sync.WaitGroup
		netErr, cgErr error
	)
	if !v2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tc := time.Now()
			cgErr = e.createCgroup(cg, c.Spec.Limits, pid)
			tm.Cgroup = time.Since(tc)
		}()
	}
	if c.IP != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tn := time.Now()
			netErr = e.attachNetwork(ctx, c, pid)
			tm.Network = time.Since(tn)
		}()
	}
	files, err := openInitFiles(c.LogPath, exitPath, filepath.Join(dir, "ctl.sock"))
	if err != nil {
		wg.Wait()
		return tm, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	to := time.Now()
	fds, cfg, err := e.prepareMounts(c, pid)
	tm.Overlay = time.Since(to)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	wg.Wait()
	if err := errors.Join(err, cgErr, netErr); err != nil {
		return tm, err
	}
	send := make([]int, 0, len(files)+len(fds))
	for _, f := range files {
		send = append(send, int(f.Fd()))
	}
	send = append(send, fds...)
	msg, err := encodeInit(cfg)
	if err != nil {
		return tm, fmt.Errorf("start container %s: %w", id, err)
	}
	if err := unix.Sendmsg(int(parent.Fd()), msg, unix.UnixRights(send...), nil, 0); err != nil {
		return tm, fmt.Errorf("send init config: %w", err)
	}
	ti := time.Now()
	reply, err := readReply(ctx, parent)
	tm.Init = time.Since(ti)
	if err != nil {
		return tm, err
	}
	if reply.Error != "" {
		return tm, fmt.Errorf("start container %s: %s", id, reply.Error)
	}
	st := stateFile{Pid: pid, StartTime: startTime, StartedAt: time.Now().UTC()}
	if err := writeJSON(stPath, &st); err != nil {
		return tm, fmt.Errorf("write container state: %w", err)
	}
	ok = true
	tm.Total = time.Since(t0)
	e.log.Debug("started container", "id", id, "pid", pid, "total", tm.Total)
	return tm, nil
}

// Files the init gets with its config, in this order, before the mounts.
const (
	initFileLog  = iota // the container log, append-only
	initFileExit        // exit.json, written once at the end
	initFileCtl         // listening socket for Exec requests
	initFiles
)

// openInitFiles opens the files the init gets with its config: the log,
// the (emptied) exit file and the listening Exec socket.
func openInitFiles(logPath, exitPath, sockPath string) (files []*os.File, err error) {
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
		}
	}()
	logF, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return files, fmt.Errorf("open container log: %w", err)
	}
	files = append(files, logF)
	exitF, err := os.OpenFile(exitPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return files, fmt.Errorf("create exit file: %w", err)
	}
	files = append(files, exitF)
	_ = os.Remove(sockPath)
	// A peer of this socket chooses the user an Exec runs as: it is made
	// in a directory of root's alone and made 0600 there, whatever the
	// daemon's umask, before it takes its name.
	private, err := os.MkdirTemp(filepath.Dir(sockPath), ".ctl-")
	if err != nil {
		return files, fmt.Errorf("make exec socket dir: %w", err)
	}
	defer os.RemoveAll(private)
	tmpSock := filepath.Join(private, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpSock, Net: "unix"})
	if err != nil {
		return files, fmt.Errorf("listen on exec socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	if err := errors.Join(os.Chmod(tmpSock, 0o600), os.Rename(tmpSock, sockPath)); err != nil {
		ln.Close()
		return files, fmt.Errorf("place exec socket: %w", err)
	}
	ctlF, err := ln.File()
	ln.Close()
	if err != nil {
		return files, fmt.Errorf("get exec socket file: %w", err)
	}
	return append(files, ctlF), nil
}

// initChild is a container init started by this process.
type initChild struct {
	reaped   chan struct{} // closed once the init has been reaped and exit.json is final
	tornDown chan struct{} // closed once its mount namespace is gone too
}

// readReply waits for the init's one reply, or its death.
func readReply(ctx context.Context, f *os.File) (initReply, error) {
	var r initReply
	done := make(chan error, 1)
	buf := make([]byte, 64<<10)
	var n int
	go func() {
		var err error
		n, err = f.Read(buf)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || n == 0 {
			return r, fmt.Errorf("read init reply: init exited during setup")
		}
	case <-ctx.Done():
		_ = f.Close() // unblocks the reader
		return r, ctx.Err()
	}
	if err := json.Unmarshal(buf[:n], &r); err != nil {
		return r, fmt.Errorf("decode init reply: %w", err)
	}
	return r, nil
}

// recordInitExit writes exit.json from the wait status when the init could
// not (it was killed).
func (e *Engine) recordInitExit(path string, ps *os.ProcessState, waitErr error) {
	if b, err := os.ReadFile(path); err != nil || len(b) > 0 || ps == nil {
		return
	}
	es := ExitStatus{ExitedAt: time.Now().UTC()}
	ws, _ := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		es.Signal = int(ws.Signal())
		es.Code = 128 + es.Signal
	} else {
		es.Code = ws.ExitStatus()
	}
	b, _ := json.Marshal(es)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if st, _ := f.Stat(); st != nil && st.Size() == 0 {
		_, _ = f.Write(b)
	}
}

// prepareMounts builds the overlay rootfs and the bind mount trees as
// detached mounts, idmapped into the init's user namespace.
func (e *Engine) prepareMounts(c *containerConfig, pid int) (fds []int, cfg *initConfig, err error) {
	defer func() {
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			fds = nil
		}
	}()
	userns := -1
	if c.UserNS {
		userns, err = unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("open init user namespace: %w", err)
		}
		defer unix.Close(userns)
	}
	build := buildOverlay
	if e.layersByPath {
		build = func(c *containerConfig, userns int) (int, error) { return buildOverlayByPath(c, userns, e.dir(c.ID)) }
	}
	ovl, err := build(c, userns)
	if err != nil {
		return nil, nil, err
	}
	fds = append(fds, ovl)
	cfg = &initConfig{Rootfs: filepath.Join(e.dir(c.ID), "rootfs"), Hostname: c.Spec.Hostname, Process: c.Spec.Process}
	if cfg.Hostname == "" {
		cfg.Hostname = c.ID[:12]
	}
	if err := e.writeEtcFiles(c, cfg.Hostname); err != nil {
		return fds, nil, err
	}
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		fd, err := cloneTree(filepath.Join(e.dir(c.ID), f), -1, true)
		if err != nil {
			return fds, nil, err
		}
		fds = append(fds, fd)
		cfg.Mounts = append(cfg.Mounts, initMount{Destination: "/etc/" + f, File: true})
	}
	for i, m := range c.Spec.Mounts {
		fd, err := cloneTree(m.Source, userns, m.ReadOnly)
		if err != nil {
			return fds, nil, fmt.Errorf("mount Mounts[%d] %s: %w", i, m.Source, err)
		}
		fds = append(fds, fd)
		st, err := os.Stat(m.Source)
		if err != nil {
			return fds, nil, fmt.Errorf("stat mount source: %w", err)
		}
		cfg.Mounts = append(cfg.Mounts, initMount{Destination: filepath.Clean(m.Destination), File: !st.IsDir()})
	}
	return fds, cfg, nil
}

// cloneTree makes a detached recursive bind mount of path, idmapped when
// userns >= 0 and the filesystem supports it, read-only if ro.
func cloneTree(path string, userns int, ro bool) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return -1, fmt.Errorf("clone mount tree: %w", err)
	}
	// A clone joins its source's peer group: private, so that nothing the
	// host mounts below the source later shows up in the container (and
	// nothing the other way), as Docker's default rprivate.
	attr := unix.MountAttr{Propagation: unix.MS_PRIVATE}
	if userns >= 0 {
		attr.Attr_set |= unix.MOUNT_ATTR_IDMAP
		attr.Userns_fd = uint64(userns)
	}
	if ro {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set mount attributes (idmap=%v ro=%v private): %w", userns >= 0, ro, err)
	}
	return fd, nil
}

// cloneLayer makes a read-only detached mount of one layer, idmapped when
// userns >= 0.
func cloneLayer(path string, userns int) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("clone layer %s: %w", path, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY, Propagation: unix.MS_PRIVATE}
	if userns >= 0 {
		attr.Attr_set |= unix.MOUNT_ATTR_IDMAP
		attr.Userns_fd = uint64(userns)
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("idmap layer %s: %w", path, err)
	}
	return fd, nil
}

// buildOverlay assembles the overlay from fds: each layer as an idmapped
// read-only detached mount appended with "lowerdir+" (no option-string
// length limit), then upper and work. It returns the detached overlay mount.
func buildOverlay(c *containerConfig, userns int) (int, error) {
	fso, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open overlay filesystem: %w", err)
	}
	defer unix.Close(fso)
	var held []int
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	fail := func(what string, err error) (int, error) {
		return -1, fmt.Errorf("%s: %w%s", what, err, fsErrors(fso))
	}
	// The first lowerdir+ is the top layer; Spec.Layers lists the base first.
	for i := len(c.Spec.Layers) - 1; i >= 0; i-- {
		fd, err := cloneLayer(c.Spec.Layers[i], userns)
		if err != nil {
			return -1, err
		}
		held = append(held, fd)
		if err := unix.FsconfigSetFd(fso, "lowerdir+", fd); err != nil {
			return fail("add layer "+c.Spec.Layers[i], err)
		}
	}
	var upper, work int
	if !c.OwnUpper && userns >= 0 {
		// A caller's upper dir keeps container IDs on disk: idmap its parent,
		// which also holds the work dir (overlay wants both on one mount).
		pfd, err := cloneTree(filepath.Dir(c.Upper), userns, false)
		if err != nil {
			return -1, fmt.Errorf("idmap upper dir: %w", err)
		}
		held = append(held, pfd)
		if upper, err = unix.Openat(pfd, filepath.Base(c.Upper), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return -1, fmt.Errorf("open upper dir: %w", err)
		}
		held = append(held, upper)
		if work, err = unix.Openat(pfd, filepath.Base(c.Work), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return -1, fmt.Errorf("open work dir: %w", err)
		}
		held = append(held, work)
	} else {
		if upper, err = unix.Open(c.Upper, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return -1, fmt.Errorf("open upper dir: %w", err)
		}
		held = append(held, upper)
		if work, err = unix.Open(c.Work, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return -1, fmt.Errorf("open work dir: %w", err)
		}
		held = append(held, work)
	}
	if err := unix.FsconfigSetFd(fso, "upperdir", upper); err != nil {
		return fail("set overlay upper dir", err)
	}
	if err := unix.FsconfigSetFd(fso, "workdir", work); err != nil {
		return fail("set overlay work dir", err)
	}
	if err := asOverlayCreator(c, userns, func() error { return unix.FsconfigCreate(fso) }); err != nil {
		return fail("create overlay", err)
	}
	mfd, err := unix.Fsmount(fso, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fail("mount overlay", err)
	}
	return mfd, nil
}

// asOverlayCreator runs fn, which creates the overlay, with the credentials
// it must be created with. Overlay works in its upper and work dirs with
// the creator's credentials; through an idmapped caller's upper dir only
// IDs of the app's range can be written, so the overlay is then created as
// the app's root.
func asOverlayCreator(c *containerConfig, userns int, fn func() error) error {
	if c.OwnUpper || userns < 0 {
		return fn()
	}
	return asFSUser(int(c.Spec.IDMap.HostUID), int(c.Spec.IDMap.HostGID), fn)
}

// fsErrors reads the kernel's messages from an fs context, if any.
func fsErrors(fso int) string {
	var out string
	buf := make([]byte, 1024)
	for i := 0; i < 8; i++ {
		n, err := unix.Read(fso, buf)
		if err != nil || n <= 0 {
			break
		}
		out += " (" + string(buf[:n]) + ")"
	}
	return out
}

// writeEtcFiles writes the generated /etc/hosts, /etc/resolv.conf and /etc/hostname.
func (e *Engine) writeEtcFiles(c *containerConfig, hostname string) error {
	dir := e.dir(c.ID)
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if c.IP != "" {
		hosts += c.IP + "\t" + hostname + "\n"
	} else {
		hosts += "127.0.1.1\t" + hostname + "\n"
	}
	resolv := ""
	if c.IP != "" {
		resolv = hostResolvConf()
	}
	for name, body := range map[string]string{"hosts": hosts, "resolv.conf": resolv, "hostname": hostname + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("write /etc/%s: %w", name, err)
		}
	}
	return nil
}

// hostResolvConf is the host's resolv.conf without loopback name servers,
// which a container cannot reach.
func hostResolvConf() string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return ""
	}
	var out []byte
	for _, line := range splitLines(string(b)) {
		var f [2]string
		n, _ := fmt.Sscan(line, &f[0], &f[1])
		if n == 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip == nil || ip.IsLoopback() {
				continue
			}
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return string(out)
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

// probeIDMappedMounts checks that an idmapped mount of dir can be made
// and, with layersByPath, that overlayfs takes one as a layer (Linux 5.19;
// the fd way needs 6.13 anyway).
func probeIDMappedMounts(dir string, layersByPath bool) error {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{roleEnv + "=pause"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1 << 30, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1 << 30, Size: 1}},
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start user namespace probe: %w", err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	userns, err := unix.Open("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open probe user namespace: %w", err)
	}
	defer unix.Close(userns)
	fd, err := cloneTree(dir, userns, true)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	unix.Close(fd)
	if layersByPath {
		if err := probeIdmappedLayer(dir, userns); err != nil {
			return fmt.Errorf("%w: overlayfs over an idmapped layer: %v", ErrUnsupported, err)
		}
	}
	return nil
}

// probeIdmappedLayer builds, and drops, an overlay whose one layer is an
// empty directory idmapped into userns, the way containers get theirs.
func probeIdmappedLayer(dir string, userns int) error {
	tmp, err := os.MkdirTemp(dir, ".probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	c := &containerConfig{
		Spec:     Spec{Layers: []string{filepath.Join(tmp, "layer")}},
		Upper:    filepath.Join(tmp, "upper"),
		Work:     filepath.Join(tmp, "work"),
		OwnUpper: true,
	}
	for _, d := range []string{c.Spec.Layers[0], c.Upper, c.Work, filepath.Join(tmp, "scratch")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	fd, err := buildOverlayByPath(c, userns, filepath.Join(tmp, "scratch"))
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// asFSUser runs fn on one thread whose filesystem IDs are uid:gid; the
// thread gets its IDs back afterwards, or is discarded if that fails.
func asFSUser(uid, gid int, fn func() error) error {
	const secbitNoSetuidFixup = 1 << 2
	runtime.LockOSThread()
	// Keep the filesystem capabilities that changing fsuid would clear.
	bits, _ := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
	_ = unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits|secbitNoSetuidFixup), 0, 0, 0)
	_, _ = unix.SetfsgidRetGid(gid)
	_, _ = unix.SetfsuidRetUid(uid)
	err := fn()
	_, _ = unix.SetfsuidRetUid(0)
	_, _ = unix.SetfsgidRetGid(0)
	restored := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits), 0, 0, 0) == nil
	// setfs*id(-1) changes nothing and returns the current value.
	u, _ := unix.SetfsuidRetUid(-1)
	g, _ := unix.SetfsgidRetGid(-1)
	if restored && u == 0 && g == 0 {
		runtime.UnlockOSThread()
	}
	return err
}
