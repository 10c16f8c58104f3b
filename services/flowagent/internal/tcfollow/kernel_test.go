package tcfollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/bpf/kerneltest"
	"github.com/zonetoll/zonetoll/shared/netns"
)

// netnsPrefix names every network namespace these tests create, with the pid after it, so leftovers
// of a crashed run are found and removed.
const netnsPrefix = "ztfol-"

func TestMain(m *testing.M) {
	kerneltest.Main(m, netnsPrefix)
}

// node is a "node" network namespace with an uplink to a "remote" namespace (the rest of the
// VPC) and pods on veths:
//
//	pod pN eth0 198.18.N.2 fd00:N::2 -- pN [node] up0 198.18.100.1 fd00:100::1 -- eth0 [remote] 198.18.100.2 fd00:100::2
//
// The node's default routes point at the remote through up0; the remote routes 198.18.0.0/16 and
// fd00::/16 back. Neighbours are permanent and DAD, router solicitations and unsolicited
// multicast reports are quiet, so after setup the namespaces send only the test's packets.
type node struct {
	t            testing.TB
	node, remote string
	pods         map[string]string // pod name → namespace
	remote4      netip.Addr
	remote6      netip.Addr
	mu           sync.Mutex
	listeners    []*net.UDPConn
}

// newNode builds a node namespace with a remote host beside it; it gates on the kernel itself
// (kerneltest.Require), so a test that starts with it needs no gate of its own.
func newNode(t testing.TB) *node {
	t.Helper()
	kerneltest.Require(t)
	base := fmt.Sprintf("%s%d-", netnsPrefix, os.Getpid())
	n := &node{t: t, node: base + "node", remote: base + "remote", pods: map[string]string{},
		remote4: netip.MustParseAddr("198.18.100.2"), remote6: netip.MustParseAddr("fd00:100::2")}
	t.Cleanup(func() {
		for _, l := range n.listeners {
			l.Close()
		}
		for _, ns := range append([]string{n.node, n.remote}, mapsValues(n.pods)...) {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	n.netns(n.node)
	n.netns(n.remote)
	n.sh("ip", "netns", "exec", n.node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	n.veth(n.node, "up0", "02:00:00:00:64:01", "198.18.100.1", "fd00:100::1", n.remote, "eth0", "02:00:00:00:64:02", "198.18.100.2", "fd00:100::2", "30")
	n.sh("ip", "-n", n.node, "route", "add", "default", "via", "198.18.100.2", "dev", "up0")
	n.sh("ip", "-n", n.node, "-6", "route", "add", "default", "via", "fd00:100::2", "dev", "up0")
	// up0 cuts GSO skbs into wire packets itself (ethtool -K up0 tso off gso off), after tc egress,
	// so its transmit counters count what the counter counts: bytes and packets on the wire.
	n.in(n.node, func() error { return netns.SetSegmentationOffload("up0", false) })
	n.sh("ip", "-n", n.remote, "route", "add", "198.18.0.0/16", "via", "198.18.100.1")
	n.sh("ip", "-n", n.remote, "-6", "route", "add", "fd00::/16", "via", "fd00:100::1")
	// The remote listens so no ICMP errors come back.
	n.listen(n.remote, n.remote4, n.remote6)
	return n
}

// listen reads datagrams to port 9001 of addrs in namespace ns until the test ends, so senders get
// no ICMP errors back.
func (n *node) listen(ns string, addrs ...netip.Addr) {
	n.t.Helper()
	for _, a := range addrs {
		n.in(ns, func() error {
			l, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 9001)))
			if err != nil {
				return err
			}
			go func() { // read so the socket buffer never refuses a datagram
				buf := make([]byte, 65536)
				for {
					if _, err := l.Read(buf); err != nil {
						return
					}
				}
			}()
			n.mu.Lock()
			n.listeners = append(n.listeners, l)
			n.mu.Unlock()
			return nil
		})
	}
}

func mapsValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func (n *node) netns(ns string) {
	n.t.Helper()
	n.sh("ip", "netns", "add", ns)
	n.sh("ip", append([]string{"netns", "exec", ns, "sysctl", "-qw"}, netns.QuietSysctls()...)...)
	n.sh("ip", "-n", ns, "link", "set", "lo", "up")
}

// veth links two namespaces, with addresses and permanent neighbours both ways.
func (n *node) veth(ns1, dev1, mac1, v4a, v6a, ns2, dev2, mac2, v4b, v6b, plen4 string) {
	n.t.Helper()
	n.sh("ip", "link", "add", dev1, "netns", ns1, "address", mac1, "type", "veth", "peer", "name", dev2, "netns", ns2, "address", mac2)
	for _, s := range []struct{ ns, dev, v4, v6, peerMAC, peer4, peer6 string }{
		{ns1, dev1, v4a, v6a, mac2, v4b, v6b}, {ns2, dev2, v4b, v6b, mac1, v4a, v6a},
	} {
		n.sh("ip", "-n", s.ns, "addr", "add", s.v4+"/"+plen4, "dev", s.dev)
		if s.v6 != "" {
			n.sh("ip", "-n", s.ns, "addr", "add", s.v6+"/64", "dev", s.dev, "nodad")
		}
		n.sh("ip", "-n", s.ns, "link", "set", s.dev, "up")
		n.sh("ip", "-n", s.ns, "neigh", "add", s.peer4, "lladdr", s.peerMAC, "dev", s.dev, "nud", "permanent")
		if s.peer6 != "" {
			n.sh("ip", "-n", s.ns, "neigh", "add", s.peer6, "lladdr", s.peerMAC, "dev", s.dev, "nud", "permanent")
		}
	}
}

// addPod creates pod pN on veth pN of the node: 198.18.N.2 and, with ipv6, fd00:N::2. A pod without
// IPv6 sends nothing of its own: with it, the pod's link sends MLD reports when it comes up (the
// quiet sysctls make them immediate, not absent), and a test whose truth is what the node took in
// from the pod (podSent) counted three of 96 bytes once when the kernel's work queue sent them late.
func (n *node) addPod(num int, ipv6 bool) (v4, v6 netip.Addr) {
	n.t.Helper()
	name := fmt.Sprintf("p%d", num)
	ns := fmt.Sprintf("%s%d-%s", netnsPrefix, os.Getpid(), name)
	n.mu.Lock()
	n.pods[name] = ns
	n.mu.Unlock()
	n.netns(ns)
	nodeV6, podV6 := "", ""
	if ipv6 {
		nodeV6, podV6 = fmt.Sprintf("fd00:%d::1", num), fmt.Sprintf("fd00:%d::2", num)
		v6 = netip.MustParseAddr(podV6)
	} else {
		n.sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
	}
	n.veth(n.node, name, fmt.Sprintf("02:00:00:00:%02x:01", num), fmt.Sprintf("198.18.%d.1", num), nodeV6,
		ns, "eth0", fmt.Sprintf("02:00:00:00:%02x:02", num), fmt.Sprintf("198.18.%d.2", num), podV6, "24")
	n.sh("ip", "-n", ns, "route", "add", "default", "via", fmt.Sprintf("198.18.%d.1", num))
	if ipv6 {
		n.sh("ip", "-n", ns, "-6", "route", "add", "default", "via", nodeV6)
	}
	return netip.MustParseAddr(fmt.Sprintf("198.18.%d.2", num)), v6
}

func (n *node) sh(name string, args ...string) {
	n.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		n.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func (n *node) in(ns string, fn func() error) {
	n.t.Helper()
	if err := inNetns("/run/netns/"+ns, fn); err != nil {
		n.t.Fatalf("in netns %s: %v", ns, err)
	}
}

// inNetns runs fn on a thread switched into the namespace at path; the process stays where it is.
func inNetns(path string, fn func() error) error { return netns.Do(path, fn) }

// devTx is an interface's transmit packets and bytes in the node namespace (/proc/net/dev); ok is
// false when the interface does not exist.
func (n *node) devTx(dev string) (pkts, bytes uint64, ok bool) {
	n.t.Helper()
	c, ok := n.devCounters(dev)
	return c.txPackets, c.txBytes, ok
}

// devStats are an interface's counters in /proc/net/dev.
type devStats struct {
	rxPackets, rxBytes uint64
	txPackets, txBytes uint64
	txDropped          uint64 // a veth's: dropped after the egress hook (the peer's receive backlog was full)
}

// devCounters reads an interface's counters in the node namespace; ok is false when the interface
// does not exist. A veth's receive counters are what its peer handed it: for the node's side of a
// pod's veth, every packet the pod sent that the node took in.
func (n *node) devCounters(dev string) (c devStats, ok bool) {
	n.t.Helper()
	var text []byte
	n.in(n.node, func() error {
		var err error
		text, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	for line := range strings.Lines(string(text)) {
		name, rest, found := strings.Cut(line, ":")
		if !found || strings.TrimSpace(name) != dev {
			continue
		}
		// rx: bytes packets errs drop fifo frame compressed multicast, then tx: bytes packets errs drop.
		f := strings.Fields(rest)
		var v [12]uint64
		for i := range v {
			var err error
			if i >= len(f) {
				n.t.Fatalf("parsing /proc/net/dev line %q: too few fields", line)
			}
			if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
				n.t.Fatalf("parsing /proc/net/dev line %q: %v", line, err)
			}
		}
		return devStats{rxBytes: v[0], rxPackets: v[1], txBytes: v[8], txPackets: v[9], txDropped: v[11]}, true
	}
	return devStats{}, false
}

// podSent is what the node took in from a pod's veth: packets and layer-3 bytes (every frame there
// is IP with a 14-byte Ethernet header). It is the truth of what the pod sent, where the count the
// sender handed to the kernel is not: a datagram the node's receive backlog had no room for never
// reached it (a drop seen under qemu's emulation, where softirqs fall behind).
func (n *node) podSent(pod string) (pkts, l3Bytes uint64) {
	n.t.Helper()
	c, ok := n.devCounters(pod)
	if !ok {
		n.t.Fatalf("no interface %s in the node", pod)
	}
	return c.rxPackets, c.rxBytes - 14*c.rxPackets
}

// waitGracePeriod returns after an RCU grace period. Updating a map-in-map from user space makes
// the kernel wait for one (maybe_wait_bpf_programs, the same wait counter.Drain relies on). A packet
// is inside one RCU read-side section from the egress hook to the veth's transmit counter
// (dev_queue_xmit, noqueue), so afterwards that counter holds every packet that met the hook before.
func waitGracePeriod() error {
	inner := &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	in, err := ebpf.NewMap(inner)
	if err != nil {
		return fmt.Errorf("creating a map to wait for a grace period: %w", err)
	}
	defer in.Close()
	outer, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1, InnerMap: inner})
	if err != nil {
		return fmt.Errorf("creating a map-in-map to wait for a grace period: %w", err)
	}
	defer outer.Close()
	if err := outer.Update(uint32(0), in, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("waiting for a grace period: %w", err)
	}
	return nil
}

// l3Tx is what left through dev at layer 3: every frame there is IP (permanent neighbours), and an
// Ethernet header is 14 bytes.
func (n *node) l3Tx(dev string) uint64 {
	n.t.Helper()
	p, b, ok := n.devTx(dev)
	if !ok {
		n.t.Fatalf("no interface %s in the node", dev)
	}
	return b - 14*p
}

// quiesce waits until the node's interfaces stop sending (a settle wait, not an assertion).
func (n *node) quiesce(devs ...string) {
	n.t.Helper()
	snap := func() string {
		var s strings.Builder
		for _, d := range devs {
			p, b, _ := n.devTx(d)
			fmt.Fprintf(&s, "%d/%d ", p, b)
		}
		return s.String()
	}
	prev, stable := snap(), 0
	for range 250 {
		time.Sleep(20 * time.Millisecond)
		cur := snap()
		if cur == prev {
			if stable++; stable == 3 {
				return
			}
			continue
		}
		stable, prev = 0, cur
	}
	n.t.Fatalf("node never went quiet")
}

// sendUDP sends count datagrams of size bytes from src in pod ns to dst:9001, sleeping pace
// between them, and returns when all are handed to the kernel. sent, if not nil, is called after
// each datagram with the number sent so far.
func (n *node) sendUDP(podNS string, src, dst netip.Addr, count, size int, pace time.Duration, sent func(int)) error {
	return n.sendUDPHeld(podNS, src, dst, count, size, pace, sent, nil)
}

// sendUDPHeld is sendUDP holding hold, if not nil, while it writes each datagram: whoever holds
// the other side of it pauses the sender.
func (n *node) sendUDPHeld(podNS string, src, dst netip.Addr, count, size int, pace time.Duration, sent func(int), hold sync.Locker) error {
	var c *net.UDPConn
	if err := inNetns("/run/netns/"+podNS, func() error {
		var err error
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9001)))
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, size)
	for i := range count {
		if hold != nil {
			hold.Lock()
		}
		_, err := c.Write(buf)
		if hold != nil {
			hold.Unlock()
		}
		if err != nil && !errors.Is(err, unix.ENOBUFS) {
			return fmt.Errorf("sending datagram %d: %w", i, err)
		}
		if sent != nil {
			sent(i + 1)
		}
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	return nil
}

// sendTCP moves total bytes from src in pod ns to a listener in the remote over one connection.
func (n *node) sendTCP(podNS string, src, dst netip.Addr, total int) {
	n.t.Helper()
	var ln net.Listener
	n.in(n.remote, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	})
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				done <- nil
				return
			}
		}
	}()
	var conn net.Conn
	n.in(podNS, func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 10 * time.Second}
		var err error
		conn, err = d.Dial("tcp", ln.Addr().String())
		return err
	})
	buf := make([]byte, 64<<10)
	for sent := 0; sent < total; sent += len(buf) {
		if _, err := conn.Write(buf); err != nil {
			n.t.Fatalf("sending: %v", err)
		}
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	if err := <-done; err != nil {
		n.t.Fatal(err)
	}
	buf = buf[:1]
	_, _ = conn.Read(buf) // the remote's FIN
	conn.Close()
}

func loadCounter(t testing.TB) *counter.Counter {
	t.Helper()
	dir := kerneltest.PinDir(t)
	c, err := counter.Load(t.Context(), counter.Config{MaxFlows: 4096, Mode: counter.ModeTC, PinDir: dir}, nil)
	if err != nil {
		t.Fatalf("loading the counter in tc mode: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the counter: %v", err)
		}
		if err := counter.Uninstall(dir, nil); err != nil {
			t.Errorf("uninstalling: %v", err)
		}
	})
	return c
}

type flow struct{ src, dst netip.Addr }

func drain(t *testing.T, c *counter.Counter) map[flow]counter.Value {
	t.Helper()
	got := map[flow]counter.Value{}
	if _, err := c.Drain(context.Background(), func(k counter.Key, v counter.Value) {
		f := flow{netip.AddrFrom16(k.Src).Unmap(), netip.AddrFrom16(k.Dst).Unmap()}
		s := got[f]
		s.Bytes += v.Bytes
		s.Packets += v.Packets
		s.Segments += v.Segments
		got[f] = s
	}); err != nil {
		t.Fatalf("draining: %v", err)
	}
	return got
}

func total(flows map[flow]counter.Value) (sum counter.Value) {
	for _, v := range flows {
		sum.Bytes += v.Bytes
		sum.Packets += v.Packets
		sum.Segments += v.Segments
	}
	return sum
}

// startFollower starts a follower on the node with default rules and runs it until the test ends;
// a Run error fails the test.
func startFollower(t testing.TB, n *node, att Attacher, reg prometheus.Registerer) *Follower {
	t.Helper()
	f, err := Start("/run/netns/"+n.node, Rules{}, att, reg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatalf("starting the follower: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("follower: %v", err)
		}
	})
	return f
}

// waitFor waits until the follower counts exactly the named interfaces (a wait on its change
// notifications, bounded so a follower that never gets there fails the test).
func waitFor(t testing.TB, f *Follower, changed <-chan struct{}, names ...string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		var got []string
		for _, a := range f.Attached() {
			got = append(got, a.Name)
		}
		if slices.Equal(got, names) {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("follower counts %v, want %v", got, names)
		}
	}
}

// A node with an uplink and two pods: the follower finds the uplink by its default route, and
// what leaves through it is counted to the byte, IPv4 and IPv6, UDP and TCP, checked against the
// uplink's own transmit counter; pod-to-pod traffic on the node is not counted.
func TestFollowerCountsWhatLeavesTheNode(t *testing.T) {
	n := newNode(t)
	p1v4, p1v6 := n.addPod(1, true)
	p2v4, p2v6 := n.addPod(2, true)
	n.listen(n.pods["p2"], p2v4, p2v6)
	c := loadCounter(t)
	reg := prometheus.NewRegistry()
	f := startFollower(t, n, c, reg)
	if got := f.Attached(); len(got) != 1 || got[0].Name != "up0" || got[0].Role != RoleUplink {
		t.Fatalf("follower counts %+v, want up0 as uplink", got)
	}
	if got := testutil.ToFloat64(f.metrics.interfaces.WithLabelValues(string(RoleUplink))); got != 1 {
		t.Errorf("tc_interfaces{role=uplink} = %v, want 1", got)
	}
	n.quiesce("up0", "p1", "p2")
	drain(t, c) // setup's own packets (MLD reports)
	up0Before, p2Before := n.l3Tx("up0"), n.l3Tx("p2")
	up0PktsBefore, _, _ := n.devTx("up0")

	p1 := n.pods["p1"]
	for _, s := range []struct {
		src, dst netip.Addr
		count    int
		size     int
	}{{p1v4, n.remote4, 300, 64}, {p1v6, n.remote6, 300, 1200}, {p1v4, p2v4, 200, 500}, {p1v6, p2v6, 200, 500}} {
		if err := n.sendUDP(p1, s.src, s.dst, s.count, s.size, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	// TCP to other remote addresses, so the UDP flows above stay apart (the key has no ports).
	tcp4, tcp6 := netip.MustParseAddr("198.18.200.1"), netip.MustParseAddr("fd00:200::1")
	n.sh("ip", "-n", n.remote, "addr", "add", tcp4.String()+"/32", "dev", "lo")
	// nodad, as veth's addresses: without it a new IPv6 address is tentative (a bind to it fails
	// with EADDRNOTAVAIL) until the kernel's address work queue runs, even on lo, and once under load
	// the listen below came first.
	n.sh("ip", "-n", n.remote, "addr", "add", tcp6.String()+"/128", "dev", "lo", "nodad")
	n.sendTCP(p1, p1v4, tcp4, 2<<20)
	n.sendTCP(p1, p1v6, tcp6, 2<<20)
	n.quiesce("up0", "p1", "p2")

	flows := drain(t, c)
	up0Pkts, _, _ := n.devTx("up0")
	if got, want := total(flows), (counter.Value{Bytes: n.l3Tx("up0") - up0Before, Segments: up0Pkts - up0PktsBefore}); got.Bytes != want.Bytes || got.Segments != want.Segments {
		t.Errorf("counted %d bytes in %d wire packets, up0 sent %d bytes (layer 3) in %d", got.Bytes, got.Segments, want.Bytes, want.Segments)
	}
	for fl, want := range map[flow]counter.Value{
		{p1v4, n.remote4}: {Packets: 300, Bytes: 300 * (64 + 8 + 20)},
		{p1v6, n.remote6}: {Packets: 300, Bytes: 300 * (1200 + 8 + 40)},
	} {
		if got := flows[fl]; got.Packets != want.Packets || got.Bytes != want.Bytes {
			t.Errorf("flow %v: %+v, want %d packets, %d bytes", fl, got, want.Packets, want.Bytes)
		}
	}
	for _, fl := range []flow{{p1v4, tcp4}, {p1v6, tcp6}} {
		if got := flows[fl]; got.Bytes < 2<<20 || got.Segments <= got.Packets {
			t.Errorf("TCP flow %v: %+v, want at least the 2 MiB sent, in GSO skbs", fl, got)
		}
	}
	for fl, v := range flows {
		if fl.dst == p2v4 || fl.dst == p2v6 || fl.src == n.remote4 || fl.src == n.remote6 {
			t.Errorf("flow %v counted %+v: pod-to-pod and incoming traffic must not be", fl, v)
		}
	}
	if p2Sent := n.l3Tx("p2") - p2Before; p2Sent < 400*528 {
		t.Errorf("the node forwarded %d bytes to p2, want at least the 400 datagrams sent there", p2Sent)
	}
}

// linkFDs counts this process's open BPF link descriptors.
func linkFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == "anon_inode:bpf_link" {
			count++
		}
	}
	return count
}

// recordingAttacher notes what passed up1's egress hook (its veth's transmit counter, sent and
// dropped) right after the counter attached to it and a grace period passed, so every packet that
// met the hook before the attach is in the figure: what passed before that may have gone
// uncounted, everything after must be counted.
type recordingAttacher struct {
	*counter.Counter
	n        *node
	mu       sync.Mutex
	attachAt map[string]uint64
	attached map[string]time.Time
}

func (r *recordingAttacher) AttachTCEgress(netnsPath, ifname string) error {
	err := r.Counter.AttachTCEgress(netnsPath, ifname)
	if err == nil {
		attached := time.Now()
		if err := waitGracePeriod(); err != nil {
			r.n.t.Errorf("after attaching to %s: %v", ifname, err) // not Fatal: the follower's goroutine
		}
		c, _ := r.n.devCounters(ifname)
		r.mu.Lock()
		r.attachAt[ifname] = c.txPackets + c.txDropped
		r.attached[ifname] = attached
		r.mu.Unlock()
	}
	return err
}

// Interfaces come and go under traffic: a new pod's veth is counted from its first packet (its
// traffic leaves through the uplink already counted), a secondary uplink (a default route in its
// own table, selected by source, as the AWS VPC CNI sets up eth1) is counted from the moment
// the follower attached (everything it sent after that, checked against its own counter), and
// deleting it under traffic is no error and leaks no link. A pod sends throughout on the first
// uplink and is counted to the packet.
func TestFollowerFollowsInterfacesUnderTraffic(t *testing.T) {
	n := newNode(t)
	p1v4, _ := n.addPod(1, false)
	c := loadCounter(t)
	rec := &recordingAttacher{Counter: c, n: n, attachAt: map[string]uint64{}, attached: map[string]time.Time{}}
	reg := prometheus.NewRegistry()
	f := startFollower(t, n, rec, reg)
	changed := f.Changed()
	waitFor(t, f, changed, "up0")
	n.quiesce("up0", "p1")
	drain(t, c)
	fdsBefore := linkFDs(t)
	// The truth of what each pod sent is what the node took in from its veth (podSent), not what
	// the sender handed to its socket.
	p1Start, p1StartBytes := n.podSent("p1")

	// p1 sends throughout, paced, through up0; it pauses (the test holds p1Gate) only while the
	// test waits for the node to go quiet before a drain.
	const p1Count, size = 6000, 100
	var p1Gate sync.RWMutex
	p1Done := make(chan error, 1)
	p1 := n.pods["p1"]
	go func() {
		p1Done <- n.sendUDPHeld(p1, p1v4, n.remote4, p1Count, size, 200*time.Microsecond, nil, p1Gate.RLocker())
	}()
	settle := func(devs ...string) {
		p1Gate.Lock()
		defer p1Gate.Unlock()
		n.quiesce(devs...)
	}

	// A new pod appears under traffic: counted from its first datagram. Its source is routed by
	// table 101 once that has a route (the secondary uplink below), by the main table until then.
	p3v4, _ := n.addPod(3, false)
	n.sh("ip", "-n", n.node, "rule", "add", "from", "198.18.3.0/24", "lookup", "101")
	p3 := n.pods["p3"]
	p3Start, p3StartBytes := n.podSent("p3")
	if err := n.sendUDP(p3, p3v4, n.remote4, 1000, size, 0, nil); err != nil {
		t.Fatal(err)
	}
	var phaseA map[flow]counter.Value
	settleAndDrain := func(devs ...string) map[flow]counter.Value {
		p1Gate.Lock()
		defer p1Gate.Unlock()
		n.quiesce(devs...)
		return drain(t, c)
	}
	phaseA = settleAndDrain("up0", "p3")
	p3Pkts, p3Bytes := n.podSent("p3")
	if got, want := phaseA[flow{p3v4, n.remote4}], (counter.Value{Packets: p3Pkts - p3Start, Bytes: p3Bytes - p3StartBytes}); got.Packets != want.Packets || got.Bytes != want.Bytes || want.Bytes != want.Packets*(size+28) || want.Packets == 0 {
		t.Errorf("new pod p3 → remote: %+v, want the node's %d packets, %d bytes from p3 (of 1000 sent)", got, want.Packets, want.Bytes)
	}

	// A secondary uplink appears while p3 sends: the link first, then its default route in table
	// 101, which moves p3's traffic onto it.
	const p3Count = 3000
	var sentMu sync.Mutex
	var sent int
	halfway := make(chan struct{})
	p3Done := make(chan error, 1)
	p3Start, _ = n.podSent("p3")
	go func() {
		p3Done <- n.sendUDP(p3, p3v4, n.remote4, p3Count, size, 200*time.Microsecond, func(i int) {
			sentMu.Lock()
			sent = i
			sentMu.Unlock()
			if i == p3Count/4 {
				close(halfway)
			}
		})
	}()
	<-halfway
	n.veth(n.node, "up1", "02:00:00:00:65:01", "198.18.101.1", "fd00:101::1", n.remote, "eth1", "02:00:00:00:65:02", "198.18.101.2", "fd00:101::2", "30")
	up1Before, _ := n.devCounters("up1")
	upBeforeRoute := up1Before.txPackets + up1Before.txDropped
	routeAdding := time.Now()
	n.sh("ip", "-n", n.node, "route", "add", "default", "via", "198.18.101.2", "dev", "up1", "table", "101")
	routeAdded := time.Now()
	waitFor(t, f, changed, "up0", "up1")
	rec.mu.Lock()
	atAttach, attachedAt := rec.attachAt["up1"], rec.attached["up1"]
	rec.mu.Unlock()
	sentMu.Lock()
	sentAtAttach := sent
	sentMu.Unlock()
	if err := <-p3Done; err != nil {
		t.Fatal(err)
	}
	settle("up0", "up1", "p3")
	up1Pkts, _, _ := n.devTx("up1")
	phaseB := settleAndDrain("up0", "up1", "p3")
	if after, _, _ := n.devTx("up1"); after != up1Pkts {
		t.Fatalf("up1 sent %d more packets after p3 stopped", after-up1Pkts)
	}
	got := phaseB[flow{p3v4, n.remote4}]
	p3Pkts, _ = n.podSent("p3")
	p3B := p3Pkts - p3Start
	// Everything that passed up1's hook after the attach was counted; what passed it between the
	// route and the attach may not have been (up1's count then includes the node's own MLD, a
	// looser bound). Everything else p3 sent left through up0, counted throughout.
	missedAtMost := atAttach - upBeforeRoute
	if got.Packets > p3B || got.Packets+missedAtMost < p3B || got.Bytes != got.Packets*(size+28) {
		t.Errorf("p3 → remote while up1 appeared: %+v; the node took in %d from p3 (of %d sent), up1 passed %d before the attach", got, p3B, p3Count, missedAtMost)
	}
	if up1Pkts-atAttach == 0 || sentAtAttach >= p3Count {
		t.Errorf("no traffic through up1 after the attach (sent %d of %d by then): the test proves nothing", sentAtAttach, p3Count)
	}
	t.Logf("up1 counted %v after `ip route add` returned (%v after it started): at most %d datagrams of p3 missed, %d sent over up1 after",
		attachedAt.Sub(routeAdded).Round(time.Microsecond), attachedAt.Sub(routeAdding).Round(time.Microsecond), missedAtMost, up1Pkts-atAttach)

	// The secondary uplink is deleted while p3 sends: no error, the follower lets it go, no link
	// descriptor or pin is left.
	const p3CountC = 2000
	halfway = make(chan struct{})
	p3Start, _ = n.podSent("p3")
	go func() {
		p3Done <- n.sendUDP(p3, p3v4, n.remote4, p3CountC, size, 200*time.Microsecond, func(i int) {
			if i == p3CountC/4 {
				close(halfway)
			}
		})
	}()
	<-halfway
	n.sh("ip", "-n", n.node, "link", "del", "up1")
	waitFor(t, f, changed, "up0")
	if err := <-p3Done; err != nil {
		t.Fatal(err)
	}
	if err := <-p1Done; err != nil {
		t.Fatal(err)
	}
	phaseC := settleAndDrain("up0", "p1", "p3")
	p3Pkts, _ = n.podSent("p3")
	if got := phaseC[flow{p3v4, n.remote4}]; got.Packets > p3Pkts-p3Start {
		t.Errorf("p3 → remote while up1 went away: %+v, more than the %d the node took in from p3", got, p3Pkts-p3Start)
	}
	if got := testutil.ToFloat64(f.metrics.errors); got != 0 {
		t.Errorf("tc_attach_errors_total = %v, want 0", got)
	}
	if got := linkFDs(t); got != fdsBefore {
		t.Errorf("%d BPF link descriptors open after up1 went, %d before it came", got, fdsBefore)
	}

	// p1 sent through up0 the whole time: exact to the packet over all drains.
	var p1Got counter.Value
	for _, fl := range []map[flow]counter.Value{phaseA, phaseB, phaseC} {
		v := fl[flow{p1v4, n.remote4}]
		p1Got.Packets += v.Packets
		p1Got.Bytes += v.Bytes
	}
	p1Pkts, p1Bytes := n.podSent("p1")
	if want := (counter.Value{Packets: p1Pkts - p1Start, Bytes: p1Bytes - p1StartBytes}); p1Got.Packets != want.Packets || p1Got.Bytes != want.Bytes || want.Bytes != want.Packets*(size+28) {
		t.Errorf("p1 → remote throughout: %+v, want the node's %d packets, %d bytes from p1 (of %d sent)", p1Got, want.Packets, want.Bytes, p1Count)
	}

	// After all that the follower still follows: p3's traffic is back on up0 and counted exactly.
	p3Start, _ = n.podSent("p3")
	if err := n.sendUDP(p3, p3v4, n.remote4, 500, size, 0, nil); err != nil {
		t.Fatal(err)
	}
	n.quiesce("up0", "p3")
	p3Pkts, _ = n.podSent("p3")
	if got := drain(t, c)[flow{p3v4, n.remote4}]; got.Packets != p3Pkts-p3Start || got.Packets == 0 {
		t.Errorf("p3 → remote after up1 went: %+v, want the node's %d packets from p3 (of 500 sent)", got, p3Pkts-p3Start)
	}
}

// refusingAttacher is a kernel that refuses tc programs.
type refusingAttacher struct{}

func (refusingAttacher) AttachTCEgress(string, string) error {
	return fmt.Errorf("attaching tc filter: %w", unix.EOPNOTSUPP)
}
func (refusingAttacher) DetachTCEgress(string, string) error { return nil }

// A node where every qualifying interface refuses the program cannot count: Start says so. A node
// with no uplink yet starts and waits for one.
func TestStartFailsOnlyWhenNothingCanCount(t *testing.T) {
	n := newNode(t)
	log := slog.New(slog.DiscardHandler)
	_, err := Start("/run/netns/"+n.node, Rules{}, refusingAttacher{}, nil, log)
	if err == nil || !errors.Is(err, unix.EOPNOTSUPP) || !strings.Contains(err.Error(), "up0 (uplink)") {
		t.Errorf("Start with a kernel refusing tc programs = %v, want the interface and EOPNOTSUPP", err)
	}
	f, err := Start("/run/netns/"+n.remote, Rules{}, refusingAttacher{}, nil, log) // no default route there
	if err != nil {
		t.Fatalf("Start without any uplink: %v", err)
	}
	if got := f.Attached(); len(got) != 0 {
		t.Errorf("attached %v without an uplink", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Run(ctx); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}
