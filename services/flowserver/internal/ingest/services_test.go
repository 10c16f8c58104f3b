package ingest

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/services"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/traffic"
	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

// TestServiceBytesAddUpToTheTotal posts a report whose flows go between pods of workloads behind one
// Service, behind two, behind a headless Service beside a normal one, or behind none, and checks each
// per-Service series against sums the test makes from its own table (a flow to a listed address is a
// request to its Service; from a listed address to an unlisted one, that Service's response), and
// that the per-Service bytes plus the rest are the traffic total: no byte lost or counted twice.
func TestServiceBytesAddUpToTheTotal(t *testing.T) {
	const workloads = 30
	c := newCluster(t, 300, 6, workloads, 0)
	c.svcs = services.New()
	// By workload w: w%3 == 0 one Service, 1 two Services (app-w and app-w-canary), 2 none. Every pod
	// of workload 0 is also in a headless Service, which the non-headless one outranks.
	target := map[report.Addr]string{} // address → "namespace/service", the test's own rule
	for w := range workloads {
		ns := fmt.Sprintf("ns-%d", w%20)
		var eps []services.EndpointState
		for p := w; p < len(c.podIPs); p += workloads {
			a := c.podIPs[p]
			eps = append(eps, services.EndpointState{Addrs: []netip.Addr{a.Netip()}, Ready: p%7 != 0})
			switch w % 3 {
			case 0:
				target[a] = fmt.Sprintf("%s/app-%d", ns, w)
			case 1:
				target[a] = fmt.Sprintf("%s/app-%d+app-%d-canary", ns, w, w)
			}
		}
		add := func(name string, headless bool) {
			c.svcs.UpsertService(services.ServiceState{Namespace: ns, Name: name, Type: "ClusterIP", Headless: headless})
			c.svcs.UpsertSlice(services.SliceState{Namespace: ns, Name: name + "-x", Service: name, Endpoints: eps})
		}
		switch w % 3 {
		case 0:
			add(fmt.Sprintf("app-%d", w), false)
		case 1:
			add(fmt.Sprintf("app-%d", w), false)
			add(fmt.Sprintf("app-%d-canary", w), false)
		}
		if w == 0 {
			add("app-0-peers", true)
		}
	}
	hs := newHarness(t, c, benchLimits, time.Hour)
	rng := rand.New(rand.NewPCG(5, 6))
	r := &report.Report{Node: "node-001", BootID: [16]byte{7}, Sequence: 1,
		WindowStart: time.Now().Add(-10 * time.Second), WindowEnd: time.Now(), Flows: c.flows(5_000, rng)}
	wantSvc := map[string]float64{}
	var wantTotal, wantDirect float64
	for _, f := range r.Flows {
		wantTotal += float64(f.Bytes)
		if tg, ok := target[f.Dst]; ok {
			wantSvc[tg+" request"] += float64(f.Bytes)
		} else if tg, ok := target[f.Src]; ok {
			wantSvc[tg+" response"] += float64(f.Bytes)
		} else {
			wantDirect += float64(f.Bytes)
		}
	}
	if len(wantSvc) < 20 || wantDirect == 0 {
		t.Fatalf("the report reaches %d Service targets and %v direct bytes; the check needs both", len(wantSvc), wantDirect)
	}
	if rec := hs.post(encodeT(t, r), ""); rec.Code != http.StatusOK {
		t.Fatalf("report: %d %s", rec.Code, rec.Body)
	}
	fams := metricstest.Gather(t, hs.reg)
	gotSvc := map[string]float64{}
	var gotSvcSum float64
	for _, m := range fams.Series(traffic.ServiceBytesName, nil) {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		gotSvc[l["namespace"]+"/"+l["service"]+" "+l["direction"]] += m.GetCounter().GetValue()
		gotSvcSum += m.GetCounter().GetValue()
	}
	for k, v := range wantSvc {
		if gotSvc[k] != v {
			t.Errorf("%s: %v bytes, want %v", k, gotSvc[k], v)
		}
	}
	for k, v := range gotSvc {
		if _, ok := wantSvc[k]; !ok {
			t.Errorf("%s: %v bytes, not expected at all", k, v)
		}
	}
	total := fams.Sum(traffic.PairBytesName, nil)
	if total != wantTotal || gotSvcSum+wantDirect != total {
		t.Errorf("per-Service %v + direct %v = %v, traffic total %v (the report's %v)", gotSvcSum, wantDirect, gotSvcSum+wantDirect, total, wantTotal)
	}
}

// BenchmarkIngestServices is BenchmarkIngest's 100,000-flow plain report with and without the Service
// index (every workload behind a Service of its own, so every pod-bound flow is looked up and found):
// the difference is what the per-Service attribution costs per flow.
func BenchmarkIngestServices(b *testing.B) {
	c := newCluster(b, 10_000, 100, 1_000, 0)
	idx := services.New()
	for w := range c.workloads {
		ns, name := fmt.Sprintf("ns-%d", w%20), fmt.Sprintf("app-%d", w)
		var eps []services.EndpointState
		for p := w; p < len(c.podIPs); p += c.workloads {
			eps = append(eps, services.EndpointState{Addrs: []netip.Addr{c.podIPs[p].Netip()}, Ready: true})
		}
		idx.UpsertService(services.ServiceState{Namespace: ns, Name: name, Type: "ClusterIP"})
		idx.UpsertSlice(services.SliceState{Namespace: ns, Name: name + "-x", Service: name, Endpoints: eps})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	r := &report.Report{Node: "node-001", BootID: [16]byte{9}, Sequence: 1,
		WindowStart: time.Now().Add(-10 * time.Second), WindowEnd: time.Now(), Flows: c.flows(100_000, rng)}
	body, err := report.Encode(r)
	if err != nil {
		b.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("services=%v", on), func(b *testing.B) {
			c.svcs = nil
			if on {
				c.svcs = idx
			}
			hs := newHarness(b, c, benchLimits, time.Nanosecond)
			// One report first, so the loop measures the steady state, not creating the series.
			if rec := hs.post(body, ""); rec.Code != http.StatusOK {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if rec := hs.post(body, ""); rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(r.Flows)), "ns/flow")
			// CPU time leaves out the time other processes held the cores (as in BenchmarkIngest).
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(r.Flows)), "cpu_ns/flow")
		})
	}
}
