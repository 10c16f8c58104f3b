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
	var traffic map[string]*Traffic
	var err error
	if s.Method == MethodIncrease {
		traffic, err = s.readIncrease(ctx, start, end)
	} else {
		traffic, err = s.readSamples(ctx, start, end)
	}
	if err != nil {
		return nil, err
	}
	if len(traffic) == 0 {
		return nil, fmt.Errorf("%w: Prometheus at %s has no %s series between %s and %s: is it scraping the flowservers?",
			ErrNoData, s.URL, meter.TrafficMetric, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	d := &Data{Zones: map[string]string{}}
	for _, t := range traffic {
		d.Traffic = append(d.Traffic, *t)
	}
	sort.Slice(d.Traffic, func(i, j int) bool {
		return strings.Join(d.Traffic[i].Labels[:], "\xff") < strings.Join(d.Traffic[j].Labels[:], "\xff")
	})
	v, err := s.query(ctx, fmt.Sprintf("group by (zone, region) (max_over_time(%s[%s]))", meter.ZoneInfoMetric, promDuration(end.Sub(start))), end)
	if err != nil {
		return nil, err
	}
	if vec, ok := v.(model.Vector); ok {
		for _, smp := range vec {
			if z, r := string(smp.Metric["zone"]), string(smp.Metric["region"]); z != "" && r != "" {
				d.Zones[z] = r
			}
		}
	}
	return d, nil
}

// readSamples adds up, per Prometheus series, every increase between the value at start and the raw
// samples up to end. A series absent at start was born in the range and starts from zero; a drop is a
// counter reset whose new value is all new traffic.
func (s *Source) readSamples(ctx context.Context, start, end time.Time) (map[string]*Traffic, error) {
	type state struct {
		labels model.Metric
		last   float64
		lastTS model.Time
		sum    float64
	}
	series := map[model.Fingerprint]*state{}
	v, err := s.query(ctx, meter.TrafficMetric, start)
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
		v, err := s.query(ctx, fmt.Sprintf("%s[%s]", meter.TrafficMetric, promDuration(to.Sub(from))), to)
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
	out := map[string]*Traffic{}
	for _, st := range series {
		addTraffic(out, st.labels, st.sum)
	}
	return out, nil
}

func (s *Source) readIncrease(ctx context.Context, start, end time.Time) (map[string]*Traffic, error) {
	q := fmt.Sprintf("sum by (%s) (increase(%s[%s]))", strings.Join(meter.TrafficLabels, ", "), meter.TrafficMetric, promDuration(end.Sub(start)))
	v, err := s.query(ctx, q, end)
	if err != nil {
		return nil, err
	}
	out := map[string]*Traffic{}
	if vec, ok := v.(model.Vector); ok {
		for _, smp := range vec {
			addTraffic(out, smp.Metric, float64(smp.Value))
		}
	}
	return out, nil
}

func addTraffic(out map[string]*Traffic, m model.Metric, bytes float64) {
	var l [8]string
	for i, name := range meter.TrafficLabels {
		l[i] = string(m[model.LabelName(name)])
	}
	key := strings.Join(l[:], "\xff")
	t := out[key]
	if t == nil {
		t = &Traffic{Labels: l}
		out[key] = t
	}
	t.Bytes += bytes
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
