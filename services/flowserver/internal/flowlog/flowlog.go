// Package flowlog writes one JSON line per report window and endpoint pair: who sent how much to
// whom, with both ends resolved. It is the place to answer "which pods?" when the metrics, which
// stop at workloads, are not enough.
package flowlog

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
	"github.com/zonetoll/zonetoll/shared/metricdef"
)

// Options configure a Logger.
type Options struct {
	// MinBytes skips pairs with fewer bytes in the window.
	MinBytes uint64
	// SampleRate is the fraction of pairs (at or above MinBytes) written, in (0, 1].
	SampleRate float64
}

// Logger writes flow lines. Safe for concurrent use.
type Logger struct {
	opts  Options
	mu    sync.Mutex
	buf   *bufio.Writer
	log   *slog.Logger
	lines *prometheus.CounterVec
}

// New returns a Logger writing to w, with its metrics registered on reg.
func New(w io.Writer, opts Options, reg prometheus.Registerer) (*Logger, error) {
	var s metricdef.Set
	l := &Logger{
		opts: opts,
		buf:  bufio.NewWriterSize(w, 64<<10),
		lines: s.CounterVec("zonetoll_flowserver_flow_log_lines_total",
			"Flow log lines by result: written, below_threshold (ZONETOLL_FLOW_LOG_MIN_BYTES), sampled_out (ZONETOLL_FLOW_LOG_SAMPLE_RATE).",
			"result", "written", "below_threshold", "sampled_out"),
	}
	l.log = slog.New(slog.NewJSONHandler(l.buf, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				return slog.Attr{} // every line is a flow; a level says nothing
			}
			return a
		},
	}))
	if err := s.Register(reg, "flow log metrics"); err != nil {
		return nil, err
	}
	return l, nil
}

// Flow is one line's content.
type Flow struct {
	Src, Dst         netip.Addr
	SrcEP, DstEP     *resolve.Endpoint
	Bytes, Packets   uint64
	CrossZone        bool
	WindowStart, End time.Time
}

// Write writes f if it passes the threshold and the sample.
func (l *Logger) Write(f Flow) {
	if f.Bytes < l.opts.MinBytes {
		l.lines.WithLabelValues("below_threshold").Inc()
		return
	}
	if l.opts.SampleRate < 1 && rand.Float64() >= l.opts.SampleRate {
		l.lines.WithLabelValues("sampled_out").Inc()
		return
	}
	l.mu.Lock()
	l.log.LogAttrs(context.Background(), slog.LevelInfo, "flow",
		slog.Group("window", slog.Time("start", f.WindowStart), slog.Time("end", f.End)),
		endpoint("src", f.Src, f.SrcEP),
		endpoint("dst", f.Dst, f.DstEP),
		slog.Uint64("bytes", f.Bytes),
		slog.Uint64("packets", f.Packets),
		slog.Bool("cross_zone", f.CrossZone),
	)
	l.mu.Unlock()
	l.lines.WithLabelValues("written").Inc()
}

// Flush writes buffered lines out; call it after each report.
func (l *Logger) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Flush()
}

func endpoint(key string, ip netip.Addr, ep *resolve.Endpoint) slog.Attr {
	w := ep.Workload.Value()
	attrs := []any{slog.String("ip", ip.String()), slog.String("namespace", w.Namespace)}
	pod := ""
	if ep.IsPod() {
		pod = ep.Pod.Value().Name
	}
	attrs = append(attrs,
		slog.String("pod", pod),
		slog.String("workload", w.Name),
		slog.String("kind", w.Kind),
		slog.String("node", ep.Node),
		slog.String("zone", w.Zone),
	)
	return slog.Group(key, attrs...)
}
