package sender

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zonetoll/zonetoll/services/flowagent/internal/reporttest"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/spool"
	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
)

type reportID struct {
	node string
	boot [16]byte
	seq  uint64
}

// fakeServer is a flowserver that fails its first failures requests with status, then applies
// reports once per (node, boot, seq) as the real one does.
type fakeServer struct {
	mu        sync.Mutex
	failures  int
	status    int
	header    http.Header // added to failure responses
	rejectSeq map[uint64]bool
	requests  []reportID // every decoded request, in order, failed ones included
	tokens    []string
	applied   map[reportID]uint64 // bytes applied per report
	order     []uint64            // sequences in the order applied
	bad       []string
}

func newFakeServer(t *testing.T, failures, status int) (*fakeServer, *httptest.Server) {
	fs := &fakeServer{failures: failures, status: status, applied: map[reportID]uint64{}, rejectSeq: map[uint64]bool{}}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	return fs, srv
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != Path || r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Content-Type") != "application/octet-stream" {
		f.bad = append(f.bad, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Encoding")+" "+r.Header.Get("Content-Type"))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	rep, err := report.ReadGzip(r.Body, 0, report.Limits{})
	if err != nil {
		f.bad = append(f.bad, err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := reportID{rep.Node, rep.BootID, rep.Sequence}
	f.requests = append(f.requests, id)
	f.tokens = append(f.tokens, r.Header.Get("Authorization"))
	if f.failures > 0 {
		f.failures--
		for k, v := range f.header {
			w.Header()[k] = v
		}
		http.Error(w, "unavailable", f.status)
		return
	}
	if f.rejectSeq[rep.Sequence] {
		http.Error(w, "too many flows", http.StatusRequestEntityTooLarge)
		return
	}
	if _, dup := f.applied[id]; !dup {
		var sum uint64
		for _, fl := range rep.Flows {
			sum += fl.Bytes
		}
		f.applied[id] = sum
		f.order = append(f.order, rep.Sequence)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeServer) snapshot() (applied map[reportID]uint64, order []uint64, requests []reportID, tokens []string, bad []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	applied = map[reportID]uint64{}
	for k, v := range f.applied {
		applied[k] = v
	}
	return applied, append([]uint64(nil), f.order...), append([]reportID(nil), f.requests...), append([]string(nil), f.tokens...), append([]string(nil), f.bad...)
}

// waitApplied waits (bounded) until the server applied n reports.
func waitApplied(t *testing.T, f *fakeServer, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if a, _, _, _, _ := f.snapshot(); len(a) >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	a, _, req, _, bad := f.snapshot()
	t.Fatalf("server applied %d reports, want %d (requests %v, bad %v)", len(a), n, req, bad)
}

func waitDelivered(t *testing.T, s *Sender, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(s.m.sent.WithLabelValues(resultDelivered)) < float64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("sender saw %v deliveries, want %d", testutil.ToFloat64(s.m.sent.WithLabelValues(resultDelivered)), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newTestSender(t *testing.T, url string, spool int64, reg prometheus.Registerer) *Sender {
	t.Helper()
	s, err := New(Config{URL: url, SpoolBytes: spool, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Timeout: 10 * time.Second}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// metricValue is the value of the sample of family name whose label has value, 0 if there is none.
func metricValue(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	return metricstest.Gather(t, g).Sum(name, map[string]string{label: value})
}

// droppedBytes is the spool's zonetoll_flowagent_dropped_bytes_total for reason.
func droppedBytes(t *testing.T, g prometheus.Gatherer, reason string) float64 {
	t.Helper()
	return metricValue(t, g, "zonetoll_flowagent_dropped_bytes_total", "reason", reason)
}

func runSender(t *testing.T, s *Sender) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func TestRetriesUntilServerReturns(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		status   int
	}{
		{"no failure", 0, 0},
		{"503 five times", 5, http.StatusServiceUnavailable},
		{"429 three times", 3, http.StatusTooManyRequests},
		{"500 once", 1, http.StatusInternalServerError},
		{"408 twice", 2, http.StatusRequestTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, srv := newFakeServer(t, tt.failures, tt.status)
			reg := prometheus.NewPedanticRegistry()
			s := newTestSender(t, srv.URL, 1<<20, reg)
			const reports = 4
			order, requests := deliver(t, s, fs, reports, 1000)
			for i, seq := range order {
				if seq != uint64(i+1) {
					t.Errorf("applied order %v, want 1..%d", order, reports)
					break
				}
			}
			// The oldest report is retried until it is through, always with the same identity.
			for i := 0; i <= tt.failures; i++ {
				if requests[i] != (reportID{"node-a", reporttest.Boot, 1}) {
					t.Errorf("request %d carried %+v, want report 1 retried", i, requests[i])
				}
			}
			if got := len(requests); got != reports+tt.failures {
				t.Errorf("%d requests, want %d", got, reports+tt.failures)
			}
			if got := testutil.ToFloat64(s.m.sent.WithLabelValues(resultServerError)); got != float64(tt.failures) {
				t.Errorf("server_error results = %v, want %d", got, tt.failures)
			}
			if got := testutil.ToFloat64(s.m.sent.WithLabelValues(resultDelivered)); got != reports {
				t.Errorf("delivered = %v, want %d", got, reports)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("metrics lint: %v %v", problems, err)
			}
			if got := testutil.ToFloat64(s.m.sent.WithLabelValues(resultDelivered)); got != reports || s.Pending() != 0 {
				t.Errorf("%d reports pending after delivery, want 0", s.Pending())
			}
		})
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	fs := &fakeServer{applied: map[reportID]uint64{}, rejectSeq: map[uint64]bool{}}
	// Reserve a loopback port and close it: connections are refused until the server listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	url := "http://" + addr
	srv := httptest.NewUnstartedServer(fs)
	t.Cleanup(srv.Close)
	s := newTestSender(t, url, 1<<20, prometheus.NewRegistry())
	if err := s.Enqueue(reporttest.Report(1, 500)); err != nil {
		t.Fatal(err)
	}
	stop := runSender(t, s)
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(s.m.sent.WithLabelValues(resultNetworkError)) < 2 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the reserved port %s was taken meanwhile: %v", addr, err)
	}
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	waitApplied(t, fs, 1)
	stop()
	if a, _, _, _, _ := fs.snapshot(); a[reportID{"node-a", reporttest.Boot, 1}] != 500 {
		t.Errorf("applied %v, want report 1 with 500 bytes", a)
	}
}

func TestSpoolBoundDropsOldest(t *testing.T) {
	fs, srv := newFakeServer(t, 0, 0)
	reg := prometheus.NewRegistry()
	// Measure one encoded report to set a bound that holds exactly three.
	probe := newTestSender(t, srv.URL, 1<<20, prometheus.NewRegistry())
	if err := probe.Enqueue(reporttest.Report(1, 100)); err != nil {
		t.Fatal(err)
	}
	size := probe.SpoolBytes()
	s := newTestSender(t, srv.URL, 3*size+size/2, reg)
	// Same-sized reports (the flow bytes vary only in a varint of equal length).
	for seq := uint64(1); seq <= 6; seq++ {
		if err := s.Enqueue(reporttest.Report(seq, 100+seq)); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Pending(); got != 3 {
		t.Fatalf("spool holds %d reports, want 3", got)
	}
	wantDropped := float64(101 + 102 + 103)
	if got := droppedBytes(t, reg, spool.ReasonSpoolFull); got != wantDropped {
		t.Errorf("dropped bytes (spool_full) = %v, want %v", got, wantDropped)
	}
	if held := s.SpoolBytes(); held > 3*size+size/2 {
		t.Errorf("spool holds %d bytes, over the bound %d", held, 3*size+size/2)
	}
	stop := runSender(t, s)
	waitApplied(t, fs, 3)
	stop()
	_, order, _, _, _ := fs.snapshot()
	if len(order) != 3 || order[0] != 4 || order[1] != 5 || order[2] != 6 {
		t.Errorf("applied %v, want the newest three [4 5 6]", order)
	}
}

func TestRejectedReportDroppedAndCounted(t *testing.T) {
	fs, srv := newFakeServer(t, 0, 0)
	fs.rejectSeq[2] = true
	reg := prometheus.NewRegistry()
	s := newTestSender(t, srv.URL, 1<<20, reg)
	for seq := uint64(1); seq <= 3; seq++ {
		if err := s.Enqueue(reporttest.Report(seq, 10*seq)); err != nil {
			t.Fatal(err)
		}
	}
	stop := runSender(t, s)
	waitApplied(t, fs, 2)
	stop()
	_, order, requests, _, _ := fs.snapshot()
	if len(order) != 2 || order[0] != 1 || order[1] != 3 {
		t.Errorf("applied %v, want [1 3]", order)
	}
	if len(requests) != 3 {
		t.Errorf("%d requests, want 3: a rejected report is not retried", len(requests))
	}
	if got := droppedBytes(t, reg, spool.ReasonRejected); got != 20 {
		t.Errorf("dropped bytes (rejected) = %v, want 20", got)
	}
}

func TestTokenFileReread(t *testing.T) {
	fs, srv := newFakeServer(t, 0, 0)
	dir := t.TempDir()
	// Like a projected volume: the token is reached through a symlink that the kubelet swaps.
	writeToken := func(name, tok string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "token.tmp")
		if err := os.Symlink(name, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(link, filepath.Join(dir, "token")); err != nil {
			t.Fatal(err)
		}
	}
	writeToken("v1", "first-token")
	s, err := New(Config{URL: srv.URL, TokenFile: filepath.Join(dir, "token"), SpoolBytes: 1 << 20, MinBackoff: time.Millisecond}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(reporttest.Report(1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeToken("v2", "second-token")
	if err := s.Enqueue(reporttest.Report(2, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, _, _, tokens, _ := fs.snapshot()
	want := []string{"Bearer first-token", "Bearer second-token"}
	if len(tokens) != 2 || tokens[0] != want[0] || tokens[1] != want[1] {
		t.Errorf("Authorization headers %q, want %q", tokens, want)
	}
}

func TestFlushCountsUndeliveredAsShutdown(t *testing.T) {
	fs, srv := newFakeServer(t, 1, http.StatusServiceUnavailable)
	reg := prometheus.NewRegistry()
	s := newTestSender(t, srv.URL, 1<<20, reg)
	for seq := uint64(1); seq <= 3; seq++ {
		if err := s.Enqueue(reporttest.Report(seq, 7)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err == nil {
		t.Fatal("Flush with the server failing returned nil")
	}
	if got := droppedBytes(t, reg, spool.ReasonShutdown); got != 21 {
		t.Errorf("dropped bytes (shutdown) = %v, want 21", got)
	}
	if s.Pending() != 0 {
		t.Errorf("%d reports pending after Flush", s.Pending())
	}
	if a, _, _, _, _ := fs.snapshot(); len(a) != 0 {
		t.Errorf("applied %v, want none", a)
	}
}

func TestBackoff(t *testing.T) {
	s := &Sender{cfg: Config{MinBackoff: time.Second, MaxBackoff: 8 * time.Second}}
	s.rng = newTestRand()
	tests := []struct {
		failures   int
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{1, 0, 500 * time.Millisecond, time.Second},
		{2, 0, time.Second, 2 * time.Second},
		{3, 0, 2 * time.Second, 4 * time.Second},
		{4, 0, 4 * time.Second, 8 * time.Second},
		{10, 0, 4 * time.Second, 8 * time.Second},
		{1, 5 * time.Second, 5 * time.Second, 5 * time.Second},
		{1, time.Hour, 8 * time.Second, 8 * time.Second},
	}
	for _, tt := range tests {
		for range 50 {
			if d := s.backoff(tt.failures, tt.retryAfter); d < tt.lo || d > tt.hi {
				t.Errorf("backoff(%d, %s) = %s, want within [%s, %s]", tt.failures, tt.retryAfter, d, tt.lo, tt.hi)
				break
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	fs, srv := newFakeServer(t, 1, http.StatusServiceUnavailable)
	fs.header = http.Header{"Retry-After": {"1"}}
	s, err := New(Config{URL: srv.URL, SpoolBytes: 1 << 20, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Second}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(reporttest.Report(1, 1)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop := runSender(t, s)
	waitApplied(t, fs, 1)
	stop()
	// A lower bound only: the sender must not retry before the server said it may.
	if el := time.Since(start); el < time.Second {
		t.Errorf("retried after %s, before the 1s Retry-After", el)
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestDirectorySpoolSurvivesRestart(t *testing.T) {
	fs, srv := newFakeServer(t, 1000, http.StatusServiceUnavailable)
	dir := t.TempDir()
	firstReg := prometheus.NewRegistry()
	first, err := New(Config{URL: srv.URL, SpoolBytes: 1 << 20, Dir: dir}, firstReg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := first.Enqueue(reporttest.Report(seq, 10*seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Flush(context.Background()); err == nil {
		t.Fatal("Flush with the server down returned nil")
	}
	if got := droppedBytes(t, firstReg, spool.ReasonShutdown); got != 0 {
		t.Errorf("dropped bytes (shutdown) = %v with a spool directory, want 0", got)
	}
	// A half-written file of a crashed process and a corrupt report are cleaned up, not sent.
	if err := os.WriteFile(filepath.Join(dir, ".00-x.report.gz.tmp"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "99999999999999999999-bad.report.gz"), []byte("not gzip"), 0o600); err != nil {
		t.Fatal(err)
	}

	fs.mu.Lock()
	fs.failures = 0
	fs.mu.Unlock()
	second, err := New(Config{URL: srv.URL, SpoolBytes: 1 << 20, Dir: dir, MinBackoff: time.Millisecond}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := second.Pending(); got != 3 {
		t.Fatalf("restarted sender has %d reports, want 3", got)
	}
	if err := second.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	applied, order, _, _, _ := fs.snapshot()
	for seq := uint64(1); seq <= 3; seq++ {
		if got := applied[reportID{"node-a", reporttest.Boot, seq}]; got != 10*seq {
			t.Errorf("report %d applied with %d bytes, want %d (original identity kept)", seq, got, 10*seq)
		}
	}
	if len(order) != 3 || order[0] != 1 || order[2] != 3 {
		t.Errorf("applied order %v, want [1 2 3]", order)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Errorf("spool directory still holds %d files after delivery", len(left))
	}
}

// TestUnauthorizedKeepsReports: a real HTTP server refuses the agent's token (401, then 403) for a
// while, as during a token or RBAC change, then accepts it. Nothing is dropped: every report is
// applied once, in order, and the refusals are counted and logged once each way, not per retry.
func TestUnauthorizedKeepsReports(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			const failures, reports = 6, 5
			fs, srv := newFakeServer(t, failures, status)
			reg := prometheus.NewPedanticRegistry()
			var logs servicetest.SyncBuffer
			s, err := New(Config{URL: srv.URL, SpoolBytes: 1 << 20, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Timeout: 10 * time.Second},
				reg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			order, requests := deliver(t, s, fs, reports, 100)
			if len(order) != reports || order[0] != 1 || order[reports-1] != reports {
				t.Errorf("applied order %v, want 1..%d", order, reports)
			}
			if got := len(requests); got != reports+failures {
				t.Errorf("%d requests, want %d (report 1 retried through every refusal)", got, reports+failures)
			}
			if got := testutil.ToFloat64(s.m.sent.WithLabelValues(resultUnauthorized)); got != failures {
				t.Errorf("reports_sent_total{result=unauthorized} = %v, want %d", got, failures)
			}
			for _, reason := range []string{spool.ReasonRejected, spool.ReasonSpoolFull, spool.ReasonShutdown} {
				if got := droppedBytes(t, reg, reason); got != 0 {
					t.Errorf("dropped bytes (%s) = %v, want 0", reason, got)
				}
			}
			if got := testutil.ToFloat64(s.m.sent.WithLabelValues(resultRejected)); got != 0 {
				t.Errorf("reports_sent_total{result=rejected} = %v, want 0", got)
			}
			out := logs.String()
			if n := strings.Count(out, "flowserver refuses the agent's token"); n != 1 {
				t.Errorf("%d lines saying the token is refused, want 1 (once per state change):\n%s", n, out)
			}
			if n := strings.Count(out, "flowserver accepts the agent's token again"); n != 1 {
				t.Errorf("%d lines saying the token is accepted again, want 1:\n%s", n, out)
			}
			if n := strings.Count(out, "will retry"); n != 0 {
				t.Errorf("%d per-retry lines for refused tokens, want 0:\n%s", n, out)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("metrics lint: %v %v", problems, err)
			}
		})
	}
}

// TestUnauthorizedBoundedBySpool: while the token is refused, the spool's byte bound still holds and
// what it drops is counted as spool_full, as for any other outage.
func TestUnauthorizedBoundedBySpool(t *testing.T) {
	fs, srv := newFakeServer(t, 1<<30, http.StatusUnauthorized)
	probe := newTestSender(t, srv.URL, 1<<20, prometheus.NewRegistry())
	if err := probe.Enqueue(reporttest.Report(1, 100)); err != nil {
		t.Fatal(err)
	}
	size := probe.SpoolBytes()
	reg := prometheus.NewRegistry()
	s := newTestSender(t, srv.URL, 3*size+size/2, reg)
	stop := runSender(t, s)
	for seq := uint64(1); seq <= 8; seq++ {
		if err := s.Enqueue(reporttest.Report(seq, 100+seq)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(s.m.sent.WithLabelValues(resultUnauthorized)) < 3 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	stop()
	// Stopped between attempts, the report in flight is back in the spool.
	if held := s.SpoolBytes(); held > 3*size+size/2 {
		t.Errorf("spool holds %d bytes, over the bound %d", held, 3*size+size/2)
	}
	if got := droppedBytes(t, reg, spool.ReasonSpoolFull); got == 0 {
		t.Error("nothing counted as spool_full, want the oldest reports beyond the bound")
	}
	if got := droppedBytes(t, reg, spool.ReasonRejected); got != 0 {
		t.Errorf("dropped bytes (rejected) = %v, want 0", got)
	}
	if a, _, _, _, _ := fs.snapshot(); len(a) != 0 {
		t.Errorf("server applied %v while refusing the token", a)
	}
}

// deliver enqueues reports 1…n (report i with unit×i bytes), runs s until the fake server has applied
// them and the sender has read every answer, and checks each was applied with its bytes. It returns
// the order the server applied them in and the requests it saw.
func deliver(t *testing.T, s *Sender, fs *fakeServer, n, unit uint64) (order []uint64, requests []reportID) {
	t.Helper()
	for seq := uint64(1); seq <= n; seq++ {
		if err := s.Enqueue(reporttest.Report(seq, unit*seq)); err != nil {
			t.Fatal(err)
		}
	}
	stop := runSender(t, s)
	waitApplied(t, fs, int(n))
	// The server applies before the sender reads its answer: wait for that too.
	waitDelivered(t, s, int(n))
	stop()
	applied, order, requests, _, bad := fs.snapshot()
	if len(bad) > 0 {
		t.Fatalf("server saw malformed requests: %v", bad)
	}
	for seq := uint64(1); seq <= n; seq++ {
		if got := applied[reportID{"node-a", reporttest.Boot, seq}]; got != unit*seq {
			t.Errorf("report %d applied with %d bytes, want %d", seq, got, unit*seq)
		}
	}
	return order, requests
}
