package demo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Port every generator server listens on (UDP, in its pod's namespace).
const Port = 7070

// Header sizes of the generator's packets: no IP options or extension headers are ever set.
const (
	udpHeader  = 8
	ipv4Header = 20
	ipv6Header = 40
)

// Call is one caller of the application: Src calls Dst Rate times a second, alternating IPv4 and IPv6,
// with a Request-byte datagram asking for a Response-byte answer (0: no answer).
type Call struct {
	Src, Dst *Pod      // Dst nil means the managed cache, or a Service when VIPs is set
	Ext      *External // the managed cache
	// VIPs are a Service's ClusterIPs (IPv4, IPv6) that Src calls instead of a pod: kube-proxy picks the
	// endpoint, and the generator learns it from the answer (see callService).
	VIPs              [2]netip.Addr
	Rate              float64 // calls per second
	Request, Response int     // UDP payload bytes
	name              string  //
	addrs             [2][2]netip.Addr
}

// Name says who calls whom.
func (c Call) Name() string { return c.name }

// Calls of a phase. Phase 1: every frontend calls the api of every zone; every api calls postgres and the
// managed cache; the host-network metrics agent scrapes the first zone's api. Phase 2: the frontend calls
// only its own zone's api, as topology-aware routing would make it.
func (m *Model) Calls(phase int) []Call {
	var calls []Call
	add := func(src, dst *Pod, rate float64, req, resp int) {
		c := Call{Src: src, Dst: dst, Rate: rate, Request: req, Response: resp}
		c.name = src.Workload + "(" + src.Node.Zone + ") → "
		if dst == nil {
			c.Ext = &m.Ext
			c.name += m.Ext.Name
			c.addrs = [2][2]netip.Addr{{src.IPv4, m.Ext.IPv4}, {src.IPv6, m.Ext.IPv6}}
		} else {
			c.name += dst.Workload + "(" + dst.Node.Zone + ")"
			c.addrs = [2][2]netip.Addr{{src.IPv4, dst.IPv4}, {src.IPv6, dst.IPv6}}
		}
		calls = append(calls, c)
	}
	for _, z := range m.Zones {
		fe := m.Pod("frontend", z)
		for _, z2 := range m.Zones {
			if phase == 1 || z2 == z {
				add(fe, m.Pod("api", z2), 40, 300, 1200)
			}
		}
	}
	db := m.Pod("postgres", m.Zones[0])
	for _, z := range m.Zones {
		api := m.Pod("api", z)
		add(api, db, 30, 200, 800)
		add(api, nil, 10, 400, 0)
	}
	for _, p := range m.Pods {
		if p.HostNetwork {
			add(p, m.Pod("api", m.Zones[0]), 5, 100, 1400)
		}
	}
	return calls
}

// RoutedCalls are the calls when a real kube-proxy routes the api Service (Options.Routing): the same as
// phase 1's, except that each frontend calls the api Service's ClusterIPs (vips: IPv4, IPv6) as often as
// it called all api pods together, and kube-proxy picks the endpoint of each call. The same calls run in
// both phases: what changes between them is the Service's routing, not the application.
func (m *Model) RoutedCalls(vips [2]netip.Addr) []Call {
	var calls []Call
	for _, c := range m.Calls(1) {
		if c.Src.Workload == "frontend" && c.Dst != nil && c.Dst.Workload == "api" {
			if c.Dst.Node.Zone != c.Src.Node.Zone {
				continue
			}
			rc := Call{Src: c.Src, VIPs: vips, Rate: c.Rate * float64(len(m.Zones)), Request: c.Request, Response: c.Response,
				name: "frontend(" + c.Src.Node.Zone + ") → api Service"}
			rc.addrs = [2][2]netip.Addr{{c.Src.IPv4, vips[0]}, {c.Src.IPv6, vips[1]}}
			calls = append(calls, rc)
			continue
		}
		calls = append(calls, c)
	}
	return calls
}

// PairCount is what the generator put on the wire between two addresses: datagrams and UDP payload bytes.
type PairCount struct {
	Packets, Payload uint64
}

// L3Bytes is the pair's bytes as the kernel counts them at POST_ROUTING (skb->len): payload plus the UDP
// header plus the IPv4 or IPv6 header, per packet.
func L3Bytes(src netip.Addr, c PairCount) uint64 {
	h := uint64(udpHeader + ipv4Header)
	if src.Is6() && !src.Is4In6() {
		h = udpHeader + ipv6Header
	}
	return c.Payload + c.Packets*h
}

// Ledger counts every datagram the generator sent successfully, per (src, dst) address pair.
type Ledger struct {
	mu sync.Mutex
	m  map[[2]netip.Addr]*PairCount
}

func newLedger() *Ledger { return &Ledger{m: map[[2]netip.Addr]*PairCount{}} }

func (l *Ledger) add(src, dst netip.Addr, payload int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]netip.Addr{src, dst}
	c := l.m[k]
	if c == nil {
		c = &PairCount{}
		l.m[k] = c
	}
	c.Packets++
	c.Payload += uint64(payload)
}

// Snapshot copies the counts.
func (l *Ledger) Snapshot() map[[2]netip.Addr]PairCount {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[[2]netip.Addr]PairCount, len(l.m))
	for k, v := range l.m {
		out[k] = *v
	}
	return out
}

// Generator owns one UDP socket per endpoint and family, opened inside the endpoint's network namespace.
// Servers answer each request with the size it asks for; everything sent is counted in the ledger.
type Generator struct {
	Ledger      *Ledger
	socks       map[netip.Addr]*net.UDPConn // by local address
	paused      atomic.Bool
	mu          sync.Mutex
	pausedAt    time.Time
	pausedTotal time.Duration
	wg          sync.WaitGroup
	closing     atomic.Bool
	errs        chan error
}

// NewGenerator opens the sockets of every pod (the host-network pod in its node's namespace) and of the
// managed cache, and starts their answering loops.
func NewGenerator(m *Model) (*Generator, error) {
	g := &Generator{Ledger: newLedger(), socks: map[netip.Addr]*net.UDPConn{}, errs: make(chan error, 16)}
	open := func(netns string, addrs ...netip.Addr) error {
		return InNetns(netns, func() error {
			for _, a := range addrs {
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, Port)))
				if err != nil {
					return fmt.Errorf("listening on [%s]:%d: %w", a, Port, err)
				}
				g.socks[a] = c
			}
			return nil
		})
	}
	for _, p := range m.Pods {
		if err := open(p.Netns, p.IPv4, p.IPv6); err != nil {
			g.Close()
			return nil, fmt.Errorf("opening sockets of %s: %w", p.Name, err)
		}
	}
	if err := open(m.Ext.Netns, m.Ext.IPv4, m.Ext.IPv6); err != nil {
		g.Close()
		return nil, fmt.Errorf("opening sockets of %s: %w", m.Ext.Name, err)
	}
	for a, c := range g.socks {
		g.wg.Add(1)
		go g.serve(a, c)
	}
	return g, nil
}

// serve answers requests: the first two bytes of a request are the answer's size.
func (g *Generator) serve(local netip.Addr, c *net.UDPConn) {
	defer g.wg.Done()
	buf := make([]byte, 2048)
	answer := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		// While paused, servers stay silent, except to a call through a Service (from a port other than
		// Port) that was in flight when the pause began: its caller waits for the answer to learn the
		// endpoint, and at most one such call per caller is ever in flight.
		if n < 2 || (g.silent(local) && from.Port() == Port) {
			continue
		}
		size := int(binary.BigEndian.Uint16(buf[:2]))
		// Any source port: a call through a Service comes from a socket of its own (one per call, so
		// kube-proxy picks an endpoint per call). An answer arriving here is never taken for a request:
		// its first two bytes are 0.
		if size == 0 || size > len(answer) {
			continue
		}
		// The answer names the address that received the request (after bytes 0-1, which stay 0 so an
		// answer is never taken for a request): the endpoint kube-proxy picked.
		if size >= answerNamesEndpoint {
			a16 := local.As16()
			copy(answer[2:answerNamesEndpoint], a16[:])
		}
		if _, err := c.WriteToUDPAddrPort(answer[:size], from); err == nil {
			g.Ledger.add(local, from.Addr().Unmap(), size)
		}
	}
}

// answerNamesEndpoint is the smallest answer that names the endpoint: 2 zero bytes and 16 address bytes.
const answerNamesEndpoint = 18

// Pause stops every caller and server from sending (they skip their turns) until Resume.
func (g *Generator) Pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused.Swap(true) {
		g.pausedAt = time.Now()
	}
}

// Resume undoes Pause.
func (g *Generator) Resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused.Swap(false) {
		g.pausedTotal += time.Since(g.pausedAt)
	}
}

// Paused is how long the generator was paused in total.
func (g *Generator) Paused() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pausedTotal
}

func (g *Generator) silent(src netip.Addr) bool {
	return g.paused.Load()
}

// Run drives the calls for d (bounded: at most Rate×d calls each, and never past ctx) and returns when
// all callers are done.
func (g *Generator) Run(ctx context.Context, calls []Call, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(calls))
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.call(ctx, c, d); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (g *Generator) call(ctx context.Context, c Call, d time.Duration) error {
	max := int(c.Rate * d.Seconds())
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.Rate))
	defer tick.Stop()
	req := make([]byte, c.Request)
	binary.BigEndian.PutUint16(req, uint16(c.Response))
	for i := 0; i < max; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		pair := c.addrs[i%2]
		if g.silent(pair[0]) {
			continue
		}
		if c.VIPs[0].IsValid() {
			if err := g.callService(c, pair[0], pair[1], req); err != nil {
				if g.closing.Load() {
					return nil
				}
				return err
			}
			continue
		}
		sock := g.socks[pair[0]]
		if sock == nil {
			return fmt.Errorf("%s: no socket for %s", c.name, pair[0])
		}
		if _, err := sock.WriteToUDPAddrPort(req, netip.AddrPortFrom(pair[1], Port)); err != nil {
			if g.closing.Load() {
				return nil
			}
			return fmt.Errorf("%s: sending to %s: %w", c.name, pair[1], err)
		}
		g.Ledger.add(pair[0], pair[1], len(req))
	}
	return nil
}

// callService makes one call to a Service's ClusterIP from a fresh socket of src in the caller's
// namespace (a new conntrack entry, so kube-proxy picks an endpoint for this call alone) and records the
// request under the endpoint the answer names: the address pair the request really had on the wire after
// kube-proxy's DNAT. The answer itself is recorded by the endpoint's server, which sent it.
func (g *Generator) callService(c Call, src, vip netip.Addr, req []byte) error {
	if c.Response < answerNamesEndpoint {
		return fmt.Errorf("%s: an answer of %d bytes cannot name the endpoint (at least %d)", c.name, c.Response, answerNamesEndpoint)
	}
	conn, err := dialFresh(c.Src.Netns, src, vip)
	if err != nil {
		return fmt.Errorf("%s: opening a socket for %s: %w", c.name, vip, err)
	}
	defer conn.Close()
	// Bounded: an answer on these veths takes microseconds; 5 s is only for a machine under load.
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("%s: sending to %s: %w", c.name, vip, err)
	}
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		return fmt.Errorf("%s: no answer from %s (the request's endpoint is unknown, so the ledger would be wrong): %w", c.name, vip, err)
	}
	if n < answerNamesEndpoint {
		return fmt.Errorf("%s: an answer of %d bytes from %s names no endpoint", c.name, n, vip)
	}
	ep := netip.AddrFrom16([16]byte(buf[2:answerNamesEndpoint])).Unmap()
	g.Ledger.add(src, ep, len(req))
	return nil
}

// Source ports of calls through a Service: each source address walks this range in order, so a call
// never reuses the port, and so the conntrack entry, of a recent call. A reused entry would send the call
// to the endpoint kube-proxy picked for the earlier one: kube-proxy leaves existing UDP flows where they
// are when a Service's routing changes (it flushes conntrack only for endpoints that went away). At the
// demo's 60 calls a second per source the range lasts 11 minutes, far beyond conntrack's UDP timeouts
// (30 s, 120 s once answered); the kernel's random ephemeral ports would collide within seconds.
const (
	callPortFirst = 20000
	callPortCount = 40000
)

var callPorts = struct {
	sync.Mutex
	next map[netip.Addr]int
}{next: map[netip.Addr]int{}}

// dialFresh opens a UDP socket in netns from src, on the next call port of src that is free, connected
// to dst:Port.
func dialFresh(netns string, src, dst netip.Addr) (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := InNetns(netns, func() error {
		var err error
		for range 100 { // a port still held by a socket is skipped; 100 in a row never are
			callPorts.Lock()
			port := callPortFirst + callPorts.next[src]%callPortCount
			callPorts.next[src]++
			callPorts.Unlock()
			conn, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(port))), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, Port)))
			if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
				return err
			}
		}
		return err
	})
	return conn, err
}

// Close closes every socket and waits for the answering loops.
func (g *Generator) Close() {
	g.closing.Store(true)
	for _, c := range g.socks {
		c.Close()
	}
	g.wg.Wait()
}
