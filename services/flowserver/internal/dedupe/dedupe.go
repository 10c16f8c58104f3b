// Package dedupe remembers which reports were applied, so that a retried report (same node, agent
// boot id and sequence) is answered as a success without being counted twice.
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

// Window remembers keys for a retention time, and at most a number of keys: the oldest go first when
// it is full. A retry that arrives after its key was forgotten is counted again, so the retention
// must exceed the agents' longest retry (their spool lifetime); Evicted counts keys forgotten early.
type Window struct {
	retention time.Duration
	max       int

	mu    sync.Mutex
	seen  map[Key]struct{}
	order []stamped // in marking order, so expiry pops from the front
	head  int
	// Evicted counts keys dropped before their retention because the window was full.
	evicted uint64
}

type stamped struct {
	key Key
	at  time.Time
}

// New returns a Window.
func New(retention time.Duration, maxKeys int) *Window {
	return &Window{retention: retention, max: maxKeys, seen: map[Key]struct{}{}}
}

// Seen reports whether k was marked and not yet forgotten at now.
func (w *Window) Seen(k Key, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expireLocked(now)
	_, ok := w.seen[k]
	return ok
}

// Mark records k as applied at now and reports whether it was new. Only the caller that gets true
// may apply the report: Seen followed by Mark is not atomic, Mark alone is.
func (w *Window) Mark(k Key, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expireLocked(now)
	if _, ok := w.seen[k]; ok {
		return false
	}
	for len(w.seen) >= w.max && w.head < len(w.order) {
		delete(w.seen, w.order[w.head].key)
		w.head++
		w.evicted++
	}
	w.seen[k] = struct{}{}
	w.order = append(w.order, stamped{k, now})
	return true
}

// Expire forgets keys older than the retention.
func (w *Window) Expire(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expireLocked(now)
}

func (w *Window) expireLocked(now time.Time) {
	cutoff := now.Add(-w.retention)
	for w.head < len(w.order) && w.order[w.head].at.Before(cutoff) {
		delete(w.seen, w.order[w.head].key)
		w.head++
	}
	// Compact once the dead prefix is at least half the slice, so memory follows the live keys.
	if w.head > 0 && w.head*2 >= len(w.order) {
		n := copy(w.order, w.order[w.head:])
		clear(w.order[n:])
		w.order = w.order[:n]
		w.head = 0
	}
}

// Len returns the number of remembered keys.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// Evicted returns how many keys were forgotten early because the window was full.
func (w *Window) Evicted() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.evicted
}
