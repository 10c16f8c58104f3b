package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/binding"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
)

// metrics are the ingest path's self metrics.
type metrics struct {
	reports      *prometheus.CounterVec
	applySeconds prometheus.Histogram
	flows        prometheus.Counter
	bytes        prometheus.Counter
	crossBytes   prometheus.Counter
	resolved     *prometheus.CounterVec
	unresolved   *prometheus.CounterVec
	foreign      *prometheus.CounterVec
	unknownNode  prometheus.Counter
	foreignSrc   *prometheus.CounterVec
}

// Rejection reasons, each a label value of zonetoll_flowserver_reports_total.
var reasons = []string{
	"method", "overloaded", "not_ready", "shutting_down", "unauthenticated", "forbidden", "auth_unavailable", "body_too_large",
	"read_error", "malformed", "unsupported_encoding", "too_many_flows", "node_mismatch", "rate_limited",
	"implausible_bytes", "window_in_future", "window_too_old", "identity_busy",
	// node_mismatch above, and the other reasons of internal/binding:
	binding.ReasonUnbound, binding.ReasonPodNotSeen, binding.ReasonPodMismatch, binding.ReasonPodTerminated,
}

func (m *metrics) register(reg prometheus.Registerer) error {
	m.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_reports_total",
		Help: "Agent reports by result (applied, duplicate: a retry answered without counting again, rejected) and, for rejections, reason.",
	}, []string{"result", "reason"})
	m.applySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "zonetoll_flowserver_report_apply_duration_seconds",
		Help:    "Time from receiving an applied report to answering it: authentication, decoding, resolution and counting.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
	})
	m.flows = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_flows_total",
		Help: "Flows (address pairs of one report window) applied.",
	})
	m.bytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_traffic_bytes_total",
		Help: "Layer-3 bytes of all applied flows.",
	})
	m.crossBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_cross_zone_bytes_total",
		Help: "Layer-3 bytes of applied flows whose ends are in different known zones.",
	})
	m.resolved = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_addresses_resolved_total",
		Help: "Flow addresses resolved (two per flow), by source: pod, deleted_pod, node, cidr, external.",
	}, []string{"source"})
	m.unresolved = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_unresolved_bytes_total",
		Help: "Bytes at a flow address that could not be placed in a zone, counted per address, by reason: external (no pod, node or configured CIDR), node_unknown (the pod's node is not cached), no_zone_label (the node has no zone label).",
	}, []string{"reason"})
	m.foreign = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_foreign_zone_reports_total",
		Help: "Reports applied from nodes of another zone than this server's (ZONETOLL_ZONE): the agent's routing is wrong and its reports cross zones.",
	}, []string{"node_zone"})
	m.unknownNode = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_unknown_node_reports_total",
		Help: "Reports applied from a node name the node cache does not know.",
	})
	m.foreignSrc = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_foreign_source_bytes_total",
		Help: "Bytes of flows not counted because their source is on another node than the report's, by what the source is: pod (a pod on another node) or node (another node's address, host-network pods there included).",
	}, []string{"reason"})
	for _, r := range foreignReasons {
		m.foreignSrc.WithLabelValues(r)
	}
	for _, r := range reasons {
		m.reports.WithLabelValues("rejected", r)
	}
	m.reports.WithLabelValues("applied", "")
	m.reports.WithLabelValues("duplicate", "")
	for _, s := range resolve.Sources() {
		m.resolved.WithLabelValues(s.String())
	}
	for _, r := range []string{"external", "node_unknown", "no_zone_label"} {
		m.unresolved.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.reports, m.applySeconds, m.flows, m.bytes, m.crossBytes, m.resolved, m.unresolved, m.foreign, m.unknownNode, m.foreignSrc} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering ingest metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) observe(t *tally, serverZone, nodeZone string, nodeKnown bool) {
	m.flows.Add(float64(t.flows))
	m.bytes.Add(float64(t.bytes))
	m.crossBytes.Add(float64(t.crossBytes))
	for s, n := range t.bySource {
		if n > 0 {
			m.resolved.WithLabelValues(resolve.Source(s).String()).Add(float64(n))
		}
	}
	for r, b := range t.foreign {
		if b > 0 {
			m.foreignSrc.WithLabelValues(foreignReasons[r]).Add(float64(b))
		}
	}
	if t.external > 0 {
		m.unresolved.WithLabelValues("external").Add(float64(t.external))
	}
	for r, b := range t.noZone {
		m.unresolved.WithLabelValues(r).Add(float64(b))
	}
	switch {
	case !nodeKnown:
		m.unknownNode.Inc()
	case serverZone != "" && nodeZone != serverZone:
		m.foreign.WithLabelValues(nodeZone).Inc()
	}
}
