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
missing_go_tools=()
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

# A Go toolchain as new as go.mod asks for. Debian's own golang-go is too
# old (bookworm has 1.19), so a missing one is the Go project's release,
# fetched as the module golang.org/toolchain from the Go module proxy (what
# the go command itself does with GOTOOLCHAIN=auto) into /usr/local/go.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
want_go=$(awk '$1 == "go" {print $2; exit}' "$root/go.mod")
go_version() { (cd / && GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null | sed 's/^go//'); }
new_enough() { [[ $(printf '%s\n%s\n' "$want_go" "$1" | sort -V | head -1) == "$want_go" ]]; }
have_go=
for g in /usr/local/go/bin/go "$(command -v go || true)"; do
	[[ -x $g ]] || continue
	v=$(go_version "$g")
	if [[ -n $v ]] && new_enough "$v"; then
		have_go=$g
		break
	fi
	echo "found Go ${v:-of unknown version} at $g; berth needs $want_go" >&2
done
if [[ -z $have_go ]]; then
	if [[ -e /usr/local/go ]]; then
		echo "/usr/local/go holds an older Go; move it away (or install Go $want_go there) and run this again" >&2
		exit 1
	fi
	if [[ $(id -u) -ne 0 ]]; then
		echo "berth needs Go $want_go in /usr/local/go; run as root to install it" >&2
		exit 1
	fi
	for p in curl unzip ca-certificates; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_go_tools+=("$p")
	done
	if ((${#missing_go_tools[@]})); then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_go_tools[@]}" >/dev/null
	fi
	case $(uname -m) in
	x86_64) arch=amd64 ;;
	aarch64) arch=arm64 ;;
	*) echo "no Go toolchain for $(uname -m)" >&2; exit 1 ;;
	esac
	proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%[,|]*}
	[[ $proxy == http* ]] || proxy=https://proxy.golang.org
	url="$proxy/golang.org/toolchain/@v/v0.0.1-go$want_go.linux-$arch.zip"
	echo "installing Go $want_go from $url"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"
	unzip -q "$tmp/go.zip" -d "$tmp"
	# The module's files sit under golang.org/toolchain@VERSION/.
	src=$(echo "$tmp"/golang.org/toolchain@*)
	chmod -R a+rX "$src"
	find "$src/bin" "$src/pkg/tool" -type f -exec chmod 755 {} +
	mv "$src" /usr/local/go
	echo "Go $(go_version /usr/local/go/bin/go) installed in /usr/local/go"
fi
