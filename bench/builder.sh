#!/usr/bin/env bash
# builder.sh: cold build and no-change rebuild of a 5-step Dockerfile app
# (RUN steps in real engine containers). Goal: no-change rebuild < 300 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
	echo "bench/builder.sh needs root (containers, mounts)" >&2
	exit 1
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/builder-bench" ./bench/builder
"$bin/builder-bench" "$@"
