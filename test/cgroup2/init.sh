#!/bin/bash
# PID 1 of the cgroup v2 test VM (see run.sh). It sets up a host the way a
# current distribution would, except that nothing but cgroup2 is mounted
# (the kernel also boots with cgroup_no_v1=all), runs each test binary that
# run.sh packed under /berth/pkgs, and writes everything to the second
# serial port, which run.sh reads. Each package ends with a line
#   berth-cgroup2: result PKG exit=N
# and the run with "berth-cgroup2: done"; a run without it crashed or timed out.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
exec </dev/null >/dev/ttyS1 2>&1

say() { echo "berth-cgroup2: $*"; }

finish() {
	sync
	say done
	sync
	busybox poweroff -f
	# poweroff needs ACPI; if it is missing, the kernel panics on PID 1's
	# exit and qemu (-no-reboot, panic=-1) stops all the same.
	exit 0
}

setup() {
	mount -t proc proc /proc &&
		mount -t sysfs sysfs /sys &&
		mkdir -p /dev/pts /dev/shm &&
		mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts &&
		ln -sf pts/ptmx /dev/ptmx &&
		mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm &&
		mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp &&
		mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run &&
		mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || return 1
	# The rest of what systemd mounts at boot (mount-setup.c), so that the
	# host's mount table is that of a real one: tests compare against it.
	# Like systemd, skip one whose directory the kernel does not offer.
	local fs dir
	modprobe -q configfs
	modprobe -q fuse
	while read -r fs dir; do
		mkdir -p "$dir" 2>/dev/null || continue
		mount -t "$fs" "$fs" "$dir" || return 1
	done <<-EOF
		securityfs /sys/kernel/security
		pstore /sys/fs/pstore
		bpf /sys/fs/bpf
		debugfs /sys/kernel/debug
		tracefs /sys/kernel/tracing
		configfs /sys/kernel/config
		fusectl /sys/fs/fuse/connections
		mqueue /dev/mqueue
		hugetlbfs /dev/hugepages
	EOF
	mkdir -p /run/lock && mount -t tmpfs -o mode=1777,nosuid,nodev,noexec,size=5m tmpfs /run/lock || return 1
	# systemd enables the controllers at the root the same way.
	if [[ -n ${SUBTREE-} ]]; then
		echo "$SUBTREE" >/sys/fs/cgroup/cgroup.subtree_control || return 1
	fi
	# and keeps no process in the root cgroup: PID 1 in init.scope, services
	# in system.slice (the tests run as one, see below).
	if [[ $LAYOUT == systemd ]]; then
		mkdir -p /sys/fs/cgroup/init.scope /sys/fs/cgroup/system.slice/berth-tests.service &&
			echo $$ >/sys/fs/cgroup/init.scope/cgroup.procs || return 1
	fi
	hostname berth-cgroup2
	ip link set lo up || return 1
	# The kernel autoloads these on first use through /sbin/modprobe; loading
	# them here makes a missing module an environment error, not a test failure.
	# btrfs too: quota looks for it in /proc/filesystems, which lists a module
	# only once loaded (as on the development hosts, where it is).
	for m in overlay veth bridge loop btrfs; do
		modprobe "$m" || return 1
	done
	return 0
}

# shellcheck source=/dev/null
. /berth/config

if ! setup; then
	say "environment setup failed"
	finish
fi

say "kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
say "cgroup mounts: $(awk '$3 ~ /^cgroup/ {printf "%s(%s) ", $2, $3}' /proc/mounts)"
say "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
say "cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
say "layout: $LAYOUT (init.sh in $(cut -d: -f3 /proc/self/cgroup)); $(wc -l </proc/self/mountinfo) mounts"
if awk '$3 == "cgroup" {found=1} END {exit !found}' /proc/mounts; then
	say "a cgroup v1 hierarchy is mounted; this is not a pure v2 host"
	finish
fi

for pkg in $PACKAGES; do
	say "start $pkg"
	start=$(date +%s)
	(
		[[ $LAYOUT != systemd ]] || echo "$BASHPID" >/sys/fs/cgroup/system.slice/berth-tests.service/cgroup.procs
		# Test data go to the root image's ext4, as /var/lib/berth does on
		# a host: /tmp is a tmpfs, which takes idmapped mounts only from 6.3.
		cd "/berth/pkgs/$pkg" && TMPDIR=/var/tmp CI=true exec "./$pkg.test" -test.v -test.count=1 -test.timeout="$TEST_TIMEOUT" $TEST_ARGS
	)
	code=$?
	say "result $pkg exit=$code seconds=$(($(date +%s) - start))"
done

# What the tests left on the VM, for the report; the engine's own leak check
# already failed the run if it found any of its containers.
say "after: cgroups under berth: $(find /sys/fs/cgroup/berth -mindepth 1 -type d 2>/dev/null | wc -l)"
say "after: overlay mounts: $(grep -c ' overlay ' /proc/mounts)"
say "after: links: $(ip -o link show | awk -F': ' '{printf "%s ", $2}')"
finish
