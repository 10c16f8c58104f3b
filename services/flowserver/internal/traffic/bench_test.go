package traffic

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
)

// BenchmarkScrape measures one /metrics scrape of a flowserver whose traffic metrics are at the
// default series limit (20,000 workload pairs, 20,000 pods), as Prometheus would scrape it.
func BenchmarkScrape(b *testing.B) {
	const limit = 20_000
	reg := prometheus.NewRegistry()
	s, err := NewStore(Options{MaxSeries: limit}, reg)
	if err != nil {
		b.Fatal(err)
	}
	reg.MustRegister(s)
	batch := NewBatch()
	zones := []string{"zone-a", "zone-b", "zone-c"}
	for i := range limit {
		src := &resolve.Endpoint{Source: resolve.SourcePod,
			Workload: unique.Make(resolve.Workload{Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("app-%d", i%1000), Kind: "deployment", Zone: zones[i%3]}),
			Pod:      unique.Make(resolve.PodKey{Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("app-%d-%05d", i%1000, i)})}
		dst := &resolve.Endpoint{Source: resolve.SourcePod,
			Workload: unique.Make(resolve.Workload{Namespace: fmt.Sprintf("ns-%d", (i/1000)%50), Name: fmt.Sprintf("app-%d", i/20), Kind: "statefulset", Zone: zones[(i+1)%3]})}
		batch.Add(src, dst, 1000, 1)
	}
	s.Apply(batch, time.Now())
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	var size int
	b.ReportAllocs()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
		size = rec.Body.Len()
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	// CPU time per scrape: on a shared machine wall time includes waiting for a core.
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu_s/scrape")
	b.ReportMetric(float64(size), "body_bytes")
	b.ReportMetric(float64(len(s.pairs)*2+len(s.pods)+len(s.zones)*2), "series")
}
