package agent

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/sender"
)

// repeatDrainer hands out the same entries on every Drain.
type repeatDrainer struct{ entries []entry }

func (r *repeatDrainer) Drain(_ context.Context, fn func(counter.Key, counter.Value)) (counter.DrainStats, error) {
	for _, e := range r.entries {
		fn(e.k, e.v)
	}
	return counter.DrainStats{Flows: len(r.entries)}, nil
}

func (r *repeatDrainer) Stats() (counter.Stats, error) { return counter.Stats{}, nil }

// BenchmarkTick is one interval at the design's worst case: 100,000 distinct pairs drained, half of
// them with a local source, filtered, sorted, encoded and gzipped into the spool. The kernel side
// is faked; bpf/counter's BenchmarkDrain measures that part.
func BenchmarkTick(b *testing.B) {
	const flows = 100_000
	rng := rand.New(rand.NewPCG(1, 2))
	set := addrSet{}
	var entries []entry
	for i := range flows {
		local := netip.AddrFrom16([16]byte{0: 0xfd, 13: 1, 15: byte(1 + i%100)})
		set[addr(local.String())] = true
		remote := netip.AddrFrom16([16]byte{0: 0xfd, 12: byte(i >> 16), 13: 2, 14: byte(i >> 8), 15: byte(i)})
		src, dst := local, remote
		if i%2 == 1 {
			src, dst = remote, local
		}
		entries = append(entries, entry{counter.Key{Src: addr(src.String()), Dst: addr(dst.String())}, val(uint64(60+rng.IntN(1_000_000)), uint64(1+rng.IntN(1000)))})
	}
	snd, err := sender.New(sender.Config{URL: "http://127.0.0.1:1", SpoolBytes: 1 << 40}, prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(Config{Node: "node-a", Interval: time.Second}, &repeatDrainer{entries}, set, snd, prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := a.Tick(context.Background()); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*flows), "ns/drained-flow")
	b.ReportMetric(float64(snd.SpoolBytes())/float64(snd.Pending()), "spool-B/report")
}
