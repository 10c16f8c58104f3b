package report

import (
	"bytes"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// benchFlows is the design's worst case: 100,000 distinct (src, dst) pairs
// per node and report interval.
const benchFlows = 100_000

// realisticReport is what a busy node of a 100-node, 10,000-pod cluster
// sends: flows between its own 100 pods and pods all over the cluster, in
// both directions, 30% of them over IPv6, in the random order a drained BPF
// hash map gives. Packet counts are log-uniform from 1 to a million, packet
// sizes 60 to 1500 bytes.
func realisticReport(tb testing.TB, n int) *Report {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	const (
		nodes       = 100
		podsPerNode = 100
		thisNode    = 7
	)
	pod := func(node, i int, v6 bool) Addr {
		if v6 {
			return AddrFrom(netip.AddrFrom16([16]byte{0: 0xfd, 7: byte(node), 15: byte(i)}))
		}
		// 198.18.0.0/15 holds a /24 per node.
		return AddrFrom(netip.AddrFrom4([4]byte{198, 18 + byte(node>>8), byte(node), byte(i + 1)}))
	}
	seen := make(map[[2]Addr]bool, n)
	r := &Report{
		Node:        "ip-198-18-7-1.zone-a.compute.example.internal",
		BootID:      [16]byte{0x4f, 0x1c, 0x22, 0x9a, 0x60, 0x11, 0x4b, 0x8e, 0x91, 0x3f, 0x0a, 0x5d, 0xc7, 0x21, 0x88, 0xe3},
		Sequence:    12345,
		WindowStart: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
		WindowEnd:   time.Date(2026, 11, 23, 12, 0, 10, 0, time.UTC),
		Flows:       make([]Flow, 0, n),
	}
	for len(r.Flows) < n {
		v6 := rng.IntN(10) < 3
		local := pod(thisNode, rng.IntN(podsPerNode), v6)
		remote := pod(rng.IntN(nodes), rng.IntN(podsPerNode), v6)
		src, dst := local, remote
		if rng.IntN(2) == 0 {
			src, dst = remote, local
		}
		if src == dst || seen[[2]Addr{src, dst}] {
			continue
		}
		seen[[2]Addr{src, dst}] = true
		packets := uint64(math.Exp(rng.Float64() * math.Log(1e6)))
		r.Flows = append(r.Flows, Flow{
			Src: src, Dst: dst,
			Packets: packets,
			Bytes:   packets * uint64(60+rng.IntN(1441)),
		})
	}
	return r
}

// reportPerFlow reports the time per flow and the encoded size per flow.
func reportPerFlow(b *testing.B, iterations, flows, encodedLen int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iterations*flows), "ns/flow")
	b.ReportMetric(float64(encodedLen)/float64(flows), "wire-B/flow")
	b.SetBytes(int64(encodedLen))
}

func BenchmarkEncode(b *testing.B) {
	r := realisticReport(b, benchFlows)
	b.ReportAllocs()
	var enc []byte
	iterations := 0
	for b.Loop() {
		var err error
		if enc, err = Encode(r); err != nil {
			b.Fatal(err)
		}
		iterations++
	}
	reportPerFlow(b, iterations, benchFlows, len(enc))
}

func BenchmarkAppendEncodeReused(b *testing.B) {
	r := realisticReport(b, benchFlows)
	b.ReportAllocs()
	var buf []byte
	iterations := 0
	for b.Loop() {
		var err error
		if buf, err = AppendEncode(buf[:0], r); err != nil {
			b.Fatal(err)
		}
		iterations++
	}
	reportPerFlow(b, iterations, benchFlows, len(buf))
}

func BenchmarkDecode(b *testing.B) {
	enc := mustEncode(b, realisticReport(b, benchFlows))
	b.ReportAllocs()
	iterations := 0
	for b.Loop() {
		if _, err := Decode(enc, Limits{}); err != nil {
			b.Fatal(err)
		}
		iterations++
	}
	reportPerFlow(b, iterations, benchFlows, len(enc))
}

func BenchmarkDecodeIntoReused(b *testing.B) {
	enc := mustEncode(b, realisticReport(b, benchFlows))
	var r Report
	b.ReportAllocs()
	iterations := 0
	for b.Loop() {
		if err := DecodeInto(&r, enc, Limits{}); err != nil {
			b.Fatal(err)
		}
		iterations++
	}
	reportPerFlow(b, iterations, benchFlows, len(enc))
}

// BenchmarkWriteGzip measures the flows in drain order and, for an agent
// weighing it, sorted by (src, dst): sorting puts shared address prefixes
// next to each other, which gzip turns into shorter output.
func BenchmarkWriteGzip(b *testing.B) {
	drained := realisticReport(b, benchFlows)
	sorted := *drained
	sorted.Flows = slices.Clone(drained.Flows)
	slices.SortFunc(sorted.Flows, func(x, y Flow) int {
		if c := bytes.Compare(x.Src[:], y.Src[:]); c != 0 {
			return c
		}
		return bytes.Compare(x.Dst[:], y.Dst[:])
	})
	for _, bc := range []struct {
		name string
		r    *Report
	}{{"drain-order", drained}, {"sorted", &sorted}} {
		b.Run(bc.name, func(b *testing.B) {
			var buf bytes.Buffer
			b.ReportAllocs()
			iterations := 0
			for b.Loop() {
				buf.Reset()
				if err := WriteGzip(&buf, bc.r); err != nil {
					b.Fatal(err)
				}
				iterations++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iterations*benchFlows), "ns/flow")
			b.ReportMetric(float64(buf.Len())/float64(benchFlows), "gzip-B/flow")
		})
	}
}

// BenchmarkReadGzipReused is the server's hot path: decompress into a reused
// buffer, decode into a reused report.
func BenchmarkReadGzipReused(b *testing.B) {
	var z bytes.Buffer
	if err := WriteGzip(&z, realisticReport(b, benchFlows)); err != nil {
		b.Fatal(err)
	}
	var (
		buf []byte
		r   Report
		rd  bytes.Reader
	)
	b.ReportAllocs()
	iterations := 0
	for b.Loop() {
		rd.Reset(z.Bytes())
		var err error
		if buf, err = AppendGunzip(buf[:0], &rd, Limits{}.MaxEncodedLen()); err != nil {
			b.Fatal(err)
		}
		if err := DecodeInto(&r, buf, Limits{}); err != nil {
			b.Fatal(err)
		}
		iterations++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iterations*benchFlows), "ns/flow")
	b.ReportMetric(float64(z.Len())/float64(benchFlows), "gzip-B/flow")
}
