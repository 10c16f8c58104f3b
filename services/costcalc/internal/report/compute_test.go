package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
)

const gib = 1 << 30

func traffic(bytes float64, l ...string) Traffic {
	var t Traffic
	copy(t.Labels[:], l)
	t.Bytes = bytes
	return t
}

// sample is a day of traffic in a three-zone AWS cluster, with hand-computed dollars ($0.02 per GiB
// crossing zones, $0.02 per GiB across regions, $0.09 per GiB to the internet).
func sample() *Data {
	return &Data{
		Zones: map[string]string{"us-east-1a": "us-east-1", "us-east-1b": "us-east-1", "us-east-1c": "us-east-1"},
		Traffic: []Traffic{
			traffic(500*gib, "shop", "web", "deployment", "us-east-1a", "shop", "db", "statefulset", "us-east-1b"),   // $10.00
			traffic(100*gib, "shop", "web", "deployment", "us-east-1a", "shop", "cache", "deployment", "us-east-1c"), // $2.00
			traffic(900*gib, "shop", "web", "deployment", "us-east-1a", "shop", "cache", "deployment", "us-east-1a"), // same zone, free
			traffic(50*gib, "shop", "web", "deployment", "us-east-1a", "", "", "external", ""),                       // $4.50
			traffic(30*gib, "shop", "db", "statefulset", "us-east-1b", "", "", "cidr:backup", "us-west-2a"),          // cross region $0.60
			traffic(7*gib, "", "node-1", "node", "", "shop", "web", "deployment", "us-east-1a"),                      // unpriced
			traffic(0, "shop", "idle", "deployment", "us-east-1a", "shop", "db", "statefulset", "us-east-1b"),        // no traffic in range
		},
	}
}

func TestCompute(t *testing.T) {
	table, _ := pricing.Preset("aws")
	start := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	r := Compute(sample(), table, start, start.Add(24*time.Hour), 3)
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(r.Total, 17.10) {
		t.Errorf("total $%v, want $17.10", r.Total)
	}
	if !near(r.Monthly, 17.10*30) {
		t.Errorf("monthly $%v, want 30 days × $17.10", r.Monthly)
	}
	if r.PairCount != 4 || len(r.Pairs) != 3 {
		t.Fatalf("%d pairs of %d, want the top 3 of 4 crossing pairs", len(r.Pairs), r.PairCount)
	}
	for i, want := range []struct {
		dst     string
		dollars float64
		class   pricing.Class
	}{{"db", 10, pricing.InterZone}, {"", 4.5, pricing.Internet}, {"cache", 2, pricing.InterZone}} {
		if p := r.Pairs[i]; p.Dst.Workload != want.dst || !near(p.Dollars, want.dollars) || p.Class != want.class {
			t.Errorf("pair %d: → %q $%v %s, want → %q $%v %s", i+1, p.Dst.Workload, p.Dollars, p.Class, want.dst, want.dollars, want.class)
		}
	}
	if zp, ok := r.ZonePair("us-east-1a", "us-east-1a"); !ok || zp.Dollars != 0 || zp.Bytes != 900*gib {
		t.Errorf("same-zone cell %+v %v, want 900 GiB at $0", zp, ok)
	}
	if zp, _ := r.ZonePair("us-east-1b", "us-west-2a"); zp.Class != pricing.InterRegion || !near(zp.Dollars, 0.60) {
		t.Errorf("cross-region cell %+v, want $0.60", zp)
	}
	if zp, _ := r.ZonePair("us-east-1a", InternetZone); !near(zp.Dollars, 4.5) {
		t.Errorf("internet cell %+v, want $4.50", zp)
	}
	if got := strings.Join(r.Zones, ","); got != "us-east-1a,us-east-1b,us-east-1c,us-west-2a,internet" {
		t.Errorf("zones %s", got)
	}
	if len(r.Unpriced) != 1 || r.Unpriced[0].Reason != pricing.ReasonSrcZoneUnknown || r.Unpriced[0].Bytes != 7*gib {
		t.Errorf("unpriced %+v, want the node's 7 GiB", r.Unpriced)
	}
}

func TestFormats(t *testing.T) {
	table, _ := pricing.Preset("aws")
	start := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	r := Compute(sample(), table, start, start.Add(24*time.Hour), 10)
	r.Prometheus, r.Method = "http://prometheus:9090", MethodSamples

	var out bytes.Buffer
	if err := Write(&out, r, "table"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Total:              $17.10", "Monthly projection: $513.00", "shop/web (deployment)", "shop/db (statefulset)",
		"$10.00", "$300.00", "src_zone_unknown", "7.00 GiB", "500 GiB", "(1d)", "No Service data in this range", "Amazon EC2 On-Demand Pricing"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if err := Write(&out, r, "json"); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Total float64 `json:"total_dollars"`
		Pairs []Pair  `json:"top_pairs"`
	}
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || math.Abs(back.Total-17.10) > 1e-9 || back.Pairs[0].Dst.Workload != "db" {
		t.Errorf("json: %v %+v", err, back)
	}

	out.Reset()
	if err := Write(&out, r, "csv"); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var sections []string
	for _, row := range rows[1:] {
		sections = append(sections, row[0])
	}
	if got := strings.Join(sections, ","); !strings.HasPrefix(got, "workload_pair,workload_pair,workload_pair,workload_pair,zone_pair") || !strings.HasSuffix(got, "unpriced,total") {
		t.Errorf("csv sections %s", got)
	}
	if last := rows[len(rows)-1]; last[12] != "17.1" && !strings.HasPrefix(last[12], "17.1") {
		t.Errorf("csv total row %v", last)
	}
	if err := Write(&out, r, "pdf"); err == nil || !strings.Contains(err.Error(), `"pdf"`) {
		t.Errorf("unknown format error %v", err)
	}
}
