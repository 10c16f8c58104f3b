// Command bpfbench measures what the byte counter costs forwarded traffic:
// it interleaves three modes — no program, an empty netfilter program, the
// counter — over several rounds in network namespaces it makes (198.18.0.0/15
// and fd00::/8 only) and reports, per mode, 64-byte UDP packets per second,
// TCP throughput and the kernel's run time per program run (bpf_stats); then
// the drain of a map of 100,000 real flows: wall time, CPU and memory of this
// process. Every phase is bounded in packets or bytes.
//
// Run as root, in a session of its own so it can raise its autogroup's
// priority over the rest of the machine:
//
//	setsid go run ./cmd/bpfbench -rounds 7
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/zonetoll/zonetoll/shared/netns"
)

type options struct {
	rounds      int
	udpPackets  int
	tcpBytes    int
	statPackets int
	statBytes   int
	flows       int
	drainRounds int
}

func main() {
	var o options
	fs := flag.NewFlagSet("bpfbench", flag.ExitOnError)
	fs.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every mode once, in a rotated order")
	fs.IntVar(&o.udpPackets, "udp-packets", 200_000, "64-byte UDP datagrams per rate measurement")
	fs.IntVar(&o.tcpBytes, "tcp-bytes", 512<<20, "bytes per TCP throughput measurement")
	fs.IntVar(&o.statPackets, "stat-packets", 50_000, "64-byte UDP datagrams per run-time measurement (bpf_stats on)")
	fs.IntVar(&o.statBytes, "stat-bytes", 128<<20, "TCP bytes per run-time measurement (bpf_stats on)")
	fs.IntVar(&o.flows, "flows", 100_000, "distinct flows in the map for the drain measurement")
	fs.IntVar(&o.drainRounds, "drain-rounds", 5, "drain measurements")
	_ = fs.Parse(os.Args[1:])

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("bpfbench failed", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	if o.rounds < 1 || o.udpPackets < 1 || o.tcpBytes < 1 || o.statPackets < 1 || o.statBytes < 1 || o.flows < 1 || o.drainRounds < 1 {
		return errors.New("every count must be positive")
	}
	if o.flows > 131072 {
		return errors.New("-flows: at most 131072 (the map size)")
	}
	raisePriority(log)
	if on, _ := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled"); len(on) > 0 && on[0] != '0' {
		log.Warn("kernel.bpf_stats_enabled=1: throughput of the empty and counter modes includes the statistics' own cost")
	}
	// Namespaces of earlier runs whose process is gone (killed before their cleanup).
	netns.RemoveStale(netnsPrefix, true)
	tp, err := newTopo(ctx)
	if err != nil {
		return err
	}
	defer tp.close()
	pins, cleanup, err := privateBPFFS()
	if err != nil {
		return err
	}
	defer cleanup()

	res, err := measureModes(ctx, tp, pins, o, log)
	if err != nil {
		return err
	}
	dr, err := measureDrain(ctx, tp, pins, o, log)
	if err != nil {
		return err
	}
	printReport(os.Stdout, o, res, dr)
	return nil
}
