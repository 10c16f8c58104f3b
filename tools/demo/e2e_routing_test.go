package demo

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/shared/netns"
	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// TestEndToEndRouting is the demo with a real routing change (issue #19): the frontend calls the api
// Service by its ClusterIPs, a real kube-proxy in each node's namespace picks the endpoint, zonetoll
// measures phase 1 and advises PreferSameZone, the demo applies the advice's patch through the API,
// the EndpointSlice controller writes hints, kube-proxy routes in zone, and phase 2 is measured. Checked
// against the generator's ledger (which records the endpoint each call really reached, learned from its
// answer): every byte still accounted for exactly with kube-proxy's NAT in the path; phase 1's
// cross-zone share of the frontend's calls is what uniform spreading predicts; phase 2 has no frontend
// byte crossing zones; the measured saving matches the advice's prediction; and phase 3, after the last
// zone's only api pod turns not ready, shows the advice's single_endpoint risk as the advice said it:
// that zone's calls all cross, spread over the other zones' pods, and the other zones stay in zone.
func TestEndToEndRouting(t *testing.T) {
	gate.Kernel(t)
	testcluster.Need(t)
	testcluster.NeedRouting(t, "")
	gate.Command(t, "nft", gate.Debian("nftables"))
	d, progress := startTestDemo(t, true)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo progress:\n%s", progress.String())
		}
		d.Close() // again after the test's own Close: a no-op then
	})
	m := d.Model

	const phase1, phase2, phase3 = 12 * time.Second, 12 * time.Second, 8 * time.Second
	p1, err := d.RunPhase(t.Context(), 1, phase1, nil)
	if err != nil {
		t.Fatal(err)
	}
	advStart, advEnd := p1.Start.At.Round(0), p1.End.At.Round(0)
	raw, err := d.Advise(t.Context(), advStart, advEnd, "json")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ApplyAdvice(t.Context(), raw); err != nil {
		t.Fatal(err)
	}
	p2, err := d.RunPhase(t.Context(), 2, phase2, nil)
	if err != nil {
		t.Fatal(err)
	}

	// 1. Every byte accounted for: each flowserver's bytes per workload pair in each phase equal the
	// ledger's, to the byte, with kube-proxy's DNAT in the path (the agents never see a ClusterIP, or the
	// pairs would differ).
	checkPhaseBytes(t, m, p1)
	checkPhaseBytes(t, m, p2)

	for k := range p2.End.Sent {
		if k[1] == d.APIClusterIPs[0] || k[1] == d.APIClusterIPs[1] {
			t.Errorf("the ledger names a ClusterIP (%s → %s): the generator did not learn the endpoint", k[0], k[1])
		}
	}
	// Per Service too: the controller's slices give the same attribution as the test's own.
	checkServiceTraffic(t, m, p1, serviceLedger(m, p1.Sent()))
	checkServiceTraffic(t, m, p2, serviceLedger(m, p2.Sent()))

	// 2. Phase 1: kube-proxy spreads each call uniformly over the 3 api pods, so a call crosses zones with
	// probability 2/3. Over n calls the cross-zone count is binomial (n, 2/3): the test allows 6 standard
	// deviations (a false failure about once in 5e8 runs).
	frontCalls := func(p *Phase) (calls, cross uint64) {
		for k, c := range p.Sent() {
			src, dst := m.ByAddr[k[0]], m.ByAddr[k[1]]
			if src.Workload == "frontend" && dst.Workload == "api" {
				calls += c.Packets
				if src.Zone != dst.Zone {
					cross += c.Packets
				}
			}
		}
		return calls, cross
	}
	n1, x1 := frontCalls(p1)
	if n1 == 0 {
		t.Fatal("phase 1: the frontend made no call")
	}
	sd := math.Sqrt(float64(n1) * 2 / 9)
	t.Logf("phase 1: %d of the frontend's %d calls crossed zones (%.3f; uniform spreading: 2/3, 6 sd = %.0f calls)", x1, n1, float64(x1)/float64(n1), 6*sd)
	if math.Abs(float64(x1)-float64(n1)*2/3) > 6*sd {
		t.Errorf("phase 1: %d of %d frontend calls crossed zones, uniform spreading predicts %.0f ± %.0f", x1, n1, float64(n1)*2/3, 6*sd)
	}
	// 3. Phase 2: every zone has an api pod, so no frontend call and no answer to it crosses zones, by
	// the ledger and by every flowserver.
	n2, x2 := frontCalls(p2)
	if n2 == 0 || x2 != 0 {
		t.Errorf("phase 2: %d of the frontend's %d calls crossed zones, want 0 of more than 0", x2, n2)
	}
	for _, z := range m.Zones {
		for k, v := range Pairs(p2.Server(z)) {
			if k.CrossZone() && v != 0 && (k.SrcWorkload == "frontend" && k.DstWorkload == "api" || k.SrcWorkload == "api" && k.DstWorkload == "frontend") {
				t.Errorf("phase 2: flowserver-%s counted %.0f bytes %s@%s → %s@%s", z, v, k.SrcWorkload, k.SrcZone, k.DstWorkload, k.DstZone)
			}
		}
	}

	// 4. Predicted against measured saving, per cloud: the advice's monthly saving for the api Service
	// over phase 1, and the drop of the whole cluster's monthly cross-zone cost from phase 1 to phase 2.
	// The advice itself is exact against the ledger (as in TestEndToEnd), with the controller's slices.
	checkAdvice(t, m, raw, serviceLedger(m, p1.Sent()), advStart, advEnd, d.Cluster.Version)
	var adv adviceJSON
	if err := json.Unmarshal(raw, &adv); err != nil {
		t.Fatal(err)
	}
	// The advice prices the bytes of its whole range (the phase plus the wait for the last reports); the
	// phases' rates are over their sending time, so both are put on that time base.
	predicted := map[string]float64{}
	var savable float64
	for _, s := range adv.Services {
		if s.Namespace == m.AppNS && s.Service == "api" {
			savable = s.SavableBytes
			for _, c := range s.Clouds {
				predicted[c.Cloud] = c.SavingDollars * float64(month) / float64(p1.Duration())
			}
		}
	}
	// The part of the saving routing can deliver: the frontend's cross-zone calls and answers (it calls
	// through the Service); the metrics agent calls an api pod directly and keeps crossing.
	var frontCross float64
	for k, c := range p1.Sent() {
		src, dst := m.ByAddr[k[0]], m.ByAddr[k[1]]
		if (src.Workload == "frontend" && dst.Workload == "api" || src.Workload == "api" && dst.Workload == "frontend") && src.Zone != dst.Zone {
			frontCross += float64(L3Bytes(k[0], c))
		}
	}
	f1, f2 := FiguresOf(m, p1), FiguresOf(m, p2)
	for _, cloud := range Clouds {
		measured := f1.MonthDollars[cloud] - f2.MonthDollars[cloud]
		routable := frontCross * crossZonePerByte[cloud] * float64(month) / float64(p1.Duration())
		t.Logf("%s: predicted saving $%.2f/month, of it through the Service $%.2f; measured $%.2f/month (phase 1 $%.2f, phase 2 $%.2f)", cloud, predicted[cloud], routable, measured, f1.MonthDollars[cloud], f2.MonthDollars[cloud])
		if crossZonePerByte[cloud] == 0 {
			if measured != 0 || predicted[cloud] != 0 {
				t.Errorf("%s charges nothing between zones, yet the saving is predicted $%.2f and measured $%.2f", cloud, predicted[cloud], measured)
			}
			continue
		}
		// Tolerance 10%: the rest of the cross-zone traffic (about a fifth of phase 1's) runs at the same
		// rate in both phases, but a loaded machine can drop some of a caller's ticks in one phase.
		if math.Abs(measured-routable) > 0.1*routable {
			t.Errorf("%s: measured saving $%.2f/month, the advice's prediction for the calls through the Service $%.2f (tolerance 10%%)", cloud, measured, routable)
		}
		// The advice's whole prediction also counts bytes to the api pods that do not go through the
		// Service (zonetoll attributes by address): routing cannot save those, so it is an upper bound.
		if measured > predicted[cloud]+0.1*routable {
			t.Errorf("%s: measured saving $%.2f/month exceeds the advice's $%.2f", cloud, measured, predicted[cloud])
		}
	}
	t.Logf("api: %.0f savable bytes in phase 1 by the advice, %.0f of them the frontend's", savable, frontCross)

	// 5. The summary sets predicted and measured saving side by side.
	var out strings.Builder
	if err := PrintSaving(&out, m, f1, f2, raw); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"PREDICTED SAVING", "MEASURED SAVING", "AWS $/month", "GCP $/month"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("saving summary lacks %q:\n%s", s, out.String())
		}
	}
	t.Logf("summary:\n%s", out.String())

	// 6. The advice's risk, played: the last zone's only api pod turns not ready. The advice named that
	// zone's single endpoint a risk and said a zone without a ready endpoint falls back to every endpoint:
	// so in phase 3 every call of that zone's frontend crosses, spread uniformly over the other zones' api
	// pods, the other zones' calls stay in zone, and zonetoll still counts every byte.
	riskZone := m.Zones[len(m.Zones)-1]
	named := false
	for _, s := range adv.Services {
		for _, r := range s.Risks {
			named = named || s.Namespace == m.AppNS && s.Service == "api" && r.Kind == "single_endpoint" && r.Zone == riskZone
		}
	}
	if !named {
		t.Errorf("the advice names no single_endpoint risk for %s in the api Service:\n%s", riskZone, raw)
	}
	if err := d.LoseEndpoint(t.Context(), riskZone); err != nil {
		t.Fatal(err)
	}
	p3, err := d.RunPhase(t.Context(), 3, phase3, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkPhaseBytes(t, m, p3)
	checkServiceTraffic(t, m, p3, serviceLedger(m, p3.Sent()))
	// Counted here from the ledger, apart from RoutedTo (what the demo prints), so the check does not
	// rest on the code it checks.
	to := map[string]map[string]uint64{} // frontend zone → answering api pod's zone → calls
	for k, c := range p3.Sent() {
		src, dst := m.ByAddr[k[0]], m.ByAddr[k[1]]
		if src.Workload == "frontend" && dst.Workload == "api" {
			if to[src.Zone] == nil {
				to[src.Zone] = map[string]uint64{}
			}
			to[src.Zone][dst.Zone] += c.Packets
		}
	}
	for _, z := range m.Zones {
		var n uint64
		for _, c := range to[z] {
			n += c
		}
		if n == 0 {
			t.Errorf("phase 3: the frontend of %s made no call", z)
			continue
		}
		if z != riskZone {
			if to[z][z] != n {
				t.Errorf("phase 3: %d of the %d calls of %s's frontend crossed zones, want 0 (its api pod is ready)", n-to[z][z], n, z)
			}
			continue
		}
		if to[z][z] != 0 {
			t.Errorf("phase 3: %d calls of %s's frontend reached its not-ready api pod", to[z][z], z)
		}
		// Uniform over the other zones' pods: binomial (n, 1/k) per zone, within 6 standard deviations.
		k := float64(len(m.Zones) - 1)
		sd := math.Sqrt(float64(n) * (1 / k) * (1 - 1/k))
		for _, z2 := range m.Zones {
			if z2 == z {
				continue
			}
			t.Logf("phase 3: %d of the %d calls of %s's frontend went to %s (uniform: %.0f ± %.0f)", to[z][z2], n, z, z2, float64(n)/k, 6*sd)
			if math.Abs(float64(to[z][z2])-float64(n)/k) > 6*sd {
				t.Errorf("phase 3: %d of the %d calls of %s's frontend went to %s; falling back to every ready endpoint predicts %.0f ± %.0f", to[z][z2], n, z, z2, float64(n)/k, 6*sd)
			}
		}
	}
	out.Reset()
	if err := PrintRisk(&out, m, p3, FiguresOf(m, p3), riskZone, raw); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"The advice said: zone " + riskZone + " has a single ready endpoint", "falls back to every endpoint"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("risk summary lacks %q:\n%s", s, out.String())
		}
	}
	// The risk zone's row: every call crossed.
	if row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(riskZone) + `\s+([0-9]+)\s.*\s([0-9]+) \(100%\)$`).FindStringSubmatch(out.String()); row == nil || row[1] != row[2] || row[1] == "0" {
		t.Errorf("risk summary: no row of %s with all its calls crossed:\n%s", riskZone, out.String())
	}
	t.Logf("risk summary:\n%s", out.String())

	// 7. Clean-up: the kube-proxies and kube-controller-manager go with the cluster, their rules with the
	// node namespaces.
	var pids []int
	for _, kp := range d.Routing.Proxies {
		pids = append(pids, kp.PID())
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, pid := range pids {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(st), ") Z ") {
			t.Errorf("kube-proxy %d still runs after Close", pid)
		}
	}
	if ents, _ := os.ReadDir(netns.Dir); len(ents) > 0 {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), m.Prefix) {
				t.Errorf("network namespace %s left after Close", e.Name())
			}
		}
	}
}
