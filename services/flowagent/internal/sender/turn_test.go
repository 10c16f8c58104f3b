package sender

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zonetoll/zonetoll/services/flowagent/internal/reporttest"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/spool"
	"github.com/zonetoll/zonetoll/testkit/freeport"
)

// TestPost: what each answer of the server means, what it counts, and what the request carried.
func TestPost(t *testing.T) {
	tests := []struct {
		name       string
		status     int    // 0: no server listening
		retryAfter string // Retry-After header of the answer
		noToken    bool   // the token file is missing
		want       string
		wantWait   time.Duration
	}{
		{"204 delivered", http.StatusNoContent, "", false, resultDelivered, 0},
		{"200 delivered", http.StatusOK, "", false, resultDelivered, 0},
		{"400 rejected", http.StatusBadRequest, "", false, resultRejected, 0},
		{"401 kept", http.StatusUnauthorized, "", false, resultUnauthorized, 0},
		{"403 kept", http.StatusForbidden, "", false, resultUnauthorized, 0},
		{"404 rejected", http.StatusNotFound, "", false, resultRejected, 0},
		{"413 rejected", http.StatusRequestEntityTooLarge, "", false, resultRejected, 0},
		{"408 retried", http.StatusRequestTimeout, "", false, resultServerError, 0},
		{"429 with Retry-After", http.StatusTooManyRequests, "7", false, resultServerError, 7 * time.Second},
		{"503 with Retry-After", http.StatusServiceUnavailable, "2", false, resultServerError, 2 * time.Second},
		{"500 with a Retry-After that is no delay", http.StatusInternalServerError, "soon", false, resultServerError, 0},
		{"connection refused", 0, "", false, resultNetworkError, 0},
		{"token file missing", http.StatusNoContent, "", true, resultNetworkError, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu   sync.Mutex
				seen []*http.Request
			)
			addr, err := freeport.Addr() // nobody listens there: every send is refused
			if err != nil {
				t.Fatal(err)
			}
			url := "http://" + addr
			if tt.status != 0 {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					seen = append(seen, r)
					mu.Unlock()
					if tt.retryAfter != "" {
						w.Header().Set("Retry-After", tt.retryAfter)
					}
					w.WriteHeader(tt.status)
				}))
				t.Cleanup(srv.Close)
				url = srv.URL
			}
			dir := t.TempDir()
			token := filepath.Join(dir, "token")
			if !tt.noToken {
				if err := os.WriteFile(token, []byte("tok\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			reg := prometheus.NewPedanticRegistry()
			s, err := New(Config{URL: url + "/", TokenFile: token, SpoolBytes: 1 << 20, Timeout: 10 * time.Second}, reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			a := s.post(context.Background(), []byte("body"))
			if a.result != tt.want || a.retryAfter != tt.wantWait {
				t.Errorf("post = %s, Retry-After %s; want %s, %s", a.result, a.retryAfter, tt.want, tt.wantWait)
			}
			retried := tt.want == resultServerError || tt.want == resultNetworkError || tt.want == resultUnauthorized
			if (a.err != nil) != retried {
				t.Errorf("post error %v; want one only for a retried result", a.err)
			}
			for _, r := range []string{resultDelivered, resultRejected, resultUnauthorized, resultServerError, resultNetworkError} {
				want := 0.0
				if r == tt.want {
					want = 1
				}
				if got := testutil.ToFloat64(s.m.sent.WithLabelValues(r)); got != want {
					t.Errorf("reports_sent_total{result=%q} = %v, want %v", r, got, want)
				}
			}
			if got := testutil.CollectAndCount(s.m.duration); got != 1 {
				t.Errorf("%d duration series, want 1", got)
			}
			mu.Lock()
			defer mu.Unlock()
			if tt.status == 0 || tt.noToken {
				if len(seen) != 0 {
					t.Errorf("%d requests reached the server, want none", len(seen))
				}
				return
			}
			if len(seen) != 1 {
				t.Fatalf("%d requests, want 1", len(seen))
			}
			r := seen[0]
			if r.Method != http.MethodPost || r.URL.Path != Path || r.Header.Get("Content-Encoding") != "gzip" ||
				r.Header.Get("Content-Type") != "application/octet-stream" || r.Header.Get("Authorization") != "Bearer tok" {
				t.Errorf("request %s %s, headers %v: not the wire contract", r.Method, r.URL.Path, r.Header)
			}
		})
	}
}

// holdingTransport sends through a real transport but holds the first request until its context ends
// (a flowserver that hangs), and records the most requests ever in flight at once.
type holdingTransport struct {
	base     http.RoundTripper
	calls    atomic.Int32
	inFlight atomic.Int32
	most     atomic.Int32
	held     chan struct{} // closed when the first request is being held
}

func (h *holdingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for {
		m := h.most.Load()
		if n <= m || h.most.CompareAndSwap(m, n) {
			break
		}
	}
	if h.calls.Add(1) == 1 {
		close(h.held)
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return h.base.RoundTrip(r)
}

// TestRunAndFlushNeverOverlap: while Run is sending, a Flush either waits for Run to return and then
// delivers everything, or, if its context ends first, returns ErrBusy and leaves the spool alone; a
// second Run waits likewise. At no time are two POSTs in flight.
func TestRunAndFlushNeverOverlap(t *testing.T) {
	tests := []struct {
		name string
		// second runs while the first Run is holding a POST; ctx is already cancelled if cancelled.
		second    func(s *Sender, ctx context.Context) error
		cancelled bool
		wantErr   error // of second, when cancelled
		// wantPendingAfterSecond is the spool's length once a refused second caller returned (Run holds
		// report 1); -1: not checked.
		wantPendingAfterSecond int
	}{
		{
			name:                   "Flush waits for Run",
			second:                 func(s *Sender, ctx context.Context) error { return s.Flush(ctx) },
			wantPendingAfterSecond: -1,
		},
		{
			name:                   "Flush refused when its context ends first",
			second:                 func(s *Sender, ctx context.Context) error { return s.Flush(ctx) },
			cancelled:              true,
			wantErr:                ErrBusy,
			wantPendingAfterSecond: 2,
		},
		{
			name:                   "a second Run returns at once when its context ends first",
			second:                 func(s *Sender, ctx context.Context) error { s.Run(ctx); return nil },
			cancelled:              true,
			wantPendingAfterSecond: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, srv := newFakeServer(t, 0, 0)
			tr := &holdingTransport{base: http.DefaultTransport, held: make(chan struct{})}
			reg := prometheus.NewRegistry()
			s, err := New(Config{URL: srv.URL, SpoolBytes: 1 << 20, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
				Timeout: time.Minute, Client: &http.Client{Transport: tr}}, reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for seq := uint64(1); seq <= 3; seq++ {
				if err := s.Enqueue(reporttest.Report(seq, 10*seq)); err != nil {
					t.Fatal(err)
				}
			}
			runCtx, stopRun := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { s.Run(runCtx); close(ran) }()
			<-tr.held // Run holds the turn and report 1

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			secondErr := make(chan error, 1)
			go func() { secondErr <- tt.second(s, ctx) }()
			if tt.cancelled {
				// Deterministic: the turn is taken, so only the ended context can answer.
				err := <-secondErr
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("second caller returned %v, want %v", err, tt.wantErr)
				}
				if tt.wantErr != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("error %v does not say the context ended", err)
				}
			}
			if tt.wantPendingAfterSecond >= 0 {
				if got := s.Pending(); got != tt.wantPendingAfterSecond {
					t.Errorf("%d reports pending while Run holds one, want %d", got, tt.wantPendingAfterSecond)
				}
				if got := droppedBytes(t, reg, spool.ReasonShutdown); got != 0 {
					t.Errorf("dropped bytes (shutdown) = %v while Run still sends, want 0", got)
				}
			}
			stopRun()
			<-ran
			if !tt.cancelled {
				if err := <-secondErr; err != nil {
					t.Errorf("Flush after Run returned: %v", err)
				}
			} else if err := s.Flush(context.Background()); err != nil {
				t.Errorf("Flush after Run returned: %v", err)
			}
			waitApplied(t, fs, 3)
			_, order, _, _, _ := fs.snapshot()
			if len(order) != 3 || order[0] != 1 || order[1] != 2 || order[2] != 3 {
				t.Errorf("applied %v, want [1 2 3]: nothing lost, oldest first", order)
			}
			if got := tr.most.Load(); got != 1 {
				t.Errorf("%d POSTs were in flight at once, want 1", got)
			}
		})
	}
}
