package compare

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/advice"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
)

const gib = 1 << 30

// TestBeforeAndAfter: a week before, a day after switching shop/api to PreferSameZone. Before: web (a)
// → api (b) 70 GiB in 7 days = $1.40 on AWS = $6.00 a month (1.40 × 30 / 7). After: 1 GiB in a day =
// $0.02 = $0.60 a month. Change −$5.40 a month, −90 %. The Service rows say the same for shop/api.
func TestBeforeAndAfter(t *testing.T) {
	table, _ := pricing.Preset("aws")
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	web := pricing.Endpoint{Namespace: "shop", Workload: "web", Kind: "deployment", Zone: "us-east-1a"}
	apiB := pricing.Endpoint{Namespace: "shop", Workload: "api", Kind: "deployment", Zone: "us-east-1b"}
	apiA := pricing.Endpoint{Namespace: "shop", Workload: "api", Kind: "deployment", Zone: "us-east-1a"}
	flow := func(src, dst string, b float64) advice.Flow {
		return advice.Flow{Namespace: "shop", Service: "api", ClientNamespace: "shop", ClientWorkload: "web", ClientKind: "deployment", SrcZone: src, DstZone: dst, Bytes: b}
	}
	before := Period{Start: t0, End: t0.Add(7 * 24 * time.Hour),
		Pairs:    []PairBytes{{web, apiB, 70 * gib}, {web, apiA, 70 * gib}},
		Services: []advice.Flow{flow("us-east-1a", "us-east-1b", 70*gib), flow("us-east-1a", "us-east-1a", 70*gib)}}
	after := Period{Start: t0.Add(8 * 24 * time.Hour), End: t0.Add(9 * 24 * time.Hour),
		Pairs:    []PairBytes{{web, apiB, 1 * gib}, {web, apiA, 19 * gib}},
		Services: []advice.Flow{flow("us-east-1a", "us-east-1b", 1*gib), flow("us-east-1a", "us-east-1a", 19*gib)}}
	r := Compute(before, after, table, 10)
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	if len(r.Pairs) != 1 || len(r.Services) != 1 || !r.ServiceData {
		t.Fatalf("pairs %+v services %+v; want the one crossing pair and shop/api", r.Pairs, r.Services)
	}
	for _, row := range []Row{r.Pairs[0], r.Services[0], r.Total} {
		near(row.Name+" before $", row.Before.Dollars, 1.40)
		near(row.Name+" before $/month", row.Before.Monthly, 6.00)
		near(row.Name+" after $", row.After.Dollars, 0.02)
		near(row.Name+" after $/month", row.After.Monthly, 0.60)
		near(row.Name+" change $/month", row.ChangeMonthly, -5.40)
		near(row.Name+" change bytes/day", row.ChangeBytes, -9*gib)
		if row.ChangePercent == nil || *row.ChangePercent != -90 {
			t.Errorf("%s change %v %%, want -90", row.Name, row.ChangePercent)
		}
	}
	if r.Services[0].Name != "shop/api" || r.Pairs[0].Name != "shop/web (us-east-1a) → shop/api (us-east-1b)" {
		t.Errorf("names %q %q", r.Services[0].Name, r.Pairs[0].Name)
	}
	var b strings.Builder
	if err := Write(&b, r, "table"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Before: 2026-12-01T00:00:00Z to 2026-12-08T00:00:00Z (7d)", "shop/api", "70.0 GiB", "$6.00", "$0.60", "-$5.40", "-90 %"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
