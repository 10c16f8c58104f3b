// Package tcfollow keeps the tc counter attached to the interfaces through which traffic leaves the
// node, following them as they come and go by netlink events (links and routes), without a list.
//
// Which interfaces, and why egress: docs/bpf.md ("tc mode: where it counts").
package tcfollow

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Role says why an interface is counted.
type Role string

const (
	// RoleUplink: the output device of a default route, in any routing table (the main table's
	// eth0; the per-interface tables the AWS VPC CNI gives eth1, eth2 …).
	RoleUplink Role = "uplink"
	// RoleOverlay: a VXLAN or Geneve device; its egress sees the pod's inner packet before
	// encapsulation, as netfilter's POST_ROUTING does.
	RoleOverlay Role = "overlay"
	// RolePattern: the name matches ZONETOLL_BPF_TC_UPLINK_PATTERNS.
	RolePattern Role = "pattern"
	// RoleListed: named in ZONETOLL_BPF_TC_INTERFACES, which replaces detection.
	RoleListed Role = "listed"
)

// overlayKinds are the link kinds whose egress carries a pod's inner packet with an Ethernet
// header: flannel's flannel.1, Cilium's cilium_vxlan / cilium_geneve, Calico's vxlan.calico.
var overlayKinds = []string{"vxlan", "geneve"}

// Rules decide which interfaces are counted.
type Rules struct {
	// Interfaces, when set, are the only interfaces counted (followed by name as they appear
	// and vanish); detection is off.
	Interfaces []string
	// Patterns are shell globs (path.Match) of interface names counted besides the detected ones,
	// for uplinks without a default route.
	Patterns []string
}

// Validate checks the patterns.
func (r Rules) Validate() error {
	for _, p := range r.Patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	return nil
}

// iface is one interface as the classifier sees it.
type iface struct {
	name  string
	index int
	kind  string // netlink link type: veth, vxlan, device, bond …
	encap string // ARPHRD as text: ether, loopback, none, ipip …
}

// classify returns the interfaces to count, by name, and (in skipped) interfaces that would be
// counted but have no Ethernet header at egress: the program reads the IP header after 14 bytes.
func (r Rules) classify(links []iface, defaultRouteIfindexes map[int]bool) (want map[string]Target, skipped []string) {
	want = map[string]Target{}
	for _, l := range links {
		var role Role
		switch {
		case len(r.Interfaces) > 0:
			if slices.Contains(r.Interfaces, l.name) {
				role = RoleListed
			}
		case l.encap == "loopback":
		case defaultRouteIfindexes[l.index]:
			role = RoleUplink
		case slices.Contains(overlayKinds, l.kind):
			role = RoleOverlay
		case r.matches(l.name):
			role = RolePattern
		}
		if role == "" {
			continue
		}
		if l.encap != "ether" {
			skipped = append(skipped, fmt.Sprintf("%s (%s, %s)", l.name, l.kind, l.encap))
			continue
		}
		want[l.name] = Target{Name: l.name, Index: l.index, Role: role}
	}
	return want, skipped
}

func (r Rules) matches(name string) bool {
	for _, p := range r.Patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// keepAttached adds to want the attached interfaces that still exist as the same interface (name
// and index): an uplink stays counted while it exists, even when its default route goes away for a
// moment (a DHCP renewal, a route replaced by a CNI) and traffic leaves through it by more specific
// routes meanwhile. Only a vanished, renamed or recreated interface is let go.
func keepAttached(want, attached map[string]Target, links []iface) {
	for name, t := range attached {
		if _, ok := want[name]; ok {
			continue
		}
		for _, l := range links {
			if l.name == name && l.index == t.Index {
				want[name] = t
				break
			}
		}
	}
}

// Target is an interface the counter is attached to.
type Target struct {
	Name  string
	Index int
	Role  Role
}

// defaultRouteDevices returns the output devices of the default unicast routes in routes (any
// table, IPv4 and IPv6, including each next hop of a multipath route).
func defaultRouteDevices(routes []netlink.Route) map[int]bool {
	out := map[int]bool{}
	for _, rt := range routes {
		if rt.Type != unix.RTN_UNICAST || !isDefault(rt.Dst) {
			continue
		}
		if rt.LinkIndex > 0 {
			out[rt.LinkIndex] = true
		}
		for _, nh := range rt.MultiPath {
			if nh.LinkIndex > 0 {
				out[nh.LinkIndex] = true
			}
		}
	}
	return out
}

// isDefault reports whether dst is a default route's destination: absent, or a /0.
func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

// toIface turns a netlink link into what classify reads.
func toIface(l netlink.Link) iface {
	a := l.Attrs()
	return iface{name: a.Name, index: a.Index, kind: l.Type(), encap: strings.ToLower(a.EncapType)}
}
