package ingest

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/shared/report"
)

// TestDrainFinishesReportsInProgress: after Drain begins, a new report is refused with 503,
// Retry-After and a closed connection (reason shutting_down); a report already being read is still
// applied, and Drain returns only after it, so what is saved or scraped afterwards is final.
func TestDrainFinishesReportsInProgress(t *testing.T) {
	c := newCluster(t, 10, 3, 3, 0)
	hs := newHarness(t, c, benchLimits, time.Hour)
	body := encodeT(t, &report.Report{Node: "node-001", BootID: [16]byte{5}, Sequence: 1,
		WindowStart: time.Now().Add(-time.Second), WindowEnd: time.Now(), Flows: c.flows(10, rand.New(rand.NewPCG(5, 5)))})

	// A report in progress: half its body sent.
	pr, pw := io.Pipe()
	req := httptest.NewRequest(http.MethodPost, Path, pr)
	req.ContentLength = int64(len(body))
	req.Header.Set("Authorization", "Bearer good")
	rec := httptest.NewRecorder()
	served := make(chan struct{})
	go func() { defer close(served); hs.h.ServeHTTP(rec, req) }()
	if _, err := pw.Write(body[:len(body)/2]); err != nil { // returns once the handler reads it
		t.Fatal(err)
	}

	drained := make(chan error, 1)
	go func() { drained <- hs.h.Drain(context.Background()) }()
	// Drain has begun once new reports are refused. The probes are another agent's, so one applied
	// before the gate closed does not make the report in progress a duplicate.
	var refused *httptest.ResponseRecorder
	probes := 0
	for deadline := time.Now().Add(10 * time.Second); ; {
		probes++
		refused = hs.post(encodeT(t, &report.Report{Node: "node-002", BootID: [16]byte{6}, Sequence: uint64(probes),
			WindowStart: time.Now().Add(-time.Second), WindowEnd: time.Now(), Flows: c.flows(10, rand.New(rand.NewPCG(6, 6)))}), "")
		if refused.Code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new report during Drain: %d %s, want 503", refused.Code, refused.Body)
		}
		time.Sleep(time.Millisecond)
	}
	if refused.Header().Get("Retry-After") == "" || refused.Header().Get("Connection") != "close" || hs.rejected(t, "shutting_down") < 1 {
		t.Errorf("refusal during Drain: Retry-After %q, Connection %q, shutting_down %v; want a Retry-After, close, counted",
			refused.Header().Get("Retry-After"), refused.Header().Get("Connection"), hs.rejected(t, "shutting_down"))
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a report was still being read", err)
	default:
	}

	if _, err := pw.Write(body[len(body)/2:]); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	<-served
	if rec.Code != http.StatusOK || rec.Body.String() != "applied\n" {
		t.Errorf("the report in progress: %d %s, want applied", rec.Code, rec.Body)
	}
	if err := <-drained; err != nil {
		t.Errorf("Drain: %v", err)
	}
	if _, flows := hs.totals(t); flows != float64(10*probes) {
		t.Errorf("counted %v flows, want %d: the report in progress and the %d probes applied before Drain", flows, 10*probes, probes-1)
	}

	// A Drain that cannot finish in time says so.
	hs2 := newHarness(t, c, benchLimits, time.Hour)
	done := hs2.stuck(t, "good", int64(len(body)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := hs2.h.Drain(ctx); err == nil {
		t.Error("Drain with a report stuck and its context ended returned nil")
	}
	done()
}
