package counter

import (
	"slices"
	"testing"
)

func TestPlan(t *testing.T) {
	const ours, other = "0123456789ab", "0ldversi0n00"
	gen := func(g uint32, id string, links int) pinnedGen { return pinnedGen{gen: g, id: id, links: links} }
	for _, tc := range []struct {
		name     string
		pinned   []pinnedGen
		reused   bool
		owner    uint32
		canAdopt bool
		want     startPlan
	}{
		{"first start: nothing pinned", nil, false, 0, true,
			startPlan{action: startFresh, live: -1, gen: 1}},
		{"restart of the same program adopts it", []pinnedGen{gen(3, ours, 2)}, true, 3, true,
			startPlan{action: startAdopt, live: 0, gen: 3}},
		{"the same program attached nowhere is adopted too", []pinnedGen{gen(3, ours, 0)}, true, 3, true,
			startPlan{action: startAdopt, live: 0, gen: 3}},
		{"upgrade beside an attached program hands over at the first drain", []pinnedGen{gen(3, other, 2)}, true, 3, true,
			startPlan{action: startHandOver, live: 0, gen: 4}},
		{"a program attached nowhere is taken over at once", []pinnedGen{gen(3, other, 0)}, true, 3, true,
			startPlan{action: startTakeOver, live: 0, gen: 4}},
		{"the same program whose pin cannot be opened: load beside it", []pinnedGen{gen(3, ours, 2)}, true, 3, false,
			startPlan{action: startHandOver, live: 0, gen: 4}},
		{"an upgrade that died before taking over is stale", []pinnedGen{gen(3, ours, 2), gen(4, other, 2)}, true, 3, true,
			startPlan{action: startAdopt, live: 0, stale: []int{1}, gen: 3}},
		{"the owner is found among several", []pinnedGen{gen(4, ours, 1), gen(3, other, 2)}, true, 3, true,
			startPlan{action: startHandOver, live: 1, stale: []int{0}, gen: 4}},
		{"new maps: every pinned program writes other maps", []pinnedGen{gen(3, ours, 2), gen(4, other, 1)}, false, 3, true,
			startPlan{action: startFresh, live: -1, stale: []int{0, 1}, gen: 1}},
		{"maps that nobody took over yet: pinned programs are stale", []pinnedGen{gen(1, other, 2)}, true, 0, true,
			startPlan{action: startFresh, live: -1, stale: []int{0}, gen: 1}},
		{"the owner's directory is gone", []pinnedGen{gen(2, other, 1)}, true, 5, true,
			startPlan{action: startFresh, live: -1, stale: []int{0}, gen: 6}},
		{"two directories of the owning generation: the first counts", []pinnedGen{gen(3, ours, 1), gen(3, other, 1)}, true, 3, true,
			startPlan{action: startAdopt, live: 0, stale: []int{1}, gen: 3}},
		{"generations wrap at 31 bits", []pinnedGen{gen(maxGeneration, other, 1)}, true, maxGeneration, true,
			startPlan{action: startHandOver, live: 0, gen: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := plan(tc.pinned, tc.reused, tc.owner, ours, tc.canAdopt)
			if got.action != tc.want.action || got.live != tc.want.live || got.gen != tc.want.gen || !slices.Equal(got.stale, tc.want.stale) {
				t.Errorf("plan = {%s live %d stale %v gen %d}, want {%s live %d stale %v gen %d}",
					got.action, got.live, got.stale, got.gen, tc.want.action, tc.want.live, tc.want.stale, tc.want.gen)
			}
		})
	}
}
