package counter

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/bpf/netns"
)

// tc egress: the same program at egress of the interfaces that leave the
// node (uplinks, overlay devices). Egress there sees what the node sends
// after routing and destination NAT, once per packet, and never traffic
// between two pods of the node; docs/bpf.md ("tc mode: where it counts")
// has the reasons. The frame starts with its Ethernet header at tc egress
// as at ingress, so the program is the same. AttachTC (ingress) is kept for
// callers that count pod veths themselves.

// ErrNoInterface is returned by AttachTCEgress (and AttachTC without tcx)
// when the interface does not exist (any more): a caller following
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.mode != ModeTC {
		return fmt.Errorf("attaching tc egress: program loaded for mode %s", c.mode)
	}
	if !c.tcx {
		return c.attachClassic(netnsPath, ifname, hookClsEgress)
	}
	ino, err := netnsInode(netnsPath)
	if err != nil {
		return fmt.Errorf("attaching tc egress: %w", err)
	}
	h := hook{kind: hookTCXEgress, netns: ino, ifname: ifname}
	err = netns.Do(netnsPath, func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("attaching tc egress to %s: %w (%w)", ifname, ErrNoInterface, err)
		}
		if l, ok := c.gen.links[h]; ok {
			// Still on this interface (adopted, or attached before): counting already.
			if info, err := l.Info(); err == nil && info.TCX() != nil && int(info.TCX().Ifindex) == iface.Index {
				c.claimed[h] = true
				return nil
			}
			// The interface was recreated under the same name: replace.
			if err := c.gen.detach(h); err != nil {
				return err
			}
		}
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: iface.Index,
			Program:   c.prog,
			Attach:    ebpf.AttachTCXEgress,
			Anchor:    link.Head(),
		})
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("attaching tcx egress to %s: %w (%w)", ifname, ErrNoInterface, err)
		}
		if err != nil {
			return fmt.Errorf("attaching tcx egress to %s: %w", ifname, err)
		}
		if err := c.gen.pin(h, l); err != nil {
			_ = l.Close()
			return err
		}
		c.claimed[h] = true
		return nil
	})
	if err != nil {
		return err
	}
	c.attached = true
	c.log.Debug("attached tc egress", "netns", netnsPath, "interface", ifname, "tcx", true, "generation", c.gen.gen)
	return nil
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
