package counter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// topo is a "node" network namespace forwarding between two "pod"
// namespaces over veth pairs created directly inside the namespaces:
//
//	pod a eth0 198.18.1.2 fd00:1::2 <-> va (node) 198.18.1.1 fd00:1::1
//	pod b eth0 198.18.2.2 fd00:2::2 <-> vb (node) 198.18.2.1 fd00:2::1
//
// DAD and router solicitations are off, neighbours are permanent and MLD
// report repeats are immediate, so after setup the node only forwards.
type topo struct {
	t       *testing.T
	node    string
	a, b    string
	podAddr map[string]netip.Addr // "a4", "a6", "b4", "b6"
}

var topoSeq atomic.Int32

func newTopo(t *testing.T) *topo {
	t.Helper()
	base := fmt.Sprintf("%s%d-%d-", netnsPrefix, os.Getpid(), topoSeq.Add(1))
	tp := &topo{t: t, node: base + "node", a: base + "a", b: base + "b", podAddr: map[string]netip.Addr{
		"a4": netip.MustParseAddr("198.18.1.2"), "a6": netip.MustParseAddr("fd00:1::2"),
		"b4": netip.MustParseAddr("198.18.2.2"), "b6": netip.MustParseAddr("fd00:2::2"),
	}}
	t.Cleanup(func() {
		for _, ns := range []string{tp.node, tp.a, tp.b} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	quiet := []string{
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.router_solicitations=0",
		"net.ipv6.conf.default.mldv1_unsolicited_report_interval=0",
		"net.ipv6.conf.default.mldv2_unsolicited_report_interval=0",
		"net.ipv4.conf.default.igmpv2_unsolicited_report_interval=0",
		"net.ipv4.conf.default.igmpv3_unsolicited_report_interval=0",
	}
	for _, ns := range []string{tp.node, tp.a, tp.b} {
		tp.ip("netns", "add", ns)
		tp.sh("ip", append([]string{"netns", "exec", ns, "sysctl", "-qw"}, quiet...)...)
	}
	tp.sh("ip", "netns", "exec", tp.node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	for _, p := range []struct{ pod, dev, n string }{{tp.a, "va", "1"}, {tp.b, "vb", "2"}} {
		nodeMAC, podMAC := "02:00:00:00:0"+p.n+":01", "02:00:00:00:0"+p.n+":02"
		tp.ip("link", "add", p.dev, "netns", tp.node, "address", nodeMAC, "type", "veth",
			"peer", "name", "eth0", "netns", p.pod, "address", podMAC)
		nodeV4, podV4 := "198.18."+p.n+".1", "198.18."+p.n+".2"
		nodeV6, podV6 := "fd00:"+p.n+"::1", "fd00:"+p.n+"::2"
		tp.ip("-n", tp.node, "addr", "add", nodeV4+"/24", "dev", p.dev)
		tp.ip("-n", tp.node, "addr", "add", nodeV6+"/64", "dev", p.dev, "nodad")
		tp.ip("-n", p.pod, "addr", "add", podV4+"/24", "dev", "eth0")
		tp.ip("-n", p.pod, "addr", "add", podV6+"/64", "dev", "eth0", "nodad")
		tp.ip("-n", tp.node, "link", "set", p.dev, "up")
		tp.ip("-n", p.pod, "link", "set", "eth0", "up")
		tp.ip("-n", p.pod, "link", "set", "lo", "up")
		tp.ip("-n", tp.node, "neigh", "add", podV4, "lladdr", podMAC, "dev", p.dev, "nud", "permanent")
		tp.ip("-n", tp.node, "neigh", "add", podV6, "lladdr", podMAC, "dev", p.dev, "nud", "permanent")
		tp.ip("-n", p.pod, "neigh", "add", nodeV4, "lladdr", nodeMAC, "dev", "eth0", "nud", "permanent")
		tp.ip("-n", p.pod, "neigh", "add", nodeV6, "lladdr", nodeMAC, "dev", "eth0", "nud", "permanent")
		tp.ip("-n", p.pod, "route", "add", "default", "via", nodeV4)
		tp.ip("-n", p.pod, "-6", "route", "add", "default", "via", nodeV6)
	}
	return tp
}

func (tp *topo) ip(args ...string) { tp.t.Helper(); tp.sh("ip", args...) }

func (tp *topo) sh(name string, args ...string) {
	tp.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tp.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func nsPath(name string) string { return "/run/netns/" + name }

// truth is what the node namespace's own counters say it forwarded.
type truth struct {
	forwarded uint64 // Ip:ForwDatagrams + Ip6OutForwDatagrams
	txPackets uint64 // va + vb
	txBytes   uint64
	mcPackets uint64 // node-originated multicast (MLD/IGMP), also in tx
	mcBytes   uint64
}

func (tp *topo) snapshot() truth {
	tp.t.Helper()
	var tr truth
	snmp := tp.nsFile(tp.node, "/proc/net/snmp")
	netstat := tp.nsFile(tp.node, "/proc/net/netstat")
	snmp6 := tp.nsFile(tp.node, "/proc/net/snmp6")
	tr.forwarded = procField(tp.t, snmp, "Ip:", "ForwDatagrams") + snmp6Field(tp.t, snmp6, "Ip6OutForwDatagrams")
	tr.mcPackets = procField(tp.t, snmp, "Ip:", "OutRequests") + snmp6Field(tp.t, snmp6, "Ip6OutRequests")
	tr.mcBytes = procField(tp.t, netstat, "IpExt:", "OutMcastOctets") + snmp6Field(tp.t, snmp6, "Ip6OutMcastOctets")
	for _, dev := range []string{"va", "vb"} {
		tr.txPackets += tp.devStat(dev, "tx_packets")
		tr.txBytes += tp.devStat(dev, "tx_bytes")
	}
	return tr
}

// nsFile reads a /proc/net file as seen from inside namespace ns.
func (tp *topo) nsFile(ns, path string) string {
	tp.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", path).Output()
	if err != nil {
		tp.t.Fatalf("reading %s in %s: %v", path, ns, err)
	}
	return string(out)
}

func (tp *topo) devStat(dev, stat string) uint64 {
	tp.t.Helper()
	s := strings.TrimSpace(tp.nsFile(tp.node, "/sys/class/net/"+dev+"/statistics/"+stat))
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		tp.t.Fatalf("parsing %s %s: %v", dev, stat, err)
	}
	return v
}

// procField reads a counter from the two-line "Prefix: names / Prefix: values"
// format of /proc/net/snmp and /proc/net/netstat.
func procField(t *testing.T, text, prefix, name string) uint64 {
	t.Helper()
	var header []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != prefix {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, h := range header {
			if h == name && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatalf("parsing %s %s: %v", prefix, name, err)
				}
				return v
			}
		}
		break
	}
	t.Fatalf("%s %s not found", prefix, name)
	return 0
}

func snmp6Field(t *testing.T, text, name string) uint64 {
	t.Helper()
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("parsing %s: %v", name, err)
			}
			return v
		}
	}
	t.Fatalf("%s not found", name)
	return 0
}

// quiesce waits until the node's counters stop moving, so no packet is
// between the hook and the device when counters and maps are compared. It is
// a settle wait, not an assertion: the comparison afterwards is exact.
func (tp *topo) quiesce() truth {
	tp.t.Helper()
	prev := tp.snapshot()
	stable := 0
	for range 250 {
		time.Sleep(20 * time.Millisecond)
		cur := tp.snapshot()
		if cur == prev {
			if stable++; stable == 3 {
				return cur
			}
			continue
		}
		stable, prev = 0, cur
	}
	tp.t.Fatalf("node namespace never went quiet")
	return truth{}
}

// forwardedBytes is the layer-3 bytes the node forwarded between two
// snapshots: veth tx bytes without their 14-byte Ethernet headers, minus what
// the node sent itself. It fails the test if the node sent anything it did not
// forward beyond its own multicast, so the figure is exact.
func forwardedBytes(t *testing.T, before, after truth) (pkts, bytes uint64) {
	t.Helper()
	tx := after.txPackets - before.txPackets
	own := after.mcPackets - before.mcPackets
	fwd := after.forwarded - before.forwarded
	if tx != fwd+own {
		t.Fatalf("node sent %d packets, forwarded %d and originated %d: unexplained traffic", tx, fwd, own)
	}
	bytes = after.txBytes - before.txBytes - 14*tx - (after.mcBytes - before.mcBytes)
	return fwd, bytes
}

// podFlows sums the drained flows between the two pods; other keys are
// node-originated (MLD) and logged.
func (tp *topo) podFlows(t *testing.T, flows map[Key]Value) Value {
	t.Helper()
	pods := map[[16]byte]bool{}
	for _, a := range tp.podAddr {
		pods[a.As16()] = true
	}
	var sum Value
	for k, v := range flows {
		if !pods[k.Src] || !pods[k.Dst] {
			t.Logf("not a pod flow: %v %+v", k, v)
			continue
		}
		sum.Bytes += v.Bytes
		sum.Packets += v.Packets
		sum.Segments += v.Segments
	}
	return sum
}

// inNS runs fn with the calling goroutine's thread in namespace ns, so
// sockets fn creates belong to that namespace.
func (tp *topo) inNS(ns string, fn func() error) {
	tp.t.Helper()
	if err := inNetns(nsPath(ns), fn); err != nil {
		tp.t.Fatalf("in netns %s: %v", ns, err)
	}
}

// sendUDP sends count datagrams of size bytes from pod a to pod b on each of
// the given destination ports, and returns when all are handed to the kernel.
func (tp *topo) sendUDP(v6 bool, count, size int, ports ...int) {
	tp.t.Helper()
	network, src, dst := "udp4", tp.podAddr["a4"], tp.podAddr["b4"]
	if v6 {
		network, src, dst = "udp6", tp.podAddr["a6"], tp.podAddr["b6"]
	}
	var conns []*net.UDPConn
	tp.inNS(tp.b, func() error {
		for _, p := range ports {
			l, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(p))))
			if err != nil {
				return err
			}
			conns = append(conns, l)
		}
		return nil
	})
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var senders []*net.UDPConn
	tp.inNS(tp.a, func() error {
		for _, p := range ports {
			c, err := net.DialUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(p))))
			if err != nil {
				return err
			}
			senders = append(senders, c)
		}
		return nil
	})
	defer func() {
		for _, c := range senders {
			c.Close()
		}
	}()
	buf := make([]byte, size)
	for i := range count {
		for _, c := range senders {
			if _, err := c.Write(buf); err != nil && !errors.Is(err, syscallENOBUFS) {
				tp.t.Fatalf("sending datagram %d: %v", i, err)
			}
		}
	}
}

// sendTCP moves total bytes from pod a to pod b over one connection and
// returns after both sides closed it.
func (tp *topo) sendTCP(v6 bool, total int) {
	tp.t.Helper()
	network, dst := "tcp4", tp.podAddr["b4"]
	if v6 {
		network, dst = "tcp6", tp.podAddr["b6"]
	}
	var ln net.Listener
	tp.inNS(tp.b, func() error {
		var err error
		ln, err = net.Listen(network, netip.AddrPortFrom(dst, 0).String())
		return err
	})
	defer ln.Close()
	var wg sync.WaitGroup
	var recvErr error
	var received int64
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			recvErr = err
			return
		}
		defer c.Close()
		received, recvErr = io.Copy(io.Discard, c)
	})
	var conn net.Conn
	tp.inNS(tp.a, func() error {
		var err error
		conn, err = net.DialTimeout(network, ln.Addr().String(), 10*time.Second)
		return err
	})
	buf := make([]byte, 64<<10)
	for sent := 0; sent < total; sent += len(buf) {
		if _, err := conn.Write(buf); err != nil {
			tp.t.Fatalf("sending: %v", err)
		}
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		tp.t.Fatalf("closing write side: %v", err)
	}
	wg.Wait()
	// Reading to EOF means the receiver's FIN arrived and was acknowledged.
	_, _ = io.Copy(io.Discard, conn)
	conn.Close()
	if recvErr != nil || received < int64(total) {
		tp.t.Fatalf("receiver got %d of %d bytes: %v", received, total, recvErr)
	}
}

func TestNetfilterCountsForwardedTraffic(t *testing.T) {
	requireKernel(t)
	tp := newTopo(t)
	c := loadForTest(t, Config{MaxFlows: 1024, Mode: ModeNetfilter})
	if err := c.AttachNetfilter(nsPath(tp.node)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		v6   bool
		tcp  bool
	}{
		{"udp4", false, false}, {"udp6", true, false},
		{"tcp4", false, true}, {"tcp6", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drainAll(t, c)
			before := tp.quiesce()
			if tt.tcp {
				tp.sendTCP(tt.v6, 8<<20)
			} else {
				tp.sendUDP(tt.v6, 500, 1000, 5001, 5002)
			}
			after := tp.quiesce()
			got := tp.podFlows(t, drainAll(t, c))
			pkts, bytes := forwardedBytes(t, before, after)
			if got.Packets != pkts || got.Bytes != bytes {
				t.Errorf("counted %d packets / %d bytes, node forwarded %d / %d", got.Packets, got.Bytes, pkts, bytes)
			}
			if pkts == 0 {
				t.Fatalf("no packets forwarded: test network broken")
			}
			switch {
			case !tt.tcp && got.Segments != got.Packets:
				t.Errorf("udp: %d segments for %d packets, want equal", got.Segments, got.Packets)
			case tt.tcp && got.Segments <= got.Packets:
				t.Errorf("tcp: %d segments for %d packets, want GSO skbs counted as several segments", got.Segments, got.Packets)
			}
			t.Logf("%d packets, %d segments, %d bytes", got.Packets, got.Segments, got.Bytes)
		})
	}
}

var _ = context.Background
