// Package metricdef declares a component's Prometheus metrics, one call a metric, and registers them
// together. A labelled counter is declared with its label's values, each present at 0 from the start: a
// rate() or an alert on one value sees the series before its first event, and the values are written
// once, where the metric is.
package metricdef

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Set holds the metrics declared so far, for Register. The zero Set is ready to use.
type Set struct{ collectors []prometheus.Collector }

func add[M prometheus.Collector](s *Set, m M) M {
	s.collectors = append(s.collectors, m)
	return m
}

// Counter declares a counter.
func (s *Set) Counter(name, help string) prometheus.Counter {
	return add(s, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

// CounterFunc declares a counter whose value read returns at scrape time (it is kept elsewhere, by the
// kernel for instance).
func (s *Set) CounterFunc(name, help string, read func() float64) {
	add(s, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, read))
}

// CounterVec declares a counter with one label and creates the series of each of values.
func (s *Set) CounterVec(name, help, label string, values ...string) *prometheus.CounterVec {
	v := add(s, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label}))
	for _, val := range values {
		v.WithLabelValues(val)
	}
	return v
}

// Gauge declares a gauge.
func (s *Set) Gauge(name, help string) prometheus.Gauge {
	return add(s, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
}

// GaugeFunc declares a gauge whose value read returns at scrape time.
func (s *Set) GaugeFunc(name, help string, read func() float64) {
	add(s, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, read))
}

// GaugeVec declares a gauge with one label.
func (s *Set) GaugeVec(name, help, label string) *prometheus.GaugeVec {
	return add(s, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{label}))
}

// Histogram declares a histogram with the given buckets.
func (s *Set) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return add(s, prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}))
}

// HistogramVec declares a histogram with the given buckets and one label.
func (s *Set) HistogramVec(name, help string, buckets []float64, label string) *prometheus.HistogramVec {
	return add(s, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{label}))
}

// Collector adds a collector of the component's own (one that reads its values at scrape time) to
// what Register registers.
func (s *Set) Collector(c prometheus.Collector) { add(s, c) }

// Register registers every metric of the set on reg. It fails at the first one reg refuses (a name
// taken twice), naming what, for what: what the caller is, "spool metrics" for instance.
func (s *Set) Register(reg prometheus.Registerer, what string) error {
	for _, c := range s.collectors {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering %s: %w", what, err)
		}
	}
	return nil
}
