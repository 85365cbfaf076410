#!/usr/bin/env bash
# router.sh: berth's router against nginx (Debian's nginx-light), both proxying
# to the same minimal Go backend (12-byte response) in a berth container on a
# bridge of its own, keep-alive, measured with wrk in the same run, with
# access logging off in both and on in both. Reports req/s and p99 latency as
# ratios to nginx.
#
# Environment: DURATION (default 30s), ROUNDS (default 1; rounds alternate
# nginx and berth), CONNS (64), THREADS (2), MODES ("off on").
# nginx and the router listen on 127.0.0.1 only, the backend on its
# container's address; everything started is stopped on exit, and the
# container program (bench/router/container) removes its container and bridge.
# Needs root (a real container).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-30s}
ROUNDS=${ROUNDS:-1}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
MODES=${MODES:-off on}

if [[ $(id -u) -ne 0 ]]; then
	echo "router bench: needs root (the backend runs in a berth container)" >&2
	exit 1
fi
for tool in nginx wrk go; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "router bench: $tool not found; run: scripts/deps.sh bench" >&2
		exit 1
	fi
done

work=$(mktemp -d /tmp/berth-router-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# free_port prints a loopback TCP port nobody listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		if ! ss -Hltn "sport = :$p" | grep -q .; then
			echo "$p"
			return
		fi
	done
}

# wait_port PORT [HOST]: waits until HOST (default 127.0.0.1) accepts on PORT.
wait_port() {
	local host=${2:-127.0.0.1}
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	echo "router bench: nothing answers on $host port $1" >&2
	exit 1
}

echo "building backend, its container and router"
# Static: the container holds nothing but the backend.
CGO_ENABLED=0 go build -o "$work/backend" ./bench/router/backend
go build -o "$work/container" ./bench/router/container
go build -o "$work/proxy" ./bench/router/proxy

# The container program prints the backend's IP:port once it runs.
"$work/container" -backend "$work/backend" >"$work/backend.addr" &
pids+=($!)
for _ in $(seq 200); do
	[[ -s $work/backend.addr ]] && break
	if ! kill -0 "${pids[-1]}" 2>/dev/null; then
		echo "router bench: the backend container did not start" >&2
		exit 1
	fi
	sleep 0.05
done
read -r be_addr <"$work/backend.addr" || true
if [[ -z $be_addr ]]; then
	echo "router bench: the backend container printed no address" >&2
	exit 1
fi
wait_port "${be_addr##*:}" "${be_addr%:*}"

# start_nginx MODE PORT: nginx with its own config and prefix in $work.
start_nginx() {
	local mode=$1 port=$2 dir="$work/nginx-$1" log="access_log off;"
	mkdir -p "$dir"
	if [[ $mode == on ]]; then
		# Same batching as berth's access log: flushed every 32 KiB or 200 ms.
		log="access_log $dir/access.log combined buffer=32k flush=200ms;"
	fi
	cat >"$dir/nginx.conf" <<EOF
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log;
daemon off;
events { worker_connections 4096; }
http {
	$log
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	upstream be { server $be_addr; keepalive 256; }
	server {
		listen 127.0.0.1:$port;
		location / {
			proxy_pass http://be;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
EOF
	nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" &
	pids+=($!)
	wait_port "$port"
}

start_berth() {
	local mode=$1 port=$2 args=()
	if [[ $mode == on ]]; then
		args=(-access-log "$work/berth-$mode.log")
	fi
	"$work/proxy" -listen "127.0.0.1:$port" -backends "$be_addr" "${args[@]}" &
	pids+=($!)
	wait_port "$port"
}

# measure PORT: writes "REQS P99_MS NON2XX" to $work/measured. wrk runs as a
# job of this shell, in pids, so that a SIGTERM's cleanup stops it too.
measure() {
	local out
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$1/" >"$work/wrk.out" &
	pids+=($!)
	wait "${pids[-1]}"
	unset 'pids[-1]'
	out=$(<"$work/wrk.out")
	awk '
		/Requests\/sec:/ { rps = $2 }
		/^ +99%/ {
			v = $2
			if (v ~ /us$/) { sub(/us$/, "", v); p99 = v / 1000 }
			else if (v ~ /ms$/) { sub(/ms$/, "", v); p99 = v }
			else if (v ~ /s$/) { sub(/s$/, "", v); p99 = v * 1000 }
		}
		/Non-2xx or 3xx responses:/ { bad = $5 }
		/Socket errors:/ { errs = $0 }
		END { printf "%s %s %d\n", rps, p99, bad + 0 }
	' <<<"$out" >"$work/measured"
	if grep -q "Socket errors" <<<"$out"; then
		grep "Socket errors" <<<"$out" >&2
	fi
}

summary=()
for mode in $MODES; do
	ng_port=$(free_port)
	start_nginx "$mode" "$ng_port"
	br_port=$(free_port)
	start_berth "$mode" "$br_port"
	# Warm both up (connection pools, page cache, CPU frequency).
	wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$ng_port/" >/dev/null
	wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$br_port/" >/dev/null
	ng_rps=0 ng_p99=0 br_rps=0 br_p99=0
	for round in $(seq "$ROUNDS"); do
		measure "$ng_port"
		read -r r p bad <"$work/measured"
		echo "access log $mode, round $round: nginx $r req/s, p99 $p ms, non-2xx $bad"
		ng_rps=$(awk -v a="$ng_rps" -v b="$r" 'BEGIN { print a + b }')
		ng_p99=$(awk -v a="$ng_p99" -v b="$p" 'BEGIN { print a + b }')
		measure "$br_port"
		read -r r p bad <"$work/measured"
		echo "access log $mode, round $round: berth $r req/s, p99 $p ms, non-2xx $bad"
		if ((bad > 0)); then
			echo "router bench: berth answered $bad requests with non-2xx" >&2
		fi
		br_rps=$(awk -v a="$br_rps" -v b="$r" 'BEGIN { print a + b }')
		br_p99=$(awk -v a="$br_p99" -v b="$p" 'BEGIN { print a + b }')
	done
	line=$(awk -v nr="$ng_rps" -v np="$ng_p99" -v br="$br_rps" -v bp="$br_p99" -v n="$ROUNDS" -v m="$mode" 'BEGIN {
		printf "access log %-3s  nginx %8.0f req/s p99 %6.2f ms | berth %8.0f req/s p99 %6.2f ms | req/s ratio %.2fx  p99 ratio %.2fx (goal: >= 1.00x, <= 1.00x)",
			m, nr / n, np / n, br / n, bp / n, br / nr, bp / np
	}')
	summary+=("$line")
	# Stop this mode's servers before the next mode.
	kill "${pids[-1]}" "${pids[-2]}"
	wait "${pids[-1]}" "${pids[-2]}" 2>/dev/null || true
	unset 'pids[-1]' 'pids[-1]'
	rm -f "$work"/berth-*.log "$work"/nginx-*/access.log
done

echo
echo "router vs nginx $(nginx -v 2>&1 | sed 's/.*\///'), wrk -t$THREADS -c$CONNS -d$DURATION --latency, backend: container on a bridge (Go net/http 12 bytes at $be_addr), $(nproc) cores shared"
printf '%s\n' "${summary[@]}"
