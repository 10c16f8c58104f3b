package counter

import (
	"context"
	"encoding/binary"
	"maps"
	"math"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/zonetoll/zonetoll/bpf/kerneltest"
)

const (
	nfInetPostRouting = 4
	nfProtoIPv4       = 2
	nfProtoIPv6       = 10
)

// ipPacket builds an IP packet with a transport header and payload; checksums
// are left zero because the program does not read them.
func ipPacket(src, dst netip.Addr, proto byte, payload int) []byte {
	var l4 []byte
	switch proto {
	case 6: // TCP: 20-byte header, data offset 5
		l4 = make([]byte, 20+payload)
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], 80)
		l4[12] = 5 << 4
	case 17: // UDP
		l4 = make([]byte, 8+payload)
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], 53)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	case 1, 58: // ICMP / ICMPv6 echo request
		l4 = make([]byte, 8+payload)
		l4[0] = 8
		if proto == 58 {
			l4[0] = 128
		}
	}
	if src.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		h[8] = 64
		h[9] = proto
		copy(h[12:], src.AsSlice())
		copy(h[16:], dst.AsSlice())
		return append(h, l4...)
	}
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	h[6] = proto
	h[7] = 64
	copy(h[8:], src.AsSlice())
	copy(h[24:], dst.AsSlice())
	return append(h, l4...)
}

// ethFrame prepends the Ethernet header test runs at POST_ROUTING require.
func ethFrame(ip []byte, v6 bool) []byte {
	eth := make([]byte, 14)
	copy(eth[0:], []byte{2, 0, 0, 0, 0, 2})
	copy(eth[6:], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(eth[12:], 0x0800)
	if v6 {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
	}
	return append(eth, ip...)
}

func keyOf(src, dst netip.Addr) Key {
	return Key{Src: src.As16(), Dst: dst.As16()}
}

func drainAll(t testing.TB, c *Counter) map[Key]Value {
	t.Helper()
	got := map[Key]Value{}
	if _, err := c.Drain(context.Background(), func(k Key, v Value) {
		s := got[k]
		s.Bytes += v.Bytes
		s.Packets += v.Packets
		s.Segments += v.Segments
		got[k] = s
	}); err != nil {
		t.Fatalf("draining: %v", err)
	}
	return got
}

func loadForTest(t testing.TB, cfg Config) *Counter {
	t.Helper()
	requireMode(t, cfg.Mode)
	if cfg.PinDir == "" {
		cfg.PinDir = kerneltest.PinDir(t)
	}
	c, err := Load(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("loading counter: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing counter: %v", err)
		}
	})
	return c
}

// runPacket runs c's program once on an Ethernet frame carrying ip, as the
// netfilter POST_ROUTING hook or tcx ingress would see it, and returns the
// verdict.
func runPacket(t *testing.T, c *Counter, frame []byte, v6 bool) uint32 {
	t.Helper()
	opts := &ebpf.RunOptions{Data: frame, Repeat: 1}
	if c.Mode() == ModeNetfilter {
		pf := byte(nfProtoIPv4)
		if v6 {
			pf = nfProtoIPv6
		}
		// struct nf_hook_state: only hook and pf may be set.
		opts.Context = []byte{nfInetPostRouting, pf, 0, 0, 0, 0, 0, 0}
	}
	ret, err := c.prog.Run(opts)
	if err != nil {
		t.Fatalf("running program: %v", err)
	}
	return ret
}

// wantVerdict is what each mode must return: accept, or pass to the next
// tcx program, never a verdict of its own.
var wantVerdict = map[Mode]uint32{ModeNetfilter: 1, ModeTC: ^uint32(0)}

// craftedPacket is an IP packet TestProgramCountsCraftedPackets runs the program on.
type craftedPacket struct {
	name     string
	src, dst netip.Addr
	proto    byte
	payload  int
}

func TestProgramCountsCraftedPackets(t *testing.T) {
	kerneltest.Require(t)
	v4a, v4b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.7.200")
	v6a, v6b := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00:1:2::abcd")
	tests := []craftedPacket{
		{"ipv4 tcp", v4a, v4b, 6, 100},
		{"ipv4 udp", v4b, v4a, 17, 1},
		{"ipv4 icmp", v4a, v4b, 1, 56},
		{"ipv4 udp full mtu", v4a, v4b, 17, 1472},
		{"ipv6 tcp", v6a, v6b, 6, 1000},
		{"ipv6 udp", v6b, v6a, 17, 0},
		{"ipv6 icmp", v6a, v6b, 58, 56},
	}
	for _, mode := range []Mode{ModeNetfilter, ModeTC} {
		// A subtest per mode, so a kernel without netfilter programs skips that mode only.
		t.Run(string(mode), func(t *testing.T) { testCraftedPackets(t, mode, tests) })
	}
}

func testCraftedPackets(t *testing.T, mode Mode, tests []craftedPacket) {
	c := loadForTest(t, Config{MaxFlows: 64, Mode: mode})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := ipPacket(tt.src, tt.dst, tt.proto, tt.payload)
			if ret := runPacket(t, c, ethFrame(pkt, tt.src.Is6()), tt.src.Is6()); ret != wantVerdict[mode] {
				t.Errorf("verdict = %d, want %d", int32(ret), int32(wantVerdict[mode]))
			}
			got := drainAll(t, c)
			// Layer-3 bytes: the IP packet without the Ethernet header.
			want := map[Key]Value{keyOf(tt.src, tt.dst): {Bytes: uint64(len(pkt)), Packets: 1, Segments: 1}}
			if !maps.Equal(got, want) {
				t.Errorf("flows = %v, want %v", got, want)
			}
		})
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s != (Stats{}) {
		t.Errorf("%s: stats = %+v, want zero", mode, s)
	}
}

// The kernel refuses test runs of truncated IP packets, so the parse-failure
// path is not reachable here.
func TestTCProgramSkipsNonIP(t *testing.T) {
	kerneltest.Require(t)
	c := loadForTest(t, Config{MaxFlows: 64, Mode: ModeTC})

	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	if ret := runPacket(t, c, arp, false); ret != wantVerdict[ModeTC] {
		t.Errorf("arp verdict = %d, want %d", int32(ret), int32(wantVerdict[ModeTC]))
	}
	if got := drainAll(t, c); len(got) != 0 {
		t.Errorf("flows = %v, want none", got)
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s != (Stats{}) {
		t.Errorf("stats = %+v, want zero: ARP is neither a flow nor a failure", s)
	}
}

func (k Key) String() string {
	return netip.AddrFrom16(k.Src).Unmap().String() + "->" + netip.AddrFrom16(k.Dst).Unmap().String()
}

// The netfilter program adds packets and segments with one atomic add and
// records each carry out of either 32-bit half. Flows seeded just below both
// carries must still drain exact in both families.
func TestProgramCarriesPackedCounters(t *testing.T) {
	kerneltest.Require(t)
	c := loadForTest(t, Config{MaxFlows: 64, Mode: ModeNetfilter})
	// Packets 2^32-2, segments 2^32-1: the first packet carries out of the
	// segments half, the second out of the packets half.
	seed := counterFlowValue{Bytes: 1000, PktsSegs: math.MaxUint32<<32 | (math.MaxUint32 - 1)}
	tests := []struct {
		name     string
		src, dst netip.Addr
	}{
		{"ipv4", netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.7.200")},
		{"ipv6", netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00:1:2::abcd")},
	}
	const runs = 3
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.src.Is4() {
				err = c.flows4[c.active].Put(key4{Src: tt.src.As4(), Dst: tt.dst.As4()}, seed)
			} else {
				err = c.flows6[c.active].Put(keyOf(tt.src, tt.dst), seed)
			}
			if err != nil {
				t.Fatalf("seeding flow: %v", err)
			}
			pkt := ipPacket(tt.src, tt.dst, 17, 10)
			for range runs {
				runPacket(t, c, ethFrame(pkt, tt.src.Is6()), tt.src.Is6())
			}
			got := drainAll(t, c)
			want := map[Key]Value{keyOf(tt.src, tt.dst): {
				Bytes:    1000 + runs*uint64(len(pkt)),
				Packets:  math.MaxUint32 - 1 + runs,
				Segments: math.MaxUint32 + runs,
			}}
			if !maps.Equal(got, want) {
				t.Errorf("flows = %v, want %v", got, want)
			}
		})
	}
}
