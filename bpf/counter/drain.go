package counter

import (
	"context"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// maxBatch bounds the entries read per syscall. It must be at least the
// largest hash bucket (else ENOSPC) and is large enough that syscall overhead
// is small next to copying entries.
const maxBatch = 8192

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

// drainMap reads and deletes m in batches of len(keys), handing each entry
// to emit.
func drainMap[K, V any](ctx context.Context, m *ebpf.Map, keys []K, values []V, emit func(K, V), st *DrainStats) error {
	var cursor ebpf.MapBatchCursor
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := m.BatchLookupAndDelete(&cursor, keys, values, nil)
		st.Batches++
		for i := range n {
			emit(keys[i], values[i])
		}
		st.Flows += n
		// The last batch reports ErrKeyNotExist and may still carry entries.
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("batch lookup and delete: %w", err)
		}
	}
}
