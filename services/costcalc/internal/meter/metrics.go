package meter

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/shared/metricdef"
)

// CostMetric is the product metric dashboards are built on.
const CostMetric = "zonetoll_cross_zone_cost_dollars_total"

// Per-Service cost metrics (issue #18): the product metrics of the Service dashboard panel.
const (
	ServiceCostMetric      = "zonetoll_service_cross_zone_cost_dollars_total"
	ServiceAvoidableMetric = "zonetoll_service_avoidable_cost_dollars_total"
)

// Labels the cost series add to their flowserver series' labels: the flowserver's URL (one of
// ZONETOLL_TARGETS, so a bounded set) and the price of the series' bytes, in dollars per unit ("0.02/GiB").
const (
	TargetLabel = "target"
	PriceLabel  = "price"
)

// CostLabels are the labels of CostMetric: the traffic metric's, the target and the price.
var CostLabels = append(slices.Clone(TrafficLabels), TargetLabel, PriceLabel)

// ServiceCostLabels are the labels of ServiceCostMetric: the per-Service traffic metric's, the target and
// the price.
var ServiceCostLabels = append(slices.Clone(ServiceTrafficLabels), TargetLabel, PriceLabel)

// AvoidableLabels are the labels of ServiceAvoidableMetric: the client workload is left out (fewer series).
var AvoidableLabels = []string{"namespace", "service", "src_zone", "dst_zone"}

type metrics struct {
	serviceAvoidable *prometheus.CounterVec
	bytes            *prometheus.CounterVec
	unpriced         *prometheus.CounterVec
	scrapes          *prometheus.CounterVec
	resets           *prometheus.CounterVec
	series           *prometheus.GaugeVec
	duration         *prometheus.HistogramVec
	// expired and costSeries: ZONETOLL_SERIES_TTL at work.
	expired    prometheus.Counter
	costSeries prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, table *pricing.Table, meter *Meter) (*metrics, error) {
	costs := costCollector{m: meter,
		cost: prometheus.NewDesc(CostMetric,
			"Dollars of the bytes of one zonetoll_traffic_bytes_total series of the flowserver target: price × its bytes, every billed side together (cross-zone, cross-region and internet traffic; same-zone traffic is free and has no series). Derived from the flowserver's counter, so it resets when that counter resets and not when costcalc restarts.",
			CostLabels, nil),
		service: prometheus.NewDesc(ServiceCostMetric,
			"Dollars of the cross-zone bytes of one zonetoll_service_traffic_bytes_total series of the flowserver target (clients in src_zone, the Service's endpoints in dst_zone): price × its bytes, every billed side together. Already part of zonetoll_cross_zone_cost_dollars_total: do not add the two.",
			ServiceCostLabels, nil),
	}
	var s metricdef.Set
	s.Collector(costs)
	m := &metrics{
		// Labels of several names, which metricdef's vectors do not take.
		serviceAvoidable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ServiceAvoidableMetric,
			Help: "The part of zonetoll_service_cross_zone_cost_dollars_total sent from a client zone where the Service had a ready endpoint at the scrape, counted since costcalc started: what same-zone routing (trafficDistribution: PreferSameZone) would have kept in zone.",
		}, AvoidableLabels),
		scrapes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zonetoll_costcalc_scrapes_total",
			Help: "Scrapes of flowserver /metrics endpoints, by target and result (ok, error).",
		}, []string{"target", "result"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zonetoll_costcalc_counter_resets_total",
			Help: "Counter resets seen: a flowserver restart (kind=restart) or one series dropping (kind=series).",
		}, []string{"target", "kind"}),
	}
	s.Collector(m.serviceAvoidable)
	m.bytes = s.CounterVec("zonetoll_costcalc_traffic_bytes_total",
		"Bytes of traffic costcalc has read from flowservers, by pricing class (same_zone, inter_zone, inter_region, internet, unpriced).", "class")
	m.unpriced = s.CounterVec("zonetoll_costcalc_unpriced_bytes_total",
		"Bytes not priced because an end's zone or region is unknown; they are not in the cost metric, which would otherwise understate spend silently.", "reason")
	s.Collector(m.scrapes)
	s.Collector(m.resets)
	m.series = s.GaugeVec("zonetoll_costcalc_target_traffic_series", "Traffic series in the last successful scrape of each target.", "target")
	m.duration = s.HistogramVec("zonetoll_costcalc_scrape_duration_seconds", "Time one scrape of a flowserver took, parsing included.",
		prometheus.ExponentialBuckets(0.005, 2, 12), "target")
	m.expired = s.Counter("zonetoll_costcalc_series_expired_total",
		"Cost series (traffic, per-Service and avoidable) taken off /metrics because they did not grow for ZONETOLL_SERIES_TTL.")
	m.costSeries = s.Gauge("zonetoll_costcalc_cost_series", "Series of "+CostMetric+" held now.")
	perByte := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "zonetoll_price_dollars_per_byte",
		Help: "Active price of one byte of a traffic class charged to one side (out: the sender, in: the receiver), with the unit it is quoted in, its source, and read: the date a person checked it against that source (empty when nobody has).",
	}, []string{"cloud", "class", "direction", "unit", "source", "read"})
	perUnit := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "zonetoll_price_dollars_per_unit",
		Help: "The same prices as zonetoll_price_dollars_per_byte, per unit as quoted (label unit: GB = 10^9 bytes, GiB = 2^30 bytes).",
	}, []string{"cloud", "class", "direction", "unit", "source", "read"})
	for _, r := range table.Rows {
		l := []string{table.Cloud, string(r.Class), string(r.Direction), string(table.Unit), r.Source, r.Read}
		perByte.WithLabelValues(l...).Set(r.Price / table.Unit.Bytes())
		perUnit.WithLabelValues(l...).Set(r.Price)
	}
	s.Collector(perByte)
	s.Collector(perUnit)
	if err := s.Register(reg, "costcalc metrics"); err != nil {
		return nil, err
	}
	return m, nil
}
