package counter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/bpf/kerneltest"
)

// genDirs lists the generation directories pinned in dir.
func genDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), genDirPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// loadAttached loads a counter on cfg and attaches it in the node namespace:
// netfilter, or in tc mode (tcx, or clsact with cfg.classic) pod a's veth,
// whose ingress on the node sees all pod a sends. The caller closes it.
func (tp *topo) loadAttached(cfg Config) *Counter {
	t := tp.t
	t.Helper()
	requireMode(t, cfg.Mode)
	c, err := Load(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("loading counter: %v", err)
	}
	attach := func() error { return c.AttachNetfilter(nsPath(tp.node)) }
	if cfg.Mode == ModeTC {
		attach = func() error { return c.AttachTC(nsPath(tp.node), "va") }
	}
	if err := attach(); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// pretendOtherVersion renames the pinned generation directories as if an
// older build had loaded them: the next Load sees another program id.
func pretendOtherVersion(t *testing.T, dir string) {
	t.Helper()
	for _, name := range genDirs(t, dir) {
		gen, _, ok := parseGenDir(name)
		if !ok {
			t.Fatalf("unparsable generation dir %s", name)
		}
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, genDirName(gen, "0ldversi0n00"))); err != nil {
			t.Fatal(err)
		}
	}
}

// collector adds drained flows up, safe for concurrent drains.
type collector struct {
	mu    sync.Mutex
	total map[Key]Value
}

func (c *collector) add(k Key, v Value) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total == nil {
		c.total = map[Key]Value{}
	}
	c.total[k] = addValue(c.total[k], v)
}

// TestRestartUnderTrafficLosesNothing stops the counter and starts a new one
// on the same pin dir while pods keep sending, as a DaemonSet rollout does.
// With the same program the new process adopts the running hooks and the
// count is exact to the byte; with another program (here: another priority,
// which is part of what the program id covers) it attaches beside the old
// one and takes over at its first drain, where at most the packets inside the
// hook chain at that instant (one per CPU) can be counted twice or missed.
func TestRestartUnderTrafficLosesNothing(t *testing.T) {
	kerneltest.Require(t)
	for _, tc := range []struct {
		name          string
		mode          Mode
		classic       bool  // tc mode with clsact filters, as before kernel 6.6
		second        int32 // priority of the second process
		newVersion    bool  // the second process runs another build
		adopt         bool
		maxDifference uint64 // packets
	}{
		{"same program adopts the running hooks", ModeNetfilter, false, DefaultPriority, false, true, 0},
		{"upgrade hands over at the first drain", ModeNetfilter, false, DefaultPriority, true, false, uint64(runtime.NumCPU())},
		{"another priority hands over at the first drain", ModeNetfilter, false, DefaultPriority - 10, false, false, uint64(runtime.NumCPU())},
		{"tcx: same program adopts the running links", ModeTC, false, DefaultPriority, false, true, 0},
		{"tcx: upgrade hands over at the first drain", ModeTC, false, DefaultPriority, true, false, uint64(runtime.NumCPU())},
		{"clsact: same program adopts the running filter", ModeTC, true, DefaultPriority, false, true, 0},
		{"clsact: upgrade hands over at the first drain", ModeTC, true, DefaultPriority, true, false, uint64(runtime.NumCPU())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			dir := kerneltest.PinDir(t)
			load := func(prio int32) *Counter {
				return tp.loadAttached(Config{MaxFlows: 1024, PinDir: dir, Mode: tc.mode, Priority: prio, classic: tc.classic})
			}
			var got collector
			before := tp.quiesce()
			first := load(DefaultPriority)
			firstGen := genDirs(t, dir)

			var wg sync.WaitGroup
			wg.Go(func() { tp.sendUDP(false, 40000, 18, 7001, 7002, 7003) })
			wg.Go(func() { tp.sendUDP(true, 40000, 18, 7001, 7002, 7003) })
			time.Sleep(50 * time.Millisecond)
			if _, err := first.Drain(context.Background(), got.add); err != nil {
				t.Fatal(err)
			}
			if err := first.Close(); err != nil {
				t.Fatalf("closing the first counter: %v", err)
			}
			if tc.newVersion {
				pretendOtherVersion(t, dir)
				firstGen = genDirs(t, dir)
			}
			gapStart := tp.snapshot()
			// No process runs: the pinned hooks must go on counting.
			time.Sleep(50 * time.Millisecond)
			second := load(tc.second)
			t.Cleanup(func() { second.Close() })
			gapEnd := tp.snapshot()
			if gapEnd.forwarded == gapStart.forwarded {
				t.Fatalf("no packet was forwarded while no counter ran: the test did not exercise the restart")
			}
			gens := genDirs(t, dir)
			switch {
			case tc.adopt && !slices.Equal(gens, firstGen):
				t.Errorf("same program: generations %v after the restart, want the first one's %v kept", gens, firstGen)
			case !tc.adopt && len(gens) != 2:
				t.Errorf("upgrade: generations %v before the first drain, want the running one and the new one", gens)
			}
			if want := 1 + boolToInt(!tc.adopt); tc.classic && tp.classicFilters("va") != want {
				t.Errorf("%d clsact filters on va before the first drain, want %d", tp.classicFilters("va"), want)
			}
			drains := 0
			for {
				if _, err := second.Drain(context.Background(), got.add); err != nil {
					t.Fatal(err)
				}
				drains++
				if drains == 1 && !tc.adopt {
					if gens := genDirs(t, dir); len(gens) != 1 || slices.Equal(gens, firstGen) {
						t.Errorf("upgrade: generations %v after the first drain, want only the new one", gens)
					}
					if tc.classic && tp.classicFilters("va") != 1 {
						t.Errorf("%d clsact filters on va after the hand-over, want only the new program's", tp.classicFilters("va"))
					}
					// The old program's link at the default priority is gone.
					if tc.mode == ModeNetfilter && tc.second != DefaultPriority {
						if err := kerneltest.NetfilterHookFree(nsPath(tp.node), DefaultPriority); err != nil {
							t.Errorf("attaching at the old program's priority after the hand-over: %v", err)
						}
					}
				}
				if drains >= 5 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			afterDrains := tp.snapshot()
			wg.Wait()
			after := tp.quiesce()
			if afterDrains.forwarded == after.forwarded {
				t.Logf("traffic ended before the second counter's drains were done")
			}
			for k, v := range drainAll(t, second) {
				got.add(k, v)
			}

			sum := tp.podFlows(t, got.total)
			pkts, bytes := forwardedBytes(t, before, after)
			diff := max(sum.Packets, pkts) - min(sum.Packets, pkts)
			if diff > tc.maxDifference {
				t.Errorf("counted %d packets / %d bytes across the restart, node forwarded %d / %d (difference %d, allowed %d)",
					sum.Packets, sum.Bytes, pkts, bytes, diff, tc.maxDifference)
			}
			// Every datagram here is a 64-byte frame: at most 66 bytes at layer 3 (IPv6).
			if bdiff := max(sum.Bytes, bytes) - min(sum.Bytes, bytes); bdiff > 66*tc.maxDifference {
				t.Errorf("counted %d bytes across the restart, node forwarded %d (difference %d, allowed %d)",
					sum.Bytes, bytes, bdiff, 66*tc.maxDifference)
			}
			t.Logf("%d packets, %d bytes; %d packets forwarded while no counter ran", sum.Packets, sum.Bytes, gapEnd.forwarded-gapStart.forwarded)
		})
	}
}

// TestUpgradeThatDiesBeforeTakingOverChangesNothing: a new program that is
// attached but never drains (its process died) counts nothing, and the next
// start removes it and adopts the program that kept counting.
func TestUpgradeThatDiesBeforeTakingOverChangesNothing(t *testing.T) {
	tp := newTopo(t)
	dir := kerneltest.PinDir(t)
	load := func(prio int32) *Counter {
		return tp.loadAttached(Config{MaxFlows: 1024, PinDir: dir, Mode: ModeNetfilter, Priority: prio})
	}
	before := tp.quiesce()
	c := load(DefaultPriority)
	running := genDirs(t, dir)
	tp.sendUDP(false, 100, 200, 7101)
	c.Close()
	c = load(DefaultPriority - 10) // the upgrade: attached, then gone without a drain
	tp.sendUDP(true, 200, 300, 7101)
	c.Close()
	c = load(DefaultPriority)
	t.Cleanup(func() { c.Close() })
	if gens := genDirs(t, dir); !slices.Equal(gens, running) {
		t.Errorf("generations %v after the third start, want the running %v adopted and the dead upgrade removed", gens, running)
	}
	tp.sendUDP(false, 300, 400, 7101)
	after := tp.quiesce()
	got := tp.podFlows(t, drainAll(t, c))
	pkts, bytes := forwardedBytes(t, before, after)
	if got.Packets != pkts || got.Bytes != bytes || pkts != 600 {
		t.Errorf("counted %d packets / %d bytes, node forwarded %d / %d (sent 600)", got.Packets, got.Bytes, pkts, bytes)
	}
	if err := kerneltest.NetfilterHookFree(nsPath(tp.node), DefaultPriority-10); err != nil {
		t.Errorf("the dead upgrade's link is still attached: %v", err)
	}
}

// TestUninstallDetachesEverything: Close leaves the hooks counting, Uninstall
// removes them and every pin.
func TestUninstallDetachesEverything(t *testing.T) {
	kerneltest.Require(t)
	requireMode(t, ModeNetfilter)
	tp := newTopo(t)
	dir := kerneltest.PinDir(t)
	c, err := Load(context.Background(), Config{MaxFlows: 64, PinDir: dir, Mode: ModeNetfilter}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AttachNetfilter(nsPath(tp.node)); err != nil {
		c.Close()
		t.Fatal(err)
	}
	if err := Uninstall(dir, nil); !errors.Is(err, ErrPinDirBusy) {
		t.Errorf("Uninstall while a counter runs = %v, want ErrPinDirBusy", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := kerneltest.NetfilterHookFree(nsPath(tp.node), DefaultPriority); err == nil {
		t.Errorf("attaching at the counter's priority after Close succeeded: its hook should still be attached")
	}
	if err := Uninstall(dir, nil); err != nil {
		t.Fatalf("uninstalling: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("pins left after Uninstall: %v", ents)
	}
	if err := kerneltest.NetfilterHookFree(nsPath(tp.node), DefaultPriority); err != nil {
		t.Errorf("the counter's hook is still attached after Uninstall: %v", err)
	}
	if err := Uninstall(filepath.Join(dir, "never-created"), nil); err != nil {
		t.Errorf("Uninstall of a dir that does not exist = %v, want nil", err)
	}
}

// TestClassicFiltersOutliveClose: a clsact filter, which has no link to
// pin, stays after Close like a pinned link, keeps counting while no process
// runs, and is found again by DetachTC of the next process and by Uninstall.
func TestClassicFiltersOutliveClose(t *testing.T) {
	tp := newTopo(t)
	dir := kerneltest.PinDir(t)
	cfg := Config{MaxFlows: 1024, PinDir: dir, Mode: ModeTC, classic: true}
	before := tp.quiesce()
	c := tp.loadAttached(cfg)
	if err := c.AttachTC(nsPath(tp.node), "vb"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tp.classicFilters("va") + tp.classicFilters("vb"); got != 2 {
		t.Fatalf("%d clsact filters on va and vb after Close, want 2", got)
	}
	tp.sendUDP(false, 100, 200, 7201) // while no process runs
	after := tp.quiesce()

	// The next process drains what the filter counted meanwhile, and
	// DetachTC removes a filter it adopted.
	c, err := Load(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := tp.podFlows(t, drainAll(t, c))
	pkts, bytes := forwardedBytes(t, before, after)
	if got.Packets != pkts || got.Bytes != bytes || pkts != 100 {
		t.Errorf("counted %d packets / %d bytes, node forwarded %d / %d (sent 100)", got.Packets, got.Bytes, pkts, bytes)
	}
	if err := c.DetachTC(nsPath(tp.node), "vb"); err != nil {
		t.Fatal(err)
	}
	if n := tp.classicFilters("vb"); n != 0 {
		t.Errorf("%d clsact filters on vb after DetachTC of the adopted filter, want 0", n)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Uninstall(dir, nil); err != nil {
		t.Fatalf("uninstalling: %v", err)
	}
	if n := tp.classicFilters("va"); n != 0 {
		t.Errorf("%d clsact filters on va after Uninstall, want 0", n)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("pins left after Uninstall: %v", ents)
	}
}

// TestUninstallWhileDraining: Uninstall and Close may race with Drain and
// DetachTC from other goroutines; those return ErrClosed, never touch a
// half-removed counter.
func TestUninstallWhileDraining(t *testing.T) {
	tp := newTopo(t)
	c := tp.loadAttached(Config{MaxFlows: 64, PinDir: kerneltest.PinDir(t), Mode: ModeNetfilter})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				_, err := c.Drain(context.Background(), func(Key, Value) {})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("draining while uninstalling: %v", err)
					return
				}
				if err := c.DetachTC(nsPath(tp.node), "va"); err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("detaching while uninstalling: %v", err)
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	if err := c.Uninstall(); err != nil {
		t.Errorf("uninstalling: %v", err)
	}
	wg.Wait()
}
