package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/bpf/kerneltest"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/agent"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/locals"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/sender"
	"github.com/zonetoll/zonetoll/shared/netns"
	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
)

// netnsPrefix names every network namespace these tests create, with the pid after it, so leftovers
// of a crashed run are found and removed.
const netnsPrefix = "ztfa-"

func TestMain(m *testing.M) {
	kerneltest.Main(m, netnsPrefix)
}

// cluster is two "nodes" (network namespaces) linked by a veth pair, each forwarding for one "pod":
//
//	pod a 198.18.1.2 fd00:1::2 -- va [node1 198.18.100.1 fd00:100::1] n1 === n2 [node2 ...2] vb -- pod b 198.18.2.2 fd00:2::2
//
// Neighbours are permanent and DAD and router solicitations are off, so after setup the pods send
// only the test's datagrams.
type cluster struct {
	t                  *testing.T
	node1, node2, a, b string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	base := fmt.Sprintf("%s%d-", netnsPrefix, os.Getpid())
	c := &cluster{t: t, node1: base + "n1", node2: base + "n2", a: base + "a", b: base + "b"}
	t.Cleanup(func() {
		for _, ns := range []string{c.node1, c.node2, c.a, c.b} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	quiet := netns.QuietSysctls()
	for _, ns := range []string{c.node1, c.node2, c.a, c.b} {
		c.sh("ip", "netns", "add", ns)
		c.sh("ip", append([]string{"netns", "exec", ns, "sysctl", "-qw"}, quiet...)...)
	}
	for _, ns := range []string{c.node1, c.node2} {
		c.sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	}
	// veth between two namespaces with addresses, permanent neighbours both ways.
	link := func(ns1, dev1, mac1, v4a, v6a, ns2, dev2, mac2, v4b, v6b, plen4, plen6 string) {
		c.sh("ip", "link", "add", dev1, "netns", ns1, "address", mac1, "type", "veth", "peer", "name", dev2, "netns", ns2, "address", mac2)
		for _, s := range []struct{ ns, dev, v4, v6, peerMAC, peer4, peer6 string }{
			{ns1, dev1, v4a, v6a, mac2, v4b, v6b}, {ns2, dev2, v4b, v6b, mac1, v4a, v6a},
		} {
			c.sh("ip", "-n", s.ns, "addr", "add", s.v4+"/"+plen4, "dev", s.dev)
			c.sh("ip", "-n", s.ns, "addr", "add", s.v6+"/"+plen6, "dev", s.dev, "nodad")
			c.sh("ip", "-n", s.ns, "link", "set", s.dev, "up")
			c.sh("ip", "-n", s.ns, "link", "set", "lo", "up")
			c.sh("ip", "-n", s.ns, "neigh", "add", s.peer4, "lladdr", s.peerMAC, "dev", s.dev, "nud", "permanent")
			c.sh("ip", "-n", s.ns, "neigh", "add", s.peer6, "lladdr", s.peerMAC, "dev", s.dev, "nud", "permanent")
		}
	}
	link(c.node1, "va", "02:00:00:00:01:01", "198.18.1.1", "fd00:1::1", c.a, "eth0", "02:00:00:00:01:02", "198.18.1.2", "fd00:1::2", "24", "64")
	link(c.node2, "vb", "02:00:00:00:02:01", "198.18.2.1", "fd00:2::1", c.b, "eth0", "02:00:00:00:02:02", "198.18.2.2", "fd00:2::2", "24", "64")
	link(c.node1, "n1", "02:00:00:00:64:01", "198.18.100.1", "fd00:100::1", c.node2, "n2", "02:00:00:00:64:02", "198.18.100.2", "fd00:100::2", "30", "64")
	c.sh("ip", "-n", c.a, "route", "add", "default", "via", "198.18.1.1")
	c.sh("ip", "-n", c.a, "-6", "route", "add", "default", "via", "fd00:1::1")
	c.sh("ip", "-n", c.b, "route", "add", "default", "via", "198.18.2.1")
	c.sh("ip", "-n", c.b, "-6", "route", "add", "default", "via", "fd00:2::1")
	c.sh("ip", "-n", c.node1, "route", "add", "198.18.2.0/24", "via", "198.18.100.2")
	c.sh("ip", "-n", c.node1, "-6", "route", "add", "fd00:2::/64", "via", "fd00:100::2")
	c.sh("ip", "-n", c.node2, "route", "add", "198.18.1.0/24", "via", "198.18.100.1")
	c.sh("ip", "-n", c.node2, "-6", "route", "add", "fd00:1::/64", "via", "fd00:100::1")
	return c
}

// defaultRoutes gives each node a default route over the link between them, which makes that link
// the node's uplink for tc mode's detection.
func (c *cluster) defaultRoutes() {
	c.t.Helper()
	for _, r := range []struct{ ns, v4, v6 string }{{c.node1, "198.18.100.2", "fd00:100::2"}, {c.node2, "198.18.100.1", "fd00:100::1"}} {
		c.sh("ip", "-n", r.ns, "route", "add", "default", "via", r.v4)
		c.sh("ip", "-n", r.ns, "-6", "route", "add", "default", "via", r.v6)
	}
}

func (c *cluster) sh(name string, args ...string) {
	c.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// inNetns runs fn on a thread switched into the named namespace; the process stays where it is.
func inNetns(name string, fn func() error) error { return netns.Do("/run/netns/"+name, fn) }

// podTxL3 is the layer-3 unicast bytes a pod's eth0 handed to its node: veth counts only what the
// peer accepted, an Ethernet header is 14 bytes, and the pod's own multicast (MLD, IGMP: never
// forwarded) is taken out with the pod's OutMcastOctets counters.
func (c *cluster) podTxL3(pod string) uint64 {
	c.t.Helper()
	files := map[string]string{}
	if err := inNetns(pod, func() error {
		for _, f := range []string{"dev", "netstat", "snmp6"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				return err
			}
			files[f] = string(b)
		}
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
	var l3 uint64
	found := false
	for line := range strings.Lines(files["dev"]) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != "eth0" {
			continue
		}
		f := strings.Fields(rest)
		l3 = c.num(f[8]) - 14*c.num(f[9])
		found = true
	}
	if !found {
		c.t.Fatalf("no eth0 in %s", pod)
	}
	var mc uint64
	var header []string
	for line := range strings.Lines(files["netstat"]) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "IpExt:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, h := range header {
			if h == "OutMcastOctets" {
				mc += c.num(f[i])
			}
		}
	}
	for line := range strings.Lines(files["snmp6"]) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Ip6OutMcastOctets" {
			mc += c.num(f[1])
		}
	}
	return l3 - mc
}

func (c *cluster) num(s string) uint64 {
	c.t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		c.t.Fatalf("parsing counter %q: %v", s, err)
	}
	return v
}

// send sends count UDP datagrams of varying size from the pod to dst (a listener in the peer pod
// takes them, so no ICMP errors come back). Bounded by count; paced so that no backlog overflows.
func (c *cluster) send(pod string, src, dst netip.Addr, count int) {
	c.t.Helper()
	network := "udp4"
	if src.Is6() {
		network = "udp6"
	}
	var conn net.PacketConn
	if err := inNetns(pod, func() (err error) {
		conn, err = net.ListenPacket(network, net.JoinHostPort(src.String(), "0"))
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close()
	to := &net.UDPAddr{IP: dst.AsSlice(), Port: 5001}
	buf := make([]byte, 1400)
	for i := range count {
		if _, err := conn.WriteTo(buf[:1+i%1400], to); err != nil {
			c.t.Fatalf("sending datagram %d: %v", i, err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
}

// sendBothWays has pod a send ab4 datagrams to pod b over IPv4 and ab6 over IPv6, and pod b answer
// with ba4 and ba6, and returns the layer-3 bytes each pod sent meanwhile.
func (c *cluster) sendBothWays(ab4, ab6, ba4, ba6 int) (aSent, bSent uint64) {
	c.t.Helper()
	aBefore, bBefore := c.podTxL3(c.a), c.podTxL3(c.b)
	c.send(c.a, a4, b4, ab4)
	c.send(c.a, a6, b6, ab6)
	c.send(c.b, b4, a4, ba4)
	c.send(c.b, b6, a6, ba6)
	return c.podTxL3(c.a) - aBefore, c.podTxL3(c.b) - bBefore
}

// listen opens the UDP sink in a pod for the duration of the test.
func (c *cluster) listen(pod string, addrs ...string) {
	c.t.Helper()
	for _, a := range addrs {
		network := "udp4"
		if strings.Contains(a, ":") {
			network = "udp6"
		}
		var conn net.PacketConn
		if err := inNetns(pod, func() (err error) {
			conn, err = net.ListenPacket(network, net.JoinHostPort(a, "5001"))
			return err
		}); err != nil {
			c.t.Fatal(err)
		}
		c.t.Cleanup(func() { conn.Close() })
	}
}

// flowserver is a real HTTP server that answers 503 while down and otherwise applies each
// (node, boot, seq) once, summing bytes per (src, dst).
type flowserver struct {
	// token, when set, is the bearer token required.
	token   string
	zones   map[string]string // node → zone, from the URL path /<zone>/v1/reports
	mu      sync.Mutex
	down    bool
	failed  int
	seen    map[string]bool
	bytes   map[[2]netip.Addr]uint64
	applied int
}

func (f *flowserver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep, err := report.ReadGzip(r.Body, 0, report.Limits{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	if zone, ok := strings.CutSuffix(r.URL.Path, "/v1/reports"); ok && f.zones != nil {
		f.zones[rep.Node] = strings.TrimPrefix(zone, "/")
	}
	if f.down {
		f.failed++
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	id := fmt.Sprintf("%s/%x/%d", rep.Node, rep.BootID, rep.Sequence)
	if f.seen[id] {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	f.seen[id] = true
	f.applied++
	for _, fl := range rep.Flows {
		f.bytes[[2]netip.Addr{fl.Src.Netip(), fl.Dst.Netip()}] += fl.Bytes
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkBothWays fails t unless f holds, over both families, the bytes each pod sent to the other
// (cluster.sendBothWays).
func (f *flowserver) checkBothWays(t *testing.T, aSent, bSent uint64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	got := func(src, dst netip.Addr) uint64 { return f.bytes[[2]netip.Addr{src, dst}] }
	if sum := got(a4, b4) + got(a6, b6); sum != aSent {
		t.Errorf("pod a → pod b: server has %d bytes (v4 %d, v6 %d), pod a sent %d", sum, got(a4, b4), got(a6, b6), aSent)
	}
	if sum := got(b4, a4) + got(b6, a6); sum != bSent {
		t.Errorf("pod b → pod a: server has %d bytes (v4 %d, v6 %d), pod b sent %d", sum, got(b4, a4), got(b6, a6), bSent)
	}
}

// start serves f over HTTP until the test ends and returns its URL.
func (f *flowserver) start(t *testing.T) string {
	f.seen, f.bytes = map[string]bool{}, map[[2]netip.Addr]uint64{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

func (f *flowserver) setDown(down bool) { f.mu.Lock(); f.down = down; f.mu.Unlock() }

func (f *flowserver) failures() int { f.mu.Lock(); defer f.mu.Unlock(); return f.failed }

// node is one agent process: counter, agent loop and sender.
type node struct {
	ctr    *counter.Counter
	ag     *agent.Agent
	snd    *sender.Sender
	cancel func()
	done   chan error
}

// requireNetfilter skips t when the kernel's feature probe (counter.Probe) reports no BPF netfilter
// programs (Linux 6.4), which netfilter mode needs; counter's TestProbeMatchesKernelVersion fails
// where the probe denies a feature the kernel has.
func requireNetfilter(t *testing.T) {
	t.Helper()
	f, err := counter.Probe()
	if err != nil {
		t.Fatalf("probing the kernel: %v", err)
	}
	if !f.Netfilter || !f.BTF {
		t.Skipf("kernel lacks what netfilter mode needs (probe: %+v; BPF netfilter programs came in Linux 6.4)", f)
	}
}

// requireMode skips t in netfilter mode on a kernel without BPF netfilter programs (requireNetfilter).
// tc mode runs on every kernel (tcx links from 6.6, classic clsact filters before), so its subtests
// run on the kernels it is for (5.10, 6.1).
func requireMode(t *testing.T, mode counter.Mode) {
	t.Helper()
	if mode == counter.ModeNetfilter {
		requireNetfilter(t)
	}
}

// eachMode runs test once per attach mode, each a subtest on a new cluster: in tc mode the nodes get
// default routes (tc mode follows the uplink they make); netfilter mode needs a kernel with it
// (requireMode).
func eachMode(t *testing.T, test func(t *testing.T, mode counter.Mode, c *cluster)) {
	kerneltest.Require(t)
	for _, mode := range []counter.Mode{counter.ModeNetfilter, counter.ModeTC} {
		t.Run(string(mode), func(t *testing.T) {
			requireMode(t, mode)
			c := newCluster(t)
			if mode == counter.ModeTC {
				c.defaultRoutes()
			}
			test(t, mode, c)
		})
	}
}

// startNode starts one agent attached as attach does it: at netfilter POST_ROUTING, or in tc mode at
// egress of the interfaces the follower finds (no list), followed until the agent stops; nodeAddrs,
// if not nil, turns on overlay mode with these node addresses.
func startNode(t *testing.T, mode counter.Mode, name, netns, pinDir, url string, local, nodeAddrs []string) *node {
	t.Helper()
	ctr, err := counter.Load(context.Background(), counter.Config{PinDir: pinDir, Mode: mode, MaxFlows: 1024}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("loading counter: %v", err)
	}
	reg := prometheus.NewRegistry()
	follower, err := attach(ctr, &Config{Netns: "/run/netns/" + netns}, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		ctr.Close()
		t.Fatalf("attaching in %s: %v", netns, err)
	}
	followCtx, stopFollowing := context.WithCancel(context.Background())
	followed := make(chan error, 1)
	if follower != nil {
		go func() { followed <- follower.Run(followCtx) }()
	} else {
		followed <- nil
	}
	set := locals.NewSet(time.Minute)
	var addrs []netip.Addr
	for _, a := range local {
		addrs = append(addrs, netip.MustParseAddr(a))
	}
	set.Replace(addrs)
	snd, err := sender.New(sender.Config{URL: url, SpoolBytes: 1 << 20, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{Node: name, Interval: 20 * time.Millisecond}
	if nodeAddrs != nil {
		nodes := locals.NewSet(time.Minute)
		var na []netip.Addr
		for _, a := range nodeAddrs {
			na = append(na, netip.MustParseAddr(a))
		}
		nodes.Replace(na)
		cfg.Nodes = nodes
	}
	ag, err := agent.New(cfg, ctr, set, snd, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{ctr: ctr, ag: ag, snd: snd, cancel: cancel, done: make(chan error, 1)}
	sendCtx, stopSend := context.WithCancel(context.Background())
	sent := make(chan struct{})
	go func() { snd.Run(sendCtx); close(sent) }()
	go func() {
		err := ag.Run(ctx)
		stopSend()
		<-sent
		n.done <- err
	}()
	t.Cleanup(func() {
		n.stop(t)
		stopFollowing()
		if err := <-followed; err != nil {
			t.Errorf("following interfaces: %v", err)
		}
		ctr.Close()
	})
	return n
}

// stop ends the loop (which drains once more); undelivered reports stay in the sender.
func (n *node) stop(t *testing.T) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	if err := <-n.done; err != nil {
		t.Errorf("agent stopped with %v", err)
	}
}

// waitFor is servicetest.WaitFor for a condition with nothing to describe.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	servicetest.WaitFor(t, what, 0, func() (bool, string) { return cond(), "" })
}

var (
	a4, a6 = netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("fd00:1::2")
	b4, b6 = netip.MustParseAddr("198.18.2.2"), netip.MustParseAddr("fd00:2::2")
	node1L = []string{"198.18.1.2", "fd00:1::2", "198.18.1.1", "fd00:1::1", "198.18.100.1", "fd00:100::1"}
	node2L = []string{"198.18.2.2", "fd00:2::2", "198.18.2.1", "fd00:2::1", "198.18.100.2", "fd00:100::2"}
)

// TestTwoNodesEachByteOnceThroughOutage: pods on two nodes talk both ways over both families while
// the flowserver is down; after it returns, the server has every byte exactly once: each flow passes
// POST_ROUTING on both nodes, and only the source's node reports it. In tc mode (forced; auto picks
// it before Linux 6.4) nothing is configured: each node's follower finds its uplink by the default
// route, whose egress sees each packet on its source node only.
func TestTwoNodesEachByteOnceThroughOutage(t *testing.T) {
	eachMode(t, testTwoNodesEachByteOnceThroughOutage)
}

func testTwoNodesEachByteOnceThroughOutage(t *testing.T, mode counter.Mode, c *cluster) {
	c.listen(c.a, "198.18.1.2", "fd00:1::2")
	c.listen(c.b, "198.18.2.2", "fd00:2::2")
	fs := &flowserver{down: true}
	url := fs.start(t)

	n1 := startNode(t, mode, "node-1", c.node1, kerneltest.PinDir(t), url, node1L, nil)
	n2 := startNode(t, mode, "node-2", c.node2, kerneltest.PinDir(t), url, node2L, nil)

	aSent, bSent := c.sendBothWays(3000, 2000, 1000, 500)

	waitFor(t, "failed deliveries while the server is down", func() bool { return fs.failures() >= 4 })
	fs.setDown(false)
	n1.stop(t)
	n2.stop(t)
	for _, n := range []*node{n1, n2} {
		if err := n.snd.Flush(context.Background()); err != nil {
			t.Fatalf("delivering after the server returned: %v", err)
		}
	}

	fs.checkBothWays(t, aSent, bSent)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var total uint64
	for _, v := range fs.bytes {
		total += v
	}
	if total != aSent+bSent {
		t.Errorf("server has %d bytes in all, pods sent %d: %v", total, aSent+bSent, fs.bytes)
	}
	if aSent == 0 || bSent == 0 {
		t.Errorf("no traffic measured (a %d, b %d)", aSent, bSent)
	}
}

// TestRestartWithPinnedMapsLosesNothing: an agent killed without its last drain leaves its counts in
// the pinned maps, and its pinned hooks go on counting while no agent runs; the next process (a new
// boot id) adopts the hooks, drains and reports everything. In netfilter mode and in tc mode (tcx
// egress links, found by the follower).
func TestRestartWithPinnedMapsLosesNothing(t *testing.T) {
	eachMode(t, testRestartWithPinnedMapsLosesNothing)
}

func testRestartWithPinnedMapsLosesNothing(t *testing.T, mode counter.Mode, c *cluster) {
	c.listen(c.b, "198.18.2.2", "fd00:2::2")
	fs := &flowserver{}
	url := fs.start(t)
	pins := kerneltest.PinDir(t)

	before := c.podTxL3(c.a)
	// The first process only counts: a crash before any drain.
	ctr, err := counter.Load(context.Background(), counter.Config{PinDir: pins, Mode: mode, MaxFlows: 1024}, nil)
	if err != nil {
		t.Fatal(err)
	}
	follower, err := attach(ctr, &Config{Netns: "/run/netns/" + c.node1}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		ctr.Close()
		t.Fatal(err)
	}
	c.send(c.a, a4, b4, 700)
	c.send(c.a, a6, b6, 300)
	if follower != nil {
		stopped, stop := context.WithCancel(context.Background())
		stop()
		if err := follower.Run(stopped); err != nil {
			t.Error(err)
		}
	}
	if err := ctr.Close(); err != nil {
		t.Fatal(err)
	}
	c.send(c.a, a4, b4, 200) // no process runs: the pinned hooks count
	first := c.podTxL3(c.a) - before

	n := startNode(t, mode, "node-1", c.node1, pins, url, node1L, nil)
	mid := c.podTxL3(c.a)
	c.send(c.a, a4, b4, 400)
	second := c.podTxL3(c.a) - mid
	n.stop(t)
	if err := n.snd.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	got := fs.bytes[[2]netip.Addr{a4, b4}] + fs.bytes[[2]netip.Addr{a6, b6}]
	if got != first+second {
		t.Errorf("server has %d bytes, pod a sent %d before the restart and %d after (%d)", got, first, second, first+second)
	}
}

// TestOverlayEachByteOnce puts the pods' IPv4 traffic into a VXLAN tunnel between the nodes, so each
// node sees every pod packet twice at POST_ROUTING (inner pod→pod, outer node→node UDP). With overlay
// mode the agents report the inner flows only: the server's bytes equal what the pods sent. In tc
// mode the follower counts at egress of the VXLAN device (inner packets) and of the uplink (outer):
// the same two views, so the same result.
func TestOverlayEachByteOnce(t *testing.T) { eachMode(t, testOverlayEachByteOnce) }

func testOverlayEachByteOnce(t *testing.T, mode counter.Mode, c *cluster) {
	for _, n := range []struct{ ns, dev, local, remote, addr, peer, peerMAC, mac, dst string }{
		{c.node1, "n1", "198.18.100.1", "198.18.100.2", "198.18.200.1", "198.18.200.2", "02:00:00:00:c8:02", "02:00:00:00:c8:01", "198.18.2.0/24"},
		{c.node2, "n2", "198.18.100.2", "198.18.100.1", "198.18.200.2", "198.18.200.1", "02:00:00:00:c8:01", "02:00:00:00:c8:02", "198.18.1.0/24"},
	} {
		c.sh("ip", "-n", n.ns, "link", "add", "vx0", "address", n.mac, "type", "vxlan", "id", "42", "local", n.local, "remote", n.remote, "dstport", "4789", "dev", n.dev)
		c.sh("ip", "-n", n.ns, "addr", "add", n.addr+"/24", "dev", "vx0")
		c.sh("ip", "-n", n.ns, "link", "set", "vx0", "up")
		c.sh("ip", "-n", n.ns, "neigh", "add", n.peer, "lladdr", n.peerMAC, "dev", "vx0", "nud", "permanent")
		c.sh("ip", "-n", n.ns, "route", "replace", n.dst, "via", n.peer, "dev", "vx0")
	}
	c.listen(c.a, "198.18.1.2")
	c.listen(c.b, "198.18.2.2")
	fs := &flowserver{}
	url := fs.start(t)
	nodeAddrs := []string{"198.18.100.1", "fd00:100::1", "198.18.100.2", "fd00:100::2", "198.18.200.1", "198.18.200.2"}
	n1 := startNode(t, mode, "node-1", c.node1, kerneltest.PinDir(t), url, append(node1L, "198.18.200.1"), nodeAddrs)
	n2 := startNode(t, mode, "node-2", c.node2, kerneltest.PinDir(t), url, append(node2L, "198.18.200.2"), nodeAddrs)

	aBefore, bBefore := c.podTxL3(c.a), c.podTxL3(c.b)
	c.send(c.a, a4, b4, 1500)
	c.send(c.b, b4, a4, 600)
	aSent, bSent := c.podTxL3(c.a)-aBefore, c.podTxL3(c.b)-bBefore
	if aSent == 0 || bSent == 0 {
		t.Fatalf("no traffic measured (a %d, b %d)", aSent, bSent)
	}
	for _, n := range []*node{n1, n2} {
		n.stop(t)
		if err := n.snd.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if got := fs.bytes[[2]netip.Addr{a4, b4}]; got != aSent {
		t.Errorf("pod a → pod b: server has %d bytes, pod a sent %d", got, aSent)
	}
	if got := fs.bytes[[2]netip.Addr{b4, a4}]; got != bSent {
		t.Errorf("pod b → pod a: server has %d bytes, pod b sent %d", got, bSent)
	}
	for pair, v := range fs.bytes {
		if pair != [2]netip.Addr{a4, b4} && pair != [2]netip.Addr{b4, a4} {
			t.Errorf("unexpected flow %v with %d bytes (an outer packet reported?)", pair, v)
		}
	}
}

// TestUninstallCommand: after the agent stops its hooks stay (the next start adopts them); `flowagent
// uninstall` detaches them and removes every pin, and refuses while an agent holds the pin dir.
func TestUninstallCommand(t *testing.T) {
	kerneltest.Require(t)
	requireNetfilter(t)
	c := newCluster(t)
	pins := kerneltest.PinDir(t)
	run := func(args ...string) (int, string) {
		return servicetest.Run(Spec(), append([]string{"uninstall", "--pin-dir", pins}, args...)...)
	}
	ctr, err := counter.Load(context.Background(), counter.Config{PinDir: pins, Mode: counter.ModeNetfilter, MaxFlows: 64}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr.AttachNetfilter("/run/netns/" + c.node1); err != nil {
		ctr.Close()
		t.Fatal(err)
	}
	if code, out := run(); code != servicecmd.ExitFailure || !strings.Contains(out, "an agent is running") {
		t.Errorf("uninstall while the agent runs: exit %d, output %q; want a failure naming the running agent", code, out)
	}
	if err := ctr.Close(); err != nil {
		t.Fatal(err)
	}
	c.listen(c.b, "198.18.2.2")
	counted := func() bool {
		// The pinned hook still counts after Close: a new counter on the same pins (attached where the
		// first was, so it adopts the hooks and keeps them) drains what was sent.
		ctr, err := counter.Load(context.Background(), counter.Config{PinDir: pins, Mode: counter.ModeNetfilter, MaxFlows: 64}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ctr.Close()
		if err := ctr.AttachNetfilter("/run/netns/" + c.node1); err != nil {
			t.Fatal(err)
		}
		n := 0
		if _, err := ctr.Drain(context.Background(), func(counter.Key, counter.Value) { n++ }); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	c.send(c.a, a4, b4, 10)
	if !counted() {
		t.Fatalf("nothing counted after the agent stopped: its hooks should stay attached")
	}
	if code, out := run(); code != servicecmd.ExitOK {
		t.Fatalf("uninstall: exit %d, output %q", code, out)
	}
	if ents, _ := os.ReadDir(pins); len(ents) != 0 {
		t.Errorf("pins left after uninstall: %v", ents)
	}
	// The hook is gone: another program may take its place (one BPF program per hook and priority).
	if err := kerneltest.NetfilterHookFree("/run/netns/"+c.node1, counter.DefaultPriority); err != nil {
		t.Errorf("the agent's hook is still attached after uninstall: %v", err)
	}
	if code, out := run(); code != servicecmd.ExitOK {
		t.Errorf("uninstalling twice: exit %d, output %q; want success", code, out)
	}
}

// TestStartLine runs the real `flowagent run` up to the point where it needs the API server (none is
// given, so it stops there): by then it has attached and said in one line which mode, why, which
// hooks and features.
func TestStartLine(t *testing.T) {
	kerneltest.Require(t)
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	c := newCluster(t)
	c.defaultRoutes()
	kernel := kernelRelease()
	// What auto chooses and how tc attaches follow the kernel's features: netfilter and tcx here
	// (6.6+), tc with clsact filters on 5.10 and 6.1 (make test-kernels). counter's
	// TestProbeMatchesKernelVersion fails where the probe denies what the kernel has.
	f, err := counter.Probe()
	if err != nil {
		t.Fatalf("probing the kernel: %v", err)
	}
	tcAttach := "clsact"
	if f.TCX {
		tcAttach = "tcx"
	}
	auto := map[string]any{
		"mode": "netfilter", "reason": "kernel " + kernel + " has netfilter BPF links (6.4+) and BTF",
		"hook": "netfilter POST_ROUTING ipv4+ipv6", "priority": 90.0,
	}
	if !f.Netfilter || !f.BTF {
		reason := "kernel " + kernel + " lacks netfilter BPF links (needs 6.4)"
		if f.Netfilter {
			reason = "kernel " + kernel + " has no BTF (/sys/kernel/btf/vmlinux), which the netfilter program needs"
		}
		auto = map[string]any{
			"mode": "tc", "reason": reason, "hook": "tc egress",
			"tc_attach": tcAttach, "interfaces": "follow", "counting_on": "n1(uplink)",
		}
	}
	auto["btf"], auto["netfilter_links"], auto["tcx"] = f.BTF, f.Netfilter, f.TCX
	for _, tc := range []struct {
		name string
		env  map[string]string
		want map[string]any
	}{
		{"auto", map[string]string{}, auto},
		{"tc follows", map[string]string{"ZONETOLL_BPF_MODE": "tc"}, map[string]any{
			"mode": "tc", "reason": "configured (ZONETOLL_BPF_MODE=tc)", "hook": "tc egress", "tc_attach": tcAttach,
			"interfaces": "follow", "counting_on": "n1(uplink)",
		}},
		{"tc list", map[string]string{"ZONETOLL_BPF_MODE": "tc", "ZONETOLL_BPF_TC_INTERFACES": "va,n1"}, map[string]any{
			"mode": "tc", "interfaces": "list", "counting_on": "n1(listed),va(listed)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ZONETOLL_NODE_NAME", "node-1")
			t.Setenv("ZONETOLL_NETNS", "/run/netns/"+c.node1)
			t.Setenv("ZONETOLL_BPF_PIN_DIR", kerneltest.PinDir(t))
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out := servicetest.Run(Spec(), "run")
			if code != servicecmd.ExitFailure {
				t.Errorf("exit code %d, want %d (no API server)", code, servicecmd.ExitFailure)
			}
			line := startLine(t, out)
			tc.want["kernel"] = kernel
			for k, v := range tc.want {
				if line[k] != v {
					t.Errorf("start line: %s = %v, want %v\noutput:\n%s", k, line[k], v, out)
				}
			}
		})
	}
}

// startLine returns the fields of the agent's one start line (msg "counting") in its log, JSON
// (values typed) or text (values as strings).
func startLine(t *testing.T, out string) map[string]any {
	t.Helper()
	var found map[string]any
	for l := range strings.Lines(out) {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			m = parseTextLine(l)
		}
		if m["msg"] == "counting" {
			if found != nil {
				t.Errorf("more than one start line:\n%s", out)
			}
			found = m
		}
	}
	if found == nil {
		t.Fatalf("no start line (msg=counting):\n%s", out)
	}
	return found
}

// parseTextLine reads one line of slog's text format: key=value pairs, values quoted when they
// hold spaces or quotes.
func parseTextLine(line string) map[string]any {
	m := map[string]any{}
	rest := strings.TrimSpace(line)
	for rest != "" {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		var val string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			after = after[len(q):]
		} else {
			val, after, _ = strings.Cut(after, " ")
			after = " " + after
		}
		m[key] = val
		rest = strings.TrimSpace(after)
	}
	return m
}
