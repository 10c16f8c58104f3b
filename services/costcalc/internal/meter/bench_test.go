package meter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
)

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScrape measures one scrape round of a flowserver at its default series limit (20,000
// workload pairs over three zones, every series growing): HTTP, parsing, reset checks and pricing.
func BenchmarkScrape(b *testing.B) {
	const series = 20000
	zones := []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	// The pages are written before the clock starts, so only costcalc's side is measured. A run of more
	// than 40 rounds wraps around to the first page and sees every series reset once.
	const rounds = 40
	pages := make([][]byte, rounds)
	for n := range pages {
		var buf bytes.Buffer
		buf.WriteString("# TYPE zonetoll_traffic_bytes_total counter\n")
		for i := 0; i < series; i++ {
			fmt.Fprintf(&buf, `zonetoll_traffic_bytes_total{src_namespace="ns%d",src_workload="w%d",src_kind="deployment",src_zone=%q,dst_namespace="ns%d",dst_workload="w%d",dst_kind="statefulset",dst_zone=%q} %d`+"\n",
				i%50, i, zones[i%3], (i+7)%50, i+1, zones[(i/3)%3], (n+1)*(1000+i))
		}
		pages[n] = buf.Bytes()
	}
	var round atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(pages[(round.Add(1)-1)%rounds])
	}))
	defer srv.Close()
	table, _ := pricing.Preset("aws")
	m, err := New(Options{Targets: []string{srv.URL}, Timeout: time.Minute, Table: table}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	m.ScrapeOnce(context.Background()) // baseline
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	n := 0
	for b.Loop() {
		m.ScrapeOnce(context.Background())
		n++
	}
	// CPU time of the whole process (the in-process server's writes included) says more than wall time
	// on a shared machine, where the wall clock also counts other jobs' turns.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(n), "cpu-ns/op")
	b.ReportMetric(float64(series), "series")
}

// BenchmarkExpose measures one read of costcalc's /metrics (text format, what a Prometheus scrape costs
// costcalc) after two scrapes of a flowserver at its default series limit: 20,000 cost series.
func BenchmarkExpose(b *testing.B) {
	const series = 20000
	zones := []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	var page bytes.Buffer
	page.WriteString("# TYPE zonetoll_traffic_bytes_total counter\n")
	for i := 0; i < series; i++ {
		fmt.Fprintf(&page, `zonetoll_traffic_bytes_total{src_namespace="ns%d",src_workload="w%d",src_kind="deployment",src_zone=%q,dst_namespace="ns%d",dst_workload="w%d",dst_kind="statefulset",dst_zone=%q} %d`+"\n",
			i%50, i, zones[i%3], (i+7)%50, i+1, zones[(i/3)%3], 1000+i)
	}
	var round atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if round.Add(1) == 1 {
			w.Write([]byte("# TYPE zonetoll_traffic_bytes_total counter\n")) // an empty first page: every series grows after it
			return
		}
		w.Write(page.Bytes())
	}))
	defer srv.Close()
	table, _ := pricing.Preset("aws")
	reg := prometheus.NewRegistry()
	m, err := New(Options{Targets: []string{srv.URL}, Timeout: time.Minute, Table: table}, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	m.ScrapeOnce(context.Background())
	m.ScrapeOnce(context.Background())
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	n := 0
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
		n++
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(n), "cpu-ns/op")
	b.ReportMetric(float64(series), "series")
}
