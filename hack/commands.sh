#!/usr/bin/env bash
# Checks that no command of the repository (every main package of every module: the services, the
# tools, the test kit's commands, bpfbench) links package testing: test helpers belong in _test.go
# files and the test kit's gate.TB, and a dependency that imports testing outside its tests (as
# containerd's estargz did before v0.19, through go-containerregistry) shows up here by name.
set -euo pipefail
cd "$(dirname "$0")/.."
patterns=$(hack/modules.sh --patterns) # an assignment, so a wrong module count stops the script
mapfile -t pkgs <<<"$patterns"
mains=$(go list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' "${pkgs[@]}")
status=0
while read -r cmd; do
  [ -n "$cmd" ] || continue
  # The packages of cmd's build that import testing themselves.
  importers=$(go list -deps -f '{{$p := .ImportPath}}{{range .Imports}}{{if eq . "testing"}}{{$p}}{{"\n"}}{{end}}{{end}}' "$cmd")
  if [ -n "$importers" ]; then
    echo "hack/commands.sh: $cmd links package testing, imported by: ${importers//$'\n'/ }" >&2
    status=1
  fi
done <<<"$mains"
exit $status
