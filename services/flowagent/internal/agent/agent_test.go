package agent

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

// fakeDrainer hands out one batch of entries per Drain, as the kernel map would: each entry once,
// then gone. failAfter > 0 makes a Drain fail after handing out that many entries.
type fakeDrainer struct {
	batches   [][]entry
	failAfter int
	stats     counter.Stats
}

type entry struct {
	k counter.Key
	v counter.Value
}

func (f *fakeDrainer) Drain(ctx context.Context, fn func(counter.Key, counter.Value)) (counter.DrainStats, error) {
	if len(f.batches) == 0 {
		return counter.DrainStats{}, nil
	}
	b := f.batches[0]
	for i, e := range b {
		if f.failAfter > 0 && i == f.failAfter {
			// What was not handed out stays for the next Drain.
			f.batches[0] = b[i:]
			return counter.DrainStats{Flows: i}, errors.New("batch lookup and delete: interrupted")
		}
		fn(e.k, e.v)
	}
	f.batches = f.batches[1:]
	return counter.DrainStats{Flows: len(b)}, nil
}

func (f *fakeDrainer) Stats() (counter.Stats, error) { return f.stats, nil }

type fakeSender struct{ reports []*report.Report }

func (f *fakeSender) Enqueue(r *report.Report) error {
	// Validate as the real sender would, by encoding.
	if _, err := report.Encode(r); err != nil {
		return err
	}
	f.reports = append(f.reports, r)
	return nil
}

type addrSet map[report.Addr]bool

func (s addrSet) Contains(a report.Addr) bool { return s[a] }

func addr(s string) [16]byte { return report.AddrFrom(netip.MustParseAddr(s)) }

func key(src, dst string) counter.Key { return counter.Key{Src: addr(src), Dst: addr(dst)} }

func val(bytes, packets uint64) counter.Value {
	return counter.Value{Bytes: bytes, Packets: packets, Segments: packets}
}

var locals = addrSet{
	addr("198.18.0.1"):  true, // node
	addr("198.18.0.10"): true, // pod
	addr("fd00::10"):    true, // pod, IPv6
}

func newTestAgent(t *testing.T, d Drainer, out Enqueuer, maxFlows int) (*Agent, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	a, err := New(Config{Node: "node-a", Interval: time.Second, MaxFlowsPerReport: maxFlows}, d, locals, out, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	a.windowStart = clock
	a.now = func() time.Time { clock = clock.Add(5 * time.Second); return clock }
	return a, reg
}

func flowsOf(rs []*report.Report) map[[2]report.Addr]report.Flow {
	m := map[[2]report.Addr]report.Flow{}
	for _, r := range rs {
		for _, f := range r.Flows {
			k := [2]report.Addr{f.Src, f.Dst}
			old := m[k]
			m[k] = report.Flow{Src: f.Src, Dst: f.Dst, Bytes: old.Bytes + f.Bytes, Packets: old.Packets + f.Packets}
		}
	}
	return m
}

func TestTickKeepsLocalSources(t *testing.T) {
	tests := []struct {
		name        string
		entries     []entry
		want        map[[2]string][2]uint64 // (src, dst) -> (bytes, packets)
		wantSkipped uint64
	}{
		{
			name: "pod to remote pod and remote to pod",
			entries: []entry{
				{key("198.18.0.10", "198.18.1.10"), val(1500, 1)},
				{key("198.18.1.10", "198.18.0.10"), val(700, 2)}, // received: the sender's node reports it
			},
			want:        map[[2]string][2]uint64{{"198.18.0.10", "198.18.1.10"}: {1500, 1}},
			wantSkipped: 700,
		},
		{
			name: "forwarded through this node",
			entries: []entry{
				{key("198.18.2.10", "198.18.1.10"), val(9000, 6)},
				{key("198.18.0.1", "198.18.1.1"), val(100, 1)}, // node's own traffic
			},
			want:        map[[2]string][2]uint64{{"198.18.0.1", "198.18.1.1"}: {100, 1}},
			wantSkipped: 9000,
		},
		{
			name: "same key twice (leftover map of an earlier process) adds up",
			entries: []entry{
				{key("fd00::10", "fd00::1:10"), val(1000, 1)},
				{key("fd00::10", "fd00::1:10"), val(234, 3)},
			},
			want: map[[2]string][2]uint64{{"fd00::10", "fd00::1:10"}: {1234, 4}},
		},
		{
			name:    "nothing counted",
			entries: nil,
			want:    map[[2]string][2]uint64{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &fakeSender{}
			a, _ := newTestAgent(t, &fakeDrainer{batches: [][]entry{tt.entries}}, out, 0)
			if err := a.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := flowsOf(out.reports)
			if len(got) != len(tt.want) {
				t.Errorf("reported %d flows, want %d: %v", len(got), len(tt.want), got)
			}
			for pair, bp := range tt.want {
				f := got[[2]report.Addr{addr(pair[0]), addr(pair[1])}]
				if f.Bytes != bp[0] || f.Packets != bp[1] {
					t.Errorf("flow %v = %d bytes %d packets, want %d %d", pair, f.Bytes, f.Packets, bp[0], bp[1])
				}
			}
			if got := testutil.ToFloat64(a.m.skippedBytes.WithLabelValues(ReasonNotLocalSource)); got != float64(tt.wantSkipped) {
				t.Errorf("skipped bytes = %v, want %d", got, tt.wantSkipped)
			}
			if len(tt.want) == 0 && len(out.reports) != 0 {
				t.Errorf("%d reports for an empty window, want none", len(out.reports))
			}
		})
	}
}

func TestSequenceWindowsAndSplitting(t *testing.T) {
	var first, second []entry
	for i := range 5 {
		first = append(first, entry{key("198.18.0.10", netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}).String()), val(uint64(100+i), 1)})
	}
	second = append(second, entry{key("198.18.0.10", "198.18.9.9"), val(42, 1)})
	out := &fakeSender{}
	a, _ := newTestAgent(t, &fakeDrainer{batches: [][]entry{first, second}}, out, 2)
	for range 2 {
		if err := a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// 5 flows at 2 per report, then 1.
	wantSizes := []int{2, 2, 1, 1}
	if len(out.reports) != len(wantSizes) {
		t.Fatalf("%d reports, want %d", len(out.reports), len(wantSizes))
	}
	for i, r := range out.reports {
		if r.Sequence != uint64(i+1) {
			t.Errorf("report %d has sequence %d, want %d", i, r.Sequence, i+1)
		}
		if r.Node != "node-a" || r.BootID != a.BootID || r.BootID == ([16]byte{}) {
			t.Errorf("report %d identity (%s, %x), want (node-a, %x)", i, r.Node, r.BootID, a.BootID)
		}
		if len(r.Flows) != wantSizes[i] {
			t.Errorf("report %d has %d flows, want %d", i, len(r.Flows), wantSizes[i])
		}
	}
	// The three parts of window 1 share it; window 2 starts where window 1 ended.
	w1 := out.reports[0]
	for _, r := range out.reports[1:3] {
		if !r.WindowStart.Equal(w1.WindowStart) || !r.WindowEnd.Equal(w1.WindowEnd) {
			t.Errorf("split report %d window %v-%v, want %v-%v", r.Sequence, r.WindowStart, r.WindowEnd, w1.WindowStart, w1.WindowEnd)
		}
	}
	if w2 := out.reports[3]; !w2.WindowStart.Equal(w1.WindowEnd) || !w2.WindowEnd.After(w2.WindowStart) {
		t.Errorf("window 2 = %v-%v, want to start at %v", w2.WindowStart, w2.WindowEnd, w1.WindowEnd)
	}
	var total uint64
	for _, f := range flowsOf(out.reports) {
		total += f.Bytes
	}
	if want := uint64(100 + 101 + 102 + 103 + 104 + 42); total != want {
		t.Errorf("reported %d bytes, want %d", total, want)
	}
}

func TestFailedDrainStillReportsWhatWasRead(t *testing.T) {
	entries := []entry{
		{key("198.18.0.10", "198.18.1.1"), val(10, 1)},
		{key("198.18.0.10", "198.18.1.2"), val(20, 1)},
		{key("198.18.0.10", "198.18.1.3"), val(30, 1)},
	}
	d := &fakeDrainer{batches: [][]entry{entries}, failAfter: 2}
	out := &fakeSender{}
	a, _ := newTestAgent(t, d, out, 0)
	if err := a.Tick(context.Background()); err == nil {
		t.Fatal("Tick after a failed drain returned nil")
	}
	d.failAfter = 0
	if err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, f := range flowsOf(out.reports) {
		total += f.Bytes
	}
	if total != 60 || len(out.reports) != 2 {
		t.Errorf("reported %d bytes in %d reports, want 60 in 2", total, len(out.reports))
	}
	if got := testutil.ToFloat64(a.m.drainErrors); got != 1 {
		t.Errorf("drain errors = %v, want 1", got)
	}
}

func TestRunDrainsOnceMoreOnStop(t *testing.T) {
	d := &fakeDrainer{batches: [][]entry{{{key("198.18.0.10", "198.18.1.1"), val(77, 1)}}}}
	out := &fakeSender{}
	reg := prometheus.NewPedanticRegistry()
	// An interval far beyond the test: only the final drain can report.
	a, err := New(Config{Node: "node-a", Interval: time.Hour}, d, locals, out, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(out.reports) != 1 || out.reports[0].Flows[0].Bytes != 77 {
		t.Errorf("reports after stop = %+v, want one with 77 bytes", out.reports)
	}
}

func TestMetrics(t *testing.T) {
	d := &fakeDrainer{
		batches: [][]entry{{
			{key("198.18.0.10", "198.18.1.1"), val(1000, 2)},
			{key("198.18.5.5", "198.18.1.1"), val(300, 1)},
		}},
		stats: counter.Stats{InsertFailedPackets: 4, InsertFailedBytes: 4000, ParseFailedPackets: 1},
	}
	a, reg := newTestAgent(t, d, &fakeSender{}, 0)
	if err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	for name, want := range map[string]float64{
		"zonetoll_flowagent_drained_bytes_total":             1300,
		"zonetoll_flowagent_drained_flows_total":             2,
		"zonetoll_flowagent_reported_bytes_total":            1000,
		"zonetoll_flowagent_reports_built_total":             1,
		"zonetoll_flowagent_map_insert_failed_packets_total": 4,
		"zonetoll_flowagent_map_insert_failed_bytes_total":   4000,
		"zonetoll_flowagent_parse_failed_packets_total":      1,
	} {
		if got, ok := metricstest.Gather(t, reg).Value(name, nil); !ok {
			t.Errorf("%s not exposed (or not once)", name)
		} else if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestNewBootID(t *testing.T) {
	a, err := NewBootID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewBootID()
	if a == b || a == ([16]byte{}) {
		t.Errorf("boot ids %x and %x: want two different non-zero ids", a, b)
	}
	if a[6]>>4 != 4 || a[8]>>6 != 2 {
		t.Errorf("boot id %x is not a version-4 UUID", a)
	}
}

func TestOverlayOuterSkipped(t *testing.T) {
	nodes := addrSet{addr("198.18.0.1"): true, addr("198.18.1.1"): true}
	entries := []entry{
		{key("198.18.0.10", "198.18.1.10"), val(1000, 1)}, // inner pod → pod
		{key("198.18.0.1", "198.18.1.1"), val(1050, 1)},   // its VXLAN outer packet
		{key("198.18.0.1", "198.18.7.7"), val(60, 1)},     // node to a non-node address
	}
	for _, overlay := range []bool{false, true} {
		out := &fakeSender{}
		cfg := Config{Node: "node-a", Interval: time.Second}
		if overlay {
			cfg.Nodes = nodes
		}
		a, err := New(cfg, &fakeDrainer{batches: [][]entry{entries}}, locals, out, prometheus.NewPedanticRegistry(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		var total uint64
		for _, f := range flowsOf(out.reports) {
			total += f.Bytes
		}
		want, wantSkipped := uint64(2110), 0.0
		if overlay {
			want, wantSkipped = 1060, 1050
		}
		if total != want {
			t.Errorf("overlay %v: reported %d bytes, want %d", overlay, total, want)
		}
		if got := testutil.ToFloat64(a.m.skippedBytes.WithLabelValues(ReasonOverlayOuter)); got != wantSkipped {
			t.Errorf("overlay %v: skipped overlay_outer = %v, want %v", overlay, got, wantSkipped)
		}
	}
}
