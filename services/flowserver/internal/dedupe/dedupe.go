// Package dedupe remembers which reports were applied, so that a retried report (same node, agent
// boot id and sequence) is answered as a success without being counted twice.
//
// It keeps one high-water mark per (node, boot id): the highest sequence applied, the way idempotent
// producers are deduplicated (Kafka's producer id and sequence). An agent sends its reports oldest
// first, one at a time, and a new sequence only after the previous one was answered 2xx or dropped
// for good (services/flowagent/internal/sender), so every sequence at or below the mark has been
// applied or will never be sent again: it is a duplicate. The state is one entry per agent process
// that had a report applied, small enough to keep for the agents' whole retry horizon and to persist
// across restarts (package markstore).
package dedupe

import (
	"sync"
	"time"
)

// Key identifies a report.
type Key struct {
	Node     string
	BootID   [16]byte
	Sequence uint64
}

// Mark is the high-water mark of one agent process: the highest sequence applied, and when.
type Mark struct {
	Node     string
	BootID   [16]byte
	Sequence uint64
	Updated  time.Time
}

type boot struct {
	node string
	id   [16]byte
}

type entry struct {
	seq     uint64
	updated time.Time
}

// Window holds the marks of the agent processes whose last report was applied within the retention,
// at most a number of them: when it is full, the mark updated longest ago goes first. A retry of a
// report whose mark was forgotten would be counted again, so the retention must exceed the agents'
// retry horizon (ingest refuses reports older than it, window_too_old); Evicted counts marks forgotten
// early.
type Window struct {
	retention time.Duration
	max       int

	mu      sync.Mutex
	marks   map[boot]entry
	evicted uint64
	// gen counts changes, so a writer of the marks can tell whether there is anything new to write.
	gen uint64
}

// New returns a Window.
func New(retention time.Duration, maxMarks int) *Window {
	return &Window{retention: retention, max: max(1, maxMarks), marks: map[boot]entry{}}
}

// live reports whether a mark updated at t is still remembered at now.
func (w *Window) live(t, now time.Time) bool { return !t.Before(now.Add(-w.retention)) }

// Seen reports whether k is at or below its agent's mark at now: applied before, or skipped for good.
func (w *Window) Seen(k Key, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.marks[boot{k.Node, k.BootID}]
	return ok && w.live(e.updated, now) && k.Sequence <= e.seq
}

// Mark raises k's agent's mark to k.Sequence at now and reports whether k was new (above the mark).
// Only the caller that gets true may apply the report: Seen followed by Mark is not atomic, Mark
// alone is, so of two copies racing (a retry and an attempt the agent gave up on) one wins.
func (w *Window) Mark(k Key, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := boot{k.Node, k.BootID}
	e, ok := w.marks[b]
	if ok && !w.live(e.updated, now) {
		ok = false
	}
	if ok && k.Sequence <= e.seq {
		return false
	}
	if !ok {
		delete(w.marks, b)
		w.makeRoomLocked(now)
	}
	w.marks[b] = entry{seq: k.Sequence, updated: now}
	w.gen++
	return true
}

// makeRoomLocked forgets expired marks, then the least recently updated, until one more fits.
func (w *Window) makeRoomLocked(now time.Time) {
	if len(w.marks) < w.max {
		return
	}
	w.expireLocked(now)
	for len(w.marks) >= w.max {
		var oldest boot
		var at time.Time
		first := true
		for b, e := range w.marks {
			if first || e.updated.Before(at) {
				oldest, at, first = b, e.updated, false
			}
		}
		delete(w.marks, oldest)
		w.evicted++
		w.gen++
	}
}

// Expire forgets marks not updated within the retention.
func (w *Window) Expire(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expireLocked(now)
}

func (w *Window) expireLocked(now time.Time) {
	for b, e := range w.marks {
		if !w.live(e.updated, now) {
			delete(w.marks, b)
			w.gen++
		}
	}
}

// Snapshot returns the live marks and the generation they belong to (see Generation).
func (w *Window) Snapshot(now time.Time) ([]Mark, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expireLocked(now)
	out := make([]Mark, 0, len(w.marks))
	for b, e := range w.marks {
		out = append(out, Mark{Node: b.node, BootID: b.id, Sequence: e.seq, Updated: e.updated})
	}
	return out, w.gen
}

// Generation changes whenever a mark does: a writer that wrote a Snapshot of generation g has nothing
// new to write while Generation is still g.
func (w *Window) Generation() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

// Restore merges marks written by an earlier process (or another writer) into w: per agent process
// the higher sequence wins, so merging is safe in any order and any number of times. Marks older
// than the retention at now are skipped; the bound on the number of marks applies.
func (w *Window) Restore(marks []Mark, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range marks {
		if !w.live(m.Updated, now) {
			continue
		}
		b := boot{m.Node, m.BootID}
		e, ok := w.marks[b]
		if ok && e.seq >= m.Sequence {
			continue
		}
		if !ok {
			w.makeRoomLocked(now)
		}
		upd := m.Updated
		if ok && e.updated.After(upd) {
			upd = e.updated
		}
		w.marks[b] = entry{seq: m.Sequence, updated: upd}
		w.gen++
	}
}

// Len returns the number of remembered marks.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.marks)
}

// Evicted returns how many marks were forgotten early because the window was full.
func (w *Window) Evicted() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.evicted
}
