package pricing

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const gib = 1 << 30

func pod(zone string) Endpoint {
	return Endpoint{Namespace: "shop", Workload: "web", Kind: "deployment", Zone: zone}
}

var external = Endpoint{Kind: KindExternal}

// TestPresetBillingDirection prices hand-computed cases on every preset: 10 units of traffic in each
// class, so the expected dollars are read straight off the cloud's price page.
func TestPresetBillingDirection(t *testing.T) {
	type tc struct {
		name     string
		src, dst Endpoint
		bytes    float64
		want     float64
		class    Class
	}
	cases := map[string][]tc{
		"aws": { // GiB; both sides of an inter-AZ transfer pay $0.01
			{"same zone", pod("us-east-1a"), pod("us-east-1a"), 10 * gib, 0, SameZone},
			{"cross zone pays out and in", pod("us-east-1a"), pod("us-east-1b"), 10 * gib, 0.20, InterZone},
			{"cross zone the other way", pod("us-east-1c"), pod("us-east-1a"), 10 * gib, 0.20, InterZone},
			{"cross region pays out only", pod("us-east-1a"), pod("us-west-2a"), 10 * gib, 0.20, InterRegion},
			{"internet egress", pod("us-east-1a"), external, 10 * gib, 0.90, Internet},
			{"internet ingress is free", external, pod("us-east-1a"), 10 * gib, 0, Internet},
			{"GiB not GB: 10^9 bytes cross", pod("us-east-1a"), pod("us-east-1b"), 1e9, 0.02 * 1e9 / gib, InterZone},
			{"overflow series keep their zones", Endpoint{Kind: KindOverflow, Zone: "us-east-1a"}, Endpoint{Kind: KindOverflow, Zone: "us-east-1c"}, 10 * gib, 0.20, InterZone},
		},
		"gcp": { // GiB; the sender pays
			{"same zone", pod("us-central1-a"), pod("us-central1-a"), 10 * gib, 0, SameZone},
			{"cross zone sender pays", pod("us-central1-a"), pod("us-central1-b"), 10 * gib, 0.10, InterZone},
			{"cross region", pod("us-central1-a"), pod("us-east1-b"), 10 * gib, 0.20, InterRegion},
			{"internet egress", pod("us-central1-a"), external, 10 * gib, 1.20, Internet},
			{"internet ingress is free", external, pod("us-central1-a"), 10 * gib, 0, Internet},
		},
		"azure": { // GB; inter-AZ is free
			{"same zone", pod("eastus-1"), pod("eastus-1"), 10e9, 0, SameZone},
			{"cross zone is free", pod("eastus-1"), pod("eastus-2"), 10e9, 0, InterZone},
			{"cross region", pod("eastus-1"), pod("westus2-1"), 10e9, 0.20, InterRegion},
			{"internet egress", pod("eastus-1"), external, 10e9, 0.87, Internet},
			{"GB not GiB: one GiB out", pod("eastus-1"), external, gib, 0.087 * gib / 1e9, Internet},
		},
	}
	for cloud, tcs := range cases {
		table, err := Preset(cloud)
		if err != nil {
			t.Fatal(err)
		}
		regions := Regions{Cloud: cloud}
		for _, c := range tcs {
			t.Run(cloud+"/"+c.name, func(t *testing.T) {
				perByte, class, _ := table.PerByteOf(c.src, c.dst, regions)
				if class != c.class {
					t.Errorf("class = %s, want %s", class, c.class)
				}
				if got := perByte * c.bytes; math.Abs(got-c.want) > 1e-12 {
					t.Errorf("%v bytes cost $%v, want $%v", c.bytes, got, c.want)
				}
			})
		}
	}
}

func TestPresetsDeclareUnitAndSources(t *testing.T) {
	want := map[string]Unit{"aws": GiB, "gcp": GiB, "azure": GB}
	if got := Clouds(); strings.Join(got, ",") != "aws,azure,gcp" {
		t.Fatalf("Clouds() = %v", got)
	}
	for cloud, unit := range want {
		table, err := Preset(cloud)
		if err != nil {
			t.Fatal(err)
		}
		if table.Unit != unit || table.Cloud != cloud || table.Currency != "USD" {
			t.Errorf("%s: cloud %q unit %q currency %q, want %s %s USD", cloud, table.Cloud, table.Unit, table.Currency, cloud, unit)
		}
		for _, r := range table.Rows {
			if r.Source == "" || r.URL == "" || r.Checked == "" {
				t.Errorf("%s %s: source %q url %q checked %q: every preset row needs all three", cloud, r.Key(), r.Source, r.URL, r.Checked)
			}
			// A row says truthfully who checked it, when and against what: a date only where a person
			// checked the figure (the inter-zone prices, on 2026-12-06), and "not checked" elsewhere.
			switch {
			case r.Class == InterZone:
				if r.Read != "2026-12-06" || !strings.HasPrefix(r.Checked, "by hand on 2026-12-06 against ") {
					t.Errorf("%s %s: read %q checked %q; the inter-zone prices were checked by hand on 2026-12-06", cloud, r.Key(), r.Read, r.Checked)
				}
			case r.Read != "" || !strings.HasPrefix(r.Checked, "not checked"):
				t.Errorf("%s %s: read %q checked %q; nobody checked this row against a page", cloud, r.Key(), r.Read, r.Checked)
			}
		}
	}
}

func TestUnpriced(t *testing.T) {
	table, _ := Preset("aws")
	for _, c := range []struct {
		name     string
		src, dst Endpoint
		reason   string
		regions  Regions
	}{
		{"node without zone sends", Endpoint{Kind: "node"}, pod("us-east-1a"), ReasonSrcZoneUnknown, Regions{Cloud: "aws"}},
		{"to a cidr without zone", pod("us-east-1a"), Endpoint{Kind: "cidr:db"}, ReasonDstZoneUnknown, Regions{Cloud: "aws"}},
		{"overflow with lost zone", pod("us-east-1a"), Endpoint{Kind: KindOverflow}, ReasonDstZoneUnknown, Regions{Cloud: "aws"}},
		{"zone names no convention knows", pod("zone-a"), pod("zone-b"), ReasonRegionUnknown, Regions{Cloud: "aws"}},
		{"external both ends", external, external, ReasonExternalToExternal, Regions{Cloud: "aws"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, class, reason := table.PerByteOf(c.src, c.dst, c.regions)
			if class != Unpriced || reason != c.reason || p != 0 {
				t.Errorf("got %v %s %q, want 0 unpriced %q", p, class, reason, c.reason)
			}
		})
	}
}

func TestRegions(t *testing.T) {
	for _, c := range []struct {
		cloud, zone, want string
		known             map[string]string
	}{
		{"aws", "us-east-1a", "us-east-1", nil},
		{"aws", "eu-central-2c", "eu-central-2", nil},
		{"aws", "us-gov-west-1a", "us-gov-west-1", nil},
		{"aws", "us-west-2-lax-1a", "us-west-2", nil},
		{"gcp", "us-central1-a", "us-central1", nil},
		{"gcp", "europe-west4-b", "europe-west4", nil},
		{"azure", "eastus-1", "eastus", nil},
		{"azure", "westeurope-3", "westeurope", nil},
		{"aws", "zone-a", "", nil},
		{"gcp", "us-east-1a", "", nil},
		{"aws", "zone-a", "lab", map[string]string{"zone-a": "lab"}},
		{"aws", "us-east-1a", "custom", map[string]string{"us-east-1a": "custom"}}, // zone_info wins
	} {
		got, ok := Regions{Known: c.known, Cloud: c.cloud}.Region(c.zone)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s %s: region %q %v, want %q", c.cloud, c.zone, got, ok, c.want)
		}
	}
	// zone_info makes two zones of one region inter-zone although their names follow no convention.
	table, _ := Preset("gcp")
	_, class, _ := table.PerByteOf(pod("lab-a"), pod("lab-b"), Regions{Known: map[string]string{"lab-a": "lab", "lab-b": "lab"}, Cloud: "gcp"})
	if class != InterZone {
		t.Errorf("class = %s, want inter_zone", class)
	}
}

func TestLoadOverrides(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "prices.yaml")
	if err := os.WriteFile(file, []byte("unit: GB\nrows:\n  - {class: internet, direction: out, price: 0.05, source: \"our contract\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	table, err := Load(Options{Cloud: "aws", File: file, Prices: map[string]string{"inter_zone_in": "0"}, Origin: "flag --price"})
	if err != nil {
		t.Fatal(err)
	}
	if table.Unit != GB {
		t.Errorf("unit = %s, want GB from the file", table.Unit)
	}
	if r := table.Row(Internet, Out); r.Price != 0.05 || r.Source != "our contract" {
		t.Errorf("internet_out = %+v", r)
	}
	if r := table.Row(InterZone, In); r.Price != 0 || r.Source != "flag --price" {
		t.Errorf("inter_zone_in = %+v", r)
	}
	// 10 GB now costs 10 × (0.01 + 0) across zones.
	perByte, _, _ := table.PerByteOf(pod("us-east-1a"), pod("us-east-1b"), Regions{Cloud: "aws"})
	if got := perByte * 10e9; math.Abs(got-0.10) > 1e-12 {
		t.Errorf("10 GB cross zone = $%v, want $0.10", got)
	}
	if r := table.Row(InterRegion, Out); !strings.Contains(r.Source, "Amazon EC2") {
		t.Errorf("untouched row lost its source: %+v", r)
	}
}

func TestLoadErrorsNameTheInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rows:\n  - {class: inter_zone, direction: out, price: -1}\n"), 0o644)
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("rows:\n  - {class: inter_zone, direction: out, prize: 1}\n"), 0o644)
	for _, c := range []struct {
		name string
		opts Options
		want []string
	}{
		{"unknown cloud", Options{Cloud: "oracle"}, []string{`unknown cloud "oracle"`, "aws, azure, gcp"}},
		{"negative price", Options{Cloud: "aws", Prices: map[string]string{"inter_zone_out": "-0.01"}, Origin: "flag --price"}, []string{"flag --price", "inter_zone_out", "-0.01", "negative"}},
		{"unparsable price", Options{Cloud: "aws", Prices: map[string]string{"internet_out": "cheap"}, Origin: "ZONETOLL_PRICES"}, []string{"ZONETOLL_PRICES", "internet_out", `"cheap"`, "not a number"}},
		{"NaN price", Options{Cloud: "aws", Prices: map[string]string{"internet_out": "NaN"}, Origin: "flag --price"}, []string{"internet_out", "not a number"}},
		{"unknown row", Options{Cloud: "aws", Prices: map[string]string{"inter_az": "0.01"}, Origin: "flag --price"}, []string{`"inter_az"`, "inter_zone_out"}},
		{"negative in file", Options{Cloud: "aws", File: bad}, []string{bad, "negative"}},
		{"typo in file", Options{Cloud: "aws", File: typo}, []string{typo, "prize"}},
		{"missing file", Options{Cloud: "aws", File: filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml"}},
		{"bad unit", Options{Cloud: "aws", Unit: "TB", UnitInput: "flag --unit"}, []string{"flag --unit", `"TB"`, "GiB"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.opts)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := Load(Options{Cloud: "oracle"}); !errors.Is(err, ErrUnknownCloud) {
		t.Errorf("unknown cloud error %v is not ErrUnknownCloud", err)
	}
}
