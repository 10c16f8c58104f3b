package metricstest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sample is one series of a scrape, named as the text format writes it: a histogram's buckets are
// name_bucket{le}, with name_sum and name_count beside them.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Key is the series' identity: name and sorted labels.
func (s Sample) Key() string {
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(s.Name)
	for _, k := range keys {
		fmt.Fprintf(&b, "|%s=%q", k, s.Labels[k])
	}
	return b.String()
}

// Samples is a flat scrape: what arithmetic between scrapes (Plus, Minus) works on.
type Samples []Sample

// Samples flattens the parsed families into series as the text format names them.
func (f Families) Samples() Samples {
	var out Samples
	for _, name := range f.Names() {
		for _, m := range f[name].GetMetric() {
			labels := make(map[string]string, len(m.GetLabel())+1)
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			with := func(k, v string) map[string]string {
				l := make(map[string]string, len(labels)+1)
				for a, b := range labels {
					l[a] = b
				}
				l[k] = v
				return l
			}
			switch {
			case m.Histogram != nil:
				h := m.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					inf = inf || math.IsInf(b.GetUpperBound(), 1)
					out = append(out, Sample{name + "_bucket", with("le", formatFloat(b.GetUpperBound())), float64(b.GetCumulativeCount())})
				}
				if !inf { // a parsed scrape lists +Inf; a gathered histogram leaves it implicit
					out = append(out, Sample{name + "_bucket", with("le", "+Inf"), float64(h.GetSampleCount())})
				}
				out = append(out, Sample{name + "_sum", labels, h.GetSampleSum()}, Sample{name + "_count", labels, float64(h.GetSampleCount())})
			case m.Summary != nil:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					out = append(out, Sample{name, with("quantile", formatFloat(q.GetQuantile())), q.GetValue()})
				}
				out = append(out, Sample{name + "_sum", labels, s.GetSampleSum()}, Sample{name + "_count", labels, float64(s.GetSampleCount())})
			default:
				out = append(out, Sample{name, labels, value(m)})
			}
		}
	}
	return out
}

func formatFloat(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Series returns the samples named name whose labels include match.
func (sc Samples) Series(name string, match map[string]string) []Sample {
	var out []Sample
next:
	for _, s := range sc {
		if s.Name != name {
			continue
		}
		for k, v := range match {
			if s.Labels[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// Sum adds the values of Series(name, match).
func (sc Samples) Sum(name string, match map[string]string) float64 {
	var t float64
	for _, s := range sc.Series(name, match) {
		t += s.Value
	}
	return t
}

// Plus returns the samples of sc and o with values of equal series added (for a restarted process:
// its counters before the restart plus those after).
func (sc Samples) Plus(o Samples) Samples {
	idx := map[string]int{}
	out := make(Samples, 0, len(sc)+len(o))
	for _, s := range append(append(Samples{}, sc...), o...) {
		k := s.Key()
		if i, ok := idx[k]; ok {
			out[i].Value += s.Value
			continue
		}
		idx[k] = len(out)
		out = append(out, Sample{Name: s.Name, Labels: s.Labels, Value: s.Value})
	}
	return out
}

// Minus returns sc minus o, series by series (a phase's growth from two cumulative scrapes).
func (sc Samples) Minus(o Samples) Samples {
	prev := map[string]float64{}
	for _, s := range o {
		prev[s.Key()] = s.Value
	}
	out := make(Samples, 0, len(sc))
	for _, s := range sc {
		v := s.Value - prev[s.Key()]
		if math.Abs(v) < 1e-15 {
			v = 0
		}
		out = append(out, Sample{Name: s.Name, Labels: s.Labels, Value: v})
	}
	return out
}

// HistogramQuantile estimates the q-quantile of histogram name from its cumulative buckets the way
// PromQL's histogram_quantile does: linear interpolation inside the bucket holding the rank, and the
// highest finite bound when the rank falls in the +Inf bucket, which beyond then reports: the true value
// is only known to be above it. It reports ok false with no observations. Buckets of equal le across
// series (several label sets) are added first, as sum by (le) would.
func (sc Samples) HistogramQuantile(name string, q float64) (v float64, beyond, ok bool) {
	counts := map[float64]float64{}
	for _, s := range sc.Series(name+"_bucket", nil) {
		le, err := strconv.ParseFloat(s.Labels["le"], 64)
		if err != nil {
			continue
		}
		counts[le] += s.Value
	}
	bounds := make([]float64, 0, len(counts))
	for le := range counts {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || !math.IsInf(bounds[len(bounds)-1], 1) {
		return 0, false, false
	}
	total := counts[bounds[len(bounds)-1]]
	if total == 0 {
		return 0, false, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, upper := range bounds {
		c := counts[upper]
		if c >= rank {
			if math.IsInf(upper, 1) {
				if i == 0 {
					return 0, false, false
				}
				return bounds[i-1], true, true
			}
			if c == below {
				return upper, false, true
			}
			return lower + (upper-lower)*(rank-below)/(c-below), false, true
		}
		lower, below = upper, c
	}
	// The rank is above the total: only a q over 1 gets here.
	if len(bounds) < 2 {
		return 0, false, false
	}
	return bounds[len(bounds)-2], true, true
}

// ErrBusy is a 503 answer: the server refuses more scrapes at once; Fetch tries again.
var ErrBusy = errors.New("503 Service Unavailable")

// Fetch GETs url (a /metrics endpoint) with client (nil: http.DefaultClient) and parses it, trying
// again a few times on 503.
func Fetch(ctx context.Context, client *http.Client, url string) (Families, error) {
	for attempt := 1; ; attempt++ {
		fams, err := fetch(ctx, client, url)
		if !errors.Is(err, ErrBusy) || attempt == 5 {
			return fams, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func fetch(ctx context.Context, client *http.Client, url string) (Families, error) {
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return nil, fmt.Errorf("scraping %s: %w", url, ErrBusy)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: status %s", url, resp.Status)
	}
	fams, err := Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	return fams, nil
}
