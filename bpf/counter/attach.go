package counter

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/zonetoll/zonetoll/bpf/netns"
	"golang.org/x/sys/unix"
)

// AttachNetfilter attaches the program at NF_INET_POST_ROUTING for IPv4 and
// IPv6 in the network namespace at netnsPath ("" = the caller's); the calling
// process does not change namespace. The links are pinned: they stay after
// Close, for the next Load. Where the program Load adopted is attached
// already, that link is kept.
func (c *Counter) AttachNetfilter(netnsPath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.mode != ModeNetfilter {
		return fmt.Errorf("attaching netfilter: program loaded for mode %s", c.mode)
	}
	ino, err := netnsInode(netnsPath)
	if err != nil {
		return fmt.Errorf("attaching netfilter: %w", err)
	}
	families := []struct {
		name string
		kind hookKind
		pf   link.NetfilterProtocolFamily
	}{{"ipv4", hookNF4, link.NetfilterProtoIPv4}, {"ipv6", hookNF6, link.NetfilterProtoIPv6}}
	var attached, adopted []hook
	newLinks := map[hook]link.Link{}
	err = netns.Do(netnsPath, func() error {
		for _, f := range families {
			h := hook{kind: f.kind, netns: ino}
			if _, ok := c.gen.links[h]; ok {
				if c.claimed[h] {
					return fmt.Errorf("attaching netfilter %s: already attached in netns %q", f.name, netnsPath)
				}
				adopted = append(adopted, h) // counting already
				continue
			}
			prio := c.handoverPriority(h)
			l, err := link.AttachNetfilter(link.NetfilterOptions{
				Program:        c.prog,
				ProtocolFamily: f.pf,
				Hook:           link.NetfilterInetPostRouting,
				Priority:       prio,
			})
			if err != nil {
				return fmt.Errorf("attaching netfilter %s at priority %d: %w", f.name, prio, err)
			}
			newLinks[h] = l
		}
		return nil
	})
	for h, l := range newLinks {
		if err == nil {
			err = c.gen.pin(h, l)
			if err == nil {
				c.claimed[h] = true
				attached = append(attached, h)
				continue
			}
		}
		_ = l.Close()
	}
	if err != nil {
		for _, h := range attached {
			_ = c.gen.detach(h)
			delete(c.claimed, h)
		}
		return err
	}
	for _, h := range adopted {
		c.claimed[h] = true
	}
	c.attached = true
	c.log.Info("attached netfilter", "netns", netnsPath, "new_links", len(attached), "adopted_links", len(adopted), "generation", c.gen.gen)
	return nil
}

// handoverPriority is the configured priority, or the one below it while
// the program being taken over holds it at h: one hook and priority take a
// single BPF program (EBUSY).
func (c *Counter) handoverPriority(h hook) int32 {
	prio := c.cfg.Priority
	for _, g := range c.handover {
		l, ok := g.links[h]
		if !ok {
			continue
		}
		info, err := l.Info()
		if err != nil || info.Netfilter() == nil || info.Netfilter().Priority != prio {
			continue
		}
		if prio == math.MinInt32+1 {
			return prio + 1
		}
		return prio - 1
	}
	return prio
}

// tcTarget names an interface in a network namespace.
type tcTarget struct{ netns, ifname string }

// Classic tc filter identity: runs at the lowest priority number (first) on
// clsact ingress. A handle of our own keeps it apart from other programs'
// filters at the same priority (Cilium's legacy mode uses priority 1,
// handle 1).
const (
	classicPriority = 1
	classicHandle   = 0x5a54 // "ZT"
)

// AttachTC attaches the program at ingress of interface ifname in the network
// namespace at netnsPath ("" = the caller's): the host side of a pod veth,
// where the pod's egress arrives. With tcx (kernel 6.6+) the link is anchored
// before other tcx programs; otherwise a clsact qdisc is added if missing and
// a direct-action bpf filter installed. Either way the program never changes
// a verdict. Attaching the same interface again replaces the earlier
// attachment, so a veth recreated under the same name is followed.
func (c *Counter) AttachTC(netnsPath, ifname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.mode != ModeTC {
		return fmt.Errorf("attaching tc: program loaded for mode %s", c.mode)
	}
	if !c.tcx {
		return c.attachClassic(netnsPath, ifname)
	}
	ino, err := netnsInode(netnsPath)
	if err != nil {
		return fmt.Errorf("attaching tc: %w", err)
	}
	h := hook{kind: hookTCX, netns: ino, ifname: ifname}
	err = netns.Do(netnsPath, func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("attaching tc: finding interface: %w", err)
		}
		if l, ok := c.gen.links[h]; ok {
			// Adopted and still on this interface: counting already.
			if info, err := l.Info(); !c.claimed[h] && err == nil && info.TCX() != nil && int(info.TCX().Ifindex) == iface.Index {
				c.claimed[h] = true
				return nil
			}
			// Attached before, or the interface was recreated: replace.
			if err := c.gen.detach(h); err != nil {
				return err
			}
		}
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: iface.Index,
			Program:   c.prog,
			Attach:    ebpf.AttachTCXIngress,
			Anchor:    link.Head(),
		})
		if err != nil {
			return fmt.Errorf("attaching tcx ingress to %s: %w", ifname, err)
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
	c.log.Info("attached tc", "netns", netnsPath, "interface", ifname, "tcx", true, "generation", c.gen.gen)
	return nil
}

// attachClassic installs the program as a clsact ingress filter, replacing
// an earlier one on the interface. Filters have no pins: Close removes them.
func (c *Counter) attachClassic(netnsPath, ifname string) error {
	key := tcTarget{netnsPath, ifname}
	if old, ok := c.tc[key]; ok {
		_ = old.Close()
		delete(c.tc, key)
	}
	var l io.Closer
	err := netns.Do(netnsPath, func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("attaching tc: finding interface: %w", err)
		}
		l, err = c.addClassicFilter(netnsPath, iface)
		return err
	})
	if err != nil {
		return err
	}
	c.tc[key] = l
	c.attached = true
	c.log.Info("attached tc", "netns", netnsPath, "interface", ifname, "tcx", false)
	return nil
}

// addClassicFilter installs the filter. It runs on a thread already inside
// the interface's namespace.
func (c *Counter) addClassicFilter(netnsPath string, iface *net.Interface) (io.Closer, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: iface.Index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("adding clsact qdisc to %s: %w", iface.Name, err)
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: iface.Index,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    classicHandle,
			Priority:  classicPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           c.prog.FD(),
		Name:         "zonetoll_count",
		DirectAction: true,
	}
	if err := netlink.FilterReplace(filter); err != nil {
		return nil, fmt.Errorf("attaching tc filter to %s ingress: %w", iface.Name, err)
	}
	return &classicFilter{netns: netnsPath, filter: filter}, nil
}

// classicFilter removes its filter on Close. The clsact qdisc stays: other
// programs may use it, and it costs nothing without filters.
type classicFilter struct {
	netns  string
	filter *netlink.BpfFilter
}

func (f *classicFilter) Close() error {
	err := netns.Do(f.netns, func() error {
		err := netlink.FilterDel(f.filter)
		// Gone with its interface (pod deleted): nothing to remove.
		if err == nil || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
			return nil
		}
		return fmt.Errorf("removing tc filter: %w", err)
	})
	// The namespace is gone, and the filter with it.
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// DetachTC closes the link AttachTC made for ifname, for example when its pod
// is gone. The kernel already detached it if the interface was deleted; the
// link still holds a file descriptor until closed. Unknown interfaces are a
// no-op.
func (c *Counter) DetachTC(netnsPath, ifname string) error {
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
			return fmt.Errorf("detaching tc from %s: %w", ifname, err)
		}
		h := hook{kind: hookTCX, netns: ino, ifname: ifname}
		delete(c.claimed, h)
		if err := c.gen.detach(h); err != nil {
			return fmt.Errorf("detaching tc from %s: %w", ifname, err)
		}
		return nil
	}
	key := tcTarget{netnsPath, ifname}
	l, ok := c.tc[key]
	if !ok {
		return nil
	}
	delete(c.tc, key)
	if err := l.Close(); err != nil {
		return fmt.Errorf("detaching tc from %s: %w", ifname, err)
	}
	return nil
}
