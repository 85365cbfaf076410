#!/usr/bin/env bash
# deploy.sh: ps:scale web=1 → web=20, timed from the scale until all 20
# instances answer through the real router (real containers, a static Go web
# app, a throwaway Postgres). Goal: under 2 s. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
runs=${DEPLOY_BENCH_RUNS:-5}
out=$(go test ./deploy -run '^$' -bench '^BenchmarkScaleWeb1To20$' -benchtime "${runs}x" -count 1 -v 2>&1) || {
	echo "$out" >&2
	exit 1
}
echo "$out" | grep -E "N=${runs} run [0-9]+:" | sed 's/^ *bench_test.go:[0-9]*: /  /'
metric() { echo "$out" | awk -v m="$1" '/^BenchmarkScaleWeb1To20/ {for (i = 1; i < NF; i++) if ($(i+1) == m) print $i}'; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "deploy: scale web=1 -> web=20, all serving through the router: median $(metric s/scale-median) s, min $(metric s/scale-min) s, mean $(metric s/scale) s over ${runs} runs (goal < 2 s; load average ${load})"
