package counter

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/zonetoll/zonetoll/shared/netns"
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

// Classic tc filter identity: runs at the lowest priority number (first) on
// clsact ingress. Handles of our own keep it apart from other programs'
// filters at the same priority (Cilium's legacy mode uses priority 1,
// handle 1). There are two so that during a hand-over the new program's
// filter runs beside the old one's: the program returns TC_ACT_UNSPEC
// (TCX_NEXT), so the next filter runs too, and only the generation that
// owns the maps counts.
const (
	classicPriority = 1
	classicHandle   = 0x5a54 // "ZT"
	classicHandle2  = 0x5a55
	classicName     = "zonetoll_count"
)

// AttachTC attaches the program at ingress of interface ifname in the network
// namespace at netnsPath ("" = the caller's): the host side of a pod veth,
// where the pod's egress arrives. With tcx (kernel 6.6+) the link is anchored
// before other tcx programs; otherwise a clsact qdisc is added if missing and
// a direct-action bpf filter installed. Either way the program never changes
// a verdict, and the hook stays after Close, for the next Load, which adopts
// it when its program is the same. Attaching the same interface again
// replaces the earlier attachment, so a veth recreated under the same name
// is followed.
func (c *Counter) AttachTC(netnsPath, ifname string) error {
	return c.attachTC(netnsPath, ifname, false)
}

// attachTC attaches the program at ingress or egress of ifname (AttachTC, AttachTCEgress): a pinned
// tcx link where the kernel has tcx, a recorded clsact filter otherwise. A tcx link already on the
// interface is kept when it was adopted (ingress) or whenever it is there (egress, which the
// follower re-attaches on every reconcile); one left from an earlier interface of that name is replaced.
func (c *Counter) attachTC(netnsPath, ifname string, egress bool) error {
	kind := tcHookKind(c.tcx, egress)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.mode != ModeTC {
		return fmt.Errorf("attaching tc %s: program loaded for mode %s", kind.direction(), c.mode)
	}
	if !c.tcx {
		return c.attachClassic(netnsPath, ifname, kind)
	}
	ino, err := netnsInode(netnsPath)
	if err != nil {
		return fmt.Errorf("attaching tc %s: %w", kind.direction(), err)
	}
	attach := ebpf.AttachTCXIngress
	if egress {
		attach = ebpf.AttachTCXEgress
	}
	h := hook{kind: kind, netns: ino, ifname: ifname}
	err = netns.Do(netnsPath, func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("attaching tc %s to %s: finding interface: %w (%w)", kind.direction(), ifname, ErrNoInterface, err)
		}
		if l, ok := c.gen.links[h]; ok {
			if info, err := l.Info(); (egress || !c.claimed[h]) && err == nil && info.TCX() != nil && int(info.TCX().Ifindex) == iface.Index {
				c.claimed[h] = true // on this interface already: counting
				return nil
			}
			if err := c.gen.detach(h); err != nil {
				return err
			}
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: iface.Index, Program: c.prog, Attach: attach, Anchor: link.Head()})
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("attaching tcx %s to %s: %w (%w)", kind.direction(), ifname, ErrNoInterface, err)
		}
		if err != nil {
			return fmt.Errorf("attaching tcx %s to %s: %w", kind.direction(), ifname, err)
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
	c.log.Debug("attached tc", "direction", kind.direction(), "netns", netnsPath, "interface", ifname, "tcx", true, "generation", c.gen.gen)
	return nil
}

// attachClassic installs the program as a clsact filter at ingress (kind
// hookCls) or egress (hookClsEgress) and records it in the generation's pin
// dir. A filter adopted with the program that is still on the interface is
// kept as it is.
func (c *Counter) attachClassic(netnsPath, ifname string, kind hookKind) error {
	ino, err := netnsInode(netnsPath)
	if err != nil {
		return fmt.Errorf("attaching tc: %w", err)
	}
	h := hook{kind: kind, netns: ino, ifname: ifname}
	progID, err := programIDOf(c.prog)
	if err != nil {
		return fmt.Errorf("attaching tc: %w", err)
	}
	// The program being handed over from may have a filter here: ours goes
	// on the other handle, beside it.
	var oldIDs []ebpf.ProgramID
	for _, g := range c.handover {
		if id, ok := g.filters[h]; ok {
			oldIDs = append(oldIDs, id)
		}
	}
	// Recorded before the filter exists, so that a crash in between leaves
	// a record that finds nothing to remove rather than a filter that no
	// pin names.
	_, recorded := c.gen.filters[h]
	if err := c.gen.recordFilter(h, c.prog, progID); err != nil {
		return err
	}
	adopted := false
	err = netns.Do(netnsPath, func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("attaching tc %s: finding interface %s: %w (%w)", kind.direction(), ifname, ErrNoInterface, err)
		}
		filters, err := classicFilters(iface.Index, kind)
		if err != nil {
			return fmt.Errorf("attaching tc %s to %s: %w", kind.direction(), ifname, err)
		}
		var handle uint32
		for _, f := range filters {
			if f.Id != int(progID) {
				continue
			}
			if !c.claimed[h] {
				adopted = true // counting already
				return nil
			}
			handle = f.Handle // attached again: replace ours, never add a second
		}
		if handle == 0 {
			handle = classicHandle
			for _, f := range filters {
				if slices.Contains(oldIDs, ebpf.ProgramID(f.Id)) && f.Handle == classicHandle {
					handle = classicHandle2
				}
			}
		}
		return c.addClassicFilter(iface, handle, kind)
	})
	if err != nil {
		if !recorded {
			delete(c.gen.filters, h)
			_ = os.Remove(filepath.Join(c.gen.dir, h.String()))
		}
		return err
	}
	c.claimed[h] = true
	c.attached = true
	c.log.Info("attached tc", "netns", netnsPath, "interface", ifname, "direction", kind.direction(), "tcx", false, "adopted", adopted, "generation", c.gen.gen)
	return nil
}

// classicParent is the clsact filter chain of a classic hook kind: egress
// for hookClsEgress, else ingress. The two chains are separate, so both
// directions use the same priority and handles.
func classicParent(kind hookKind) uint32 {
	if kind == hookClsEgress {
		return netlink.HANDLE_MIN_EGRESS
	}
	return netlink.HANDLE_MIN_INGRESS
}

// direction names the side of the interface a tc hook kind attaches to.
func (k hookKind) direction() string {
	if k == hookClsEgress || k == hookTCXEgress {
		return "egress"
	}
	return "ingress"
}

// classicFilters lists the filters on the interface's chain for kind
// (ingress or egress) that are ours by priority, handle and name. It runs
// on a thread inside the interface's namespace.
func classicFilters(ifindex int, kind hookKind) ([]*netlink.BpfFilter, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) || errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("finding interface %d: %w (%w)", ifindex, ErrNoInterface, err)
		}
		return nil, fmt.Errorf("finding interface %d: %w", ifindex, err)
	}
	all, err := netlink.FilterList(l, classicParent(kind))
	if err != nil {
		return nil, fmt.Errorf("listing tc filters: %w", err)
	}
	var out []*netlink.BpfFilter
	for _, f := range all {
		bf, ok := f.(*netlink.BpfFilter)
		if ok && bf.Priority == classicPriority && (bf.Handle == classicHandle || bf.Handle == classicHandle2) && bf.Name == classicName {
			out = append(out, bf)
		}
	}
	return out, nil
}

// addClassicFilter installs the filter at handle on the chain for kind
// (ingress or egress). It runs on a thread already inside the interface's
// namespace. An interface deleted meanwhile is ErrNoInterface.
func (c *Counter) addClassicFilter(iface *net.Interface, handle uint32, kind hookKind) error {
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
			return fmt.Errorf("adding clsact qdisc to %s: %w (%w)", iface.Name, ErrNoInterface, err)
		}
		return fmt.Errorf("adding clsact qdisc to %s: %w", iface.Name, err)
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: iface.Index,
			Parent:    classicParent(kind),
			Handle:    handle,
			Priority:  classicPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           c.prog.FD(),
		Name:         classicName,
		DirectAction: true,
	}
	if err := netlink.FilterReplace(filter); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("attaching tc filter to %s %s: %w (%w)", iface.Name, kind.direction(), ErrNoInterface, err)
		}
		return fmt.Errorf("attaching tc filter to %s %s: %w", iface.Name, kind.direction(), err)
	}
	return nil
}

// deleteClassicFilter deletes the filter of h that runs program progID. The
// clsact qdisc stays: other programs may use it, and it costs nothing
// without filters. A namespace or interface that is gone took the filter
// with it.
func deleteClassicFilter(h hook, progID ebpf.ProgramID) error {
	path, ok := netnsPathOf(h.netns)
	if !ok {
		return nil
	}
	err := netns.Do(path, func() error {
		iface, err := net.InterfaceByName(h.ifname)
		if err != nil {
			return nil // gone with its interface (pod deleted)
		}
		filters, err := classicFilters(iface.Index, h.kind)
		if err != nil {
			return err
		}
		for _, f := range filters {
			if f.Id != int(progID) {
				continue // another generation's, or someone's after a recreated interface
			}
			err := netlink.FilterDel(f)
			if err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				return err
			}
		}
		return nil
	})
	// The namespace went away meanwhile, and the filter with it.
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing tc filter %s: %w", h, err)
	}
	return nil
}

// netnsPathOf finds a path to the network namespace with inode ino: this
// process's (""), a named one (/run/netns), or one a process is in. The
// hook pins name namespaces by inode, which does not change, but the
// filters must be deleted from inside.
func netnsPathOf(ino uint64) (string, bool) {
	if own, err := netnsInode(""); err == nil && own == ino {
		return "", true
	}
	var paths []string
	if ents, err := os.ReadDir(netns.Dir); err == nil {
		for _, e := range ents {
			paths = append(paths, filepath.Join(netns.Dir, e.Name()))
		}
	}
	if procs, err := filepath.Glob("/proc/[0-9]*/ns/net"); err == nil {
		paths = append(paths, procs...)
	}
	for _, p := range paths {
		if got, err := netnsInode(p); err == nil && got == ino {
			return p, true
		}
	}
	return "", false
}

// DetachTC removes the hook AttachTC made on ifname, for example when its
// pod is gone. The kernel already detached it if the interface was deleted;
// a link still holds a file descriptor until closed. Unknown interfaces are
// a no-op.
func (c *Counter) DetachTC(netnsPath, ifname string) error {
	return c.detachTC(netnsPath, ifname, false)
}

// tcHookKind is the kind of hook tc mode pins: a tcx link where the kernel has tcx (6.6), else a
// recorded clsact filter; at ingress or egress.
func tcHookKind(tcx, egress bool) hookKind {
	switch {
	case tcx && egress:
		return hookTCXEgress
	case tcx:
		return hookTCX
	case egress:
		return hookClsEgress
	}
	return hookCls
}

// detachTC removes our hook at ingress or egress of ifname (DetachTC, DetachTCEgress).
func (c *Counter) detachTC(netnsPath, ifname string, egress bool) error {
	what := "detaching tc from " + ifname
	if egress {
		what = "detaching tc egress from " + ifname
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	ino, err := netnsInode(netnsPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil // the namespace is gone, and its hooks with it
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	h := hook{kind: tcHookKind(c.tcx, egress), netns: ino, ifname: ifname}
	delete(c.claimed, h)
	if err := c.gen.detach(h); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
