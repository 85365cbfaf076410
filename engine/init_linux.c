// The container init, in C so that it runs before the Go runtime starts.
//
// The engine starts a container by re-executing its own binary with
// _BERTH_ENGINE_ROLE=init. Going through the Go runtime's start and every
// package's init function of the berth binary took 30-40 ms a container;
// this constructor runs first and takes over the process instead, as
// runc's nsexec does. It gets its configuration from the engine (see
// encodeInit in start_linux.go), sets up the root filesystem, drops
// privileges, starts the app, reaps zombies, forwards signals, writes the
// app's output to the container log and serves Exec requests.
//
// The wire format from the engine is a sequence of NUL-terminated
// key/value pairs; replies are the JSON the Go side decodes. Any setup
// failure is reported on the sync socket and ends the init.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/openat2.h>

#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

// Keep in step with start_linux.go: fdSync, initFile*, maxInitFDs, maxLogLine.
#define ROLE_ENV "_BERTH_ENGINE_ROLE"
#define FD_SYNC 3
enum { FILE_LOG, FILE_EXIT, FILE_CTL, NFILES };
#define MAX_FDS 250
#define MAX_MSG (1 << 20)
#define MAX_LOG_LINE (16 << 10)
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_EXECS 64

// ---- errors and JSON ----------------------------------------------------

static char errbuf[4096];

// jsonstr appends s to out as a JSON string (quotes included).
static size_t jsonstr(char *out, size_t cap, size_t n, const char *s) {
	static const char hex[] = "0123456789abcdef";
	if (n < cap) out[n++] = '"';
	for (; *s && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(out + n, cap - n, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
		} else {
			out[n++] = (char)c;
		}
	}
	if (n < cap) out[n++] = '"';
	return n;
}

// errorJSON formats {"error":"..."} from errbuf into out.
static size_t errorJSON(char *out, size_t cap) {
	size_t n = (size_t)snprintf(out, cap, "{\"error\":");
	n = jsonstr(out, cap - 2, n, errbuf);
	out[n++] = '}';
	out[n] = 0;
	return n;
}

__attribute__((format(printf, 1, 2))) static void seterr(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
}

// fail reports errbuf to the engine and ends the init.
static void fail(void) {
	char out[8192];
	size_t n = errorJSON(out, sizeof out);
	if (write(FD_SYNC, out, n) < 0) {
		// nothing left to tell
	}
	_exit(1);
}

// putAll writes all of b to fd, retrying on EINTR and short writes; to a
// socket (sock) without SIGPIPE, which the init would otherwise find in its
// signalfd and forward, should the peer be gone.
static int putAll(int fd, const char *b, size_t n, int sock) {
	while (n > 0) {
		ssize_t w = sock ? send(fd, b, n, MSG_NOSIGNAL) : write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR) continue;
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int writeAll(int fd, const char *b, size_t n) { return putAll(fd, b, n, 0); }
static int sendAll(int fd, const char *b, size_t n) { return putAll(fd, b, n, 1); }

// rfc3339 formats the time t as Go's time.RFC3339Nano does in UTC.
static size_t rfc3339(char *out, size_t cap, const struct timespec *t) {
	struct tm tm;
	gmtime_r(&t->tv_sec, &tm);
	size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	if (t->tv_nsec != 0) {
		char frac[16];
		snprintf(frac, sizeof frac, ".%09ld", t->tv_nsec);
		size_t l = strlen(frac);
		while (frac[l - 1] == '0') frac[--l] = 0;
		n += (size_t)snprintf(out + n, cap - n, "%s", frac);
	}
	n += (size_t)snprintf(out + n, cap - n, "Z");
	return n;
}

// statusJSON formats an ExitStatus for wait status ws into out; *code
// gets the exit code (128+signal for a signal).
static size_t statusJSON(char *out, size_t cap, int ws, int *code) {
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	char ts[64];
	rfc3339(ts, sizeof ts, &now);
	int sig = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
	int c = sig ? 128 + sig : WEXITSTATUS(ws);
	if (code) *code = c;
	if (sig) return (size_t)snprintf(out, cap, "{\"code\":%d,\"signal\":%d,\"exitedAt\":\"%s\"}", c, sig, ts);
	return (size_t)snprintf(out, cap, "{\"code\":%d,\"exitedAt\":\"%s\"}", c, ts);
}

// ---- configuration ------------------------------------------------------

// proc is a process to start: the app or an Exec request.
struct proc {
	char **args, **env;
	int nargs, nenv;
	const char *cwd;
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	int ngroups;
	int tty;
	unsigned short cols, rows;
};

struct mountreq {
	const char *dest;
	int file;
};

struct config {
	const char *rootfs, *hostname;
	uint64_t caps;
	struct proc proc;
	struct mountreq *mounts;
	int nmounts;
	const char **masked, **readonly;
	int nmasked, nreadonly;
};

static int parseUint(const char *s, unsigned long long max, unsigned long long *v) {
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *s == 0 || *end != 0 || x > max) return -1;
	*v = x;
	return 0;
}

// parse reads the key/value pairs in buf[0:n] into c (for the app) or p
// (for an Exec request, c == NULL). Strings point into buf.
static int parse(char *buf, size_t n, struct config *c, struct proc *p) {
	if (n == 0 || buf[n - 1] != 0) {
		seterr("malformed init message");
		return -1;
	}
	// Count the repeated keys first to size the arrays.
	int nargs = 0, nenv = 0, ngroups = 0, nmounts = 0, nmasked = 0, nro = 0;
	for (size_t i = 0; i < n;) {
		const char *k = buf + i;
		i += strlen(k) + 1;
		if (i >= n) {
			seterr("init message: key %s without value", k);
			return -1;
		}
		i += strlen(buf + i) + 1;
		if (!strcmp(k, "arg")) nargs++;
		else if (!strcmp(k, "env")) nenv++;
		else if (!strcmp(k, "group")) ngroups++;
		else if (!strcmp(k, "mount") || !strcmp(k, "mountfile")) nmounts++;
		else if (!strcmp(k, "mask")) nmasked++;
		else if (!strcmp(k, "ro")) nro++;
	}
	memset(p, 0, sizeof *p);
	p->args = calloc((size_t)nargs + 1, sizeof(char *));
	p->env = calloc((size_t)nenv + 2, sizeof(char *)); // room for a default PATH
	p->groups = calloc((size_t)ngroups + 1, sizeof(gid_t));
	if (c) {
		c->mounts = calloc((size_t)nmounts + 1, sizeof *c->mounts);
		c->masked = calloc((size_t)nmasked + 1, sizeof(char *));
		c->readonly = calloc((size_t)nro + 1, sizeof(char *));
		if (!c->mounts || !c->masked || !c->readonly) {
			seterr("init: out of memory");
			return -1;
		}
	}
	if (!p->args || !p->env || !p->groups) {
		seterr("init: out of memory");
		return -1;
	}
	for (size_t i = 0; i < n;) {
		const char *k = buf + i;
		i += strlen(k) + 1;
		char *v = buf + i;
		i += strlen(v) + 1;
		unsigned long long x;
		if (!strcmp(k, "arg")) p->args[p->nargs++] = v;
		else if (!strcmp(k, "env")) p->env[p->nenv++] = v;
		else if (!strcmp(k, "cwd")) p->cwd = v;
		else if (!strcmp(k, "uid") || !strcmp(k, "gid") || !strcmp(k, "group")) {
			if (parseUint(v, UINT32_MAX, &x)) {
				seterr("init message: bad %s %s", k, v);
				return -1;
			}
			if (k[0] == 'u') p->uid = (uid_t)x;
			else if (k[1] == 'i') p->gid = (gid_t)x;
			else p->groups[p->ngroups++] = (gid_t)x;
		} else if (!strcmp(k, "tty")) p->tty = !strcmp(v, "1");
		else if (!strcmp(k, "cols") || !strcmp(k, "rows")) {
			if (parseUint(v, 65535, &x)) {
				seterr("init message: bad %s %s", k, v);
				return -1;
			}
			if (k[0] == 'c') p->cols = (unsigned short)x;
			else p->rows = (unsigned short)x;
		} else if (c && !strcmp(k, "rootfs")) c->rootfs = v;
		else if (c && !strcmp(k, "hostname")) c->hostname = v;
		else if (c && !strcmp(k, "caps")) {
			if (parseUint(v, UINT64_MAX, &x)) {
				seterr("init message: bad caps %s", v);
				return -1;
			}
			c->caps = x;
		} else if (c && (!strcmp(k, "mount") || !strcmp(k, "mountfile"))) {
			c->mounts[c->nmounts].dest = v;
			c->mounts[c->nmounts].file = k[5] == 'f';
			c->nmounts++;
		} else if (c && !strcmp(k, "mask")) c->masked[c->nmasked++] = v;
		else if (c && !strcmp(k, "ro")) c->readonly[c->nreadonly++] = v;
		else {
			seterr("init message: unknown key %s", k);
			return -1;
		}
	}
	if (p->nargs == 0 || p->args[0][0] == 0) {
		seterr("init message: no program");
		return -1;
	}
	if (c && (!c->rootfs || !c->hostname)) {
		seterr("init message: rootfs and hostname are required");
		return -1;
	}
	return 0;
}

// ---- root filesystem ----------------------------------------------------

static int mountAt(const char *src, const char *target, const char *fstype, unsigned long flags, const char *data) {
	if (mount(src, target, fstype, flags, data) < 0) {
		seterr("mount %s%s on %s: %s", fstype ? fstype : "", src, target, strerror(errno));
		return -1;
	}
	return 0;
}

static int openInRoot(int root, const char *path, int flags) {
	struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}

// mountpoint creates the directory or empty file dest (absolute, inside
// the root filesystem open at root) and returns an O_PATH descriptor of
// it. Every component resolves inside the root, symlinks included, so an
// image cannot point a mount at the host's tree.
static int mountpoint(int root, const char *dest, int file);

// mountpointDepth bounds the symlinks mountpoint follows to create their
// targets, as the kernel bounds symlink resolution.
static int mountpointDepth;

// mkSymlinkTarget creates, inside the root, the directory that the
// symlink name in the directory parent (at path prefix) points to.
static int mkSymlinkTarget(int root, int parent, const char *prefix, const char *name) {
	char target[PATH_MAX], abs[PATH_MAX];
	ssize_t n = readlinkat(parent, name, target, sizeof target - 1);
	if (n < 0) return -1;
	target[n] = 0;
	// A relative target is relative to the symlink's directory.
	size_t dl = target[0] == '/' ? 0 : (size_t)(strrchr(prefix, '/') - prefix);
	if (dl + 1 + (size_t)n >= sizeof abs) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(abs, prefix, dl);
	abs[dl] = '/';
	memcpy(abs + dl + 1, target, (size_t)n + 1);
	if (++mountpointDepth > 40) {
		errno = ELOOP;
		return -1;
	}
	int fd = mountpoint(root, abs, 0);
	mountpointDepth--;
	if (fd < 0) return -1;
	close(fd);
	return 0;
}

static int mountpoint(int root, const char *dest, int file) {
	char path[PATH_MAX], prefix[PATH_MAX] = "";
	if (snprintf(path, sizeof path, "%s", dest) >= (int)sizeof path) {
		seterr("mount point %s: path too long", dest);
		return -1;
	}
	int parent = dup(root);
	if (parent < 0) {
		seterr("mount point %s: %s", dest, strerror(errno));
		return -1;
	}
	char *save = NULL;
	for (char *part = strtok_r(path, "/", &save); part;) {
		char *next = strtok_r(NULL, "/", &save);
		int asFile = next == NULL && file;
		size_t l = strlen(prefix);
		snprintf(prefix + l, sizeof prefix - l, "/%s", part);
		if (asFile) {
			struct stat st;
			if (fstatat(parent, part, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) {
				unlinkat(parent, part, 0); // e.g. a dangling symlink such as /etc/resolv.conf
				int fd = openat(parent, part, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
				if (fd < 0) {
					seterr("create mount point %s: %s", dest, strerror(errno));
					close(parent);
					return -1;
				}
				close(fd);
			}
		} else if (mkdirat(parent, part, 0755) < 0 && errno != EEXIST) {
			seterr("create mount point %s: %s", dest, strerror(errno));
			close(parent);
			return -1;
		}
		int fd = openInRoot(root, prefix, asFile ? O_PATH : O_PATH | O_DIRECTORY);
		if (fd < 0 && errno == ENOENT && !asFile && mkSymlinkTarget(root, parent, prefix, part) == 0) {
			// A symlink to a directory the image lacks: made inside the root.
			fd = openInRoot(root, prefix, O_PATH | O_DIRECTORY);
		}
		if (fd < 0) {
			seterr("open mount point %s: %s", dest, strerror(errno));
			close(parent);
			return -1;
		}
		close(parent);
		parent = fd;
		part = next;
	}
	return parent;
}

static int setupRootfs(struct config *c, int *fds) {
	const unsigned long nsnx = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	// Nothing mounted from here on propagates to the host.
	if (mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		seterr("make mounts private: %s", strerror(errno));
		return -1;
	}
	if (syscall(SYS_move_mount, fds[0], "", AT_FDCWD, c->rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
		seterr("attach rootfs: %s", strerror(errno));
		return -1;
	}
	close(fds[0]);
	if (chdir(c->rootfs) < 0) {
		seterr("enter rootfs: %s", strerror(errno));
		return -1;
	}
	int root = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		seterr("open rootfs: %s", strerror(errno));
		return -1;
	}
	const char *top[] = {"proc", "dev", "sys", "etc"};
	for (size_t i = 0; i < sizeof top / sizeof *top; i++) {
		int fd = mountpoint(root, top[i], 0);
		if (fd < 0) return -1;
		close(fd);
	}
	if (mountAt("proc", "proc", "proc", nsnx, NULL) ||
	    mountAt("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"))
		return -1;
	const char *devdirs[] = {"dev/pts", "dev/shm", "dev/mqueue"};
	for (size_t i = 0; i < 3; i++) {
		if (mkdir(devdirs[i], 0755) < 0) {
			seterr("create /%s: %s", devdirs[i], strerror(errno));
			return -1;
		}
	}
	if (mountAt("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") ||
	    mountAt("shm", "dev/shm", "tmpfs", nsnx, "mode=1777,size=65536k") ||
	    mountAt("mqueue", "dev/mqueue", "mqueue", nsnx, NULL))
		return -1;
	const char *devs[] = {"null", "zero", "full", "random", "urandom", "tty"};
	for (size_t i = 0; i < sizeof devs / sizeof *devs; i++) {
		char src[32], dst[32];
		snprintf(src, sizeof src, "/dev/%s", devs[i]);
		snprintf(dst, sizeof dst, "dev/%s", devs[i]);
		int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
		if (fd < 0) {
			seterr("create /%s: %s", dst, strerror(errno));
			return -1;
		}
		close(fd);
		if (mountAt(src, dst, NULL, MS_BIND, NULL)) return -1;
	}
	const char *links[][2] = {
		{"dev/ptmx", "pts/ptmx"}, {"dev/fd", "/proc/self/fd"}, {"dev/stdin", "/proc/self/fd/0"},
		{"dev/stdout", "/proc/self/fd/1"}, {"dev/stderr", "/proc/self/fd/2"}, {"dev/core", "/proc/kcore"},
	};
	for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
		if (symlink(links[i][1], links[i][0]) < 0) {
			seterr("create /%s: %s", links[i][0], strerror(errno));
			return -1;
		}
	}
	if (mount("sysfs", "sys", "sysfs", nsnx | MS_RDONLY, NULL) < 0) {
		// Without a sysfs of its own (a kernel refusing it in a user
		// namespace), the container gets an empty read-only /sys.
		if (mountAt("tmpfs", "sys", "tmpfs", nsnx | MS_RDONLY, "size=0")) return -1;
	}
	for (int i = 0; i < c->nmounts; i++) {
		int fd = mountpoint(root, c->mounts[i].dest, c->mounts[i].file);
		if (fd < 0) return -1;
		if (syscall(SYS_move_mount, fds[i + 1], "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
			seterr("mount %s: %s", c->mounts[i].dest, strerror(errno));
			return -1;
		}
		close(fd);
		close(fds[i + 1]);
	}
	char rel[PATH_MAX];
	for (int i = 0; i < c->nmasked; i++) {
		struct stat st;
		snprintf(rel, sizeof rel, ".%s", c->masked[i]);
		if (lstat(rel, &st) < 0) continue;
		if (S_ISDIR(st.st_mode) ? mountAt("tmpfs", rel, "tmpfs", MS_RDONLY | nsnx, "size=0")
		                        : mountAt("/dev/null", rel, NULL, MS_BIND, NULL))
			return -1;
	}
	for (int i = 0; i < c->nreadonly; i++) {
		struct stat st;
		snprintf(rel, sizeof rel, ".%s", c->readonly[i]);
		if (lstat(rel, &st) < 0) continue;
		if (mountAt(rel, rel, NULL, MS_BIND | MS_REC, NULL) ||
		    mountAt(rel, rel, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | nsnx, NULL))
			return -1;
	}
	close(root);
	// pivot_root(".", ".") stacks the old root on the new one; detaching
	// it leaves the container only its own tree.
	if (syscall(SYS_pivot_root, ".", ".") < 0) {
		seterr("pivot_root: %s", strerror(errno));
		return -1;
	}
	if (umount2(".", MNT_DETACH) < 0) {
		seterr("detach old root: %s", strerror(errno));
		return -1;
	}
	if (chdir("/") < 0) {
		seterr("chdir to new root: %s", strerror(errno));
		return -1;
	}
	return 0;
}

// dropPrivileges limits the init, and every process it starts, to the
// capabilities in mask, with no_new_privs.
static int dropPrivileges(uint64_t mask) {
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		seterr("set no_new_privs: %s", strerror(errno));
		return -1;
	}
	for (int c = 0; c < 64; c++) {
		if (mask & (1ULL << c)) continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
			if (errno == EINVAL) break; // past the kernel's last capability
			seterr("drop capability %d from bounding set: %s", c, strerror(errno));
			return -1;
		}
	}
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {
		{.effective = (uint32_t)mask, .permitted = (uint32_t)mask},
		{.effective = (uint32_t)(mask >> 32), .permitted = (uint32_t)(mask >> 32)},
	};
	if (syscall(SYS_capset, &hdr, data) < 0) {
		seterr("set capabilities: %s", strerror(errno));
		return -1;
	}
	return 0;
}

// ---- the syscall filter -------------------------------------------------

#if defined(__x86_64__)
#define SECCOMP_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SECCOMP_ARCH AUDIT_ARCH_AARCH64
#else
#error "no seccomp architecture for this target"
#endif

// Denied with EPERM, as Docker's default profile does: what reaches kernel
// surface a container has no use for (keys, BPF, perf, userfaultfd,
// io_uring, file handles, modules, kexec, accounting, swap, the mount API,
// the kernel log), most of it guarded by capabilities that a nested user
// namespace would hand out, were it allowed (see unshare below).
static const int deniedSyscalls[] = {
	__NR_keyctl, __NR_add_key, __NR_request_key, __NR_bpf, __NR_perf_event_open,
	__NR_userfaultfd, __NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register,
	__NR_open_by_handle_at, __NR_name_to_handle_at, __NR_init_module, __NR_finit_module,
	__NR_delete_module, __NR_kexec_load, __NR_kexec_file_load, __NR_acct, __NR_swapon,
	__NR_swapoff, __NR_mount, __NR_umount2, __NR_pivot_root, __NR_fsopen, __NR_fsconfig,
	__NR_fsmount, __NR_fspick, __NR_open_tree, __NR_move_mount, __NR_mount_setattr,
	__NR_syslog, __NR_quotactl, __NR_lookup_dcookie, __NR_setns,
#if defined(__x86_64__)
	__NR_iopl, __NR_ioperm, __NR_uselib, __NR_ustat, __NR_sysfs, __NR__sysctl,
#endif
};

// installSeccomp filters the init's syscalls, and so every process it
// starts: the list above fails with EPERM, a new user namespace (unshare,
// clone) with EPERM, clone3 with ENOSYS (its flags are out of a filter's
// reach; libc falls back to clone), and any other architecture's syscalls
// (32-bit and x32 on x86_64) with EPERM.
static int installSeccomp(void) {
	enum { ndeny = sizeof deniedSyscalls / sizeof deniedSyscalls[0] };
	struct sock_filter f[2 * ndeny + 16]; // two a denied syscall, 14 besides
	int n = 0;
#define STMT(code, k) (f[n++] = (struct sock_filter)BPF_STMT(code, k))
#define JUMP(code, k, jt, jf) (f[n++] = (struct sock_filter)BPF_JUMP(code, k, jt, jf))
	const uint32_t eperm = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
	STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_ARCH, 1, 0);
	STMT(BPF_RET | BPF_K, eperm);
	STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
	JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1); // x32
	STMT(BPF_RET | BPF_K, eperm);
#endif
	for (int i = 0; i < ndeny; i++) {
		JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)deniedSyscalls[i], 0, 1);
		STMT(BPF_RET | BPF_K, eperm);
	}
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1);
	STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
	// unshare(flags) and clone(flags, ...): the flags are the first
	// argument on both architectures; its low 32 bits hold CLONE_NEWUSER.
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_unshare, 1, 0);
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 3);
	STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
	JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1);
	STMT(BPF_RET | BPF_K, eperm);
	STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
#undef STMT
#undef JUMP
	struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) {
		seterr("install syscall filter: %s", strerror(errno));
		return -1;
	}
	return 0;
}

// ---- starting processes -------------------------------------------------

// lookPath resolves p's program against PATH from its environment,
// adding the default PATH to the environment when it has none.
static int lookPath(struct proc *p, char *out, size_t cap) {
	const char *path = NULL;
	for (int i = 0; i < p->nenv; i++)
		if (!strncmp(p->env[i], "PATH=", 5)) path = p->env[i] + 5;
	if (!path) {
		p->env[p->nenv++] = "PATH=" DEFAULT_PATH;
		path = DEFAULT_PATH;
	}
	const char *name = p->args[0];
	if (strchr(name, '/')) {
		snprintf(out, cap, "%s", name);
		return 0;
	}
	for (const char *d = path;;) {
		const char *end = strchrnul(d, ':');
		int dl = (int)(end - d);
		if (dl == 0) snprintf(out, cap, "./%s", name);
		else snprintf(out, cap, "%.*s/%s", dl, d, name);
		struct stat st;
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) return 0;
		if (!*end) break;
		d = end + 1;
	}
	seterr("executable \"%s\" not found in PATH %s", name, path);
	return -1;
}

static sigset_t allSignals;

// spawn forks and execs p with stdio on fds[0..2]. The child reports an
// exec failure over a close-on-exec pipe, so the caller gets the error.
static pid_t spawn(struct proc *p, const int fds[3]) {
	char prog[PATH_MAX];
	if (lookPath(p, prog, sizeof prog)) return -1;
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0) {
		seterr("create exec pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		seterr("fork: %s", strerror(errno));
		close(ep[0]);
		close(ep[1]);
		return -1;
	}
	if (pid == 0) {
		const char *step = "set up";
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (setsid() < 0) {
			step = "setsid";
			goto fail;
		}
		// Move the stdio sources above 2 first, so that dup2 cannot
		// overwrite one before it is used.
		int src[3];
		for (int i = 0; i < 3; i++) {
			src[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
			if (src[i] < 0) {
				step = "dup stdio";
				goto fail;
			}
		}
		for (int i = 0; i < 3; i++) {
			if (dup2(src[i], i) < 0) {
				step = "dup2 stdio";
				goto fail;
			}
		}
		if (p->tty && ioctl(0, TIOCSCTTY, 0) < 0) {
			step = "set controlling terminal";
			goto fail;
		}
		// The terminal belongs to the user the process runs as, who can
		// then open it again (/dev/tty, tmux, sudo).
		if (p->tty && fchown(0, p->uid, (gid_t)-1) < 0) {
			step = "give the terminal to the user";
			goto fail;
		}
		if (setgroups((size_t)p->ngroups, p->groups) < 0) {
			step = "setgroups";
			goto fail;
		}
		if (setgid(p->gid) < 0) {
			step = "setgid";
			goto fail;
		}
		if (setuid(p->uid) < 0) {
			step = "setuid";
			goto fail;
		}
		if (chdir(p->cwd && *p->cwd ? p->cwd : "/") < 0) {
			step = "chdir";
			goto fail;
		}
		execve(prog, p->args, p->env);
		step = "exec";
	fail:;
		int e = errno;
		char msg[PATH_MAX + 128];
		const char *what = prog;
		if (strcmp(step, "chdir") == 0) {
			step = "change to working directory";
			what = p->cwd && *p->cwd ? p->cwd : "/";
		}
		int n = snprintf(msg, sizeof msg, "%s %s: %s", step, what, strerror(e));
		if (write(ep[1], msg, (size_t)n) < 0) {
			// the parent sees an empty pipe and the exit
		}
		_exit(127);
	}
	close(ep[1]);
	ssize_t n;
	do {
		n = read(ep[0], errbuf, sizeof errbuf - 1);
	} while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n > 0) {
		errbuf[n] = 0;
		waitpid(pid, NULL, 0);
		return -1;
	}
	return pid;
}

// ---- the container log --------------------------------------------------

struct stream {
	const char *name;
	int fd; // -1 once at EOF
	char buf[32 << 10];
	size_t n;
};

static int logFD = -1;

static void logRecord(const char *stream, int partial, const char *text, size_t n) {
	static char rec[MAX_LOG_LINE + 128];
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	size_t l = rfc3339(rec, 64, &now);
	l += (size_t)snprintf(rec + l, 64, " %s %s ", stream, partial ? "P" : "F");
	memcpy(rec + l, text, n);
	l += n;
	rec[l++] = '\n';
	writeAll(logFD, rec, l);
}

// drain reads what is available on s and logs every complete line; at EOF
// it logs the rest and closes the stream.
static void drain(struct stream *s) {
	ssize_t m = read(s->fd, s->buf + s->n, sizeof s->buf - s->n);
	if (m < 0 && (errno == EINTR || errno == EAGAIN)) return;
	if (m > 0) s->n += (size_t)m;
	size_t start = 0;
	for (;;) {
		char *nl = memchr(s->buf + start, '\n', s->n - start);
		if (!nl) break;
		size_t len = (size_t)(nl - (s->buf + start));
		const char *line = s->buf + start;
		while (len > MAX_LOG_LINE) {
			logRecord(s->name, 1, line, MAX_LOG_LINE);
			line += MAX_LOG_LINE;
			len -= MAX_LOG_LINE;
		}
		logRecord(s->name, 0, line, len);
		start = (size_t)(nl - s->buf) + 1;
	}
	while (s->n - start >= MAX_LOG_LINE) {
		logRecord(s->name, 1, s->buf + start, MAX_LOG_LINE);
		start += MAX_LOG_LINE;
	}
	memmove(s->buf, s->buf + start, s->n - start);
	s->n -= start;
	if (m <= 0) {
		if (s->n > 0) logRecord(s->name, 0, s->buf, s->n);
		s->n = 0;
		close(s->fd);
		s->fd = -1;
	}
}

// ---- Exec ---------------------------------------------------------------

struct execjob {
	pid_t pid;
	int conn;
	int hup; // the caller went away and the process was killed
};

static struct execjob execs[MAX_EXECS];

static void replyError(int conn) {
	char out[8192];
	size_t n = errorJSON(out, sizeof out - 1);
	out[n++] = '\n';
	sendAll(conn, out, n);
}

static int openPty(int *master, int *slave, unsigned short cols, unsigned short rows) {
	int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0) {
		seterr("open /dev/ptmx: %s", strerror(errno));
		return -1;
	}
	int unlock = 0, num;
	if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCGPTN, &num) < 0) {
		seterr("set up pty: %s", strerror(errno));
		close(m);
		return -1;
	}
	char name[32];
	snprintf(name, sizeof name, "/dev/pts/%d", num);
	int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0) {
		seterr("open pty slave: %s", strerror(errno));
		close(m);
		return -1;
	}
	if (cols || rows) {
		struct winsize ws = {.ws_row = rows, .ws_col = cols};
		if (ioctl(m, TIOCSWINSZ, &ws) < 0) {
			seterr("set terminal size: %s", strerror(errno));
			close(m);
			close(s);
			return -1;
		}
	}
	*master = m;
	*slave = s;
	return 0;
}

// handleExec reads one Exec request from conn and starts its process; the
// connection stays open until the process exits (see reaped).
static void handleExec(int conn) {
	static char buf[MAX_MSG];
	char oob[CMSG_SPACE(3 * sizeof(int))];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = oob, .msg_controllen = sizeof oob};
	// The engine sends its request at once; a peer that does not cannot
	// hold the init.
	struct timeval tv = {.tv_sec = 5};
	setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR) n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
	// A stream socket ends a read after the part that carried the fds:
	// the rest follows until the engine shuts down its side.
	int incomplete = 0;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (n > 0) {
		if ((size_t)n == sizeof buf) {
			incomplete = 1; // no room left for the end of it
			break;
		}
		// Five seconds for the whole request, not for each part.
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = 5000 - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0) {
			incomplete = 1;
			break;
		}
		struct timeval lt = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
		setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &lt, sizeof lt);
		ssize_t m = recv(conn, buf + n, sizeof buf - (size_t)n, 0);
		if (m == 0) break;
		if (m < 0) {
			if (errno == EINTR) continue;
			incomplete = 1;
			break;
		}
		n += m;
	}
	int fds[3] = {-1, -1, -1}, nfds = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
		int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int *p = (int *)CMSG_DATA(cm);
		for (int i = 0; i < k; i++) {
			if (nfds < 3) fds[nfds++] = p[i];
			else close(p[i]);
		}
	}
	int slot = -1;
	for (int i = 0; i < MAX_EXECS; i++)
		if (execs[i].pid == 0) {
			slot = i;
			break;
		}
	struct proc p;
	memset(&p, 0, sizeof p);
	int master = -1, slave = -1;
	pid_t pid = -1;
	if (n <= 0) {
		goto done;
	}
	if (incomplete || (msg.msg_flags & MSG_CTRUNC)) {
		seterr("exec request incomplete or over %d bytes", (int)sizeof buf - 1);
		replyError(conn);
		goto done;
	}
	for (int i = 0; i < nfds; i++) {
		// Stdio only: pipes, sockets, terminals and the like, never a
		// directory or file of the host's.
		struct stat st;
		if (fstat(fds[i], &st) < 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode))) {
			seterr("exec stdio %d is not a pipe, socket or character device", i);
			replyError(conn);
			goto done;
		}
	}
	if (slot < 0) {
		seterr("too many processes started by exec at once (%d)", MAX_EXECS);
		replyError(conn);
		goto done;
	}
	if (parse(buf, (size_t)n, NULL, &p)) {
		replyError(conn);
		goto done;
	}
	if (p.tty) {
		if (openPty(&master, &slave, p.cols, p.rows)) {
			replyError(conn);
			goto done;
		}
		int stdio[3] = {slave, slave, slave};
		pid = spawn(&p, stdio);
	} else if (nfds != 3) {
		seterr("exec request without stdio");
		replyError(conn);
		goto done;
	} else {
		pid = spawn(&p, fds);
	}
	if (pid < 0) {
		replyError(conn);
		goto done;
	}
	char rep[64];
	int rl = snprintf(rep, sizeof rep, "{\"pid\":%d}", (int)pid);
	if (p.tty) {
		// The reply carries the terminal's master side.
		char cbuf[CMSG_SPACE(sizeof(int))];
		memset(cbuf, 0, sizeof cbuf);
		struct iovec riov = {.iov_base = rep, .iov_len = (size_t)rl};
		struct msghdr rmsg = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&rmsg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &master, sizeof(int));
		if (sendmsg(conn, &rmsg, MSG_NOSIGNAL) < 0) {
			// The status write fails the same way later.
		}
	} else {
		rep[rl++] = '\n';
		sendAll(conn, rep, (size_t)rl);
	}
	execs[slot].pid = pid;
	execs[slot].conn = conn;
	execs[slot].hup = 0;
	conn = -1;
done:
	free(p.args);
	free(p.env);
	free(p.groups);
	for (int i = 0; i < nfds; i++) close(fds[i]);
	if (master >= 0) close(master);
	if (slave >= 0) close(slave);
	if (conn >= 0) close(conn);
}

// reaped tells an Exec caller its process ended; false if pid is not one.
static int reaped(pid_t pid, int ws) {
	for (int i = 0; i < MAX_EXECS; i++) {
		if (execs[i].pid != pid) continue;
		char out[160];
		size_t n = (size_t)snprintf(out, sizeof out, "{\"status\":");
		n += statusJSON(out + n, sizeof out - n - 3, ws, NULL);
		out[n++] = '}';
		out[n++] = '\n';
		// A caller that went away gets EPIPE, not a signal.
		if (send(execs[i].conn, out, n, MSG_NOSIGNAL) < 0) {
			// nobody is listening any more
		}
		close(execs[i].conn);
		execs[i].pid = 0;
		return 1;
	}
	return 0;
}

// ---- the init -----------------------------------------------------------

static void runInit(void) {
	static char buf[MAX_MSG];
	// Inherited descriptors must not reach the app.
	syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
	// Every signal but the synchronous faults waits in the signalfd: the
	// init forwards them to the app (SIGCHLD means reaping). Blocked
	// signals are delivered to a namespace's init even when it has no
	// handler, unlike ignored ones.
	sigfillset(&allSignals);
	int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
	for (size_t i = 0; i < sizeof faults / sizeof *faults; i++) sigdelset(&allSignals, faults[i]);
	sigprocmask(SIG_SETMASK, &allSignals, NULL);
	// Signals the engine's process ignored stay ignored across exec; the
	// app starts with every disposition at its default.
	// The kernel's rt_sigaction, not libc's, which refuses the signals
	// it reserves for itself (32 and 33) though they can be inherited.
	struct {
		void (*handler)(int);
		unsigned long flags;
		void (*restorer)(void);
		uint64_t mask;
	} dfl = {.handler = SIG_DFL};
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
	}

	char oob[CMSG_SPACE(MAX_FDS * sizeof(int))];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = oob, .msg_controllen = sizeof oob};
	ssize_t n;
	do {
		n = recvmsg(FD_SYNC, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0) _exit(1); // the engine went away
	int fds[MAX_FDS], nfds = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
		int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int *p = (int *)CMSG_DATA(cm);
		for (int i = 0; i < k && nfds < MAX_FDS; i++) fds[nfds++] = p[i];
	}
	struct config c;
	memset(&c, 0, sizeof c);
	if (parse(buf, (size_t)n, &c, &c.proc)) fail();
	if (nfds != NFILES + c.nmounts + 1) {
		seterr("init got %d fds, want %d", nfds, NFILES + c.nmounts + 1);
		fail();
	}
	logFD = fds[FILE_LOG];
	int exitFD = fds[FILE_EXIT], ctl = fds[FILE_CTL];
	if (setupRootfs(&c, fds + NFILES)) fail();
	if (sethostname(c.hostname, strlen(c.hostname)) < 0) {
		seterr("set hostname: %s", strerror(errno));
		fail();
	}
	// A cgroup namespace rooted at the container's cgroup, which the
	// engine joined us to before sending the config.
	if (unshare(CLONE_NEWCGROUP) < 0) {
		seterr("create cgroup namespace: %s", strerror(errno));
		fail();
	}
	// The app (same UID) must not ptrace the init or open /proc/1/fd or
	// /proc/1/exe; non-dumpable processes are off limits to it.
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (dropPrivileges(c.caps)) fail();
	if (installSeccomp()) fail();
	int sfd = signalfd(-1, &allSignals, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		seterr("create signalfd: %s", strerror(errno));
		fail();
	}
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int outp[2], errp[2];
	if (null < 0 || pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		seterr("create app stdio: %s", strerror(errno));
		fail();
	}
	int stdio[3] = {null, outp[1], errp[1]};
	pid_t app = spawn(&c.proc, stdio);
	if (app < 0) fail();
	close(null);
	close(outp[1]);
	close(errp[1]);
	char rep[64];
	int rl = snprintf(rep, sizeof rep, "{\"pid\":%d}", (int)app);
	sendAll(FD_SYNC, rep, (size_t)rl);
	close(FD_SYNC);

	static struct stream out = {.name = "stdout"}, err = {.name = "stderr"};
	out.fd = outp[0];
	err.fd = errp[0];
	int appDone = 0, appStatus = 0;
	struct timespec deadline = {0};
	for (;;) {
		struct pollfd pfd[4 + MAX_EXECS] = {{.fd = sfd, .events = POLLIN}, {.fd = out.fd, .events = POLLIN}, {.fd = err.fd, .events = POLLIN}, {.fd = appDone ? -1 : ctl, .events = POLLIN}};
		// An Exec caller's connection, for its hangup alone (the engine
		// shut down its side for writing when it sent the request).
		for (int i = 0; i < MAX_EXECS; i++) pfd[4 + i] = (struct pollfd){.fd = execs[i].pid && !execs[i].hup ? execs[i].conn : -1};
		int timeout = -1;
		if (appDone) {
			// The app has exited: wait at most 500 ms for what it (or a
			// background process still holding its pipes) printed.
			if (out.fd < 0 && err.fd < 0) break;
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			long ms = (deadline.tv_sec - now.tv_sec) * 1000 + (deadline.tv_nsec - now.tv_nsec) / 1000000;
			if (ms <= 0) break;
			timeout = (int)ms;
		}
		if (poll(pfd, 4 + MAX_EXECS, timeout) < 0) {
			if (errno == EINTR) continue;
			break;
		}
		for (int i = 0; i < MAX_EXECS; i++) {
			if (pfd[4 + i].fd < 0 || !(pfd[4 + i].revents & (POLLHUP | POLLERR))) continue;
			// Nobody waits for the process any more (a health check that
			// timed out, a dropped ssh run): it goes, with its group.
			kill(-execs[i].pid, SIGKILL);
			kill(execs[i].pid, SIGKILL);
			execs[i].hup = 1;
		}
		if (pfd[1].revents) drain(&out);
		if (pfd[2].revents) drain(&err);
		if (pfd[3].revents & POLLIN) {
			int conn = accept4(ctl, NULL, NULL, SOCK_CLOEXEC);
			if (conn >= 0) handleExec(conn);
		}
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == sizeof si) {
				if (si.ssi_signo != SIGCHLD) {
					// One the init raised itself (SIGPIPE, SIGXFSZ from a
					// write) is not for the app.
					if (!appDone && si.ssi_pid != (uint32_t)getpid()) kill(app, (int)si.ssi_signo);
					continue;
				}
			}
			for (;;) {
				int ws;
				pid_t pid = waitpid(-1, &ws, WNOHANG);
				if (pid <= 0) break;
				if (pid == app) {
					appDone = 1;
					appStatus = ws;
					clock_gettime(CLOCK_MONOTONIC, &deadline);
					deadline.tv_nsec += 500 * 1000000L;
					if (deadline.tv_nsec >= 1000000000L) {
						deadline.tv_sec++;
						deadline.tv_nsec -= 1000000000L;
					}
				} else {
					reaped(pid, ws);
				}
			}
		}
	}
	char st[160];
	int code;
	size_t sl = statusJSON(st, sizeof st, appStatus, &code);
	writeAll(exitFD, st, sl);
	// Exiting kills whatever else runs in the container.
	_exit(code);
}

// runPause blocks until stdin ends: a process that only holds namespaces.
static void runPause(void) {
	char b[512];
	for (;;) {
		ssize_t n = read(0, b, sizeof b);
		if (n == 0 || (n < 0 && errno != EINTR)) _exit(0);
	}
}

__attribute__((constructor)) static void berthEngineRole(void) {
	const char *role = getenv(ROLE_ENV);
	if (!role) return;
	if (!strcmp(role, "init")) runInit();
	if (!strcmp(role, "pause")) runPause();
}
