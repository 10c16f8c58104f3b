package demo

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

// svcKey is one series of zonetoll_service_traffic_bytes_total as the attribution rule (docs/flowserver.md,
// "Traffic per Service") makes it from the generator's address pairs, with the zone of the flowserver that
// counts it (the sender's node's).
type svcKey struct {
	Server                                      string // zone of the flowserver that counts the bytes
	Service, Direction                          string
	ClientNamespace, ClientWorkload, ClientKind string
	ClientZone, EndpointZone                    string
}

// serviceLedger is the test's own attribution of the generator's counts to the application's Services,
// from the addresses the demo's EndpointSlices list (Model.Services): a datagram to a listed address is
// a request to that Service (the sender is the client, the destination's zone the endpoint's); a datagram
// from a listed address to an address no Service lists is a response (the receiver is the client, the
// sender's zone the endpoint's); nothing else is a Service's. Bytes are layer-3, as the agent counts
// them; datagrams sent where no agent runs (the managed cache) are counted by nobody.
func serviceLedger(m *Model, sent map[[2]netip.Addr]PairCount) map[svcKey]uint64 {
	listed := map[netip.Addr]string{}
	for _, s := range m.Services {
		for _, a := range s.Addrs() {
			listed[a] = s.Name
		}
	}
	out := map[svcKey]uint64{}
	for k, c := range sent {
		src, dst := m.ByAddr[k[0]], m.ByAddr[k[1]]
		if src.Node == nil {
			continue
		}
		var key svcKey
		switch {
		case listed[k[1]] != "":
			key = svcKey{Service: listed[k[1]], Direction: "request", ClientNamespace: src.Namespace, ClientWorkload: src.Workload, ClientKind: src.Kind,
				ClientZone: src.Zone, EndpointZone: dst.Zone}
		case listed[k[0]] != "":
			key = svcKey{Service: listed[k[0]], Direction: "response", ClientNamespace: dst.Namespace, ClientWorkload: dst.Workload, ClientKind: dst.Kind,
				ClientZone: dst.Zone, EndpointZone: src.Zone}
		default:
			continue
		}
		key.Server = src.Node.Zone
		out[key] += L3Bytes(k[0], c)
	}
	return out
}

// serviceSeries reads the per-Service counter of one flowserver's scrape (or a phase's growth) in the
// ledger's keys.
func serviceSeries(zone string, sc metricstest.Samples) map[svcKey]float64 {
	out := map[svcKey]float64{}
	for _, s := range sc.Series("zonetoll_service_traffic_bytes_total", nil) {
		l := s.Labels
		out[svcKey{Server: zone, Service: l["service"], Direction: l["direction"], ClientNamespace: l["src_namespace"], ClientWorkload: l["src_workload"],
			ClientKind: l["src_kind"], ClientZone: l["src_zone"], EndpointZone: l["dst_zone"]}] += s.Value
	}
	return out
}

// checkServiceTraffic compares every flowserver's per-Service bytes in a phase with the ledger's, to the byte.
func checkServiceTraffic(t *testing.T, m *Model, p *Phase, ledger map[svcKey]uint64) {
	t.Helper()
	got := map[svcKey]float64{}
	for _, z := range m.Zones {
		for k, v := range serviceSeries(z, p.Server(z)) {
			if v != 0 {
				got[k] += v
			}
		}
	}
	for k, w := range ledger {
		if g := got[k]; g != float64(w) {
			t.Errorf("flowserver-%s: %s/%s %s from %s/%s (%s) in %s to %s: %.0f bytes, the ledger %d", k.Server, m.AppNS, k.Service, k.Direction,
				k.ClientNamespace, k.ClientWorkload, k.ClientKind, k.ClientZone, k.EndpointZone, g, w)
		}
	}
	for k, g := range got {
		if _, ok := ledger[k]; !ok {
			t.Errorf("flowserver-%s counted %.0f bytes for %+v, which the ledger does not attribute to a Service", k.Server, g, k)
		}
	}
}

// Independent expectations of the advice for the api Service over a range, from the ledger.
type apiExpectation struct {
	Bytes, Cross, Savable float64
	ClientBytes           map[string]float64 // by client zone
	CrossByZone           map[string]float64
	Ready                 map[string]int // by zone: the api pods' nodes' zones
}

func expectAPI(m *Model, ledger map[svcKey]uint64) apiExpectation {
	e := apiExpectation{ClientBytes: map[string]float64{}, CrossByZone: map[string]float64{}, Ready: map[string]int{}}
	for _, p := range m.ServiceNamed("api").Pods {
		e.Ready[p.Node.Zone]++
	}
	for k, b := range ledger {
		if k.Service != "api" {
			continue
		}
		e.Bytes += float64(b)
		e.ClientBytes[k.ClientZone] += float64(b)
		if k.ClientZone != "" && k.EndpointZone != "" && k.ClientZone != k.EndpointZone {
			e.Cross += float64(b)
			e.CrossByZone[k.ClientZone] += float64(b)
			if e.Ready[k.ClientZone] > 0 { // a local ready endpoint: PreferSameZone keeps these calls in zone
				e.Savable += float64(b)
			}
		}
	}
	return e
}

// adviceJSON is the part of `costcalc advise --format json` the test reads (field names of
// services/costcalc/internal/advice).
type adviceJSON struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	MonthDays  int       `json:"month_days"`
	Kubernetes string    `json:"kubernetes_version"`
	Services   []struct {
		Namespace string `json:"namespace"`
		Service   string `json:"service"`
		Headless  bool   `json:"headless"`
		Setting   struct {
			Kind    string `json:"kind"`
			Prefers bool   `json:"prefers"`
		} `json:"setting"`
		Zones []struct {
			Zone           string  `json:"zone"`
			ReadyEndpoints int     `json:"ready_endpoints"`
			ClientBytes    float64 `json:"client_bytes"`
			CrossBytes     float64 `json:"cross_bytes"`
			Savable        bool    `json:"savable"`
		} `json:"zones"`
		ReadyEndpoints int     `json:"ready_endpoints"`
		Bytes          float64 `json:"bytes"`
		CrossBytes     float64 `json:"cross_zone_bytes"`
		SavableBytes   float64 `json:"savable_bytes"`
		Clouds         []struct {
			Cloud         string  `json:"cloud"`
			CrossDollars  float64 `json:"cross_zone_dollars"`
			CrossMonthly  float64 `json:"cross_zone_monthly_dollars"`
			SavingDollars float64 `json:"saving_dollars"`
			SavingMonthly float64 `json:"saving_monthly_dollars"`
		} `json:"clouds"`
		Verdict        string `json:"verdict"`
		Recommendation *struct {
			Setting  string   `json:"setting"`
			Commands []string `json:"commands"`
		} `json:"recommendation"`
		Risks []struct {
			Kind string `json:"kind"`
			Zone string `json:"zone"`
		} `json:"risks"`
	} `json:"services"`
}

var minorVersion = regexp.MustCompile(`^v1\.(\d+)\.`)

// checkAdvice checks `costcalc advise --format json` over [start, end] (phase 1) against the ledger.
func checkAdvice(t *testing.T, m *Model, raw []byte, ledger map[svcKey]uint64, start, end time.Time, kubeVersion string) {
	t.Helper()
	var r adviceJSON
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("costcalc advise --format json: %v\n%s", err, raw)
	}
	if !r.Start.Equal(start) || !r.End.Equal(end) {
		t.Errorf("advice range %s to %s, asked for %s to %s", r.Start, r.End, start, end)
	}
	if r.Kubernetes != kubeVersion {
		t.Errorf("advice for Kubernetes %q, the cluster runs %q", r.Kubernetes, kubeVersion)
	}
	t.Logf("advice for Kubernetes %s over %s", r.Kubernetes, end.Sub(start).Round(time.Millisecond))
	byName := map[string]int{}
	for i, s := range r.Services {
		if s.Namespace == m.AppNS {
			byName[s.Service] = i
		}
	}
	i, ok := byName["api"]
	if !ok {
		t.Fatalf("the advice does not list %s/api, the Service that carries the frontend's cross-zone calls:\n%s", m.AppNS, raw)
	}
	a := r.Services[i]
	want := expectAPI(m, ledger)
	if want.Cross == 0 {
		t.Fatal("the ledger has no cross-zone api bytes: the demo's phase 1 did not run")
	}
	for _, z := range m.Zones {
		if want.Ready[z] == 0 {
			t.Fatalf("the demo has no api pod in %s: the test's expectation (every zone savable) does not hold", z)
		}
	}
	if a.Bytes != want.Bytes || a.CrossBytes != want.Cross || a.SavableBytes != want.Savable {
		t.Errorf("api: %.0f bytes, %.0f cross-zone, %.0f savable; the ledger: %.0f, %.0f, %.0f", a.Bytes, a.CrossBytes, a.SavableBytes, want.Bytes, want.Cross, want.Savable)
	}
	// The frontend's calls and their answers are the part the issue is about: both directions in it.
	var fe float64
	for k, b := range ledger {
		if k.Service == "api" && k.ClientWorkload == "frontend" && k.ClientZone != k.EndpointZone {
			fe += float64(b)
		}
	}
	t.Logf("api: %.0f cross-zone bytes in phase 1, %.0f of them the frontend's requests and answers", want.Cross, fe)
	if fe == 0 || fe > a.CrossBytes {
		t.Errorf("api: the frontend's cross-zone bytes %.0f are not within the advice's %.0f", fe, a.CrossBytes)
	}
	var endpointsTotal int
	for _, n := range want.Ready {
		endpointsTotal += n
	}
	if a.ReadyEndpoints != endpointsTotal {
		t.Errorf("api: %d ready endpoints, the demo has %d", a.ReadyEndpoints, endpointsTotal)
	}
	for _, z := range a.Zones {
		if z.ReadyEndpoints != want.Ready[z.Zone] || z.ClientBytes != want.ClientBytes[z.Zone] || z.CrossBytes != want.CrossByZone[z.Zone] || z.Savable != (want.Ready[z.Zone] > 0) {
			t.Errorf("api zone %q: %d ready, %.0f client bytes, %.0f crossing, savable %v; want %d, %.0f, %.0f, %v", z.Zone, z.ReadyEndpoints, z.ClientBytes, z.CrossBytes, z.Savable,
				want.Ready[z.Zone], want.ClientBytes[z.Zone], want.CrossByZone[z.Zone], want.Ready[z.Zone] > 0)
		}
	}
	if len(a.Zones) != len(m.Zones) {
		t.Errorf("api: %d zones in the view, want %d", len(a.Zones), len(m.Zones))
	}

	// Dollars: every api pair is inside us-east-1, so cross-zone bytes × the cloud's inter-zone price.
	months := float64(30*24*time.Hour) / float64(end.Sub(start))
	if r.MonthDays != 30 {
		t.Errorf("month of %d days, want 30", r.MonthDays)
	}
	clouds := map[string]bool{}
	for _, c := range a.Clouds {
		per, ok := crossZonePerByte[c.Cloud]
		if !ok {
			t.Errorf("api: a cloud %q the test has no price for", c.Cloud)
			continue
		}
		clouds[c.Cloud] = true
		for _, f := range []struct {
			what      string
			got, want float64
		}{
			{"cross-zone dollars", c.CrossDollars, want.Cross * per},
			{"saving dollars", c.SavingDollars, want.Savable * per},
			{"cross-zone dollars per month", c.CrossMonthly, want.Cross * per * months},
			{"saving per month", c.SavingMonthly, want.Savable * per * months},
		} {
			// To the cent, and (since the bytes are exact) to a floating-point rounding.
			if math.Abs(f.got-f.want) >= 0.005 || math.Abs(f.got-f.want) > 1e-9*math.Max(f.want, 1e-9) {
				t.Errorf("api on %s: %s $%.12g, independent $%.12g", c.Cloud, f.what, f.got, f.want)
			}
		}
		t.Logf("api on %s: saving $%.4f per month ($%.9f in %s)", c.Cloud, c.SavingMonthly, c.SavingDollars, end.Sub(start).Round(time.Millisecond))
	}
	for _, c := range Clouds {
		if !clouds[c] {
			t.Errorf("api: no figures for %s", c)
		}
	}

	// Risks, from the demo's layout: one api pod per zone (so no zone lacks a local endpoint, and 3 is not
	// fewer than the default --min-endpoints 3), each zone's clients served by that single endpoint
	// alone; overload only where a zone's share of the client bytes exceeds twice its share of endpoints.
	var known float64
	for z, b := range want.ClientBytes {
		if z != "" {
			known += b
		}
	}
	wantRisks := map[string]bool{}
	for _, z := range m.Zones {
		if want.ClientBytes[z] == 0 {
			continue
		}
		if want.Ready[z] == 1 {
			wantRisks["single_endpoint/"+z] = true
		}
		if ratio := (want.ClientBytes[z] / known) / (float64(want.Ready[z]) / float64(endpointsTotal)); ratio > 2 {
			wantRisks["overload/"+z] = true
		}
	}
	if endpointsTotal < 3 {
		wantRisks["few_endpoints/"] = true
	}
	gotRisks := map[string]bool{}
	for _, rk := range a.Risks {
		gotRisks[rk.Kind+"/"+rk.Zone] = true
	}
	if fmt.Sprint(sortedSet(gotRisks)) != fmt.Sprint(sortedSet(wantRisks)) {
		t.Errorf("api risks %v, want %v", sortedSet(gotRisks), sortedSet(wantRisks))
	}
	wantVerdict := "switch"
	if len(wantRisks) > 0 {
		wantVerdict = "switch_with_care"
	}
	if a.Verdict != wantVerdict || a.Setting.Kind != "none" || a.Setting.Prefers {
		t.Errorf("api: verdict %q with setting %+v, want %q with none", a.Verdict, a.Setting, wantVerdict)
	}

	// The recommendation: PreferSameZone (beta on from 1.34, GA in 1.35) as a merge patch.
	mv := minorVersion.FindStringSubmatch(kubeVersion)
	if mv == nil {
		t.Fatalf("cluster version %q", kubeVersion)
	}
	if minor, _ := strconv.Atoi(mv[1]); minor < 34 {
		t.Fatalf("the test cluster runs %s: the test knows the recommendation for 1.34 and newer only", kubeVersion)
	}
	wantCmd := fmt.Sprintf(`kubectl -n %s patch service api --type=merge -p '{"spec":{"trafficDistribution":"PreferSameZone"}}'`, m.AppNS)
	if a.Recommendation == nil || a.Recommendation.Setting != "trafficDistribution: PreferSameZone" ||
		len(a.Recommendation.Commands) != 1 || a.Recommendation.Commands[0] != wantCmd {
		t.Errorf("api: recommendation %+v, want trafficDistribution: PreferSameZone by\n  %s", a.Recommendation, wantCmd)
	}

	// The demo's other Services: postgres is headless (the setting does not apply); the managed cache's
	// only endpoint is in us-east-1c, so its crossing clients have no local endpoint: no saving yet.
	for name, verdict := range map[string]string{"postgres": "not_applicable", m.Ext.Name: "no_saving"} {
		j, ok := byName[name]
		if !ok {
			t.Errorf("the advice does not list %s/%s, whose clients cross zones", m.AppNS, name)
			continue
		}
		var cross float64
		for k, b := range ledger {
			if k.Service == name && k.ClientZone != k.EndpointZone {
				cross += float64(b)
			}
		}
		if s := r.Services[j]; s.Verdict != verdict || s.CrossBytes != cross || s.Recommendation != nil {
			t.Errorf("%s: verdict %q, %.0f cross-zone bytes, recommendation %v; want %q, %.0f (ledger), none", name, s.Verdict, s.CrossBytes, s.Recommendation, verdict, cross)
		}
	}
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The test's attribution by hand: a request is counted toward the Service the destination belongs to,
// an answer to a client no Service lists toward the sender's Service with the receiver as client, and the
// managed cache's datagrams by nobody.
func TestServiceLedger(t *testing.T) {
	m := NewModel("ztdemo-1-")
	za, zb, zc := m.Zones[0], m.Zones[1], m.Zones[2]
	fe, api, apiA, pg := m.Pod("frontend", za), m.Pod("api", zb), m.Pod("api", za), m.Pod("postgres", za)
	node := m.NodeByName("node-c1")
	sent := map[[2]netip.Addr]PairCount{
		{fe.IPv4, api.IPv4}:                   {Packets: 10, Payload: 3000}, // request
		{api.IPv6, fe.IPv6}:                   {Packets: 2, Payload: 2400},  // answer to a client no Service lists
		{api.IPv4, pg.IPv4}:                   {Packets: 3, Payload: 600},   // a request to the headless postgres
		{pg.IPv4, api.IPv4}:                   {Packets: 3, Payload: 2400},  // postgres' answer goes to a listed address: a request to api
		{api.IPv4, m.Ext.IPv4}:                {Packets: 1, Payload: 400},   // to the managed cache's Service
		{m.Ext.IPv4, api.IPv4}:                {Packets: 5, Payload: 500},   // sent where no agent runs
		{node.IPv4, apiA.IPv4}:                {Packets: 1, Payload: 100},   // the host-network metrics agent: its node is the client
		{apiA.IPv6, node.IPv6}:                {Packets: 1, Payload: 1400},  // and its answer
		{fe.IPv4, m.Pod("frontend", zb).IPv4}: {Packets: 1, Payload: 1},     // no Service on either side
	}
	got := serviceLedger(m, sent)
	want := map[svcKey]uint64{
		{za, "api", "request", "shop", "frontend", KindDeployment, za, zb}:  3000 + 10*28,
		{zb, "api", "response", "shop", "frontend", KindDeployment, za, zb}: 2400 + 2*48,
		{zb, "postgres", "request", "shop", "api", KindDeployment, zb, za}:  600 + 3*28,
		{za, "api", "request", "shop", "postgres", KindStatefulSet, za, zb}: 2400 + 3*28,
		{zb, m.Ext.Name, "request", "shop", "api", KindDeployment, zb, zc}:  400 + 28,
		{zc, "api", "request", "", node.Name, KindNode, zc, za}:             100 + 28,
		{za, "api", "response", "", node.Name, KindNode, zc, za}:            1400 + 48,
	}
	if fmt.Sprint(sortedLedger(got)) != fmt.Sprint(sortedLedger(want)) {
		t.Errorf("serviceLedger:\n got %v\nwant %v", sortedLedger(got), sortedLedger(want))
	}
	e := expectAPI(m, got)
	// Crossing: every api key above but none in one zone; all savable (an api pod in every zone).
	cross := float64(3000 + 10*28 + 2400 + 2*48 + 2400 + 3*28 + 100 + 28 + 1400 + 48)
	if e.Cross != cross || e.Savable != cross || e.Ready[za] != 1 || e.Ready[zb] != 1 || e.Ready[zc] != 1 {
		t.Errorf("expectAPI: %+v, want %.0f crossing, all savable, one endpoint per zone", e, cross)
	}
}

func sortedLedger(m map[svcKey]uint64) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%+v=%d", k, v))
	}
	sort.Strings(out)
	return out
}
