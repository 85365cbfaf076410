#!/usr/bin/env bash
# deps.sh installs the Debian packages berth needs that are missing.
# Usage: scripts/deps.sh run|test|bench|cgroup2
# It asks apt only when something is missing, so a second run is instant.
set -euo pipefail

run_pkgs=(gcc libc6-dev postgresql git openssh-client busybox-static debootstrap iproute2 iptables ca-certificates btrfs-progs e2fsprogs)
test_pkgs=("${run_pkgs[@]}" chromium)
bench_pkgs=("${test_pkgs[@]}" runc crun nginx-light wrk hyperfine)
# cgroup2: test/cgroup2/run.sh, the engine tests in a qemu VM on a pure cgroup v2 kernel.
cgroup2_pkgs=(qemu-system-x86 debootstrap e2fsprogs busybox-static xz-utils)

case "${1:-run}" in
run) want=("${run_pkgs[@]}") ;;
test) want=("${test_pkgs[@]}") ;;
bench) want=("${bench_pkgs[@]}") ;;
cgroup2) want=("${cgroup2_pkgs[@]}") ;;
*) echo "usage: $0 run|test|bench|cgroup2" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "berth needs these Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1 && [[ ! -x /usr/local/go/bin/go ]]; then
	echo "no Go toolchain found; installing Debian's golang"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
fi
