package meter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

const gib = 1 << 30

// flowserver serves a hand-written /metrics page that the test changes between scrapes.
type flowserver struct {
	mu    sync.Mutex
	start float64
	lines map[string]float64 // label text → value
	extra map[string]float64 // whole series (name{labels}) of other families → value
	zones map[string]string
	down  bool
	srv   *httptest.Server
}

func newFlowserver(t *testing.T) *flowserver {
	f := &flowserver{start: 1000, lines: map[string]float64{}, extra: map[string]float64{}, zones: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %v\n", f.start)
		if len(f.zones) > 0 {
			fmt.Fprintln(w, "# TYPE zonetoll_zone_info gauge")
			for z, r := range f.zones {
				fmt.Fprintf(w, "zonetoll_zone_info{zone=%q,region=%q} 1\n", z, r)
			}
		}
		families := map[string][]string{}
		for series := range f.extra {
			name, _, _ := strings.Cut(series, "{")
			families[name] = append(families[name], series)
		}
		for name, list := range families {
			typ := "gauge"
			if strings.HasSuffix(name, "_total") {
				typ = "counter"
			}
			fmt.Fprintf(w, "# TYPE %s %s\n", name, typ)
			for _, series := range list {
				fmt.Fprintf(w, "%s %v\n", series, f.extra[series])
			}
		}
		if len(f.lines) > 0 {
			fmt.Fprintln(w, "# TYPE zonetoll_traffic_bytes_total counter")
			for l, v := range f.lines {
				fmt.Fprintf(w, "zonetoll_traffic_bytes_total{%s} %v\n", l, v)
			}
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *flowserver) set(series string, v float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines[series] = v
}

func (f *flowserver) restart(start float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.start = start
	clear(f.lines)
}

func pair(srcWorkload, srcZone, dstWorkload, dstKind, dstZone string) string {
	return fmt.Sprintf(`src_namespace="shop",src_workload=%q,src_kind="deployment",src_zone=%q,dst_namespace="shop",dst_workload=%q,dst_kind=%q,dst_zone=%q`,
		srcWorkload, srcZone, dstWorkload, dstKind, dstZone)
}

// costcalc is a meter with its registry served over HTTP, read back the way a user's Prometheus would.
type costcalc struct {
	m   *Meter
	reg *prometheus.Registry
	url string
}

func newCostcalc(t *testing.T, cloud string, targets ...string) *costcalc {
	table, err := pricing.Preset(cloud)
	if err != nil {
		t.Fatal(err)
	}
	return newCostcalcWith(t, table, targets...)
}

func newCostcalcWith(t *testing.T, table *pricing.Table, targets ...string) *costcalc {
	reg := prometheus.NewRegistry()
	m, err := New(Options{Targets: targets, Timeout: 5 * time.Second, Table: table}, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return &costcalc{m: m, reg: reg, url: srv.URL}
}

func (c *costcalc) cost(t *testing.T, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Scrape(t, c.url).Sum(CostMetric, labels)
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCounterResetsAndRestarts(t *testing.T) {
	ctx := context.Background()
	fs := newFlowserver(t)
	cross := pair("web", "us-east-1a", "db", "statefulset", "us-east-1b")
	same := pair("web", "us-east-1a", "cache", "deployment", "us-east-1a")
	fs.set(cross, 100*gib) // history from before costcalc started
	fs.set(same, 100*gib)
	cc := newCostcalc(t, "aws", fs.srv.URL)
	webToDB := map[string]string{"src_workload": "web", "dst_workload": "db"}

	steps := []struct {
		name string
		do   func()
		want float64 // dollars of web → db: the flowserver's bytes × AWS's $0.02 per GiB crossing
	}{
		{"first scrape: the series' dollars since the flowserver started", func() {}, 2.00},
		{"growth of 10 GiB", func() { fs.set(cross, 110*gib) }, 2.20},
		{"no growth", func() {}, 2.20},
		{"series reset: the cost series resets with it", func() { fs.set(cross, 3*gib) }, 0.06},
		{"growth after the reset", func() { fs.set(cross, 5*gib) }, 0.10},
		{"restart with a higher value than before", func() {
			fs.restart(2000)
			fs.set(cross, 50*gib)
		}, 1.00},
		{"a scrape failure changes nothing", func() {
			fs.mu.Lock()
			fs.down = true
			fs.mu.Unlock()
		}, 1.00},
		{"back: the value read across the failed scrape", func() {
			fs.mu.Lock()
			fs.down = false
			fs.mu.Unlock()
			fs.set(cross, 60*gib)
		}, 1.20},
	}
	for _, s := range steps {
		s.do()
		cc.m.ScrapeOnce(ctx)
		if got := cc.cost(t, webToDB); !near(got, s.want) {
			t.Fatalf("%s: web→db cost $%v, want $%v", s.name, got, s.want)
		}
	}
	fams := metricstest.Scrape(t, cc.url)
	if n := len(fams.Series(CostMetric, map[string]string{"dst_workload": "cache"})); n != 0 {
		t.Errorf("same-zone traffic has %d cost series, want none", n)
	}
	if v, _ := fams.Value("zonetoll_costcalc_counter_resets_total", map[string]string{"kind": "series"}); v != 1 {
		t.Errorf("series resets = %v, want 1", v)
	}
	if v, _ := fams.Value("zonetoll_costcalc_counter_resets_total", map[string]string{"kind": "restart"}); v != 1 {
		t.Errorf("restarts = %v, want 1", v)
	}
	if v, _ := fams.Value("zonetoll_costcalc_scrapes_total", map[string]string{"result": "error"}); v != 1 {
		t.Errorf("failed scrapes = %v, want 1", v)
	}
	// The bytes by class are accumulated: history from before costcalc started is not counted there.
	if v, _ := fams.Value("zonetoll_costcalc_traffic_bytes_total", map[string]string{"class": "inter_zone"}); v != 75*gib {
		t.Errorf("inter-zone bytes = %v GiB, want 75", v/gib)
	}
	// The flowserver's start is the cost series' created timestamp, when it was 0: with Prometheus'
	// created-timestamp ingestion a restart is a reset even when the new value is above the old one.
	mfs, err := cc.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == CostMetric {
			if ct := mf.GetMetric()[0].GetCounter().GetCreatedTimestamp().AsTime(); !ct.Equal(time.Unix(2000, 0)) {
				t.Errorf("created timestamp %v, want the flowserver's restart at %v", ct, time.Unix(2000, 0))
			}
		}
	}
}

func TestNewSeriesAfterBaselineCountFromZero(t *testing.T) {
	fs := newFlowserver(t)
	cc := newCostcalc(t, "gcp", fs.srv.URL)
	cc.m.ScrapeOnce(context.Background()) // empty baseline
	fs.set(pair("web", "us-central1-a", "db", "statefulset", "us-central1-b"), 4*gib)
	fs.set(pair("web", "us-central1-a", "api", "external", ""), 2*gib)
	cc.m.ScrapeOnce(context.Background())
	if got := cc.cost(t, map[string]string{"dst_workload": "db"}); !near(got, 0.04) { // GCP: sender pays $0.01/GiB
		t.Errorf("gcp web→db $%v, want $0.04", got)
	}
	if got := cc.cost(t, map[string]string{"dst_kind": "external"}); !near(got, 0.24) { // $0.12/GiB internet
		t.Errorf("gcp web→internet $%v, want $0.24", got)
	}
}

func TestUnpricedAndZoneInfo(t *testing.T) {
	fs := newFlowserver(t)
	cc := newCostcalc(t, "aws", fs.srv.URL)
	cc.m.ScrapeOnce(context.Background())
	fs.mu.Lock()
	fs.zones["lab-a"], fs.zones["lab-b"] = "lab", "lab"
	fs.mu.Unlock()
	fs.set(pair("web", "lab-a", "db", "statefulset", "lab-b"), 1*gib)    // priced thanks to zone_info
	fs.set(pair("web", "lab-a", "node", "node", ""), 3*gib)              // unknown zone of a node
	fs.set(pair("web", "lab-a", "other", "deployment", "moon-1"), 5*gib) // zone with no known region
	cc.m.ScrapeOnce(context.Background())
	fams := metricstest.Scrape(t, cc.url)
	if got := fams.Sum(CostMetric, nil); !near(got, 0.02) {
		t.Errorf("total cost $%v, want $0.02 (only lab-a → lab-b)", got)
	}
	for reason, want := range map[string]float64{pricing.ReasonDstZoneUnknown: 3 * gib, pricing.ReasonRegionUnknown: 5 * gib} {
		if v, _ := fams.Value("zonetoll_costcalc_unpriced_bytes_total", map[string]string{"reason": reason}); v != want {
			t.Errorf("unpriced %s = %v, want %v", reason, v, want)
		}
	}
}

func TestTargetsAddUp(t *testing.T) {
	a, b := newFlowserver(t), newFlowserver(t)
	cc := newCostcalc(t, "aws", a.srv.URL, b.srv.URL)
	cc.m.ScrapeOnce(context.Background())
	p := pair("web", "us-east-1a", "db", "statefulset", "us-east-1b")
	a.set(p, 1*gib)
	b.set(p, 2*gib)
	cc.m.ScrapeOnce(context.Background())
	if got := cc.cost(t, map[string]string{"dst_workload": "db"}); !near(got, 0.06) {
		t.Errorf("two flowservers' web→db $%v, want $0.06", got)
	}
	for target, want := range map[string]float64{a.srv.URL: 0.02, b.srv.URL: 0.04} {
		if got := cc.cost(t, map[string]string{"dst_workload": "db", "target": target}); !near(got, want) {
			t.Errorf("web→db of %s: $%v, want $%v (a series per flowserver)", target, got, want)
		}
	}
	b.restart(5000) // b restarts and has not seen the pair again: its series keeps its dollars
	a.set(p, 2*gib)
	cc.m.ScrapeOnce(context.Background())
	if got := cc.cost(t, map[string]string{"dst_workload": "db"}); !near(got, 0.08) {
		t.Errorf("after b restarted: $%v, want $0.08", got)
	}
}

func TestPriceGaugesAndLint(t *testing.T) {
	fs := newFlowserver(t)
	cc := newCostcalc(t, "aws", fs.srv.URL)
	fams := metricstest.Scrape(t, cc.url)
	v, ok := fams.Value("zonetoll_price_dollars_per_unit", map[string]string{"class": "inter_zone", "direction": "in", "unit": "GiB", "cloud": "aws"})
	if !ok || v != 0.01 {
		t.Errorf("inter_zone in price %v (%v), want 0.01 per GiB", v, ok)
	}
	v, _ = fams.Value("zonetoll_price_dollars_per_byte", map[string]string{"class": "internet", "direction": "out"})
	if !near(v*gib, 0.09) {
		t.Errorf("internet out per byte × 2^30 = %v, want 0.09", v*gib)
	}
	for _, m := range fams.Series("zonetoll_price_dollars_per_unit", nil) {
		for _, l := range m.GetLabel() {
			if l.GetName() == "source" && !strings.Contains(l.GetValue(), "Amazon EC2") {
				t.Errorf("price source %q", l.GetValue())
			}
		}
	}
}

// A series the flowserver dropped (its series TTL) keeps its cost series as it was; when the flowserver
// brings it back from zero, its cost is price × its new bytes, and the accumulated bytes count it from
// zero even when its new value is above the old one.
func TestVanishedSeriesComeBackFromZero(t *testing.T) {
	fs := newFlowserver(t)
	p := pair("web", "us-east-1a", "db", "statefulset", "us-east-1b")
	cc := newCostcalc(t, "aws", fs.srv.URL)
	cc.m.ScrapeOnce(context.Background())
	fs.set(p, 2*gib)
	cc.m.ScrapeOnce(context.Background()) // $0.04
	fs.mu.Lock()
	delete(fs.lines, p)
	fs.mu.Unlock()
	cc.m.ScrapeOnce(context.Background())
	if got := cc.cost(t, map[string]string{"dst_workload": "db"}); !near(got, 0.04) {
		t.Errorf("web→db after the flowserver dropped it: $%v, want $0.04 kept", got)
	}
	fs.set(p, 5*gib) // new traffic after the series was dropped: 5 GiB, not 5 - 2
	cc.m.ScrapeOnce(context.Background())
	if got := cc.cost(t, map[string]string{"dst_workload": "db"}); !near(got, 0.10) {
		t.Errorf("web→db $%v, want $0.10 (the 5 GiB of the series brought back)", got)
	}
	if v, _ := metricstest.Scrape(t, cc.url).Value("zonetoll_costcalc_traffic_bytes_total", map[string]string{"class": "inter_zone"}); v != 7*gib {
		t.Errorf("inter-zone bytes = %v GiB, want 7 (2, then 5 of the series brought back)", v/gib)
	}
}

func (f *flowserver) setExtra(series string, v float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.extra[series] = v
}

func svcSeries(srcZone, dstZone string) string {
	return svcSeriesDir(srcZone, dstZone, "request")
}

func svcSeriesDir(srcZone, dstZone, direction string) string {
	return fmt.Sprintf(`zonetoll_service_traffic_bytes_total{src_namespace="shop",src_workload="web",src_kind="deployment",src_zone=%q,namespace="shop",service="api",dst_zone=%q,direction=%q}`, srcZone, dstZone, direction)
}

// TestServiceCost: per-zone flowservers each count their own zone's clients of shop/api and both export
// its ready endpoints (2 in a, 2 in b, none in c). AWS, $0.02 per GiB crossing.
func TestServiceCost(t *testing.T) {
	ctx := context.Background()
	fsA, fsC := newFlowserver(t), newFlowserver(t)
	for _, fs := range []*flowserver{fsA, fsC} {
		fs.setExtra(`zonetoll_service_ready_endpoints{namespace="shop",service="api",zone="us-east-1a"}`, 2)
		fs.setExtra(`zonetoll_service_ready_endpoints{namespace="shop",service="api",zone="us-east-1b"}`, 2)
	}
	fsA.setExtra(svcSeries("us-east-1a", "us-east-1b"), 100*gib) // history: not billed
	fsA.setExtra(svcSeriesDir("us-east-1a", "us-east-1b", "response"), 50*gib)
	cc := newCostcalc(t, "aws", fsA.srv.URL, fsC.srv.URL)
	cc.m.ScrapeOnce(ctx)
	// The answers are a series of their own: read as one with the requests, their counters would
	// look like resets every scrape.
	fsA.setExtra(svcSeriesDir("us-east-1a", "us-east-1b", "response"), 51*gib) // +1 GiB: $0.02, avoidable

	fsA.setExtra(svcSeries("us-east-1a", "us-east-1b"), 110*gib) // +10 GiB from a, which has endpoints: $0.20, avoidable
	fsA.setExtra(svcSeries("us-east-1a", "us-east-1a"), 5*gib)   // same zone: free, no series
	fsC.setExtra(svcSeries("us-east-1c", "us-east-1a"), 4*gib)   // born after the baseline, from c without endpoints: $0.08
	cc.m.ScrapeOnce(ctx)
	fsA.setExtra(svcSeries("us-east-1a", "us-east-1b"), 2*gib) // reset: +2 GiB, $0.04
	cc.m.ScrapeOnce(ctx)

	fams := metricstest.Scrape(t, cc.url)
	api := map[string]string{"namespace": "shop", "service": "api"}
	// The cost series are derived from the flowservers' series: requests a→b 2 GiB (after the reset),
	// answers 51 GiB, c→a 4 GiB.
	if got := fams.Sum(ServiceCostMetric, api); !near(got, 1.14) {
		t.Errorf("shop/api cross-zone cost $%v, want $1.14 ((2 + 51 + 4) GiB × $0.02)", got)
	}
	if got := fams.Sum(ServiceCostMetric, map[string]string{"direction": "response", "target": fsA.srv.URL, "src_workload": "web"}); !near(got, 1.02) {
		t.Errorf("shop/api answers to web in a, from flowserver a: $%v, want $1.02", got)
	}
	// The avoidable part is accumulated from costcalc's start: 1 GiB of answers, 10 GiB, then 2 GiB after
	// the reset, all from zone a, which has endpoints.
	if got := fams.Sum(ServiceAvoidableMetric, api); !near(got, 0.26) {
		t.Errorf("shop/api avoidable cost $%v, want $0.26 (only zone a has local endpoints)", got)
	}
	if got := fams.Sum(ServiceAvoidableMetric, map[string]string{"src_zone": "us-east-1c"}); got != 0 {
		t.Errorf("zone c has no endpoint, yet $%v of its traffic is avoidable", got)
	}
	if n := len(fams.Series(ServiceCostMetric, map[string]string{"src_zone": "us-east-1a", "dst_zone": "us-east-1a"})); n != 0 {
		t.Errorf("same-zone traffic has %d cost series", n)
	}
}

// TestSeriesTTL: a cost series that has not grown for the TTL is taken off /metrics and counted; one
// still growing stays; an expired pair that grows again shows again with all its dollars (the same series
// continuing, for Prometheus); a series the flowserver no longer serves is forgotten. With TTL 0 nothing
// is removed.
func TestSeriesTTL(t *testing.T) {
	for _, ttl := range []time.Duration{time.Hour, 0} {
		t.Run(fmt.Sprintf("ttl=%s", ttl), func(t *testing.T) {
			ctx := context.Background()
			fs := newFlowserver(t)
			busy := pair("web", "us-east-1a", "db", "statefulset", "us-east-1b")
			quiet := pair("batch", "us-east-1a", "db", "statefulset", "us-east-1c")
			unpriced := pair("batch", "us-east-1a", "other", "deployment", "moon-1")
			table, err := pricing.Preset("aws")
			if err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			reg := prometheus.NewPedanticRegistry()
			m, err := New(Options{Targets: []string{fs.srv.URL}, Timeout: 5 * time.Second, Table: table, SeriesTTL: ttl, Now: func() time.Time { return now }},
				reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
			t.Cleanup(srv.Close)
			cc := &costcalc{m: m, url: srv.URL}

			m.ScrapeOnce(ctx) // baseline
			fs.set(busy, 1*gib)
			fs.set(quiet, 1*gib)
			fs.set(unpriced, 1*gib)
			m.ScrapeOnce(ctx) // both grow at 00:00
			for _, step := range []time.Duration{20 * time.Minute, 40 * time.Minute, 61 * time.Minute} {
				now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(step)
				fs.set(busy, float64(2+step/time.Minute)*gib) // only busy grows
				m.ScrapeOnce(ctx)
			}
			fams := metricstest.Scrape(t, cc.url)
			quietSeries := len(fams.Series(CostMetric, map[string]string{"src_workload": "batch"}))
			busySeries := len(fams.Series(CostMetric, map[string]string{"src_workload": "web"}))
			expired, _ := fams.Value("zonetoll_costcalc_series_expired_total", nil)
			held, _ := fams.Value("zonetoll_costcalc_cost_series", nil)
			if ttl == 0 {
				if quietSeries != 1 || busySeries != 1 || expired != 0 || held != 2 {
					t.Fatalf("without a TTL: quiet %d, busy %d series, %v expired, %v held; want 1, 1, 0, 2", quietSeries, busySeries, expired, held)
				}
				return
			}
			if quietSeries != 0 || busySeries != 1 || expired != 1 || held != 1 {
				t.Fatalf("after 61 min: quiet %d, busy %d series, %v expired, %v held; want 0, 1, 1, 1", quietSeries, busySeries, expired, held)
			}
			// The quiet pair sends 3 GiB more: its series shows again with $0.08 (AWS: $0.02/GiB crossing),
			// which Prometheus reads as $0.06 more on the series it stored before.
			fs.set(quiet, 4*gib)
			m.ScrapeOnce(ctx)
			if got := cc.cost(t, map[string]string{"src_workload": "batch"}); !near(got, 0.08) {
				t.Errorf("quiet pair after it came back: $%v, want $0.08", got)
			}
			// The flowserver drops the unpriced pair (its own TTL): the meter forgets it.
			fs.mu.Lock()
			delete(fs.lines, unpriced)
			fs.mu.Unlock()
			m.ScrapeOnce(ctx)
			m.mu.Lock()
			remembered := len(m.targets[fs.srv.URL].traffic)
			m.mu.Unlock()
			if remembered != 2 {
				t.Errorf("meter remembers %d series, want 2 (the unpriced pair the flowserver dropped is forgotten)", remembered)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("metrics lint: %v %v", problems, err)
			}
		})
	}
}

// TestServiceSeriesTTL: per-Service cost series expire with the TTL like the traffic cost series, one per
// client series; the avoidable-cost series, which two client workloads in one zone share, stays while
// either of them grows.
func TestServiceSeriesTTL(t *testing.T) {
	ctx := context.Background()
	fs := newFlowserver(t)
	fs.setExtra(`zonetoll_service_ready_endpoints{namespace="shop",service="api",zone="us-east-1a"}`, 1)
	web := svcSeriesDir("us-east-1a", "us-east-1b", "request")
	cron := strings.Replace(web, `src_workload="web"`, `src_workload="cron"`, 1)
	table, err := pricing.Preset("aws")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	reg := prometheus.NewPedanticRegistry()
	m, err := New(Options{Targets: []string{fs.srv.URL}, Timeout: 5 * time.Second, Table: table, SeriesTTL: time.Hour, Now: func() time.Time { return now }},
		reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	m.ScrapeOnce(ctx) // baseline
	fs.setExtra(web, 1*gib)
	fs.setExtra(cron, 1*gib)
	m.ScrapeOnce(ctx)
	now = t0.Add(50 * time.Minute)
	fs.setExtra(cron, 2*gib) // only cron grows: the shared avoidable series stays
	m.ScrapeOnce(ctx)
	now = t0.Add(70 * time.Minute)
	m.ScrapeOnce(ctx)
	series := func() map[string]int {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, mf := range mfs {
			n[mf.GetName()] = len(mf.GetMetric())
		}
		return n
	}
	if n := series(); n[ServiceCostMetric] != 1 || n[ServiceAvoidableMetric] != 1 {
		t.Fatalf("70 min after web's last growth, 20 after cron's: %d per-Service cost and %d avoidable series, want cron's cost series and the shared avoidable one",
			n[ServiceCostMetric], n[ServiceAvoidableMetric])
	}
	now = t0.Add(111 * time.Minute)
	m.ScrapeOnce(ctx)
	if n := series(); n[ServiceCostMetric] != 0 || n[ServiceAvoidableMetric] != 0 {
		t.Errorf("an hour after the last growth: %d per-Service cost and %d avoidable series, want none", n[ServiceCostMetric], n[ServiceAvoidableMetric])
	}
}
