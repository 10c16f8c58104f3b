package estimate

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
)

// motivating is the case of issue #8: 100 nodes × 100 pods scraped every 60 s, 50 KiB per scrape,
// 3 zones, $0.02 per GiB crossing.
var motivating = Input{Pods: 100 * 100, Interval: 60 * time.Second, BytesPerScrape: 50 * 1024, Zones: 3,
	CrossingFraction: -1, PricePerUnit: 0.02, Unit: pricing.GiB, PriceSource: "test"}

func TestMotivatingTableToTheCent(t *testing.T) {
	r, err := Compute(motivating)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		unit    string
		rounded string
		exact   string
	}{
		{"per hour", "600,000", "600000"},
		{"GiB/hour", "28.61", "28.6102294921875"},
		{"GiB/hour", "19.07", "19.073486328125"},
		{"$/hour", "0.38", "0.3814697265625"},
		{"$/day", "9.15", "9.1552734375"},
		{"$/month (30 days)", "274.50", "274.658203125"},
	}
	if len(r.Figures) != len(want) {
		t.Fatalf("%d figures, want %d", len(r.Figures), len(want))
	}
	for i, w := range want {
		f := r.Figures[i]
		if f.Unit != w.unit || Thousands(f.Rounded, f.Decimals) != w.rounded {
			t.Errorf("line %d: %s %s, want %s %s", i, Thousands(f.Rounded, f.Decimals), f.Unit, w.rounded, w.unit)
		}
		if got := formatExact(f.Exact); got != w.exact {
			t.Errorf("line %d (%s): exact %s, want %s", i, f.Unit, got, w.exact)
		}
	}
	if r.CrossingFraction != 2.0/3 {
		t.Errorf("crossing fraction %v, want 2/3", r.CrossingFraction)
	}
	if formatExact(r.PerZoneSavingMonthly) != "274.658203125" || Thousands(r.PerZoneSavingMonthlyRounded, 2) != "274.50" {
		t.Errorf("per-zone saving %v (%v), want the whole crossing cost", r.PerZoneSavingMonthly, r.PerZoneSavingMonthlyRounded)
	}

	var out bytes.Buffer
	if err := Write(&out, r, "table"); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"scrapes         per hour           600,000  600000",
		"crossing zones  GiB/hour           19.07    19.073486328125",
		"cost            $/month (30 days)  274.50   274.658203125",
		"10,000 targets scraped every 60s, 51,200 bytes per scrape, 3 zones (2/3 of scrapes cross zones), $0.02 per GiB",
		"saves $274.50/month (exact $274.658203125)",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("table lacks %q:\n%s", line, out.String())
		}
	}
	out.Reset()
	if err := Write(&out, r, "json"); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back.Figures[5].Exact != 274.658203125 {
		t.Errorf("json round trip: %v %+v", err, back)
	}
}

func formatExact(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func TestDecimalUnitsAndOtherFractions(t *testing.T) {
	in := motivating
	in.Unit = pricing.GB
	in.BytesPerScrape = 50_000
	in.CrossingFraction = 0.5
	r, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	// 600,000 × 50,000 B = 30 GB/hour; half crosses = 15 GB; × $0.02 = $0.30/hour, $7.20/day, $216/month.
	for i, want := range []float64{600000, 30, 15, 0.30, 7.20, 216} {
		if got := r.Figures[i].Exact; got < want-1e-9 || got > want+1e-9 {
			t.Errorf("line %d: %v, want %v", i, got, want)
		}
	}
}

func TestComputeRejectsBadInput(t *testing.T) {
	for name, mod := range map[string]func(*Input){
		"no pods":          func(i *Input) { i.Pods = 0 },
		"zero interval":    func(i *Input) { i.Interval = 0 },
		"negative price":   func(i *Input) { i.PricePerUnit = -0.01 },
		"fraction above 1": func(i *Input) { i.CrossingFraction = 1.5 },
		"no unit":          func(i *Input) { i.Unit = "" },
		"no zones":         func(i *Input) { i.Zones = 0 },
	} {
		in := motivating
		mod(&in)
		if _, err := Compute(in); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]float64{"51200": 51200, "50KiB": 51200, "50 KB": 50000, "1.5MiB": 1.5 * 1024 * 1024, "2gb": 2e9, "10B": 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fifty", "50XB", "-5KB"} {
		if _, err := ParseSize(in); err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseSize(%q): error %v should name the input", in, err)
		}
	}
}
