package app

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeRunStats struct {
	runtime time.Duration
	runs    uint64
	err     error
}

func (f *fakeRunStats) RunStats() (time.Duration, uint64, error) { return f.runtime, f.runs, f.err }

func TestRunStatsCollector(t *testing.T) {
	tests := []struct {
		name string
		src  fakeRunStats
		want string
	}{
		{"stats on", fakeRunStats{runtime: 1500 * time.Millisecond, runs: 7_000_000}, `
# HELP zonetoll_flowagent_program_run_seconds_total Time the kernel spent in the counting BPF program since it was loaded (0 unless sysctl kernel.bpf_stats_enabled=1).
# TYPE zonetoll_flowagent_program_run_seconds_total counter
zonetoll_flowagent_program_run_seconds_total 1.5
# HELP zonetoll_flowagent_program_runs_total Runs of the counting BPF program since it was loaded, one per packet at the hook (0 unless sysctl kernel.bpf_stats_enabled=1).
# TYPE zonetoll_flowagent_program_runs_total counter
zonetoll_flowagent_program_runs_total 7e+06
`},
		{"stats off", fakeRunStats{}, `
# HELP zonetoll_flowagent_program_run_seconds_total Time the kernel spent in the counting BPF program since it was loaded (0 unless sysctl kernel.bpf_stats_enabled=1).
# TYPE zonetoll_flowagent_program_run_seconds_total counter
zonetoll_flowagent_program_run_seconds_total 0
# HELP zonetoll_flowagent_program_runs_total Runs of the counting BPF program since it was loaded, one per packet at the hook (0 unless sysctl kernel.bpf_stats_enabled=1).
# TYPE zonetoll_flowagent_program_runs_total counter
zonetoll_flowagent_program_runs_total 0
`},
		{"program closed", fakeRunStats{err: errors.New("counter closed")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(newRunStatsCollector(&tt.src))
			if err := testutil.GatherAndCompare(reg, strings.NewReader(tt.want),
				"zonetoll_flowagent_program_run_seconds_total", "zonetoll_flowagent_program_runs_total"); err != nil {
				t.Error(err)
			}
		})
	}
}
