package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/binding"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
	"github.com/zonetoll/zonetoll/shared/metricdef"
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
	var s metricdef.Set
	// Two labels, which metricdef's vectors do not take: the series of every result and reason are
	// created here.
	m.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zonetoll_flowserver_reports_total",
		Help: "Agent reports by result (applied, duplicate: a retry answered without counting again, rejected) and, for rejections, reason.",
	}, []string{"result", "reason"})
	for _, r := range reasons {
		m.reports.WithLabelValues("rejected", r)
	}
	m.reports.WithLabelValues("applied", "")
	m.reports.WithLabelValues("duplicate", "")
	s.Collector(m.reports)
	m.applySeconds = s.Histogram("zonetoll_flowserver_report_apply_duration_seconds",
		"Time from receiving an applied report to answering it: authentication, decoding, resolution and counting.",
		prometheus.ExponentialBuckets(0.0005, 2.5, 12))
	m.flows = s.Counter("zonetoll_flowserver_flows_total", "Flows (address pairs of one report window) applied.")
	m.bytes = s.Counter("zonetoll_flowserver_traffic_bytes_total", "Layer-3 bytes of all applied flows.")
	m.crossBytes = s.Counter("zonetoll_flowserver_cross_zone_bytes_total",
		"Layer-3 bytes of applied flows whose ends are in different known zones.")
	var sources []string
	for _, src := range resolve.Sources() {
		sources = append(sources, src.String())
	}
	m.resolved = s.CounterVec("zonetoll_flowserver_addresses_resolved_total",
		"Flow addresses resolved (two per flow), by source: pod, deleted_pod, node, cidr, external.", "source", sources...)
	m.unresolved = s.CounterVec("zonetoll_flowserver_unresolved_bytes_total",
		"Bytes at a flow address that could not be placed in a zone, counted per address, by reason: external (no pod, node or configured CIDR), node_unknown (the pod's node is not cached), no_zone_label (the node has no zone label).",
		"reason", "external", "node_unknown", "no_zone_label")
	m.foreign = s.CounterVec("zonetoll_flowserver_foreign_zone_reports_total",
		"Reports applied from nodes of another zone than this server's (ZONETOLL_ZONE): the agent's routing is wrong and its reports cross zones.",
		"node_zone")
	m.unknownNode = s.Counter("zonetoll_flowserver_unknown_node_reports_total",
		"Reports applied from a node name the node cache does not know.")
	m.foreignSrc = s.CounterVec("zonetoll_flowserver_foreign_source_bytes_total",
		"Bytes of flows not counted because their source is on another node than the report's, by what the source is: pod (a pod on another node) or node (another node's address, host-network pods there included).",
		"reason", foreignReasons[:]...)
	return s.Register(reg, "ingest metrics")
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
