package counter

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// maxBatch bounds the entries read per syscall. It must be at least the
// largest hash bucket (else ENOSPC) and is large enough that syscall overhead
// is small next to copying entries.
const maxBatch = 8192

// maxWalkers bounds the threads that read and delete one flow map at once.
const maxWalkers = 4

// Drain hands every counted flow to fn and removes it from the kernel.
//
// It switches the program to the other flow maps first (IPv4 and IPv6
// together), waits until no program still runs with the old ones (an RCU
// grace period), and then reads and deletes the maps no longer written, so
// nothing is lost between read and delete. Flow maps left with entries by an
// earlier process (crash, restart, changed size) are drained too,
// so fn may see the same Key more than once in one Drain and must add values
// up.
//
// If ctx is cancelled, Drain stops between batches; what it did not read stays
// in the kernel and is returned by the next Drain.
func (c *Counter) Drain(ctx context.Context, fn func(Key, Value)) (DrainStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var st DrainStats
	if c.closed {
		return st, ErrClosed
	}

	for len(c.replaced) > 0 {
		l := c.replaced[0]
		if err := c.drainReplaced(ctx, l, fn, &st); err != nil {
			return st, fmt.Errorf("draining previous flow map: %w", err)
		}
		_ = l.m.Close()
		c.replaced = c.replaced[1:]
	}

	// The inactive maps are empty unless a drain was interrupted.
	inactive := 1 - c.active
	if err := c.drainPair(ctx, inactive, fn, &st); err != nil {
		return st, fmt.Errorf("draining inactive flow maps: %w", err)
	}
	// One store switches sides and, on the first Drain after an upgrade,
	// hands counting from the old program to ours.
	if err := c.index.Update(uint32(0), c.gen.gen<<1|uint32(inactive), ebpf.UpdateAny); err != nil {
		return st, fmt.Errorf("switching active flow maps: %w", err)
	}
	// The programs write the other side from now on, whatever happens below:
	// a Drain that fails after this point must not leave the next one
	// draining the side being written.
	c.active, inactive = inactive, c.active
	// The kernel waits an RCU grace period after a syscall update of a
	// map-in-map; programs run inside RCU read-side sections, so when this
	// returns none still writes the old maps of either family. The slot also
	// shows which maps are active to anyone inspecting the pins.
	if err := c.outer.Update(uint32(0), c.flows6[inactive], ebpf.UpdateAny); err != nil {
		return st, fmt.Errorf("waiting for programs to leave the old flow maps: %w", err)
	}
	if !c.settled {
		if err := c.settle(); err != nil {
			return st, err
		}
	}
	if err := c.drainPair(ctx, inactive, fn, &st); err != nil {
		return st, fmt.Errorf("draining flow maps: %w", err)
	}
	return st, nil
}

// settle removes, once the first switch has put our generation in charge,
// the program it took over from and, if this process attached anywhere, the
// adopted links it did not attach again (a netns or interface it no longer
// counts).
func (c *Counter) settle() error {
	var errs []error
	for _, g := range c.handover {
		c.log.Info("took over counting: removing the previous program's hooks", "generation", g.gen, "program", g.id, "hooks", g.hooks())
		errs = append(errs, g.remove())
	}
	c.handover = nil
	var hooks []hook
	for h := range c.gen.links {
		hooks = append(hooks, h)
	}
	for h := range c.gen.filters {
		hooks = append(hooks, h)
	}
	for _, h := range hooks {
		// A process that attaches nothing (a tool that only drains) leaves
		// the hooks alone.
		if c.attached && !c.claimed[h] {
			c.log.Info("removing an adopted hook this process does not attach", "hook", h.String())
			errs = append(errs, c.gen.detach(h))
		}
	}
	c.settled = true
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing the hooks taken over: %w", err)
	}
	return nil
}

// drainPair drains the IPv4 and IPv6 maps of one side of the switch.
func (c *Counter) drainPair(ctx context.Context, side int, fn func(Key, Value), st *DrainStats) error {
	if err := drainMap(ctx, c.flows4[side], c.keys4, c.values, func(k key4, v counterFlowValue) {
		fn(k.key(), decode(v))
	}, st); err != nil {
		return fmt.Errorf("ipv4: %w", err)
	}
	if err := drainMap(ctx, c.flows6[side], c.keys6, c.values, func(k Key, v counterFlowValue) {
		fn(k, decode(v))
	}, st); err != nil {
		return fmt.Errorf("ipv6: %w", err)
	}
	return nil
}

func (c *Counter) drainReplaced(ctx context.Context, l replacedMap, fn func(Key, Value), st *DrainStats) error {
	if l.layout == layout4 {
		return drainMap(ctx, l.m, c.keys4, c.values, func(k key4, v counterFlowValue) {
			fn(k.key(), decode(v))
		}, st)
	}
	return drainMap(ctx, l.m, c.keys6, c.values, func(k Key, v counterFlowValue) {
		fn(k, decode(v))
	}, st)
}

// drainMap reads and deletes m, handing each entry to emit. It splits the
// map's buckets into len(keys) ranges and walks them at once, one walker per
// range with its own buffers (keys[i], values[i]), each reading and deleting
// in batches of len(keys[i]): a batch costs the kernel a bucket lock and two
// copies per non-empty bucket, which walkers on different CPUs pay in parallel.
//
// Each entry is read and deleted in one step under its bucket's lock, so
// walkers that meet in a bucket cannot both return an entry, and since nothing
// writes m any more (Drain waited for the programs to leave it), a bucket a
// walker has passed stays empty: every entry is emitted exactly once. emit is
// never called concurrently.
func drainMap[K any](ctx context.Context, m *ebpf.Map, keys [][]K, values [][]counterFlowValue, emit func(K, counterFlowValue), st *DrainStats) error {
	// A hash map has max_entries rounded up to a power of two buckets
	// (htab_map_alloc). Were that ever not so, the ranges would only be
	// uneven: the last walker goes on to the end of the map.
	buckets := uint64(1)
	for buckets < uint64(m.MaxEntries()) {
		buckets <<= 1
	}
	walkers := min(len(keys), len(values))
	var mu sync.Mutex
	walk := func(i int) error {
		from := uint32(buckets * uint64(i) / uint64(walkers))
		to := uint32(buckets * uint64(i+1) / uint64(walkers))
		last := i == walkers-1
		return walkBuckets(ctx, m, from, to, last, keys[i], values[i], func(ks []K, vs []counterFlowValue) {
			mu.Lock()
			defer mu.Unlock()
			st.Batches++
			st.Flows += len(ks)
			for j := range ks {
				emit(ks[j], vs[j])
			}
		})
	}
	if walkers == 1 {
		return walk(0)
	}
	errs := make([]error, walkers)
	var wg sync.WaitGroup
	for i := range walkers {
		wg.Go(func() { errs[i] = walk(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// batchAttr is the part of union bpf_attr that the BPF_MAP_*_BATCH commands
// read.
type batchAttr struct {
	InBatch, OutBatch uint64 // pointers to the cursor: a hash map's bucket index (u32)
	Keys, Values      uint64
	Count, MapFd      uint32
	ElemFlags, Flags  uint64
}

// walkBuckets reads and deletes m's entries from bucket from on, in batches
// of len(keys), until a batch ends at or past bucket to (or, for the last
// range, at the end of the map). cilium/ebpf's BatchLookupAndDelete cannot
// start at a bucket (its cursor is opaque), so this is the system call itself.
func walkBuckets[K any](ctx context.Context, m *ebpf.Map, from, to uint32, last bool, keys []K, values []counterFlowValue, got func([]K, []counterFlowValue)) error {
	if len(keys) == 0 || len(values) < len(keys) {
		return fmt.Errorf("walking map buckets: %d keys and %d values of buffer", len(keys), len(values))
	}
	if want := uintptr(m.KeySize()); unsafe.Sizeof(keys[0]) != want {
		return fmt.Errorf("walking map buckets: key of %d bytes, the map's are %d", unsafe.Sizeof(keys[0]), want)
	}
	if want := uintptr(m.ValueSize()); unsafe.Sizeof(values[0]) != want {
		return fmt.Errorf("walking map buckets: value of %d bytes, the map's are %d", unsafe.Sizeof(values[0]), want)
	}
	in, out := from, uint32(0)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		attr := batchAttr{
			InBatch:  uint64(uintptr(unsafe.Pointer(&in))),
			OutBatch: uint64(uintptr(unsafe.Pointer(&out))),
			Keys:     uint64(uintptr(unsafe.Pointer(&keys[0]))),
			Values:   uint64(uintptr(unsafe.Pointer(&values[0]))),
			Count:    uint32(len(keys)),
			MapFd:    uint32(m.FD()),
		}
		_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_LOOKUP_AND_DELETE_BATCH, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		runtime.KeepAlive(keys)
		runtime.KeepAlive(values)
		runtime.KeepAlive(m)
		n := int(attr.Count) // the kernel writes back how many it filled
		if n > 0 {
			got(keys[:n], values[:n])
		}
		switch {
		case errno == unix.ENOENT: // the end of the map; the last batch may still carry entries
			return nil
		case errno != 0:
			return fmt.Errorf("batch lookup and delete from bucket %d: %w", in, errno)
		case !last && out >= to:
			return nil
		}
		in = out
	}
}
