package counter

import (
	"errors"
)

// tc egress: the same program at egress of the interfaces that leave the
// node (uplinks, overlay devices). Egress there sees what the node sends
// after routing and destination NAT, once per packet, and never traffic
// between two pods of the node; docs/bpf.md ("tc mode: where it counts")
// has the reasons. The frame starts with its Ethernet header at tc egress
// as at ingress, so the program is the same. AttachTC (ingress) is kept for
// callers that count pod veths themselves.

// ErrNoInterface is returned by AttachTCEgress and AttachTC when the interface does not exist (any more): a caller following
// interfaces treats it as gone.
var ErrNoInterface = errors.New("no such interface")

// AttachTCEgress attaches the program at egress of interface ifname in the
// network namespace at netnsPath ("" = the caller's). With tcx (kernel 6.6+)
// the link is anchored before other tcx programs and pinned (tcxe-…);
// otherwise a clsact qdisc is added if missing and a direct-action bpf filter
// installed at egress and recorded (clse-…). Either way the hook outlives the
// process like the netfilter links, the next Load adopts it when its program
// is the same, and the program never changes a verdict. Attaching the same
// interface again keeps a tcx link that is on it already (adopted after a
// restart, or attached twice) and replaces one left from an earlier
// interface of that name; a classic filter is replaced in place.
func (c *Counter) AttachTCEgress(netnsPath, ifname string) error {
	return c.attachTC(netnsPath, ifname, true)
}

// DetachTCEgress removes what AttachTCEgress attached to ifname, for
// example when the interface is gone: the kernel detached it with the
// interface, but a tcx link still holds a file descriptor and a pin until
// closed, and a classic filter's record stays until removed. Unknown
// interfaces are a no-op.
func (c *Counter) DetachTCEgress(netnsPath, ifname string) error {
	return c.detachTC(netnsPath, ifname, true)
}

// TCX reports whether tc mode uses tcx links (kernel 6.6+) rather than
// classic clsact filters.
func (c *Counter) TCX() bool { return c.tcx }
