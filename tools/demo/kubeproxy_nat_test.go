package demo

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/bpf/kerneltest"
	"github.com/zonetoll/zonetoll/shared/netns"
)

// TestCounterSeesKubeProxyNATExactly proves that the agent's counts stay byte-exact with kube-proxy's
// NAT in the path. The agent's program runs at POST_ROUTING with priority 90: after kube-proxy's DNAT
// of a request (PRE_ROUTING, -100), so it sees the endpoint the request really goes to, and before
// conntrack turns an answer's source back into the ClusterIP (source NAT's priority, 100), so it sees
// the endpoint answering. The real counter program is attached in every node's namespace (as each
// node's agent attaches it), frontends call the api Service's ClusterIPs, and every node's counts per
// address pair equal, to the byte and packet, what the calls sent between the frontend and the endpoint
// that answered (learned from the answer); no count names a ClusterIP.
func TestCounterSeesKubeProxyNATExactly(t *testing.T) {
	kerneltest.Require(t)
	r := startRoutedAPI(t)
	stop := echoServers(t, r.apis)
	defer stop()

	bpffs, unmount, err := kerneltest.MountBPFFS("ztkp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unmount)
	counters := map[string]*counter.Counter{} // by node name
	for _, n := range r.m.Nodes {
		c, err := counter.Load(t.Context(), counter.Config{PinDir: bpffs + "/" + n.Name, Mode: counter.ModeNetfilter}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("loading the counter for %s: %v", n.Name, err)
		}
		t.Cleanup(func() {
			if err := c.Uninstall(); err != nil {
				t.Errorf("uninstalling the counter of %s: %v", n.Name, err)
			}
			c.Close()
		})
		if err := c.AttachNetfilter(filepath.Join(netns.Dir, n.Netns)); err != nil {
			t.Fatalf("attaching the counter in %s: %v", n.Netns, err)
		}
		counters[n.Name] = c
	}
	drain := func() map[string]map[[2]netip.Addr]counter.Value {
		out := map[string]map[[2]netip.Addr]counter.Value{}
		for name, c := range counters {
			got := map[[2]netip.Addr]counter.Value{}
			if _, err := c.Drain(t.Context(), func(k counter.Key, v counter.Value) {
				p := [2]netip.Addr{netip.AddrFrom16(k.Src).Unmap(), netip.AddrFrom16(k.Dst).Unmap()}
				s := got[p]
				s.Bytes += v.Bytes
				s.Packets += v.Packets
				got[p] = s
			}); err != nil {
				t.Fatalf("draining the counter of %s: %v", name, err)
			}
			out[name] = got
		}
		return out
	}
	drain() // nothing of the calls yet

	// What the calls put on the wire, per address pair, learned from the answers: each call is one
	// request datagram to the endpoint and one answer naming it.
	want := map[[2]netip.Addr]PairCount{}
	node := map[netip.Addr]string{} // pod address → its node
	for _, p := range append(slices.Clone(r.fronts), r.apis...) {
		node[p.IPv4], node[p.IPv6] = p.Node.Name, p.Node.Name
	}
	const calls = 30
	for _, f := range r.fronts {
		for _, vip := range r.clusterIPs {
			src := f.IPv4
			if vip.Is6() {
				src = f.IPv6
			}
			for ep, n := range callService(t, f, vip, calls) {
				req, ans := want[[2]netip.Addr{src, ep}], want[[2]netip.Addr{ep, src}]
				req.Packets += uint64(n)
				req.Payload += uint64(n * len(callRequest))
				ans.Packets += uint64(n)
				ans.Payload += uint64(n * len(ep.String()))
				want[[2]netip.Addr{src, ep}], want[[2]netip.Addr{ep, src}] = req, ans
			}
		}
	}
	got := drain()

	vips := r.clusterIPs
	for name, pairs := range got {
		for p, v := range pairs {
			if slices.Contains(vips, p[0]) || slices.Contains(vips, p[1]) {
				t.Errorf("node %s counted %d bytes %s → %s: a ClusterIP, not the endpoint kube-proxy picked", name, v.Bytes, p[0], p[1])
			}
		}
	}
	// Each pair crosses two nodes (the frontend's and the api's): both count it, the others never.
	for p, w := range want {
		for _, n := range r.m.Nodes {
			var wantBytes, wantPackets uint64
			if node[p[0]] == n.Name || node[p[1]] == n.Name {
				wantBytes, wantPackets = L3Bytes(p[0], w), w.Packets
			}
			if g := got[n.Name][p]; g.Bytes != wantBytes || g.Packets != wantPackets {
				t.Errorf("node %s counted %s → %s as %d bytes in %d packets, want %d in %d", n.Name, p[0], p[1], g.Bytes, g.Packets, wantBytes, wantPackets)
			}
		}
	}
	// And nothing else between the pods: every counted pair of pod addresses is one of the calls'.
	for name, pairs := range got {
		for p, v := range pairs {
			if _, ok := want[p]; !ok && node[p[0]] != "" && node[p[1]] != "" {
				t.Errorf("node %s counted %d bytes %s → %s, which no call sent", name, v.Bytes, p[0], p[1])
			}
		}
	}
	if len(want) != 2*2*len(r.fronts)*len(r.apis) {
		t.Logf("calls reached %d frontend–endpoint pairs of %d (kube-proxy picks at random)", len(want)/2, 2*len(r.fronts)*len(r.apis))
	}
}
