package app

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/promtest"
)

// counters is a /metrics page of traffic counters the test sets by hand.
type counters struct {
	mu     sync.Mutex
	series map[string]float64
	srv    *httptest.Server
}

func newCounters(t *testing.T) *counters {
	c := &counters{series: map[string]float64{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		fmt.Fprintln(w, "# TYPE zonetoll_traffic_bytes_total counter")
		for l, v := range c.series {
			fmt.Fprintf(w, "zonetoll_traffic_bytes_total{%s} %v\n", l, v)
		}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *counters) set(labels string, v float64) {
	c.mu.Lock()
	c.series[labels] = v
	c.mu.Unlock()
}

// waitScraped waits until Prometheus returns value for the series of workload src_workload.
func waitScraped(t *testing.T, promAPI v1.API, srcWorkload string, value float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		v, _, err := promAPI.Query(context.Background(), fmt.Sprintf(`zonetoll_traffic_bytes_total{src_workload=%q}`, srcWorkload), time.Now())
		if vec, ok := v.(model.Vector); err == nil && ok && len(vec) == 1 && float64(vec[0].Value) == value {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("Prometheus did not scrape %s = %v within 60s", srcWorkload, value)
}

// TestReportFromRealPrometheus drives `costcalc report` against Debian's Prometheus scraping a page of
// counters the test moves through growth, a reset and a new series; the dollars are computed by hand.
func TestReportFromRealPrometheus(t *testing.T) {
	page := newCounters(t)
	u, _ := url.Parse(page.srv.URL)
	prom := promtest.Start(t, time.Second, u.Host)
	promAPI := prom.API

	a := `src_namespace="shop",src_workload="web",src_kind="deployment",src_zone="us-east-1a",dst_namespace="shop",dst_workload="db",dst_kind="statefulset",dst_zone="us-east-1b"`
	b := `src_namespace="shop",src_workload="api",src_kind="deployment",src_zone="us-east-1c",dst_namespace="",dst_workload="",dst_kind="external",dst_zone=""`
	page.set(a, 10*gib)
	waitScraped(t, promAPI, "web", 10*gib)
	time.Sleep(1500 * time.Millisecond) // the value at start is 10 GiB, whichever scrape the lookback finds
	start := time.Now().Truncate(time.Millisecond)
	for _, v := range []float64{50 * gib, 3 * gib /* reset */, 8 * gib} {
		page.set(a, v)
		waitScraped(t, promAPI, "web", v)
	}
	page.set(b, 20*gib) // born inside the range: all of it counts
	waitScraped(t, promAPI, "api", 20*gib)
	end := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	// web → db: (50 - 10) + 3 + (8 - 3) = 48 GiB × $0.02 = $0.96; api → internet: 20 GiB × $0.09 = $1.80.
	const want = 0.96 + 1.80

	var r struct {
		Total   float64 `json:"total_dollars"`
		Monthly float64 `json:"monthly_projection_dollars"`
		Pairs   []struct {
			Dst     struct{ Workload, Kind string }
			Bytes   float64 `json:"bytes"`
			Dollars float64 `json:"dollars"`
		} `json:"top_pairs"`
	}
	costcalcJSON(t, &r, "report", "--prometheus", prom.URL, "--cloud", "aws",
		"--start", start.UTC().Format(time.RFC3339Nano), "--end", end.UTC().Format(time.RFC3339Nano))
	if math.Abs(r.Total-want) > 1e-9 {
		t.Errorf("total $%v, want $%v", r.Total, want)
	}
	if len(r.Pairs) != 2 || r.Pairs[0].Dst.Kind != "external" || r.Pairs[0].Bytes != 20*gib || r.Pairs[1].Dst.Workload != "db" || r.Pairs[1].Bytes != 48*gib {
		t.Errorf("pairs %+v, want api→internet 20 GiB then web→db 48 GiB", r.Pairs)
	}
	rangeLen := end.Sub(start)
	if wantMonthly := want * float64(30*24*time.Hour) / float64(rangeLen); math.Abs(r.Monthly-wantMonthly) > 1e-6*wantMonthly {
		t.Errorf("monthly $%v, want $%v (the range's rate over 30 days)", r.Monthly, wantMonthly)
	}

	page2 := filepath.Join(t.TempDir(), "report.html")
	code, out := costcalc(t, "report", "--prometheus", prom.URL, "--format", "html", "--output", page2,
		"--start", start.UTC().Format(time.RFC3339Nano), "--end", end.UTC().Format(time.RFC3339Nano))
	html, _ := os.ReadFile(page2)
	if code != 0 || out != "" || !strings.Contains(string(html), `id="total">$2.76<`) {
		t.Errorf("report --format html --output (exit %d, stdout %q): the page lacks the total $2.76", code, out)
	}

	code, out = costcalc(t, "report", "--prometheus", prom.URL, "--format", "table", "--range", "10m", "--method", "increase")
	if code != 0 || !strings.Contains(out, "shop/web (deployment)") || !strings.Contains(out, "Monthly projection") {
		t.Errorf("report --method increase (exit %d):\n%s", code, out)
	}

	// A range before Prometheus had any data: the error names the metric and the Prometheus.
	code, out = costcalc(t, "report", "--prometheus", prom.URL, "--end", start.Add(-2*time.Hour).UTC().Format(time.RFC3339), "--range", "1h")
	if code != 1 || !strings.Contains(out, "zonetoll_traffic_bytes_total") || !strings.Contains(out, prom.URL) {
		t.Errorf("report of an empty range (exit %d) should name the missing metric and the Prometheus:\n%s", code, out)
	}
}
