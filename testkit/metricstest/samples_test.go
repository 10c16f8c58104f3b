package metricstest

import (
	"math"
	"strings"
	"testing"
)

const apiserverScrape = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="PATCH",version="v1"} 9990
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="PATCH",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 10000
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 10000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="nodes",scope="resource",subresource="status",verb="PATCH",version="v1"} 100
# TYPE weird_total counter
weird_total{path="a \"quoted\" \\ value, with {braces}"} 3 1700000000000
`

func parse(t *testing.T, text string) Samples {
	t.Helper()
	fams, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return fams.Samples()
}

func TestSamplesSum(t *testing.T) {
	samples := parse(t, apiserverScrape)
	tests := []struct {
		name   string
		metric string
		match  map[string]string
		want   float64
	}{
		{"pod patches, every code, no subresource", "apiserver_request_total",
			map[string]string{"verb": "PATCH", "resource": "pods", "subresource": ""}, 10000},
		{"status patches are apart", "apiserver_request_total",
			map[string]string{"verb": "PATCH", "resource": "pods", "subresource": "status"}, 10000},
		{"all of a metric", "apiserver_request_total", nil, 30100},
		{"a label no sample has matches the empty value", "apiserver_request_total",
			map[string]string{"verb": "POST", "absent": ""}, 10000},
		{"escaped label value, timestamp ignored", "weird_total",
			map[string]string{"path": `a "quoted" \ value, with {braces}`}, 3},
		{"unknown metric", "nope_total", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := samples.Sum(tt.metric, tt.match); got != tt.want {
				t.Errorf("Sum = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"novalue\n",
		`m{a="x} 1` + "\n",
		`m{a=x} 1` + "\n",
		"m notanumber\n",
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", in)
		}
	}
}

func TestPlusMinus(t *testing.T) {
	a := Samples{{Name: "c", Labels: map[string]string{"k": "1"}, Value: 10}}
	b := Samples{{Name: "c", Labels: map[string]string{"k": "1"}, Value: 5}, {Name: "c", Labels: map[string]string{"k": "2"}, Value: 7}}
	sum := a.Plus(b)
	if sum.Sum("c", map[string]string{"k": "1"}) != 15 || sum.Sum("c", map[string]string{"k": "2"}) != 7 || len(sum) != 2 {
		t.Errorf("Plus = %+v", sum)
	}
	if d := sum.Minus(a); d.Sum("c", map[string]string{"k": "1"}) != 5 || d.Sum("c", map[string]string{"k": "2"}) != 7 {
		t.Errorf("Minus = %+v", d)
	}
}

func TestHistogramQuantile(t *testing.T) {
	// 100 observations: 50 up to 0.1 s, 40 in (0.1, 0.5], 9 in (0.5, 1], 1 above 1 s.
	const buckets = `lat_seconds_bucket{le="0.1"} 50
lat_seconds_bucket{le="0.5"} 90
lat_seconds_bucket{le="1"} 99
lat_seconds_bucket{le="+Inf"} 100
lat_seconds_sum 20
lat_seconds_count 100
`
	for _, form := range []struct{ name, text string }{
		{"typed histogram", "# TYPE lat_seconds histogram\n" + buckets},
		{"untyped lines", buckets},
	} {
		t.Run(form.name, func(t *testing.T) {
			samples := parse(t, form.text)
			if n := samples.Sum("lat_seconds_count", nil); n != 100 {
				t.Fatalf("count = %v, want 100", n)
			}
			tests := []struct {
				q          float64
				want       float64
				wantBeyond bool
			}{
				{0.25, 0.05, false},  // inside the first bucket, from 0
				{0.5, 0.1, false},    // exactly at a bound
				{0.7, 0.3, false},    // halfway through (0.1, 0.5]
				{0.99, 1, false},     // the last finite bound
				{0.999, 1, true},     // in +Inf: the highest finite bound, as PromQL does, flagged
				{0.945, 0.75, false}, // halfway through (0.5, 1]
			}
			for _, tt := range tests {
				got, beyond, ok := samples.HistogramQuantile("lat_seconds", tt.q)
				if !ok || math.Abs(got-tt.want) > 1e-9 || beyond != tt.wantBeyond {
					t.Errorf("q=%v: got %v (beyond=%v, ok=%v), want %v (beyond=%v)", tt.q, got, beyond, ok, tt.want, tt.wantBeyond)
				}
			}
			if _, _, ok := samples.HistogramQuantile("other_seconds", 0.5); ok {
				t.Error("quantile of a missing histogram reported ok")
			}
		})
	}
	empty := parse(t, "lat_seconds_bucket{le=\"1\"} 0\nlat_seconds_bucket{le=\"+Inf\"} 0\n")
	if _, _, ok := empty.HistogramQuantile("lat_seconds", 0.5); ok {
		t.Error("quantile of an empty histogram reported ok")
	}
}
