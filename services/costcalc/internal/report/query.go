// Package report reads the flowserver traffic counters from a Prometheus-compatible query API for a time
// range, prices them, and writes the top workload pairs and zone pairs by cost with a monthly
// projection, as a table, JSON, CSV or a self-contained HTML page.
package report

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/meter"
)

// Methods of reading the range.
const (
	// MethodSamples reads every raw sample in the range and adds up the increases between them, with
	// counter resets: exact, but it transfers every sample (fine for hours or days).
	MethodSamples = "samples"
	// MethodIncrease asks Prometheus for increase() over the range: one number per series, extrapolated
	// to the range's edges as Prometheus does (for weeks or months).
	MethodIncrease = "increase"
)

// chunk bounds the samples one query returns: a range longer than this is read in pieces.
const chunk = 6 * time.Hour

// ErrNoData is returned when Prometheus has no traffic series in the range.
var ErrNoData = errors.New("no data")

// Traffic is the bytes of one workload pair over the range, summed over every flowserver.
type Traffic struct {
	Labels [8]string // meter.TrafficLabels order
	Bytes  float64
}

// Data is what the report is computed from.
type Data struct {
	Traffic []Traffic
	Zones   map[string]string // zone → region from zonetoll_zone_info
}

// Source reads Data for a range.
type Source struct {
	URL    string
	Method string
	api    v1.API
}

// NewSource connects (lazily) to the query API at url.
func NewSource(url, method string) (*Source, error) {
	if method == "" {
		method = MethodSamples
	}
	if method != MethodSamples && method != MethodIncrease {
		return nil, fmt.Errorf("method %q: expected %s or %s", method, MethodSamples, MethodIncrease)
	}
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("reading the Prometheus URL %q: %w", url, err)
	}
	return &Source{URL: url, Method: method, api: v1.NewAPI(c)}, nil
}

func (s *Source) query(ctx context.Context, q string, ts time.Time) (model.Value, error) {
	v, _, err := s.api.Query(ctx, q, ts)
	if err != nil {
		return nil, fmt.Errorf("querying Prometheus at %s (%s): %w", s.URL, q, err)
	}
	return v, nil
}

// Read fetches the traffic of [start, end].
func (s *Source) Read(ctx context.Context, start, end time.Time) (*Data, error) {
	if !end.After(start) {
		return nil, fmt.Errorf("range %s to %s: the end must be after the start", start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	series, err := s.Increase(ctx, meter.TrafficMetric, meter.TrafficLabels, start, end)
	if err != nil {
		return nil, err
	}
	if len(series) == 0 {
		return nil, fmt.Errorf("%w: Prometheus at %s has no %s series between %s and %s: is it scraping the flowservers?",
			ErrNoData, s.URL, meter.TrafficMetric, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	d := &Data{}
	for _, c := range series {
		var t Traffic
		copy(t.Labels[:], c.Labels)
		t.Bytes = c.Value
		d.Traffic = append(d.Traffic, t)
	}
	if d.Zones, err = s.ZoneRegions(ctx, start, end); err != nil {
		return nil, err
	}
	return d, nil
}

// ZoneRegions reads zone → region from zonetoll_zone_info over [start, end].
func (s *Source) ZoneRegions(ctx context.Context, start, end time.Time) (map[string]string, error) {
	zones := map[string]string{}
	v, err := s.query(ctx, fmt.Sprintf("group by (zone, region) (max_over_time(%s[%s]))", meter.ZoneInfoMetric, promDuration(end.Sub(start))), end)
	if err != nil {
		return nil, err
	}
	if vec, ok := v.(model.Vector); ok {
		for _, smp := range vec {
			if z, r := string(smp.Metric["zone"]), string(smp.Metric["region"]); z != "" && r != "" {
				zones[z] = r
			}
		}
	}
	return zones, nil
}

// Counter is the increase of a counter over a range for one set of label values (in the order asked
// for), summed over every Prometheus series with those values (every flowserver, every other label).
type Counter struct {
	Labels []string
	Value  float64
}

// Increase reads how much metric grew over [start, end] by the labels asked for, with the Source's
// method, sorted by label values. Every counter of the flowserver is read this way.
func (s *Source) Increase(ctx context.Context, metric string, labels []string, start, end time.Time) ([]Counter, error) {
	if !end.After(start) {
		return nil, fmt.Errorf("range %s to %s: the end must be after the start", start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	var out map[string]*Counter
	var err error
	if s.Method == MethodIncrease {
		out, err = s.readIncrease(ctx, metric, labels, start, end)
	} else {
		out, err = s.readSamples(ctx, metric, labels, start, end)
	}
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	list := make([]Counter, 0, len(keys))
	for _, k := range keys {
		list = append(list, *out[k])
	}
	return list, nil
}

// readSamples adds up, per Prometheus series, every increase between the value at start and the raw
// samples up to end. A series absent at start was born in the range and starts from zero; a drop is a
// counter reset whose new value is all new traffic.
func (s *Source) readSamples(ctx context.Context, metric string, labels []string, start, end time.Time) (map[string]*Counter, error) {
	type state struct {
		labels model.Metric
		last   float64
		lastTS model.Time
		sum    float64
	}
	series := map[model.Fingerprint]*state{}
	v, err := s.query(ctx, metric, start)
	if err != nil {
		return nil, err
	}
	if vec, ok := v.(model.Vector); ok {
		for _, smp := range vec {
			series[smp.Metric.Fingerprint()] = &state{labels: smp.Metric, last: float64(smp.Value), lastTS: smp.Timestamp}
		}
	}
	for from := start; from.Before(end); from = from.Add(chunk) {
		to := from.Add(chunk)
		if to.After(end) {
			to = end
		}
		v, err := s.query(ctx, fmt.Sprintf("%s[%s]", metric, promDuration(to.Sub(from))), to)
		if err != nil {
			return nil, err
		}
		m, ok := v.(model.Matrix)
		if !ok {
			return nil, fmt.Errorf("querying Prometheus at %s: got a %s, want a matrix", s.URL, v.Type())
		}
		for _, ss := range m {
			fp := ss.Metric.Fingerprint()
			st := series[fp]
			if st == nil {
				st = &state{labels: ss.Metric, lastTS: math.MinInt64}
				series[fp] = st
			}
			for _, p := range ss.Values {
				if p.Timestamp <= st.lastTS {
					continue // the sample at a chunk edge (or at start) is in two queries
				}
				cur := float64(p.Value)
				if cur >= st.last {
					st.sum += cur - st.last
				} else {
					st.sum += cur
				}
				st.last, st.lastTS = cur, p.Timestamp
			}
		}
	}
	out := map[string]*Counter{}
	for _, st := range series {
		addCounter(out, labels, st.labels, st.sum)
	}
	return out, nil
}

func (s *Source) readIncrease(ctx context.Context, metric string, labels []string, start, end time.Time) (map[string]*Counter, error) {
	q := fmt.Sprintf("sum by (%s) (increase(%s[%s]))", strings.Join(labels, ", "), metric, promDuration(end.Sub(start)))
	v, err := s.query(ctx, q, end)
	if err != nil {
		return nil, err
	}
	out := map[string]*Counter{}
	if vec, ok := v.(model.Vector); ok {
		for _, smp := range vec {
			addCounter(out, labels, smp.Metric, float64(smp.Value))
		}
	}
	return out, nil
}

func addCounter(out map[string]*Counter, names []string, m model.Metric, value float64) {
	l := make([]string, len(names))
	for i, name := range names {
		l[i] = string(m[model.LabelName(name)])
	}
	key := strings.Join(l, "\xff")
	c := out[key]
	if c == nil {
		c = &Counter{Labels: l}
		out[key] = c
	}
	c.Value += value
}

// Latest reads a gauge as it last was in [start, end], by the labels asked for (max over the
// flowservers, which all export the same gauges). A group (the values of the first groupBy labels)
// present in the last lookback before end takes those series; a group seen only earlier in the range
// takes its last values over the whole range, so a Service that went away mid-range still shows.
func (s *Source) Latest(ctx context.Context, metric string, by []string, groupBy int, start, end time.Time) ([]model.Metric, []float64, error) {
	const lookback = 5 * time.Minute
	window := lookback
	if end.Sub(start) < window {
		window = end.Sub(start)
	}
	read := func(d time.Duration) (model.Vector, error) {
		v, err := s.query(ctx, fmt.Sprintf("max by (%s) (last_over_time(%s[%s]))", strings.Join(by, ", "), metric, promDuration(d)), end)
		if err != nil {
			return nil, err
		}
		vec, _ := v.(model.Vector)
		return vec, nil
	}
	group := func(m model.Metric) string {
		var b strings.Builder
		for _, l := range by[:groupBy] {
			b.WriteString(string(m[model.LabelName(l)]))
			b.WriteByte(0xff)
		}
		return b.String()
	}
	recent, err := read(window)
	if err != nil {
		return nil, nil, err
	}
	var metrics []model.Metric
	var values []float64
	seen := map[string]bool{}
	for _, smp := range recent {
		seen[group(smp.Metric)] = true
		metrics, values = append(metrics, smp.Metric), append(values, float64(smp.Value))
	}
	if window < end.Sub(start) {
		all, err := read(end.Sub(start))
		if err != nil {
			return nil, nil, err
		}
		for _, smp := range all {
			if !seen[group(smp.Metric)] {
				metrics, values = append(metrics, smp.Metric), append(values, float64(smp.Value))
			}
		}
	}
	return metrics, values, nil
}

// promDuration writes d in whole milliseconds, the finest a PromQL range takes.
func promDuration(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if ms%1000 == 0 {
		return fmt.Sprintf("%ds", ms/1000)
	}
	return fmt.Sprintf("%dms", ms)
}
