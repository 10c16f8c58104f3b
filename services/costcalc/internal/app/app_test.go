package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/shared/servicecmd"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
)

const gib = 1 << 30

// fakeFlowserver serves a traffic counter the test sets; the real flowserver is in the integration test.
type fakeFlowserver struct {
	mu    sync.Mutex
	bytes float64
	srv   *httptest.Server
}

func newFakeFlowserver(t *testing.T) *fakeFlowserver {
	f := &fakeFlowserver{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		fmt.Fprintf(w, "# TYPE zonetoll_traffic_bytes_total counter\n"+
			`zonetoll_traffic_bytes_total{src_namespace="shop",src_workload="web",src_kind="deployment",src_zone="europe-west1-b",dst_namespace="shop",dst_workload="db",dst_kind="statefulset",dst_zone="europe-west1-c"} %v`+"\n", f.bytes)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeFlowserver) set(v float64) {
	f.mu.Lock()
	f.bytes = v
	f.mu.Unlock()
}

func TestRunPricesScrapedTraffic(t *testing.T) {
	fs := newFakeFlowserver(t)
	fs.set(7 * gib)
	svc := servicetest.Start(t, Spec(), map[string]string{
		"ZONETOLL_TARGETS":          fs.srv.URL + "/metrics",
		"ZONETOLL_SCRAPE_INTERVAL":  "100ms",
		"ZONETOLL_SCRAPE_TIMEOUT":   "100ms",
		"ZONETOLL_PRICES_CLOUD":     "gcp",
		"ZONETOLL_PRICES_OVERRIDES": "inter_zone_in:0.005",
	})
	// The service registers its metrics while starting up; /readyz passes only after that.
	waitReady(t, svc.URL)
	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	if v, ok := fams.Value("zonetoll_build_info", map[string]string{"service": "costcalc"}); !ok || v != 1 {
		t.Errorf("zonetoll_build_info{service=\"costcalc\"} = %v (found %v), want 1", v, ok)
	}
	if v, _ := fams.Value("zonetoll_price_dollars_per_unit", map[string]string{"class": "inter_zone", "direction": "in", "source": "ZONETOLL_PRICES_OVERRIDES"}); v != 0.005 {
		t.Errorf("overridden inter_zone_in price = %v, want 0.005", v)
	}
	fs.set(17 * gib) // the cost series is derived from the flowserver's counter: all 17 GiB
	want := 17 * (0.01 + 0.005)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := metricstest.Scrape(t, svc.URL+"/metrics").Sum("zonetoll_cross_zone_cost_dollars_total", map[string]string{"src_workload": "web", "dst_workload": "db"})
		if got > want-1e-9 && got < want+1e-9 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web→db cost $%v, want $%v (gcp sender $0.01/GiB + overridden receiver $0.005/GiB, 17 GiB)", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	metricstest.Promtool(t, svc.URL+"/metrics")
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	servicetest.WaitFor(t, url+" ready", 30*time.Second, servicetest.Ready(url))
}

func TestRunRejectsBadSettings(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "prices.yaml")
	os.WriteFile(bad, []byte("rows:\n  - {class: internet, direction: out, price: -0.09}\n"), 0o644)
	ok := map[string]string{"ZONETOLL_TARGETS": "http://127.0.0.1:9/metrics"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tt := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{}, []string{"ZONETOLL_TARGETS", "flowserver /metrics URL"}},
		{with("ZONETOLL_TARGETS", "flowserver:8080"), []string{"ZONETOLL_TARGETS", "http(s) URLs"}},
		{with("ZONETOLL_TARGETS", "http://a/metrics,http://a/metrics"), []string{"ZONETOLL_TARGETS", "each URL once"}},
		{with("ZONETOLL_PRICES_CLOUD", "oracle"), []string{"ZONETOLL_PRICES_CLOUD", `"oracle"`, "aws, azure, gcp"}},
		{with("ZONETOLL_PRICES_OVERRIDES", "inter_zone_out:-0.01"), []string{"ZONETOLL_PRICES_OVERRIDES", "inter_zone_out", "negative"}},
		{with("ZONETOLL_PRICES_OVERRIDES", "internet_out:lots"), []string{"ZONETOLL_PRICES_OVERRIDES", "internet_out", `"lots"`, "not a number"}},
		{with("ZONETOLL_PRICES_OVERRIDES", "inter_az_out:0.01"), []string{"ZONETOLL_PRICES_OVERRIDES", `"inter_az_out"`}},
		{with("ZONETOLL_PRICES_FILE", bad), []string{"ZONETOLL_PRICES_FILE", bad, "negative"}},
		{with("ZONETOLL_PRICES_UNIT", "TB"), []string{"ZONETOLL_PRICES_UNIT", `"TB"`}},
		{with("ZONETOLL_SCRAPE_TIMEOUT", "1m"), []string{"ZONETOLL_SCRAPE_TIMEOUT", "ZONETOLL_SCRAPE_INTERVAL"}},
	} {
		t.Run(tt.want[0]+" "+strings.Join(tt.want[1:], " "), func(t *testing.T) {
			for _, k := range []string{"ZONETOLL_TARGETS", "ZONETOLL_PRICES_CLOUD", "ZONETOLL_PRICES_OVERRIDES", "ZONETOLL_PRICES_FILE", "ZONETOLL_PRICES_UNIT", "ZONETOLL_SCRAPE_TIMEOUT"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, out := servicetest.Run(Spec(), "run")
			if code != servicecmd.ExitUsage {
				t.Errorf("exit code %d, want %d; output:\n%s", code, servicecmd.ExitUsage, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not mention %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestRunHelpListsSettings(t *testing.T) {
	servicetest.HelpLists(t, Spec(), "ZONETOLL_LOG_LEVEL", "ZONETOLL_HTTP_LISTEN_ADDRESS", "ZONETOLL_TARGETS",
		"ZONETOLL_SCRAPE_INTERVAL", "ZONETOLL_PRICES_CLOUD", "ZONETOLL_PRICES_FILE", "ZONETOLL_PRICES_UNIT", "ZONETOLL_PRICES_OVERRIDES")
}

// costcalc runs a one-shot command of the real command line and returns its exit code and output.
func costcalc(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return servicetest.Run(Spec(), args...)
}

// costcalcJSON runs a one-shot command with --format json, fails t unless it exits 0, and decodes what
// it printed into v.
func costcalcJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	code, out := costcalc(t, slices.Concat(args, []string{"--format", "json"})...)
	if code != 0 {
		t.Fatalf("%s exit %d: %s", args[0], code, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s json: %v\n%s", args[0], err, out)
	}
}

func TestEstimateCommand(t *testing.T) {
	code, out := costcalc(t, "estimate", "--nodes", "100", "--pods-per-node", "100", "--interval", "60s",
		"--bytes-per-scrape", "50KiB", "--zones", "3", "--price", "0.02", "--unit", "GiB")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{"600,000", "28.61", "19.07", "0.38", "9.15", "274.50", "274.658203125", "$/month (30 days)"} {
		if !strings.Contains(out, want) {
			t.Errorf("estimate output lacks %q:\n%s", want, out)
		}
	}
	// Azure's inter-zone traffic is free: the same scrapes cost nothing there.
	code, out = costcalc(t, "estimate", "--cloud", "azure")
	if code != 0 || !strings.Contains(out, "$/month (30 days)  0.00") {
		t.Errorf("azure estimate (exit %d) should cost $0.00/month:\n%s", code, out)
	}
}

func TestOneShotErrorsNameTheInput(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"estimate", "--cloud", "oracle"}, servicecmd.ExitUsage, []string{"--cloud", `"oracle"`, "aws, azure, gcp"}},
		{[]string{"estimate", "--price", "-0.02"}, servicecmd.ExitUsage, []string{"--price", `"-0.02"`, "negative"}},
		{[]string{"estimate", "--price", "two cents"}, servicecmd.ExitUsage, []string{"--price", `"two cents"`, "not a number"}},
		{[]string{"report", "--prometheus", "http://127.0.0.1:1", "--price", "internet_out=free"}, servicecmd.ExitUsage, []string{"--price", "internet_out", `"free"`}},
		{[]string{"report", "--prometheus", "http://127.0.0.1:1", "--format", "pdf"}, servicecmd.ExitUsage, []string{"--format", `"pdf"`, "html"}},
		{[]string{"report", "--prometheus", "http://127.0.0.1:1"}, servicecmd.ExitFailure, []string{"Prometheus at http://127.0.0.1:1", "connection refused"}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := costcalc(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d: %s", code, tt.code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not mention %q:\n%s", w, out)
				}
			}
		})
	}
}
