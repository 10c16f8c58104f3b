package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/auth"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/dedupe"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/flowlog"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/services"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/traffic"
	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

// staticAuth accepts one token: the narrow stand-in for TokenReview, whose real path the cluster
// tests in internal/app cover.
type staticAuth struct{}

func (staticAuth) Authenticate(_ context.Context, token string) (auth.Identity, error) {
	if token != "good" {
		return auth.Identity{}, auth.ErrUnauthenticated
	}
	return auth.Identity{Username: "system:serviceaccount:zonetoll:flowagent"}, nil
}

// cluster is a resolver filled as the informers would for pods pods on nodes nodes in 3 zones,
// spread over workloads workloads.
type cluster struct {
	res       *resolve.Resolver
	podIPs    []report.Addr
	workloads int
	svcs      *services.Index // nil: no per-Service attribution
}

func newCluster(tb testing.TB, pods, nodes, workloads, gone int) *cluster {
	tb.Helper()
	res, err := resolve.New(resolve.Options{GoneCapacity: max(gone, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	c := &cluster{res: res, workloads: workloads}
	created := time.Now().Add(-time.Hour)
	for n := range nodes {
		res.UpsertNode(resolve.NodeState{
			Name: fmt.Sprintf("node-%03d", n), Zone: fmt.Sprintf("zone-%c", 'a'+n%3), Region: "region-1",
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{198, 19, byte(n / 256), byte(n % 256)})},
		})
	}
	for p := range pods {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(p / 256), byte(p % 256)})
		w := p % workloads
		res.UpsertPod(resolve.PodState{
			Namespace: fmt.Sprintf("ns-%d", w%20), Name: fmt.Sprintf("app-%d-%05d", w, p), Node: fmt.Sprintf("node-%03d", p%nodes),
			OwnerKind: "StatefulSet", OwnerName: fmt.Sprintf("app-%d", w), IPs: []netip.Addr{ip}, Created: created,
		}, created)
		c.podIPs = append(c.podIPs, report.AddrFrom(ip))
	}
	// Fill the gone-pod LRU: pods that lived and were deleted, on addresses nobody holds now.
	for g := range gone {
		ip := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(g >> 24), byte(g >> 16), byte(g >> 8), byte(g)})
		name := fmt.Sprintf("gone-%d", g)
		res.UpsertPod(resolve.PodState{Namespace: "ns-gone", Name: name, Node: "node-000", IPs: []netip.Addr{ip}, Created: created}, created)
		res.DeletePod("ns-gone", name, created.Add(time.Minute))
	}
	return c
}

// flows returns n flows from random pods to pods of the few workloads each workload calls (its
// next five), as services in a cluster do, plus some to an external address.
func (c *cluster) flows(n int, rng *rand.Rand) []report.Flow {
	fs := make([]report.Flow, n)
	perWorkload := len(c.podIPs) / c.workloads
	for i := range fs {
		src := rng.IntN(len(c.podIPs))
		dstW := (src%c.workloads + 1 + rng.IntN(5)) % c.workloads
		dst := dstW + c.workloads*rng.IntN(perWorkload)
		fs[i] = report.Flow{Src: c.podIPs[src], Dst: c.podIPs[dst], Bytes: uint64(60 + rng.IntN(100_000)), Packets: uint64(1 + rng.IntN(100))}
		if i%50 == 0 {
			fs[i].Dst = report.AddrFrom(netip.MustParseAddr("fd00:ee::1"))
		}
	}
	return fs
}

type harness struct {
	h     *Handler
	reg   *prometheus.Registry
	clock atomic.Int64 // Unix nanoseconds
}

func newHarness(tb testing.TB, c *cluster, lim Limits, retention time.Duration) *harness {
	tb.Helper()
	return newHarnessWith(tb, c, lim, retention, nil)
}

// newHarnessWith is newHarness with a flow log written to flowLog (nil: no flow log). Its reports
// take sources from random pods of every node (cluster.flows), so the check that a flow's source is
// on the reporting node is off; newStrictHarness has it on.
func newHarnessWith(tb testing.TB, c *cluster, lim Limits, retention time.Duration, flowLog io.Writer) *harness {
	tb.Helper()
	return newHarnessOpts(tb, c, lim, retention, flowLog, true)
}

// newStrictHarness is newHarness with the foreign-source check on, as the service runs.
func newStrictHarness(tb testing.TB, c *cluster, lim Limits, retention time.Duration, flowLog io.Writer) *harness {
	tb.Helper()
	return newHarnessOpts(tb, c, lim, retention, flowLog, false)
}

func newHarnessOpts(tb testing.TB, c *cluster, lim Limits, retention time.Duration, flowLog io.Writer, anySourceNode bool) *harness {
	tb.Helper()
	reg := prometheus.NewRegistry()
	store, err := traffic.NewStore(traffic.Options{MaxSeries: 1 << 20}, reg)
	if err != nil {
		tb.Fatal(err)
	}
	reg.MustRegister(store)
	hs := &harness{reg: reg}
	hs.clock.Store(time.Now().UnixNano())
	var flog *flowlog.Logger
	if flowLog != nil {
		if flog, err = flowlog.New(flowLog, flowlog.Options{SampleRate: 1}, reg); err != nil {
			tb.Fatal(err)
		}
	}
	hs.h, err = New(Options{
		Limits: lim, Auth: staticAuth{}, Resolver: c.res, Services: c.svcs, Store: store, FlowLog: flog,
		Seen: dedupe.New(retention, 1<<20), Logger: slog.New(slog.DiscardHandler), AnySourceNode: anySourceNode,
		// Each call moves the clock on, so in benchmarks the dedupe window forgets reports at once.
		Now: func() time.Time { return time.Unix(0, hs.clock.Add(int64(time.Second))) },
	}, reg)
	if err != nil {
		tb.Fatal(err)
	}
	return hs
}

func (hs *harness) post(body []byte, encoding string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer good")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	hs.h.ServeHTTP(rec, req)
	return rec
}

func (hs *harness) totals(tb testing.TB) (bytes, flows float64) {
	tb.Helper()
	f := metricstest.Gather(tb, hs.reg)
	return f.Sum(traffic.PairBytesName, nil), f.Sum("zonetoll_flowserver_flows_total", nil)
}

// rejected is zonetoll_flowserver_reports_total{result="rejected",reason}.
func (hs *harness) rejected(tb testing.TB, reason string) float64 {
	tb.Helper()
	v, _ := metricstest.Gather(tb, hs.reg).Value("zonetoll_flowserver_reports_total", map[string]string{"result": "rejected", "reason": reason})
	return v
}

var benchLimits = Limits{MaxBodyBytes: 64 << 20, MaxFlows: report.DefaultMaxFlows, MaxInFlight: 4}

// FuzzIngest feeds arbitrary bodies to the handler: it must never panic, must apply exactly the
// bodies that decode, and must change nothing for the others.
func FuzzIngest(f *testing.F) {
	c := newCluster(f, 200, 6, 20, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 4 {
		r := &report.Report{Node: "node-001", BootID: [16]byte{1}, Sequence: uint64(i + 1),
			WindowStart: time.Unix(1_700_000_000, 0), WindowEnd: time.Unix(1_700_000_010, 0), Flows: c.flows(i*3, rng)}
		enc, err := report.Encode(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc, false)
		var gz bytes.Buffer
		if err := report.WriteGzip(&gz, r); err != nil {
			f.Fatal(err)
		}
		f.Add(gz.Bytes(), true)
	}
	f.Add([]byte("ZTRP\x01\x00"), false)
	lim := Limits{MaxBodyBytes: 1 << 20, MaxFlows: 1000, MaxInFlight: 1}
	hs := newHarness(f, c, lim, time.Hour)
	f.Fuzz(func(t *testing.T, body []byte, gzipped bool) {
		beforeBytes, beforeFlows := hs.totals(t)
		enc := ""
		plain := body
		if gzipped {
			enc = "gzip"
			var err error
			plain, err = report.AppendGunzip(nil, bytes.NewReader(body), report.Limits{MaxFlows: lim.MaxFlows}.MaxEncodedLen())
			// The server takes the size to reserve from the last gzip trailer: a body of several
			// gzip members inflates past it and is refused.
			if err != nil || binary.LittleEndian.Uint32(body[len(body)-4:]) != uint32(len(plain)) {
				plain = nil
			}
		}
		want, decodeErr := report.Decode(plain, report.Limits{MaxFlows: lim.MaxFlows})
		rec := hs.post(body, enc)
		afterBytes, afterFlows := hs.totals(t)
		switch {
		case rec.Code == http.StatusOK && rec.Body.String() == "applied\n":
			if decodeErr != nil {
				t.Fatalf("applied a body that does not decode: %v", decodeErr)
			}
			var sum float64
			for _, fl := range want.Flows {
				sum += float64(fl.Bytes)
			}
			if afterFlows-beforeFlows != float64(len(want.Flows)) || afterBytes-beforeBytes != sum {
				t.Fatalf("applied %v flows / %v bytes, report has %d / %v", afterFlows-beforeFlows, afterBytes-beforeBytes, len(want.Flows), sum)
			}
		case rec.Code == http.StatusOK: // a duplicate
			if afterBytes != beforeBytes || afterFlows != beforeFlows {
				t.Fatal("a duplicate changed the counters")
			}
		default:
			// A report that decodes is refused only for a window ending after the server's clock.
			future := decodeErr == nil && want.WindowEnd.After(time.Unix(0, hs.clock.Load()))
			if decodeErr == nil && len(body) <= int(lim.MaxBodyBytes) && !(future && rec.Code == http.StatusUnprocessableEntity) {
				t.Fatalf("refused a valid report with %d: %s", rec.Code, rec.Body)
			}
			if afterBytes != beforeBytes || afterFlows != beforeFlows {
				t.Fatalf("a refused body (%d) changed the counters", rec.Code)
			}
			if rec.Code < 400 || rec.Code >= 500 {
				t.Fatalf("refused with %d, want a 4xx", rec.Code)
			}
		}
	})
}

// BenchmarkIngest measures the whole ingest path of one report: body read, gunzip, decode, auth
// (cache hit stand-in), dedupe, resolution of both addresses of every flow against 10,000 pods on
// 100 nodes in 1,000 workloads, and the counter update.
func BenchmarkIngest(b *testing.B) {
	c := newCluster(b, 10_000, 100, 1_000, 0)
	for _, n := range []int{1_000, 100_000} {
		for _, enc := range []string{"gzip", "identity"} {
			b.Run(fmt.Sprintf("flows=%d/encoding=%s", n, enc), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(3, 4))
				r := &report.Report{Node: "node-001", BootID: [16]byte{9}, Sequence: 1,
					WindowStart: time.Now().Add(-10 * time.Second), WindowEnd: time.Now(), Flows: c.flows(n, rng)}
				var body []byte
				if enc == "gzip" {
					var buf bytes.Buffer
					if err := report.WriteGzip(&buf, r); err != nil {
						b.Fatal(err)
					}
					body = buf.Bytes()
				} else {
					var err error
					if body, err = report.Encode(r); err != nil {
						b.Fatal(err)
					}
				}
				hs := newHarness(b, c, benchLimits, time.Nanosecond)
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime()
				for b.Loop() {
					rec := hs.post(body, enc)
					if rec.Code != http.StatusOK || rec.Body.String() != "applied\n" {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
				}
				elapsed, cpu := b.Elapsed(), cpuTime()-cpu0
				b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "flows/s")
				// CPU time, not wall time, is the per-core figure on a shared machine: it leaves out the
				// time other processes held the cores (it includes GC on other threads).
				b.ReportMetric(float64(b.N*n)/cpu.Seconds(), "flows/cpu_s")
				b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*n), "ns/flow")
				b.ReportMetric(float64(len(body))/float64(n), "body_B/flow")
			})
		}
	}
}

// BenchmarkResolverMemory measures the heap the resolver needs for 10,000 pods on 100 nodes in 1,000
// workloads plus a full gone-pod LRU (65,536 addresses), and the traffic store at its default series
// limit. The informers' own caches of trimmed objects come on top (BenchmarkClusterMemory in
// internal/app measures the whole process).
func BenchmarkResolverMemory(b *testing.B) {
	for b.Loop() {
		before := heapInUse()
		c := newCluster(b, 10_000, 100, 1_000, 65_536)
		resolverBytes := heapInUse() - before
		hs := newHarness(b, c, benchLimits, time.Nanosecond)
		rng := rand.New(rand.NewPCG(5, 6))
		// Enough reports to create every workload pair the flow model makes (5 per workload) and a
		// pod series for every cross-zone sender.
		for i := range 20 {
			r := &report.Report{Node: "node-001", BootID: [16]byte{7}, Sequence: uint64(i + 1),
				WindowStart: time.Now().Add(-10 * time.Second), WindowEnd: time.Now(), Flows: c.flows(20_000, rng)}
			body, err := report.Encode(r)
			if err != nil {
				b.Fatal(err)
			}
			if rec := hs.post(body, ""); rec.Code != http.StatusOK {
				b.Fatal(rec.Code)
			}
		}
		total := heapInUse() - before
		b.ReportMetric(float64(resolverBytes)/(1<<20), "resolver_MiB")
		b.ReportMetric(float64(total)/(1<<20), "resolver+store_MiB")
		runtime.KeepAlive(hs)
		runtime.KeepAlive(c)
	}
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// Until the caches have synced, reports are refused with 503 and Retry-After, and nothing is counted.
func TestRefusesReportsUntilSynced(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	hs := newHarness(t, c, benchLimits, time.Hour)
	synced := false
	hs.h.synced = func() bool { return synced }
	body, err := report.Encode(&report.Report{Node: "node-001", BootID: [16]byte{4}, Sequence: 1,
		WindowStart: time.Now().Add(-time.Second), WindowEnd: time.Now(), Flows: c.flows(10, rand.New(rand.NewPCG(9, 9)))})
	if err != nil {
		t.Fatal(err)
	}
	rec := hs.post(body, "")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("before sync: %d (Retry-After %q) %s, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if _, flows := hs.totals(t); flows != 0 {
		t.Fatalf("counted %v flows before sync", flows)
	}
	synced = true
	if rec := hs.post(body, ""); rec.Code != http.StatusOK || rec.Body.String() != "applied\n" {
		t.Fatalf("after sync: %d %s", rec.Code, rec.Body)
	}
}

// Copies of one report arriving at once (an agent's retry racing its first attempt) are applied once.
func TestConcurrentCopiesApplyOnce(t *testing.T) {
	c := newCluster(t, 300, 6, 30, 0)
	hs := newHarness(t, c, Limits{MaxBodyBytes: 1 << 20, MaxFlows: 10_000, MaxInFlight: 16}, time.Hour)
	flows := c.flows(2_000, rand.New(rand.NewPCG(7, 8)))
	body, err := report.Encode(&report.Report{Node: "node-001", BootID: [16]byte{3}, Sequence: 42,
		WindowStart: time.Now().Add(-time.Second), WindowEnd: time.Now(), Flows: flows})
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan string, 8)
	for range 8 {
		go func() {
			rec := hs.post(body, "")
			results <- fmt.Sprint(rec.Code, " ", rec.Body.String())
		}()
	}
	applied := 0
	for range 8 {
		switch r := <-results; r {
		case "200 applied\n":
			applied++
		case "200 duplicate\n":
		default:
			t.Errorf("unexpected answer %q", r)
		}
	}
	var sum float64
	for _, f := range flows {
		sum += float64(f.Bytes)
	}
	gotBytes, gotFlows := hs.totals(t)
	if applied != 1 || gotFlows != float64(len(flows)) || gotBytes != sum {
		t.Errorf("applied %d times, counted %v flows / %v bytes; want once, %d / %v", applied, gotFlows, gotBytes, len(flows), sum)
	}
}

// With the flow log on, each request keeps the endpoints of its flows in its pooled work item; many
// reports at once are each counted exactly. The inFlight semaphore orders most requests for the race
// detector, so this rarely sees a pool misuse; TestWorkReleasedClearedBeforePooled does.
func TestConcurrentReportsWithFlowLog(t *testing.T) {
	c := newCluster(t, 300, 6, 30, 0)
	hs := newHarnessWith(t, c, Limits{MaxBodyBytes: 1 << 20, MaxFlows: 10_000, MaxInFlight: 64}, time.Hour, io.Discard)
	hs.h.now = time.Now // the harness clock's atomic counter would order every request
	const senders = 64
	rng := rand.New(rand.NewPCG(11, 12))
	bodies := make([][]byte, senders)
	var want float64
	for s := range senders {
		r := &report.Report{Node: fmt.Sprintf("node-%03d", s), BootID: [16]byte{5}, Sequence: 1,
			WindowStart: time.Now().Add(-time.Second), WindowEnd: time.Now(), Flows: c.flows(200, rng)}
		body, err := report.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		bodies[s] = body
		for _, f := range r.Flows {
			want += float64(f.Bytes)
		}
	}
	errs := make(chan string, senders)
	for s := range senders {
		go func() {
			if rec := hs.post(bodies[s], ""); rec.Code != http.StatusOK || rec.Body.String() != "applied\n" {
				errs <- fmt.Sprint(rec.Code, " ", rec.Body.String())
				return
			}
			errs <- ""
		}()
	}
	for range senders {
		if e := <-errs; e != "" {
			t.Errorf("report not applied: %s", e)
		}
	}
	if got, _ := hs.totals(t); got != want {
		t.Errorf("counted %v bytes, want %v", got, want)
	}
}

// A work item is cleared before it goes back to the pool, so whoever takes it next is its only user.
// Goroutines on one P hand items straight to each other with nothing else ordering them, which is
// what the race detector needs to see a clear that runs after the item was handed on.
func TestWorkReleasedClearedBeforePooled(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	hs := newHarness(t, c, benchLimits, time.Hour)
	ep := &resolve.Endpoint{}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	done := make(chan struct{})
	for range 64 {
		go func() {
			defer func() { done <- struct{}{} }()
			wk := hs.h.getWork()
			defer hs.h.putWork(wk)
			wk.srcEPs, wk.dstEPs = wk.srcEPs[:0], wk.dstEPs[:0]
			for range 100 { // as apply keeps endpoints for the flow log
				wk.srcEPs = append(wk.srcEPs, ep)
				wk.dstEPs = append(wk.dstEPs, ep)
			}
		}()
	}
	for range 64 {
		<-done
	}
}

// A report claiming more bytes than a node's line rate allows in its window is refused with its own
// reason, and changes nothing; so is one whose bytes do not even fit in a uint64.
func TestRefusesImplausibleBytes(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	const rate = 1_000_000 // bytes per second
	end := time.Now()
	tests := []struct {
		name   string
		rate   uint64
		window time.Duration
		bytes  []uint64
		want   int
	}{
		{"at the line rate", rate, 10 * time.Second, []uint64{4 * rate, 6 * rate}, http.StatusOK},
		{"one byte over", rate, 10 * time.Second, []uint64{4 * rate, 6*rate + 1}, http.StatusUnprocessableEntity},
		{"one flow of 10^19 bytes", rate, 10 * time.Second, []uint64{10_000_000_000_000_000_000}, http.StatusUnprocessableEntity},
		{"empty window judged as one second", rate, 0, []uint64{rate}, http.StatusOK},
		{"empty window over one second's worth", rate, 0, []uint64{rate + 1}, http.StatusUnprocessableEntity},
		{"sum past 2^64 under any rate", math.MaxUint64, 10 * time.Second, []uint64{1 << 63, 1 << 63, 5}, http.StatusUnprocessableEntity},
		{"check off", 0, time.Second, []uint64{math.MaxUint64}, http.StatusOK},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := benchLimits
			lim.MaxBytesPerSecond = tt.rate
			hs := newHarness(t, c, lim, time.Hour)
			r := &report.Report{Node: "node-001", BootID: [16]byte{8}, Sequence: uint64(i + 1), WindowStart: end.Add(-tt.window), WindowEnd: end}
			var want float64
			for j, b := range tt.bytes {
				r.Flows = append(r.Flows, report.Flow{Src: c.podIPs[j], Dst: c.podIPs[j+1], Bytes: b, Packets: 1})
				want += float64(b)
			}
			body, err := report.Encode(r)
			if err != nil {
				t.Fatal(err)
			}
			rec := hs.post(body, "")
			if rec.Code != tt.want {
				t.Fatalf("answered %d %s, want %d", rec.Code, rec.Body, tt.want)
			}
			gotBytes, _ := hs.totals(t)
			rejected := hs.rejected(t, "implausible_bytes")
			if tt.want == http.StatusOK {
				if gotBytes != want || rejected != 0 {
					t.Errorf("counted %v bytes (want %v), %v implausible_bytes rejections (want 0)", gotBytes, want, rejected)
				}
				return
			}
			if gotBytes != 0 || rejected != 1 {
				t.Errorf("counted %v bytes (want 0), %v implausible_bytes rejections (want 1)", gotBytes, rejected)
			}
		})
	}
}

// Windows in the future (past the clock skew) and windows older than the dedupe memory are refused
// with their own reasons; nothing of them is counted.
func TestRefusesWindowsOutOfTime(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	const retention, skew = time.Hour, time.Minute
	lim := benchLimits
	lim.MaxClockSkew, lim.MaxWindowAge = skew, retention-skew
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		start, end time.Time
		reason     string // "" for applied
	}{
		{"just ended", t0.Add(-10 * time.Second), t0, ""},
		{"ends within the skew", t0.Add(-10 * time.Second), t0.Add(skew - time.Second), ""},
		{"ends past the skew", t0.Add(-10 * time.Second), t0.Add(skew + time.Second), "window_in_future"},
		{"ends in 2200", t0, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), "window_in_future"},
		{"started as long ago as allowed", t0.Add(-(retention - skew)), t0.Add(-50 * time.Minute), ""},
		{"started just before that", t0.Add(-(retention - skew) - time.Second), t0.Add(-50 * time.Minute), "window_too_old"},
		{"from 2023", time.Unix(1_700_000_000, 0), time.Unix(1_700_000_010, 0), "window_too_old"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := newHarness(t, c, lim, retention)
			hs.h.now = func() time.Time { return t0 }
			r := &report.Report{Node: "node-001", BootID: [16]byte{6}, Sequence: uint64(i + 1), WindowStart: tt.start, WindowEnd: tt.end,
				Flows: []report.Flow{{Src: c.podIPs[0], Dst: c.podIPs[1], Bytes: 1000, Packets: 1}}}
			body, err := report.Encode(r)
			if err != nil {
				t.Fatal(err)
			}
			rec := hs.post(body, "")
			gotBytes, _ := hs.totals(t)
			if tt.reason == "" {
				if rec.Code != http.StatusOK || gotBytes != 1000 {
					t.Fatalf("answered %d %s, counted %v bytes; want 200 and 1000", rec.Code, rec.Body, gotBytes)
				}
				return
			}
			if rec.Code != http.StatusUnprocessableEntity || gotBytes != 0 || hs.rejected(t, tt.reason) != 1 {
				t.Errorf("answered %d %s, counted %v bytes, %v rejections %s; want 422, 0, 1", rec.Code, rec.Body, gotBytes, hs.rejected(t, tt.reason), tt.reason)
			}
		})
	}
}

// A report replayed (or retried from a spool) after the dedupe memory forgot it is not counted again.
func TestReplayAfterDedupeMemoryIsNotCounted(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	const retention, skew = time.Hour, time.Minute
	lim := benchLimits
	lim.MaxClockSkew, lim.MaxWindowAge = skew, retention-skew
	hs := newHarness(t, c, lim, retention)
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	now := t0
	hs.h.now = func() time.Time { return now }
	// The node's clock runs a little ahead: the first copy is applied as early as the skew allows.
	r := &report.Report{Node: "node-001", BootID: [16]byte{6}, Sequence: 1, WindowStart: t0.Add(skew - 10*time.Second), WindowEnd: t0.Add(skew),
		Flows: []report.Flow{{Src: c.podIPs[0], Dst: c.podIPs[1], Bytes: 1000, Packets: 1}}}
	body, err := report.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if rec := hs.post(body, ""); rec.Body.String() != "applied\n" {
		t.Fatalf("first copy: %d %s", rec.Code, rec.Body)
	}
	for _, after := range []time.Duration{time.Minute, retention, retention + time.Nanosecond, retention + time.Minute, 3 * retention} {
		now = t0.Add(after)
		hs.h.seen.Expire(now)
		rec := hs.post(body, "")
		if gotBytes, _ := hs.totals(t); gotBytes != 1000 {
			t.Fatalf("replayed %s later: answered %d %s and counted %v bytes in all, want 1000", after, rec.Code, rec.Body, gotBytes)
		}
	}
}

// countingAuth is staticAuth that counts the tokens it was asked about.
type countingAuth struct{ n atomic.Int64 }

func (a *countingAuth) Authenticate(ctx context.Context, token string) (auth.Identity, error) {
	a.n.Add(1)
	return staticAuth{}.Authenticate(ctx, token)
}

// stuck starts a request whose body never comes (until the returned func is called) and waits until
// it holds its slot: the stand-in for a slow or maximal report in progress.
func (hs *harness) stuck(t *testing.T, token string, contentLength int64) (done func() *httptest.ResponseRecorder) {
	t.Helper()
	pr, pw := io.Pipe()
	req := httptest.NewRequest(http.MethodPost, Path, pr)
	req.ContentLength = contentLength
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	finished := make(chan struct{})
	before := len(hs.h.inFlight)
	go func() {
		defer close(finished)
		hs.h.ServeHTTP(rec, req)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(hs.h.inFlight) == before {
		if time.Now().After(deadline) {
			t.Fatal("the stuck request never took a slot")
		}
		time.Sleep(time.Millisecond)
	}
	return func() *httptest.ResponseRecorder {
		_ = pw.CloseWithError(io.ErrUnexpectedEOF)
		<-finished
		return rec
	}
}

func (hs *harness) postAs(token string, body io.Reader, contentLength int64, encoding string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, Path, body)
	req.ContentLength = contentLength
	req.Header.Set("Authorization", "Bearer "+token)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	hs.h.ServeHTTP(rec, req)
	return rec
}

// readSpy is a body that records whether anyone read it.
type readSpy struct {
	r    io.Reader
	read bool
	n    int
}

func (s *readSpy) Read(p []byte) (int, error) {
	s.read = true
	n, err := s.r.Read(p)
	s.n += n
	return n, err
}

func encodeT(t *testing.T, r *report.Report) []byte {
	t.Helper()
	b, err := report.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every decision that needs no body is taken before a slot or any of the byte budget is held: a bad
// token is answered 401 even while every slot is taken, and it is reviewed once per request, not
// queued behind the slots.
func TestAuthenticatesBeforeTakingASlot(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	lim := benchLimits
	lim.MaxInFlight = 1
	hs := newHarness(t, c, lim, time.Hour)
	ca := &countingAuth{}
	hs.h.auth = ca
	done := hs.stuck(t, "good", 1000)
	for range 5 {
		if rec := hs.postAs("junk", bytes.NewReader([]byte("x")), 1, ""); rec.Code != http.StatusUnauthorized {
			t.Errorf("junk token while the only slot is taken: %d %s, want 401", rec.Code, rec.Body)
		}
	}
	if n := ca.n.Load(); n != 6 {
		t.Errorf("authenticated %d times, want 6 (the stuck request and 5 junk ones)", n)
	}
	if hs.rejected(t, "overloaded") != 0 {
		t.Error("a junk token was refused as overloaded: it waited for a slot before its token was checked")
	}
	done()
}

// The rate limit is per identity (service account and bound node, or address) and applies before
// the body is read; the node named in the body does not open another bucket.
func TestRateLimitPerIdentityBeforeBody(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	lim := benchLimits
	lim.NodeRate, lim.NodeBurst = 0.001, 1
	hs := newHarness(t, c, lim, time.Hour)
	now := time.Now()
	first := encodeT(t, &report.Report{Node: "node-001", BootID: [16]byte{1}, Sequence: 1, WindowStart: now.Add(-time.Second), WindowEnd: now,
		Flows: []report.Flow{{Src: c.podIPs[0], Dst: c.podIPs[1], Bytes: 10, Packets: 1}}})
	if rec := hs.post(first, ""); rec.Code != http.StatusOK {
		t.Fatalf("first report: %d %s", rec.Code, rec.Body)
	}
	other := encodeT(t, &report.Report{Node: "node-002", BootID: [16]byte{1}, Sequence: 1, WindowStart: now.Add(-time.Second), WindowEnd: now,
		Flows: []report.Flow{{Src: c.podIPs[0], Dst: c.podIPs[1], Bytes: 10, Packets: 1}}})
	spy := &readSpy{r: bytes.NewReader(other)}
	rec := hs.postAs("good", spy, int64(len(other)), "")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("second report of the same identity naming another node: %d %s, want 429 with Retry-After", rec.Code, rec.Body)
	}
	if spy.read {
		t.Error("the rate-limited request's body was read")
	}
	if v := hs.rejected(t, "rate_limited"); v != 1 {
		t.Errorf("rate_limited rejections = %v, want 1", v)
	}
}

// Admission is weighted by bytes: a report in progress that holds most of the budget keeps another
// large one out (503, retry) while slots are free, and a small one still gets in. One identity may
// not hold more than its share of slots.
func TestAdmissionWeightedByBytes(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	now := time.Now()
	small := encodeT(t, &report.Report{Node: "node-001", BootID: [16]byte{2}, Sequence: 1, WindowStart: now.Add(-time.Second), WindowEnd: now,
		Flows: []report.Flow{{Src: c.podIPs[0], Dst: c.podIPs[1], Bytes: 10, Packets: 1}}})
	big := encodeT(t, &report.Report{Node: "node-001", BootID: [16]byte{2}, Sequence: 2, WindowStart: now.Add(-time.Second), WindowEnd: now,
		Flows: c.flows(5000, rand.New(rand.NewPCG(1, 1)))})

	lim := benchLimits
	lim.MaxInFlight = 8
	hs := newHarness(t, c, lim, time.Hour)
	hs.h.budget.max = hs.h.cost(int64(len(big)), int64(len(big))) * 3 / 2
	done := hs.stuck(t, "good", int64(len(big)))
	if rec := hs.postAs("good", bytes.NewReader(big), int64(len(big)), ""); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a second large report while the first holds the budget: %d %s, want 503 with Retry-After", rec.Code, rec.Body)
	}
	if rec := hs.postAs("good", bytes.NewReader(small), int64(len(small)), ""); rec.Code != http.StatusOK {
		t.Errorf("a small report while a large one holds most of the budget: %d %s, want 200", rec.Code, rec.Body)
	}
	if v := hs.rejected(t, "overloaded"); v != 1 {
		t.Errorf("overloaded rejections = %v, want 1", v)
	}
	done()
	if used := hs.h.budget.inUse(); used != 0 {
		t.Errorf("budget in use after every request ended: %d bytes", used)
	}

	// One identity, one slot at a time (here): its second report waits for the first.
	lim.MaxInFlightPerIdentity = 1
	hs = newHarness(t, c, lim, time.Hour)
	done = hs.stuck(t, "good", int64(len(small)))
	if rec := hs.postAs("good", bytes.NewReader(small), int64(len(small)), ""); rec.Code != http.StatusTooManyRequests {
		t.Errorf("a second report of one identity while its first is in progress: %d %s, want 429", rec.Code, rec.Body)
	}
	if v := hs.rejected(t, "identity_busy"); v != 1 {
		t.Errorf("identity_busy rejections = %v, want 1", v)
	}
	done()
}

// A body without Content-Length is read up to its own, smaller limit; a gzip body whose trailer
// declares more than a report can be is refused before it is inflated.
func TestStreamedAndDeclaredSizes(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	lim := benchLimits
	lim.MaxStreamedBodyBytes = 4096
	lim.MaxFlows = 1000
	hs := newHarness(t, c, lim, time.Hour)
	now := time.Now()
	fits := encodeT(t, &report.Report{Node: "node-001", BootID: [16]byte{3}, Sequence: 1, WindowStart: now.Add(-time.Second), WindowEnd: now,
		Flows: c.flows(50, rand.New(rand.NewPCG(2, 2)))})
	if rec := hs.postAs("good", bytes.NewReader(fits), -1, ""); rec.Code != http.StatusOK {
		t.Errorf("streamed body under its limit: %d %s", rec.Code, rec.Body)
	}
	endless := &readSpy{r: io.LimitReader(zeros{}, 1<<30)}
	if rec := hs.postAs("good", endless, -1, ""); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("streamed body past its limit: %d %s, want 413", rec.Code, rec.Body)
	}
	if endless.n > 4096+1 {
		t.Errorf("read %d bytes of a streamed body limited to 4096", endless.n)
	}
	// A valid gzip stream of a small body whose trailer claims 4 GiB - 1.
	var gzBody bytes.Buffer
	if err := report.WriteGzip(&gzBody, &report.Report{Node: "node-001", BootID: [16]byte{3}, Sequence: 2, WindowStart: now.Add(-time.Second), WindowEnd: now}); err != nil {
		t.Fatal(err)
	}
	lying := gzBody.Bytes()
	copy(lying[len(lying)-4:], []byte{0xff, 0xff, 0xff, 0xff})
	if rec := hs.postAs("good", bytes.NewReader(lying), int64(len(lying)), "gzip"); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("gzip trailer past the decoded limit: %d %s, want 413", rec.Code, rec.Body)
	}
	if v := hs.rejected(t, "body_too_large"); v != 2 {
		t.Errorf("body_too_large rejections = %v, want 2", v)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
