#!/usr/bin/env bash
# The inner loop (make check): formatting, vet and every test that needs neither root nor the test
# cluster, in every module. Tests that need root, a BTF kernel, the test cluster, Prometheus or Chromium
# skip under -short through testkit/gate; `make test` runs them all. Under 2 minutes with warm caches.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mapfile -t mods < <(hack/modules.sh)

unformatted=$(git ls-files -co --exclude-standard '*.go' | grep -v '_bpfe[lb]\.go$' | xargs -r gofmt -l)
if [ -n "$unformatted" ]; then
  echo "gofmt -l lists files that are not formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi
status=0
for m in "${mods[@]}"; do
  printf '==> %s\n' "${m#"$root"/}"
  (cd "$m" && go vet ./... && go test -short -count=1 ./...) || status=1
done
exit $status
