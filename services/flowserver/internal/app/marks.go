package app

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/dedupe"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/markstore"
	"github.com/zonetoll/zonetoll/shared/metricdef"
)

// marks keeps the dedupe marks across processes: loaded once at start (reports wait for it), saved
// every SaveInterval when they changed, and once more after the last report was applied.
type marks struct {
	win    *dedupe.Window
	store  *markstore.Store // nil: not kept
	log    *slog.Logger
	loaded atomic.Bool
	saved  uint64 // generation last saved; the saver alone uses it

	saves     *prometheus.CounterVec
	savedSize prometheus.Gauge
}

func newMarks(win *dedupe.Window, store *markstore.Store, reg prometheus.Registerer, log *slog.Logger) (*marks, error) {
	var ms metricdef.Set
	m := &marks{
		win: win, store: store, log: log,
		saves: ms.CounterVec("zonetoll_flowserver_dedupe_saves_total",
			"Writes of the dedupe marks to their ConfigMap (ZONETOLL_DEDUPE_CONFIG_MAP), by result: ok, error.",
			"result", "ok", "error"),
		savedSize: ms.Gauge("zonetoll_flowserver_dedupe_saved_bytes",
			"Size of the dedupe marks last written to their ConfigMap; the API server refuses more than 1 MiB."),
	}
	if store == nil {
		m.loaded.Store(true)
	}
	return m, ms.Register(reg, "dedupe mark metrics")
}

// load reads the stored marks, retrying until it succeeds or ctx ends: until then no report is
// applied (a report applied by the previous process would count again).
func (m *marks) load(ctx context.Context) {
	if m.store == nil {
		return
	}
	wait := time.Second
	for {
		stored, err := m.store.Load(ctx)
		if err == nil {
			m.win.Restore(stored, time.Now())
			m.saved = m.win.Generation() // what was loaded needs no writing back
			m.loaded.Store(true)
			m.log.Info("dedupe marks loaded", "configmap", m.store.Name(), "marks", m.win.Len())
			return
		}
		m.log.Error("loading dedupe marks; not taking reports until they are loaded", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// save writes the marks if they changed since the last write.
func (m *marks) save(ctx context.Context) {
	if m.store == nil || !m.loaded.Load() || m.win.Generation() == m.saved {
		return
	}
	snap, gen := m.win.Snapshot(time.Now())
	n, err := m.store.Save(ctx, snap)
	if err != nil {
		m.saves.WithLabelValues("error").Inc()
		m.log.Error("saving dedupe marks; a restart now would forget the reports applied since the last save", "configmap", m.store.Name(), "marks", len(snap), "error", err)
		return
	}
	m.saves.WithLabelValues("ok").Inc()
	m.savedSize.Set(float64(n))
	m.saved = gen
}

// run loads the marks, then saves them every interval until ctx ends.
func (m *marks) run(ctx context.Context, interval time.Duration) {
	m.load(ctx)
	if m.store == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.save(ctx)
		}
	}
}
