package dedupe

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func k(node string, boot byte, seq uint64) Key {
	return Key{Node: node, BootID: [16]byte{boot}, Sequence: seq}
}

func TestHighWaterMark(t *testing.T) {
	w := New(24*time.Hour, 3)
	steps := []struct {
		name    string
		key     Key
		at      time.Time
		wantNew bool
	}{
		{"first", k("a", 1, 1), t0, true},
		{"retry", k("a", 1, 1), t0.Add(time.Minute), false},
		{"next sequence", k("a", 1, 2), t0.Add(time.Minute), true},
		{"a gap: 3 was dropped by the agent's spool", k("a", 1, 4), t0.Add(time.Minute), true},
		{"an attempt the agent gave up on, arriving late", k("a", 1, 2), t0.Add(time.Minute), false},
		{"below the mark, never applied: the agent sends in order, so it is a late copy", k("a", 1, 3), t0.Add(time.Minute), false},
		{"other node, same sequence", k("b", 1, 1), t0, true},
		{"other boot, same sequence", k("a", 2, 1), t0.Add(2 * time.Minute), true},
		{"retry an hour later: still a duplicate (the old window forgot after an hour)", k("a", 1, 4), t0.Add(time.Hour + 2*time.Minute), false},
		{"a fourth process: the full window forgets the mark updated longest ago (b/1)", k("c", 1, 1), t0.Add(3 * time.Minute), true},
		{"b's retry after eviction counts again", k("b", 1, 1), t0.Add(3 * time.Minute), true},
		{"after the retention the mark is gone", k("c", 1, 1), t0.Add(3*time.Minute + 25*time.Hour), true},
	}
	for _, s := range steps {
		if got := w.Mark(s.key, s.at); got != s.wantNew {
			t.Errorf("%s: Mark = %v, want %v", s.name, got, s.wantNew)
		}
	}
	if w.Evicted() != 2 {
		t.Errorf("Evicted = %d, want 2", w.Evicted())
	}
	end := t0.Add(3*time.Minute + 25*time.Hour)
	w.Expire(end)
	if w.Len() != 1 || !w.Seen(k("c", 1, 1), end) || w.Seen(k("c", 1, 2), end) {
		t.Errorf("after retention: Len %d; want only c/1 at 1", w.Len())
	}
}

func TestRestoreMergesByHighestSequence(t *testing.T) {
	a := New(time.Hour, 100)
	a.Mark(k("a", 1, 5), t0)
	a.Mark(k("b", 1, 2), t0)
	marks, gen := a.Snapshot(t0)
	if len(marks) != 2 || gen != a.Generation() {
		t.Fatalf("Snapshot = %v, gen %d (Generation %d)", marks, gen, a.Generation())
	}

	b := New(time.Hour, 100)
	b.Mark(k("a", 1, 7), t0.Add(time.Minute)) // b saw more of a/1 than a did
	old := Mark{Node: "c", BootID: [16]byte{1}, Sequence: 9, Updated: t0.Add(-2 * time.Hour)}
	b.Restore(append(marks, old), t0.Add(time.Minute))
	b.Restore(marks, t0.Add(time.Minute)) // twice: nothing changes
	now := t0.Add(2 * time.Minute)
	for _, c := range []struct {
		key  Key
		seen bool
	}{
		{k("a", 1, 7), true}, {k("a", 1, 8), false}, {k("b", 1, 2), true}, {k("b", 1, 3), false},
		{k("c", 1, 1), false}, // older than the retention: not restored
	} {
		if got := b.Seen(c.key, now); got != c.seen {
			t.Errorf("Seen(%s/%d/%d) = %v, want %v", c.key.Node, c.key.BootID[0], c.key.Sequence, got, c.seen)
		}
	}
	// A restored mark keeps its own time: it expires an hour after a's update, not after the restore.
	if b.Seen(k("b", 1, 2), t0.Add(time.Hour+time.Second)) {
		t.Error("restored mark outlived its retention")
	}
	g := b.Generation()
	b.Mark(k("b", 1, 2), now)
	if b.Generation() != g {
		t.Error("a duplicate changed the generation")
	}
}
