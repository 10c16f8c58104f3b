// Package meter is the `costcalc run` loop: it scrapes each flowserver's /metrics and exposes the dollars
// of its traffic.
//
// The cost counters are derived, not accumulated: for every series of zonetoll_traffic_bytes_total (and
// of zonetoll_service_traffic_bytes_total) of every flowserver, zonetoll_cross_zone_cost_dollars_total
// (zonetoll_service_cross_zone_cost_dollars_total) has one series with the same labels plus target (the
// flowserver's URL) and price, whose value is price × that series' bytes at the last scrape. The value
// is a function of what the flowserver serves, so a restarted costcalc exposes, from its first scrape,
// exactly the values it would have had: Prometheus reads one counter continuing across the restart, and
// nothing costcalc missed while it was down is lost. Per flowserver and per source series, so that one
// series starting again from zero (its flowserver restarted, or dropped and brought it back) drops only
// its own cost series, which Prometheus counts as a reset as it does for the bytes; a sum over sources
// would drop with any of them and be read as a reset of the whole sum. The price is a label: a price change
// (a restart with other prices) starts new series instead of re-pricing the dollars Prometheus already
// holds. docs/costcalc.md has the rules and their limits.
//
// The avoidable-cost counter depends on the Service's ready endpoints at the time of the traffic, which
// no flowserver total records, so it is accumulated as before: the growth of each per-Service series
// between scrapes, counted as Prometheus counts (only increases; a drop is a reset and the new value is
// all new; a flowserver whose process_start_time_seconds changed has restarted and its series start from
// zero). The first scrape of a target takes a baseline, so growth from before costcalc started, or while
// it was down, is not counted there. The bytes-by-class and unpriced-bytes counters are accumulated the
// same way.
package meter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/timestamppb"

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

// Meter scrapes targets and exposes their dollars.
type Meter struct {
	opts    Options
	client  *http.Client
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	targets map[string]*target
	scraped bool            // one round has finished
	warned  map[string]bool // per target: the "no traffic metric" warning was logged
	// avoidable is every series of the avoidable-cost counter, by its labels: when it last grew, for
	// SeriesTTL. It is the one accumulated dollar counter (see the package comment).
	avoidable map[string]*avoidableSeries
}

// avoidableSeries is one series of the avoidable-cost counter.
type avoidableSeries struct {
	values  []string  // AvoidableLabels values
	updated time.Time // last time it grew
}

// series is what the meter knows of one counter series of one flowserver: enough to expose its dollars
// (price × bytes) and to find its growth for the accumulated counters.
type series struct {
	values  []string // the flowserver series' label values (TrafficLabels or ServiceTrafficLabels order)
	bytes   float64  // its value at the last successful scrape that had it
	present bool     // in the last successful scrape of its target
	priced  bool     // it has a cost series
	perByte float64  // dollars per byte, every billed side together
	price   string   // the cost series' price label: dollars per unit, e.g. "0.02/GiB"
	// created is the flowserver's process start when bytes were read (nil when it does not expose one):
	// the cost counter's created timestamp, when its value was 0.
	created *timestamppb.Timestamp
	labels  []*dto.LabelPair // the cost series' labels, made once (nil: to be made)
	updated time.Time        // last time bytes changed, for SeriesTTL
	hidden  bool             // expired by SeriesTTL while the flowserver still serves it; shown again once it grows
	warned  bool             // the "not priced" warning was logged
}

// target is what the meter remembers of one flowserver between scrapes.
type target struct {
	baseline  bool    // the first successful scrape has been taken (for the accumulated counters)
	startTime float64 // process_start_time_seconds; 0 when the target does not expose it
	traffic   map[string]*series
	service   map[string]*series
	zones     map[string]string // zone → region from zonetoll_zone_info
	ready     map[string]int    // namespace\xffservice\xffzone → ready endpoints, from zonetoll_service_ready_endpoints
}

func newTarget() *target {
	return &target{traffic: map[string]*series{}, service: map[string]*series{}}
}

// New builds a Meter and registers its metrics, price gauges included, on reg.
func New(opts Options, reg prometheus.Registerer, log *slog.Logger) (*Meter, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Meter{opts: opts, client: opts.Client, log: log.With("component", "meter"), targets: map[string]*target{}, warned: map[string]bool{},
		avoidable: map[string]*avoidableSeries{}}
	if m.client == nil {
		m.client = &http.Client{Timeout: opts.Timeout}
	}
	for _, u := range opts.Targets {
		m.targets[u] = newTarget()
	}
	var err error
	if m.metrics, err = newMetrics(reg, opts.Table, m); err != nil {
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

// Expire takes the cost series that have not grown since now-SeriesTTL off /metrics. A series its
// flowserver no longer serves is forgotten; one it still serves stays remembered (hidden) and shows again,
// with all its dollars, once it grows: Prometheus then reads the same series continuing, so nothing is
// lost or counted twice. An avoidable-cost series is forgotten; if it grows again it starts from zero.
func (m *Meter) Expire(now time.Time) {
	if m.opts.SeriesTTL <= 0 {
		return
	}
	cutoff := now.Add(-m.opts.SeriesTTL)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.targets {
		for _, tbl := range []map[string]*series{t.traffic, t.service} {
			for key, s := range tbl {
				if !s.updated.Before(cutoff) {
					continue
				}
				if s.priced && !s.hidden {
					m.metrics.expired.Inc()
				}
				s.hidden = true
				if !s.present {
					delete(tbl, key)
				}
			}
		}
	}
	for key, a := range m.avoidable {
		if a.updated.Before(cutoff) {
			m.metrics.serviceAvoidable.DeleteLabelValues(a.values...)
			m.metrics.expired.Inc()
			delete(m.avoidable, key)
		}
	}
	m.metrics.costSeries.Set(float64(m.costSeries()))
}

// costSeries counts the series of the cost counter on /metrics; the caller holds m.mu.
func (m *Meter) costSeries() int {
	n := 0
	for _, t := range m.targets {
		for _, s := range t.traffic {
			if s.priced && !s.hidden {
				n++
			}
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

// Apply takes one successful scrape of target url: it records every traffic and per-Service series'
// bytes and price (the cost series are derived from them when /metrics is read), finds restarts and
// resets, and adds the growth to the accumulated counters.
func (m *Meter) Apply(url string, fams map[string]*dto.MetricFamily) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.targets[url]
	if !ok {
		t = newTarget()
		m.targets[url] = t
	}

	restarted := false
	if f := fams[StartMetric]; f != nil && len(f.GetMetric()) == 1 {
		start := f.GetMetric()[0].GetGauge().GetValue()
		if t.baseline && t.startTime != 0 && start != t.startTime {
			restarted = true
			m.log.Info("flowserver restarted: its counters start again from zero", "target", url)
			m.metrics.resets.WithLabelValues(url, "restart").Inc()
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
	m.read(url, t, t.traffic, f, labelIndex, restarted, func(s *series, delta float64) { m.price(s, regions, delta) })
	ready := m.readyEndpoints()
	m.read(url, t, t.service, fams[ServiceTrafficMetric], serviceLabelIndex, restarted, func(s *series, delta float64) {
		m.priceService(s, regions, ready, delta)
	})
	t.baseline = true
	m.metrics.series.WithLabelValues(url).Set(float64(len(f.GetMetric())))
	m.metrics.costSeries.Set(float64(m.costSeries()))
}

// read records the value of every series of a counter family in tbl and calls price with its growth since
// the last scrape, by the baseline, reset and restart rules of the package comment. A series of tbl
// absent from this scrape was removed by the flowserver (its series TTL): its cost series stays as it
// was until SeriesTTL, and if the flowserver brings it back it counts from zero.
func (m *Meter) read(url string, t *target, tbl map[string]*series, f *dto.MetricFamily, index map[string]int, restarted bool,
	price func(s *series, delta float64)) {
	now := m.opts.Now()
	var created *timestamppb.Timestamp
	if t.startTime > 0 {
		created = timestamppb.New(time.Unix(0, int64(t.startTime*1e9)))
	}
	values := make([]string, len(index))
	seen := make(map[*series]bool, len(f.GetMetric()))
	for _, sample := range f.GetMetric() {
		clear(values)
		for _, lp := range sample.GetLabel() {
			if i, ok := index[lp.GetName()]; ok {
				values[i] = lp.GetValue()
			}
		}
		key := strings.Join(values, "\xff")
		cur := sample.GetCounter().GetValue()
		if sample.GetCounter() == nil {
			cur = sample.GetUntyped().GetValue()
		}
		s := tbl[key]
		var delta float64
		switch {
		case !t.baseline:
			// baseline: traffic before costcalc started is not the accumulated counters' to count
		case s == nil || !s.present || restarted:
			delta = cur // a series born since the last scrape started at zero
		case cur < s.bytes:
			delta = cur // the counter was reset
			m.metrics.resets.WithLabelValues(url, "series").Inc()
		default:
			delta = cur - s.bytes
		}
		if s == nil {
			s = &series{values: slices.Clone(values), updated: now}
			tbl[key] = s
		} else if cur != s.bytes {
			s.updated, s.hidden = now, false
		}
		s.bytes, s.present, s.created = cur, true, created // one value shared by the target's series
		seen[s] = true
		price(s, delta)
	}
	for _, s := range tbl {
		if !seen[s] {
			s.present = false
		}
	}
}

// setPrice records what one byte of s costs and the price label of its cost series.
func (m *Meter) setPrice(s *series, perByte float64) {
	if s.priced && s.perByte == perByte {
		return
	}
	s.priced, s.perByte, s.labels = true, perByte, nil
	unit := m.opts.Table.Unit
	s.price = strconv.FormatFloat(perByte*unit.Bytes(), 'g', 12, 64) + "/" + string(unit)
}

// price prices one traffic series and counts its growth by class.
func (m *Meter) price(s *series, regions pricing.Regions, bytes float64) {
	v := s.values
	src := pricing.Endpoint{Namespace: v[0], Workload: v[1], Kind: v[2], Zone: v[3]}
	dst := pricing.Endpoint{Namespace: v[4], Workload: v[5], Kind: v[6], Zone: v[7]}
	perByte, class, reason := m.opts.Table.PerByteOf(src, dst, regions)
	m.metrics.bytes.WithLabelValues(string(class)).Add(bytes)
	switch class {
	case pricing.Unpriced:
		s.priced = false
		m.metrics.unpriced.WithLabelValues(reason).Add(bytes)
		if !s.warned {
			s.warned = true
			m.log.Warn("traffic not priced: an end's zone or region is unknown", "reason", reason,
				"src", src.Namespace+"/"+src.Workload, "src_kind", src.Kind, "src_zone", src.Zone,
				"dst", dst.Namespace+"/"+dst.Workload, "dst_kind", dst.Kind, "dst_zone", dst.Zone)
		}
	case pricing.SameZone:
		s.priced = false
	default:
		m.setPrice(s, perByte)
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

// priceService prices one per-Service series if it crosses a zone or region. The part of its growth sent
// from a client zone where the Service has a ready endpoint (at this scrape) is what same-zone routing
// would have kept in zone: it is added to the avoidable cost.
func (m *Meter) priceService(s *series, regions pricing.Regions, ready map[string]int, bytes float64) {
	ns, svc, srcZone, dstZone := s.values[0], s.values[1], s.values[5], s.values[6]
	if svc == "" || srcZone == "" || dstZone == "" || srcZone == dstZone {
		s.priced = false
		return
	}
	perByte, class, _ := m.opts.Table.PerByteOf(pricing.Endpoint{Kind: "pod", Zone: srcZone}, pricing.Endpoint{Kind: "pod", Zone: dstZone}, regions)
	if class != pricing.InterZone && class != pricing.InterRegion {
		s.priced = false
		return // unpriced bytes are already counted by the traffic metric's unpriced counter
	}
	m.setPrice(s, perByte)
	if svc == overflow || bytes == 0 {
		return
	}
	local := false
	for _, part := range strings.Split(svc, "+") { // several Services back the pod: any of them counts
		local = local || ready[ns+"\xff"+part+"\xff"+srcZone] > 0
	}
	if !local {
		return
	}
	l := []string{ns, svc, srcZone, dstZone}
	key := strings.Join(l, "\xff")
	a := m.avoidable[key]
	if a == nil {
		a = &avoidableSeries{values: l}
		m.avoidable[key] = a
	}
	a.updated = m.opts.Now()
	m.metrics.serviceAvoidable.WithLabelValues(l...).Add(bytes * perByte)
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

// costCollector exposes the derived cost series when /metrics is read: for every priced series of every
// target, price × its bytes, with the flowserver series' labels, the target and the price.
type costCollector struct {
	m             *Meter
	cost, service *prometheus.Desc
}

func (c costCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.cost
	ch <- c.service
}

func (c costCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for url, t := range c.m.targets {
		for _, s := range t.traffic {
			c.send(ch, c.cost, url, s)
		}
		for _, s := range t.service {
			c.send(ch, c.service, url, s)
		}
	}
}

func (c costCollector) send(ch chan<- prometheus.Metric, desc *prometheus.Desc, url string, s *series) {
	if !s.priced || s.hidden {
		return
	}
	if s.labels == nil {
		// The label values come from a parsed exposition (valid UTF-8) and the settings.
		s.labels = prometheus.MakeLabelPairs(desc, append(slices.Clone(s.values), url, s.price))
	}
	ch <- costMetric{desc: desc, labels: s.labels, value: s.perByte * s.bytes, created: s.created}
}

// costMetric is one cost series as /metrics writes it. Its labels are made once per series, not per
// read of /metrics (as prometheus.NewConstMetric would): 20,000 series cost a third of the memory.
type costMetric struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	value   float64
	created *timestamppb.Timestamp
}

func (c costMetric) Desc() *prometheus.Desc { return c.desc }

func (c costMetric) Write(out *dto.Metric) error {
	out.Label = c.labels
	out.Counter = &dto.Counter{Value: &c.value, CreatedTimestamp: c.created}
	return nil
}

func labels(s *dto.Metric) map[string]string {
	out := make(map[string]string, len(s.GetLabel()))
	for _, lp := range s.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}
