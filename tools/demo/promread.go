package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

// What the demo and its test read as the truth is what a user reads: the demo's Prometheus, which scrapes
// every flowserver, agent and costcalc every second. A process restart resets its in-memory counters, so
// a counter's total over a range is the sum of the increases between its raw samples, a reset adding its
// whole new value (what increase() does, without its extrapolation to the range's edges, which would make
// the figures inexact). PromQL itself is never asked to add anything.

// promPoint is one raw sample: Prometheus' timestamp (milliseconds) and value.
type promPoint struct {
	T int64
	V float64
}

// promSeries is one series' raw samples in a range, oldest first.
type promSeries struct {
	Name   string
	Labels map[string]string // without __name__; job and instance included
	Points []promPoint
}

// promRange returns the raw samples of selector over the rng before at (a range-vector query evaluated
// at at).
func (d *Demo) promRange(ctx context.Context, selector string, at time.Time, rng time.Duration) ([]promSeries, error) {
	secs := int64(math.Ceil(rng.Seconds()))
	if secs < 1 {
		secs = 1
	}
	q := fmt.Sprintf("%s[%ds]", selector, secs)
	u := "http://" + d.Prom.Addr + "/api/v1/query?" + url.Values{
		"query": {q}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)},
	}.Encode()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("querying Prometheus for %s: %w", q, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("querying Prometheus for %s: %w", q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("reading Prometheus' answer to %s: %w", q, err)
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding Prometheus' answer to %s (HTTP %d): %w", q, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("querying %s: Prometheus refused it (HTTP %d): %s", q, resp.StatusCode, r.Error)
	}
	if r.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("querying %s: Prometheus answered a %s, want a matrix", q, r.Data.ResultType)
	}
	out := make([]promSeries, 0, len(r.Data.Result))
	for _, res := range r.Data.Result {
		s := promSeries{Name: res.Metric["__name__"], Labels: map[string]string{}}
		for k, v := range res.Metric {
			if k != "__name__" {
				s.Labels[k] = v
			}
		}
		for _, p := range res.Values {
			ts, ok1 := p[0].(float64)
			vs, ok2 := p[1].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("querying %s: Prometheus answered a sample %v, want [time, \"value\"]", q, p)
			}
			v, err := strconv.ParseFloat(vs, 64)
			if err != nil {
				return nil, fmt.Errorf("querying %s: Prometheus answered the value %q: %w", q, vs, err)
			}
			s.Points = append(s.Points, promPoint{T: int64(math.Round(ts * 1000)), V: v})
		}
		sort.Slice(s.Points, func(i, j int) bool { return s.Points[i].T < s.Points[j].T })
		out = append(out, s)
	}
	return out, nil
}

// startTimes is process_start_time_seconds of each target (job/instance) at each scrape's timestamp:
// a process's counters start again from zero when it changes.
type startTimes map[string]map[int64]float64

func targetKey(l map[string]string) string { return l["job"] + "/" + l["instance"] }

func newStartTimes(series []promSeries) startTimes {
	st := startTimes{}
	for _, s := range series {
		k := targetKey(s.Labels)
		if st[k] == nil {
			st[k] = map[int64]float64{}
		}
		for _, p := range s.Points {
			st[k][p.T] = p.V
		}
	}
	return st
}

// restarted reports whether the target of labels was a new process at scrape b compared with scrape a.
func (st startTimes) restarted(labels map[string]string, a, b int64) bool {
	m := st[targetKey(labels)]
	if m == nil {
		return false
	}
	sa, okA := m[a]
	sb, okB := m[b]
	return okA && okB && sa != sb
}

// counterTotal is a counter's growth over its raw samples: a series first seen in the range counts from
// zero (the demo's Prometheus starts before any traffic), every increase between samples adds, and a reset
// — the value drops, or (with st) the target's process started again between the two scrapes — adds the
// whole new value. Only samples with timestamps in (from, to] add; the last sample at or before from is
// the baseline, so totals of consecutive ranges add up.
func counterTotal(s promSeries, st startTimes, from, to int64) float64 {
	var sum float64
	have := false
	var last promPoint
	for _, p := range s.Points {
		if p.T > to {
			break
		}
		if p.T <= from {
			last, have = p, true
			continue
		}
		switch {
		case !have:
			sum += p.V
		case p.V < last.V || st.restarted(s.Labels, last.T, p.T):
			sum += p.V
		default:
			sum += p.V - last.V
		}
		last, have = p, true
	}
	return sum
}

// totals turns the raw samples into flat samples of each series' growth over (from, to].
func totals(series []promSeries, st startTimes, from, to time.Time) metricstest.Samples {
	out := make(metricstest.Samples, 0, len(series))
	for _, s := range series {
		out = append(out, metricstest.Sample{Name: s.Name, Labels: s.Labels, Value: counterTotal(s, st, from.UnixMilli(), to.UnixMilli())})
	}
	return out
}

// Counters are the counters of the demo's processes as Prometheus has them: for each series, its growth
// from the start of the run (when Prometheus started, before any traffic) to a moment, adding across
// every restart of the process.
type Counters struct {
	At      time.Time
	Servers map[string]metricstest.Samples // flowserver counters by zone
	Costs   map[string]metricstest.Samples // costcalc counters by cloud
	Agents  map[string]metricstest.Samples // flowagent counters by node
}

// Counter selectors: every counter of the services that the demo and its test read.
const (
	serverCounters = `{job="flowserver",__name__=~"zonetoll_.+_total"}`
	costCounters   = `{job="costcalc",__name__=~"zonetoll_.+_total"}`
	agentCounters  = `{job="flowagent",__name__=~"zonetoll_flowagent_.+_total"}`
	// startTimeSel is the start time of the processes whose counters live in their memory only: a
	// restart of a flowserver or an agent resets every one of its counters, and the start time tells a
	// reset from growth even when the new process counted more than the old one had. costcalc is read as
	// Prometheus reads any counter (a drop is a reset): how its counters behave across its own restart is
	// the product's business, and the test checks the result.
	startTimeSel = `process_start_time_seconds{job=~"flowserver|flowagent"}`
)

// PromCounters reads Counters at at from Prometheus.
func (d *Demo) PromCounters(ctx context.Context, at time.Time) (*Counters, error) {
	rng := at.Sub(d.promStarted) + 5*time.Second
	starts, err := d.promRange(ctx, startTimeSel, at, rng)
	if err != nil {
		return nil, err
	}
	st := newStartTimes(starts)
	c := &Counters{At: at, Servers: map[string]metricstest.Samples{}, Costs: map[string]metricstest.Samples{}, Agents: map[string]metricstest.Samples{}}
	byAddr := func(sel string, procs map[string]*Proc, into map[string]metricstest.Samples) error {
		series, err := d.promRange(ctx, sel, at, rng)
		if err != nil {
			return err
		}
		inst := map[string]string{}
		for k, p := range procs {
			inst[p.Addr] = k
			into[k] = metricstest.Samples{}
		}
		for _, s := range totals(series, st, d.promStarted.Add(-time.Hour), at) {
			if k, ok := inst[s.Labels["instance"]]; ok {
				into[k] = append(into[k], s)
			}
		}
		return nil
	}
	if err := byAddr(serverCounters, d.Servers, c.Servers); err != nil {
		return nil, err
	}
	if err := byAddr(costCounters, d.Costcalcs, c.Costs); err != nil {
		return nil, err
	}
	if err := byAddr(agentCounters, d.Agents, c.Agents); err != nil {
		return nil, err
	}
	return c, nil
}
