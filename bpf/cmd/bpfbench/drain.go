package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/bpf/counter"
)

// drainSample is one round of draining a map holding o.flows real flows:
// once bare, once as the agent does it (collect every entry into a Go map).
type drainSample struct {
	bare      time.Duration // Drain with a callback that only checks and counts: the kernel side
	wall      time.Duration // Drain into a Go map
	cpu       time.Duration // user + system time of this process during the drain into a Go map
	allocated uint64        // Go heap bytes allocated during the drain
	rssBefore uint64        // VmRSS, bytes
	rssAfter  uint64
	hwm       uint64 // VmHWM of the process so far
}

func measureDrain(ctx context.Context, tp *topo, pins string, o options, log *slog.Logger) ([]drainSample, error) {
	c, err := counter.Load(ctx, counter.Config{PinDir: pins, Mode: counter.ModeNetfilter}, nil)
	if err != nil {
		return nil, err
	}
	defer c.Uninstall()
	if err := c.AttachNetfilter(nsPath(tp.node)); err != nil {
		return nil, err
	}
	discard := func(counter.Key, counter.Value) {}
	if _, err := c.Drain(ctx, discard); err != nil {
		return nil, fmt.Errorf("emptying the map: %w", err)
	}
	prefix := netip.MustParseAddr(manyPrefix).As16()
	var out []drainSample
	for round := range o.drainRounds {
		var s drainSample
		// First the bare drain (what BenchmarkDrain100k measures), then the
		// same map contents drained into a Go map as the agent does.
		if err := tp.fillFlows(o.flows); err != nil {
			return nil, err
		}
		filled := 0
		start := time.Now()
		if _, err := c.Drain(ctx, func(k counter.Key, v counter.Value) {
			if bytes.Equal(k.Dst[:8], prefix[:8]) && v.Packets == 1 {
				filled++
			}
		}); err != nil {
			return nil, fmt.Errorf("draining %d flows: %w", o.flows, err)
		}
		s.bare = time.Since(start)
		if filled != o.flows {
			return nil, fmt.Errorf("bare drain: %d of the %d flows sent, with one packet each", filled, o.flows)
		}

		if err := tp.fillFlows(o.flows); err != nil {
			return nil, err
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		s.rssBefore, _ = procStatus("VmRSS")
		cpu0 := processCPU()
		start = time.Now()
		flows := map[counter.Key]counter.Value{}
		if _, err := c.Drain(ctx, func(k counter.Key, v counter.Value) {
			old := flows[k]
			flows[k] = counter.Value{Bytes: old.Bytes + v.Bytes, Packets: old.Packets + v.Packets, Segments: old.Segments + v.Segments}
		}); err != nil {
			return nil, fmt.Errorf("draining %d flows: %w", o.flows, err)
		}
		s.wall = time.Since(start)
		s.cpu = processCPU() - cpu0
		runtime.ReadMemStats(&m1)
		s.allocated = m1.TotalAlloc - m0.TotalAlloc
		s.rssAfter, _ = procStatus("VmRSS")
		s.hwm, _ = procStatus("VmHWM")

		// The figures only mean something if the map really held every flow.
		filled = 0
		for k, v := range flows {
			if bytes.Equal(k.Dst[:8], prefix[:8]) {
				filled++
				if v.Packets != 1 {
					return nil, fmt.Errorf("flow to %v counted %d packets, sent 1", netip.AddrFrom16(k.Dst), v.Packets)
				}
			}
		}
		if filled != o.flows {
			return nil, fmt.Errorf("drained %d of the %d flows sent", filled, o.flows)
		}
		log.Info("drained", "round", round+1, "flows", len(flows), "bare", s.bare, "into_map", s.wall, "cpu", s.cpu, "rss_after_mib", s.rssAfter>>20)
		out = append(out, s)
	}
	return out, nil
}

func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatus reads a "kB" field of /proc/self/status, in bytes.
func procStatus(field string) (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("%s not in /proc/self/status", field)
}
