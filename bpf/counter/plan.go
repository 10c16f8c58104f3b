package counter

// What a starting counter does with what is pinned. The decision is made
// here, without syscalls, from what load read out of the pin dir; load only
// carries it out.

// pinnedGen is what plan needs to know of one pinned generation.
type pinnedGen struct {
	gen   uint32
	id    string // programID
	links int    // hooks (pinned links, recorded clsact filters): where it is attached
}

// startAction is how our program comes to own the maps.
type startAction int

const (
	// startFresh: no program owns the maps (new maps, or none pinned owns
	// them). Ours owns them from its first packet.
	startFresh startAction = iota
	// startAdopt: the owning program is ours (same program id). Its program
	// and links are kept; nothing changes hands.
	startAdopt
	// startTakeOver: a different program owns the maps but is attached
	// nowhere, so nothing counts: it is removed and ours owns the maps at
	// once, rather than losing an interval waiting for the first Drain.
	startTakeOver
	// startHandOver: a different program owns the maps and is attached. Ours
	// attaches beside it and takes over at the first Drain, which removes it.
	startHandOver
)

func (a startAction) String() string {
	switch a {
	case startFresh:
		return "fresh"
	case startAdopt:
		return "adopt"
	case startTakeOver:
		return "take over now"
	case startHandOver:
		return "hand over at the first drain"
	}
	return "unknown"
}

// startPlan is plan's decision. Indexes are into plan's pinned slice.
type startPlan struct {
	action startAction
	// live is the generation that owns the maps, or -1 (startFresh).
	live int
	// stale are generations that own nothing (a process that died before
	// taking over, or maps replaced): removed once our program has loaded,
	// so a program the verifier refuses leaves the running one alone.
	stale []int
	// gen is the generation ours runs as: the live one's when adopting,
	// else the next after the owner.
	gen uint32
}

// plan decides how a starting counter takes over from the generations
// pinned beside the maps. reused says the pinned maps are reused; owner is
// then the generation in their active index (0 = nobody yet). ours is our
// program's id. canAdopt is false when the owning program's pin could not
// be opened, so ours must load beside it even when it is the same.
func plan(pinned []pinnedGen, reused bool, owner uint32, ours string, canAdopt bool) startPlan {
	if !reused {
		owner = 0 // new maps: whatever is pinned writes other maps
	}
	p := startPlan{live: -1}
	for i, g := range pinned {
		if reused && owner != 0 && g.gen == owner && p.live < 0 {
			p.live = i
			continue
		}
		p.stale = append(p.stale, i)
	}
	p.gen = nextGeneration(owner)
	switch {
	case p.live < 0:
		p.action = startFresh
	case canAdopt && pinned[p.live].id == ours:
		p.action = startAdopt
		p.gen = pinned[p.live].gen
	case pinned[p.live].links == 0:
		p.action = startTakeOver
	default:
		p.action = startHandOver
	}
	return p
}
