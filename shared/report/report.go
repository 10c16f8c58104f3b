// Package report is the wire format of the reports a flowagent sends to its
// flowserver: one node's flows over one time window.
//
// Version 1 is a compact binary encoding with exactly one valid encoding per
// report, so decoding and re-encoding reproduces the input byte for byte. The
// format is described byte by byte in docs/wire-format.md. The server decodes
// untrusted input: Decode never panics and never allocates more than its
// Limits allow.
package report

import (
	"net/netip"
	"time"
)

// Version is the only format version this package encodes and decodes.
const Version = 1

// magic opens every report so that a body that is not a report at all (a JSON
// error page, a proxy's HTML) is rejected at the first bytes.
const magic = "ZTRP"

// Sizes of the fixed parts, in bytes.
const (
	headerFixedLen = len(magic) + 1 + 1 // magic, version, flags
	bootIDLen      = 16
	addrLen        = 16
	// minFlowLen is a flow whose byte and packet counts are both below 128.
	minFlowLen = 2*addrLen + 1 + 1
	// maxFlowLen is a flow whose counts both need the longest uvarint.
	maxFlowLen = 2*addrLen + maxVarintLen + maxVarintLen
	// maxHeaderLen is the largest possible encoding of everything before the
	// first flow: fixed header, node name, boot id, sequence, window, count.
	maxHeaderLen = headerFixedLen + 2 + MaxNodeNameLen + bootIDLen + 8 + 8 + 8 + maxVarintLen

	maxVarintLen = 10
)

// MaxNodeNameLen is the longest node name the format carries; it is the
// Kubernetes limit for a DNS-1123 subdomain.
const MaxNodeNameLen = 253

// DefaultMaxFlows is the flow limit of a zero Limits. It is about 2.6 times
// the 100,000 distinct (src, dst) pairs per node and interval the project is
// designed for, so a busy node is not refused, while a report at the limit
// still decodes into at most DefaultMaxFlows × 48 bytes of Flows.
const DefaultMaxFlows = 1 << 18

// Addr is an IP address as 16 bytes, the form BPF map keys use: IPv6 as is,
// IPv4 as an IPv4-mapped IPv6 address (::ffff:a.b.c.d).
type Addr [16]byte

// AddrFrom returns ip as an Addr, mapping IPv4 into IPv6. An IPv6 zone is
// dropped, since the wire format has no place for it. The zero netip.Addr
// becomes the all-zero Addr (::).
func AddrFrom(ip netip.Addr) Addr {
	return Addr(ip.As16())
}

// Netip returns a as a netip.Addr, unmapping IPv4-mapped addresses so that
// IPv4 addresses compare equal to those parsed from dotted-quad text.
func (a Addr) Netip() netip.Addr {
	return netip.AddrFrom16(a).Unmap()
}

// String returns the address in its usual text form (1.2.3.4 or 2001:db8::1).
func (a Addr) String() string {
	return a.Netip().String()
}

// Flow is the traffic from Src to Dst within a report's window. Bytes are
// layer-3 bytes including IP headers. The format carries any counts: it
// validates structure, not plausibility, so packets == 0 with bytes > 0 is
// decoded as sent and left for the server to judge.
type Flow struct {
	Src, Dst       Addr
	Bytes, Packets uint64
}

// Report is one node's flows over one window. Node, BootID and Sequence
// identify it, so that a retried report can be applied only once.
type Report struct {
	// Node is the Kubernetes node name, a DNS-1123 subdomain.
	Node string
	// BootID identifies one run of the agent (a random UUID); it must not be
	// all zeros. Sequence numbers count within one BootID.
	BootID   [16]byte
	Sequence uint64
	// WindowStart and WindowEnd bound the window the flows were counted in.
	// On the wire they are Unix nanoseconds; decoded times are in UTC.
	WindowStart, WindowEnd time.Time
	Flows                  []Flow
}

// Limits bound what Decode accepts. The zero value uses the defaults.
type Limits struct {
	// MaxFlows is the largest flow count accepted; zero or negative means
	// DefaultMaxFlows.
	MaxFlows int
}

func (l Limits) maxFlows() int {
	if l.MaxFlows <= 0 {
		return DefaultMaxFlows
	}
	return l.MaxFlows
}

// MaxEncodedLen is the length of the longest report these limits accept. It
// is the natural bound on a decompressed body: nothing longer can decode.
func (l Limits) MaxEncodedLen() int64 {
	return int64(maxHeaderLen) + int64(l.maxFlows())*int64(maxFlowLen)
}
