#!/usr/bin/env bash
# Checks that the modules agree on the versions of the dependencies we keep in step, and that
# client-go, api and apimachinery stay on the minor of the test cluster's default release (Kubernetes
# 1.37, testkit/testcluster.KubernetesVersion). `go mod tidy` adds a missing module at its newest
# version, which once moved client-go to another minor unnoticed. Move them with
# `go get k8s.io/client-go@v0.X.Y k8s.io/api@v0.X.Y k8s.io/apimachinery@v0.X.Y` and `go mod tidy` in
# every module, never `go get -u` (it asks for a kube-openapi that needs a newer Go).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t mods < <(hack/modules.sh)
status=0
# The minor of the test cluster's default release, e.g. 37 for v1.37.2.
k8s_minor=$(sed -n 's/^const KubernetesVersion = "v1\.\([0-9]*\)\..*/\1/p' testkit/testcluster/build.go)
if [ -z "$k8s_minor" ]; then
  echo "hack/deps.sh: cannot read KubernetesVersion from testkit/testcluster/build.go" >&2
  exit 1
fi
k8s_seen=""
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
  if [[ $dep == k8s.io/* && -n $seen && $seen != "v0.${k8s_minor}."* ]]; then
    echo "hack/deps.sh: $dep is $seen; it must stay on v0.${k8s_minor}.x (Kubernetes 1.${k8s_minor}, the test cluster's default release)" >&2
    status=1
  fi
  # The three k8s.io modules are one release: the same version, not only the same minor.
  if [[ $dep == k8s.io/* && -n $seen ]]; then
    if [ -z "$k8s_seen" ]; then
      k8s_seen=$seen
    elif [ "$seen" != "$k8s_seen" ]; then
      echo "hack/deps.sh: $dep is $seen but another k8s.io module is $k8s_seen: keep client-go, api and apimachinery at one release" >&2
      status=1
    fi
  fi
done
exit $status
