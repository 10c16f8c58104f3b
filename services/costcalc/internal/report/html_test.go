package report

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/advice"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/testkit/gate"
)

// chromium is where Debian's chromium package puts the browser (hack/setup.sh installs it on CI).
const chromium = "/usr/bin/chromium"

// artifactsDir is where a test keeps what a person may want to look at after the run: the directory
// $ZONETOLL_ARTIFACTS_DIR names (CI uploads it), else the test's temp dir.
func artifactsDir(t *testing.T) string {
	if dir := os.Getenv("ZONETOLL_ARTIFACTS_DIR"); dir != "" {
		dir = filepath.Join(dir, "costcalc")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// TestHTMLRendersInChromium opens the report page in headless Chromium and checks the numbers a person
// would read off the rendered DOM: totals, the heat map cells and the top pairs; then keeps a screenshot.
func TestHTMLRendersInChromium(t *testing.T) {
	_, err := os.Stat(chromium)
	gate.Need(t, "headless Chromium", err, gate.Debian("chromium"))
	table, _ := pricing.Preset("aws")
	start := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	data := sample()
	// A small pair: 1,500 bytes read as 1.46 KiB, not "0.000 GiB".
	data.Traffic = append(data.Traffic, traffic(1500, "shop", "cache", "deployment", "us-east-1c", "shop", "db", "statefulset", "us-east-1b"))
	r := Compute(data, table, start, start.Add(24*time.Hour+294632898), 10)
	r.Prometheus, r.Method = "http://prometheus:9090", MethodSamples
	r.Services = seventyPercent(t, start)

	dir := artifactsDir(t)
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(f, r, "html"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	raw, _ := os.ReadFile(page)
	if regexp.MustCompile(`(?i)(src|href)="(https?:)?//|<script|<link`).Match(stripPriceLinks(raw)) {
		t.Errorf("the page loads something from elsewhere; it must be self-contained")
	}

	profile := t.TempDir() // chromium writes its profile here, not in $HOME
	args := func(extra ...string) []string {
		return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
			"--no-first-run", "--window-size=1200,1600", "--hide-scrollbars"}, append(extra, "file://"+page)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dom, err := exec.CommandContext(ctx, chromium, args("--dump-dom")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	text := string(dom)
	for _, want := range []string{
		`id="total">$17.10<`,
		`id="monthly">$513.00<`,
		`id="pair-count">5<`,
		"shop/web (us-east-1a) → shop/db (us-east-1b)",
		"<title>Cross-zone traffic cost, 2026-11-22T00:00:00Z to 2026-11-23T00:00:00Z (1d)</title>",
		// The Service section: the 70 % case, AWS $45.00 a month saved (75 GiB × $0.02 × 30).
		`data-service="shop/api" data-verdict="switch_with_care"`,
		`<tr data-cloud="aws"><td>aws</td><td class="n cross">$45.00</td><td class="n saving">$45.00</td></tr>`,
		"would concentrate load: zone us-east-1a's clients send 70 % of the traffic onto 16.7 % of the ready endpoints (1 of 6)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	if !strings.Contains(text, ">1.46 KiB<") || strings.Contains(text, "0.000 GiB") {
		t.Errorf("the 1,500-byte pair should read 1.46 KiB")
	}
	cells := map[[2]string]string{
		{"us-east-1a", "us-east-1b"}: "$10.00",
		{"us-east-1a", "us-east-1c"}: "$2.00",
		{"us-east-1a", "internet"}:   "$4.50",
		{"us-east-1b", "us-west-2a"}: "$0.60",
		{"us-east-1a", "us-east-1a"}: "$0.00",
		{"us-east-1c", "us-east-1a"}: "-",
	}
	for k, want := range cells {
		re := regexp.MustCompile(`data-src="` + regexp.QuoteMeta(k[0]) + `" data-dst="` + regexp.QuoteMeta(k[1]) + `">\s*<rect[^>]*>(?:</rect>)?\s*<text[^>]*>([^<]*)<`)
		m := re.FindStringSubmatch(text)
		if m == nil || m[1] != want {
			t.Errorf("heat map cell %s → %s shows %v, want %q", k[0], k[1], m, want)
		}
	}
	if n := strings.Count(text, `class="bar"`); n != 5 {
		t.Errorf("top pairs chart has %d bars, want 5", n)
	}

	// Without Service metrics the page says so.
	r.Services, r.NoServices = nil, NoServiceData
	var b bytes.Buffer
	if err := Write(&b, r, "html"); err != nil || !strings.Contains(b.String(), `<p id="no-services" class="muted">No Service data in this range`) {
		t.Errorf("page without Service data lacks the no-Service line (err %v)", err)
	}

	shot := filepath.Join(dir, "report.png")
	if out, err := exec.CommandContext(ctx, chromium, args("--screenshot="+shot)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (%v bytes); a rendered page is larger", shot, err, st)
	}
	t.Logf("report page and screenshot in %s (kept only when ZONETOLL_ARTIFACTS_DIR is set)", dir)
}

// stripPriceLinks removes the links to the providers' pricing pages, which are meant to leave the page.
func stripPriceLinks(b []byte) []byte {
	return regexp.MustCompile(`<a href="https://[^"]+">`).ReplaceAll(b, nil)
}

// seventyPercent is the advice for the case: zone a has 70 % of the client bytes and 1 of 6 endpoints.
func seventyPercent(t *testing.T, start time.Time) *advice.Result {
	var tables []*pricing.Table
	for _, c := range pricing.Clouds() {
		tb, err := pricing.Preset(c)
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, tb)
	}
	const a, b, c = "us-east-1a", "us-east-1b", "us-east-1c"
	var flows []advice.Flow
	for _, f := range []struct {
		src, dst string
		gib      float64
	}{{a, a, 10}, {a, b, 35}, {a, c, 25}, {b, a, 5}, {b, b, 10}, {b, c, 5}, {c, a, 2}, {c, b, 3}, {c, c, 5}} {
		flows = append(flows, advice.Flow{Namespace: "shop", Service: "api", ClientNamespace: "shop", ClientWorkload: "web", ClientKind: "deployment", SrcZone: f.src, DstZone: f.dst, Bytes: f.gib * gib})
	}
	return advice.Compute(advice.Input{Start: start, End: start.Add(24 * time.Hour), Flows: flows, Tables: tables, Kubernetes: "v1.37.2",
		Services: []advice.ServiceState{{Namespace: "shop", Name: "api", InfoKnown: true, Type: "ClusterIP", Ready: map[string]int{a: 1, b: 3, c: 2}}}})
}
