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
// same flows, to the byte. On kernels without BPF netfilter programs (before
// 6.4: the kernels tc mode is for) tc egress is compared with what the node
// forwarded only.
func TestTCEgressCountsSameAsNetfilter(t *testing.T) {
	eachTCFlavor(t, testTCEgressCountsSameAsNetfilter)
}

func testTCEgressCountsSameAsNetfilter(t *testing.T, tcx bool) {
	tp := newTopo(t)
	dir := kerneltest.PinDir(t)
	pinKind := tcHookKind(tcx, true)
	tc, nf, tcFlows, nfFlows := tp.tcBesideNetfilter(t, tcx, dir, func(c *Counter, dev string) error {
		if err := c.AttachTCEgress(nsPath(tp.node), dev); err != nil {
			return err
		}
		// Attaching again keeps (tcx) or replaces (clsact) the attachment: never two.
		return c.AttachTCEgress(nsPath(tp.node), dev)
	})
	if got := tp.egressFilters("va"); got != boolToInt(!tcx) {
		t.Errorf("%d zonetoll clsact egress filters on va, want %d", got, boolToInt(!tcx))
	}
	// The node's own packets (MLD) leave through the same interfaces: all flows agree, not only the
	// pods', both ways.
	for k, v := range tcFlows {
		if _, ok := nfFlows[k]; !ok && nf != nil {
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
	if pins, _ := filepath.Glob(filepath.Join(dir, "gen-*", string(pinKind)+"-*")); len(pins) != 1 {
		t.Errorf("egress pins after deleting vb: %v, want only va's", pins)
	}
	if err := tc.DetachTCEgress(nsPath(tp.node), "va"); err != nil {
		t.Fatal(err)
	}
	if got := tp.egressFilters("va"); got != 0 {
		t.Errorf("%d zonetoll clsact egress filters on va after DetachTCEgress, want 0", got)
	}
	if pins, _ := filepath.Glob(filepath.Join(dir, "gen-*", string(pinKind)+"-*")); len(pins) != 0 {
		t.Errorf("egress pins left after detaching: %v", pins)
	}

	// Uninstall removes an egress hook with everything else.
	if err := tc.AttachTCEgress(nsPath(tp.node), "va"); err != nil {
		t.Fatal(err)
	}
	if err := tc.Uninstall(); err != nil {
		t.Fatalf("uninstalling: %v", err)
	}
	if got := tp.egressFilters("va"); got != 0 {
		t.Errorf("%d zonetoll clsact egress filters on va after Uninstall, want 0", got)
	}
	if pins, _ := filepath.Glob(filepath.Join(dir, "gen-*")); len(pins) != 0 {
		t.Errorf("generations left after Uninstall: %v", pins)
	}
}

// A restarted counter adopts the pinned egress links, or the recorded
// clsact egress filters: attaching again keeps them, so the same program
// counts throughout.
func TestTCEgressAdoptedAfterRestart(t *testing.T) {
	eachTCFlavor(t, testTCEgressAdoptedAfterRestart)
}

func testTCEgressAdoptedAfterRestart(t *testing.T, tcx bool) {
	if tcx {
		requireTCX(t)
	}
	pinKind := hookTCXEgress
	if !tcx {
		pinKind = hookClsEgress
	}
	tp := newTopo(t)
	dir := kerneltest.PinDir(t)
	cfg := Config{MaxFlows: 1024, Mode: ModeTC, PinDir: dir, classic: !tcx}
	c, err := Load(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tcx && !c.TCX() {
		c.Close()
		t.Fatalf("kernel without tcx links: Probe and the tcx test disagree")
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
	c = loadForTest(t, cfg)
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
	pins, _ := filepath.Glob(filepath.Join(dir, "gen-*", string(pinKind)+"-*"))
	if len(pins) != 1 {
		t.Errorf("egress pins after the restart: %v, want one", pins)
	}
	if got := tp.egressFilters("vb"); got != boolToInt(!tcx) {
		t.Errorf("%d zonetoll clsact egress filters on vb after the restart, want %d", got, boolToInt(!tcx))
	}
}

// egressFilters counts our clsact egress filters on a node interface.
func (tp *topo) egressFilters(dev string) int { return tp.ourFilters(dev, netlink.HANDLE_MIN_EGRESS) }
