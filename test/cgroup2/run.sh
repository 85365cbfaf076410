#!/usr/bin/env bash
# run.sh runs berth's real container tests on a pure cgroup v2 kernel.
#
# The development and CI hosts are cgroup v1 ("hybrid"), so the engine's
# cgroup v2 path (opencontainers/cgroups' fs2 manager: memory.max and the
# oom_kill count in memory.events, cpu.max, cpuset, pids.max, cgroup.freeze
# for pause, the eBPF device filter) never runs there. This script boots
# Debian's own kernel under qemu with software emulation (TCG: the host is a
# VM itself and has no /dev/kvm) on a root filesystem debootstrapped from
# Debian trixie, mounts nothing but cgroup2 (the kernel boots with cgroup_no_v1=all)
# and runs the packages' test binaries, built on the host, as root with
# CI=true, so a test may not skip for want of root or busybox.
#
# Usage: test/cgroup2/run.sh [PACKAGE...]     (default: engine)
#        make test-cgroup2
#
# The first run builds the VM image (kernel, initramfs, root image) in the
# cache, which takes a few minutes and needs Debian's package mirror; later
# runs reuse it until this script or initramfs-init changes. After that a
# run of the engine's tests takes 30 to 60 s (booting and setting up
# the VM takes about 10 s under TCG), engine and quota together about 2
# minutes. To reclaim the space (about 350 MB per kernel series):
# rm -rf /var/cache/berth-cgroup2.
#
# The kernel is Linux 6.18 from trixie-backports by default, the series the
# development hosts run, where the engine hands overlayfs its layers as file
# descriptors (fsconfig FSCONFIG_SET_FD "lowerdir+", 6.13 and later).
# BERTH_CGROUP2_KERNEL_SERIES=6.12 (trixie's own) or 6.1 (bookworm's) runs
# the engine's other way, layers named by path in a private mount namespace
# (make test-cgroup2 KERNEL=6.1). The VM has no network device at all. Logs of the last run go to artifacts/cgroup2/:
# test.log (the go test -v output, streamed here while it runs) and
# console.log (the kernel's console).
#
# Environment:
#   BERTH_CGROUP2_CACHE    image cache (default /var/cache/berth-cgroup2)
#   BERTH_CGROUP2_OUT      where the logs go (default artifacts/cgroup2)
#   BERTH_CGROUP2_RUN      passed as -test.run
#   BERTH_CGROUP2_ARGS     more test binary flags, e.g. "-test.failfast"
#   BERTH_CGROUP2_TIMEOUT  go test timeout per package (default 20m)
#   BERTH_CGROUP2_VM_TIMEOUT  hard limit on the VM (default 40m)
#   BERTH_CGROUP2_SUBTREE  controllers enabled at the root, as systemd
#                          does (default "+cpu +memory +pids +cpuset"; empty
#                          leaves it to the cgroup library)
#   BERTH_CGROUP2_LAYOUT   "systemd" (default): the tests run in
#                          /system.slice/berth-tests.service and no process
#                          stays in the root cgroup, as on a systemd host;
#                          "root": everything in the root cgroup
#   BERTH_CGROUP2_CPUS, BERTH_CGROUP2_MEM  VM size (default 2 and 2048 MiB)
#   BERTH_CGROUP2_REBUILD=1  rebuild the image
#   BERTH_CGROUP2_SUITE    Debian release of the root filesystem (default trixie)
#   BERTH_CGROUP2_KERNEL_SERIES, BERTH_CGROUP2_KERNEL_SUITE  which kernel
#                          series and where it comes from (default 6.18 from
#                          trixie-backports; 6.12 from trixie, 6.1 from
#                          bookworm): the newest linux-image-SERIES.* there
#   BERTH_CGROUP2_MIRROR   Debian mirror (default deb.debian.org)
#
# What the VM offers: the engine's and quota's tests (busybox, iptables,
# iproute2 with tc, kmod, btrfs-progs, e2fsprogs; overlay, veth, bridge,
# loop, btrfs, ifb and netfilter modules; a kernel with CONFIG_QUOTA, which
# the development hosts lack). Not there: any network beyond the VM (the
# engine's NAT rules are set up but never carry traffic out), PostgreSQL,
# git and ssh, so packages such as deploy and platform do not run here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${BERTH_CGROUP2_CACHE:-/var/cache/berth-cgroup2}
out=${BERTH_CGROUP2_OUT:-$repo/artifacts/cgroup2}
suite=${BERTH_CGROUP2_SUITE:-trixie}
kernel_series=${BERTH_CGROUP2_KERNEL_SERIES:-6.18}
case $kernel_series in
6.1) default_kernel_suite=bookworm ;;
6.12) default_kernel_suite=trixie ;;
*) default_kernel_suite=trixie-backports ;;
esac
kernel_suite=${BERTH_CGROUP2_KERNEL_SUITE:-$default_kernel_suite}
mirror=${BERTH_CGROUP2_MIRROR:-http://deb.debian.org/debian}
# What the tests need inside the VM besides minbase: busybox for the test
# rootfs, iptables for the engine's NAT rules, iproute2 (tc too) and kmod for
# init.sh, btrfs-progs and e2fsprogs for quota's disk drivers.
include=busybox-static,iptables,iproute2,kmod,btrfs-progs,e2fsprogs
# Modules the initramfs loads to reach the root image; the rest load from
# the root image on demand.
early_modules=(virtio_pci virtio_blk ext4)
# ext4 asks the crypto API for crc32c by name on older kernels; whichever of
# these the kernel has is loaded too.
optional_modules=(crc32c_generic crc32c-cryptoapi)

export PATH=$PATH:/usr/local/go/bin

log() { echo "cgroup2: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# recipe is what the image is built from; a change to it rebuilds the image.
recipe() {
	declare -f build_image build_initramfs resolve_modules suite_apt
	echo "$suite $kernel_suite $kernel_series $mirror $include ${early_modules[*]} ${optional_modules[*]}"
	cat "$here/initramfs-init"
}

# resolve_modules prints the .ko paths (relative to the modules dir) that
# load the given modules, dependencies first, each once.
resolve_modules() {
	local dir=$1 m line path d
	shift
	local -A seen=()
	local -a deps
	for m in "$@"; do
		if ! line=$(grep -E "(^|/)${m}\.ko(\.[a-z]+)?:" "$dir/modules.dep"); then
			grep -qE "(^|/)${m}\.ko\$" "$dir/modules.builtin" || die "module $m not found in $dir"
			continue # built into the kernel
		fi
		path=${line%%:*}
		read -r -a deps <<<"${line#*:}"
		# modules.dep lists dependencies so that the last loads first.
		for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
			d=${deps[i]}
			[[ -n ${seen[$d]-} ]] || { seen[$d]=1; echo "$d"; }
		done
		[[ -n ${seen[$path]-} ]] || { seen[$path]=1; echo "$path"; }
	done
}

# build_initramfs makes a busybox initramfs that loads the early modules and
# switches to the root image (see initramfs-init).
build_initramfs() {
	local rootfs=$1 kver=$2 dest=$3 stage=$4 mod
	local moddir=$rootfs/usr/lib/modules/$kver
	mkdir -p "$stage"/{bin,dev,proc,sys,modules,newroot}
	cp "$rootfs/usr/bin/busybox" "$stage/bin/busybox"
	cp "$here/initramfs-init" "$stage/init"
	chmod 755 "$stage/init"
	mknod -m 600 "$stage/dev/console" c 5 1
	# busybox insmod wants plain .ko files; Debian compresses them with xz.
	local m early=("${early_modules[@]}")
	for m in "${optional_modules[@]}"; do
		grep -qE "(^|/)${m}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" && early+=("$m")
	done
	resolve_modules "$moddir" "${early[@]}" | while read -r mod; do
		mkdir -p "$stage/modules/$(dirname "$mod")"
		case $mod in
		*.xz) xz -dc "$moddir/$mod" >"$stage/modules/${mod%.xz}" ;;
		*.zst) zstd -qdc "$moddir/$mod" >"$stage/modules/${mod%.zst}" ;;
		*) cp "$moddir/$mod" "$stage/modules/$mod" ;;
		esac
		mod=${mod%.xz}
		echo "${mod%.zst}"
	done >"$stage/modules/load-order"
	(cd "$stage" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$dest"
}

# suite_apt runs an apt command on the kernel suite's package lists, kept in
# the cache so that the host's own apt sources are left alone.
suite_apt() {
	local cmd=$1 d=$cache/apt
	shift
	mkdir -p "$d/lists/partial" "$d/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $kernel_suite main" >"$d/sources.list"
	"$cmd" -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
		-o Dir::State::Lists="$d/lists" -o Dir::Cache="$d" -o Dir::Cache::Archives="$d/archives" \
		-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root "$@"
}

# build_image downloads the kernel, debootstraps a minbase root with
# the kernel's modules, and writes vmlinuz, initrd.img and root.img.
build_image() {
	local b=$1 kpkg kver
	suite_apt apt-get -qq update
	# trixie names its kernels 6.12.57+deb13-amd64, bookworm 6.1.0-41-amd64.
	kpkg=$(suite_apt apt-cache search --names-only "^linux-image-${kernel_series//./\\.}\\.([0-9]+\\+deb[0-9]+|0-[0-9]+)-amd64\$" |
		awk '{print $1}' | sort -V | tail -1)
	[[ -n $kpkg ]] || die "Debian $kernel_suite has no linux-image-$kernel_series.*-amd64 kernel"
	log "kernel: $kpkg"
	mkdir -p "$b/deb" "$b/kernel"
	(cd "$b/deb" && suite_apt apt-get -qq download "$kpkg")
	dpkg-deb -x "$b"/deb/*.deb "$b/kernel"
	local kmods=$b/kernel/usr/lib/modules
	[[ -d $kmods ]] || kmods=$b/kernel/lib/modules
	kver=$(ls "$kmods")

	log "debootstrap $suite (minbase + $include); this takes a few minutes"
	debootstrap --variant=minbase --include="$include" "$suite" "$b/rootfs" "$mirror" >"$b/debootstrap.log" 2>&1 ||
		{ tail -20 "$b/debootstrap.log" >&2; die "debootstrap failed (log: $b/debootstrap.log)"; }
	mkdir -p "$b/rootfs/usr/lib/modules"
	cp -a "$kmods/$kver" "$b/rootfs/usr/lib/modules/"
	chroot "$b/rootfs" /usr/sbin/depmod -a "$kver"
	rm -rf "$b"/rootfs/var/cache/apt/archives/*.deb "$b"/rootfs/var/lib/apt/lists/*
	# mkfs.ext4 -d fills the image from the directory without mounting it.
	local mb
	mb=$(du -sm "$b/rootfs" | cut -f1)
	truncate -s "$((mb + 512))M" "$b/root.img"
	mkfs.ext4 -q -F -L berth-cgroup2 -d "$b/rootfs" "$b/root.img"

	build_initramfs "$b/rootfs" "$kver" "$b/initrd.img" "$b/initramfs"
	cp "$b/kernel/boot/vmlinuz-$kver" "$b/vmlinuz"
	echo "$kpkg $kver" >"$b/kernel.txt"
}

# unmount_under unmounts whatever is still mounted below a directory
# (debootstrap mounts /proc and /sys in its target and may leave them on failure).
unmount_under() {
	local m
	awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
		umount -l "$m" || true
	done
}

# ensure_image sets img to the directory of the image for the current
# recipe, building it if needed. Each kernel series keeps one image, so
# that trying another series does not throw the usual one away.
ensure_image() {
	local stamp
	stamp=$(recipe | sha256sum | cut -c1-16)
	img=$cache/images/$kernel_series-$stamp
	if [[ ${BERTH_CGROUP2_REBUILD-} != 1 && -f $img/stamp ]]; then
		return
	fi
	# One build at a time: two would share the build directory.
	mkdir -p "$cache"
	exec 9>"$cache/build.lock"
	flock 9
	if [[ ${BERTH_CGROUP2_REBUILD-} != 1 && -f $img/stamp ]]; then
		exec 9>&-
		return
	fi
	log "building the VM image in $cache"
	local b=$cache/build
	unmount_under "$b"
	rm -rf "$b"
	mkdir -p "$b"
	trap 'unmount_under "'"$b"'"' EXIT
	local t0=$SECONDS
	build_image "$b"
	rm -rf "$cache/images/$kernel_series-"*
	mkdir -p "$img"
	mv "$b/vmlinuz" "$b/initrd.img" "$b/root.img" "$b/kernel.txt" "$img/"
	echo "$stamp" >"$img/stamp"
	unmount_under "$b"
	rm -rf "$b"
	trap - EXIT
	log "image built in $((SECONDS - t0)) s: $(cat "$img/kernel.txt")"
	exec 9>&-
}

main() {
	[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, and the image lives in $cache)"
	"$repo/scripts/deps.sh" cgroup2
	local pkgs=("$@")
	((${#pkgs[@]})) || pkgs=(engine)

	local t0=$SECONDS img
	ensure_image

	local tmp
	tmp=$(mktemp -d /tmp/berth-cgroup2.XXXXXX)
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" EXIT
	local work=$tmp/work names=() p name
	mkdir -p "$work/pkgs"
	for p in "${pkgs[@]}"; do
		p=${p#./}
		name=$(basename "$p")
		log "build $p.test"
		mkdir -p "$work/pkgs/$name"
		(cd "$repo" && go test -c -o "$work/pkgs/$name/$name.test" "./$p")
		[[ -d $repo/$p/testdata ]] && cp -a "$repo/$p/testdata" "$work/pkgs/$name/"
		names+=("$name")
	done
	cp "$here/init.sh" "$work/init.sh"
	chmod 755 "$work/init.sh"
	local args=${BERTH_CGROUP2_ARGS-}
	[[ -n ${BERTH_CGROUP2_RUN-} ]] && args+=" -test.run=$BERTH_CGROUP2_RUN"
	{
		printf 'PACKAGES=%q\n' "${names[*]}"
		printf 'TEST_TIMEOUT=%q\n' "${BERTH_CGROUP2_TIMEOUT:-20m}"
		printf 'TEST_ARGS=%q\n' "$args"
		printf 'SUBTREE=%q\n' "${BERTH_CGROUP2_SUBTREE-+cpu +memory +pids +cpuset}"
		printf 'LAYOUT=%q\n' "${BERTH_CGROUP2_LAYOUT:-systemd}"
	} >"$work/config"
	tar -C "$work" -cf "$tmp/run.tar" .

	mkdir -p "$out"
	log "tests built from $(git -C "$repo" log -1 --format=%h) with $(git -C "$repo" status --short -- "${pkgs[@]/#/./}" | wc -l) uncommitted changes in ${pkgs[*]}"
	local tvm=$SECONDS qcode try
	for try in 1 2 3; do
		log "boot $(cat "$img/kernel.txt") under qemu (TCG, ${BERTH_CGROUP2_CPUS:-2} cpus); test output follows"
		qcode=0
		boot "$img" "$tmp/run.tar" || qcode=$?
		# A kernel that dies before init.sh starts the tests is retried:
		# nothing was tested yet (see boot about TCG).
		if ((qcode == 124 || qcode == 137)) || grep -q '^berth-cgroup2: start ' "$out/test.log"; then
			break
		fi
		log "the VM died while booting (attempt $try); the end of its console:"
		tail -5 "$out/console.log" >&2 || true
	done

	summarize "$qcode" "$((SECONDS - tvm))" "$((SECONDS - t0))" "${names[@]}"
}

# boot runs the VM once, streaming its test output, and returns qemu's exit
# status (124 when the VM timeout stopped it). TCG runs single-threaded: with
# one host thread per vCPU, the kernel's live code patching (int3-based
# text_poke, e.g. when a static key flips as the first eBPF device filter
# is attached) now and then oopses ("Oops: int3" in sched_clock_cpu seen
# while booting 6.18), and on a 2-core host shared with others it was no
# faster.
boot() {
	local img=$1 tar=$2
	rm -f "$out/test.log" "$out/console.log"
	: >"$out/test.log"
	nice -n 10 timeout -k 10 "${BERTH_CGROUP2_VM_TIMEOUT:-40m}" qemu-system-x86_64 \
		-machine q35 -accel tcg,thread=single -cpu max \
		-smp "${BERTH_CGROUP2_CPUS:-2}" -m "${BERTH_CGROUP2_MEM:-2048}" \
		-nodefaults -no-user-config -display none -monitor none -nic none -no-reboot \
		-chardev "file,id=console,path=$out/console.log" -serial chardev:console \
		-chardev "file,id=results,path=$out/test.log" -serial chardev:results \
		-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
		-append "console=ttyS0 panic=-1 cgroup_no_v1=all loglevel=4" \
		-drive "file=$img/root.img,if=virtio,format=raw,snapshot=on" \
		-drive "file=$tar,if=virtio,format=raw,readonly=on" &
	local qpid=$! code=0
	# shellcheck disable=SC2064
	trap "kill $qpid 2>/dev/null; rm -rf '$tmp'" EXIT
	tail --pid="$qpid" -n +1 -f "$out/test.log" &
	local tpid=$!
	wait "$qpid" || code=$?
	wait "$tpid" || true
	trap "rm -rf '$tmp'" EXIT
	return "$code"
}

# summarize prints what passed, failed and skipped, and fails unless every
# package's tests passed and the VM finished.
summarize() {
	local qcode=$1 tvm=$2 ttotal=$3 name ok=1 line
	shift 3
	local tl=$out/test.log
	echo
	log "VM ran $tvm s, $ttotal s in all; logs in $out"
	if ((qcode == 124 || qcode == 137)); then
		log "the VM hit BERTH_CGROUP2_VM_TIMEOUT and was stopped"
		ok=0
	fi
	if ! grep -q '^berth-cgroup2: done' "$tl"; then
		log "the VM did not finish the run; the end of its console:"
		tail -30 "$out/console.log" >&2 || true
		ok=0
	fi
	for name in "$@"; do
		line=$(grep "^berth-cgroup2: result $name " "$tl" || echo "berth-cgroup2: $name did not run")
		if [[ $line != *" exit=0 "* ]]; then
			ok=0
		fi
		log "${line#berth-cgroup2: }"
	done
	local pass fail skip
	pass=$(grep -c '^--- PASS' "$tl" || true)
	fail=$(grep -c '^--- FAIL' "$tl" || true)
	skip=$(grep -c '^--- SKIP' "$tl" || true)
	grep -E '^ *--- (FAIL|SKIP)' "$tl" >&2 || true
	echo "cgroup2: $pass passed, $fail failed, $skip skipped"
	((ok && fail == 0))
}

main "$@"
