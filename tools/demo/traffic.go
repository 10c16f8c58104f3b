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
	Src, Dst          *Pod      // Dst nil means the managed cache
	Ext               *External // set when Dst is nil
	Rate              float64   // calls per second
	Request, Response int       // UDP payload bytes
	name              string    //
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
		if n < 2 || g.silent(local) {
			continue
		}
		size := int(binary.BigEndian.Uint16(buf[:2]))
		if size == 0 || size > len(answer) || from.Port() != Port {
			continue
		}
		if _, err := c.WriteToUDPAddrPort(answer[:size], from); err == nil {
			g.Ledger.add(local, from.Addr().Unmap(), size)
		}
	}
}

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

// Close closes every socket and waits for the answering loops.
func (g *Generator) Close() {
	g.closing.Store(true)
	for _, c := range g.socks {
		c.Close()
	}
	g.wg.Wait()
}
