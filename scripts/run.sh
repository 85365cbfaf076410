#!/usr/bin/env bash
# run.sh starts berth on the embedded defaults for a newcomer (`make run`):
# the daemon in the foreground of this terminal, the invoking user's SSH key
# registered as the first admin, and the lines to paste printed.
# Environment: BERTH_DATA_DIR, BERTH_SSH_ADDR, … as in the README.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "berth runs containers and needs root: sudo make run" >&2
	exit 1
fi

bin=$PWD/bin/berth
data=${BERTH_DATA_DIR:-/var/lib/berth}
export BERTH_DATA_DIR=$data
mkdir -p "$data"
log=$data/berth.log

# The human behind sudo owns the SSH key we register.
user=${SUDO_USER:-${USER:-}}
[[ -z $user || $user == root ]] && user=admin
home=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)

echo "starting berth serve (log: $log)"
"$bin" serve >>"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' INT TERM EXIT

for _ in $(seq 1 300); do
	if "$bin" version >/dev/null 2>&1; then break; fi
	if ! kill -0 $pid 2>/dev/null; then
		echo "berth serve exited; the end of its log:" >&2
		tail -n 30 "$log" >&2
		exit 1
	fi
	sleep 0.2
done

# Base images: busybox (tiny, for Dockerfile apps FROM busybox) and the
# default Debian base the buildpacks build on (debootstrap, once: ~1 min).
images=$("$bin" images:list 2>/dev/null || true)
if ! grep -q '^busybox:latest' <<<"$images"; then
	"$bin" base:create busybox
fi
if ! grep -q '^debian:bookworm' <<<"$images"; then
	echo "preparing the Debian base image for buildpack apps (once; about a minute)…"
	"$bin" base:create debian >"$data/debian-base.log" 2>&1 || echo "could not create the Debian base (see $data/debian-base.log); Dockerfile apps still work"
fi

if ! "$bin" users:list 2>/dev/null | awk '{print $1}' | grep -qx "$user"; then
	"$bin" users:add "$user" --admin
fi
key=""
for k in "$home"/.ssh/id_ed25519.pub "$home"/.ssh/id_ecdsa.pub "$home"/.ssh/id_rsa.pub; do
	[[ -f $k ]] && { key=$k; break; }
done
if [[ -n $key ]]; then
	"$bin" keys:add "$user" <"$key" 2>/dev/null || true
	echo "registered $key for $user"
else
	echo "no SSH key in $home/.ssh; create one with ssh-keygen -t ed25519, then: sudo bin/berth keys:add $user < ~/.ssh/id_ed25519.pub"
fi

port=${BERTH_SSH_ADDR:-:2222}
port=${port##*:}
domain=${BERTH_DOMAIN:-localhost}
cat <<MSG

berth is running. In your app's git repository:

    git remote add berth ssh://berth@localhost:$port/myapp
    git push berth main

then open http://myapp.$domain/ — manage it with:

    ssh -p $port berth@localhost help        (or: sudo bin/berth help)

Dashboard: http://localhost:8080/ — set a password with: sudo bin/berth users:passwd $user
Stop with Ctrl-C (apps keep running; they come back under the next berth serve).
MSG
wait $pid
