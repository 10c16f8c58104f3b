package counter

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/bpf/kerneltest"
)

// BenchmarkProgramRunTime measures the kernel's own run time per packet
// (BPF_ENABLE_STATS run_time_ns / run_cnt) of the counter and of an empty
// netfilter program attached to the same hook, on the same forwarded packets.
// Each op is one burst of traffic; the reported metrics are ns per program
// run. Throughput on this shared machine is too noisy to compare; run time per
// packet is what the program itself costs.
func BenchmarkProgramRunTime(b *testing.B) {
	kerneltest.Require(b)
	tp := newTopo(b)
	c := tp.loadAttachedEgress(b, ModeNetfilter)
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "empty_nf",
		Type:         ebpf.Netfilter,
		AttachType:   ebpf.AttachNetfilter,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
	if err != nil {
		b.Fatalf("loading empty program: %v", err)
	}
	defer empty.Close()
	for _, pf := range []link.NetfilterProtocolFamily{link.NetfilterProtoIPv4, link.NetfilterProtoIPv6} {
		var l link.Link
		tp.inNS(tp.node, func() error {
			l, err = link.AttachNetfilter(link.NetfilterOptions{
				Program: empty, ProtocolFamily: pf, Hook: link.NetfilterInetPostRouting, Priority: DefaultPriority - 10,
			})
			return err
		})
		defer l.Close()
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enabling bpf stats: %v", err)
	}
	defer stats.Close()

	for _, bb := range []struct {
		name string
		send func()
	}{
		{"udp4-64B", func() { tp.sendUDP(false, 20000, 18, 9101) }},
		{"udp6-64B", func() { tp.sendUDP(true, 20000, 18, 9101) }},
		// 32 datagrams per system call: the same packets with warm TLB entries.
		{"udp4-64B-sendmmsg32", func() { tp.sendBatched(false, 20000, 18, 32, 9101) }},
		{"udp6-64B-sendmmsg32", func() { tp.sendBatched(true, 20000, 18, 32, 9101) }},
		{"tcp4", func() { tp.sendTCP(false, 16<<20) }},
	} {
		b.Run(bb.name, func(b *testing.B) {
			var counterNs, emptyNs, runs float64
			for b.Loop() {
				drainAll(b, c)
				c0, e0 := progStats(b, c.prog), progStats(b, empty)
				bb.send()
				c1, e1 := progStats(b, c.prog), progStats(b, empty)
				counterNs += float64(c1.Runtime - c0.Runtime)
				emptyNs += float64(e1.Runtime - e0.Runtime)
				runs += float64(c1.RunCount - c0.RunCount)
			}
			b.ReportMetric(counterNs/runs, "counter-ns/pkt")
			b.ReportMetric(emptyNs/runs, "empty-ns/pkt")
			b.ReportMetric(counterNs/emptyNs, "ratio")
		})
	}
}

func progStats(b *testing.B, p *ebpf.Program) *ebpf.ProgramStats {
	b.Helper()
	s, err := p.Stats()
	if err != nil {
		b.Fatalf("reading program stats: %v", err)
	}
	return s
}
