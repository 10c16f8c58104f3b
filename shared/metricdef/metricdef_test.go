package metricdef

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDeclared: each kind is registered under its name and help; a CounterVec's values are there at 0
// before any event, and a CounterFunc reads its value at scrape time.
func TestDeclared(t *testing.T) {
	var f Set
	c := f.Counter("x_events_total", "Events.")
	v := f.CounterVec("x_dropped_total", "Dropped, by reason.", "reason", "full", "rejected")
	g := f.Gauge("x_queue", "Queued.")
	h := f.Histogram("x_duration_seconds", "Durations.", []float64{1})
	read := 0.0
	f.CounterFunc("x_kernel_total", "Kept by the kernel.", func() float64 { return read })
	reg := prometheus.NewRegistry()
	if err := f.Register(reg, "x metrics"); err != nil {
		t.Fatal(err)
	}
	c.Add(2)
	g.Set(3)
	h.Observe(0.5)
	read = 7
	want := `
# HELP x_dropped_total Dropped, by reason.
# TYPE x_dropped_total counter
x_dropped_total{reason="full"} 0
x_dropped_total{reason="rejected"} 0
# HELP x_duration_seconds Durations.
# TYPE x_duration_seconds histogram
x_duration_seconds_bucket{le="1"} 1
x_duration_seconds_bucket{le="+Inf"} 1
x_duration_seconds_sum 0.5
x_duration_seconds_count 1
# HELP x_events_total Events.
# TYPE x_events_total counter
x_events_total 2
# HELP x_kernel_total Kept by the kernel.
# TYPE x_kernel_total counter
x_kernel_total 7
# HELP x_queue Queued.
# TYPE x_queue gauge
x_queue 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	v.WithLabelValues("full").Inc()
	if got := testutil.ToFloat64(v.WithLabelValues("full")); got != 1 {
		t.Errorf("full = %v, want 1", got)
	}
}

// TestNameTakenTwice: a name the registry has already is refused, with an error saying whose metrics.
func TestNameTakenTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	var a, b Set
	a.Counter("x_total", "X.")
	b.Counter("x_total", "X.")
	if err := a.Register(reg, "a metrics"); err != nil {
		t.Fatal(err)
	}
	err := b.Register(reg, "b metrics")
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) || !strings.HasPrefix(err.Error(), "registering b metrics: ") {
		t.Errorf("second x_total: %v, want an AlreadyRegisteredError naming b metrics", err)
	}
}
