package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

func traffic(src, srcZone, dst, dstZone string, v float64) metricstest.Sample {
	return metricstest.Sample{Name: "zonetoll_traffic_bytes_total", Value: v, Labels: map[string]string{
		"src_namespace": "shop", "src_workload": src, "src_kind": KindDeployment, "src_zone": srcZone,
		"dst_namespace": "shop", "dst_workload": dst, "dst_kind": KindDeployment, "dst_zone": dstZone}}
}

// A phase's figures are the growth between its snapshots, over every flowserver, with dollars scaled
// from the phase's sending time to a 30-day month.
func TestFiguresAndPrint(t *testing.T) {
	m := NewModel("ztdemo-1-")
	a, b := m.Zones[0], m.Zones[1]
	cost := func(v float64) metricstest.Sample {
		s := traffic("api", a, "frontend", b, v)
		s.Name = "zonetoll_cross_zone_cost_dollars_total"
		return s
	}
	p := &Phase{
		Sending: time.Hour,
		Start: &Snapshot{
			Servers: map[string]metricstest.Samples{a: {traffic("api", a, "frontend", b, 1000), traffic("api", a, "frontend", a, 50)}},
			Costs:   map[string]metricstest.Samples{"aws": {cost(1)}},
		},
		End: &Snapshot{
			Servers: map[string]metricstest.Samples{
				a: {traffic("api", a, "frontend", b, 4000), traffic("api", a, "frontend", a, 1050),
					{Name: "zonetoll_zone_traffic_bytes_total", Value: 3000, Labels: map[string]string{"src_zone": a, "dst_zone": b}}},
				b: {traffic("frontend", b, "api", a, 500)},
			},
			Costs: map[string]metricstest.Samples{"aws": {cost(3)}, "gcp": {cost(0.5)}},
		},
	}
	f := FiguresOf(m, p)
	if f.CrossBytes != 3000+500 {
		t.Errorf("cross-zone bytes %v, want 3500", f.CrossBytes)
	}
	if got := f.MonthDollars["aws"]; got != 2*720 {
		t.Errorf("AWS per month %v, want $2 an hour × 720 hours", got)
	}
	if got := f.MonthDollars["gcp"]; got != 0.5*720 {
		t.Errorf("GCP per month %v, want 360", got)
	}
	if f.Pairs[0].Bytes != 3000 || f.Pairs[0].Key.SrcWorkload != "api" || !f.Pairs[0].Key.CrossZone() {
		t.Errorf("top pair %+v, want api→frontend with 3000 bytes", f.Pairs[0])
	}
	var out strings.Builder
	PrintPhase(&out, m, "test", f)
	row := false
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		if len(f) == 11 && f[0] == "shop/api" && f[2] == a && f[5] == b && f[6]+f[7] == "2.9KiB" && f[8] == "$1440.00" && f[9] == "$360.00" && f[10] == "$0" {
			row = true
		}
	}
	if !row {
		t.Errorf("no row api %s → frontend %s, 2.9 KiB, $1440.00 AWS, $360.00 GCP, $0 Azure:\n%s", a, b, out.String())
	}
	if !strings.Contains(out.String(), "75%") {
		t.Errorf("the api's cross-zone share (75%%) is missing:\n%s", out.String())
	}
	if strings.Contains(out.String(), "outside") {
		t.Errorf("an outside column with no bytes in it:\n%s", out.String())
	}
}
