package counter

import (
	"fmt"
	"net"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// AttachNetfilter attaches the program at NF_INET_POST_ROUTING for IPv4 and
// IPv6 in the network namespace at netnsPath ("" = the caller's). The links
// stay until Close; the calling process does not change namespace.
func (c *Counter) AttachNetfilter(netnsPath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.mode != ModeNetfilter {
		return fmt.Errorf("attaching netfilter: program loaded for mode %s", c.mode)
	}
	families := []struct {
		name string
		pf   link.NetfilterProtocolFamily
	}{{"ipv4", link.NetfilterProtoIPv4}, {"ipv6", link.NetfilterProtoIPv6}}
	var links []link.Link
	err := inNetns(netnsPath, func() error {
		for _, f := range families {
			l, err := link.AttachNetfilter(link.NetfilterOptions{
				Program:        c.prog,
				ProtocolFamily: f.pf,
				Hook:           link.NetfilterInetPostRouting,
				Priority:       c.cfg.Priority,
			})
			if err != nil {
				return fmt.Errorf("attaching netfilter %s at priority %d: %w", f.name, c.cfg.Priority, err)
			}
			links = append(links, l)
		}
		return nil
	})
	if err != nil {
		for _, l := range links {
			_ = l.Close()
		}
		return err
	}
	c.links = append(c.links, links...)
	c.log.Info("attached netfilter", "netns", netnsPath, "priority", c.cfg.Priority)
	return nil
}

// tcTarget names an interface in a network namespace.
type tcTarget struct{ netns, ifname string }

// AttachTC attaches the program at tcx ingress of interface ifname in the
// network namespace at netnsPath ("" = the caller's): the host side of a pod
// veth, where the pod's egress arrives. It goes first among tcx programs and
// never changes their verdict. Attaching the same interface again replaces
// the earlier link, so a veth recreated under the same name is followed.
func (c *Counter) AttachTC(netnsPath, ifname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.mode != ModeTC {
		return fmt.Errorf("attaching tc: program loaded for mode %s", c.mode)
	}
	var l link.Link
	err := inNetns(netnsPath, func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("attaching tc: finding interface: %w", err)
		}
		l, err = link.AttachTCX(link.TCXOptions{
			Interface: iface.Index,
			Program:   c.prog,
			Attach:    ebpf.AttachTCXIngress,
			Anchor:    link.Head(),
		})
		if err != nil {
			return fmt.Errorf("attaching tcx ingress to %s: %w", ifname, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	key := tcTarget{netnsPath, ifname}
	if old, ok := c.tc[key]; ok {
		_ = old.Close()
	}
	c.tc[key] = l
	c.log.Info("attached tc", "netns", netnsPath, "interface", ifname)
	return nil
}

// DetachTC closes the link AttachTC made for ifname, for example when its pod
// is gone. The kernel already detached it if the interface was deleted; the
// link still holds a file descriptor until closed. Unknown interfaces are a
// no-op.
func (c *Counter) DetachTC(netnsPath, ifname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
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

// inNetns runs fn on an OS thread switched into the network namespace at
// path, then switches the thread back. BPF links and interface lookups use
// the calling thread's namespace; the rest of the process stays put.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer unix.Close(target)

	errc := make(chan error, 1)
	// A fresh goroutine: if switching back fails it exits still locked, and
	// the runtime then discards the thread instead of reusing it elsewhere.
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening current netns: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering netns %s: %w", path, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("returning from netns %s: %w", path, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}
