package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"

	"github.com/zonetoll/zonetoll/shared/metricdef"
)

type metrics struct {
	writes        *prometheus.CounterVec
	latency       prometheus.Histogram
	queueProvider workqueue.MetricsProvider
}

func newMetrics(reg prometheus.Registerer, c *Controller) (*metrics, error) {
	var d metricdef.Set
	m := &metrics{
		writes: d.CounterVec("zonetoll_zonelabeler_label_writes_total",
			"Label patches sent to pods, by result (success, not_found, forbidden, conflict, throttled, error).", "result"),
		latency: d.Histogram("zonetoll_zonelabeler_binding_to_label_seconds",
			"Time from a pod's binding to a node (PodScheduled) to its zone label being written; pods bound after start only.",
			[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}),
	}
	d.GaugeFunc("zonetoll_zonelabeler_pods_waiting_for_zone",
		"Bound pods that cannot be labelled because their node has no zone label (or is unknown).",
		func() float64 { return float64(c.waitingCount()) })
	d.Collector(nodesCollector{c})
	buckets := prometheus.ExponentialBuckets(0.0001, 4, 10)
	m.queueProvider = &queueMetrics{
		depth: d.GaugeVec("zonetoll_zonelabeler_workqueue_depth", "Pod keys waiting in the work queue.", "name"),
		adds:  d.CounterVec("zonetoll_zonelabeler_workqueue_adds_total", "Pod keys added to the work queue.", "name"),
		latency: d.HistogramVec("zonetoll_zonelabeler_workqueue_queue_duration_seconds",
			"Time a pod key waits in the queue before a worker takes it.", buckets, "name"),
		work: d.HistogramVec("zonetoll_zonelabeler_workqueue_work_duration_seconds",
			"Time a worker spends on one pod key.", buckets, "name"),
		unfinished: d.GaugeVec("zonetoll_zonelabeler_workqueue_unfinished_work_seconds",
			"Seconds of work in progress not yet finished; growth means stuck workers.", "name"),
		longest: d.GaugeVec("zonetoll_zonelabeler_workqueue_longest_running_processor_seconds",
			"Age of the longest running work item.", "name"),
		retries: d.CounterVec("zonetoll_zonelabeler_workqueue_retries_total", "Pod keys requeued after a failure.", "name"),
	}
	if err := d.Register(reg, "zonelabeler metrics"); err != nil {
		return nil, err
	}
	return m, nil
}

var nodesDesc = prometheus.NewDesc("zonetoll_zonelabeler_nodes",
	"Nodes known to the labeler, by zone (empty zone: nodes without a zone label).", []string{"zone"}, nil)

// nodesCollector reads the node cache at scrape time, so a deleted node leaves the count at once.
type nodesCollector struct{ c *Controller }

func (n nodesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- nodesDesc }
func (n nodesCollector) Collect(ch chan<- prometheus.Metric) {
	for zone, count := range n.c.nodesByZone() {
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(count), zone)
	}
}

// queueMetrics gives client-go's workqueue our registry instead of its global one.
type queueMetrics struct {
	depth, unfinished, longest *prometheus.GaugeVec
	adds, retries              *prometheus.CounterVec
	latency, work              *prometheus.HistogramVec
}

func (q *queueMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return q.depth.WithLabelValues(name)
}
func (q *queueMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return q.adds.WithLabelValues(name)
}
func (q *queueMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return q.latency.WithLabelValues(name)
}
func (q *queueMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return q.work.WithLabelValues(name)
}
func (q *queueMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.unfinished.WithLabelValues(name)
}
func (q *queueMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.longest.WithLabelValues(name)
}
func (q *queueMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return q.retries.WithLabelValues(name)
}
