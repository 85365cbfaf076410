#!/usr/bin/env bash
# engine.sh: container start benchmark of berth's engine against runc and
# crun from Debian, on the same busybox rootfs, with and without a network
# namespace. N sequential /bin/true containers per runtime (N=100 default).
#
#   start = create + start, until the app's program was executed
#   full  = create, start, wait for exit, delete
#
# The runtimes take turns container by container (see enginebench compare).
# berth runs in-process (as the daemon does); runc and crun are run as the
# binaries containerd or podman would exec. berth always gives a container
# its own network namespace: "none" is a netns with lo only (like the OCI
# bundle's network namespace), "bridge" adds the veth on a bridge with an
# IP. Everything this script changes on the host is undone on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${N:-100}

if [[ $(id -u) -ne 0 ]]; then
	echo "engine.sh: needs root (real containers)" >&2
	exit 1
fi
for bin in busybox runc crun; do
	command -v "$bin" >/dev/null || { echo "engine.sh: $bin missing (scripts/deps.sh bench installs it)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/berth-enginebench-XXXXXX)
chmod 755 "$work"
hugetlb_mounted=0
hugetlb_dir_made=0
cleanup() {
	set +e
	for rt in runc crun; do
		for id in $("$rt" list -q 2>/dev/null | grep '^bench-'); do "$rt" delete -f "$id" >/dev/null 2>&1; done
	done
	if ((hugetlb_mounted)); then
		for _ in 1 2 3 4 5; do umount /sys/fs/cgroup/hugetlb 2>/dev/null && break; sleep 0.2; done
	fi
	if ((hugetlb_dir_made)); then
		rmdir /sys/fs/cgroup/hugetlb
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

go build -o "$work/enginebench" ./bench/engine

# The rootfs: Debian's busybox-static with applet symlinks.
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for app in $("$rootfs/bin/busybox" --list); do
	[[ $app == busybox ]] || ln -sf busybox "$rootfs/bin/$app"
done

# crun refuses a hybrid cgroup host whose v2 hierarchy still holds a
# controller (here hugetlb); binding it to a v1 hierarchy fixes that.
if [[ -f /sys/fs/cgroup/unified/cgroup.controllers ]] && grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers &&
	! mountpoint -q /sys/fs/cgroup/hugetlb; then
	if [[ ! -d /sys/fs/cgroup/hugetlb ]]; then
		mkdir /sys/fs/cgroup/hugetlb
		hugetlb_dir_made=1
	fi
	if mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb; then
		hugetlb_mounted=1
	else
		echo "engine.sh: cannot bind hugetlb to cgroup v1; crun will refuse this hybrid host" >&2
	fi
fi

# Two OCI bundles over the same rootfs: with and without a network namespace.
for ns in with without; do
	b=$work/bundle-$ns
	mkdir -p "$b"
	(cd "$b" && runc spec)
	netns=true
	[[ $ns == without ]] && netns=false
	"$work/enginebench" ocispec -bundle "$b" -rootfs "$rootfs" -netns=$netns
done

# A bridge subnet that does not collide with the host's routes.
subnet=""
for third in $(seq 200 250); do
	cand=10.231.$third.0/24
	if ! ip -4 route show | grep -q "^10\.231\.$third\."; then subnet=$cand; break; fi
done
bridge=bbench$$

results=$work/results
# One process runs every runtime, interleaved round by round, so that load
# from other work on a shared host falls on all of them alike.
"$work/enginebench" compare -root "$work/containers" -rootfs "$rootfs" -n "$N" \
	-bundles "$work/bundle-with,$work/bundle-without" -bridge "$bridge" -subnet "$subnet" | tee "$results"

# Ratios: peer time / berth time (above 1.0 means berth is faster).
awk '
function val(line, key,   i, n, f, kv) {
	n = split(line, f, " ")
	for (i = 1; i <= n; i++) { split(f[i], kv, "="); if (kv[1] == key) return kv[2] }
	return 0
}
{ name[$1] = $0 }
END {
	printf "\n%-26s %10s %10s %12s\n", "container start (median)", "start ms", "full ms", "full cpu ms"
	for (k in name) printf "%-26s %10s %10s %12s\n", k, val(name[k], "start_ms"), val(name[k], "full_ms"), val(name[k], "full_cpu_ms")
	b = name["berth-none"]; bb = name["berth-bridge"]
	printf "\nberth setup parts (median ms): overlay %s, veth %s (bridge run), cgroup %s\n", val(b, "overlay_ms"), val(bb, "veth_ms"), val(b, "cgroup_ms")
	printf "\nratios (peer / berth; > 1.0 = berth faster)\n"
	split("runc crun", rts, " ")
	for (i = 1; i <= 2; i++) {
		rt = rts[i]
		w = name[rt "-netns-with"]; wo = name[rt "-netns-without"]
		printf "  %s netns vs berth none:   start %.2fx  full %.2fx\n", rt, val(w, "start_ms") / val(b, "start_ms"), val(w, "full_ms") / val(b, "full_ms")
		printf "  %s netns vs berth bridge: start %.2fx  full %.2fx\n", rt, val(w, "start_ms") / val(bb, "start_ms"), val(w, "full_ms") / val(bb, "full_ms")
		printf "  %s no netns vs berth none: start %.2fx  full %.2fx\n", rt, val(wo, "start_ms") / val(b, "start_ms"), val(wo, "full_ms") / val(b, "full_ms")
		printf "  %s netns vs berth none, CPU time of a full run: %.2fx\n", rt, val(w, "full_cpu_ms") / val(b, "full_cpu_ms")
	}
}' "$results"
