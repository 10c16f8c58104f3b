package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/bpf/counter"
)

type mode string

const (
	modeNone    mode = "none"
	modeEmpty   mode = "empty"
	modeCounter mode = "counter"
)

var modes = []mode{modeNone, modeEmpty, modeCounter}

// sample is one mode's figures in one round.
type sample struct {
	udpPPS   float64 // 64-byte UDP datagrams forwarded per second
	tcpBPS   float64 // TCP bits per second
	udpNsRun float64 // kernel ns per program run, 64-byte UDP (0 for none)
	tcpNsRun float64 // kernel ns per program run, TCP (GSO skbs)
}

// results holds every round's sample per mode, in round order.
type results map[mode][]sample

// attached is one mode's program on the node's POST_ROUTING hook.
type attached struct {
	runStats func() (time.Duration, uint64, error)
	close    func() error
}

func attach(tp *topo, m mode, pins string) (*attached, error) {
	switch m {
	case modeNone:
		return &attached{
			runStats: func() (time.Duration, uint64, error) { return 0, 0, nil },
			close:    func() error { return nil },
		}, nil
	case modeEmpty:
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "empty_nf", Type: ebpf.Netfilter, AttachType: ebpf.AttachNetfilter, License: "MIT",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}, // NF_ACCEPT
		})
		if err != nil {
			return nil, fmt.Errorf("loading the empty program: %w", err)
		}
		var links []link.Link
		closeAll := func() error {
			var errs []error
			for _, l := range links {
				errs = append(errs, l.Close())
			}
			return errors.Join(append(errs, prog.Close())...)
		}
		for _, pf := range []link.NetfilterProtocolFamily{link.NetfilterProtoIPv4, link.NetfilterProtoIPv6} {
			err := inNetns(nsPath(tp.node), -1, func() error {
				l, err := link.AttachNetfilter(link.NetfilterOptions{
					Program: prog, ProtocolFamily: pf, Hook: link.NetfilterInetPostRouting, Priority: counter.DefaultPriority,
				})
				if err == nil {
					links = append(links, l)
				}
				return err
			})
			if err != nil {
				_ = closeAll()
				return nil, fmt.Errorf("attaching the empty program: %w", err)
			}
		}
		return &attached{
			runStats: func() (time.Duration, uint64, error) {
				st, err := prog.Stats()
				if err != nil {
					return 0, 0, err
				}
				return st.Runtime, st.RunCount, nil
			},
			close: closeAll,
		}, nil
	case modeCounter:
		c, err := counter.Load(context.Background(), counter.Config{PinDir: pins, Mode: counter.ModeNetfilter}, nil)
		if err != nil {
			return nil, err
		}
		if err := c.AttachNetfilter(nsPath(tp.node)); err != nil {
			c.Close()
			return nil, err
		}
		// Uninstall, not Close: the counter's links are pinned and would keep
		// the hook (and its priority) for the next mode.
		return &attached{runStats: c.RunStats, close: c.Uninstall}, nil
	}
	return nil, fmt.Errorf("unknown mode %q", m)
}

func measureModes(ctx context.Context, tp *topo, pins string, o options, log *slog.Logger) (results, error) {
	res := results{}
	for round := range o.rounds {
		for i := range modes {
			// Rotate the order so no mode always runs first (or right after
			// the same neighbour) in a round.
			m := modes[(i+round)%len(modes)]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s, err := measureMode(tp, m, pins, o)
			if err != nil {
				return nil, fmt.Errorf("round %d, mode %s: %w", round+1, m, err)
			}
			log.Info("measured", "round", round+1, "mode", m, "udp_pps", int(s.udpPPS), "tcp_gbps", fmt.Sprintf("%.2f", s.tcpBPS/1e9),
				"udp_ns_per_run", fmt.Sprintf("%.0f", s.udpNsRun), "tcp_ns_per_run", fmt.Sprintf("%.0f", s.tcpNsRun))
			res[m] = append(res[m], s)
		}
	}
	return res, nil
}

func measureMode(tp *topo, m mode, pins string, o options) (s sample, err error) {
	a, err := attach(tp, m, pins)
	if err != nil {
		return s, err
	}
	defer func() { err = errors.Join(err, a.close()) }()

	// Throughput with statistics off: they cost every run two clock reads.
	if s.udpPPS, err = tp.udpRate(o.udpPackets, 18); err != nil {
		return s, err
	}
	if s.tcpBPS, err = tp.tcpRate(false, o.tcpBytes); err != nil {
		return s, err
	}
	if m == modeNone {
		return s, nil
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return s, fmt.Errorf("enabling bpf stats: %w", err)
	}
	defer stats.Close()
	perRun := func(send func() error) (float64, error) {
		rt0, n0, err := a.runStats()
		if err != nil {
			return 0, err
		}
		if err := send(); err != nil {
			return 0, err
		}
		rt1, n1, err := a.runStats()
		if err != nil {
			return 0, err
		}
		if n1 == n0 {
			return 0, errors.New("the program did not run")
		}
		return float64(rt1-rt0) / float64(n1-n0), nil
	}
	if s.udpNsRun, err = perRun(func() error { _, err := tp.udpRate(o.statPackets, 18); return err }); err != nil {
		return s, err
	}
	s.tcpNsRun, err = perRun(func() error { _, err := tp.tcpRate(false, o.statBytes); return err })
	return s, err
}

// raisePriority gives this process's autogroup nice −20: other jobs on the
// machine sit in other autogroups, so plain nice would not shield the
// measurement. It only works for a session leader (run under setsid).
func raisePriority(log *slog.Logger) {
	if sid, _ := unix.Getsid(0); sid != os.Getpid() {
		log.Warn("not a session leader (run under setsid): autogroup priority not raised, figures will be noisier")
		return
	}
	if err := os.WriteFile("/proc/self/autogroup", []byte("-20"), 0); err != nil {
		log.Warn("raising autogroup priority failed", "error", err)
	}
}

// privateBPFFS mounts a bpffs of this process's own for the counter's pins.
func privateBPFFS() (string, func(), error) {
	dir, err := os.MkdirTemp("", netnsPrefix+"bpffs-")
	if err != nil {
		return "", nil, fmt.Errorf("making bpffs dir: %w", err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("mounting bpffs: %w", err)
	}
	return filepath.Join(dir, "zonetoll"), func() {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		_ = os.Remove(dir)
	}, nil
}
