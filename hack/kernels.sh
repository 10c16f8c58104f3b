#!/usr/bin/env bash
# Runs the bpf and flowagent kernel tests inside real Debian kernels booted in qemu, and prints a
# result table. See docs/kernels.md.
#
#   hack/kernels.sh [KERNEL...]     KERNEL: 5.10 (bullseye), 6.1 (bookworm), 6.12 (trixie), host
#                                   (the running kernel, no VM); default: 5.10 6.1 6.12
#
# Each kernel is Debian's cloud-amd64 image of that suite, resolved through the suite's
# linux-image-cloud-amd64 metapackage (so a run takes the suite's current ABI, which is what stays on
# the mirror), downloaded once with `apt-get download` through a private apt configuration (the
# system's sources stay untouched) into $ZONETOLL_KERNEL_CACHE (default ~/.cache/zonetoll/kernels).
# The test binaries are built on this machine (`go test -c`, static), packed with busybox, the host's
# ip and sysctl and the kernel's modules into an initramfs, and run by hack/kernels-init.sh as the
# VM's PID 1; their `-test.v` output comes back over the serial console.
#
# Environment: ZONETOLL_KERNEL_CACHE (download cache), ZONETOLL_KERNEL_OUT (results; default
# out/kernels), ZONETOLL_KERNEL_TIMEOUT (seconds per VM, default 1500), ZONETOLL_KERNEL_ACCEL (qemu
# accelerator, default tcg: see docs/kernels.md on KVM here), ZONETOLL_KERNEL_SMP (guest CPUs, default
# the host's, at most 4), ZONETOLL_KERNEL_TESTS (a comma-separated subset of
# counter,kerneltest,flowagent,tcfollow), ZONETOLL_KERNEL_ARGS (more test flags for every binary, e.g.
# "-test.run=^TestRestartUnderTrafficLosesNothing$ -test.count=3").
set -euo pipefail
shopt -s inherit_errexit # a failing command inside $(...) fails the script too (fetch_kernel's download)
cd "$(dirname "$0")/.."
root=$PWD

cache=${ZONETOLL_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zonetoll/kernels}
out=${ZONETOLL_KERNEL_OUT:-$root/out/kernels}
vm_timeout=${ZONETOLL_KERNEL_TIMEOUT:-1500}
accel=${ZONETOLL_KERNEL_ACCEL:-tcg}
smp=${ZONETOLL_KERNEL_SMP:-$(nproc)}
[ "$smp" -le 4 ] || smp=4

kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(5.10 6.1 6.12)

# The test binaries: name, module directory, package, arguments. TestServiceEndToEnd needs the test
# cluster's kube-apiserver and etcd, which is not a kernel test; `make test` runs it on the host.
tests=(
  "counter     bpf                 ./counter       -test.timeout=20m"
  "kerneltest  bpf                 ./kerneltest    -test.timeout=5m"
  "flowagent   services/flowagent  ./internal/app  -test.timeout=20m -test.skip=^TestServiceEndToEnd$"
  "tcfollow    services/flowagent  ./internal/tcfollow  -test.timeout=10m"
  "runtime     bpf                 ./counter       -test.run=^$ -test.bench=^Benchmark(ProgramRunTime|DrainParts)$/^(udp[46]-64B|grace-period)$ -test.benchtime=10x -test.timeout=15m"
)
# runtime is the counter's package again, for figures: bpf_stats run time per packet of the counter
# beside an empty program on the same hook, and the grace period a Drain waits for (docs/kernels.md).
if [ -n "${ZONETOLL_KERNEL_TESTS:-}" ]; then # a comma-separated subset of the names above
  picked=()
  for t in "${tests[@]}"; do [[ ",$ZONETOLL_KERNEL_TESTS," == *",${t%% *},"* ]] && picked+=("$t"); done
  tests=("${picked[@]}")
fi
# Modules the tests need that Debian's cloud kernels build as modules (with their dependencies).
modules=(veth vxlan cls_bpf sch_ingress act_bpf)

log() { printf '==> %s\n' "$*" >&2; }

# suite_of maps a kernel name of this script to the Debian suite whose cloud kernel it is.
suite_of() {
  case $1 in
  5.10) echo bullseye ;;
  6.1) echo bookworm ;;
  6.12) echo trixie ;;
  *) echo "hack/kernels.sh: unknown kernel $1 (want 5.10, 6.1, 6.12 or host)" >&2 && return 1 ;;
  esac
}

# The mirror of the system's own Debian sources, so the private configuration uses the same host.
mirror() {
  local m
  m=$(grep -hoE '^(URIs:|deb) +(\[[^]]*\] +)?https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    grep -oE 'https?://[^ ]+' | head -1) || true
  echo "${m:-http://deb.debian.org/debian}"
}

aptdir=$cache/apt
apt_opts=(
  -o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache" -o Dir::State::status=/dev/null
  -o APT::Sandbox::User=root -qq
)

# apt_update refreshes the private package lists when they are missing or older than a day.
apt_update() {
  mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
  local m want
  m=$(mirror)
  want=$(for s in bullseye bookworm trixie; do
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $m $s main"
  done)
  if [ "$want" != "$(cat "$aptdir/sources.list" 2>/dev/null)" ] ||
    [ -z "$(find "$aptdir/lists" -maxdepth 1 -name '*_Packages*' -mtime -1 -print -quit)" ]; then
    echo "$want" >"$aptdir/sources.list"
    log "apt-get update (private lists in $aptdir, mirror $m)"
    apt-get "${apt_opts[@]}" update
  fi
}

# fetch_kernel prints the directory holding the unpacked cloud kernel of suite $1, downloading and
# unpacking it first if the cache lacks it.
fetch_kernel() {
  local suite=$1 pkg dir tmp
  pkg=$(apt-cache "${apt_opts[@]}" show "linux-image-cloud-amd64/$suite" |
    sed -n 's/^Depends:.*\(linux-image-[^ ,]*-cloud-amd64\).*/\1/p' | head -1)
  [ -n "$pkg" ] || { echo "hack/kernels.sh: no linux-image-cloud-amd64 in $suite" >&2 && return 1; }
  dir=$cache/${pkg#linux-image-}
  if [ ! -e "$dir/done" ]; then
    log "downloading $pkg ($suite)"
    rm -rf "$dir" && mkdir -p "$dir"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get "${apt_opts[@]}" download "$pkg/$suite")
    dpkg-deb -x "$tmp"/*.deb "$dir/root"
    rm -rf "$tmp"
    # Trixie's packages are merged-/usr: the modules sit under usr/lib.
    local base=$dir/root
    [ -d "$base/lib/modules" ] || base=$dir/root/usr
    depmod -b "$base" "${pkg#linux-image-}"
    touch "$dir/done"
  fi
  echo "$dir"
}

# modules_cpio writes the archive of the kernel's modules that the tests need, decompressed (busybox
# insmod cannot read .ko.xz), and /modules.order listing them with dependencies first.
modules_cpio() {
  local kdir=$1 release=$2 dst=$3 base stage m dep
  base=$kdir/root/lib/modules/$release
  [ -d "$base" ] || base=$kdir/root/usr/lib/modules/$release
  stage=$(mktemp -d)
  mkdir -p "$stage/lib/modules"
  local -A seen=()
  local order=()
  for m in "${modules[@]}"; do
    local line
    line=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$base/modules.dep") || {
      log "$release: no module $m (built in, or missing)"
      continue
    }
    # modules.dep lists every transitive dependency, the one to load first last.
    local deps=(${line#*:}) i
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
      dep=${deps[i]}
      [ -n "${seen[$dep]:-}" ] || { seen[$dep]=1 && order+=("$dep"); }
    done
    dep=${line%%:*}
    [ -n "${seen[$dep]:-}" ] || { seen[$dep]=1 && order+=("$dep"); }
  done
  : >"$stage/modules.order"
  for dep in "${order[@]}"; do
    local plain=${dep%.xz}
    plain=${plain%.zst}
    plain=${plain%.gz}
    mkdir -p "$stage/lib/modules/$(dirname "$plain")"
    case $dep in
    *.xz) xz -dc "$base/$dep" >"$stage/lib/modules/$plain" ;;
    *.zst) zstd -qdc "$base/$dep" >"$stage/lib/modules/$plain" ;;
    *.gz) gzip -dc "$base/$dep" >"$stage/lib/modules/$plain" ;;
    *) cp "$base/$dep" "$stage/lib/modules/$plain" ;;
    esac
    echo "$plain" >>"$stage/modules.order"
  done
  (cd "$stage" && find . | busybox cpio -o -H newc 2>/dev/null) >"$dst"
  rm -rf "$stage"
}

# common_cpio builds the test binaries and the part of the initramfs every kernel shares.
common_cpio() {
  local dst=$1 stage t name dir pkg args bin lib
  stage=$(mktemp -d)
  mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib64,proc,sys,dev,tmp,run,root,work,etc}
  : >"$stage/tests"
  for t in "${tests[@]}"; do
    read -r name dir pkg args <<<"$t"
    log "go test -c $dir/$pkg"
    (cd "$dir" && CGO_ENABLED=0 go test -c -trimpath -o "$stage/bin/$name.test" "$pkg")
    mkdir -p "$stage/work/$dir/${pkg#./}"
    echo "$name $dir/${pkg#./} $args ${ZONETOLL_KERNEL_ARGS:-}" >>"$stage/tests"
  done
  cp "$(command -v busybox)" "$stage/bin/busybox"
  for a in $(busybox --list); do
    [ -e "$stage/bin/$a" ] || ln -s busybox "$stage/bin/$a"
  done
  # The tests call ip (with netns support, which busybox's lacks) and sysctl: the host's, with their
  # libraries;
  # busybox-static needs none; a dynamic busybox gets them the same way.
  for bin in /usr/sbin/ip /usr/sbin/sysctl "$(command -v busybox)"; do
    [ "${bin##*/}" = busybox ] || { rm -f "$stage/bin/${bin##*/}" && cp "$bin" "$stage/usr/sbin/"; }
    for lib in $(ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*'); do
      mkdir -p "$stage$(dirname "$lib")"
      cp -L "$lib" "$stage$lib"
    done
  done
  cp hack/kernels-init.sh "$stage/init"
  chmod +x "$stage/init"
  (cd "$stage" && find . | busybox cpio -o -H newc 2>/dev/null) >"$dst"
  rm -rf "$stage"
}

# report reads the console log of one kernel and writes the per-test results and a summary line.
report() {
  local kernel=$1 console=$2 dir=$3
  awk -v kernel="$kernel" -v results="$dir/results.txt" -v summary="$dir/summary.txt" '
    # The console carries terminal escapes of the firmware, and CRs.
    { gsub(/\r|\033\[[0-9;?]*[A-Za-z]|\033c/, "") }
    match($0, /ZT-KERNEL [^ ]+/) { release = substr($0, RSTART + 10, RLENGTH - 10) }
    /^ZT-BEGIN / { bin = $2; next }
    /^ZT-END / { split($3, rc, "="); if (rc[2] != 0) binfail = binfail " " bin "(rc=" rc[2] ")"; ended[bin] = 1; bin = ""; next }
    /^ZT-DONE/ { done = 1 }
    bin != "" && /^ *--- (PASS|FAIL|SKIP): / {
      status = $2; sub(/:$/, "", status); name = $3
      printf "%s %s %s %s\n", kernel, bin, name, status > results
      if ($0 ~ /^---/) n[status]++
    }
    # BenchmarkProgramRunTime/udp4-64B-2  3  123 ns/op  812 counter-ns/pkt  301 empty-ns/pkt  2.70 ratio
    bin == "runtime" && /^BenchmarkProgramRunTime\/udp[46]-64B/ {
      fam = ($0 ~ /udp6/) ? "udp6" : "udp4"; c = e = r = ""
      for (i = 2; i <= NF; i++) {
        if ($i == "counter-ns/pkt") c = $(i - 1)
        if ($i == "empty-ns/pkt") e = $(i - 1)
        if ($i == "ratio") r = $(i - 1)
      }
      if (c != "") perpkt = perpkt (perpkt == "" ? "" : "; ") sprintf("%s %.0f / %.0f ns = %.2f×", fam, c, e, r)
    }
    bin == "runtime" && /enabling bpf stats/ { perpkt = "no bpf_stats (BPF_ENABLE_STATS refused)" }
    bin == "runtime" && /^BenchmarkDrainParts\/grace-period/ {
      for (i = 2; i <= NF; i++) if ($i == "ns/op") gp = sprintf("%.1f ms", $(i - 1) / 1e6)
    }
    bin == "runtime" && /rcu_expedited/ { rcuexp = $NF }
    bin == "counter" && /counter_test.go:[0-9]+: kernel .*BTF:/ {
      mode = (/Netfilter:true/ && /BTF:true/) ? "netfilter" : (/TCX:true/ ? "tc (tcx)" : "tc (clsact)")
    }
    END {
      if (!done) binfail = binfail " VM did not finish"
      printf "| %s | %s | %s | %d | %d | %d | %s | %s | %s |\n", kernel, release, mode == "" ? "?" : mode,
        n["PASS"], n["FAIL"], n["SKIP"], perpkt == "" ? "–" : perpkt,
        gp == "" ? "–" : gp (rcuexp == "" ? "" : " (rcu_expedited " rcuexp ")"),
        binfail == "" ? "ok" : "failed:" binfail > summary
    }' "$console"
}

run_vm() {
  local kernel=$1 dir=$2 suite kdir vmlinuz release
  suite=$(suite_of "$kernel")
  kdir=$(fetch_kernel "$suite")
  vmlinuz=$(ls "$kdir"/root/boot/vmlinuz-*)
  release=${vmlinuz##*/vmlinuz-}
  modules_cpio "$kdir" "$release" "$dir/modules.cpio"
  cat "$out/common.cpio" "$dir/modules.cpio" >"$dir/initramfs.cpio"
  log "booting $release ($suite) in qemu ($accel, $smp CPUs); console in $dir/console.log"
  local start=$SECONDS rc boot
  # A second boot only when the first never reached /init's first line: that is the emulated machine
  # or the kernel's early boot failing (CI saw it once on 6.12, not reproduced in 8 boots here), before
  # any test ran, so no test result is retried. Its console stays beside the second's.
  for boot in 1 2; do
    rc=0
    timeout --foreground -k 10 "$vm_timeout" qemu-system-x86_64 \
      -machine "q35,accel=$accel" -cpu max -smp "$smp" -m 2048 \
      -kernel "$vmlinuz" -initrd "$dir/initramfs.cpio" \
      -append "console=ttyS0 panic=-1 oops=panic quiet loglevel=1 rdinit=/init" \
      -nographic -no-reboot -nic none -monitor none -serial "file:$dir/console.log" || rc=$?
    [ $rc -eq 0 ] || log "$kernel: qemu exited $rc (124: timeout after ${vm_timeout}s)"
    grep -q 'ZT-KERNEL' "$dir/console.log" && break
    log "$kernel: boot $boot never reached /init (qemu exit $rc); the console's end:"
    console_tail "$dir/console.log"
    mv "$dir/console.log" "$dir/console-boot$boot.log"
  done
  [ -e "$dir/console.log" ] || cp "$dir/console-boot2.log" "$dir/console.log"
  echo "$((SECONDS - start))" >"$dir/seconds"
}

# console_tail prints the last lines of a VM's console to stderr without the firmware's terminal
# escapes, so CI's log shows why a VM failed without its files.
console_tail() {
  tr -d '\r' <"$1" | sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' | tail -n 30 | sed 's/^/    | /' >&2
}

run_host() {
  local dir=$1 t name mdir pkg args rc
  [ "$(id -u)" -eq 0 ] || { echo "hack/kernels.sh: host kernel tests need root" >&2 && return 1; }
  local start=$SECONDS
  {
    echo "ZT-KERNEL $(uname -r)"
    for t in "${tests[@]}"; do
      read -r name mdir pkg args <<<"$t"
      args="$args ${ZONETOLL_KERNEL_ARGS:-}"
      echo "ZT-BEGIN $name"
      rc=0
      # shellcheck disable=SC2086 # args are split on purpose
      (cd "$mdir" && ZONETOLL_REQUIRE_ALL=1 go test -count=1 -v "$pkg" ${args//-test./-}) 2>&1 || rc=$?
      echo "ZT-END $name rc=$rc"
    done
    echo "ZT-DONE"
  } >"$dir/console.log"
  echo "$((SECONDS - start))" >"$dir/seconds"
}

# main is called on the last line, so bash has read the whole file before running any of it
# (editing the script during a run then cannot change the run).
main() {
  mkdir -p "$out"
  total_start=$SECONDS
  need_vm=0
  for k in "${kernels[@]}"; do [ "$k" = host ] || need_vm=1; done
  if [ $need_vm = 1 ]; then
    for c in qemu-system-x86_64 busybox depmod dpkg-deb; do
      command -v "$c" >/dev/null || { echo "hack/kernels.sh: $c missing; run make setup" >&2 && exit 1; }
    done
    apt_update
    common_cpio "$out/common.cpio"
  fi
  for k in "${kernels[@]}"; do
    dir=$out/$k
    rm -rf "$dir" && mkdir -p "$dir"
    kstart=$SECONDS
    if [ "$k" = host ]; then run_host "$dir"; else run_vm "$k" "$dir"; fi
    report "$k" "$dir/console.log" "$dir"
    if grep -q 'failed:' "$dir/summary.txt"; then
      log "$k failed; the console's end ($dir/console.log):"
      console_tail "$dir/console.log"
    fi
    log "$k: $((SECONDS - kstart)) s in all (download, initramfs, boot and tests)"
  done

  {
    echo "| kernel | release | counter mode (auto) | passed | failed | skipped | bpf_stats per packet: counter / empty program (TCG-emulated in the VMs) | Drain's grace period | binaries |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for k in "${kernels[@]}"; do cat "$out/$k/summary.txt"; done
  } >"$out/table.md"
  echo
  cat "$out/table.md"
  echo
  echo "failed tests (per-test results in $out/<kernel>/results.txt, output in console.log):"
  cat "$out"/*/results.txt 2>/dev/null | awk '$4 == "FAIL"' | sed 's/^/  /'
  echo "wall time: $((SECONDS - total_start)) s"
  # The run fails when a test failed or a VM did not finish; skips alone do not fail it.
  ! grep -q 'failed:' "$out/table.md"
}

main "$@"
