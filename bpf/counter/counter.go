// Package counter loads and attaches zonetoll's per-address-pair byte
// counter and drains its maps without losing updates.
//
// The program counts layer-3 bytes (IP headers included) per (source,
// destination) address pair at netfilter POST_ROUTING, or, as a fallback, at
// tc egress of the interfaces traffic leaves the node through (AttachTCEgress;
// AttachTC attaches at ingress). Maps live in bpffs so an agent restart
// continues where the previous process stopped.
package counter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Mode selects where the program attaches.
type Mode string

const (
	// ModeAuto picks netfilter when the kernel has netfilter BPF links, else tc.
	ModeAuto Mode = "auto"
	// ModeNetfilter attaches at NF_INET_POST_ROUTING for IPv4 and IPv6 (kernel >= 6.4).
	ModeNetfilter Mode = "netfilter"
	// ModeTC attaches at tc, per interface: tcx links on kernel >= 6.6, else
	// clsact filters (AttachTCEgress, AttachTC).
	ModeTC Mode = "tc"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxFlows = 131072
	DefaultPinDir   = "/sys/fs/bpf/zonetoll"
	// DefaultPriority runs the hook before source NAT (NF_IP_PRI_NAT_SRC =
	// 100), so pod addresses are seen before masquerading.
	DefaultPriority int32 = 90
)

// natSrcPriority is NF_IP_PRI_NAT_SRC: at or after it, source addresses may
// already be rewritten to the node's.
const natSrcPriority = 100

// Config sets up a Counter. Zero fields take the defaults above.
type Config struct {
	// MaxFlows is the number of distinct address pairs one drain interval
	// can hold, per address family: IPv4 and IPv6 pairs have maps of their
	// own (two each, for the drain switch), each of MaxFlows entries.
	// Packets of new pairs beyond it are counted as insert failures, not as
	// flows.
	MaxFlows uint32
	// PinDir is a directory on bpffs where maps are pinned.
	PinDir string
	// Priority of the netfilter hook; must be below 100 (source NAT). Two
	// BPF programs at the same hook and priority are refused (EBUSY).
	Priority int32
	// Mode of attachment; ModeAuto probes the kernel.
	Mode Mode

	// classic makes tc mode load and attach as on kernels before tcx
	// (clsact filters), for tests on newer kernels.
	classic bool
}

func (c Config) withDefaults() Config {
	if c.MaxFlows == 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.PinDir == "" {
		c.PinDir = DefaultPinDir
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	return c
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch c.Mode {
	case ModeAuto, ModeNetfilter, ModeTC:
	default:
		return fmt.Errorf("mode %q: must be one of auto, netfilter, tc", c.Mode)
	}
	// INT_MIN is refused by the kernel; >= 100 would see NATed addresses.
	if c.Priority == math.MinInt32 || c.Priority >= natSrcPriority {
		return fmt.Errorf("priority %d: must be between %d and %d (below source NAT)", c.Priority, math.MinInt32+1, natSrcPriority-1)
	}
	return nil
}

// Key is a flow's address pair. IPv4 addresses are IPv4-mapped
// (::ffff:a.b.c.d). Its memory layout is the IPv6 map key's, so those
// batches are read without conversion.
type Key struct {
	Src, Dst [16]byte
}

// key4 is the IPv4 map key: addresses in network byte order.
type key4 struct {
	Src, Dst [4]byte
}

func (k key4) key() Key {
	return Key{Src: mapped(k.Src), Dst: mapped(k.Dst)}
}

func mapped(a [4]byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]}
}

// decode turns the program's packed value into a Value. Packets are the
// low 32 bits of PktsSegs plus 2^32 per packet carry (low half of Wraps);
// each packet carry also added one to the segments half, which is taken
// off again, and segment carries out of bit 63 are the high half of Wraps.
// Arithmetic is modulo 2^64, so the subtraction is exact.
func decode(v counterFlowValue) Value {
	pktWraps, segWraps := v.Wraps&math.MaxUint32, v.Wraps>>32
	return Value{
		Bytes:    v.Bytes,
		Packets:  v.PktsSegs&math.MaxUint32 | pktWraps<<32,
		Segments: (v.PktsSegs>>32 | segWraps<<32) - pktWraps,
	}
}

// Value is what the program counted for a Key since the last drain.
type Value struct {
	// Bytes are layer-3 bytes on the wire including IP headers: skb->len, and
	// for a GSO skb the headers each further segment carries (docs/bpf.md,
	// "Bytes on the wire"). IP fragments the node makes are counted as the
	// whole datagram at netfilter and as each fragment in tc mode.
	Bytes uint64
	// Packets counts skbs; a GSO skb is one packet here.
	Packets uint64
	// Segments counts packets on the wire: the GSO segments of an skb, else 1.
	Segments uint64
}

// Stats are cumulative counts of packets the program could not attribute to
// a flow, summed over CPUs. They survive restarts with the pinned maps.
type Stats struct {
	// InsertFailedPackets and InsertFailedBytes: a new flow did not fit the map.
	InsertFailedPackets uint64
	InsertFailedBytes   uint64
	// ParseFailedPackets: the IP header could not be read.
	ParseFailedPackets uint64
}

// DrainStats describes one Drain.
type DrainStats struct {
	// Flows is the number of entries passed to the callback.
	Flows int
	// Batches is the number of batch syscalls.
	Batches int
}

// Counter owns the loaded program, its maps and its links.
type Counter struct {
	cfg  Config
	log  *slog.Logger
	mode Mode

	prog     *ebpf.Program
	index    *ebpf.Map    // active_idx: generation << 1 | side the program writes
	outer    *ebpf.Map    // map-in-map, updated only to wait for a grace period
	flows4   [2]*ebpf.Map // IPv4 pairs, 8-byte keys
	flows6   [2]*ebpf.Map // IPv6 pairs, 32-byte keys
	stats    *ebpf.Map
	replaced []replacedMap // pinned flow maps not reused (MaxFlows changed), drained once
	lock     *os.File      // flock on the pin dir: one counter per set of maps

	mu       sync.Mutex    // serialises Drain and attach/close
	active   int           // index into flows4/flows6 of the maps written
	gen      *generation   // our program's pins: adopted or loaded by us
	claimed  map[hook]bool // adopted links this process attached again
	handover []*generation // a different program still counting until the first Drain
	settled  bool          // the first Drain took over; leftovers are gone
	attached bool          // an Attach call succeeded: adopted links it did not claim are leftovers
	tcx      bool          // tc mode uses tcx links, else clsact filters
	keys4    [][]key4      // per drain walker (drainMap)
	keys6    [][]Key
	values   [][]counterFlowValue
	closed   bool
}

// ErrClosed is returned by methods of a closed Counter.
var ErrClosed = errors.New("counter closed")

// Mode is the attach mode in use (never ModeAuto).
func (c *Counter) Mode() Mode { return c.mode }

// Load loads the program for the configured mode, reusing compatible maps
// pinned in cfg.PinDir or creating and pinning new ones. It does not attach.
func Load(ctx context.Context, cfg Config, log *slog.Logger) (*Counter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating config: %w", err)
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "bpf-counter")
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Before 5.11 the kernel charges BPF maps and programs to RLIMIT_MEMLOCK (64 KiB by default on
	// 5.10), not to the memory cgroup, so loading fails with EPERM; on later kernels this is a no-op.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising the memlock limit (kernels before 5.11 charge BPF memory to it): %w", err)
	}
	mode, tcx, err := resolveMode(cfg.Mode)
	if err != nil {
		return nil, fmt.Errorf("choosing attach mode: %w", err)
	}
	tcx = tcx && !cfg.classic
	log.Info("attach mode chosen", "mode", mode, "configured", cfg.Mode, "tcx", tcx)

	spec, err := loadCounter()
	if err != nil {
		return nil, fmt.Errorf("loading spec: %w", err)
	}
	for _, name := range flowMaps {
		spec.Maps[name].MaxEntries = cfg.MaxFlows
	}
	spec.Maps[counterMapActive].InnerMap.MaxEntries = cfg.MaxFlows
	// Load only the program of the chosen mode: the other may need kernel
	// features this kernel lacks.
	progName := counterProgCountNf
	if mode == ModeTC {
		progName = counterProgCountTc
	}
	for name := range spec.Programs {
		if name != progName {
			delete(spec.Programs, name)
		}
	}
	if mode == ModeTC && !tcx {
		// Kernels before tcx do not know its attach type; clsact filters
		// take any sched_cls program.
		spec.Programs[progName].AttachType = ebpf.AttachNone
	}

	pins, err := openPins(cfg.PinDir, spec, log)
	if err != nil {
		return nil, err
	}
	c, err := load(cfg, log, mode, tcx, spec, progName, pins)
	if err != nil {
		pins.closeMaps()
		pins.closeReplaced()
		pins.lock.Close()
		return nil, err
	}
	return c, nil
}

// load loads spec's maps (reusing pins when they match) and carries out
// plan's decision: adopt the program that counts now when it is the same as
// ours, else load ours as the next generation.
func load(cfg Config, log *slog.Logger, mode Mode, tcx bool, spec *ebpf.CollectionSpec, progName string, pins *pins) (*Counter, error) {
	var cur uint32 // generation << 1 | side, as the running program sees it
	if pins.reuse {
		if err := pins.maps[counterMapActiveIdx].Lookup(uint32(0), &cur); err != nil {
			return nil, fmt.Errorf("reading the pinned active index: %w", err)
		}
	}
	gens, err := openGenerations(cfg.PinDir, log)
	if err != nil {
		return nil, err
	}
	// A failure closes every generation's links (c.Close, where c exists,
	// closes its own again, which is harmless); on success each is c's or
	// removed.
	loaded := false
	defer func() {
		if !loaded {
			closeGenerations(gens)
		}
	}()
	pinned := make([]pinnedGen, len(gens))
	for i, g := range gens {
		pinned[i] = pinnedGen{gen: g.gen, id: g.id, links: g.hooks()}
	}
	id := programID(_CounterBytes, progName, mode, cfg.Priority)
	p := plan(pinned, pins.reuse, cur>>1, id, true)
	var prog *ebpf.Program
	if p.action == startAdopt {
		live := gens[p.live]
		prog, err = ebpf.LoadPinnedProgram(filepath.Join(live.dir, progPin), nil)
		if err != nil {
			log.Warn("cannot open the running program's pin: loading ours beside it", "dir", live.dir, "error", err)
			p = plan(pinned, pins.reuse, cur>>1, id, false)
		} else {
			delete(spec.Programs, progName)
		}
	}
	if p.action != startAdopt {
		if err := patchGeneration(spec.Programs[progName], p.gen); err != nil {
			return nil, err
		}
	}

	var opts ebpf.CollectionOptions
	if pins.reuse {
		opts.MapReplacements = pins.maps
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	pins.closeMaps() // collections hold their own clones
	if err != nil {
		if prog != nil {
			prog.Close()
		}
		return nil, fmt.Errorf("loading objects: %w", err)
	}
	if p.action != startAdopt {
		prog = coll.Programs[progName]
	}
	for _, i := range p.stale {
		g := gens[i]
		log.Info("removing hooks of a program that no longer counts", "dir", g.dir, "hooks", g.hooks())
		if err := g.remove(); err != nil {
			coll.Close()
			return nil, fmt.Errorf("removing generation %d: %w", g.gen, err)
		}
	}

	c := &Counter{
		cfg:      cfg,
		log:      log,
		mode:     mode,
		tcx:      tcx,
		prog:     prog,
		index:    coll.Maps[counterMapActiveIdx],
		claimed:  map[hook]bool{},
		outer:    coll.Maps[counterMapActive],
		flows4:   [2]*ebpf.Map{coll.Maps[counterMapFlows4A], coll.Maps[counterMapFlows4B]},
		flows6:   [2]*ebpf.Map{coll.Maps[counterMapFlows6A], coll.Maps[counterMapFlows6B]},
		stats:    coll.Maps[counterMapStats],
		replaced: pins.replaced,
		lock:     pins.lock,
		active:   int(cur & 1),
	}
	// Drain walks each map with up to maxWalkers threads; together their
	// buffers hold maxBatch entries, as one walker's did.
	walkers := min(runtime.GOMAXPROCS(0), maxWalkers)
	batch := min(int(cfg.MaxFlows), maxBatch/walkers)
	for range walkers {
		c.keys4 = append(c.keys4, make([]key4, batch))
		c.keys6 = append(c.keys6, make([]Key, batch))
		c.values = append(c.values, make([]counterFlowValue, batch))
	}

	if !pins.reuse {
		if err := c.pin(); err != nil {
			_ = c.Close()
			return nil, err
		}
		log.Info("created and pinned maps", "dir", cfg.PinDir, "max_flows", cfg.MaxFlows)
	} else {
		log.Info("reusing pinned maps", "dir", cfg.PinDir, "max_flows", cfg.MaxFlows)
	}

	switch p.action {
	case startAdopt:
		live := gens[p.live]
		c.gen = live
		log.Info("adopting the running program and its hooks: the same program, nothing changes hands",
			"generation", live.gen, "program", id, "hooks", live.hooks())
		loaded = true
		return c, nil
	case startTakeOver:
		live := gens[p.live]
		log.Info("the previous program is attached nowhere: taking over at once", "running_generation", live.gen, "generation", p.gen)
		if err := live.remove(); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("removing generation %d: %w", live.gen, err)
		}
	case startHandOver:
		live := gens[p.live]
		c.handover = []*generation{live}
		log.Info("a different program is counting: attaching ours beside it, taking over at the first drain",
			"running_generation", live.gen, "running_program", live.id, "generation", p.gen, "program", id)
	}
	c.gen = newGeneration(p.gen, id, filepath.Join(cfg.PinDir, genDirName(p.gen, id)))
	if err := os.Mkdir(c.gen.dir, 0o700); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("creating the program's pin dir: %w", err)
	}
	if err := prog.Pin(filepath.Join(c.gen.dir, progPin)); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("pinning the program: %w", err)
	}
	if p.action != startHandOver {
		// Nothing counts yet: ours owns the maps from its first packet.
		if err := c.index.Update(uint32(0), c.gen.gen<<1|uint32(c.active), ebpf.UpdateAny); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("setting the active index: %w", err)
		}
	}
	loaded = true
	return c, nil
}

// Stats sums the per-CPU failure counters.
func (c *Counter) Stats() (Stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Stats{}, ErrClosed
	}
	var per []counterCounterStats
	if err := c.stats.Lookup(uint32(0), &per); err != nil {
		return Stats{}, fmt.Errorf("reading stats: %w", err)
	}
	var s Stats
	for _, p := range per {
		s.InsertFailedPackets += p.InsertFailedPackets
		s.InsertFailedBytes += p.InsertFailedBytes
		s.ParseFailedPackets += p.ParseFailedPackets
	}
	return s, nil
}

// InsertFailures is the number of packets not counted because the flow map
// was full, summed over CPUs since the maps were created.
func (c *Counter) InsertFailures() (uint64, error) {
	s, err := c.Stats()
	return s.InsertFailedPackets, err
}

// Close releases the process's handles on the program, maps and links. The
// pinned links and the recorded clsact filters (the tc fallback without
// tcx) stay attached and keep counting into the pinned maps, so the next
// Load (a restart or an upgrade) finds every byte. Uninstall removes
// everything.
func (c *Counter) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeLocked()
}

// closeLocked is Close with c.mu held.
func (c *Counter) closeLocked() error {
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, g := range append([]*generation{c.gen}, c.handover...) {
		if g != nil {
			if err := g.close(); err != nil {
				errs = append(errs, fmt.Errorf("closing generation %d: %w", g.gen, err))
			}
		}
	}
	for _, l := range c.replaced {
		errs = append(errs, l.m.Close())
	}
	c.replaced = nil
	for _, cl := range []interface{ Close() error }{c.prog, c.outer, c.flows4[0], c.flows4[1], c.flows6[0], c.flows6[1], c.stats, c.index} {
		if cl != nil {
			errs = append(errs, cl.Close())
		}
	}
	// Release the pin dir last, after the links are gone.
	if c.lock != nil {
		errs = append(errs, c.lock.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing the counter: %w", err)
	}
	return nil
}
