#!/usr/bin/env bash
# run.sh runs every benchmark script in bench/ (each prints its own report).
set -euo pipefail
cd "$(dirname "$0")/.."
for b in bench/*.sh; do
	[[ $(basename "$b") == run.sh ]] && continue
	echo "== $b"
	"$b"
done
