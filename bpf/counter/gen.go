package counter

//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target bpfel -type flow_key -type flow_value -type counter_stats counter ../c/counter.c
