#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: formatting, vet, staticcheck, generated files,
# the test cluster binaries, then `go test -race` of every module, then the kernel tests again inside
# VMs of older kernels (hack/kernels.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t mods < <(hack/modules.sh)

# Each step's start is stamped with the seconds since the suite began, so a slow step shows in CI's log.
began=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - began))" "$*"; }

step "gofmt"
unformatted=$(git ls-files -co --exclude-standard '*.go' | grep -v '_bpfe[lb]\.go$' | xargs -r gofmt -l)
if [ -n "$unformatted" ]; then
  echo "gofmt -l lists files that are not formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi

step "dependencies in step across modules"
hack/deps.sh

step "no command links package testing"
hack/commands.sh

step "generated files are up to date"
hack/generate.sh --check

step "go vet and staticcheck"
staticcheck=$(hack/tool.sh staticcheck)
for m in "${mods[@]}"; do
  (cd "$m" && go vet ./... && "$staticcheck" ./...)
done

step "test cluster binaries (kube-apiserver, etcd, kube-controller-manager, kube-proxy), upstream prometheus/promtool and vmagent, built once and cached"
(cd testkit && go run ./cmd/testcluster build && go run ./cmd/testcluster build --kubernetes-version oldest &&
  go run ./cmd/testcluster build --routing && go run ./cmd/testcluster build --routing --kubernetes-version oldest &&
  go run ./cmd/prometheus build && go run ./cmd/vmagent build)

# A test that needs root, a BTF kernel, the test cluster, Prometheus or Chromium fails here when that is
# missing instead of skipping (testkit/gate); set 0 to allow skips.
export ZONETOLL_REQUIRE_ALL="${ZONETOLL_REQUIRE_ALL:-1}"
status=0
# One go test over every module's packages (the workspace lets one command name them all), so go
# test's parallel slots stay full across modules: run module by module, the slowest package of each
# (flowserver's cluster tests, the demo's end-to-end) ran with the other slot idle.
patterns=$(hack/modules.sh --patterns) # an assignment, so a wrong module count stops the script
mapfile -t pkgs <<<"$patterns"
step "go test -race of every module, one run (${pkgs[*]})"
go test -race -timeout 30m -count=1 "${pkgs[@]}" || status=1

# The end-to-end run against the oldest Kubernetes beside its other two, as go test's two slots would
# run them; its output follows theirs.
step "the oldest supported Kubernetes (testcluster.OldestKubernetesVersion): end-to-end and cluster-kit tests"
export ZONETOLL_TESTCLUSTER_KUBERNETES_VERSION=oldest
oldest_log=$(mktemp)
(cd tools && go test -race -timeout 30m -count=1 -run '^TestEndToEnd$' ./demo/) >"$oldest_log" 2>&1 &
oldest_e2e=$!
(cd testkit && go test -race -count=1 ./testcluster/) || status=1
(cd services/zonelabeler && go test -race -count=1 -run '^TestPodTopologyLabelsAdmission$' ./internal/app/) || status=1
wait "$oldest_e2e" || status=1
cat "$oldest_log" && rm -f "$oldest_log"
unset ZONETOLL_TESTCLUSTER_KUBERNETES_VERSION

# The kernel tests only: the per-packet and grace-period figures (the runtime binary) are a benchmark,
# which `make test-kernels` runs and the gate has no use for.
step "kernel tests in qemu VMs of Debian's 5.10, 6.1 and 6.12 kernels (docs/kernels.md)"
ZONETOLL_KERNEL_TESTS=${ZONETOLL_KERNEL_TESTS:-counter,kerneltest,flowagent,tcfollow} hack/kernels.sh || status=1
step "done (status $status)"
exit $status
