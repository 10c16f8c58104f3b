package dedupe

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	k := func(node string, seq uint64) Key { return Key{Node: node, BootID: [16]byte{1}, Sequence: seq} }
	w := New(time.Hour, 3)
	steps := []struct {
		name    string
		key     Key
		at      time.Time
		wantNew bool
	}{
		{"first", k("a", 1), t0, true},
		{"retry", k("a", 1), t0.Add(time.Minute), false},
		{"next sequence", k("a", 2), t0.Add(time.Minute), true},
		{"other node, same sequence", k("b", 1), t0.Add(time.Minute), true},
		{"other boot, same sequence", Key{Node: "a", BootID: [16]byte{2}, Sequence: 1}, t0.Add(2 * time.Minute), true}, // full: evicts a/1
		{"evicted key counts again", k("a", 1), t0.Add(2 * time.Minute), true},                                         // evicts a/2
		{"after retention", k("b", 1), t0.Add(2 * time.Hour), true},
	}
	for _, s := range steps {
		if got := w.Mark(s.key, s.at); got != s.wantNew {
			t.Errorf("%s: Mark = %v, want %v", s.name, got, s.wantNew)
		}
	}
	if w.Evicted() != 2 {
		t.Errorf("Evicted = %d, want 2", w.Evicted())
	}
	if w.Len() != 1 || !w.Seen(k("b", 1), t0.Add(2*time.Hour)) {
		t.Errorf("after retention: Len %d, Seen(b/1) %v; want only b/1", w.Len(), w.Seen(k("b", 1), t0.Add(2*time.Hour)))
	}
}
