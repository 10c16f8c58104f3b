// Package ingest is POST /v1/reports: it authenticates an agent's report, enforces the limits,
// decodes it, resolves every flow's addresses for the report's window, and applies it exactly once
// per (node, boot id, sequence) before answering 2xx.
package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/auth"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/binding"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/dedupe"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/flowlog"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/services"
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
	// MaxInFlightPerIdentity bounds the reports one identity (service account and node, see
	// identityKey) has in progress at once, so one agent's slow bodies cannot hold every slot.
	MaxInFlightPerIdentity int
	// MaxBytesInFlight is the byte budget of reports in progress: each reserves what its body, its
	// decompressed form and its decoded flows may take (see cost) before it is read or inflated.
	MaxBytesInFlight int64
	// MaxStreamedBodyBytes bounds a body sent without Content-Length (chunked); it is reserved in
	// full, since its size is not known before it is read.
	MaxStreamedBodyBytes int64
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

// Binder ties an authenticated caller to the node it may report for; *binding.Binder is one. It
// returns "" for a caller bound to no node (an unbound token the operator allows), or an error, a
// *binding.Refusal when the caller may not report.
type Binder interface {
	Bind(id auth.Identity) (node string, err error)
}

// Handler serves POST /v1/reports.
type Handler struct {
	lim    Limits
	zone   string // this server's zone in per-zone mode, else ""
	auth   Authenticator
	binder Binder // nil: the token's node-name extra, if any, is the binding
	// anySourceNode turns off the foreign-source check (Options.AnySourceNode).
	anySourceNode bool
	foreignLog    rate.Sometimes
	resolver      *resolve.Resolver
	services      *services.Index // nil: no per-Service attribution
	store         *traffic.Store
	seen          *dedupe.Window
	flowLog       *flowlog.Logger // nil: no flow log
	log           *slog.Logger
	now           func() time.Time
	synced        func() bool

	gate     gate // closed by Drain
	inFlight chan struct{}
	budget   budget
	limMu    sync.Mutex
	limiters map[string]*nodeLimiter
	pool     sync.Pool // *work

	m metrics
}

// nodeLimiter is one identity's rate limiter and count of reports in progress.
type nodeLimiter struct {
	l        *rate.Limiter
	used     time.Time
	inFlight int
}

// work is one request's reusable buffers.
type work struct {
	plain   []byte
	report  report.Report
	batch   *traffic.Batch
	srcEPs  []*resolve.Endpoint // nil for a flow not counted (foreign source)
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
	// foreign are the bytes of flows whose source is on another node than the report's, by
	// foreignReason; foreignFlows counts those flows and foreignExample is one of them, for the log.
	foreign        [numForeignReasons]uint64
	foreignFlows   int
	foreignExample foreignFlow
}

// Why a flow's source is not the reporting node's: a pod on another node (live or gone), or another
// node's address (a host-network pod there included).
const (
	foreignPod = iota
	foreignNode
	numForeignReasons
)

var foreignReasons = [numForeignReasons]string{"pod", "node"}

// foreignFlow is a flow not counted because its source is on another node, as the log names it.
type foreignFlow struct {
	src, dst report.Addr
	srcNode  string
	srcName  string // the pod (namespace/name) or node the source address resolved to
	bytes    uint64
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
	Limits Limits
	Zone   string
	Auth   Authenticator
	// Binder binds each caller to its node before its body is read; nil takes the node from the
	// token's node-name extra (if any) without checking it against the cluster.
	Binder Binder
	// AnySourceNode counts flows whatever node their source is on. Only for tests and benchmarks
	// whose synthetic reports mix nodes: the service never sets it.
	AnySourceNode bool
	Resolver      *resolve.Resolver
	// Services attributes flows to the destination's Service(s); nil leaves the per-Service metric
	// empty.
	Services *services.Index
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
		lim: o.Limits, zone: o.Zone, auth: o.Auth, binder: o.Binder, anySourceNode: o.AnySourceNode, resolver: o.Resolver, services: o.Services, store: o.Store, seen: o.Seen,
		flowLog: o.FlowLog, log: o.Logger, now: o.Now, synced: o.Synced,
		// A forging or misconfigured agent sends such flows in every report: log a few, then one a minute.
		foreignLog: rate.Sometimes{First: 3, Interval: time.Minute},
		inFlight:   make(chan struct{}, max(1, o.Limits.MaxInFlight)),
		budget:     budget{max: o.Limits.MaxBytesInFlight},
		limiters:   map[string]*nodeLimiter{},
	}
	if h.lim.MaxStreamedBodyBytes <= 0 || h.lim.MaxStreamedBodyBytes > h.lim.MaxBodyBytes {
		h.lim.MaxStreamedBodyBytes = h.lim.MaxBodyBytes
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
		if rej.reason == "shutting_down" {
			w.Header().Set("Connection", "close") // the retry opens a new connection, through the Service
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

// serve takes the cheap decisions first, and those that hold memory last: who is asking (a cached
// TokenReview, no slot held), whether that identity may send now (before its body is read), then a
// slot and the bytes its body may need, then the body.
func (h *Handler) serve(r *http.Request) (string, *rejection) {
	if r.Method != http.MethodPost {
		return "", reject(http.StatusMethodNotAllowed, "method", "use POST to send reports")
	}
	if !h.gate.enter() {
		return "", shuttingDown()
	}
	defer h.gate.leave()
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
	boundNode, rej := h.bind(id)
	if rej != nil {
		return "", rej
	}
	if r.ContentLength > h.lim.MaxBodyBytes {
		return "", reject(http.StatusRequestEntityTooLarge, "body_too_large", "body of %d bytes is over the limit of %d bytes (ZONETOLL_INGEST_MAX_BODY_BYTES)", r.ContentLength, h.lim.MaxBodyBytes)
	}
	ident := identityKey(id.Username, boundNode, r.RemoteAddr)
	release, rej := h.admitIdentity(ident)
	if rej != nil {
		return "", rej
	}
	defer release()

	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		return "", overloaded("too many reports in progress (ZONETOLL_INGEST_MAX_IN_FLIGHT); retry")
	}
	gz := false
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "gzip":
		gz = true
	case "", "identity":
	default:
		return "", reject(http.StatusUnsupportedMediaType, "unsupported_encoding", "Content-Encoding %q is not supported; send gzip or no encoding", enc)
	}
	bodyLimit := r.ContentLength
	if bodyLimit < 0 {
		bodyLimit = h.lim.MaxStreamedBodyBytes
	}
	// A plain body is decoded where it lies; a gzip body's decompressed size is reserved once known.
	reserved := bodyLimit
	if !gz {
		reserved = h.cost(bodyLimit, bodyLimit)
	}
	if !h.budget.tryAcquire(reserved) {
		return "", overloaded("reports in progress hold the ingest byte budget (ZONETOLL_INGEST_MAX_BYTES_IN_FLIGHT); retry")
	}
	defer func() { h.budget.release(reserved) }()

	wk := h.getWork()
	defer h.putWork(wk)
	if rej := h.readBody(r, wk, bodyLimit); rej != nil {
		return "", rej
	}
	data := wk.readBuf.Bytes()
	if gz {
		plainLen, rej := h.gzipSize(data)
		if rej != nil {
			return "", rej
		}
		more := h.cost(0, plainLen)
		if !h.budget.tryAcquire(more) {
			return "", overloaded("reports in progress hold the ingest byte budget (ZONETOLL_INGEST_MAX_BYTES_IN_FLIGHT); retry")
		}
		reserved += more
		if data, rej = h.gunzip(wk, data, plainLen); rej != nil {
			return "", rej
		}
	}
	if rej := h.decode(wk, data); rej != nil {
		return "", rej
	}
	rep := &wk.report
	if rej := h.inTime(rep); rej != nil {
		return "", rej
	}
	if rej := h.plausible(rep); rej != nil {
		return "", rej
	}
	if boundNode != "" && boundNode != rep.Node {
		return "", reject(http.StatusForbidden, binding.ReasonNodeMismatch, "report names node %q but the token is bound to a pod on node %q", rep.Node, boundNode)
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

func overloaded(msg string) *rejection {
	rej := reject(http.StatusServiceUnavailable, "overloaded", "%s", msg)
	rej.retryAfter = time.Second
	return rej
}

// bind returns the node the caller may report for ("" for none: an allowed unbound token), or why
// it may not report: 403 with the binding's reason, or 503 with Retry-After when the cause passes by
// itself (the pod informer has not seen a brand-new agent pod yet).
func (h *Handler) bind(id auth.Identity) (string, *rejection) {
	if h.binder == nil {
		return id.Node, nil
	}
	node, err := h.binder.Bind(id)
	if err == nil {
		return node, nil
	}
	var ref *binding.Refusal
	if !errors.As(err, &ref) {
		rej := reject(http.StatusServiceUnavailable, "auth_unavailable", "binding the token to its pod: %v", err)
		rej.retryAfter = 5 * time.Second
		return "", rej
	}
	if ref.Retry {
		rej := reject(http.StatusServiceUnavailable, ref.Reason, "%v", ref)
		rej.retryAfter = 2 * time.Second
		return "", rej
	}
	return "", reject(http.StatusForbidden, ref.Reason, "%v", ref)
}

// identityKey is who a rate limit and the per-identity slot count apply to: the service account and
// the node its token is bound to. A token bound to no pod (kubectl create token, a legacy Secret,
// accepted only with ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS) says nothing about its node, and the node
// named in the body is the sender's word, so such a caller is keyed by its address instead (the
// agent's pod or node IP). Behind a proxy that hides client addresses, those callers share one key.
func identityKey(username, boundNode, remoteAddr string) string {
	if boundNode != "" {
		return username + " node " + boundNode
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	return username + " address " + host
}

// Memory a report may take beyond its body, per decoded flow: the Flow itself (48 bytes), its
// share of the batch's maps and slices when every flow is its own workload pair, and the two
// endpoint pointers the flow log keeps.
const costPerFlow = 128

// minFlowLen is the shortest encoded flow (docs/wire-format.md: two addresses, one-byte counts).
const minFlowLen = 34

// cost is what a request may hold in memory: its body as sent, its decompressed form (plainLen;
// for a plain body, the body itself, so not counted twice) and the flows that could be decoded
// from it.
func (h *Handler) cost(sentLen, plainLen int64) int64 {
	flows := min(int64(h.lim.MaxFlows), plainLen/minFlowLen)
	c := sentLen + flows*costPerFlow
	if sentLen != plainLen {
		c += plainLen
	}
	return c
}

// budget is a byte budget taken without waiting: a request that does not fit is told to retry. A
// request larger than the whole budget may run when nothing else holds any of it, so the limits
// of one request, not the budget, decide whether it can ever be accepted.
type budget struct {
	mu   sync.Mutex
	used int64
	max  int64 // 0: no budget
}

func (b *budget) tryAcquire(n int64) bool {
	if b.max <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

func (b *budget) release(n int64) {
	if b.max <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// inUse returns the bytes reserved now.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
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

// readBody reads at most limit bytes of body into wk.readBuf: Content-Length when the client sent
// one (the server stops reading there), else the streamed-body limit.
func (h *Handler) readBody(r *http.Request, wk *work, limit int64) *rejection {
	wk.readBuf.Reset()
	// Room for the whole body and the read that sees EOF, so the buffer is not doubled at the end.
	wk.readBuf.Grow(int(limit) + bytes.MinRead)
	n, err := wk.readBuf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return reject(http.StatusBadRequest, "read_error", "reading body: %v", err)
	}
	if n > limit {
		if r.ContentLength < 0 {
			return reject(http.StatusRequestEntityTooLarge, "body_too_large", "body without Content-Length is over the limit of %d bytes (ZONETOLL_INGEST_MAX_STREAMED_BODY_BYTES)", limit)
		}
		return reject(http.StatusRequestEntityTooLarge, "body_too_large", "body is over the limit of %d bytes (ZONETOLL_INGEST_MAX_BODY_BYTES)", limit)
	}
	return nil
}

// gzipSize is the decompressed size a gzip body declares in its trailer (ISIZE, RFC 1952), so its
// memory can be reserved before it is inflated. A body that inflates to more than it declared is
// refused while inflating, so a wrong trailer cannot take more than was reserved.
func (h *Handler) gzipSize(body []byte) (int64, *rejection) {
	maxLen := report.Limits{MaxFlows: h.lim.MaxFlows}.MaxEncodedLen()
	if len(body) < 18 { // the smallest gzip member: 10-byte header, 8-byte trailer
		return 0, reject(http.StatusBadRequest, "malformed", "decompressing body: %d bytes are too short for gzip", len(body))
	}
	size := int64(binary.LittleEndian.Uint32(body[len(body)-4:]))
	if size > maxLen {
		return 0, reject(http.StatusRequestEntityTooLarge, "body_too_large", "gzip body too large: it declares %d bytes decompressed, more than a report of at most %d flows can have (ZONETOLL_INGEST_MAX_FLOWS)", size, h.lim.MaxFlows)
	}
	return size, nil
}

// gunzip inflates body into wk.plain, refusing anything past plainLen bytes.
func (h *Handler) gunzip(wk *work, body []byte, plainLen int64) ([]byte, *rejection) {
	var err error
	wk.plain = slices.Grow(wk.plain[:0], int(plainLen)+bytes.MinRead)
	wk.plain, err = report.AppendGunzip(wk.plain, bytes.NewReader(body), plainLen)
	if err != nil {
		if errors.Is(err, report.ErrTooLarge) {
			return nil, reject(http.StatusRequestEntityTooLarge, "body_too_large", "decompressed report: %v, more than its gzip trailer declares (send one gzip member)", err)
		}
		return nil, reject(http.StatusBadRequest, "malformed", "decompressing body: %v", err)
	}
	return wk.plain, nil
}

// decode decodes data into wk.report.
func (h *Handler) decode(wk *work, data []byte) *rejection {
	if err := report.DecodeInto(&wk.report, data, report.Limits{MaxFlows: h.lim.MaxFlows}); err != nil {
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

// admitIdentity takes a token from the identity's rate limiter and one of its in-progress slots,
// before anything of the body is read. The returned func gives the slot back.
func (h *Handler) admitIdentity(ident string) (func(), *rejection) {
	now := h.now()
	h.limMu.Lock()
	defer h.limMu.Unlock()
	nl := h.limiters[ident]
	if nl == nil {
		if len(h.limiters) > 100000 {
			h.pruneLimiters(now)
		}
		limit := rate.Inf
		if h.lim.NodeRate > 0 {
			limit = rate.Limit(h.lim.NodeRate)
		}
		nl = &nodeLimiter{l: rate.NewLimiter(limit, max(1, h.lim.NodeBurst))}
		h.limiters[ident] = nl
	}
	nl.used = now
	if h.lim.MaxInFlightPerIdentity > 0 && nl.inFlight >= h.lim.MaxInFlightPerIdentity {
		rej := reject(http.StatusTooManyRequests, "identity_busy", "%s has %d reports in progress already (ZONETOLL_INGEST_MAX_IN_FLIGHT_PER_NODE)", ident, nl.inFlight)
		rej.retryAfter = time.Second
		return nil, rej
	}
	if !nl.l.AllowN(now, 1) {
		r := nl.l.ReserveN(now, 1)
		delay := r.DelayFrom(now)
		r.CancelAt(now)
		rej := reject(http.StatusTooManyRequests, "rate_limited", "%s sends more than %g reports per second (ZONETOLL_INGEST_NODE_RATE)", ident, h.lim.NodeRate)
		rej.retryAfter = max(delay, time.Second)
		return nil, rej
	}
	nl.inFlight++
	return func() {
		h.limMu.Lock()
		nl.inFlight--
		h.limMu.Unlock()
	}, nil
}

// pruneLimiters forgets nodes idle for long enough that their bucket is full again anyway.
func (h *Handler) pruneLimiters(now time.Time) {
	for n, nl := range h.limiters {
		if now.Sub(nl.used) > time.Minute && nl.inFlight == 0 {
			delete(h.limiters, n)
		}
	}
}

// resolveFlows resolves every flow of wk's report into its batch and tally.
func (h *Handler) resolveFlows(wk *work, v resolve.View, sv services.View) {
	rep, b, t := &wk.report, wk.batch, &wk.tally
	logFlows := h.flowLog != nil
	start, end := rep.WindowStart, rep.WindowEnd
	for i := range rep.Flows {
		f := &rep.Flows[i]
		src := v.Resolve(f.Src, start, end)
		// A report counts only for its own node: the agent reports a flow only when its source is
		// local (docs/flowagent.md), so a source that resolves to a pod or an address of another node
		// is a forgery or a broken agent, and counted apart. Sources that resolve to no node
		// (external, configured CIDRs, unknown) cannot be checked and count as before.
		if src.Node != "" && src.Node != rep.Node && !h.anySourceNode {
			t.addForeign(f, src)
			if logFlows {
				wk.srcEPs = append(wk.srcEPs, nil)
				wk.dstEPs = append(wk.dstEPs, nil)
			}
			continue
		}
		dst := v.Resolve(f.Dst, start, end)
		pair := b.Add(src, dst, f.Bytes, f.Packets)
		// A flow to an endpoint is a request to its Service; a flow from an endpoint to an address no
		// Service lists is that Service's response (the counter keys on addresses, not ports, so this
		// is the rule, not a fact: docs/flowserver.md says where it is wrong). Each flow counts once.
		if svc, listed := sv.Lookup(f.Dst); listed {
			b.AddService(pair, svc, f.Bytes, false)
		} else if svc, listed := sv.Lookup(f.Src); listed {
			b.AddService(pair, svc, f.Bytes, true)
		}
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
	t.flows = uint64(len(rep.Flows) - t.foreignFlows)
}

func (t *tally) addForeign(f *report.Flow, src *resolve.Endpoint) {
	reason := foreignNode
	name := src.Node
	if src.IsPod() {
		reason = foreignPod
		pk := src.Pod.Value()
		name = pk.Namespace + "/" + pk.Name
	}
	t.foreign[reason] = traffic.SatAdd(t.foreign[reason], f.Bytes)
	if t.foreignFlows == 0 {
		t.foreignExample = foreignFlow{src: f.Src, dst: f.Dst, srcNode: src.Node, srcName: name, bytes: f.Bytes}
	}
	t.foreignFlows++
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
		// The Service index under its own read lock, taken after the resolver's (the lock order of
		// services.Index.Read).
		h.services.Read(func(sv services.View) {
			nodeZone, nodeKnown = v.NodeZone(rep.Node)
			h.resolveFlows(wk, v, sv)
		})
	})
	now := h.now()
	if !h.seen.Mark(key, now) {
		return false
	}
	h.store.Apply(b, now)
	h.m.observe(t, h.zone, nodeZone, nodeKnown)
	if t.foreignFlows > 0 {
		h.foreignLog.Do(func() {
			ex := t.foreignExample
			h.log.Warn("flows whose source is on another node were not counted (zonetoll_flowserver_foreign_source_bytes_total); the agent forges them or its locality filter is broken (this is logged at most once a minute)",
				"node", rep.Node, "flows", t.foreignFlows, "example_src", ex.src.String(), "example_dst", ex.dst.String(),
				"example_src_is", ex.srcName, "example_src_node", ex.srcNode, "example_bytes", ex.bytes)
		})
	}
	if logFlows {
		for i := range rep.Flows {
			f := &rep.Flows[i]
			src, dst := wk.srcEPs[i], wk.dstEPs[i]
			if src == nil {
				continue // not counted: its source is on another node
			}
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
