// Package meter is the `costcalc run` loop: it scrapes each flowserver's /metrics, turns the growth of
// zonetoll_traffic_bytes_total into dollars with a price table, and counts them in
// zonetoll_cross_zone_cost_dollars_total with the traffic metric's labels.
//
// Counters are read the way Prometheus reads them: only increases count. A series that drops has been
// reset and its new value is all new traffic; a flowserver whose process_start_time_seconds changed has
// restarted and every series of it starts again from zero. The first scrape of a target only takes a
// baseline, so costcalc never bills traffic from before it started (which, after a costcalc restart,
// its own counters' reset already makes Prometheus count once).
package meter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
)

// Names of the flowserver metrics read.
const (
	TrafficMetric  = "zonetoll_traffic_bytes_total"
	ZoneInfoMetric = "zonetoll_zone_info"
	StartMetric    = "process_start_time_seconds"
)

// TrafficLabels are the labels of TrafficMetric, which the cost counter carries too.
var TrafficLabels = []string{"src_namespace", "src_workload", "src_kind", "src_zone", "dst_namespace", "dst_workload", "dst_kind", "dst_zone"}

// Names of the flowserver's per-Service metrics read (issue #18, docs/metrics.md).
const (
	ServiceTrafficMetric = "zonetoll_service_traffic_bytes_total"
	ReadyMetric          = "zonetoll_service_ready_endpoints"
	overflow             = "__overflow__"
)

// ServiceTrafficLabels are the labels of ServiceTrafficMetric, in the order addService reads them.
var ServiceTrafficLabels = []string{"namespace", "service", "src_namespace", "src_workload", "src_kind", "src_zone", "dst_zone", "direction"}

func indexOf(names []string) map[string]int {
	m := map[string]int{}
	for i, l := range names {
		m[l] = i
	}
	return m
}

var labelIndex, serviceLabelIndex = indexOf(TrafficLabels), indexOf(ServiceTrafficLabels)

// maxBody bounds one scrape: a flowserver at its series limit writes far less, and a wrong URL pointing
// at something huge must not take the process down.
const maxBody = 512 << 20

// Options configure a Meter.
type Options struct {
	Targets []string // flowserver /metrics URLs
	Timeout time.Duration
	Table   *pricing.Table
	Client  *http.Client // nil means a client with Timeout
	// SeriesTTL removes a cost series (and what the meter remembers of it) that has not grown for this
	// long, as the flowserver's ZONETOLL_SERIES_TTL removes its traffic series: workloads come and go,
	// and without it every pair ever seen would stay in memory and in every scrape. 0 keeps series.
	SeriesTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Meter scrapes targets and counts dollars.
type Meter struct {
	opts    Options
	client  *http.Client
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	targets map[string]*target
	scraped bool // one round has finished
	warned  map[string]bool
	// grown is every series the meter has added to (cost or unpriced bytes), by series key: when it last
	// grew, for SeriesTTL.
	grown map[string]*grownSeries
}

// grownSeries is one workload pair the meter has counted, or one series of the per-Service cost
// counters (service set).
type grownSeries struct {
	values  []string  // TrafficLabels values; for service, the per-Service cost labels
	updated time.Time // last time it grew
	cost    bool      // it has a cost series
	service bool      // it is a series of the per-Service cost counters
	warned  []string  // keys of m.warned it set
}

// target is what the meter remembers of one flowserver between scrapes.
type target struct {
	baseline  bool               // the first successful scrape has been taken
	startTime float64            // process_start_time_seconds; 0 when the target does not expose it
	last      map[string]float64 // series key → value, for the series of the last successful scrape
	zones     map[string]string  // zone → region from zonetoll_zone_info
	ready     map[string]int     // namespace\xffservice\xffzone → ready endpoints, from zonetoll_service_ready_endpoints
}

// New builds a Meter and registers its metrics, price gauges included, on reg.
func New(opts Options, reg prometheus.Registerer, log *slog.Logger) (*Meter, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Meter{opts: opts, client: opts.Client, log: log.With("component", "meter"), targets: map[string]*target{}, warned: map[string]bool{},
		grown: map[string]*grownSeries{}}
	if m.client == nil {
		m.client = &http.Client{Timeout: opts.Timeout}
	}
	for _, u := range opts.Targets {
		m.targets[u] = &target{last: map[string]float64{}}
	}
	var err error
	if m.metrics, err = newMetrics(reg, opts.Table); err != nil {
		return nil, err
	}
	return m, nil
}

// Run scrapes every interval until ctx is done.
func (m *Meter) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.ScrapeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Scraped reports whether one round of scrapes has finished, for /readyz.
func (m *Meter) Scraped() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.scraped
}

// ScrapeOnce scrapes every target in parallel, then applies the results in target order.
func (m *Meter) ScrapeOnce(ctx context.Context) {
	type result struct {
		fams map[string]*dto.MetricFamily
		err  error
	}
	results := make([]result, len(m.opts.Targets))
	var wg sync.WaitGroup
	for i, u := range m.opts.Targets {
		wg.Go(func() {
			start := time.Now()
			fams, err := m.fetch(ctx, u)
			m.metrics.duration.WithLabelValues(u).Observe(time.Since(start).Seconds())
			results[i] = result{fams, err}
		})
	}
	wg.Wait()
	for i, u := range m.opts.Targets {
		r := results[i]
		if r.err != nil {
			if ctx.Err() == nil {
				m.log.Warn("scrape failed", "target", u, "error", r.err)
			}
			m.metrics.scrapes.WithLabelValues(u, "error").Inc()
			continue
		}
		m.metrics.scrapes.WithLabelValues(u, "ok").Inc()
		m.Apply(u, r.fams)
	}
	m.mu.Lock()
	m.scraped = true
	m.mu.Unlock()
	m.Expire(m.opts.Now())
}

// Expire removes the cost series that have not grown since now-SeriesTTL, and what the meter remembers
// of them. The dollars they hold were already exposed: a query of increase() or rate() over any window
// that saw them keeps them; a pair that grows again starts a new series from its new dollars.
func (m *Meter) Expire(now time.Time) {
	if m.opts.SeriesTTL <= 0 {
		return
	}
	cutoff := now.Add(-m.opts.SeriesTTL)
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, g := range m.grown {
		if !g.updated.Before(cutoff) {
			continue
		}
		switch {
		case g.cost:
			m.metrics.cost.DeleteLabelValues(g.values...)
			m.metrics.expired.Inc()
		case g.service:
			m.metrics.serviceCost.DeleteLabelValues(g.values...)
			m.metrics.serviceAvoidable.DeleteLabelValues(g.values...)
			m.metrics.expired.Inc()
		}
		for _, w := range g.warned {
			delete(m.warned, w)
		}
		delete(m.grown, key)
	}
	m.metrics.costSeries.Set(float64(m.costSeries()))
}

// costSeries counts the series of the cost counter; the caller holds m.mu.
func (m *Meter) costSeries() int {
	n := 0
	for _, g := range m.grown {
		if g.cost {
			n++
		}
	}
	return n
}

func (m *Meter) fetch(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("scraping %s: status %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("scraping %s: parsing metrics: %w", url, err)
	}
	return fams, nil
}

// Apply takes one successful scrape of target url: it finds restarts and resets, and adds the growth of
// every traffic series, priced, to the cost counters.
func (m *Meter) Apply(url string, fams map[string]*dto.MetricFamily) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.targets[url]
	if !ok {
		t = &target{last: map[string]float64{}}
		m.targets[url] = t
	}

	restarted := false
	if f := fams[StartMetric]; f != nil && len(f.GetMetric()) == 1 {
		start := f.GetMetric()[0].GetGauge().GetValue()
		if t.baseline && t.startTime != 0 && start != t.startTime {
			restarted = true
			m.log.Info("flowserver restarted: its counters start again from zero", "target", url)
			m.metrics.resets.WithLabelValues(url, "restart").Inc()
			clear(t.last)
		}
		t.startTime = start
	}

	if f := fams[ZoneInfoMetric]; f != nil {
		zones := map[string]string{}
		for _, s := range f.GetMetric() {
			l := labels(s)
			if l["zone"] != "" && l["region"] != "" {
				zones[l["zone"]] = l["region"]
			}
		}
		t.zones = zones
	}
	regions := pricing.Regions{Known: m.knownRegions(), Cloud: m.opts.Table.Cloud}

	f := fams[TrafficMetric]
	if f == nil {
		if !m.warned[url] {
			m.log.Warn("target has no "+TrafficMetric+" series (no traffic reported yet, or not a flowserver)", "target", url)
			m.warned[url] = true
		}
	}
	if rf := fams[ReadyMetric]; rf != nil || fams[ServiceTrafficMetric] != nil {
		ready := map[string]int{}
		for _, s := range rf.GetMetric() {
			l := labels(s)
			if v := s.GetGauge().GetValue(); v >= 1 {
				ready[l["namespace"]+"\xff"+l["service"]+"\xff"+l["zone"]] = int(v)
			}
		}
		t.ready = ready
	}
	// Only the series of this scrape are remembered: one that vanished was removed by the flowserver
	// (its series TTL), and if it comes back it starts again from zero.
	last := make(map[string]float64, len(f.GetMetric()))
	m.grow(url, t, f, TrafficLabels, labelIndex, "", restarted, last, func(key string, values []string, delta float64) { m.add(key, values, delta, regions) })
	if sf := fams[ServiceTrafficMetric]; sf != nil {
		ready := m.readyEndpoints()
		m.grow(url, t, sf, ServiceTrafficLabels, serviceLabelIndex, "svc\xff", restarted, last, func(_ string, values []string, delta float64) {
			m.addService(values, delta, regions, ready)
		})
	}
	t.last = last
	t.baseline = true
	m.metrics.series.WithLabelValues(url).Set(float64(len(f.GetMetric())))
}

// grow adds the growth of every series of a counter family since the last scrape, with the baseline,
// reset and restart rules of the package comment; keys are prefixed so families share one map.
func (m *Meter) grow(url string, t *target, f *dto.MetricFamily, names []string, index map[string]int, prefix string, restarted bool,
	last map[string]float64, add func(key string, values []string, delta float64)) {
	values := make([]string, len(names))
	for _, s := range f.GetMetric() {
		clear(values)
		for _, lp := range s.GetLabel() {
			if i, ok := index[lp.GetName()]; ok {
				values[i] = lp.GetValue()
			}
		}
		key := prefix + strings.Join(values, "\xff")
		cur := s.GetCounter().GetValue()
		if s.GetCounter() == nil {
			cur = s.GetUntyped().GetValue()
		}
		prev, seen := t.last[key]
		last[key] = cur
		var delta float64
		switch {
		case !t.baseline:
			continue // baseline: traffic before costcalc started is not ours to count
		case !seen || restarted:
			delta = cur // a series born since the last scrape started at zero
		case cur < prev:
			delta = cur // the counter was reset
			m.metrics.resets.WithLabelValues(url, "series").Inc()
		default:
			delta = cur - prev
		}
		if delta == 0 {
			continue
		}
		add(key, values, delta)
	}
}

// readyEndpoints merges the ready-endpoint gauges of every target (they all watch the whole cluster):
// the largest count per Service and zone.
func (m *Meter) readyEndpoints() map[string]int {
	out := map[string]int{}
	for _, t := range m.targets {
		for k, n := range t.ready {
			out[k] = max(out[k], n)
		}
	}
	return out
}

// addService prices the cross-zone growth of one per-Service series. The part sent from a client zone
// where the Service has a ready endpoint (at this scrape) is what same-zone routing would have kept in
// zone: it is counted as avoidable too.
func (m *Meter) addService(values []string, bytes float64, regions pricing.Regions, ready map[string]int) {
	ns, svc, srcZone, dstZone := values[0], values[1], values[5], values[6]
	if svc == "" || srcZone == "" || dstZone == "" || srcZone == dstZone {
		return
	}
	perByte, class, _ := m.opts.Table.PerByteOf(pricing.Endpoint{Kind: "pod", Zone: srcZone}, pricing.Endpoint{Kind: "pod", Zone: dstZone}, regions)
	if class != pricing.InterZone && class != pricing.InterRegion {
		return // unpriced bytes are already counted by the traffic metric's unpriced counter
	}
	l := []string{ns, svc, srcZone, dstZone}
	// Keyed by these labels, not the flowserver series': several client workloads feed one series, and
	// it expires only when none of them has grown for SeriesTTL.
	g := m.touch("svc-cost\xff"+strings.Join(l, "\xff"), l)
	g.service = true
	m.metrics.serviceCost.WithLabelValues(l...).Add(bytes * perByte)
	if svc == overflow {
		return
	}
	local := false
	for _, part := range strings.Split(svc, "+") { // several Services back the pod: any of them counts
		local = local || ready[ns+"\xff"+part+"\xff"+srcZone] > 0
	}
	if local {
		m.metrics.serviceAvoidable.WithLabelValues(l...).Add(bytes * perByte)
	}
}

// touch returns what the meter remembers of the series key (values its labels), marked as grown now.
func (m *Meter) touch(key string, values []string) *grownSeries {
	g := m.grown[key]
	if g == nil {
		g = &grownSeries{values: slices.Clone(values)}
		m.grown[key] = g
	}
	g.updated = m.opts.Now()
	return g
}

func (m *Meter) add(key string, values []string, bytes float64, regions pricing.Regions) {
	g := m.touch(key, values)
	src := pricing.Endpoint{Namespace: values[0], Workload: values[1], Kind: values[2], Zone: values[3]}
	dst := pricing.Endpoint{Namespace: values[4], Workload: values[5], Kind: values[6], Zone: values[7]}
	perByte, class, reason := m.opts.Table.PerByteOf(src, dst, regions)
	m.metrics.bytes.WithLabelValues(string(class)).Add(bytes)
	switch class {
	case pricing.Unpriced:
		m.metrics.unpriced.WithLabelValues(reason).Add(bytes)
		wkey := reason + "\xff" + key
		if !m.warned[wkey] {
			m.warned[wkey] = true
			g.warned = append(g.warned, wkey)
			m.log.Warn("traffic not priced: an end's zone or region is unknown", "reason", reason,
				"src", src.Namespace+"/"+src.Workload, "src_kind", src.Kind, "src_zone", src.Zone,
				"dst", dst.Namespace+"/"+dst.Workload, "dst_kind", dst.Kind, "dst_zone", dst.Zone)
		}
	case pricing.SameZone:
	default:
		m.metrics.cost.WithLabelValues(values...).Add(bytes * perByte)
		if !g.cost {
			g.cost = true
			m.metrics.costSeries.Set(float64(m.costSeries()))
		}
	}
}

// knownRegions merges the zone_info of every target; per-zone flowservers each know their own zones.
func (m *Meter) knownRegions() map[string]string {
	out := map[string]string{}
	for _, t := range m.targets {
		for z, r := range t.zones {
			out[z] = r
		}
	}
	return out
}

func labels(s *dto.Metric) map[string]string {
	out := make(map[string]string, len(s.GetLabel()))
	for _, lp := range s.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}
