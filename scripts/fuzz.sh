#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target for a short while (FUZZTIME, default 20s each).
#
# Go 1.26's fuzz coordinator may fail a target with a bare "context deadline
# exceeded" at the end of -fuzztime, with no failing input (golang/go#75804,
# fixed in Go 1.27). A failure that wrote no new input to testdata/fuzz is
# reported as that and does not fail the run; any failure that did write
# one does.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-20s}
failed=()
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "== $pkg $f"
		corpus=$dir/testdata/fuzz/$f
		before=$(ls "$corpus" 2>/dev/null | sort || true)
		out=$(mktemp)
		if go test -run='^$' -fuzz="^$f\$" -fuzztime="$t" "$pkg" 2>&1 | tee "$out"; then
			rm -f "$out"
			continue
		fi
		after=$(ls "$corpus" 2>/dev/null | sort || true)
		if [[ $before == "$after" ]] && grep -q "context deadline exceeded" "$out"; then
			echo "fuzz: $f: no failing input written; Go's fuzz coordinator stopped on its own deadline (golang/go#75804), not a failure"
		else
			failed+=("$pkg $f")
		fi
		rm -f "$out"
	done
done
if ((${#failed[@]})); then
	printf 'fuzz: failing input found: %s\n' "${failed[@]}" >&2
	exit 1
fi
