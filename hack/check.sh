#!/usr/bin/env bash
# The inner loop (make check): formatting, vet and every test that needs neither root nor the test
# cluster, in every module. Tests that need root, a BTF kernel, the test cluster, Prometheus or Chromium
# skip under -short through testkit/gate; `make test` runs them all. Under 2 minutes with warm caches.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(git ls-files -co --exclude-standard '*.go' | grep -v '_bpfe[lb]\.go$' | xargs -r gofmt -l)
if [ -n "$unformatted" ]; then
  echo "gofmt -l lists files that are not formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi
# One go vet and one go test over every module's packages (the workspace lets one command name them
# all), so the packages of all modules share go's parallel slots.
patterns=$(hack/modules.sh --patterns) # an assignment, so a wrong module count stops the script
mapfile -t pkgs <<<"$patterns"
status=0
hack/commands.sh || status=1
go vet "${pkgs[@]}" || status=1
go test -short -count=1 "${pkgs[@]}" || status=1
exit $status
