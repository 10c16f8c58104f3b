package counter

import (
	"context"
	"encoding/binary"
	"os"
	"strings"
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

// BenchmarkDrainParts splits BenchmarkDrainEmpty into its steps: the walk of one empty flow map
// (every bucket: 131,072 at the default size) and the map-in-map update that waits for an RCU
// grace period. With /sys/kernel/rcu_expedited 0 (the default) that is a normal grace period, a few
// scheduler ticks (4 ms each at HZ=250) on an idle machine; with 1, an expedited one. It loads in
// tc mode, so it runs on every kernel of the matrix (hack/kernels.sh); the maps are the same.
func BenchmarkDrainParts(b *testing.B) {
	kerneltest.Require(b)
	c := loadForTest(b, Config{MaxFlows: 131072, Mode: ModeTC})
	if e, err := os.ReadFile("/sys/kernel/rcu_expedited"); err == nil {
		b.Logf("/sys/kernel/rcu_expedited %s", strings.TrimSpace(string(e)))
	}
	b.Run("walk-empty-ipv4-map", func(b *testing.B) {
		var st DrainStats
		for b.Loop() {
			if err := drainMap(context.Background(), c.flows4[1-c.active], c.keys4, c.values, func(key4, counterFlowValue) {}, &st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("walk-empty-ipv6-map", func(b *testing.B) {
		var st DrainStats
		for b.Loop() {
			if err := drainMap(context.Background(), c.flows6[1-c.active], c.keys6, c.values, func(Key, counterFlowValue) {}, &st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grace-period", func(b *testing.B) {
		for b.Loop() {
			if err := c.outer.Update(uint32(0), c.flows6[c.active], ebpf.UpdateAny); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// drainMap with several walkers, small batches and ranges that meet mid-bucket-run returns every
// entry once with its value and leaves the map empty.
func TestDrainMapWalkersEachEntryOnce(t *testing.T) {
	kerneltest.Require(t)
	c := loadForTest(t, Config{MaxFlows: 1024, Mode: ModeTC})
	m := c.flows4[1-c.active]
	const flows = 1000
	keys := make([]key4, flows)
	values := make([]counterFlowValue, flows)
	for i := range keys {
		binary.BigEndian.PutUint32(keys[i].Src[:], 0xc6120000|uint32(i))
		binary.BigEndian.PutUint32(keys[i].Dst[:], 0xc6130000|uint32(i))
		values[i] = counterFlowValue{Bytes: uint64(i) + 1, PktsSegs: 1<<32 | 1}
	}
	for _, walkers := range []int{1, 2, 3, 4} {
		for _, batch := range []int{16, 1000} {
			if _, err := m.BatchUpdate(keys, values, &ebpf.BatchOptions{}); err != nil {
				t.Fatalf("filling map: %v", err)
			}
			var kb [][]key4
			var vb [][]counterFlowValue
			for range walkers {
				kb = append(kb, make([]key4, batch))
				vb = append(vb, make([]counterFlowValue, batch))
			}
			seen := map[key4]uint64{}
			var st DrainStats
			if err := drainMap(context.Background(), m, kb, vb, func(k key4, v counterFlowValue) {
				if _, dup := seen[k]; dup {
					t.Errorf("%d walkers, batch %d: key %v twice", walkers, batch, k)
				}
				seen[k] = v.Bytes
			}, &st); err != nil {
				t.Fatalf("%d walkers, batch %d: %v", walkers, batch, err)
			}
			if len(seen) != flows || st.Flows != flows {
				t.Errorf("%d walkers, batch %d: %d keys (stats %d), want %d", walkers, batch, len(seen), st.Flows, flows)
			}
			for i, k := range keys {
				if seen[k] != uint64(i)+1 {
					t.Errorf("%d walkers, batch %d: key %d has %d bytes, want %d", walkers, batch, i, seen[k], i+1)
					break
				}
			}
			var left DrainStats
			if err := drainMap(context.Background(), m, kb[:1], vb[:1], func(key4, counterFlowValue) {}, &left); err != nil || left.Flows != 0 {
				t.Errorf("%d walkers, batch %d: %d entries left (%v)", walkers, batch, left.Flows, err)
			}
		}
	}
}
