package advice

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
)

const gib = 1 << 30

const (
	za, zb, zc = "us-east-1a", "us-east-1b", "us-east-1c"
)

func tables(t *testing.T) []*pricing.Table {
	t.Helper()
	var out []*pricing.Table
	for _, c := range pricing.Clouds() { // aws, azure, gcp
		tb, err := pricing.Preset(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tb)
	}
	return out
}

// flows builds the client traffic of one Service: each entry is client zone, endpoint zone, GiB.
func flows(ns, svc string, pairs ...any) []Flow {
	var out []Flow
	for i := 0; i < len(pairs); i += 3 {
		out = append(out, Flow{Namespace: ns, Service: svc, ClientNamespace: "shop", ClientWorkload: "web-" + pairs[i].(string), ClientKind: "deployment",
			SrcZone: pairs[i].(string), DstZone: pairs[i+1].(string), Bytes: float64(pairs[i+2].(int)) * gib})
	}
	return out
}

func state(ns, svc, td string, ready map[string]int) ServiceState {
	return ServiceState{Namespace: ns, Name: svc, InfoKnown: true, Type: "ClusterIP", TrafficDistribution: td, Ready: ready}
}

// cents compares dollars to the cent, and exactly up to float rounding.
func cents(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Round(got*100) != math.Round(want*100) || math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = $%.6f, want $%.2f", what, got, want)
	}
}

// TestHandBuiltSituations checks the advice for the situations against dollars computed by hand.
// One day of traffic on AWS ($0.01/GiB out + $0.01/GiB in = $0.02 per GiB crossing), GCP ($0.01/GiB, the
// sender pays) and Azure (inter-zone free); the month is 30 days, so monthly = 30 × the day.
func TestHandBuiltSituations(t *testing.T) {
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	type want struct {
		verdict                        string
		crossGiB, savableGiB           float64
		awsCross, awsSaving, gcpSaving float64 // monthly dollars
		risks                          []string
		riskText, reasonText, command  string
	}
	for _, c := range []struct {
		name  string
		flows []Flow
		state ServiceState
		want  want
	}{{
		// 3 zones × 2 endpoints; each zone's clients send 30 GiB, a third to each zone (today's random
		// routing). Crossing: 20 GiB from each zone = 60 GiB a day, all of it from zones with local
		// endpoints. AWS: 60 × $0.02 = $1.20/day → $36.00/month; GCP: 60 × $0.01 = $0.60 → $18.00.
		name:  "balanced",
		flows: flows("shop", "api", za, za, 10, za, zb, 10, za, zc, 10, zb, za, 10, zb, zb, 10, zb, zc, 10, zc, za, 10, zc, zb, 10, zc, zc, 10),
		state: state("shop", "api", "", map[string]int{za: 2, zb: 2, zc: 2}),
		want: want{verdict: VerdictSwitch, crossGiB: 60, savableGiB: 60, awsCross: 36, awsSaving: 36, gcpSaving: 18, risks: nil,
			command: `kubectl -n shop patch service api --type=merge -p '{"spec":{"trafficDistribution":"PreferSameZone"}}'`},
	}, {
		// Endpoints 3 in a, 3 in b, none in c. a and b send 20 GiB each, half to each zone; c sends 40 GiB,
		// half to a, half to b. Crossing: a→b 10 + b→a 10 + c→a 20 + c→b 20 = 60 GiB ($1.20/day AWS →
		// $36.00/month). Only a's and b's 20 GiB would stay in zone: AWS 20 × $0.02 × 30 = $12.00, GCP $6.00.
		name:  "one zone without endpoints",
		flows: flows("shop", "api", za, za, 10, za, zb, 10, zb, za, 10, zb, zb, 10, zc, za, 20, zc, zb, 20),
		state: state("shop", "api", "", map[string]int{za: 3, zb: 3}),
		want: want{verdict: VerdictSwitch, crossGiB: 60, savableGiB: 20, awsCross: 36, awsSaving: 12, gcpSaving: 6,
			risks: []string{RiskNoLocalEndpoint}, riskText: "zone us-east-1c has clients (40.0 GiB, 50 % of the traffic) but no ready endpoint"},
	}, {
		// a has 70 % of the client bytes (70 of 100 GiB) and 1 of 6 endpoints (b 3, c 2). Crossing: a 35+25,
		// b 5+5, c 2+3 = 75 GiB, all from zones with endpoints: AWS 75 × $0.02 × 30 = $45.00, GCP $22.50.
		// Overload: 70 % of the traffic onto 1/6 = 16.7 % of the endpoints, ratio 0.7 × 6 = 4.2 > 2.
		name:  "70 % of clients, 1 of 6 endpoints",
		flows: flows("shop", "api", za, za, 10, za, zb, 35, za, zc, 25, zb, za, 5, zb, zb, 10, zb, zc, 5, zc, za, 2, zc, zb, 3, zc, zc, 5),
		state: state("shop", "api", "", map[string]int{za: 1, zb: 3, zc: 2}),
		want: want{verdict: VerdictSwitchWithCare, crossGiB: 75, savableGiB: 75, awsCross: 45, awsSaving: 45, gcpSaving: 22.5,
			risks:    []string{RiskOverload, RiskSingleEndpoint},
			riskText: "would concentrate load: zone us-east-1a's clients send 70 % of the traffic onto 16.7 % of the ready endpoints (1 of 6), ratio 4.2, above 2"},
	}, {
		// Already PreferSameZone, endpoints 2 in a, 2 in b. a's 10 GiB stay; b sends 2 of its 10 GiB to a
		// anyway; c (no endpoint) sends 3 to a and 3 to b. Crossing 8 GiB: AWS 8 × $0.02 × 30 = $4.80/month.
		// Listed with its reasons, not counted as a saving.
		name:  "already preferring the zone",
		flows: flows("shop", "cart", za, za, 10, zb, zb, 8, zb, za, 2, zc, za, 3, zc, zb, 3),
		state: state("shop", "cart", "PreferSameZone", map[string]int{za: 2, zb: 2}),
		want: want{verdict: VerdictAlready, crossGiB: 8, savableGiB: 2, awsCross: 4.8, awsSaving: 1.2, gcpSaving: 0.6,
			risks:      []string{RiskNoLocalEndpoint},
			reasonText: "zone us-east-1b has 2 ready endpoint(s) yet its clients sent 2.00 GiB across zones"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			quiet := flows("shop", "quiet", za, za, 5)
			r := Compute(Input{Start: day, End: day.Add(24 * time.Hour), Flows: append(c.flows, quiet...), Tables: tables(t),
				Services: []ServiceState{c.state, state("shop", "quiet", "", map[string]int{za: 1})}, Kubernetes: "v1.37.2"})
			if len(r.Services) != 1 || r.QuietServices != 1 {
				t.Fatalf("%d Services listed, %d quiet; want the one with cross-zone bytes and the quiet one counted", len(r.Services), r.QuietServices)
			}
			a := r.Services[0]
			if a.Verdict != c.want.verdict {
				t.Errorf("verdict %s, want %s (risks %+v, reasons %q)", a.Verdict, c.want.verdict, a.Risks, a.Reasons)
			}
			if a.CrossBytes != c.want.crossGiB*gib || a.SavableBytes != c.want.savableGiB*gib {
				t.Errorf("cross %v GiB savable %v GiB, want %v and %v", a.CrossBytes/gib, a.SavableBytes/gib, c.want.crossGiB, c.want.savableGiB)
			}
			fig := map[string]CloudFigures{}
			for _, f := range a.Clouds {
				fig[f.Cloud] = f
			}
			cents(t, "aws cross-zone per month", fig["aws"].CrossMonthly, c.want.awsCross)
			cents(t, "aws cross-zone in the day", fig["aws"].CrossDollars, c.want.awsCross/30)
			cents(t, "aws saving per month", fig["aws"].SavingMonthly, c.want.awsSaving)
			cents(t, "gcp saving per month", fig["gcp"].SavingMonthly, c.want.gcpSaving)
			cents(t, "azure saving per month", fig["azure"].SavingMonthly, 0)
			var kinds []string
			for _, rk := range a.Risks {
				kinds = append(kinds, rk.Kind)
			}
			if !slices.Equal(kinds, c.want.risks) {
				t.Errorf("risks %v, want %v: %+v", kinds, c.want.risks, a.Risks)
			}
			if c.want.riskText != "" && !strings.Contains(a.Risks[0].Message, c.want.riskText) {
				t.Errorf("risk %q lacks %q", a.Risks[0].Message, c.want.riskText)
			}
			if c.want.reasonText != "" && !strings.Contains(strings.Join(a.Reasons, "\n"), c.want.reasonText) {
				t.Errorf("reasons %q lack %q", a.Reasons, c.want.reasonText)
			}
			switch {
			case c.want.verdict == VerdictAlready:
				if a.Recommendation != nil {
					t.Errorf("a Service that already prefers the zone got a recommendation %+v", a.Recommendation)
				}
				if r.Totals[0].SavingMonthly != 0 {
					t.Errorf("its saving was added to the totals: %+v", r.Totals)
				}
			case c.want.command != "":
				if a.Recommendation == nil || len(a.Recommendation.Commands) != 1 || a.Recommendation.Commands[0] != c.want.command {
					t.Errorf("recommendation %+v, want the command %s", a.Recommendation, c.want.command)
				}
			}
			if c.want.verdict != VerdictAlready {
				cents(t, "aws total saving per month", r.Totals[0].SavingMonthly, c.want.awsSaving)
			}
		})
	}
}

// TestRangeScalesToThirtyDays: the monthly figures are the range's dollars × 30 days ÷ the range.
func TestRangeScalesToThirtyDays(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	// 6 hours, 1 GiB crossing on AWS: $0.02 × (720 h / 6 h) = $2.40 a month.
	r := Compute(Input{Start: start, End: start.Add(6 * time.Hour), Flows: flows("shop", "api", za, zb, 1), Tables: tables(t),
		Services: []ServiceState{state("shop", "api", "", map[string]int{za: 3, zb: 3})}})
	cents(t, "monthly", r.Services[0].Clouds[0].CrossMonthly, 2.40)
	if !strings.Contains(r.RecommendNote, "assumed 1.35") {
		t.Errorf("unknown version note %q", r.RecommendNote)
	}
}

// TestSeveralServicesAndHeadless: a pod backing two Services gets one command per Service that does not
// prefer the zone yet; a headless Service is not advised a setting that would not apply.
func TestSeveralServicesAndHeadless(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	headless := state("shop", "db", "", map[string]int{za: 1, zb: 1, zc: 1})
	headless.Headless = true
	r := Compute(Input{Start: start, End: start.Add(24 * time.Hour), Tables: tables(t), Kubernetes: "v1.37.2",
		Flows: append(flows("shop", "api+api-canary", za, zb, 4), flows("shop", "db", za, zb, 1)...),
		Services: []ServiceState{
			state("shop", "api", "", map[string]int{za: 2, zb: 2}),
			state("shop", "api-canary", "PreferSameZone", map[string]int{za: 1, zb: 1}),
			headless,
		}})
	if len(r.Services) != 2 {
		t.Fatalf("services %+v", r.Services)
	}
	api, db := r.Services[0], r.Services[1]
	if api.Recommendation == nil || len(api.Recommendation.Commands) != 1 || !strings.Contains(api.Recommendation.Commands[0], "patch service api ") {
		t.Errorf("api+api-canary recommendation %+v, want one command, for api", api.Recommendation)
	}
	if api.ReadyEndpoints != 4 {
		t.Errorf("api+api-canary has %d ready endpoints, want 4 (the larger part per zone)", api.ReadyEndpoints)
	}
	if db.Verdict != VerdictNotApplicable || db.Recommendation != nil || !strings.Contains(db.Reasons[0], "headless") {
		t.Errorf("headless db: %+v", db)
	}
}

func TestRecommendFor(t *testing.T) {
	for _, c := range []struct{ version, want string }{
		{"v1.37.2", `"trafficDistribution":"PreferSameZone"`},
		{"v1.35.0", `"trafficDistribution":"PreferSameZone"`},
		{"v1.34.1-eks-1234", `"trafficDistribution":"PreferSameZone"`},
		{"v1.33.4", `"trafficDistribution":"PreferClose"`},
		{"v1.31.0", `"trafficDistribution":"PreferClose"`},
		{"v1.30.9", "annotate service api service.kubernetes.io/topology-mode=Auto"},
		{"v1.27.0", "annotate service api service.kubernetes.io/topology-mode=Auto"},
		{"v1.26.3", "annotate service api service.kubernetes.io/topology-aware-hints=auto"},
		{"", `"trafficDistribution":"PreferSameZone"`},
	} {
		if got := RecommendFor(c.version).Command("shop", "api"); !strings.Contains(got, c.want) {
			t.Errorf("%q: %s, want %s", c.version, got, c.want)
		}
	}
}

// TestFormats writes the 70 % situation in every format and checks what a reader looks for.
func TestFormats(t *testing.T) {
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r := Compute(Input{Start: day, End: day.Add(24 * time.Hour), Tables: tables(t), Kubernetes: "v1.37.2", KubeSource: KubernetesMetric,
		Flows:    flows("shop", "api", za, za, 10, za, zb, 35, za, zc, 25, zb, za, 5, zb, zb, 10, zb, zc, 5, zc, za, 2, zc, zb, 3, zc, zc, 5),
		Services: []ServiceState{state("shop", "api", "", map[string]int{za: 1, zb: 3, zc: 2})}})
	for format, wants := range map[string][]string{
		"table": {"Service advice, 2026-12-01T00:00:00Z to 2026-12-02T00:00:00Z (1d)", "Kubernetes v1.37.2 (from zonetoll_kubernetes_info): recommended trafficDistribution: PreferSameZone",
			"shop/api — switch with care", "aws $45.00, azure $0.00, gcp $22.50", "us-east-1a  1 (16.7 %)", "70.0 GiB", "ratio 4.2",
			`apply: kubectl -n shop patch service api --type=merge -p '{"spec":{"trafficDistribution":"PreferSameZone"}}'`},
		"json": {`"saving_monthly_dollars": 45`, `"verdict": "switch_with_care"`, `"kind": "overload"`},
		"html": {`data-service="shop/api" data-verdict="switch_with_care"`, `<tr data-cloud="aws"><td>aws</td><td class="n cross">$45.00</td><td class="n saving">$45.00</td>`,
			`<pre class="command">kubectl -n shop patch service api --type=merge -p &#39;{&#34;spec&#34;:{&#34;trafficDistribution&#34;:&#34;PreferSameZone&#34;}}&#39;</pre>`},
	} {
		var b strings.Builder
		if err := Write(&b, r, format); err != nil {
			t.Fatal(err)
		}
		for _, w := range wants {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s lacks %q:\n%s", format, w, b.String())
			}
		}
	}
}
