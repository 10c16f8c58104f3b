// Package ingest is POST /v1/reports: it authenticates an agent's report, enforces the limits,
// decodes it, resolves every flow's addresses for the report's window, and applies it exactly once
// per (node, boot id, sequence) before answering 2xx.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/auth"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/dedupe"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/flowlog"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/traffic"
	"github.com/zonetoll/zonetoll/shared/report"
)

// Path is where agents post reports.
const Path = "/v1/reports"

// Limits bound what one request may cost.
type Limits struct {
	// MaxBodyBytes bounds the request body as sent (compressed or not).
	MaxBodyBytes int64
	// MaxFlows bounds the flows of one report.
	MaxFlows int
	// NodeRate and NodeBurst bound reports per node per second.
	NodeRate  float64
	NodeBurst int
	// MaxInFlight bounds reports being processed at once (each may hold a decoded report in memory).
	MaxInFlight int
	// MaxClockSkew is how far a report's window may end after this server's clock (agents' clocks
	// differ a little).
	MaxClockSkew time.Duration
	// MaxWindowAge refuses a report whose window started longer ago than this; set it to the dedupe
	// retention minus MaxClockSkew, so a report is only applied while a copy applied before is still
	// remembered. 0 turns the check off.
	MaxWindowAge time.Duration
	// MaxBytesPerSecond bounds the bytes one report may claim per second of its window (a node's
	// line rate); 0 turns the check off.
	MaxBytesPerSecond uint64
}

// minPlausibleWindow is the shortest window the byte check assumes: a shorter one (down to the
// empty window the wire format allows) still holds what was counted while the agent drained.
const minPlausibleWindow = time.Second

// Authenticator checks bearer tokens; *auth.Authenticator is one.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Identity, error)
}

// Handler serves POST /v1/reports.
type Handler struct {
	lim      Limits
	zone     string // this server's zone in per-zone mode, else ""
	auth     Authenticator
	resolver *resolve.Resolver
	store    *traffic.Store
	seen     *dedupe.Window
	flowLog  *flowlog.Logger // nil: no flow log
	log      *slog.Logger
	now      func() time.Time
	synced   func() bool

	inFlight chan struct{}
	limMu    sync.Mutex
	limiters map[string]*nodeLimiter
	pool     sync.Pool // *work

	m metrics
}

type nodeLimiter struct {
	l    *rate.Limiter
	used time.Time
}

// work is one request's reusable buffers.
type work struct {
	plain   []byte
	report  report.Report
	batch   *traffic.Batch
	srcEPs  []*resolve.Endpoint
	dstEPs  []*resolve.Endpoint
	readBuf bytes.Buffer
	tally   tally
}

// tally is what one report adds to the resolution metrics, summed outside any lock.
type tally struct {
	bySource   [resolve.NumSources]uint64 // addresses resolved, by how
	noZone     map[string]uint64          // bytes at an address of a pod or node without a zone, by why
	external   uint64                     // bytes at an external address
	flows      uint64
	bytes      uint64
	crossBytes uint64
}

func (t *tally) reset() {
	noZone := t.noZone
	if noZone == nil {
		noZone = map[string]uint64{}
	}
	clear(noZone)
	*t = tally{noZone: noZone}
}

func (t *tally) add(ep *resolve.Endpoint, bytes uint64) {
	t.bySource[ep.Source]++
	switch {
	case ep.Source == resolve.SourceExternal:
		t.external = traffic.SatAdd(t.external, bytes)
	case ep.NoZone != "":
		t.noZone[ep.NoZone] = traffic.SatAdd(t.noZone[ep.NoZone], bytes)
	}
}

// Options are the parts a Handler is made of.
type Options struct {
	Limits   Limits
	Zone     string
	Auth     Authenticator
	Resolver *resolve.Resolver
	Store    *traffic.Store
	Seen     *dedupe.Window
	FlowLog  *flowlog.Logger
	Logger   *slog.Logger
	Now      func() time.Time
	// Synced reports whether the resolver's caches have synced; until then reports are refused with
	// 503, since they would be resolved against a partial view (pods counted as external). Nil means
	// always synced.
	Synced func() bool
}

// New returns a Handler whose metrics are registered on reg.
func New(o Options, reg prometheus.Registerer) (*Handler, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{
		lim: o.Limits, zone: o.Zone, auth: o.Auth, resolver: o.Resolver, store: o.Store, seen: o.Seen,
		flowLog: o.FlowLog, log: o.Logger, now: o.Now, synced: o.Synced,
		inFlight: make(chan struct{}, max(1, o.Limits.MaxInFlight)),
		limiters: map[string]*nodeLimiter{},
	}
	h.pool.New = func() any { return &work{batch: traffic.NewBatch()} }
	if err := h.m.register(reg); err != nil {
		return nil, err
	}
	return h, nil
}

// rejection is a refused request: its status, reason label and message.
type rejection struct {
	status     int
	reason     string
	msg        string
	retryAfter time.Duration
}

func (r *rejection) Error() string { return r.msg }

func reject(status int, reason, format string, args ...any) *rejection {
	return &rejection{status: status, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	res, rej := h.serve(r)
	if rej != nil {
		h.m.reports.WithLabelValues("rejected", rej.reason).Inc()
		if rej.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(rej.retryAfter.Seconds()))))
		}
		if rej.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="zonetoll-flowserver"`)
		}
		if rej.status >= 500 {
			h.log.Warn("report not applied", "status", rej.status, "reason", rej.reason, "error", rej.msg, "remote", r.RemoteAddr)
		} else {
			h.log.Info("report rejected", "status", rej.status, "reason", rej.reason, "error", rej.msg, "remote", r.RemoteAddr)
		}
		http.Error(w, rej.msg, rej.status)
		return
	}
	h.m.reports.WithLabelValues(res, "").Inc()
	if res == "applied" {
		h.m.applySeconds.Observe(h.now().Sub(start).Seconds())
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, res+"\n")
}

func (h *Handler) serve(r *http.Request) (string, *rejection) {
	if r.Method != http.MethodPost {
		return "", reject(http.StatusMethodNotAllowed, "method", "use POST to send reports")
	}
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		rej := reject(http.StatusServiceUnavailable, "overloaded", "too many reports in progress (ZONETOLL_INGEST_MAX_IN_FLIGHT); retry")
		rej.retryAfter = time.Second
		return "", rej
	}

	if h.synced != nil && !h.synced() {
		// Behind a Service the server gets no traffic before /readyz passes; a client that reaches it
		// directly (or a Service without readiness) is told to come back.
		rej := reject(http.StatusServiceUnavailable, "not_ready", "pod and node caches are still syncing; retry")
		rej.retryAfter = time.Second
		return "", rej
	}
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return "", reject(http.StatusUnauthorized, "unauthenticated", "missing bearer token: send the agent's service-account token as Authorization: Bearer <token>")
	}
	id, err := h.auth.Authenticate(r.Context(), token)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return "", reject(http.StatusUnauthorized, "unauthenticated", "%v", err)
	case errors.Is(err, auth.ErrForbidden):
		return "", reject(http.StatusForbidden, "forbidden", "%v", err)
	case err != nil:
		rej := reject(http.StatusServiceUnavailable, "auth_unavailable", "%v", err)
		rej.retryAfter = 5 * time.Second
		return "", rej
	}

	wk := h.getWork()
	defer h.putWork(wk)
	if rej := h.readReport(r, wk); rej != nil {
		return "", rej
	}
	rep := &wk.report
	if rej := h.inTime(rep); rej != nil {
		return "", rej
	}
	if rej := h.plausible(rep); rej != nil {
		return "", rej
	}
	if id.Node != "" && id.Node != rep.Node {
		return "", reject(http.StatusForbidden, "node_mismatch", "report names node %q but the token is bound to a pod on node %q", rep.Node, id.Node)
	}
	if delay, ok := h.allow(rep.Node); !ok {
		rej := reject(http.StatusTooManyRequests, "rate_limited", "node %s sends more than %g reports per second (ZONETOLL_INGEST_NODE_RATE)", rep.Node, h.lim.NodeRate)
		rej.retryAfter = delay
		return "", rej
	}
	key := dedupe.Key{Node: rep.Node, BootID: rep.BootID, Sequence: rep.Sequence}
	if h.seen.Seen(key, h.now()) {
		return "duplicate", nil
	}
	if !h.apply(wk, key) {
		return "duplicate", nil // a concurrent copy of the same report was applied first
	}
	return "applied", nil
}

func (h *Handler) getWork() *work { return h.pool.Get().(*work) }

// putWork returns wk to the pool. Endpoints hold handles that keep interned workloads alive, so they
// are dropped first: once in the pool, wk belongs to whichever request takes it next.
func (h *Handler) putWork(wk *work) {
	clear(wk.srcEPs[:cap(wk.srcEPs)])
	clear(wk.dstEPs[:cap(wk.dstEPs)])
	h.pool.Put(wk)
}

func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// readReport reads, decompresses and decodes the body into wk.report.
func (h *Handler) readReport(r *http.Request, wk *work) *rejection {
	if r.ContentLength > h.lim.MaxBodyBytes {
		return reject(http.StatusRequestEntityTooLarge, "body_too_large", "body of %d bytes is over the limit of %d bytes (ZONETOLL_INGEST_MAX_BODY_BYTES)", r.ContentLength, h.lim.MaxBodyBytes)
	}
	wk.readBuf.Reset()
	n, err := wk.readBuf.ReadFrom(io.LimitReader(r.Body, h.lim.MaxBodyBytes+1))
	if err != nil {
		return reject(http.StatusBadRequest, "read_error", "reading body: %v", err)
	}
	if n > h.lim.MaxBodyBytes {
		return reject(http.StatusRequestEntityTooLarge, "body_too_large", "body is over the limit of %d bytes (ZONETOLL_INGEST_MAX_BODY_BYTES)", h.lim.MaxBodyBytes)
	}
	lim := report.Limits{MaxFlows: h.lim.MaxFlows}
	data := wk.readBuf.Bytes()
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "gzip":
		wk.plain, err = report.AppendGunzip(wk.plain[:0], bytes.NewReader(data), lim.MaxEncodedLen())
		if err != nil {
			if errors.Is(err, report.ErrTooLarge) {
				return reject(http.StatusRequestEntityTooLarge, "body_too_large", "decompressed report: %v (at most %d flows, ZONETOLL_INGEST_MAX_FLOWS)", err, h.lim.MaxFlows)
			}
			return reject(http.StatusBadRequest, "malformed", "decompressing body: %v", err)
		}
		data = wk.plain
	case "", "identity":
	default:
		return reject(http.StatusUnsupportedMediaType, "unsupported_encoding", "Content-Encoding %q is not supported; send gzip or no encoding", enc)
	}
	if err := report.DecodeInto(&wk.report, data, lim); err != nil {
		if errors.Is(err, report.ErrTooManyFlows) {
			return reject(http.StatusRequestEntityTooLarge, "too_many_flows", "%v (ZONETOLL_INGEST_MAX_FLOWS is %d)", err, h.lim.MaxFlows)
		}
		return reject(http.StatusBadRequest, "malformed", "%v", err)
	}
	return nil
}

// inTime refuses a report whose window is in the future or older than the dedupe memory. A window
// in the future is a wrong clock or a forgery. A report older than the memory may have been applied
// already and forgotten since: applied again it would count twice, at today's time. The bound holds
// because the first copy was applied no earlier than its window's end minus the skew, and its marker
// lives for the retention after that.
func (h *Handler) inTime(rep *report.Report) *rejection {
	now := h.now()
	if latest := now.Add(h.lim.MaxClockSkew); rep.WindowEnd.After(latest) {
		return reject(http.StatusUnprocessableEntity, "window_in_future",
			"report window ends at %s, %s after this server's clock, more than the skew allowed (ZONETOLL_INGEST_MAX_CLOCK_SKEW %s); check the node's clock",
			rep.WindowEnd.Format(time.RFC3339Nano), rep.WindowEnd.Sub(now).Round(time.Millisecond), h.lim.MaxClockSkew)
	}
	if h.lim.MaxWindowAge > 0 {
		if age := now.Sub(rep.WindowStart); age > h.lim.MaxWindowAge {
			return reject(http.StatusUnprocessableEntity, "window_too_old",
				"report window started at %s, %s ago, longer than reports are remembered (%s: ZONETOLL_DEDUPE_RETENTION minus ZONETOLL_INGEST_MAX_CLOCK_SKEW); it may have been counted already",
				rep.WindowStart.Format(time.RFC3339Nano), age.Round(time.Second), h.lim.MaxWindowAge)
		}
	}
	return nil
}

// plausible refuses a report whose bytes no node could send in its window: a sum past the line rate
// (or past what a uint64 holds) is a forgery or a broken agent, and counting it would put an
// absurd figure on the bill.
func (h *Handler) plausible(rep *report.Report) *rejection {
	if h.lim.MaxBytesPerSecond == 0 {
		return nil
	}
	var sum uint64
	overflow := false
	for i := range rep.Flows {
		var carry uint64
		sum, carry = bits.Add64(sum, rep.Flows[i].Bytes, 0)
		overflow = overflow || carry != 0
	}
	window := max(rep.WindowEnd.Sub(rep.WindowStart), minPlausibleWindow)
	limit := float64(h.lim.MaxBytesPerSecond) * window.Seconds()
	if overflow || float64(sum) > limit {
		total := strconv.FormatUint(sum, 10)
		if overflow {
			total = "more than 2^64"
		}
		return reject(http.StatusUnprocessableEntity, "implausible_bytes",
			"report claims %s bytes in a window of %s, more than %d bytes/s (ZONETOLL_INGEST_MAX_BYTES_PER_SECOND) allow", total, window, h.lim.MaxBytesPerSecond)
	}
	return nil
}

// allow takes a token from the node's rate limiter; when none is left it says how long to wait.
func (h *Handler) allow(node string) (time.Duration, bool) {
	if h.lim.NodeRate <= 0 {
		return 0, true
	}
	now := h.now()
	h.limMu.Lock()
	defer h.limMu.Unlock()
	nl := h.limiters[node]
	if nl == nil {
		if len(h.limiters) > 100000 {
			h.pruneLimiters(now)
		}
		nl = &nodeLimiter{l: rate.NewLimiter(rate.Limit(h.lim.NodeRate), max(1, h.lim.NodeBurst))}
		h.limiters[node] = nl
	}
	nl.used = now
	if nl.l.AllowN(now, 1) {
		return 0, true
	}
	r := nl.l.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	r.CancelAt(now)
	return max(delay, time.Second), false
}

// pruneLimiters forgets nodes idle for long enough that their bucket is full again anyway.
func (h *Handler) pruneLimiters(now time.Time) {
	for n, nl := range h.limiters {
		if now.Sub(nl.used) > time.Minute {
			delete(h.limiters, n)
		}
	}
}

// apply resolves every flow and merges the report into the counters. It returns false, changing
// nothing, when a concurrent copy of the same report was applied first.
func (h *Handler) apply(wk *work, key dedupe.Key) bool {
	rep := &wk.report
	b := wk.batch
	b.Reset()
	t := &wk.tally
	t.reset()
	logFlows := h.flowLog != nil
	wk.srcEPs, wk.dstEPs = wk.srcEPs[:0], wk.dstEPs[:0]
	var nodeZone string
	var nodeKnown bool
	h.resolver.Read(func(v resolve.View) {
		nodeZone, nodeKnown = v.NodeZone(rep.Node)
		start, end := rep.WindowStart, rep.WindowEnd
		for i := range rep.Flows {
			f := &rep.Flows[i]
			src := v.Resolve(f.Src, start, end)
			dst := v.Resolve(f.Dst, start, end)
			b.Add(src, dst, f.Bytes, f.Packets)
			t.add(src, f.Bytes)
			t.add(dst, f.Bytes)
			t.bytes = traffic.SatAdd(t.bytes, f.Bytes)
			if traffic.CrossZone(src, dst) {
				t.crossBytes = traffic.SatAdd(t.crossBytes, f.Bytes)
			}
			if logFlows {
				wk.srcEPs = append(wk.srcEPs, src)
				wk.dstEPs = append(wk.dstEPs, dst)
			}
		}
		t.flows = uint64(len(rep.Flows))
	})
	now := h.now()
	if !h.seen.Mark(key, now) {
		return false
	}
	h.store.Apply(b, now)
	h.m.observe(t, h.zone, nodeZone, nodeKnown)
	if logFlows {
		for i := range rep.Flows {
			f := &rep.Flows[i]
			src, dst := wk.srcEPs[i], wk.dstEPs[i]
			h.flowLog.Write(flowlog.Flow{
				Src: f.Src.Netip(), Dst: f.Dst.Netip(), SrcEP: src, DstEP: dst,
				Bytes: f.Bytes, Packets: f.Packets, CrossZone: traffic.CrossZone(src, dst),
				WindowStart: rep.WindowStart, End: rep.WindowEnd,
			})
		}
		if err := h.flowLog.Flush(); err != nil {
			h.log.Error("writing flow log", "error", err)
		}
	}
	return true
}
