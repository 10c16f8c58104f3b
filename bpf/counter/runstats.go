package counter

import (
	"fmt"
	"time"
)

// RunStats is the kernel's accounting of the attached program: total time
// spent in it and how often it ran, since it was loaded. Every netfilter link
// and tc attachment runs the same program, so this covers all of them. The
// kernel only accounts while run-time statistics are on (sysctl
// kernel.bpf_stats_enabled=1, or while some process holds a BPF_ENABLE_STATS
// file descriptor); otherwise both stay where they were, usually 0.
func (c *Counter) RunStats() (runtime time.Duration, runs uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, 0, ErrClosed
	}
	// cilium/ebpf v0.22.0 has no run time in ProgramInfo; Stats reads
	// run_time_ns and run_cnt from the same BPF_OBJ_GET_INFO_BY_FD call.
	st, err := c.prog.Stats()
	if err != nil {
		return 0, 0, fmt.Errorf("reading program run statistics: %w", err)
	}
	return st.Runtime, st.RunCount, nil
}
