package app

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
	"github.com/zonetoll/zonetoll/testkit/tlstest"
)

// TestRunScrapesHTTPSWithTheCAFile runs costcalc against an HTTPS flowserver whose certificate a CA of
// the test signs: it prices what it scrapes with ZONETOLL_SCRAPE_CA_FILE; a certificate of another CA
// fails the scrapes (result="error", the cost series stays as it was); when the CA file is replaced, the
// same process scrapes again and its cost series holds the bytes of the whole gap.
func TestRunScrapesHTTPSWithTheCAFile(t *testing.T) {
	ca1, ca2 := tlstest.NewCA(t, "zonetoll-ca one"), tlstest.NewCA(t, "zonetoll-ca two")
	fs := &fakeFlowserver{}
	srv := tlstest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		fmt.Fprintf(w, "# TYPE zonetoll_traffic_bytes_total counter\n"+
			`zonetoll_traffic_bytes_total{src_namespace="shop",src_workload="web",src_kind="deployment",src_zone="europe-west1-b",dst_namespace="shop",dst_workload="db",dst_kind="statefulset",dst_zone="europe-west1-c"} %v`+"\n", fs.bytes)
	}), ca1.Server(t))
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	tlstest.WriteFile(t, caFile, ca1.PEM())
	fs.set(1 * gib)
	target := srv.URL + "/metrics"
	svc := servicetest.Start(t, Spec(), map[string]string{
		"ZONETOLL_TARGETS":         target,
		"ZONETOLL_SCRAPE_CA_FILE":  caFile,
		"ZONETOLL_SCRAPE_INTERVAL": "100ms",
		"ZONETOLL_SCRAPE_TIMEOUT":  "100ms",
		"ZONETOLL_PRICES_CLOUD":    "gcp",
	})
	waitReady(t, svc.URL) // ready only after a first successful round: the first scrape was over TLS
	cost := func() float64 {
		return metricstest.Scrape(t, svc.URL+"/metrics").Sum("zonetoll_cross_zone_cost_dollars_total", map[string]string{"src_workload": "web", "dst_workload": "db"})
	}
	scrapes := func(result string) float64 {
		v, _ := metricstest.Scrape(t, svc.URL+"/metrics").Value("zonetoll_costcalc_scrapes_total", map[string]string{"target": target, "result": result})
		return v
	}
	waitCost := func(want float64, why string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got := cost(); got < want-1e-9 || got > want+1e-9; got = cost() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: web→db cost $%v, want $%v", why, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fs.set(3 * gib) // gcp's $0.01 per GiB sent between zones (nothing for receiving)
	waitCost(3*0.01, "over TLS with the CA")

	srv.SetCertificate(ca2.Server(t))
	errorsBefore := scrapes("error")
	fs.set(8 * gib)
	servicetest.WaitFor(t, "scrapes failing on a certificate of another CA", 30*time.Second, func() (bool, string) {
		v := scrapes("error")
		return v >= errorsBefore+3, fmt.Sprintf("%v failed scrapes", v)
	})
	if got := cost(); got > 3*0.01+1e-9 {
		t.Fatalf("cost $%v grew while the server's certificate was not trusted", got)
	}
	if out := svc.Output(); !strings.Contains(out, "certificate signed by unknown authority") {
		t.Errorf("the refused certificate is not logged:\n%s", out)
	}

	tlstest.WriteFile(t, caFile, ca2.PEM()) // the rotated CA, as a Secret volume swaps ca.crt
	waitCost(8*0.01, "after the CA file was replaced, without a restart")
	if out := svc.Output(); !strings.Contains(out, `msg="reloaded CA bundle"`) && !strings.Contains(out, `"msg":"reloaded CA bundle"`) {
		t.Errorf("the reload is not logged:\n%s", out)
	}
}
