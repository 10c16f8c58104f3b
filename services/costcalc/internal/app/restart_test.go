package app

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/meter"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/promtest"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
)

// TestRestartsLoseNoDollarsInPrometheus is the restart test with the real parts: the costcalc
// binary built from this tree scrapes a flowserver page whose counters grow; Debian's Prometheus scrapes
// costcalc. costcalc is stopped twice while the counters keep growing and started again on the same
// address; in between, the flowserver restarts (its counters start again from zero). Added up from
// Prometheus' raw samples with counter resets (as increase() does, without its extrapolation), the
// dollars of every cost series equal the price × the bytes counted since costcalc first started, to the
// cent: no gap at a costcalc restart, and the flowserver's reset counted once.
func TestRestartsLoseNoDollarsInPrometheus(t *testing.T) {
	page := newFlowserverPage(t)
	const (
		cross    = `zonetoll_traffic_bytes_total{src_namespace="shop",src_workload="web",src_kind="deployment",src_zone="us-east-1a",dst_namespace="shop",dst_workload="db",dst_kind="statefulset",dst_zone="us-east-1b"}`
		internet = `zonetoll_traffic_bytes_total{src_namespace="shop",src_workload="web",src_kind="deployment",src_zone="us-east-1a",dst_namespace="",dst_workload="",dst_kind="external",dst_zone=""}`
		request  = `zonetoll_service_traffic_bytes_total{src_namespace="shop",src_workload="web",src_kind="deployment",src_zone="us-east-1a",namespace="shop",service="api",dst_zone="us-east-1b",direction="request"}`
		start    = "process_start_time_seconds"
	)
	// AWS: $0.02 per GiB crossing zones (both sides), $0.09 per GiB to the internet.
	var traffic, service float64 // the dollars of the bytes added since costcalc first started
	grow := func(crossGiB, internetGiB, requestGiB float64, counted bool) {
		page.add(cross, crossGiB*gib)
		page.add(internet, internetGiB*gib)
		page.add(request, requestGiB*gib)
		if counted {
			traffic += crossGiB*0.02 + internetGiB*0.09
			service += requestGiB * 0.02
		}
	}
	page.set("gauge", start, 1000)
	page.set("gauge", `zonetoll_service_ready_endpoints{namespace="shop",service="api",zone="us-east-1a"}`, 1)
	grow(100, 10, 40, false) // history from before costcalc started

	cc := &serviceProc{t: t, name: "costcalc", bin: servicebuild.BinaryT(t, "costcalc"), addr: freeAddr(t), env: []string{
		"ZONETOLL_TARGETS=" + page.srv.URL + "/metrics", "ZONETOLL_SCRAPE_INTERVAL=200ms", "ZONETOLL_SCRAPE_TIMEOUT=200ms",
		"ZONETOLL_PRICES_CLOUD=aws"}}
	t.Cleanup(cc.stop)
	t.Cleanup(func() {
		if t.Failed() && cc.log != nil {
			t.Logf("costcalc log:\n%s", cc.log.String())
		}
	})
	prom := promtest.Start(t, time.Second, cc.addr)
	promAPI := prom.API
	promValue := prom.Value
	// settled waits until Prometheus holds a sample of costcalc taken after costcalc scraped the page as
	// it is now: two of costcalc's own scrapes later (one may have been under way), read from Prometheus.
	settled := func(why string) {
		t.Helper()
		n, _ := metricstest.Scrape(t, "http://"+cc.addr+"/metrics").Value("zonetoll_costcalc_scrapes_total", map[string]string{"result": "ok"})
		servicetest.WaitFor(t, "Prometheus holding costcalc's values "+why, 60*time.Second, func() (bool, string) {
			v, ok := promValue(`zonetoll_costcalc_scrapes_total{result="ok"}`)
			return ok && v >= n+2, fmt.Sprintf("%v of costcalc's scrapes in Prometheus, want %v", v, n+2)
		})
	}
	restart := func(crossGiB, internetGiB, requestGiB float64) {
		t.Helper()
		cc.stop()
		servicetest.WaitFor(t, "Prometheus seeing costcalc down", 60*time.Second, func() (bool, string) {
			v, ok := promValue(`up`)
			return ok && v == 0, fmt.Sprint(v)
		})
		grow(crossGiB, internetGiB, requestGiB, true) // while costcalc is down
		cc.start()
		settled("after the restart")
	}

	begin := time.Now()
	cc.start()
	settled("of the first start")
	grow(3, 1, 2, true)
	settled("after growth")
	restart(5, 2, 4)
	grow(1, 1, 1, true)
	settled("after growth")

	// The flowserver restarts: its counters start again from zero.
	page.set("gauge", start, 2000)
	page.set("counter", cross, 0)
	page.set("counter", internet, 0)
	page.set("counter", request, 0)
	settled("after the flowserver's restart")
	grow(2, 1, 3, true)
	settled("after growth")
	restart(4, 3, 2)
	grow(1, 0, 1, true)
	settled("at the end")
	end := time.Now()

	// Every raw sample of the range, added up per series across resets.
	rangeOf := fmt.Sprintf("%ds", int(end.Sub(begin).Seconds())+10)
	for _, c := range []struct {
		metric string
		want   float64
	}{{meter.CostMetric, traffic}, {meter.ServiceCostMetric, service}} {
		v, _, err := promAPI.Query(context.Background(), c.metric+"["+rangeOf+"]", end)
		if err != nil {
			t.Fatalf("querying %s: %v", c.metric, err)
		}
		matrix, ok := v.(model.Matrix)
		if !ok || len(matrix) == 0 {
			t.Fatalf("Prometheus has no %s samples: %v", c.metric, v)
		}
		got := 0.0
		for _, s := range matrix {
			for i := 1; i < len(s.Values); i++ {
				prev, cur := float64(s.Values[i-1].Value), float64(s.Values[i].Value)
				if cur < prev {
					got += cur // a reset: the new value is all new
				} else {
					got += cur - prev
				}
			}
		}
		if math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: $%.9f added up from Prometheus' samples across two costcalc restarts and a flowserver restart, want $%.9f (%d series)",
				c.metric, got, c.want, len(matrix))
		}
	}
}
