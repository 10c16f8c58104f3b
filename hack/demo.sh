#!/usr/bin/env bash
# The local three-zone demo. It is built by issue #10 (it needs the services of issues #4-#9 first).
set -euo pipefail
cat >&2 <<'MSG'
make demo: the local three-zone demo is not built yet.
It arrives with issue #10, on top of the test cluster, zonelabeler, flowagent, flowserver and costcalc.
What works today: `make test` (the whole suite) and `make build` (binaries in bin/).
MSG
exit 1
