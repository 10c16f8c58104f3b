#!/usr/bin/env bash
# Regenerates every generated file (go generate in every module). With --check, fails when that changed
# any file, so what is committed is always what the generators produce.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t mods < <(hack/modules.sh)
snapshot() { git ls-files -co --exclude-standard | sort | xargs -r sha256sum; }
[ "${1:-}" = --check ] && before=$(snapshot)
for m in "${mods[@]}"; do
  (cd "$m" && go generate ./...)
done
if [ "${1:-}" = --check ]; then
  after=$(snapshot)
  if [ "$before" != "$after" ]; then
    echo "make generate changed files; commit the regenerated output:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
  fi
fi
