#!/bin/sh
# Builds the BPF objects with the flags of bpf/counter/gen.go.
set -e
cd "$(dirname "$0")"
BPF_C=${ZONETOLL_BPF_C:-../../../bpf/c}  # the repo's bpf/c: vmlinux.h and counter.c
CFLAGS="-O2 -g -Wall -Werror -mcpu=v3 -target bpfel -I$BPF_C"
# oa: 2^18 slots per side, BPF_F_MMAPABLE (vmalloc, drained through mmap).
clang-14 $CFLAGS -DSLOTS_LOG2=18 -c c/oa.c -o oa.o
# oa-small: 64 slots per side, not mmapable, so the kernel kmallocs the array
# (direct map, 2 MiB pages): same code, no vmalloc page walk.
clang-14 $CFLAGS -DSLOTS_LOG2=6 -DNO_MMAPABLE -c c/oa.c -o oa_small.o
# oa-small-mmap: 64 slots, mmapable (vmalloc'ed like oa).
clang-14 $CFLAGS -DSLOTS_LOG2=6 -c c/oa.c -o oa_small_mmap.o
# parse-only: oa's program without the table (diagnostic floor).
clang-14 $CFLAGS -DSLOTS_LOG2=6 -DNO_MMAPABLE -DPARSE_ONLY -c c/oa.c -o parse_only.o
clang-14 $CFLAGS -c $BPF_C/counter.c -o counter.o
# oa-plain: oa with plain (non-atomic, inexact) adds: what the atomics cost.
clang-14 $CFLAGS -DSLOTS_LOG2=18 -DPLAIN_ADDS -c c/oa.c -o oa_plain.o
# oa-16: 16 probes, loops not unrolled (what a full-load table would need).
clang-14 $CFLAGS -DSLOTS_LOG2=18 -DPROBES=16 -DNO_UNROLL -c c/oa.c -o oa_16.o
