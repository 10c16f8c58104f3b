package meter

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

// costSeries reads the cost series of a costcalc's /metrics as a scraper stores them: by metric name and
// every label.
func costSeries(t *testing.T, url string) map[string]float64 {
	t.Helper()
	fams := metricstest.Scrape(t, url)
	out := map[string]float64{}
	for _, name := range []string{CostMetric, ServiceCostMetric} {
		for _, m := range fams.Series(name, nil) {
			var l []string
			for _, lp := range m.GetLabel() {
				l = append(l, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			slices.Sort(l)
			out[name+"{"+strings.Join(l, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

// increases adds up, per series, the increases between successive scrapes the way Prometheus' increase()
// does without extrapolation: a drop is a reset, after which the new value is all new.
func increases(scrapes ...map[string]float64) map[string]float64 {
	out := map[string]float64{}
	last := map[string]float64{}
	for _, sc := range scrapes {
		for k, v := range sc {
			prev, seen := last[k]
			switch {
			case !seen:
				out[k] += 0 // the first sample of a series is where it starts, not an increase
			case v < prev:
				out[k] += v
			default:
				out[k] += v - prev
			}
			last[k] = v
		}
	}
	return out
}

// TestCostcalcRestartLosesNothing: costcalc is restarted (a new Meter, a new registry, a new /metrics)
// while two flowservers' counters grow, some of it while costcalc is down. Right after its first scrape,
// the restarted costcalc exposes the same series with price × the flowservers' bytes, so a scraper that
// reads the series before and after the restart sees the growth of the whole gap, to the cent.
func TestCostcalcRestartLosesNothing(t *testing.T) {
	ctx := context.Background()
	a, b := newFlowserver(t), newFlowserver(t)
	b.start = 3000
	cross := pair("web", "us-east-1a", "db", "statefulset", "us-east-1b")
	internet := pair("web", "us-east-1a", "api", "external", "")
	request := svcSeries("us-east-1a", "us-east-1b")
	for _, f := range []*flowserver{a, b} {
		f.setExtra(`zonetoll_service_ready_endpoints{namespace="shop",service="api",zone="us-east-1a"}`, 1)
	}
	// bytes are the flowservers' counters; the test grows them and computes the dollars from them.
	bytes := map[string]float64{}
	grow := func(f *flowserver, series string, gibs float64) {
		k := f.srv.URL + " " + series
		bytes[k] += gibs * gib
		if strings.HasPrefix(series, "zonetoll_service") {
			f.setExtra(series, bytes[k])
		} else {
			f.set(series, bytes[k])
		}
	}
	grow(a, cross, 100) // history from before costcalc started
	grow(a, internet, 10)
	grow(a, request, 40)
	grow(b, cross, 7)

	first := newCostcalc(t, "aws", a.srv.URL, b.srv.URL)
	first.m.ScrapeOnce(ctx)
	s1 := costSeries(t, first.url)
	grow(a, cross, 3)
	grow(a, internet, 1)
	grow(a, request, 2)
	grow(b, cross, 1)
	first.m.ScrapeOnce(ctx)
	s2 := costSeries(t, first.url)

	// costcalc is down: the flowservers go on counting.
	grow(a, cross, 5)
	grow(a, internet, 2)
	grow(a, request, 4)
	grow(b, cross, 6)

	second := newCostcalc(t, "aws", a.srv.URL, b.srv.URL)
	second.m.ScrapeOnce(ctx)
	s3 := costSeries(t, second.url)

	// AWS: $0.02 per GiB crossing zones (both sides), $0.09 per GiB to the internet.
	key := func(name, f, labels, price string) string {
		l := strings.Split(labels, ",")
		l = append(l, fmt.Sprintf("price=%q", price), fmt.Sprintf("target=%q", f))
		slices.Sort(l)
		return name + "{" + strings.Join(l, ",") + "}"
	}
	svcLabels := strings.TrimSuffix(strings.TrimPrefix(request, ServiceTrafficMetric+"{"), "}")
	want := map[string]float64{
		key(CostMetric, a.srv.URL, cross, "0.02/GiB"):            bytes[a.srv.URL+" "+cross] / gib * 0.02,
		key(CostMetric, a.srv.URL, internet, "0.09/GiB"):         bytes[a.srv.URL+" "+internet] / gib * 0.09,
		key(ServiceCostMetric, a.srv.URL, svcLabels, "0.02/GiB"): bytes[a.srv.URL+" "+request] / gib * 0.02,
		key(CostMetric, b.srv.URL, cross, "0.02/GiB"):            bytes[b.srv.URL+" "+cross] / gib * 0.02,
	}
	if len(s3) != len(want) {
		t.Errorf("after the restart costcalc exposes %d cost series, want %d:\n%v", len(s3), len(want), s3)
	}
	for k, w := range want {
		if got, ok := s3[k]; !ok || math.Abs(got-w) > 1e-9 {
			t.Errorf("after the restart %s = $%v (exposed: %v), want price × bytes = $%v", k, got, ok, w)
		}
		if _, ok := s2[k]; !ok {
			t.Errorf("before the restart costcalc did not expose %s: the restart changed the series", k)
		}
	}
	// What a scraper of costcalc adds up from the three scrapes: the growth since the first, gap included.
	growth := map[string]float64{
		key(CostMetric, a.srv.URL, cross, "0.02/GiB"):            (3 + 5) * 0.02,
		key(CostMetric, a.srv.URL, internet, "0.09/GiB"):         (1 + 2) * 0.09,
		key(ServiceCostMetric, a.srv.URL, svcLabels, "0.02/GiB"): (2 + 4) * 0.02,
		key(CostMetric, b.srv.URL, cross, "0.02/GiB"):            (1 + 6) * 0.02,
	}
	inc := increases(s1, s2, s3)
	for k, w := range growth {
		if math.Abs(inc[k]-w) > 1e-9 {
			t.Errorf("a scraper's increase of %s across the restart: $%v, want $%v", k, inc[k], w)
		}
	}
}

// TestFlowserverResetResetsOnlyItsSeries: two flowservers count the same workload pair; one restarts.
// Only its cost series drops, to price × its new bytes (a reset for Prometheus, as its bytes counter
// has); the other's series goes on, so a scraper's increases add up to exactly the dollars of all bytes.
func TestFlowserverResetResetsOnlyItsSeries(t *testing.T) {
	ctx := context.Background()
	a, b := newFlowserver(t), newFlowserver(t)
	cross := pair("web", "us-east-1a", "db", "statefulset", "us-east-1b")
	a.set(cross, 0)
	b.set(cross, 0)
	cc := newCostcalc(t, "aws", a.srv.URL, b.srv.URL)
	cc.m.ScrapeOnce(ctx)
	s1 := costSeries(t, cc.url)
	a.set(cross, 10*gib)
	b.set(cross, 20*gib)
	cc.m.ScrapeOnce(ctx)
	s2 := costSeries(t, cc.url)
	a.restart(2000)
	a.set(cross, 4*gib)
	b.set(cross, 25*gib)
	cc.m.ScrapeOnce(ctx)
	s3 := costSeries(t, cc.url)

	of := func(url string) map[string]string { return map[string]string{"dst_workload": "db", "target": url} }
	if got := cc.cost(t, of(a.srv.URL)); !near(got, 4*0.02) {
		t.Errorf("the restarted flowserver's series: $%v, want $%v (its 4 GiB since the restart)", got, 4*0.02)
	}
	if got := cc.cost(t, of(b.srv.URL)); !near(got, 25*0.02) {
		t.Errorf("the other flowserver's series: $%v, want $%v (all its 25 GiB, no reset)", got, 25*0.02)
	}
	total := 0.0
	for _, v := range increases(s1, s2, s3) {
		total += v
	}
	if want := (10 + 4 + 25) * 0.02; math.Abs(total-want) > 1e-9 {
		t.Errorf("a scraper's increases add up to $%v, want $%v (39 GiB crossing)", total, want)
	}
}

// TestPriceChangeStartsNewSeries: costcalc restarted with another price exposes its series under the new
// price label and drops the old ones, so the dollars Prometheus already holds are not re-priced: a
// scraper's increases are the old price's growth before the change and the new price's after it.
func TestPriceChangeStartsNewSeries(t *testing.T) {
	ctx := context.Background()
	fs := newFlowserver(t)
	cross := pair("web", "us-east-1a", "db", "statefulset", "us-east-1b")
	fs.set(cross, 10*gib)
	before := newCostcalc(t, "aws", fs.srv.URL) // $0.02 per GiB crossing
	before.m.ScrapeOnce(ctx)
	s1 := costSeries(t, before.url)
	fs.set(cross, 12*gib)
	before.m.ScrapeOnce(ctx)
	s2 := costSeries(t, before.url)

	table, err := pricing.Preset("aws")
	if err != nil {
		t.Fatal(err)
	}
	if err := table.Set("inter_zone_in", 0, "test"); err != nil {
		t.Fatal(err)
	}
	after := newCostcalcWith(t, table, fs.srv.URL) // restarted with other prices: $0.01 per GiB crossing
	after.m.ScrapeOnce(ctx)
	s3 := costSeries(t, after.url)
	fs.set(cross, 15*gib)
	after.m.ScrapeOnce(ctx)
	s4 := costSeries(t, after.url)

	if len(s3) != 1 {
		t.Errorf("after the price change %d cost series, want 1: %v", len(s3), s3)
	}
	for k := range s3 {
		if !strings.Contains(k, `price="0.01/GiB"`) {
			t.Errorf("after the price change %s is not priced 0.01/GiB", k)
		}
	}
	for k := range s2 {
		if _, ok := s3[k]; ok {
			t.Errorf("the series %s of the old price is still exposed after the price change", k)
		}
	}
	total := 0.0
	for _, v := range increases(s1, s2, s3, s4) {
		total += v
	}
	if want := 2*0.02 + 3*0.01; math.Abs(total-want) > 1e-9 {
		t.Errorf("a scraper's increases across the price change: $%v, want $%v (2 GiB at $0.02, then 3 GiB at $0.01)", total, want)
	}
}
