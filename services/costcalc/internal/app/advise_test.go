package app

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/promtest"
)

// flowserverPage is a /metrics page in the flowserver's exposition of the per-Service metrics (the
// contract of issue #18), with values the test sets; generation tells when Prometheus has scraped a change.
type flowserverPage struct {
	mu     sync.Mutex
	types  map[string]string  // metric → counter|gauge
	series map[string]float64 // metric{labels} → value
	srv    *httptest.Server
}

func newFlowserverPage(t *testing.T) *flowserverPage {
	p := &flowserverPage{types: map[string]string{"test_generation": "gauge"}, series: map[string]float64{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		byMetric := map[string][]string{}
		for s := range p.series {
			name, _, _ := strings.Cut(s, "{")
			byMetric[name] = append(byMetric[name], s)
		}
		names := make([]string, 0, len(byMetric))
		for n := range byMetric {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "# TYPE %s %s\n", n, p.types[n])
			for _, s := range byMetric[n] {
				fmt.Fprintf(w, "%s %v\n", s, p.series[s])
			}
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *flowserverPage) set(typ, series string, v float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name, _, _ := strings.Cut(series, "{")
	p.types[name] = typ
	p.series[series] = v
}

// add grows a counter series by v.
func (p *flowserverPage) add(series string, v float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name, _, _ := strings.Cut(series, "{")
	p.types[name] = "counter"
	p.series[series] += v
}

// svcTraffic is one series of zonetoll_service_traffic_bytes_total.
func svcTraffic(service, client, srcZone, dstZone string) string {
	return fmt.Sprintf(`zonetoll_service_traffic_bytes_total{src_namespace="shop",src_workload=%q,src_kind="deployment",src_zone=%q,namespace="shop",service=%q,dst_zone=%q}`,
		client, srcZone, service, dstZone)
}

// waitGeneration waits until Prometheus has scraped generation gen from every page.
func waitGeneration(t *testing.T, promAPI v1.API, pages []*flowserverPage, gen float64) {
	t.Helper()
	for _, p := range pages {
		p.set("gauge", "test_generation", gen)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		v, _, err := promAPI.Query(context.Background(), "test_generation", time.Now())
		if vec, ok := v.(model.Vector); err == nil && ok && len(vec) == len(pages) {
			all := true
			for _, s := range vec {
				all = all && float64(s.Value) == gen
			}
			if all {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("Prometheus did not scrape generation %v of every page within 60s", gen)
}

type adviceJSON struct {
	Kubernetes string `json:"kubernetes_version"`
	Services   []struct {
		Namespace, Service, Verdict string
		ReadyEndpoints              int     `json:"ready_endpoints"`
		CrossBytes                  float64 `json:"cross_zone_bytes"`
		SavableBytes                float64 `json:"savable_bytes"`
		Clouds                      []struct {
			Cloud         string
			CrossDollars  float64 `json:"cross_zone_dollars"`
			SavingDollars float64 `json:"saving_dollars"`
			SavingMonthly float64 `json:"saving_monthly_dollars"`
		}
		Risks          []struct{ Kind, Zone string }
		Recommendation *struct {
			Commands []string
		}
		Reasons []string
	}
}

// TestAdviseFromRealPrometheus: two flowserver pages (per-zone flowservers: each counts its own zone's
// clients, both export the same gauges) scraped by Debian's Prometheus; `costcalc advise` over the range
// must give the dollars a person computes by hand from the bytes the test added, to the cent.
func TestAdviseFromRealPrometheus(t *testing.T) {
	const za, zb, zc = "us-east-1a", "us-east-1b", "us-east-1c"
	fsA, fsBC := newFlowserverPage(t), newFlowserverPage(t)
	pages := []*flowserverPage{fsA, fsBC}
	for _, p := range pages {
		for zone, n := range map[string]float64{za: 1, zb: 3, zc: 2} { // api: 1 of 6 endpoints in a
			p.set("gauge", fmt.Sprintf(`zonetoll_service_ready_endpoints{namespace="shop",service="api",zone=%q}`, zone), n)
		}
		for zone, n := range map[string]float64{za: 2, zb: 2} { // cart: none in c
			p.set("gauge", fmt.Sprintf(`zonetoll_service_ready_endpoints{namespace="shop",service="cart",zone=%q}`, zone), n)
		}
		p.set("gauge", `zonetoll_service_info{namespace="shop",service="api",type="ClusterIP",headless="false",traffic_distribution="",topology_mode="",internal_traffic_policy="Cluster"}`, 1)
		p.set("gauge", `zonetoll_service_info{namespace="shop",service="cart",type="ClusterIP",headless="false",traffic_distribution="PreferSameZone",topology_mode="",internal_traffic_policy="Cluster"}`, 1)
		p.set("gauge", `zonetoll_kubernetes_info{git_version="v1.34.2",major="1",minor="34"}`, 1)
		for _, z := range []string{za, zb, zc} {
			p.set("gauge", fmt.Sprintf(`zonetoll_zone_info{zone=%q,region="us-east-1"}`, z), 1)
		}
	}
	fsA.set("counter", `zonetoll_traffic_bytes_total{src_namespace="shop",src_workload="web",src_kind="deployment",src_zone="us-east-1a",dst_namespace="shop",dst_workload="api",dst_kind="deployment",dst_zone="us-east-1b"}`, 0)
	// Counters from before the range: they must not count.
	fsA.add(svcTraffic("api", "web", za, zb), 100*gib)
	fsBC.add(svcTraffic("cart", "web", zc, za), 100*gib)

	hostOf := func(p *flowserverPage) string { u, _ := url.Parse(p.srv.URL); return u.Host }
	prom := promtest.Start(t, time.Second, hostOf(fsA), hostOf(fsBC))
	promAPI := prom.API
	waitGeneration(t, promAPI, pages, 1)
	time.Sleep(1500 * time.Millisecond) // the value at start is the baseline, whichever scrape the lookback finds
	start := time.Now().Truncate(time.Millisecond)

	// api, the "70 % of the clients, 1 of 6 endpoints": zone a's clients (two workloads) send 70 GiB,
	// b 20 GiB, c 10 GiB; crossing a 35+25, b 5+5, c 2+3 = 75 GiB.
	fsA.add(svcTraffic("api", "web", za, za), 10*gib)
	fsA.add(svcTraffic("api", "web", za, zb), 20*gib)
	fsA.add(svcTraffic("api", "checkout", za, zb), 15*gib)
	fsA.add(svcTraffic("api", "web", za, zc), 25*gib)
	for _, f := range []struct {
		svc, src, dst string
		gib           float64
	}{
		{"api", zb, za, 5}, {"api", zb, zb, 10}, {"api", zb, zc, 5}, {"api", zc, za, 2}, {"api", zc, zb, 3}, {"api", zc, zc, 5},
		// cart, already PreferSameZone: b still sends 2 GiB to a; c (no endpoint) sends 3 to a and 3 to b.
		{"cart", zb, zb, 8}, {"cart", zb, za, 2}, {"cart", zc, za, 3}, {"cart", zc, zb, 3},
	} {
		fsBC.add(svcTraffic(f.svc, "web", f.src, f.dst), f.gib*gib)
	}
	fsA.add(svcTraffic("cart", "web", za, za), 10*gib)
	fsA.add(`zonetoll_traffic_bytes_total{src_namespace="shop",src_workload="web",src_kind="deployment",src_zone="us-east-1a",dst_namespace="shop",dst_workload="api",dst_kind="deployment",dst_zone="us-east-1b"}`, 35*gib)
	waitGeneration(t, promAPI, pages, 2)
	end := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	scale := float64(30*24*time.Hour) / float64(end.Sub(start))

	var r adviceJSON
	costcalcJSON(t, &r, "advise", "--prometheus", prom.URL,
		"--start", start.UTC().Format(time.RFC3339Nano), "--end", end.UTC().Format(time.RFC3339Nano))
	if r.Kubernetes != "v1.34.2" || len(r.Services) != 2 {
		t.Fatalf("kubernetes %q, %d services; want v1.34.2 and api, cart:\n%+v", r.Kubernetes, len(r.Services), r.Services)
	}
	apiSvc, cart := r.Services[0], r.Services[1]
	if apiSvc.Service != "api" || cart.Service != "cart" {
		t.Fatalf("services %s, %s; want api (75 GiB crossing) then cart (8 GiB)", apiSvc.Service, cart.Service)
	}
	if apiSvc.CrossBytes != 75*gib || apiSvc.SavableBytes != 75*gib || apiSvc.ReadyEndpoints != 6 {
		t.Errorf("api: cross %v GiB, savable %v GiB, %d endpoints; want 75, 75, 6 (gauges of both pages taken once)",
			apiSvc.CrossBytes/gib, apiSvc.SavableBytes/gib, apiSvc.ReadyEndpoints)
	}
	// By hand: AWS 75 GiB × $0.02 = $1.50 in the range, GCP 75 × $0.01 = $0.75, Azure $0; cart 8 GiB × $0.02 = $0.16.
	want := map[string][2]float64{"aws": {1.50, 1.50}, "gcp": {0.75, 0.75}, "azure": {0, 0}}
	for _, c := range apiSvc.Clouds {
		w := want[c.Cloud]
		if math.Round(c.CrossDollars*100) != math.Round(w[0]*100) || math.Abs(c.SavingDollars-w[1]) > 1e-9 {
			t.Errorf("api on %s: cross $%v, saving $%v; want $%.2f and $%.2f", c.Cloud, c.CrossDollars, c.SavingDollars, w[0], w[1])
		}
		if wm := w[1] * scale; math.Abs(c.SavingMonthly-wm) > 1e-6*math.Max(wm, 1) {
			t.Errorf("api on %s: saving per month $%v, want $%v (the range's saving × 30 days ÷ the range)", c.Cloud, c.SavingMonthly, wm)
		}
	}
	if apiSvc.Verdict != "switch_with_care" || len(apiSvc.Risks) == 0 || apiSvc.Risks[0].Kind != "overload" || apiSvc.Risks[0].Zone != za {
		t.Errorf("api verdict %s risks %+v; want switch_with_care with the overload of zone a first", apiSvc.Verdict, apiSvc.Risks)
	}
	if apiSvc.Recommendation == nil || len(apiSvc.Recommendation.Commands) != 1 ||
		apiSvc.Recommendation.Commands[0] != `kubectl -n shop patch service api --type=merge -p '{"spec":{"trafficDistribution":"PreferSameZone"}}'` {
		t.Errorf("api recommendation %+v; want the PreferSameZone patch (beta, on, in 1.34)", apiSvc.Recommendation)
	}
	if cart.Verdict != "already_prefers" || cart.CrossBytes != 8*gib || math.Round(cart.Clouds[0].CrossDollars*100) != 16 ||
		!strings.Contains(strings.Join(cart.Reasons, "\n"), "zone us-east-1c has no ready endpoint") {
		t.Errorf("cart: %+v; want already_prefers, 8 GiB, $0.16 on AWS, and zone c's missing endpoint as a reason", cart)
	}

	code, out := costcalc(t, "advise", "--prometheus", prom.URL, "--kubernetes-version", "v1.30.1",
		"--start", start.UTC().Format(time.RFC3339Nano), "--end", end.UTC().Format(time.RFC3339Nano))
	if code != 0 || !strings.Contains(out, "kubectl -n shop annotate service api service.kubernetes.io/topology-mode=Auto") ||
		!strings.Contains(out, "aws $1.50") && !strings.Contains(out, "shop/api — switch with care") {
		t.Errorf("advise --kubernetes-version v1.30.1 (exit %d) should recommend the annotation:\n%s", code, out)
	}

	// The report page carries the Service view and the advice.
	page := filepath.Join(t.TempDir(), "report.html")
	code, out = costcalc(t, "report", "--prometheus", prom.URL, "--format", "html", "--output", page,
		"--start", start.UTC().Format(time.RFC3339Nano), "--end", end.UTC().Format(time.RFC3339Nano))
	html, _ := os.ReadFile(page)
	if code != 0 || !strings.Contains(string(html), `data-service="shop/api" data-verdict="switch_with_care"`) {
		t.Errorf("report --format html (exit %d, %s): no advice section for shop/api", code, out)
	}

	// After "switching": a second period where zone a's clients keep 10 GiB in zone and send 1 GiB across.
	time.Sleep(1500 * time.Millisecond)
	start2 := time.Now().Truncate(time.Millisecond)
	fsA.add(svcTraffic("api", "web", za, za), 10*gib)
	fsA.add(svcTraffic("api", "web", za, zb), 1*gib)
	fsA.add(`zonetoll_traffic_bytes_total{src_namespace="shop",src_workload="web",src_kind="deployment",src_zone="us-east-1a",dst_namespace="shop",dst_workload="api",dst_kind="deployment",dst_zone="us-east-1b"}`, 1*gib)
	waitGeneration(t, promAPI, pages, 3)
	end2 := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	var cmp struct {
		Services []struct {
			Name          string
			Before, After struct{ Bytes, Dollars float64 }
			Change        float64 `json:"change_monthly_dollars"`
		}
		Pairs []struct {
			Name          string
			Before, After struct{ Bytes, Dollars float64 }
		} `json:"workload_pairs"`
	}
	costcalcJSON(t, &cmp, "compare", "--prometheus", prom.URL,
		"--before-start", start.UTC().Format(time.RFC3339Nano), "--before-end", end.UTC().Format(time.RFC3339Nano),
		"--after-start", start2.UTC().Format(time.RFC3339Nano), "--after-end", end2.UTC().Format(time.RFC3339Nano))
	// By hand (AWS, $0.02 per GiB crossing): api 75 GiB = $1.50 before, 1 GiB = $0.02 after; cart $0.16 then
	// nothing; the pair web (a) → api (b) 35 GiB = $0.70, then 1 GiB = $0.02.
	got := map[string][2]float64{}
	for _, s := range cmp.Services {
		got["svc "+s.Name] = [2]float64{s.Before.Dollars, s.After.Dollars}
	}
	for _, p := range cmp.Pairs {
		got["pair "+p.Name] = [2]float64{p.Before.Dollars, p.After.Dollars}
	}
	for k, w := range map[string][2]float64{"svc shop/api": {1.50, 0.02}, "svc shop/cart": {0.16, 0},
		"pair shop/web (us-east-1a) → shop/api (us-east-1b)": {0.70, 0.02}} {
		g, ok := got[k]
		if !ok || math.Abs(g[0]-w[0]) > 1e-9 || math.Abs(g[1]-w[1]) > 1e-9 {
			t.Errorf("compare %s: before/after $%v, want $%v (%v)", k, g, w, ok)
		}
	}

	// Before the range there was no Service traffic: a clear error naming the metric.
	code, out = costcalc(t, "advise", "--prometheus", prom.URL, "--end", start.Add(-2*time.Hour).UTC().Format(time.RFC3339), "--range", "1h")
	if code != 1 || !strings.Contains(out, "zonetoll_service_traffic_bytes_total") {
		t.Errorf("advise of an empty range (exit %d) should name the missing metric:\n%s", code, out)
	}
}
