package counter

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/zonetoll/zonetoll/bpf/kerneltest"
)

// BenchmarkDrain100k measures one Drain of 100,000 IPv4 flows (switch +
// batch read/delete + callback). Target: < 50 ms per op. bpfbench drains
// 100,000 IPv6 flows that entered through the program.
func BenchmarkDrain100k(b *testing.B) {
	kerneltest.Require(b)
	const flows = 100_000
	c := loadForTest(b, Config{MaxFlows: 131072, Mode: ModeNetfilter})
	keys := make([]key4, flows)
	values := make([]counterFlowValue, flows)
	for i := range keys {
		binary.BigEndian.PutUint32(keys[i].Src[:], 0xc6120000|uint32(i))
		keys[i].Dst = keys[i].Src
		values[i] = counterFlowValue{Bytes: uint64(i), PktsSegs: 1<<32 | 1}
	}
	var seen int
	fn := func(Key, Value) { seen++ }
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if _, err := c.flows4[c.active].BatchUpdate(keys, values, &ebpf.BatchOptions{}); err != nil {
			b.Fatalf("filling map: %v", err)
		}
		seen = 0
		b.StartTimer()
		st, err := c.Drain(context.Background(), fn)
		if err != nil {
			b.Fatal(err)
		}
		if seen != flows || st.Flows != flows {
			b.Fatalf("drained %d flows (stats %d), want %d", seen, st.Flows, flows)
		}
	}
}

// BenchmarkDrainEmpty is the fixed cost of a Drain: mostly the RCU grace
// period the kernel waits for when the active map is switched.
func BenchmarkDrainEmpty(b *testing.B) {
	kerneltest.Require(b)
	c := loadForTest(b, Config{MaxFlows: 131072, Mode: ModeNetfilter})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Drain(context.Background(), func(Key, Value) {}); err != nil {
			b.Fatal(err)
		}
	}
}
