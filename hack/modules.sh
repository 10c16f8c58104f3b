#!/usr/bin/env bash
# Prints the directory of every module in go.work, one a line, and fails when their number is not the
# expected one: a module added to go.work but not to the count (or the other way round) would otherwise
# silently escape `make test`. With --patterns it prints each module's package pattern relative to the
# repository (./bpf/... ./services/costcalc/... …) instead, for one go command over every module.
set -euo pipefail
cd "$(dirname "$0")/.."
expected=9
mapfile -t mods < <(go list -m -f '{{.Dir}}')
if [ "${#mods[@]}" -ne "$expected" ]; then
  echo "hack/modules.sh: go.work lists ${#mods[@]} modules, expected $expected: update the count here" >&2
  printf '  %s\n' "${mods[@]}" >&2
  exit 1
fi
if [ "${1:-}" = --patterns ]; then
  for m in "${mods[@]}"; do printf './%s/...\n' "${m#"$PWD"/}"; done
else
  printf '%s\n' "${mods[@]}"
fi
