// Package metricstest scrapes a real /metrics endpoint over HTTP and reads values from it, for tests in
// every module, the benchmarks and the demo. It parses with the upstream expfmt parser (the one
// Prometheus' own client libraries use), so there is one reader of the exposition format in the repo.
package metricstest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sort"

	"github.com/zonetoll/zonetoll/testkit/gate"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is a parsed scrape, by metric family name.
type Families map[string]*dto.MetricFamily

// Scrape GETs url (a /metrics endpoint) in the Prometheus text format and parses it; any failure fails t.
func Scrape(t gate.TB, url string) Families {
	t.Helper()
	fams, err := ScrapeErr(url)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// Gatherer is what a prometheus.Registry is to a test: the families it holds now.
type Gatherer interface {
	Gather() ([]*dto.MetricFamily, error)
}

// Gather reads a registry in-process, for unit tests that need no HTTP; any failure fails t.
func Gather(t gate.TB, g Gatherer) Families {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	f := make(Families, len(mfs))
	for _, mf := range mfs {
		f[mf.GetName()] = mf
	}
	return f
}

// ScrapeErr is Scrape for callers that poll and tolerate failures.
func ScrapeErr(url string) (Families, error) {
	return Fetch(context.Background(), nil, url)
}

// Parse reads the Prometheus text exposition format, e.g. an API server's /metrics fetched with a
// client that authenticates.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing exposition: %w", err)
	}
	return fams, nil
}

// Value returns the value of the one series of family name whose labels include all of labels, and
// whether there was exactly one. Counters, gauges and untyped series have a value; for histograms and
// summaries it is the sample count.
func (f Families) Value(name string, labels map[string]string) (float64, bool) {
	ms := f.Series(name, labels)
	if len(ms) != 1 {
		return 0, false
	}
	return value(ms[0]), true
}

// Sum adds the values of every series of family name whose labels include all of labels.
func (f Families) Sum(name string, labels map[string]string) float64 {
	var sum float64
	for _, m := range f.Series(name, labels) {
		sum += value(m)
	}
	return sum
}

// Series returns the series of family name whose labels include all of labels.
func (f Families) Series(name string, labels map[string]string) []*dto.Metric {
	fam, ok := f[name]
	if !ok {
		return nil
	}
	var out []*dto.Metric
	for _, m := range fam.GetMetric() {
		if matches(m, labels) {
			out = append(out, m)
		}
	}
	return out
}

// Names lists the families present, sorted, for error messages.
func (f Families) Names() []string {
	names := make([]string, 0, len(f))
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func matches(m *dto.Metric, want map[string]string) bool {
	have := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Summary != nil:
		return float64(m.GetSummary().GetSampleCount())
	}
	return 0
}

// Promtool runs Prometheus' own linter, `promtool check metrics` (Debian's prometheus package), on a
// scrape of url (a /metrics endpoint): names, units, _total suffixes, help texts. Without promtool the
// gate decides (fail under make test, skip elsewhere).
func Promtool(t gate.TB, url string) {
	t.Helper()
	promtool := gate.Command(t, "promtool", gate.Debian("prometheus"))
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on %s: %v\n%s", url, err, out)
	}
}
