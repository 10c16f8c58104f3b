#!/usr/bin/env bash
# Checks that the modules agree on the versions of the dependencies we keep in step, and that
# client-go stays on the minor of the test cluster (Kubernetes 1.33). `go mod tidy` adds a missing
# module at its newest version, which once moved client-go to another minor unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t mods < <(hack/modules.sh)
status=0
for dep in k8s.io/client-go k8s.io/api k8s.io/apimachinery github.com/prometheus/client_golang \
  github.com/urfave/cli/v2 github.com/kelseyhightower/envconfig github.com/cilium/ebpf; do
  seen=""
  for m in "${mods[@]}"; do
    v=$(cd "$m" && GOWORK=off go list -m -f '{{.Version}}' "$dep" 2>/dev/null) || continue
    [ -n "$v" ] || continue
    if [ -z "$seen" ]; then
      seen=$v
    elif [ "$v" != "$seen" ]; then
      echo "hack/deps.sh: $dep is $v in ${m#"$PWD"/} but $seen elsewhere: keep it in step" >&2
      status=1
    fi
  done
  if [[ $dep == k8s.io/* && -n $seen && $seen != v0.33.* ]]; then
    echo "hack/deps.sh: $dep is $seen; it must stay on v0.33.x (Kubernetes 1.33, the test cluster's minor)" >&2
    status=1
  fi
done
exit $status
