package ingest

import (
	"bytes"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

// A report counts only for its own node: flows whose source resolves to a pod or an address of
// another node are counted apart, by reason, and nowhere else (traffic, flows, the flow log); the
// rest of the report counts as before, including sources on no node (external) and a host-network
// pod, which shares its node's address.
func TestForeignSourcesCountedApart(t *testing.T) {
	c := newCluster(t, 6, 3, 3, 0) // pod p on node-00(p%3) at 198.18.0.p; node n at 198.19.0.n
	created := time.Now().Add(-time.Hour)
	c.res.UpsertPod(resolve.PodState{Namespace: "kube-system", Name: "hostnet", Node: "node-001", HostNetwork: true,
		IPs: []netip.Addr{netip.MustParseAddr("198.19.0.1")}, Created: created}, created)
	var flowLog bytes.Buffer
	hs := newStrictHarness(t, c, Limits{MaxBodyBytes: 1 << 20, MaxFlows: 100}, time.Hour, &flowLog)
	a := func(s string) report.Addr { return report.AddrFrom(netip.MustParseAddr(s)) }
	flows := []report.Flow{
		{Src: a("198.18.0.1"), Dst: a("198.18.0.2"), Bytes: 1_000, Packets: 1},     // pod on node-001: counted
		{Src: a("198.18.0.4"), Dst: a("198.18.0.2"), Bytes: 20, Packets: 1},        // pod on node-001: counted
		{Src: a("198.19.0.1"), Dst: a("198.18.0.2"), Bytes: 300, Packets: 1},       // node-001 itself (and its host-network pod): counted
		{Src: a("fd00:ee::1"), Dst: a("198.18.0.1"), Bytes: 4_000, Packets: 1},     // external: cannot be checked, counted
		{Src: a("198.18.0.0"), Dst: a("198.18.0.1"), Bytes: 50_000, Packets: 1},    // pod on node-000: foreign
		{Src: a("198.18.0.5"), Dst: a("198.18.0.1"), Bytes: 600_000, Packets: 1},   // pod on node-002: foreign
		{Src: a("198.19.0.2"), Dst: a("198.18.0.1"), Bytes: 7_000_000, Packets: 1}, // node-002's address: foreign
	}
	now := time.Unix(0, hs.clock.Load())
	body := encodeT(t, &report.Report{Node: "node-001", BootID: [16]byte{11}, Sequence: 1, WindowStart: now.Add(-time.Second), WindowEnd: now, Flows: flows})
	if rec := hs.post(body, ""); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "applied" {
		t.Fatalf("report: %d %s", rec.Code, rec.Body)
	}
	bytesTotal, flowsTotal := hs.totals(t)
	if bytesTotal != 1_000+20+300+4_000 || flowsTotal != 4 {
		t.Errorf("traffic bytes %v and flows %v, want 5320 and 4 (the flows whose source is on node-001 or on no node)", bytesTotal, flowsTotal)
	}
	fams := metricstest.Gather(t, hs.reg)
	for reason, want := range map[string]float64{"pod": 650_000, "node": 7_000_000} {
		if v, _ := fams.Value("zonetoll_flowserver_foreign_source_bytes_total", map[string]string{"reason": reason}); v != want {
			t.Errorf("foreign source bytes (%s) = %v, want %v", reason, v, want)
		}
	}
	if v := fams.Sum("zonetoll_flowserver_traffic_bytes_total", nil); v != 5_320 {
		t.Errorf("zonetoll_flowserver_traffic_bytes_total = %v, want 5320", v)
	}
	if n := strings.Count(flowLog.String(), "\n"); n != 4 {
		t.Errorf("flow log has %d lines, want 4 (no foreign flow):\n%s", n, flowLog.String())
	}
	if strings.Contains(flowLog.String(), "198.19.0.2") || strings.Contains(flowLog.String(), "198.18.0.5") {
		t.Errorf("flow log names a foreign source:\n%s", flowLog.String())
	}
	if problems, err := testutil.GatherAndLint(hs.reg, "zonetoll_flowserver_foreign_source_bytes_total"); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
