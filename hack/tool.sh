#!/usr/bin/env bash
# Installs a pinned developer tool from the Go module proxy into bin/tools (once) and prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A pkgs=(
  [staticcheck]=honnef.co/go/tools/cmd/staticcheck@v0.8.2
)
name=$1
pkg=${pkgs[$name]:?"hack/tool.sh: unknown tool $name"}
dir=$PWD/bin/tools/${pkg##*@}
if [ ! -x "$dir/$name" ]; then
  echo "installing $pkg" >&2
  GOBIN=$dir GOWORK=off GOFLAGS=-mod=mod go install "$pkg"
fi
echo "$dir/$name"
