package counter

//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -type flow_key4 -type flow_key6 -type flow_value -type counter_stats counter ../c/counter.c
