package tcfollow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/bpf/counter"
)

// Attacher is the counter's tc egress attachment (counter.Counter).
type Attacher interface {
	AttachTCEgress(netnsPath, ifname string) error
	DetachTCEgress(netnsPath, ifname string) error
}

// Follower keeps the counter attached at egress of the interfaces Rules pick in one network
// namespace. Link and route events (RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE) are only
// triggers: every burst of them leads to one full listing of links and routes and one
// reconciliation, so a lost or reordered event (a full socket buffer under 10,000 new pods)
// costs nothing but that listing.
type Follower struct {
	netnsPath string
	rules     Rules
	att       Attacher
	log       *slog.Logger
	metrics   *metrics

	handle *netlink.Handle
	sock   *nl.NetlinkSocket
	nsh    netns.NsHandle

	mu       sync.Mutex
	attached map[string]Target // by interface name
	notify   []chan struct{}
}

// Start subscribes to link and route events in the namespace at netnsPath ("" = this process's),
// then lists the interfaces and attaches to every one Rules pick, before it returns: what exists
// now is counted (and links a restarted counter adopted are claimed) before the first drain.
// Subscribing before listing means no interface that appears in between is missed. It fails when
// interfaces qualify but attaching failed on all of them (the kernel refuses tc programs); finding
// none is no error, since an uplink may come later. reg may be nil.
func Start(netnsPath string, rules Rules, att Attacher, reg prometheus.Registerer, log *slog.Logger) (*Follower, error) {
	if err := rules.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	f := &Follower{netnsPath: netnsPath, rules: rules, att: att, log: log.With("component", "tcfollow"),
		metrics: m, attached: map[string]Target{}, nsh: netns.None()}
	if netnsPath != "" {
		if f.nsh, err = netns.GetFromPath(netnsPath); err != nil {
			return nil, fmt.Errorf("opening netns %s: %w", netnsPath, err)
		}
	}
	if f.sock, err = nl.SubscribeAt(f.nsh, netns.None(), unix.NETLINK_ROUTE,
		unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE); err != nil {
		f.close()
		return nil, fmt.Errorf("subscribing to link and route events: %w", err)
	}
	// Route netlink only: without a family the handle opens every one netlink knows, and a
	// kernel without xfrm_user loaded (Debian's 5.10 cloud kernel) refuses NETLINK_XFRM with
	// EPROTONOSUPPORT.
	if f.handle, err = netlink.NewHandleAt(f.nsh, unix.NETLINK_ROUTE); err != nil {
		f.close()
		return nil, fmt.Errorf("opening a netlink handle: %w", err)
	}
	if err := f.reconcile(); err != nil {
		if len(f.attached) == 0 {
			// Nothing counts: say why now rather than run counting nothing.
			f.close()
			return nil, err
		}
		// Some interfaces count; the others are retried at the next event.
		f.log.Error("following interfaces", "error", err)
	}
	return f, nil
}

// Run follows the events until ctx is done; then it stops listening and leaves the attachments
// (the counter's Close decides what outlives the process). It returns an error only when the
// event socket fails for good.
func (f *Follower) Run(ctx context.Context) error {
	defer f.close()
	trigger := make(chan struct{}, 1)
	recvErr := make(chan error, 1)
	stop := context.AfterFunc(ctx, func() { f.sock.Close() }) // unblocks Receive
	defer stop()
	go func() {
		for {
			_, _, err := f.sock.Receive()
			switch {
			case ctx.Err() != nil:
				recvErr <- nil
				return
			case errors.Is(err, unix.ENOBUFS):
				// The kernel dropped events: the next listing sees what they said.
				f.metrics.overruns.Inc()
			case err != nil:
				recvErr <- fmt.Errorf("receiving link and route events: %w", err)
				return
			}
			select {
			case trigger <- struct{}{}:
			default: // a reconciliation is pending already and will see this change too
			}
		}
	}()
	for {
		select {
		case err := <-recvErr:
			return err
		case <-trigger:
			if err := f.reconcile(); err != nil {
				f.log.Error("following interfaces", "error", err)
			}
		}
	}
}

// reconcile lists links and default routes, attaches to the interfaces Rules pick and lets go of
// the ones that vanished or stopped qualifying.
func (f *Follower) reconcile() error {
	links, err := f.handle.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("listing interfaces: %w", err)
	}
	dumpInterrupted := err != nil
	var defaults map[int]bool
	if len(f.rules.Interfaces) == 0 {
		routes, err := f.handle.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return fmt.Errorf("listing routes: %w", err)
		}
		dumpInterrupted = dumpInterrupted || err != nil
		defaults = defaultRouteDevices(routes)
	}
	if dumpInterrupted {
		// The tables changed while being read; the change's own event triggers another pass.
		f.log.Debug("netlink dump interrupted by a change; another pass follows")
	}
	ifs := make([]iface, 0, len(links))
	for _, l := range links {
		ifs = append(ifs, toIface(l))
	}
	want, skipped := f.rules.classify(ifs, defaults)

	f.mu.Lock()
	defer f.mu.Unlock()
	keepAttached(want, f.attached, ifs)
	var errs []error
	for name, t := range f.attached {
		if w, ok := want[name]; ok && w.Index == t.Index {
			continue
		}
		// Gone, renamed, recreated or no longer an uplink: the kernel removed a gone interface's
		// hook already; this releases the link's descriptor and pin.
		if err := f.att.DetachTCEgress(f.netnsPath, name); err != nil {
			errs = append(errs, fmt.Errorf("letting go of %s: %w", name, err))
			f.metrics.errors.Inc()
			continue
		}
		delete(f.attached, name)
		f.log.Info("stopped counting on interface", "interface", name, "role", t.Role)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		t := want[name]
		if _, ok := f.attached[name]; ok {
			continue
		}
		err := f.att.AttachTCEgress(f.netnsPath, name)
		if errors.Is(err, counter.ErrNoInterface) {
			continue // vanished since the listing; its event is on its way
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("attaching to %s (%s): %w", name, t.Role, err))
			f.metrics.errors.Inc()
			continue
		}
		f.attached[name] = t
		f.log.Info("counting on interface", "interface", name, "role", t.Role, "ifindex", t.Index)
	}
	for _, s := range skipped {
		f.log.Debug("not counting on an interface without an Ethernet header", "interface", s)
	}
	f.metrics.set(f.attached)
	for _, ch := range f.notify {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return errors.Join(errs...)
}

// Attached returns the interfaces counted now, sorted by name.
func (f *Follower) Attached() []Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.SortedFunc(maps.Values(f.attached), func(a, b Target) int { return cmp.Compare(a.Name, b.Name) })
}

// Changed returns a channel that receives (without blocking the follower, coalesced) after every
// reconciliation: tests and callers wait on it instead of polling.
func (f *Follower) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{}, 1)
	f.notify = append(f.notify, ch)
	return ch
}

func (f *Follower) close() {
	if f.sock != nil {
		f.sock.Close()
	}
	if f.handle != nil {
		f.handle.Close()
	}
	if f.nsh.IsOpen() {
		_ = f.nsh.Close()
	}
}
