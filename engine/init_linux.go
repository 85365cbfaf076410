package engine

// #cgo CFLAGS: -O2 -Wall -Wextra -Wno-unused-parameter
import "C"

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MaybeInit returns at once. The engine's re-exec roles (the container
// init, and the process that holds a probe's user namespace) run in C,
// from a constructor in init_linux.c, before the Go runtime starts; a
// process started as one never gets here. main calls it first (so does
// TestMain in tests) to fail loudly if that constructor did not run.
func MaybeInit() {
	if role := os.Getenv(roleEnv); role != "" {
		fmt.Fprintf(os.Stderr, "berth: engine role %q reached Go: this binary lacks the engine's C init (built without cgo?)\n", role)
		os.Exit(2)
	}
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

// maxInitMessage is the largest message the init reads (MAX_MSG in
// init_linux.c).
const maxInitMessage = 1 << 20

// initMessage is the init's wire format (parse in init_linux.c): NUL-
// terminated key/value pairs, repeated keys in order. An Exec request is
// ended by the engine shutting down its side of the connection for writing.
type initMessage struct {
	b   []byte
	err error
}

func (m *initMessage) add(key, value string) {
	if m.err == nil && strings.IndexByte(value, 0) >= 0 {
		m.err = fmt.Errorf("%s %q contains a NUL byte", key, value)
	}
	m.b = append(m.b, key...)
	m.b = append(m.b, 0)
	m.b = append(m.b, value...)
	m.b = append(m.b, 0)
}

// done returns the message, refusing one the init would not read whole.
func (m *initMessage) done() ([]byte, error) {
	if m.err == nil && len(m.b) >= maxInitMessage {
		m.err = fmt.Errorf("the init's message would be %d bytes; it reads at most %d (arguments, environment and mounts)", len(m.b), maxInitMessage-1)
	}
	return m.b, m.err
}

func (m *initMessage) addProcess(p *Process) {
	for _, a := range p.Args {
		m.add("arg", a)
	}
	for _, e := range p.Env {
		m.add("env", e)
	}
	if p.Cwd != "" {
		m.add("cwd", p.Cwd)
	}
	m.add("uid", strconv.FormatUint(uint64(p.UID), 10))
	m.add("gid", strconv.FormatUint(uint64(p.GID), 10))
	for _, g := range p.AdditionalGIDs {
		m.add("group", strconv.FormatUint(uint64(g), 10))
	}
}

// encodeInit is the init's configuration: the root filesystem, the mounts
// (whose fds follow the rootfs's in the same message), the hardening and
// the app.
func encodeInit(cfg *initConfig) ([]byte, error) {
	var m initMessage
	m.add("rootfs", cfg.Rootfs)
	m.add("hostname", cfg.Hostname)
	var caps uint64
	for _, c := range keptCaps {
		caps |= 1 << c
	}
	m.add("caps", strconv.FormatUint(caps, 10))
	for _, mt := range cfg.Mounts {
		key := "mount"
		if mt.File {
			key = "mountfile"
		}
		m.add(key, mt.Destination)
	}
	for _, p := range maskedPaths {
		m.add("mask", p)
	}
	for _, p := range readonlyPaths {
		m.add("ro", p)
	}
	m.addProcess(&cfg.Process)
	return m.done()
}

// encodeExec is an Exec request to the init.
func encodeExec(p *Process, tty bool, size TermSize) ([]byte, error) {
	var m initMessage
	m.addProcess(p)
	if tty {
		m.add("tty", "1")
		if size != (TermSize{}) {
			m.add("cols", strconv.Itoa(int(size.Width)))
			m.add("rows", strconv.Itoa(int(size.Height)))
		}
	}
	return m.done()
}
