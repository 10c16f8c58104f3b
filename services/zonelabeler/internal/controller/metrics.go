package controller

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
)

type metrics struct {
	writes        *prometheus.CounterVec
	latency       prometheus.Histogram
	queueProvider workqueue.MetricsProvider
}

func newMetrics(reg prometheus.Registerer, c *Controller) (*metrics, error) {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zonetoll_zonelabeler_label_writes_total",
			Help: "Label patches sent to pods, by result (success, not_found, forbidden, conflict, throttled, error).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zonetoll_zonelabeler_binding_to_label_seconds",
			Help:    "Time from a pod's binding to a node (PodScheduled) to its zone label being written; pods bound after start only.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
	waiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "zonetoll_zonelabeler_pods_waiting_for_zone",
		Help: "Bound pods that cannot be labelled because their node has no zone label (or is unknown).",
	}, func() float64 { return float64(c.waitingCount()) })
	queue := &queueMetrics{
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zonetoll_zonelabeler_workqueue_depth", Help: "Pod keys waiting in the work queue."}, []string{"name"}),
		adds:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zonetoll_zonelabeler_workqueue_adds_total", Help: "Pod keys added to the work queue."}, []string{"name"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "zonetoll_zonelabeler_workqueue_queue_duration_seconds",
			Help: "Time a pod key waits in the queue before a worker takes it.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"name"}),
		work: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "zonetoll_zonelabeler_workqueue_work_duration_seconds",
			Help: "Time a worker spends on one pod key.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"name"}),
		unfinished: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zonetoll_zonelabeler_workqueue_unfinished_work_seconds",
			Help: "Seconds of work in progress not yet finished; growth means stuck workers."}, []string{"name"}),
		longest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zonetoll_zonelabeler_workqueue_longest_running_processor_seconds",
			Help: "Age of the longest running work item."}, []string{"name"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zonetoll_zonelabeler_workqueue_retries_total", Help: "Pod keys requeued after a failure."}, []string{"name"}),
	}
	m.queueProvider = queue
	for _, col := range []prometheus.Collector{m.writes, m.latency, waiting, nodesCollector{c},
		queue.depth, queue.adds, queue.latency, queue.work, queue.unfinished, queue.longest, queue.retries} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("registering zonelabeler metrics: %w", err)
		}
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
