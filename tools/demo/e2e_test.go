package demo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zonetoll/zonetoll/shared/netns"
	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// Independent prices per byte for each cloud's inter-zone transfer inside one region, written from the
// providers' rules (docs/costcalc.md): AWS bills $0.01/GiB out and $0.01/GiB in, GCP $0.01/GiB to the
// sender, Azure nothing between zones. Every cross-zone pair of the demo is in us-east-1.
var crossZonePerByte = map[string]float64{
	"aws":   (0.01 + 0.01) / (1 << 30),
	"gcp":   0.01 / (1 << 30),
	"azure": 0,
}

// startTestDemo starts the demo as make demo does (routing: with kube-proxy and the EndpointSlice
// controller), with its binaries in this checkout's test-bin directory (not make demo's; kept between
// runs, so go build relinks only what changed) and its files in the test's temporary directory. Its
// progress lines go to the buffer returned, and into the failure if it cannot start.
func startTestDemo(t *testing.T, routing bool) (*Demo, *servicetest.SyncBuffer) {
	t.Helper()
	root, err := repo.Root(".")
	if err != nil {
		t.Fatal(err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	progress := &servicetest.SyncBuffer{}
	d, err := Start(t.Context(), Options{Repo: root, BinDir: CheckoutBinDir(cache, root, "test-bin"), OutDir: t.TempDir(),
		Progress: progress, Routing: routing})
	if err != nil {
		t.Fatalf("starting the demo: %v\n%s", err, progress.String())
	}
	return d, progress
}

// TestEndToEnd is the demo as a test: the same Start and RunPhase as `make demo`, with every agent,
// flowserver and costcalc restart of Disruptions while the application sends. Every figure is read from
// Prometheus, as a user reads it, and checked against the generator's own counts.
func TestEndToEnd(t *testing.T) {
	gate.Kernel(t)
	testcluster.Need(t)
	d, progress := startTestDemo(t, false)
	dir, netnsPrefix := d.Dir, d.Model.Prefix
	var pids []int
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close()
		}
	})
	dumpLogs := func() {
		if !t.Failed() || closed {
			return
		}
		t.Logf("demo progress:\n%s", progress.String())
		for _, p := range append(procsOf(d), d.Prom) {
			if p != nil {
				t.Logf("--- %s log (last lines):\n%s", p.Name, tailFile(p.Log, 15))
			}
		}
	}
	defer dumpLogs()
	m := d.Model

	// Phase 1 is long enough for its six restarts (two flowserver restarts of ~7 s each among them) to
	// happen one after the other with traffic between them.
	const phase1, phase2 = 40 * time.Second, 9 * time.Second
	p1, err := d.RunPhase(t.Context(), 1, phase1, d.Disruptions(phase1))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := d.RunPhase(t.Context(), 2, phase2, nil)
	if err != nil {
		t.Fatal(err)
	}
	end := p2.End

	// Every restart of phase 1 happened, while the application sent through the restarted process, and
	// nothing was dropped by any agent in any of its lives.
	checkRestarts(t, d, p1, d.Disruptions(phase1))
	checkDedupeMarks(t, d, end)
	for _, n := range m.Nodes {
		if lost := end.Agents[n.Name].Sum("zonetoll_flowagent_dropped_bytes_total", nil); lost != 0 {
			t.Errorf("agent of %s dropped %v bytes", n.Name, lost)
		}
	}
	// Every byte above went over TLS: the flowservers speak nothing but HTTPS (a plain request gets
	// Go's 400 for HTTP on an HTTPS port), the agents delivered to their https:// URL with the run's
	// CA, and nothing else is trusted (system roots refuse the server).
	for _, z := range m.Zones {
		s := d.Servers[z]
		resp, err := http.Get("http://" + s.Addr + "/metrics")
		if err != nil {
			t.Fatalf("plain HTTP to flowserver-%s: %v", z, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to flowserver-%s answered %d, want 400 (an HTTPS-only port)", z, resp.StatusCode)
		}
		if _, err := http.Get(s.URL("/metrics")); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("flowserver-%s trusted without the run's CA: %v", z, err)
		}
	}
	for _, n := range m.Nodes {
		sc, err := d.Agents[n.Name].Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if v := sc.Sum("zonetoll_flowagent_reports_sent_total", map[string]string{"result": "delivered"}); v == 0 {
			t.Errorf("agent of %s delivered no report over HTTPS", n.Name)
		}
	}

	// 1. Each flowserver's bytes per workload pair (over all its lives, as Prometheus scraped them) equal
	// what the generator sent from its zone plus the headers, to the byte; so do phase 1's alone (the
	// phase of the restarts) and the zone matrix a user reads.
	checkPhaseBytes(t, m, p1)
	want := Expected(m, end.Sent)
	var sameZone, total uint64
	for _, z := range m.Zones {
		got := Pairs(end.Servers[z])
		for k, w := range want[z] {
			total += w
			if !k.CrossZone() {
				sameZone += w
			}
			if g := got[k]; g != float64(w) {
				t.Errorf("flowserver-%s: %s → %s: %.0f bytes, generator sent %d (L3; a difference of %.0f)", z, name(k, true)+"@"+k.SrcZone, name(k, false)+"@"+k.DstZone, g, w, g-float64(w))
			}
		}
		for k, g := range got {
			if _, ok := want[z][k]; !ok && g != 0 {
				t.Errorf("flowserver-%s has %.0f bytes for %+v, which the generator never sent from %s", z, g, k, z)
			}
		}
	}
	if total == 0 {
		t.Fatal("the generator sent nothing")
	}

	// 2. The flow logs (written as reports are applied, kept across the restart) hold every address
	// pair's bytes and packets exactly, and every flow a server got came from a node of its zone.
	for _, z := range m.Zones {
		got := readFlowLog(t, d.FlowLogs[z], m, z)
		for k, c := range end.Sent {
			src := m.ByAddr[k[0]]
			if src.Node == nil || src.Node.Zone != z {
				continue
			}
			if g := got[k]; g.bytes != L3Bytes(k[0], c) || g.packets != c.Packets {
				t.Errorf("flow log of %s: %s → %s: %d bytes in %d packets, generator sent %d bytes in %d", z, k[0], k[1], g.bytes, g.packets, L3Bytes(k[0], c), c.Packets)
			}
		}
	}

	// 3. Each agent reported only to its own zone's server; every server got reports.
	for _, z := range m.Zones {
		sc := end.Servers[z]
		if v := sc.Sum("zonetoll_flowserver_foreign_zone_reports_total", nil); v != 0 {
			t.Errorf("flowserver-%s got %v reports from other zones' nodes", z, v)
		}
		if v := sc.Sum("zonetoll_flowserver_unknown_node_reports_total", nil); v != 0 {
			t.Errorf("flowserver-%s got %v reports from unknown nodes", z, v)
		}
		applied := sc.Sum("zonetoll_flowserver_reports_total", map[string]string{"result": "applied"})
		refused := sc.Sum("zonetoll_flowserver_reports_total", nil) - applied - sc.Sum("zonetoll_flowserver_reports_total", map[string]string{"result": "duplicate"})
		t.Logf("flowserver-%s: %.0f reports applied, %.0f refused", z, applied, refused)
		if applied == 0 {
			t.Errorf("flowserver-%s applied no report", z)
		}
	}

	// 4. costcalc: same-zone traffic never billed; each pair's dollars equal bytes × the cloud's rule.
	for _, cloud := range Clouds {
		sc := end.Costs[cloud]
		// The bytes by class are accumulated (docs/costcalc.md): a restarted run misses what grew between
		// its last scrape and its successor's first, and never counts a byte twice. The dollars below are
		// derived and exact whatever restarted.
		v := sc.Sum("zonetoll_costcalc_traffic_bytes_total", map[string]string{"class": "same_zone"})
		switch starts := d.Costcalcs[cloud].Starts; {
		case starts == 1 && v != float64(sameZone):
			t.Errorf("costcalc %s: %.0f same-zone bytes in Prometheus, want %d (a difference of %.0f)", cloud, v, sameZone, v-float64(sameZone))
		case starts > 1 && (v <= 0 || v > float64(sameZone)):
			t.Errorf("costcalc %s (started %d times): %.0f same-zone bytes in Prometheus, want more than 0 and at most the %d sent", cloud, starts, v, sameZone)
		case starts > 1:
			t.Logf("costcalc %s (started %d times): %.0f same-zone bytes of the %d sent (the accumulated counter's restart gaps)", cloud, starts, v, sameZone)
		}
		if v := sc.Sum("zonetoll_costcalc_unpriced_bytes_total", nil); v != 0 {
			t.Errorf("costcalc %s: %v bytes not priced, want 0", cloud, v)
		}
		costs := map[PairKey]float64{}
		for _, s := range sc.Series("zonetoll_cross_zone_cost_dollars_total", nil) {
			k := KeyOf(s.Labels)
			if !k.CrossZone() && s.Value != 0 {
				t.Errorf("costcalc %s bills same-zone pair %+v: $%v", cloud, k, s.Value)
			}
			costs[k] += s.Value
		}
		checkPairDollars(t, "costcalc "+cloud, m, want, cloud, costs)
		var sum float64
		for _, v := range costs {
			sum += v
		}
		t.Logf("costcalc %s: $%.9f for %d bytes of which %d same-zone", cloud, sum, total, sameZone)
	}
	checkPhaseDollars(t, m, p1)

	// 5. Phase 2: the frontend's calls stay in its zone, so it sends nothing across zones.
	for _, z := range m.Zones {
		for k, v := range Pairs(p2.Server(z)) {
			if k.SrcWorkload == "frontend" && k.CrossZone() && v != 0 {
				t.Errorf("phase 2: frontend in %s sent %.0f bytes to %s in %s", k.SrcZone, v, k.DstWorkload, k.DstZone)
			}
		}
	}
	f1, f2 := FiguresOf(m, p1), FiguresOf(m, p2)
	if f2.CrossBytes/f2.Duration.Seconds() >= f1.CrossBytes/f1.Duration.Seconds() {
		t.Errorf("cross-zone rate did not drop: phase 1 %.0f B/s, phase 2 %.0f B/s", f1.CrossBytes/f1.Duration.Seconds(), f2.CrossBytes/f2.Duration.Seconds())
	}

	// 6. Traffic per Service: each flowserver's zonetoll_service_traffic_bytes_total equals the test's own
	// attribution of the generator's counts (requests to the Services' endpoints and their answers), to the
	// byte, in both phases; and `costcalc advise` over phase 1 (a range whose start precedes every
	// per-Service series, and whose end follows the scrape of the phase's last bytes) lists the api with the
	// ledger's bytes, dollars, saving, risks and the exact command.
	ledger1 := serviceLedger(m, p1.Sent())
	checkServiceTraffic(t, m, p1, ledger1)
	checkServiceTraffic(t, m, p2, serviceLedger(m, p2.Sent()))
	advStart, advEnd := p1.Start.At.Round(0), p1.End.At.Round(0) // wall clock, as costcalc reads the flags
	raw, err := d.Advise(t.Context(), advStart, advEnd, "json")
	if err != nil {
		t.Fatal(err)
	}
	checkAdvice(t, m, raw, ledger1, advStart, advEnd, d.Cluster.Version)

	// 7. zonelabeler copied each node's zone onto its pods.
	pods, err := d.Cluster.Client.CoreV1().Pods(m.AppNS).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if n := m.NodeByName(p.Spec.NodeName); p.Labels["topology.kubernetes.io/zone"] != n.Zone {
			t.Errorf("pod %s has zone label %q, want its node's %q", p.Name, p.Labels["topology.kubernetes.io/zone"], n.Zone)
		}
	}

	// 8. The printed summary (with the advice's table, as the demo prints it) and the HTML report.
	var out strings.Builder
	PrintPhase(&out, m, "phase 1", f1)
	table, err := d.Advise(t.Context(), advStart, advEnd, "table")
	if err != nil {
		t.Fatal(err)
	}
	PrintAdvice(&out, table)
	PrintDrop(&out, f1, f2)
	for _, s := range []string{"Zone matrix", "shop/api (deployment)", "Cross-zone share", "node/" + m.Pods[len(m.Pods)-1].Node.Name, "AWS $/month",
		"1. shop/api — switch", `apply: kubectl -n shop patch service api --type=merge -p '{"spec":{"trafficDistribution":"PreferSameZone"}}'`} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, out.String())
		}
	}
	html := filepath.Join(t.TempDir(), "report.html")
	if err := d.Report(t.Context(), "aws", p1.Start.At, end.At, "html", html); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), m.Zones[1]) {
		t.Errorf("HTML report %s unreadable or without the zones: %v", html, err)
	}

	// 9. Clean-up leaves nothing: processes, namespaces, the run directory.
	for _, p := range append(procsOf(d), d.Prom) {
		pids = append(pids, p.PID())
	}
	apiPID, etcdPID := d.Cluster.PIDs()
	pids = append(pids, apiPID, etcdPID)
	dumpLogs()
	closed = true
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z ") {
				t.Errorf("process %d still runs after Close", pid)
			}
		}
	}
	if ents, _ := os.ReadDir(netns.Dir); len(ents) > 0 {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), netnsPrefix) {
				t.Errorf("network namespace %s left after Close", e.Name())
			}
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("run directory %s left after Close", dir)
	}
}

func procsOf(d *Demo) []*Proc {
	var out []*Proc
	for _, p := range d.Servers {
		out = append(out, p)
	}
	for _, p := range d.Agents {
		out = append(out, p)
	}
	for _, p := range d.Costcalcs {
		out = append(out, p)
	}
	return append(out, d.Labeler)
}

type flowTotal struct{ bytes, packets uint64 }

// readFlowLog sums a flowserver's flow log by address pair, checking that every source is a node of
// zone (or a pod on one).
func readFlowLog(t *testing.T, path string, m *Model, zone string) map[[2]netip.Addr]flowTotal {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("flow log: %v", err)
	}
	defer f.Close()
	out := map[[2]netip.Addr]flowTotal{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Src, Dst struct {
				IP   netip.Addr `json:"ip"`
				Node string     `json:"node"`
				Zone string     `json:"zone"`
			}
			Bytes, Packets uint64
			CrossZone      bool `json:"cross_zone"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("flow log %s: %v: %s", path, err, sc.Text())
		}
		if n := m.NodeByName(l.Src.Node); n == nil || n.Zone != zone {
			if src, ok := m.ByAddr[l.Src.IP]; ok && src.Node != nil {
				t.Errorf("flow log of %s: a flow from %s on node %q (zone %s)", zone, l.Src.IP, l.Src.Node, src.Zone)
			}
			continue // not the generator's (e.g. a link-local packet the agent skipped is never here)
		}
		if l.CrossZone != (l.Src.Zone != l.Dst.Zone && l.Dst.Zone != "") {
			t.Errorf("flow log of %s: %s → %s cross_zone=%v with zones %q and %q", zone, l.Src.IP, l.Dst.IP, l.CrossZone, l.Src.Zone, l.Dst.Zone)
		}
		k := [2]netip.Addr{l.Src.IP.Unmap(), l.Dst.IP.Unmap()}
		c := out[k]
		c.bytes += l.Bytes
		c.packets += l.Packets
		out[k] = c
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
