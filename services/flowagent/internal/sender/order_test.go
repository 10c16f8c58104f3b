package sender

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/services/flowagent/internal/reporttest"
	"github.com/zonetoll/zonetoll/shared/report"
)

// markServer deduplicates as the flowserver does: one high-water mark per (node, boot), every
// sequence at or below it a duplicate. Its answers vary by attempt: 503, a dropped connection, a 413
// for one report, and 200.
type markServer struct {
	mu       sync.Mutex
	marks    map[[16]byte]uint64
	applied  []uint64 // sequences applied, in order
	requests []uint64 // every request's sequence, in order
	n        int
}

func (m *markServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep, err := report.ReadGzip(r.Body, 0, report.Limits{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, rep.Sequence)
	m.n++
	switch {
	case rep.Sequence == 5:
		http.Error(w, "too many flows", http.StatusRequestEntityTooLarge)
		return
	case m.n%3 == 0:
		w.Header().Set("Retry-After", "0")
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	case m.n%7 == 0:
		// The connection drops after the report was applied: the agent sees a network error and
		// retries a report the server already counted.
		m.apply(rep)
		panic(http.ErrAbortHandler)
	}
	m.apply(rep)
	w.WriteHeader(http.StatusOK)
}

func (m *markServer) apply(rep *report.Report) {
	if rep.Sequence > m.marks[rep.BootID] {
		m.marks[rep.BootID] = rep.Sequence
		m.applied = append(m.applied, rep.Sequence)
	}
}

// TestDeliversEachBootInSequenceOrder: the server's high-water mark is only right if an agent never
// sends a sequence below one it sent before while the lower one could still be counted. Through 503s,
// dropped connections (a report counted, its answer lost), a report refused for good, and reports
// enqueued while others are retried, the sender's requests never go back in sequence, and every
// report but the refused one is counted exactly once.
func TestDeliversEachBootInSequenceOrder(t *testing.T) {
	ms := &markServer{marks: map[[16]byte]uint64{}}
	srv := httptest.NewServer(ms)
	t.Cleanup(srv.Close)
	s, err := New(Config{URL: srv.URL, SpoolBytes: 1 << 20, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Timeout: 10 * time.Second}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	const reports = 40
	for seq := uint64(1); seq <= reports; seq++ {
		if err := s.Enqueue(reporttest.Report(seq, 100)); err != nil {
			t.Fatal(err)
		}
		if seq%4 == 0 {
			time.Sleep(time.Millisecond) // let the sender catch up sometimes, so adds meet retries
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms.mu.Lock()
		last := ms.marks[reporttest.Boot]
		ms.mu.Unlock()
		if last == reports && s.Pending() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server's mark is %d after 30 s, want %d", last, reports)
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	<-done
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for i := 1; i < len(ms.requests); i++ {
		if ms.requests[i] < ms.requests[i-1] {
			t.Fatalf("request %d sent sequence %d after %d: out of order (requests %v)", i, ms.requests[i], ms.requests[i-1], ms.requests)
		}
	}
	if len(ms.applied) != reports-1 {
		t.Errorf("applied %d reports (%v), want %d: all but the refused 5", len(ms.applied), ms.applied, reports-1)
	}
	for _, seq := range ms.applied {
		if seq == 5 {
			t.Error("the refused report 5 was applied")
		}
	}
}
