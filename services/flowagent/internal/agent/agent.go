// Package agent is flowagent's loop: every interval it drains the kernel's flow counters, keeps the
// flows whose source lives on this node, and hands them as reports to the sender.
//
// Keeping only locally sourced flows is what makes every byte count once cluster-wide: a packet
// passes POST_ROUTING on its source node and again on every node that forwards it (or, with an
// overlay CNI, once more encapsulated), but only one node owns its source address.
package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/shared/metricdef"
	"github.com/zonetoll/zonetoll/shared/report"
)

// Drainer is the kernel side, as bpf/counter.Counter provides it; tests use a fake.
type Drainer interface {
	// Drain hands every counted flow to fn and removes it from the kernel; a key may come more than
	// once and values add up.
	Drain(ctx context.Context, fn func(counter.Key, counter.Value)) (counter.DrainStats, error)
	// Stats are the kernel's cumulative failure counters.
	Stats() (counter.Stats, error)
}

// Locals tells whether an address belongs to this node: its own addresses or a pod on it.
type Locals interface {
	Contains(report.Addr) bool
}

// Enqueuer takes a report for delivery; sender.Sender is one.
type Enqueuer interface {
	Enqueue(*report.Report) error
}

// Reasons for skipped bytes.
const (
	// ReasonNotLocalSource: the source is not on this node; the source's node reports it.
	ReasonNotLocalSource = "not_local_source"
	// ReasonOverlayOuter: node-to-node, skipped with an overlay CNI because such a flow is the
	// encapsulation of pod traffic that was already reported from its inner packet.
	ReasonOverlayOuter = "overlay_outer"
)

// Config sets up an Agent.
type Config struct {
	Node string // Kubernetes node name; goes into every report
	// Interval between drains.
	Interval time.Duration
	// MaxFlowsPerReport splits a window with more flows into several reports (each with its own
	// sequence number), so no report exceeds what the server accepts.
	MaxFlowsPerReport int
	// FinalTimeout bounds the last drain after ctx is done.
	FinalTimeout time.Duration
	// Nodes, if set, holds every node's addresses: flows from one node to another are then skipped
	// as overlay outer packets. Set it only with an encapsulating CNI (VXLAN, Geneve, IPIP), since
	// host-network traffic between nodes is skipped too.
	Nodes Locals
}

// Agent drains, filters and reports.
type Agent struct {
	cfg    Config
	drain  Drainer
	locals Locals
	out    Enqueuer
	log    *slog.Logger
	m      metrics
	now    func() time.Time

	// BootID identifies this process's reports. See NewBootID.
	BootID [16]byte

	mu          sync.Mutex // one drain at a time
	seq         uint64
	windowStart time.Time
	flows       map[counter.Key]counter.Value
}

type metrics struct {
	drainedBytes, drainedFlows prometheus.Counter
	reportedBytes              prometheus.Counter
	skippedBytes               *prometheus.CounterVec
	reports                    prometheus.Counter
	drainErrors                prometheus.Counter
	drainDuration              prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, d Drainer) (metrics, error) {
	var f metricdef.Set
	m := metrics{
		drainedBytes: f.Counter("zonetoll_flowagent_drained_bytes_total",
			"Layer-3 bytes read from the kernel's flow map, before filtering."),
		drainedFlows: f.Counter("zonetoll_flowagent_drained_flows_total",
			"Flow map entries read from the kernel, before filtering."),
		reportedBytes: f.Counter("zonetoll_flowagent_reported_bytes_total",
			"Bytes put into reports (flows whose source is on this node)."),
		skippedBytes: f.CounterVec("zonetoll_flowagent_skipped_bytes_total",
			"Drained bytes not reported because another node reports them, by reason.",
			"reason", ReasonNotLocalSource, ReasonOverlayOuter),
		reports: f.Counter("zonetoll_flowagent_reports_built_total",
			"Reports built and handed to the sender."),
		drainErrors: f.Counter("zonetoll_flowagent_drain_errors_total",
			"Drains that failed part-way; what was read is still reported, the rest stays in the kernel."),
		drainDuration: f.Histogram("zonetoll_flowagent_drain_duration_seconds",
			"Time to drain the kernel's flow map and build the reports.", prometheus.ExponentialBuckets(0.001, 3, 9)),
	}
	// The kernel keeps these cumulatively (they survive restarts with the pinned maps), so they are
	// read at scrape time.
	stat := func(pick func(counter.Stats) uint64) func() float64 {
		return func() float64 {
			s, err := d.Stats()
			if err != nil {
				return 0
			}
			return float64(pick(s))
		}
	}
	f.CounterFunc("zonetoll_flowagent_map_insert_failed_packets_total",
		"Packets not counted because the flow map was full (raise ZONETOLL_BPF_MAX_FLOWS or shorten the interval).",
		stat(func(s counter.Stats) uint64 { return s.InsertFailedPackets }))
	f.CounterFunc("zonetoll_flowagent_map_insert_failed_bytes_total",
		"Bytes not counted because the flow map was full.",
		stat(func(s counter.Stats) uint64 { return s.InsertFailedBytes }))
	f.CounterFunc("zonetoll_flowagent_parse_failed_packets_total",
		"Packets whose IP header the program could not read (tc mode only).",
		stat(func(s counter.Stats) uint64 { return s.ParseFailedPackets }))
	return m, f.Register(reg, "agent metrics")
}

// NewBootID returns a random version-4 UUID. It is made per process start, not read from
// /proc/sys/kernel/random/boot_id: sequence numbers restart with the process, and the server drops
// a report whose (node, boot id, sequence) it has seen, so a per-host id would make a restarted
// agent's first reports look like duplicates and lose them.
func NewBootID() ([16]byte, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("making boot id: %w", err)
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id, nil
}

// New returns an Agent; nothing runs until Run or Tick.
func New(cfg Config, d Drainer, locals Locals, out Enqueuer, reg prometheus.Registerer, log *slog.Logger) (*Agent, error) {
	if cfg.Node == "" {
		return nil, errors.New("creating agent: no node name")
	}
	if cfg.Interval <= 0 {
		return nil, fmt.Errorf("creating agent: interval %s: must be positive", cfg.Interval)
	}
	if cfg.MaxFlowsPerReport <= 0 {
		cfg.MaxFlowsPerReport = report.DefaultMaxFlows
	}
	if cfg.FinalTimeout <= 0 {
		cfg.FinalTimeout = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	boot, err := NewBootID()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg, d)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, drain: d, locals: locals, out: out,
		log:    log.With("component", "agent"),
		m:      m,
		now:    time.Now,
		BootID: boot,
		flows:  map[counter.Key]counter.Value{},
	}
	a.windowStart = a.now()
	return a, nil
}

// Run drains every interval until ctx is done, then drains once more so that what was counted up to
// the end is reported too.
func (a *Agent) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.FinalTimeout)
			defer cancel()
			if err := a.Tick(final); err != nil {
				return fmt.Errorf("final drain: %w", err)
			}
			return nil
		case <-t.C:
			if err := a.Tick(ctx); err != nil {
				a.log.Error("drain failed; what was read is reported, the rest stays for the next drain", "error", err)
			}
		}
	}
}

// Tick drains once and enqueues the window's reports. Flows handed out by Drain are already gone from
// the kernel, so whatever was read is reported even when the drain fails part-way.
func (a *Agent) Tick(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	start := a.now()
	clear(a.flows)
	var drainedBytes uint64
	_, drainErr := a.drain.Drain(ctx, func(k counter.Key, v counter.Value) {
		drainedBytes += v.Bytes
		a.m.drainedFlows.Inc()
		if !a.locals.Contains(report.Addr(k.Src)) {
			a.m.skippedBytes.WithLabelValues(ReasonNotLocalSource).Add(float64(v.Bytes))
			return
		}
		if a.cfg.Nodes != nil && a.cfg.Nodes.Contains(report.Addr(k.Src)) && a.cfg.Nodes.Contains(report.Addr(k.Dst)) {
			a.m.skippedBytes.WithLabelValues(ReasonOverlayOuter).Add(float64(v.Bytes))
			return
		}
		old := a.flows[k]
		a.flows[k] = counter.Value{Bytes: old.Bytes + v.Bytes, Packets: old.Packets + v.Packets, Segments: old.Segments + v.Segments}
	})
	a.m.drainedBytes.Add(float64(drainedBytes))
	if drainErr != nil {
		a.m.drainErrors.Inc()
	}
	end := a.now()
	err := a.report(a.windowStart, end)
	a.windowStart = end
	a.m.drainDuration.Observe(time.Since(start).Seconds())
	return errors.Join(drainErr, err)
}

// report splits the window's flows into reports and enqueues them.
func (a *Agent) report(start, end time.Time) error {
	flows := make([]report.Flow, 0, len(a.flows))
	var total uint64
	for k, v := range a.flows {
		// Packets are wire segments: what a user compares with interface counters.
		flows = append(flows, report.Flow{Src: k.Src, Dst: k.Dst, Bytes: v.Bytes, Packets: v.Segments})
		total += v.Bytes
	}
	// Sorted flows share address prefixes with their neighbours, which gzip turns into a smaller body
	// (see shared/report's BenchmarkWriteGzip), and reports become reproducible.
	slices.SortFunc(flows, func(x, y report.Flow) int {
		if c := bytes.Compare(x.Src[:], y.Src[:]); c != 0 {
			return c
		}
		return bytes.Compare(x.Dst[:], y.Dst[:])
	})
	a.m.reportedBytes.Add(float64(total))
	if len(flows) == 0 {
		// Nothing to say; an empty report would only cost the server a request.
		return nil
	}
	var errs []error
	for chunk := range slices.Chunk(flows, a.cfg.MaxFlowsPerReport) {
		a.seq++
		r := &report.Report{
			Node: a.cfg.Node, BootID: a.BootID, Sequence: a.seq,
			WindowStart: start, WindowEnd: end,
			Flows: chunk,
		}
		if err := a.out.Enqueue(r); err != nil {
			errs = append(errs, err)
			continue
		}
		a.m.reports.Inc()
	}
	return errors.Join(errs...)
}
