// Package sender delivers the reports of a spool to the zone's flowserver: POST /v1/reports with the
// gzip body and the service-account token, oldest first, retrying failures with exponential backoff,
// jitter and the server's Retry-After. The reports themselves, their bound and their files belong to
// package spool; this package only decides when to send, what an answer means, and when to wait.
//
// Retries never double-count: a retried report is the same bytes with the same (node, boot id,
// sequence), which the server applies once.
//
// Run and Flush never overlap: each takes the sender's single sending turn first, so one of them
// waits for the other (a Flush called while Run is still sending waits until Run returns or the Flush's
// context ends).
package sender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/services/flowagent/internal/spool"
	"github.com/zonetoll/zonetoll/shared/metricdef"
	"github.com/zonetoll/zonetoll/shared/report"
)

// Path is where the flowserver accepts reports.
const Path = "/v1/reports"

// Results of one POST.
const (
	resultDelivered    = "delivered"
	resultRejected     = "rejected"
	resultServerError  = "server_error" // 5xx, 429, 408: retried
	resultNetworkError = "network_error"
	resultUnauthorized = "unauthorized" // 401, 403: kept and retried, see attempt
)

// errUnauthorized marks a report the server refused for its token or identity: retried, logged only
// when the state changes.
var errUnauthorized = errors.New("flowserver refused the agent's token")

// ErrBusy is returned by Flush when the sending turn did not come free before its context ended: Run
// was still sending. The reports stay in the spool.
var ErrBusy = errors.New("another Run or Flush is still sending")

// Config sets up a Sender.
type Config struct {
	// URL is the flowserver's base URL (scheme, host, port); Path is appended.
	URL string
	// TokenFile holds the bearer token; it is read before every POST, so a rotated projected token is
	// picked up without a restart. Empty sends no Authorization header.
	TokenFile string
	// SpoolBytes bounds the gzip bytes of undelivered reports kept in memory (spool.Config.Bytes).
	SpoolBytes int64
	// Dir, if set, keeps a copy of every spooled report as a file (spool.Config.Dir).
	Dir string
	// MinBackoff is the first retry delay; it doubles per failure up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one POST.
	Timeout time.Duration
	// Client defaults to a client with Timeout.
	Client *http.Client
}

// Sender sends what its spool holds. Enqueue may be called from any goroutine, at any time.
type Sender struct {
	cfg    Config
	client *http.Client
	url    string
	log    *slog.Logger
	m      metrics
	spool  *spool.Spool

	// turn holds one token while Run or Flush sends: it is what makes them never overlap. The holder
	// alone uses rng and the entry it took from the spool.
	turn chan struct{}
	rng  *rand.Rand
	// unauthorized is true from a 401/403 until the next delivery, so each change is logged once. The
	// holder of the turn alone uses it.
	unauthorized bool
}

type metrics struct {
	sent     *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	var f metricdef.Set
	m := metrics{
		sent: f.CounterVec("zonetoll_flowagent_reports_sent_total",
			"POSTs of reports to the flowserver by result: delivered, rejected (4xx, dropped), unauthorized (401/403, kept and retried), server_error (5xx/429/408, retried), network_error (retried).",
			"result", resultDelivered, resultRejected, resultUnauthorized, resultServerError, resultNetworkError),
		duration: f.Histogram("zonetoll_flowagent_report_send_duration_seconds",
			"Time of one POST of a report, whatever its result.", prometheus.ExponentialBuckets(0.005, 3, 9)),
	}
	return m, f.Register(reg, "sender metrics")
}

// New returns a Sender over a new spool (which holds what an earlier process left in cfg.Dir).
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Sender, error) {
	if cfg.URL == "" {
		return nil, errors.New("creating sender: no flowserver URL")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, time.Minute)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: cfg.Timeout}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sp, err := spool.New(spool.Config{Bytes: cfg.SpoolBytes, Dir: cfg.Dir}, reg, log)
	if err != nil {
		return nil, fmt.Errorf("creating sender: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Sender{
		cfg:    cfg,
		client: client,
		url:    strings.TrimRight(cfg.URL, "/") + Path,
		log:    log.With("component", "sender"),
		m:      m,
		spool:  sp,
		turn:   make(chan struct{}, 1),
		rng:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}, nil
}

// Enqueue hands r to the spool (see spool.Spool.Add) and wakes Run.
func (s *Sender) Enqueue(r *report.Report) error { return s.spool.Add(r) }

// Pending is the number of reports in the spool.
func (s *Sender) Pending() int { return s.spool.Len() }

// SpoolBytes is the gzip bytes of the reports in the spool.
func (s *Sender) SpoolBytes() int64 { return s.spool.Bytes() }

// acquire takes the sending turn, waiting at most until ctx is done.
func (s *Sender) acquire(ctx context.Context) error {
	select {
	case s.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, context.Cause(ctx))
	}
}

func (s *Sender) release() { <-s.turn }

// Run delivers spooled reports until ctx is done, retrying failures with backoff. Reports still
// undelivered stay in the spool for Flush.
func (s *Sender) Run(ctx context.Context) {
	if s.acquire(ctx) != nil {
		return
	}
	defer s.release()
	failures := 0
	for {
		e := s.spool.Take()
		if e == nil {
			select {
			case <-ctx.Done():
				return
			case <-s.spool.Added():
				continue
			}
		}
		retryAfter, err := s.attempt(ctx, e)
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		wait := s.backoff(failures, retryAfter)
		if !errors.Is(err, errUnauthorized) { // logged once when it began, in attempt
			s.log.Warn("report not delivered; will retry", "sequence", e.Seq, "attempt", e.Attempts, "retry_in", wait, "error", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Flush tries each spooled report once, oldest first, stopping at the first failure or when ctx is
// done; without a spool directory what is left is dropped and counted with reason shutdown, with one
// it stays there for the next process. It is the last step on SIGTERM. If Run is still sending, Flush
// waits for it to return; if ctx ends first, Flush returns ErrBusy and the spool is left as it is.
func (s *Sender) Flush(ctx context.Context) error {
	if err := s.acquire(ctx); err != nil {
		return fmt.Errorf("flushing spool: %w", err)
	}
	defer s.release()
	var err error
	for {
		e := s.spool.Take()
		if e == nil {
			return nil
		}
		if _, err = s.attempt(ctx, e); err != nil {
			break
		}
	}
	n, lost, kept := s.spool.DropAll()
	if kept {
		return fmt.Errorf("flushing spool on shutdown: %d reports left in %s for the next start: %w", n, s.spool.Dir(), err)
	}
	return fmt.Errorf("flushing spool on shutdown: %d reports (%d traffic bytes) undelivered: %w", n, lost, err)
}

// attempt POSTs a taken entry once and gives it back to the spool: Done when delivered, Drop when
// rejected for good, Return (to the front) with a non-nil error when it is to be retried; retryAfter
// is then the server's Retry-After, if any. Only the holder of the turn calls it.
func (s *Sender) attempt(ctx context.Context, e *spool.Entry) (retryAfter time.Duration, err error) {
	e.Attempts++
	a := s.post(ctx, e.Body)
	switch a.result {
	case resultDelivered:
		s.spool.Done(e)
		if s.unauthorized {
			s.unauthorized = false
			s.log.Info("flowserver accepts the agent's token again; delivering the spooled reports", "sequence", e.Seq, "pending", s.spool.Len())
		}
		return 0, nil
	case resultUnauthorized:
		// Not this report's fault: a token the server does not (yet) accept — rotated, not yet valid
		// after a clock step, a TokenReview outage answered as 401 by a proxy, RBAC or an allowed account
		// changed during a rollout. Every later report would get the same answer, so dropping would
		// lose them all. Keep it, back off as for a server error; the spool's bound still applies.
		s.spool.Return(e)
		if !s.unauthorized {
			s.unauthorized = true
			s.log.Error("flowserver refuses the agent's token; keeping reports spooled and retrying", "status", a.status, "body", a.msg,
				"sequence", e.Seq, "pending", s.spool.Len(), "spool_bytes", s.spool.Bytes())
		}
		return a.retryAfter, fmt.Errorf("%w: %d %s", errUnauthorized, a.status, a.msg)
	case resultRejected:
		// The server will refuse this exact report every time: keeping it would block the spool.
		s.spool.Drop(e, spool.ReasonRejected)
		s.log.Error("flowserver rejected a report; dropped", "sequence", e.Seq, "status", a.status, "body", a.msg, "traffic_bytes", e.Traffic)
		return 0, nil
	default:
		s.spool.Return(e)
		return a.retryAfter, a.err
	}
}

// answer is what one POST came to.
type answer struct {
	result     string // one of the result* labels
	status     int    // HTTP status, 0 if none
	msg        string // start of the response body
	retryAfter time.Duration
	err        error // non-nil for server_error and network_error
}

// post sends one body and classifies the answer. It changes nothing but its metrics.
func (s *Sender) post(ctx context.Context, body []byte) (a answer) {
	start := time.Now()
	defer func() {
		s.m.duration.Observe(time.Since(start).Seconds())
		s.m.sent.WithLabelValues(a.result).Inc()
	}()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return answer{result: resultNetworkError, err: fmt.Errorf("building request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Encoding", "gzip")
	if s.cfg.TokenFile != "" {
		tok, err := readToken(s.cfg.TokenFile)
		if err != nil {
			return answer{result: resultNetworkError, err: err}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{result: resultNetworkError, err: fmt.Errorf("posting report: %w", err)}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	a = answer{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		a.result = resultDelivered
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		a.result = resultServerError
		a.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		a.err = fmt.Errorf("flowserver answered %d: %s", code, a.msg)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		a.result = resultUnauthorized
		a.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		a.err = fmt.Errorf("flowserver answered %d: %s", code, a.msg)
	default:
		a.result = resultRejected
	}
	return a
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("reading token file %s: empty", path)
	}
	return tok, nil
}

// backoff is the delay before the next attempt after failures consecutive failures: MinBackoff
// doubled per failure up to MaxBackoff, then "equal jitter" (half fixed, half random) so that the
// agents of a zone do not retry in step after a flowserver restart. A longer Retry-After wins.
func (s *Sender) backoff(failures int, retryAfter time.Duration) time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < failures && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	d = d/2 + time.Duration(s.rng.Int64N(int64(d/2)+1))
	// Retry-After is honoured up to MaxBackoff, so a wrong header cannot park the agent for hours.
	return max(d, min(retryAfter, s.cfg.MaxBackoff))
}

// parseRetryAfter reads delay-seconds or an HTTP date; anything else is no hint.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
