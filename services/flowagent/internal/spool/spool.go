// Package spool keeps the agent's undelivered reports: encoded (gzip wire format), oldest first,
// bounded in bytes, in memory and, if a directory is set, as one file per report so that they survive a
// restart of the process. One lock guards the queue, its byte count and its files; the spool never
// sends anything (package sender does).
//
// Every report leaves the spool in one of two ways: its holder says it is Done (delivered), or it is
// dropped and its traffic bytes are counted by reason (spool_full, rejected, shutdown), so that
// nothing the kernel counted disappears without a metric.
package spool

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/shared/metricdef"
	"github.com/zonetoll/zonetoll/shared/report"
)

// Reasons for dropped bytes.
const (
	ReasonSpoolFull = "spool_full" // the spool bound was reached; the oldest report went
	ReasonRejected  = "rejected"   // the server refused the report for good (4xx), or it could not be encoded
	ReasonShutdown  = "shutdown"   // still undelivered when the process stopped
)

// Config sets up a Spool.
type Config struct {
	// Bytes bounds the gzip bytes of the reports kept.
	Bytes int64
	// Dir, if set, keeps a copy of every report as a file, so reports survive a restart of the process
	// (a hostPath directory in a DaemonSet). Empty keeps the spool in memory only.
	Dir string
}

// Entry is one encoded report waiting for delivery. Between Take and Done, Drop or Return it belongs to
// the caller of Take alone.
type Entry struct {
	Node    string
	BootID  [16]byte
	Seq     uint64
	Body    []byte // gzip wire format, the exact bytes of every attempt
	Traffic uint64 // sum of the flows' bytes: what is lost if the entry is dropped
	// Attempts counts delivery attempts; the holder increments it.
	Attempts int
	file     string // copy in Config.Dir, "" if none
}

// Spool is safe for use from any goroutine.
type Spool struct {
	cfg   Config
	log   *slog.Logger
	m     metrics
	added chan struct{}

	mu    sync.Mutex
	queue []*Entry // oldest first
	bytes int64
}

type metrics struct {
	dropped      *prometheus.CounterVec
	spoolBytes   prometheus.Gauge
	spoolReports prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	var f metricdef.Set
	m := metrics{
		dropped: f.CounterVec("zonetoll_flowagent_dropped_bytes_total",
			"Traffic bytes counted by the kernel but never delivered, by reason: spool_full, rejected, shutdown.",
			"reason", ReasonSpoolFull, ReasonRejected, ReasonShutdown),
		spoolBytes:   f.Gauge("zonetoll_flowagent_spool_bytes", "Gzip bytes of reports waiting for delivery."),
		spoolReports: f.Gauge("zonetoll_flowagent_spool_reports", "Reports waiting for delivery."),
	}
	return m, f.Register(reg, "spool metrics")
}

// New returns a spool holding what an earlier process left in cfg.Dir, if any.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Spool, error) {
	if cfg.Bytes <= 0 {
		return nil, fmt.Errorf("creating spool: bound %d bytes: must be positive", cfg.Bytes)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Spool{
		cfg:   cfg,
		log:   log.With("component", "spool"),
		m:     m,
		added: make(chan struct{}, 1),
	}
	if cfg.Dir != "" {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Add encodes r and appends it; if the spool then exceeds its bound, the oldest reports are dropped
// and their traffic bytes counted. It returns an error only for a report that cannot be encoded (a bug
// or an invalid node name), whose bytes are counted as rejected.
func (s *Spool) Add(r *report.Report) error {
	var traffic uint64
	for _, f := range r.Flows {
		traffic += f.Bytes
	}
	var buf bytes.Buffer
	if err := report.WriteGzip(&buf, r); err != nil {
		s.m.dropped.WithLabelValues(ReasonRejected).Add(float64(traffic))
		return fmt.Errorf("encoding report %d: %w", r.Sequence, err)
	}
	e := &Entry{Node: r.Node, BootID: r.BootID, Seq: r.Sequence, Body: buf.Bytes(), Traffic: traffic}
	if s.cfg.Dir != "" {
		// Written outside the lock: the file is the entry's alone until it is queued.
		if err := s.store(e); err != nil {
			// The report is still delivered from memory; only a restart would lose it.
			s.log.Error("writing report to the spool directory; keeping it in memory only", "sequence", e.Seq, "error", err)
		}
	}
	s.mu.Lock()
	s.queue = append(s.queue, e)
	s.bytes += int64(len(e.Body))
	s.enforceBoundLocked()
	s.updateGaugesLocked()
	s.mu.Unlock()
	select {
	case s.added <- struct{}{}:
	default:
	}
	return nil
}

// Added receives a value after an Add (several Adds may make one value): a sender waiting for work
// selects on it.
func (s *Spool) Added() <-chan struct{} { return s.added }

// Take removes the oldest report and hands it to the caller, nil if the spool is empty. While it is
// out, the bound cannot drop it; the caller ends with Done, Drop or Return.
func (s *Spool) Take() *Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil
	}
	e := s.queue[0]
	s.queue[0] = nil
	s.queue = s.queue[1:]
	s.bytes -= int64(len(e.Body))
	s.updateGaugesLocked()
	return e
}

// Return puts a taken report back in front, as the oldest, after a failed attempt. Reports added
// meanwhile may have filled the spool: then it, the oldest, is the first to be dropped.
func (s *Spool) Return(e *Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append([]*Entry{e}, s.queue...)
	s.bytes += int64(len(e.Body))
	s.enforceBoundLocked()
	s.updateGaugesLocked()
}

// Done ends a taken report that was delivered: its file goes.
func (s *Spool) Done(e *Entry) { s.remove(e) }

// Drop ends a taken report that will never be delivered: its file goes and its traffic bytes are
// counted under reason.
func (s *Spool) Drop(e *Entry, reason string) {
	s.m.dropped.WithLabelValues(reason).Add(float64(e.Traffic))
	s.remove(e)
}

// DropAll empties the spool after a failed final flush, counting the traffic under reason shutdown,
// and returns what went. With a directory nothing is dropped: the files stay for the next process,
// which sends them with their original identity, and kept is true.
func (s *Spool) DropAll() (reports int, traffic uint64, kept bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Dir != "" {
		return len(s.queue), 0, true
	}
	for _, e := range s.queue {
		traffic += e.Traffic
	}
	reports = len(s.queue)
	s.m.dropped.WithLabelValues(ReasonShutdown).Add(float64(traffic))
	s.queue, s.bytes = nil, 0
	s.updateGaugesLocked()
	return reports, traffic, false
}

// Len is the number of reports in the spool (not counting one taken out).
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Bytes is the gzip bytes of the reports in the spool (not counting one taken out).
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Dir is the spool directory, "" if none.
func (s *Spool) Dir() string { return s.cfg.Dir }

// enforceBoundLocked drops the oldest reports until the spool fits its bound.
func (s *Spool) enforceBoundLocked() {
	for s.bytes > s.cfg.Bytes && len(s.queue) > 0 {
		old := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.bytes -= int64(len(old.Body))
		s.remove(old)
		s.m.dropped.WithLabelValues(ReasonSpoolFull).Add(float64(old.Traffic))
		s.log.Warn("spool full: dropped the oldest report", "sequence", old.Seq, "traffic_bytes", old.Traffic, "spool_limit_bytes", s.cfg.Bytes)
	}
}

func (s *Spool) updateGaugesLocked() {
	s.m.spoolBytes.Set(float64(s.bytes))
	s.m.spoolReports.Set(float64(len(s.queue)))
}

// fileSuffix ends the name of every spool file.
const fileSuffix = ".report.gz"

// store writes e to the spool directory: to a temporary name first, so that a crash never leaves a
// half-written file under a name load would read. The name begins with the time, so names sort in
// enqueue order across processes.
func (s *Spool) store(e *Entry) error {
	name := fmt.Sprintf("%020d-%x-%020d%s", time.Now().UnixNano(), e.BootID, e.Seq, fileSuffix)
	path := filepath.Join(s.cfg.Dir, name)
	tmp := filepath.Join(s.cfg.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, e.Body, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	e.file = path
	return nil
}

// remove deletes e's spool file once it is delivered or dropped.
func (s *Spool) remove(e *Entry) {
	if e.file == "" {
		return
	}
	if err := os.Remove(e.file); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("removing a delivered report from the spool directory; it may be sent again after a restart (the server applies it once)", "file", e.file, "error", err)
	}
	e.file = ""
}

// inBootOrder puts the reports of each boot in sequence order, keeping the places the boot's reports
// had among the others. File names begin with the wall-clock time of the enqueue, which can step back
// (NTP, a VM resumed): sorted by name alone, a later sequence could go first, and the server, which
// keeps the highest sequence applied per (node, boot) and answers every lower one as a duplicate,
// would never count the earlier one. Different boots are different keys on the server, so their order
// among each other does not matter; the names' order is kept for them.
func inBootOrder(q []*Entry) {
	type bootKey struct {
		node string
		id   [16]byte
	}
	places := map[bootKey][]int{}
	for i, e := range q {
		b := bootKey{e.Node, e.BootID}
		places[b] = append(places[b], i)
	}
	for _, idx := range places {
		es := make([]*Entry, len(idx))
		for j, i := range idx {
			es[j] = q[i]
		}
		slices.SortStableFunc(es, func(a, b *Entry) int { return cmp.Compare(a.Seq, b.Seq) })
		for j, i := range idx {
			q[i] = es[j]
		}
	}
}

// load reads the reports an earlier process left in the spool directory, oldest first (and each
// boot's in sequence order), and queues them before anything new; the bound applies to them too. Unreadable files are removed.
func (s *Spool) load() error {
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("creating spool directory: %w", err)
	}
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("reading spool directory: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ents { // ReadDir sorts by name: enqueue order
		path := filepath.Join(s.cfg.Dir, d.Name())
		if strings.HasPrefix(d.Name(), ".") && strings.HasSuffix(d.Name(), ".tmp") {
			_ = os.Remove(path) // a write cut short by a crash
			continue
		}
		if !strings.HasSuffix(d.Name(), fileSuffix) {
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
		e := &Entry{Node: r.Node, BootID: r.BootID, Seq: r.Sequence, Body: body, file: path}
		for _, f := range r.Flows {
			e.Traffic += f.Bytes
		}
		s.queue = append(s.queue, e)
		s.bytes += int64(len(body))
	}
	inBootOrder(s.queue)
	if len(s.queue) > 0 {
		s.log.Info("resuming reports spooled by an earlier process", "reports", len(s.queue), "bytes", s.bytes, "dir", s.cfg.Dir)
	}
	s.enforceBoundLocked()
	s.updateGaugesLocked()
	return nil
}
