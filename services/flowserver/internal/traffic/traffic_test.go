package traffic

import (
	"math"
	"testing"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/services"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

func ep(name, zone string, pod bool) *resolve.Endpoint {
	e := &resolve.Endpoint{Workload: unique.Make(resolve.Workload{Namespace: "ns", Name: name, Kind: "deployment", Zone: zone}), Source: resolve.SourceNode}
	if pod {
		e.Source = resolve.SourcePod
		e.Pod = unique.Make(resolve.PodKey{Namespace: "ns", Name: name + "-0"})
	}
	return e
}

func TestStoreLimitOverflowAndExpiry(t *testing.T) {
	reg, s := newStore(t, Options{MaxSeries: 2, TTL: time.Hour})
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	a, b, c, ext := ep("a", "z1", true), ep("b", "z2", true), ep("c", "z2", true), ep("ext", "", false)
	batch := NewBatch()
	batch.Add(a, b, 100, 1) // cross-zone: a's pod
	batch.Add(a, b, 50, 1)  // same pair: summed in the batch
	batch.Add(b, c, 7, 1)   // same zone: no pod series
	s.Apply(batch, t0)
	batch.Reset()
	batch.Add(c, a, 30, 1)   // third pair: over the limit, overflow keeps zones z2 → z1
	batch.Add(a, ext, 11, 1) // fourth: overflow z1 → ""
	s.Apply(batch, t0.Add(30*time.Minute))

	f := metricstest.Gather(t, reg)
	checks := []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{PairBytesName, map[string]string{"src_workload": "a", "dst_workload": "b"}, 150},
		{PairPacketsName, map[string]string{"src_workload": "a", "dst_workload": "b"}, 2},
		{PairBytesName, map[string]string{"src_workload": Overflow, "src_zone": "z2", "dst_zone": "z1"}, 30},
		{PairBytesName, map[string]string{"src_workload": Overflow, "src_zone": "z1", "dst_zone": ""}, 11},
		{ZoneBytesName, map[string]string{"src_zone": "z1", "dst_zone": "z2"}, 150},
		{ZoneBytesName, map[string]string{"src_zone": "z2", "dst_zone": "z2"}, 7},
		{PodBytesName, map[string]string{"pod": "a-0"}, 150},
		{PodBytesName, map[string]string{"pod": "c-0"}, 30},
		{"zonetoll_flowserver_series_overflow_bytes_total", map[string]string{"metric": familyPairs}, 41},
	}
	for _, c := range checks {
		if v, ok := f.Value(c.metric, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.metric, c.labels, v, ok, c.want)
		}
	}
	if n := len(f.Series(PodBytesName, map[string]string{"pod": "b-0"})); n != 0 {
		t.Errorf("same-zone traffic made a pod series")
	}

	// An hour after the first batch, its series expire; the second batch's and the overflow stay.
	s.Expire(t0.Add(61 * time.Minute))
	f = metricstest.Gather(t, reg)
	if n := len(f.Series(PairBytesName, map[string]string{"src_workload": "a", "dst_workload": "b"})); n != 0 {
		t.Error("idle pair a → b did not expire")
	}
	if v, _ := f.Value(PairBytesName, map[string]string{"src_workload": Overflow, "src_zone": "z2"}); v != 30 {
		t.Errorf("overflow series after expiry = %v, want 30", v)
	}
	if v, _ := f.Value(PodBytesName, map[string]string{"pod": "c-0"}); v != 30 {
		t.Errorf("c-0 after expiry = %v, want 30 (updated within the TTL)", v)
	}
	if v, _ := f.Value("zonetoll_flowserver_series_expired_total", map[string]string{"metric": familyPairs}); v != 2 {
		t.Errorf("expired pairs = %v, want 2 (a → b and b → c)", v)
	}
}

// The per-Service metric has the same limit, overflow (everything but the zones __overflow__) and
// expiry as the workload-pair metric.
func TestServiceSeriesLimitOverflowAndExpiry(t *testing.T) {
	reg, s := newStore(t, Options{MaxSeries: 2, TTL: time.Hour})
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	a, b, c := ep("a", "z1", true), ep("b", "z2", true), ep("c", "z3", true)
	api := unique.Make(services.Target{Namespace: "shop", Service: "api"})
	both := unique.Make(services.Target{Namespace: "shop", Service: "api+api-canary"})
	batch := NewBatch()
	batch.AddService(batch.Add(a, b, 100, 1), api, 100, false)
	batch.AddService(batch.Add(a, b, 50, 1), api, 50, false) // same series: summed
	batch.AddService(batch.Add(a, c, 7, 1), both, 7, false)  // the endpoint's zone is part of the series
	batch.Add(b, c, 1000, 1)                                 // not through a Service: no per-Service series
	s.Apply(batch, t0)
	batch.Reset()
	batch.AddService(batch.Add(c, b, 30, 1), api, 30, false) // third series: overflow, zones z3 → z2 kept
	s.Apply(batch, t0.Add(30*time.Minute))

	f := metricstest.Gather(t, reg)
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"src_namespace": "ns", "src_workload": "a", "src_kind": "deployment", "src_zone": "z1", "namespace": "shop", "service": "api", "dst_zone": "z2"}, 150},
		{map[string]string{"src_workload": "a", "service": "api+api-canary", "dst_zone": "z3"}, 7},
		{map[string]string{"src_namespace": Overflow, "src_workload": Overflow, "src_kind": Overflow, "src_zone": "z3", "namespace": Overflow, "service": Overflow, "dst_zone": "z2"}, 30},
	} {
		if v, ok := f.Value(ServiceBytesName, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", ServiceBytesName, c.labels, v, ok, c.want)
		}
	}
	if n := len(f.Series(ServiceBytesName, nil)); n != 3 {
		t.Errorf("%d per-Service series, want 3 (two and the overflow)", n)
	}
	if v, _ := f.Value("zonetoll_flowserver_series_overflow_bytes_total", map[string]string{"metric": familySvcs}); v != 30 {
		t.Errorf("per-Service overflow bytes = %v, want 30", v)
	}
	if v, _ := f.Value("zonetoll_flowserver_series", map[string]string{"metric": familySvcs}); v != 3 {
		t.Errorf("per-Service series gauge = %v, want 3", v)
	}

	s.Expire(t0.Add(61 * time.Minute))
	f = metricstest.Gather(t, reg)
	if n := len(f.Series(ServiceBytesName, map[string]string{"src_workload": "a"})); n != 0 {
		t.Error("idle per-Service series of a did not expire")
	}
	if v, _ := f.Value(ServiceBytesName, map[string]string{"service": Overflow}); v != 30 {
		t.Errorf("per-Service overflow after expiry = %v, want 30", v)
	}
	if v, _ := f.Value("zonetoll_flowserver_series_expired_total", map[string]string{"metric": familySvcs}); v != 2 {
		t.Errorf("expired per-Service series = %v, want 2", v)
	}
}

// Counts saturate at the largest uint64 instead of wrapping: a wrapped counter reads as a reset, and
// rate() would bill the whole new value again.
func TestCountsSaturate(t *testing.T) {
	const top = math.MaxUint64
	for _, tt := range []struct{ a, b, want uint64 }{
		{1, 2, 3},
		{top - 10, 10, top},
		{top - 10, 11, top},
		{top, top, top},
		{1 << 63, 1 << 63, top},
	} {
		if got := SatAdd(tt.a, tt.b); got != tt.want {
			t.Errorf("SatAdd(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}

	reg, s := newStore(t, Options{MaxSeries: 10})
	a, b := ep("a", "z1", true), ep("b", "z2", true)
	batch := NewBatch()
	batch.Add(a, b, 1<<63, 1<<63)
	batch.Add(a, b, 1<<63, 1<<63) // wraps to 0 in the batch with +=
	s.Apply(batch, time.Now())
	batch.Reset()
	batch.Add(a, b, 1<<63, 1)
	s.Apply(batch, time.Now()) // wraps in the store with +=
	f := metricstest.Gather(t, reg)
	for _, c := range []struct {
		metric string
		labels map[string]string
	}{
		{PairBytesName, map[string]string{"src_workload": "a", "dst_workload": "b"}},
		{PairPacketsName, map[string]string{"src_workload": "a", "dst_workload": "b"}},
		{ZoneBytesName, map[string]string{"src_zone": "z1", "dst_zone": "z2"}},
		{ZonePacketsName, map[string]string{"src_zone": "z1", "dst_zone": "z2"}},
		{PodBytesName, map[string]string{"pod": "a-0"}},
	} {
		if v, ok := f.Value(c.metric, c.labels); !ok || v != float64(top) {
			t.Errorf("%s%v = %v, want the saturated %v", c.metric, c.labels, v, float64(top))
		}
	}
}

// A response (an endpoint answering a client) is the Service's series of that client, with the
// endpoint's zone: the same labels as the request the other way, told apart by direction.
func TestServiceResponseIsTheClientsSeries(t *testing.T) {
	reg, s := newStore(t, Options{MaxSeries: 10, TTL: time.Hour})
	client, endpoint := ep("frontend", "z1", true), ep("api", "z2", true)
	api := unique.Make(services.Target{Namespace: "shop", Service: "api"})
	batch := NewBatch()
	batch.AddService(batch.Add(client, endpoint, 100, 1), api, 100, false)
	batch.AddService(batch.Add(endpoint, client, 900, 1), api, 900, true)
	s.Apply(batch, time.Now())
	f := metricstest.Gather(t, reg)
	for dir, want := range map[string]float64{DirectionRequest: 100, DirectionResponse: 900} {
		l := map[string]string{"src_workload": "frontend", "src_zone": "z1", "service": "api", "dst_zone": "z2", "direction": dir}
		if v, ok := f.Value(ServiceBytesName, l); !ok || v != want {
			t.Errorf("%s%v = %v (found %v), want %v", ServiceBytesName, l, v, ok, want)
		}
	}
}

// newStore is a Store with opts, registered (its own metrics and the traffic collector) on a fresh registry.
func newStore(t *testing.T, opts Options) (*prometheus.Registry, *Store) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := NewStore(opts, reg)
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(s)
	return reg, s
}
