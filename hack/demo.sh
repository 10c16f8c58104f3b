#!/usr/bin/env bash
# make demo: zonetoll on a local three-zone cluster (docs/demo.md). Installs what is missing, then runs
# tools/cmd/demo, which builds everything it needs, prints progress lines while it works, prints the
# summary, and removes everything it made on exit or Ctrl-C.
# Extra arguments go to the demo (also through ZONETOLL_DEMO_ARGS, e.g. ZONETOLL_DEMO_ARGS=--hold make demo).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo: the demo creates network namespaces and attaches BPF programs, so it runs as root: sudo make demo" >&2
  exit 1
fi
for tool in go ip; do
  if ! command -v "$tool" >/dev/null; then
    echo "make demo: $tool not found in PATH (Go 1.26 from go.dev; ip from Debian's iproute2)" >&2
    [ "$tool" = go ] && exit 1
  fi
done

echo "[make demo] checking the Debian packages (hack/setup.sh installs any that are missing)"
hack/setup.sh

echo "[make demo] compiling the demo (go run ./cmd/demo in tools/; the first time downloads and compiles its modules)"
cd tools
# shellcheck disable=SC2086 # ZONETOLL_DEMO_ARGS is a list of arguments
exec go run ./cmd/demo ${ZONETOLL_DEMO_ARGS:-} "$@"
