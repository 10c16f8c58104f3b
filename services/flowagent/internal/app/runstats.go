package app

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// runStatser is what runStatsCollector reads; *counter.Counter implements it.
type runStatser interface {
	RunStats() (runtime time.Duration, runs uint64, err error)
}

// runStatsCollector exports the BPF program's kernel run time and run count,
// read at scrape time: the kernel keeps them cumulatively since the program
// was loaded. They only grow while the kernel's BPF run-time statistics are
// on (kernel.bpf_stats_enabled=1); otherwise they stay at 0.
type runStatsCollector struct {
	src     runStatser
	seconds *prometheus.Desc
	runs    *prometheus.Desc
}

func newRunStatsCollector(src runStatser) *runStatsCollector {
	return &runStatsCollector{
		src: src,
		seconds: prometheus.NewDesc("zonetoll_flowagent_program_run_seconds_total",
			"Time the kernel spent in the counting BPF program since it was loaded (0 unless sysctl kernel.bpf_stats_enabled=1).", nil, nil),
		runs: prometheus.NewDesc("zonetoll_flowagent_program_runs_total",
			"Runs of the counting BPF program since it was loaded, one per packet at the hook (0 unless sysctl kernel.bpf_stats_enabled=1).", nil, nil),
	}
}

func (c *runStatsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.seconds
	ch <- c.runs
}

// Collect leaves both out when the program cannot be read (closed during
// shutdown): a missing sample is honest, a 0 would look like a counter reset.
func (c *runStatsCollector) Collect(ch chan<- prometheus.Metric) {
	runtime, runs, err := c.src.RunStats()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.seconds, prometheus.CounterValue, runtime.Seconds())
	ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(runs))
}
