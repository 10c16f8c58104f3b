package counter

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tc egress: the same program at egress of the interfaces that leave the
// node (uplinks, overlay devices). Egress there sees what the node sends
// after routing and destination NAT, once per packet, and never traffic
// between two pods of the node; docs/bpf.md ("tc mode: where it counts")
// has the reasons. The frame starts with its Ethernet header at tc egress
// as at ingress, so the program is the same. AttachTC (ingress) is kept for
// callers that count pod veths themselves.

// egressKey is the key of a classic egress filter in Counter.tc, apart from
// the ingress filter of the same interface. Interface names cannot contain a
// colon (the kernel's dev_valid_name refuses it), so it never collides with
// an ingress key.
func egressKey(netnsPath, ifname string) tcTarget {
	return tcTarget{netnsPath, "egress:" + ifname}
}

// ErrNoInterface is returned by AttachTCEgress when the interface does not
// exist (any more): a caller following interfaces treats it as gone.
var ErrNoInterface = errors.New("no such interface")

// AttachTCEgress attaches the program at egress of interface ifname in the
// network namespace at netnsPath ("" = the caller's). With tcx (kernel 6.6+)
// the link is anchored before other tcx programs and pinned, so it outlives
// the process like the netfilter links; otherwise a clsact qdisc is added if
// missing and a direct-action bpf filter installed at egress. Either way the
// program never changes a verdict. Attaching the same interface again keeps
// a link that is on it already (adopted after a restart, or attached twice)
// and replaces one left from an earlier interface of that name.
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
		return c.attachClassicEgress(netnsPath, ifname)
	}
	ino, err := netnsInode(netnsPath)
	if err != nil {
		return fmt.Errorf("attaching tc egress: %w", err)
	}
	h := hook{kind: hookTCXEgress, netns: ino, ifname: ifname}
	err = inNetns(netnsPath, func() error {
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

// attachClassicEgress installs the program as a clsact egress filter,
// replacing an earlier one on the interface. Filters have no pins: Close
// removes them.
func (c *Counter) attachClassicEgress(netnsPath, ifname string) error {
	key := egressKey(netnsPath, ifname)
	if old, ok := c.tc[key]; ok {
		_ = old.Close()
		delete(c.tc, key)
	}
	var l io.Closer
	err := inNetns(netnsPath, func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("attaching tc egress to %s: %w (%w)", ifname, ErrNoInterface, err)
		}
		l, err = c.addClassicEgressFilter(netnsPath, iface)
		return err
	})
	if err != nil {
		return err
	}
	c.tc[key] = l
	c.attached = true
	c.log.Debug("attached tc egress", "netns", netnsPath, "interface", ifname, "tcx", false)
	return nil
}

// addClassicEgressFilter installs the filter at egress, with the priority
// and handle of the ingress filter (addClassicFilter): the two directions
// are separate filter chains. It runs on a thread inside the namespace.
func (c *Counter) addClassicEgressFilter(netnsPath string, iface *net.Interface) (io.Closer, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: iface.Index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		if errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("adding clsact qdisc to %s: %w (%w)", iface.Name, ErrNoInterface, err)
		}
		return nil, fmt.Errorf("adding clsact qdisc to %s: %w", iface.Name, err)
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: iface.Index,
			Parent:    netlink.HANDLE_MIN_EGRESS,
			Handle:    classicHandle,
			Priority:  classicPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           c.prog.FD(),
		Name:         "zonetoll_count",
		DirectAction: true,
	}
	if err := netlink.FilterReplace(filter); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("attaching tc filter to %s egress: %w (%w)", iface.Name, ErrNoInterface, err)
		}
		return nil, fmt.Errorf("attaching tc filter to %s egress: %w", iface.Name, err)
	}
	return &classicFilter{netns: netnsPath, filter: filter}, nil
}

// DetachTCEgress removes what AttachTCEgress attached to ifname, for
// example when the interface is gone: the kernel detached it with the
// interface, but the link still holds a file descriptor and a pin until
// closed. Unknown interfaces are a no-op.
func (c *Counter) DetachTCEgress(netnsPath, ifname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.tcx {
		ino, err := netnsInode(netnsPath)
		if errors.Is(err, os.ErrNotExist) {
			return nil // the namespace is gone, and its links with it
		}
		if err != nil {
			return fmt.Errorf("detaching tc egress from %s: %w", ifname, err)
		}
		h := hook{kind: hookTCXEgress, netns: ino, ifname: ifname}
		delete(c.claimed, h)
		if err := c.gen.detach(h); err != nil {
			return fmt.Errorf("detaching tc egress from %s: %w", ifname, err)
		}
		return nil
	}
	key := egressKey(netnsPath, ifname)
	l, ok := c.tc[key]
	if !ok {
		return nil
	}
	delete(c.tc, key)
	if err := l.Close(); err != nil {
		return fmt.Errorf("detaching tc egress from %s: %w", ifname, err)
	}
	return nil
}

// TCX reports whether tc mode uses tcx links (kernel 6.6+) rather than
// classic clsact filters.
func (c *Counter) TCX() bool { return c.tcx }
