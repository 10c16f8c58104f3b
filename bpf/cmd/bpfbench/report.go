package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// spread is the median and range of a set of figures.
type spread struct{ med, lo, hi float64 }

func spreadOf(xs []float64) spread {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return spread{med, s[0], s[n-1]}
}

func (s spread) format(unit string, scale float64, prec int) string {
	return fmt.Sprintf("%.*f %s (%.*f–%.*f)", prec, s.med/scale, unit, prec, s.lo/scale, prec, s.hi/scale)
}

func pick(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

// paired divides mode m's figure by mode base's of the same round: rounds
// are close in time, so the ratio cancels much of the machine's drift.
func paired(res results, m, base mode, f func(sample) float64) spread {
	r := make([]float64, len(res[m]))
	for i := range r {
		r[i] = f(res[m][i]) / f(res[base][i])
	}
	return spreadOf(r)
}

func printReport(w io.Writer, o options, res results, dr []drainSample) {
	udp := func(s sample) float64 { return s.udpPPS }
	tcp := func(s sample) float64 { return s.tcpBPS }
	udpNs := func(s sample) float64 { return s.udpNsRun }
	tcpNs := func(s sample) float64 { return s.tcpNsRun }
	fmt.Fprintf(w, "bpfbench: %d rounds; median (min–max) over rounds\n\n", o.rounds)
	fmt.Fprintf(w, "%-8s %-30s %-30s %-26s %-26s\n", "mode", "UDP 64-byte frames", "TCP4 throughput", "ns/run UDP (bpf_stats)", "ns/run TCP skb")
	for _, m := range modes {
		ns, nt := "-", "-"
		if m != modeNone {
			ns = spreadOf(pick(res[m], udpNs)).format("ns", 1, 0)
			nt = spreadOf(pick(res[m], tcpNs)).format("ns", 1, 0)
		}
		fmt.Fprintf(w, "%-8s %-30s %-30s %-26s %-26s\n", m,
			spreadOf(pick(res[m], udp)).format("kpps", 1e3, 0), spreadOf(pick(res[m], tcp)).format("Gbit/s", 1e9, 2), ns, nt)
	}
	fmt.Fprintf(w, "\nper-round ratios, median (min–max):\n")
	fmt.Fprintf(w, "  counter/none  UDP pps %s   TCP %s   (targets: UDP ≥ 0.92, TCP ≥ 0.98)\n",
		paired(res, modeCounter, modeNone, udp).format("", 1, 3), paired(res, modeCounter, modeNone, tcp).format("", 1, 3))
	fmt.Fprintf(w, "  empty/none    UDP pps %s   TCP %s\n",
		paired(res, modeEmpty, modeNone, udp).format("", 1, 3), paired(res, modeEmpty, modeNone, tcp).format("", 1, 3))
	fmt.Fprintf(w, "  counter/empty ns/run UDP %s   TCP %s   (target ≤ 2)\n",
		paired(res, modeCounter, modeEmpty, udpNs).format("", 1, 2), paired(res, modeCounter, modeEmpty, tcpNs).format("", 1, 2))

	if len(dr) == 0 {
		return
	}
	d := func(f func(drainSample) float64) spread {
		xs := make([]float64, len(dr))
		for i, s := range dr {
			xs[i] = f(s)
		}
		return spreadOf(xs)
	}
	ms := float64(time.Millisecond)
	fmt.Fprintf(w, "\ndrain of %d real flows, %d rounds, median (min–max):\n", o.flows, len(dr))
	fmt.Fprintf(w, "  bare Drain  %s   (target < 50 ms; callback only counts)\n", d(func(s drainSample) float64 { return float64(s.bare) }).format("ms", ms, 1))
	fmt.Fprintf(w, "  into map    %s   (Drain collecting into a Go map, as the agent does)\n", d(func(s drainSample) float64 { return float64(s.wall) }).format("ms", ms, 1))
	fmt.Fprintf(w, "  CPU         %s   (user+system of this process, drain into map)\n", d(func(s drainSample) float64 { return float64(s.cpu) }).format("ms", ms, 1))
	fmt.Fprintf(w, "  allocated   %s\n", d(func(s drainSample) float64 { return float64(s.allocated) }).format("MiB", 1<<20, 1))
	fmt.Fprintf(w, "  RSS before  %s\n", d(func(s drainSample) float64 { return float64(s.rssBefore) }).format("MiB", 1<<20, 1))
	fmt.Fprintf(w, "  RSS after   %s\n", d(func(s drainSample) float64 { return float64(s.rssAfter) }).format("MiB", 1<<20, 1))
	fmt.Fprintf(w, "  peak RSS    %s   (VmHWM of the whole run)\n", d(func(s drainSample) float64 { return float64(s.hwm) }).format("MiB", 1<<20, 1))
}
