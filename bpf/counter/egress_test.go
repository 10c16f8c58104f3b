package counter

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/zonetoll/zonetoll/bpf/kerneltest"
)

// Every packet the node sends leaves through exactly one of its interfaces,
// so tc egress on all of them sees what netfilter sees at POST_ROUTING: the
// same flows, to the byte.
func TestTCEgressCountsSameAsNetfilter(t *testing.T) {
	kerneltest.Require(t)
	for _, flavor := range []string{"tcx", "clsact"} {
		t.Run(flavor, func(t *testing.T) { testTCEgressCountsSameAsNetfilter(t, flavor == "tcx") })
	}
}

func testTCEgressCountsSameAsNetfilter(t *testing.T, tcx bool) {
	tp := newTopo(t)
	nf := loadForTest(t, Config{MaxFlows: 1024, Mode: ModeNetfilter})
	if err := nf.AttachNetfilter(nsPath(tp.node)); err != nil {
		t.Fatal(err)
	}
	dir := pinDir(t)
	tc := loadForTest(t, Config{MaxFlows: 1024, Mode: ModeTC, PinDir: dir})
	if tcx && !tc.TCX() {
		t.Fatalf("kernel without tcx links: Probe and the tcx test disagree")
	}
	tc.tcx = tcx // force the classic path, which kernels before 6.6 take
	for _, dev := range []string{"va", "vb"} {
		if err := tc.AttachTCEgress(nsPath(tp.node), dev); err != nil {
			t.Fatal(err)
		}
		// Attaching again keeps (tcx) or replaces (clsact) the attachment: never two.
		if err := tc.AttachTCEgress(nsPath(tp.node), dev); err != nil {
			t.Fatal(err)
		}
	}
	if got := tp.egressFilters("va"); got != boolToInt(!tcx) {
		t.Errorf("%d zonetoll clsact egress filters on va, want %d", got, boolToInt(!tcx))
	}
	before := tp.quiesce()
	tp.sendUDP(false, 300, 64, 9001)
	tp.sendUDP(true, 300, 1200, 9001)
	tp.sendTCP(false, 2<<20)
	tp.sendTCP(true, 2<<20)
	after := tp.quiesce()

	nfFlows, tcFlows := drainAll(t, nf), drainAll(t, tc)
	pkts, bytes := forwardedBytes(t, before, after)
	if got := tp.podFlows(t, tcFlows); got.Packets != pkts || got.Bytes != bytes {
		t.Errorf("tc egress counted %d packets / %d bytes between the pods, node forwarded %d / %d", got.Packets, got.Bytes, pkts, bytes)
	}
	// The node's own packets (MLD) leave through the same interfaces: all
	// flows agree, not only the pods'.
	for k, v := range nfFlows {
		if tcFlows[k] != v {
			t.Errorf("flow %v: netfilter %+v, tc egress %+v", k, v, tcFlows[k])
		}
	}
	for k, v := range tcFlows {
		if _, ok := nfFlows[k]; !ok {
			t.Errorf("flow %v only in tc egress: %+v", k, v)
		}
	}

	// A deleted interface is let go without an error, its pin with it.
	tp.ip("-n", tp.node, "link", "del", "vb")
	if err := tc.DetachTCEgress(nsPath(tp.node), "vb"); err != nil {
		t.Errorf("detaching from a deleted interface: %v", err)
	}
	if err := tc.AttachTCEgress(nsPath(tp.node), "vb"); err == nil || !strings.Contains(err.Error(), ErrNoInterface.Error()) {
		t.Errorf("attaching to a deleted interface = %v, want ErrNoInterface", err)
	}
	if tcx {
		pins, _ := filepath.Glob(filepath.Join(dir, "gen-*", string(hookTCXEgress)+"-*"))
		if len(pins) != 1 {
			t.Errorf("egress pins after deleting vb: %v, want only va's", pins)
		}
	}
	if err := tc.DetachTCEgress(nsPath(tp.node), "va"); err != nil {
		t.Fatal(err)
	}
	if got := tp.egressFilters("va"); got != 0 {
		t.Errorf("%d zonetoll clsact egress filters on va after DetachTCEgress, want 0", got)
	}
	if tcx {
		pins, _ := filepath.Glob(filepath.Join(dir, "gen-*", string(hookTCXEgress)+"-*"))
		if len(pins) != 0 {
			t.Errorf("egress pins left after detaching: %v", pins)
		}
	}
}

// A restarted counter adopts the pinned egress links: attaching again keeps
// them, so the same program counts throughout.
func TestTCEgressAdoptedAfterRestart(t *testing.T) {
	kerneltest.Require(t)
	tp := newTopo(t)
	dir := pinDir(t)
	c, err := Load(t.Context(), Config{MaxFlows: 1024, Mode: ModeTC, PinDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.TCX() {
		c.Close()
		t.Skip("kernel without tcx links: classic filters are not pinned")
	}
	if err := c.AttachTCEgress(nsPath(tp.node), "vb"); err != nil {
		t.Fatal(err)
	}
	before := tp.quiesce()
	tp.sendUDP(false, 100, 200, 9001)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	tp.sendUDP(false, 100, 200, 9001) // no process runs: the pinned link counts
	c = loadForTest(t, Config{MaxFlows: 1024, Mode: ModeTC, PinDir: dir})
	if err := c.AttachTCEgress(nsPath(tp.node), "vb"); err != nil {
		t.Fatal(err)
	}
	tp.sendUDP(false, 100, 200, 9001)
	after := tp.quiesce()
	flows := drainAll(t, c)
	got := flows[Key{Src: tp.podAddr["a4"].As16(), Dst: tp.podAddr["b4"].As16()}]
	if want := uint64(300); got.Packets != want || got.Bytes != want*(200+28) {
		t.Errorf("a→b across a restart: %+v, want %d packets of %d bytes", got, want, 200+28)
	}
	if pkts, _ := forwardedBytes(t, before, after); pkts != 300 {
		t.Errorf("node forwarded %d packets, want 300", pkts)
	}
	pins, _ := filepath.Glob(filepath.Join(dir, "gen-*", string(hookTCXEgress)+"-*"))
	if len(pins) != 1 {
		t.Errorf("egress pins after the restart: %v, want one", pins)
	}
}

// egressFilters counts our clsact egress filters on a node interface.
func (tp *topo) egressFilters(dev string) int {
	tp.t.Helper()
	n := 0
	tp.inNS(tp.node, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_EGRESS)
		if err != nil {
			return err
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, "zonetoll_count") {
				n++
			}
		}
		return nil
	})
	return n
}
