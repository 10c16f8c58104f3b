package counter

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// flowMaps are the flow maps, each sized by Config.MaxFlows.
var flowMaps = []string{counterMapFlows4A, counterMapFlows4B, counterMapFlows6A, counterMapFlows6B}

// pinnedMaps are the maps kept in bpffs; all or none of them are reused.
var pinnedMaps = append(slices.Clone(flowMaps), counterMapActive, counterMapActiveIdx, counterMapStats)

// layout is how a flow map's key and value are read.
type layout int

const (
	layout4 layout = iota // key4, packed value
	layout6               // Key, packed value
)

// flowLayouts are the flow maps a pin dir holds, by pinned name, with their
// key and value sizes: a pinned flow map that is not reused (MaxFlows
// changed) is still drained once when it has them.
var flowLayouts = map[string]struct {
	layout     layout
	key, value uint32
}{
	counterMapFlows4A: {layout4, 8, 24},
	counterMapFlows4B: {layout4, 8, 24},
	counterMapFlows6A: {layout6, 32, 24},
	counterMapFlows6B: {layout6, 32, 24},
}

// replacedMap is a flow map left by an earlier process whose maps cannot be
// reused (another MaxFlows); Drain reads it once.
type replacedMap struct {
	m      *ebpf.Map
	layout layout
}

// ErrPinDirBusy means another process (an agent still running, or one
// starting twice) holds the pin directory. Two counters on the same maps
// would count every packet twice.
var ErrPinDirBusy = errors.New("pin dir in use by another process")

// lockPinDir takes an exclusive, non-blocking flock on dir, held until the
// returned file is closed (or the process exits).
func lockPinDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("opening pin dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", dir, ErrPinDirBusy)
		}
		return nil, fmt.Errorf("locking pin dir: %w", err)
	}
	return f, nil
}

type pins struct {
	lock     *os.File
	reuse    bool
	maps     map[string]*ebpf.Map // handles to close after loading
	replaced []replacedMap        // flow maps not reused, to drain once
}

func (p *pins) closeMaps() {
	for _, m := range p.maps {
		_ = m.Close()
	}
}

func (p *pins) closeReplaced() {
	for _, l := range p.replaced {
		_ = l.m.Close()
	}
}

// openPins opens the maps pinned in dir. When all exist and match spec they
// are reused. When some are missing or do not match (for example MaxFlows
// changed), the flow maps whose keys and values we still read are kept open
// as replaced maps so their counts are drained once and not lost, and all
// pins are removed so new maps can be pinned in their place.
func openPins(dir string, spec *ebpf.CollectionSpec, log *slog.Logger) (*pins, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating pin dir: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return nil, fmt.Errorf("checking pin dir: %w", err)
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return nil, fmt.Errorf("pin dir %s is not on bpffs (mount -t bpf bpf /sys/fs/bpf)", dir)
	}

	lock, err := lockPinDir(dir)
	if err != nil {
		return nil, err
	}
	p := &pins{lock: lock, maps: map[string]*ebpf.Map{}}
	var mismatch []error
	for _, name := range pinnedMaps {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		switch {
		case errors.Is(err, os.ErrNotExist):
			mismatch = append(mismatch, fmt.Errorf("%s: not pinned", name))
			continue
		case err != nil:
			p.closeMaps()
			lock.Close()
			return nil, fmt.Errorf("opening pinned map %s: %w", name, err)
		}
		p.maps[name] = m
		if err := spec.Maps[name].Compatible(m); err != nil {
			mismatch = append(mismatch, fmt.Errorf("%s: %w", name, err))
		}
	}
	switch {
	case len(p.maps) == 0:
		return p, nil
	case len(mismatch) == 0:
		p.reuse = true
		return p, nil
	}

	log.Warn("pinned maps do not match config: draining them once and replacing them",
		"dir", dir, "reason", errors.Join(mismatch...).Error())
	for name, m := range p.maps {
		if err := m.Unpin(); err != nil {
			p.closeMaps()
			p.closeReplaced()
			lock.Close()
			return nil, fmt.Errorf("removing incompatible pin %s: %w", name, err)
		}
		want, isFlows := flowLayouts[name]
		if isFlows && m.Type() == ebpf.Hash && m.KeySize() == want.key && m.ValueSize() == want.value {
			p.replaced = append(p.replaced, replacedMap{m: m, layout: want.layout})
			delete(p.maps, name)
			continue
		}
		if isFlows {
			log.Warn("discarding pinned flow map of unknown layout", "map", name,
				"key_size", m.KeySize(), "value_size", m.ValueSize())
		}
	}
	p.closeMaps()
	p.maps = nil
	return p, nil
}

func (c *Counter) pin() error {
	objs := map[string]*ebpf.Map{
		counterMapFlows4A: c.flows4[0], counterMapFlows4B: c.flows4[1],
		counterMapFlows6A: c.flows6[0], counterMapFlows6B: c.flows6[1],
		counterMapActive: c.outer, counterMapActiveIdx: c.index, counterMapStats: c.stats,
	}
	for _, name := range pinnedMaps {
		if err := objs[name].Pin(filepath.Join(c.cfg.PinDir, name)); err != nil {
			return fmt.Errorf("pinning map %s: %w", name, err)
		}
	}
	return nil
}

// Uninstall detaches every hook pinned in c's pin dir, removes the pins of
// the program and the maps and closes c. What was counted and not drained is
// lost: for removing the agent from a node, not for a restart (which only
// Closes).
func (c *Counter) Uninstall() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	var errs []error
	for _, g := range append([]*generation{c.gen}, c.handover...) {
		if g != nil {
			errs = append(errs, g.remove())
		}
	}
	c.gen, c.handover = nil, nil
	// Still holding the pin dir lock: nobody else pins meanwhile.
	errs = append(errs, removePins(c.cfg.PinDir, c.log))
	errs = append(errs, c.closeLocked())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("uninstalling from %s: %w", c.cfg.PinDir, err)
	}
	return nil
}

// Uninstall detaches every hook pinned in dir and removes the pins of its
// programs and maps, for removing the agent from a node. It fails with
// ErrPinDirBusy while an agent runs on dir. A dir that does not exist is
// already uninstalled.
func Uninstall(dir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	lock, err := lockPinDir(dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	return removePins(dir, log)
}

// removePins removes every generation (detaching its links) and every map
// pin in dir. The caller holds the pin dir lock or knows nobody does.
func removePins(dir string, log *slog.Logger) error {
	gens, err := openGenerations(dir, log)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range gens {
		if err := g.remove(); err != nil {
			errs = append(errs, fmt.Errorf("removing generation %d: %w", g.gen, err))
		}
	}
	for _, name := range pinnedMaps {
		err := os.Remove(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpinning map %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
