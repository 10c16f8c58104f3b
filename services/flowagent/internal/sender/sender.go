// Package sender delivers reports to the zone's flowserver: POST /v1/reports with a gzip body and the
// service-account token, keeping undelivered reports in a bounded in-memory spool and retrying them,
// oldest first, with exponential backoff and jitter.
//
// Retries never double-count: a retried report is the same bytes with the same (node, boot id,
// sequence), which the server applies once.
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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/zonetoll/zonetoll/shared/report"
)

// Path is where the flowserver accepts reports.
const Path = "/v1/reports"

// Reasons for dropped bytes.
const (
	ReasonSpoolFull = "spool_full" // the spool bound was reached; the oldest report went
	ReasonRejected  = "rejected"   // the server refused the report for good (4xx)
	ReasonShutdown  = "shutdown"   // still undelivered when the process stopped
)

// Results of one POST.
const (
	resultDelivered    = "delivered"
	resultRejected     = "rejected"
	resultServerError  = "server_error" // 5xx, 429, 408: retried
	resultNetworkError = "network_error"
)

// Config sets up a Sender.
type Config struct {
	// URL is the flowserver's base URL (scheme, host, port); Path is appended.
	URL string
	// TokenFile holds the bearer token; it is read before every POST, so a rotated projected token is
	// picked up without a restart. Empty sends no Authorization header.
	TokenFile string
	// SpoolBytes bounds the gzip bytes of undelivered reports kept in memory.
	SpoolBytes int64
	// MinBackoff is the first retry delay; it doubles per failure up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one POST.
	Timeout time.Duration
	// Client defaults to a client with Timeout.
	Client *http.Client
	// Dir, if set, keeps a copy of every spooled report as a file, so reports survive a restart of
	// the process (a hostPath directory in a DaemonSet). Empty keeps the spool in memory only.
	Dir string
}

// item is one encoded report waiting for delivery.
type item struct {
	node     string
	boot     [16]byte
	seq      uint64
	body     []byte // gzip
	traffic  uint64 // sum of the flows' bytes: what is lost if the item is dropped
	attempts int
	file     string // copy in Config.Dir, "" if none
}

// Sender owns the spool. Enqueue may be called from any goroutine; Run and Flush must not overlap.
type Sender struct {
	cfg    Config
	client *http.Client
	url    string
	log    *slog.Logger
	m      metrics
	rng    *rand.Rand

	mu         sync.Mutex
	queue      []*item // oldest first
	queueBytes int64
	kick       chan struct{}
}

type metrics struct {
	sent         *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	spoolBytes   prometheus.Gauge
	spoolReports prometheus.Gauge
	duration     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) metrics {
	f := promauto.With(reg)
	m := metrics{
		sent: f.NewCounterVec(prometheus.CounterOpts{
			Name: "zonetoll_flowagent_reports_sent_total",
			Help: "POSTs of reports to the flowserver by result: delivered, rejected (4xx, dropped), server_error (5xx/429/408, retried), network_error (retried).",
		}, []string{"result"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "zonetoll_flowagent_dropped_bytes_total",
			Help: "Traffic bytes counted by the kernel but never delivered, by reason: spool_full, rejected, shutdown.",
		}, []string{"reason"}),
		spoolBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "zonetoll_flowagent_spool_bytes",
			Help: "Gzip bytes of reports waiting for delivery.",
		}),
		spoolReports: f.NewGauge(prometheus.GaugeOpts{
			Name: "zonetoll_flowagent_spool_reports",
			Help: "Reports waiting for delivery.",
		}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "zonetoll_flowagent_report_send_duration_seconds",
			Help:    "Time of one POST of a report, whatever its result.",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 9),
		}),
	}
	for _, r := range []string{resultDelivered, resultRejected, resultServerError, resultNetworkError} {
		m.sent.WithLabelValues(r)
	}
	for _, r := range []string{ReasonSpoolFull, ReasonRejected, ReasonShutdown} {
		m.dropped.WithLabelValues(r)
	}
	return m
}

// New returns a Sender with an empty spool.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Sender, error) {
	if cfg.URL == "" {
		return nil, errors.New("creating sender: no flowserver URL")
	}
	if cfg.SpoolBytes <= 0 {
		return nil, fmt.Errorf("creating sender: spool bound %d: must be positive", cfg.SpoolBytes)
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
	s := &Sender{
		cfg:    cfg,
		client: client,
		url:    strings.TrimRight(cfg.URL, "/") + Path,
		log:    log.With("component", "sender"),
		m:      newMetrics(reg),
		rng:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		kick:   make(chan struct{}, 1),
	}
	if cfg.Dir != "" {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Enqueue encodes r and appends it to the spool; if the spool then exceeds its bound, the oldest
// reports are dropped and their traffic bytes counted. It returns an error only for a report that
// cannot be encoded (a bug or an invalid node name), whose bytes are counted as rejected.
func (s *Sender) Enqueue(r *report.Report) error {
	var traffic uint64
	for _, f := range r.Flows {
		traffic += f.Bytes
	}
	var buf bytes.Buffer
	if err := report.WriteGzip(&buf, r); err != nil {
		s.m.dropped.WithLabelValues(ReasonRejected).Add(float64(traffic))
		return fmt.Errorf("encoding report %d: %w", r.Sequence, err)
	}
	it := &item{node: r.Node, boot: r.BootID, seq: r.Sequence, body: buf.Bytes(), traffic: traffic}
	if s.cfg.Dir != "" {
		if err := s.store(it); err != nil {
			// The report is still delivered from memory; only a restart would lose it.
			s.log.Error("writing report to the spool directory; keeping it in memory only", "sequence", it.seq, "error", err)
		}
	}
	s.mu.Lock()
	s.queue = append(s.queue, it)
	s.queueBytes += int64(len(it.body))
	s.enforceBoundLocked()
	s.updateGaugesLocked()
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// enforceBoundLocked drops the oldest reports until the spool fits its bound.
func (s *Sender) enforceBoundLocked() {
	for s.queueBytes > s.cfg.SpoolBytes && len(s.queue) > 0 {
		old := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.queueBytes -= int64(len(old.body))
		s.remove(old)
		s.m.dropped.WithLabelValues(ReasonSpoolFull).Add(float64(old.traffic))
		s.log.Warn("spool full: dropped the oldest report", "sequence", old.seq, "traffic_bytes", old.traffic, "spool_limit_bytes", s.cfg.SpoolBytes)
	}
}

func (s *Sender) updateGaugesLocked() {
	s.m.spoolBytes.Set(float64(s.queueBytes))
	s.m.spoolReports.Set(float64(len(s.queue)))
}

// take removes the oldest report from the spool. While it is out, it cannot be dropped by the bound;
// putBack returns it to the front if delivery failed.
func (s *Sender) take() *item {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil
	}
	it := s.queue[0]
	s.queue[0] = nil
	s.queue = s.queue[1:]
	s.queueBytes -= int64(len(it.body))
	s.updateGaugesLocked()
	return it
}

func (s *Sender) putBack(it *item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append([]*item{it}, s.queue...)
	s.queueBytes += int64(len(it.body))
	// Reports enqueued during the attempt may have filled the spool: the oldest, this one, goes first.
	s.enforceBoundLocked()
	s.updateGaugesLocked()
}

// Pending is the number of reports in the spool.
func (s *Sender) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Run delivers spooled reports until ctx is done, retrying failures with backoff. Reports still
// undelivered stay in the spool for Flush.
func (s *Sender) Run(ctx context.Context) {
	failures := 0
	for {
		it := s.take()
		if it == nil {
			select {
			case <-ctx.Done():
				return
			case <-s.kick:
				continue
			}
		}
		retryAfter, err := s.send(ctx, it)
		if err == nil {
			s.remove(it)
			failures = 0
			continue
		}
		s.putBack(it)
		if ctx.Err() != nil {
			return
		}
		failures++
		wait := s.backoff(failures, retryAfter)
		s.log.Warn("report not delivered; will retry", "sequence", it.seq, "attempt", it.attempts, "retry_in", wait, "error", err)
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
// it stays there for the next process. It is the last step on SIGTERM.
func (s *Sender) Flush(ctx context.Context) error {
	var err error
	for {
		it := s.take()
		if it == nil {
			return err
		}
		if _, err = s.send(ctx, it); err != nil {
			s.putBack(it)
			break
		}
		s.remove(it)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Dir != "" {
		// The files stay for the next process, which sends them with their original identity.
		return fmt.Errorf("flushing spool on shutdown: %d reports left in %s for the next start: %w", len(s.queue), s.cfg.Dir, err)
	}
	var lost uint64
	for _, it := range s.queue {
		lost += it.traffic
	}
	n := len(s.queue)
	s.m.dropped.WithLabelValues(ReasonShutdown).Add(float64(lost))
	s.queue, s.queueBytes = nil, 0
	s.updateGaugesLocked()
	return fmt.Errorf("flushing spool on shutdown: %d reports (%d traffic bytes) undelivered: %w", n, lost, err)
}

// errRetry marks a failure worth retrying.
var errRetry = errors.New("retryable")

// send POSTs one report. A nil error means the report is done with: delivered, or rejected for good
// (dropped and counted). A non-nil error means retry; retryAfter is the server's Retry-After, if any.
func (s *Sender) send(ctx context.Context, it *item) (retryAfter time.Duration, err error) {
	it.attempts++
	start := time.Now()
	defer func() { s.m.duration.Observe(time.Since(start).Seconds()) }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(it.body))
	if err != nil {
		return 0, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Encoding", "gzip")
	if s.cfg.TokenFile != "" {
		tok, err := readToken(s.cfg.TokenFile)
		if err != nil {
			s.m.sent.WithLabelValues(resultNetworkError).Inc()
			return 0, fmt.Errorf("%w: %w", errRetry, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.m.sent.WithLabelValues(resultNetworkError).Inc()
		return 0, fmt.Errorf("%w: posting report: %w", errRetry, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		s.m.sent.WithLabelValues(resultDelivered).Inc()
		return 0, nil
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		s.m.sent.WithLabelValues(resultServerError).Inc()
		return parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
			fmt.Errorf("%w: flowserver answered %d: %s", errRetry, code, strings.TrimSpace(string(msg)))
	default:
		// The server will refuse this exact report every time: keeping it would block the spool.
		s.m.sent.WithLabelValues(resultRejected).Inc()
		s.m.dropped.WithLabelValues(ReasonRejected).Add(float64(it.traffic))
		s.log.Error("flowserver rejected a report; dropped", "sequence", it.seq, "status", code, "body", strings.TrimSpace(string(msg)), "traffic_bytes", it.traffic)
		return 0, nil
	}
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

// SpoolBytes is the gzip bytes of the reports in the spool.
func (s *Sender) SpoolBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queueBytes
}

// fileSuffix ends the name of every spool file.
const fileSuffix = ".report.gz"

// store writes it to the spool directory: to a temporary name first, so that a crash never leaves a
// half-written file under a name load would read. The name begins with the time, so names sort in
// enqueue order across processes.
func (s *Sender) store(it *item) error {
	name := fmt.Sprintf("%020d-%x-%020d%s", time.Now().UnixNano(), it.boot, it.seq, fileSuffix)
	path := filepath.Join(s.cfg.Dir, name)
	tmp := filepath.Join(s.cfg.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, it.body, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	it.file = path
	return nil
}

// remove deletes it's spool file once it is delivered or dropped.
func (s *Sender) remove(it *item) {
	if it.file == "" {
		return
	}
	if err := os.Remove(it.file); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("removing a delivered report from the spool directory; it may be sent again after a restart (the server applies it once)", "file", it.file, "error", err)
	}
	it.file = ""
}

// load reads the reports an earlier process left in the spool directory, oldest first, and queues
// them before anything new; the bound applies to them too. Unreadable files are removed and counted.
func (s *Sender) load() error {
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("creating spool directory: %w", err)
	}
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("reading spool directory: %w", err)
	}
	for _, e := range ents { // ReadDir sorts by name: enqueue order
		path := filepath.Join(s.cfg.Dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".tmp") {
			_ = os.Remove(path) // a write cut short by a crash
			continue
		}
		if !strings.HasSuffix(e.Name(), fileSuffix) {
			continue
		}
		body, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading spooled report: %w", err)
		}
		r, err := report.ReadGzip(bytes.NewReader(body), 0, report.Limits{})
		if err != nil {
			s.log.Error("removing an unreadable spooled report", "file", path, "error", err)
			_ = os.Remove(path)
			continue
		}
		it := &item{node: r.Node, boot: r.BootID, seq: r.Sequence, body: body, file: path}
		for _, f := range r.Flows {
			it.traffic += f.Bytes
		}
		s.queue = append(s.queue, it)
		s.queueBytes += int64(len(body))
	}
	if len(s.queue) > 0 {
		s.log.Info("resuming reports spooled by an earlier process", "reports", len(s.queue), "bytes", s.queueBytes, "dir", s.cfg.Dir)
	}
	s.enforceBoundLocked()
	s.updateGaugesLocked()
	return nil
}
