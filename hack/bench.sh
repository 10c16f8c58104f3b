#!/usr/bin/env bash
# Runs every benchmark of every module once (BENCH selects, COUNT repeats). Figures and how to read them
# are in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t mods < <(hack/modules.sh)
for m in "${mods[@]}"; do
  (cd "$m" && go test -run '^$' -bench "${BENCH:-.}" -benchmem -count "${COUNT:-1}" ./...)
done
