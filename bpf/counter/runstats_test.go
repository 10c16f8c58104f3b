package counter

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func TestRunStatsCountsEveryRun(t *testing.T) {
	tp := newTopo(t)
	c := tp.loadAttachedEgress(t, ModeNetfilter)
	// Whether the kernel accounts with statistics off is not checked: any
	// other process holding a BPF_ENABLE_STATS fd turns them on machine-wide.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling bpf stats: %v", err)
	}
	defer stats.Close()
	before := tp.quiesce()
	rt0, runs0, err := c.RunStats()
	if err != nil {
		t.Fatal(err)
	}
	tp.sendUDP(false, 300, 64, 9302)
	tp.sendUDP(true, 200, 64, 9302)
	after := tp.quiesce()
	rt1, runs1, err := c.RunStats()
	if err != nil {
		t.Fatal(err)
	}
	// The program runs once per packet leaving the node: forwarded ones and
	// the node's own (MLD/IGMP).
	want := after.forwarded - before.forwarded + after.mcPackets - before.mcPackets
	if got := runs1 - runs0; got != want {
		t.Errorf("program ran %d times, %d packets passed POST_ROUTING", got, want)
	}
	if want < 500 {
		t.Fatalf("only %d packets passed the hook: test network broken", want)
	}
	if rt1 <= rt0 {
		t.Errorf("run time %v -> %v over %d runs, want it to grow", rt0, rt1, runs1-runs0)
	}
	t.Logf("%d runs, %v, %.0f ns per run", runs1-runs0, rt1-rt0, float64(rt1-rt0)/float64(runs1-runs0))

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.RunStats(); !errors.Is(err, ErrClosed) {
		t.Errorf("RunStats after Close = %v, want ErrClosed", err)
	}
}
