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
// It switches the program to the other flow map first, waits until no
// program still runs with the old one (an RCU grace period), and then reads
// and deletes the map no longer written, so nothing is lost between read and
// delete. Flow maps left with entries by an earlier process (crash, restart,
// changed size) are drained too, so fn may see the same Key more than once in
// one Drain and must add values up.
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

	for len(c.legacy) > 0 {
		m := c.legacy[0]
		if err := c.drainMap(ctx, m, fn, &st); err != nil {
			return st, fmt.Errorf("draining previous flow map: %w", err)
		}
		_ = m.Close()
		c.legacy = c.legacy[1:]
	}

	// The inactive map is empty unless a drain was interrupted.
	inactive := 1 - c.active
	if err := c.drainMap(ctx, c.flows[inactive], fn, &st); err != nil {
		return st, fmt.Errorf("draining inactive flow map: %w", err)
	}
	if err := c.index.Set(uint32(inactive)); err != nil {
		return st, fmt.Errorf("switching active flow map: %w", err)
	}
	// The kernel waits an RCU grace period after a syscall update of a
	// map-in-map; programs run inside RCU read-side sections, so when this
	// returns none still writes the old map. The slot also shows which map
	// is active to anyone inspecting the pins.
	if err := c.outer.Update(uint32(0), c.flows[inactive], ebpf.UpdateAny); err != nil {
		return st, fmt.Errorf("waiting for programs to leave the old flow map: %w", err)
	}
	c.active, inactive = inactive, c.active
	if err := c.drainMap(ctx, c.flows[inactive], fn, &st); err != nil {
		return st, fmt.Errorf("draining flow map: %w", err)
	}
	return st, nil
}

func (c *Counter) drainMap(ctx context.Context, m *ebpf.Map, fn func(Key, Value), st *DrainStats) error {
	var cursor ebpf.MapBatchCursor
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := m.BatchLookupAndDelete(&cursor, c.keys, c.values, nil)
		st.Batches++
		for i := range n {
			fn(c.keys[i], c.values[i])
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
