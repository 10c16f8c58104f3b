package ingest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// gate lets reports in until Drain closes it, and knows when the last one admitted is done.
type gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// enter admits one report, false once the gate is closed; each true is followed by leave.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *gate) leave() { g.wg.Done() }

// Drain stops taking reports (every later POST is answered 503 with Retry-After, reason
// shutting_down, so the agent keeps it spooled for the next server) and waits until the reports
// already being processed are applied or refused, or ctx ends. After it returns nil, the counters
// and the dedupe marks change no more: what is persisted or scraped then is final.
func (h *Handler) Drain(ctx context.Context) error {
	h.gate.mu.Lock()
	h.gate.closed = true
	h.gate.mu.Unlock()
	done := make(chan struct{})
	go func() { h.gate.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("draining reports in progress: %w", context.Cause(ctx))
	}
}

func shuttingDown() *rejection {
	rej := reject(http.StatusServiceUnavailable, "shutting_down", "this flowserver is shutting down; retry (another takes over)")
	rej.retryAfter = 5 * time.Second
	return rej
}
