#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, only those missing; safe to run again.
set -euo pipefail
packages=(
  clang-14 llvm-14 libbpf-dev bpftool # BPF program build (make generate)
  iproute2                            # network namespaces and veths in kernel tests
  nftables                            # nft, which kube-proxy's nftables mode runs (testcluster routing tests, the demo)
  prometheus                          # promtool check metrics/rules, and the Prometheus costcalc's tests scrape with
  chromium                            # headless rendering test of costcalc's HTML report
  qemu-system-x86 busybox-static kmod # kernel matrix in VMs (make test-kernels, hack/kernels.sh)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "hack/setup.sh: missing Debian packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The prometheus package would start a system service; the tests start their own on loopback.
# A policy-rc.d that denies starts keeps packages from starting daemons during this install only.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
