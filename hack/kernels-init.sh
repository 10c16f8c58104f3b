#!/bin/sh
# /init of the test VMs hack/kernels.sh boots (busybox sh, PID 1): mounts what the kernel tests need,
# loads the modules the cloud kernels build as modules, runs each test binary and prints its output on
# the serial console between ZT-BEGIN/ZT-END marker lines, then powers the VM off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/netns /sys/fs/bpf /dev/pts
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# Kernel messages would interleave with the tests' output on the one console.
dmesg -n 1

# Modules in dependency order, written by hack/kernels.sh from the package's modules.dep.
while read -r m; do
  [ -n "$m" ] || continue
  insmod "/lib/modules/$m" 2>/tmp/insmod.err || echo "ZT-WARN insmod $m: $(cat /tmp/insmod.err)"
done </modules.order

ip link set lo up
echo "ZT-KERNEL $(uname -r)"
echo "ZT-NPROC $(nproc)"

# A kernel test fails instead of skipping when it cannot run (ZONETOLL_REQUIRE_ALL is the name of
# this switch in the test kit's gate on main; the VM has root and BTF, nothing else the gate knows).
export ZONETOLL_REQUIRE_ALL=1
# /tests: one line per binary: name, directory (the package's, which go test would run in) and arguments.
while read -r name dir args; do
  [ -n "$name" ] || continue
  echo "ZT-BEGIN $name"
  start=$(date +%s)
  # shellcheck disable=SC2086 # args are split on purpose
  (cd "/work/$dir" && "/bin/$name.test" -test.v -test.count=1 $args) 2>&1
  rc=$?
  echo "ZT-END $name rc=$rc seconds=$(($(date +%s) - start))"
done </tests

echo "ZT-DONE"
sync
poweroff -f
