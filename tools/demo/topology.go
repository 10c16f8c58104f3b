package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/shared/netns"
)

// The network, all inside 198.18.0.0/15 and fd00::/8 and with no route out of the machine:
//
//	underlay netns: bridge br0 ── veth ── node netns eth0 (198.18.0.1N/24, fd00::1N/64), N = 1..6
//	                          └── veth ── ext netns eth0 (198.18.0.100, fd00::100); the managed cache
//	                                      answers on 198.19.200.10 / fd00:200::10 (lo)
//	node N: pod veths podK ── pod netns eth0 (198.18.N.1K/32, fd00:1:N::1K/128), gateway 198.18.N.1 /
//	        fd00:1:N::1 on the node's end; routes to the other nodes' pod subnets via their underlay address
//
// Every neighbour entry is permanent and IPv6 duplicate address detection and router solicitations are
// off, so the only IP packets are the generator's. Nothing is created in the root namespace.

// BuildNetwork creates every namespace, link, address, route and neighbour of m. On error, what was made
// is left for RemoveNetwork.
func BuildNetwork(ctx context.Context, m *Model) error {
	var names []string
	names = append(names, m.Underlay, m.Ext.Netns)
	for _, n := range m.Nodes {
		names = append(names, n.Netns)
	}
	for _, p := range m.Pods {
		if !p.HostNetwork {
			names = append(names, p.Netns)
		}
	}
	var add strings.Builder
	for _, n := range names {
		fmt.Fprintf(&add, "netns add %s\n", n)
	}
	if err := ipBatch(ctx, "", add.String()); err != nil {
		return fmt.Errorf("creating network namespaces: %w", err)
	}
	quiet := netns.QuietSysctls()
	for _, n := range names {
		set := quiet
		switch {
		case n == m.Underlay:
			// The bridge is plain layer 2: without IPv6 it sends no MLD or router solicitations.
			set = []string{"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}
		case strings.HasPrefix(n, m.Prefix) && isNode(m, n):
			set = append([]string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"}, quiet...)
		}
		if err := run(ctx, "ip", append([]string{"netns", "exec", n, "sysctl", "-q", "-w"}, set...)...); err != nil {
			return fmt.Errorf("setting sysctls in %s: %w", n, err)
		}
	}

	// Veth pairs are created with each end directly in its namespace, so the root namespace never sees them.
	var links strings.Builder
	for _, n := range m.Nodes {
		fmt.Fprintf(&links, "link add eth0 netns %s address %s type veth peer name n%d netns %s\n", n.Netns, n.MAC, n.Index, m.Underlay)
	}
	fmt.Fprintf(&links, "link add eth0 netns %s address %s type veth peer name ext netns %s\n", m.Ext.Netns, m.Ext.MAC, m.Underlay)
	for _, p := range m.Pods {
		if !p.HostNetwork {
			fmt.Fprintf(&links, "link add eth0 netns %s address %s type veth peer name %s netns %s address %s\n",
				p.Netns, p.MAC, p.HostIf, p.Node.Netns, p.HostMAC)
		}
	}
	if err := ipBatch(ctx, "", links.String()); err != nil {
		return fmt.Errorf("creating veth pairs: %w", err)
	}

	var ul strings.Builder
	ul.WriteString("link add br0 type bridge\nlink set br0 up\nlink set lo up\n")
	for _, n := range m.Nodes {
		fmt.Fprintf(&ul, "link set n%d master br0\nlink set n%d up\n", n.Index, n.Index)
	}
	ul.WriteString("link set ext master br0\nlink set ext up\n")
	if err := ipBatch(ctx, m.Underlay, ul.String()); err != nil {
		return fmt.Errorf("configuring the underlay: %w", err)
	}

	for _, n := range m.Nodes {
		var b strings.Builder
		fmt.Fprintf(&b, "link set lo up\nlink set eth0 up\naddr add %s/24 dev eth0\naddr add %s/64 dev eth0 nodad\n", n.IPv4, n.IPv6)
		for _, o := range m.Nodes {
			if o == n {
				continue
			}
			fmt.Fprintf(&b, "neigh add %s lladdr %s dev eth0 nud permanent\nneigh add %s lladdr %s dev eth0 nud permanent\n", o.IPv4, o.MAC, o.IPv6, o.MAC)
			fmt.Fprintf(&b, "route add %s via %s\nroute add %s via %s\n", o.Prefix[0], o.IPv4, o.Prefix[1], o.IPv6)
		}
		e := m.Ext
		fmt.Fprintf(&b, "neigh add %s lladdr %s dev eth0 nud permanent\nneigh add %s lladdr %s dev eth0 nud permanent\n", e.GatewayV4, e.MAC, e.GatewayV6, e.MAC)
		for _, c := range e.CIDRs {
			gw := e.GatewayV4
			if c.Addr().Is6() {
				gw = e.GatewayV6
			}
			fmt.Fprintf(&b, "route add %s via %s\n", c, gw)
		}
		for _, p := range m.Pods {
			if p.Node != n || p.HostNetwork {
				continue
			}
			fmt.Fprintf(&b, "link set %s up\naddr add %s/32 dev %s\naddr add %s/128 dev %s nodad\n", p.HostIf, gateway4(n), p.HostIf, gateway6(n), p.HostIf)
			fmt.Fprintf(&b, "route add %s/32 dev %s\nroute add %s/128 dev %s\n", p.IPv4, p.HostIf, p.IPv6, p.HostIf)
			fmt.Fprintf(&b, "neigh add %s lladdr %s dev %s nud permanent\nneigh add %s lladdr %s dev %s nud permanent\n", p.IPv4, p.MAC, p.HostIf, p.IPv6, p.MAC, p.HostIf)
		}
		if err := ipBatch(ctx, n.Netns, b.String()); err != nil {
			return fmt.Errorf("configuring node %s: %w", n.Name, err)
		}
	}

	for _, p := range m.Pods {
		if p.HostNetwork {
			continue
		}
		n := p.Node
		var b strings.Builder
		fmt.Fprintf(&b, "link set lo up\nlink set eth0 up\naddr add %s/32 dev eth0\naddr add %s/128 dev eth0 nodad\n", p.IPv4, p.IPv6)
		fmt.Fprintf(&b, "route add %s/32 dev eth0 scope link\nroute add 198.18.0.0/15 via %s dev eth0\n", gateway4(n), gateway4(n))
		fmt.Fprintf(&b, "route add %s/128 dev eth0\nroute add fd00::/8 via %s dev eth0\n", gateway6(n), gateway6(n))
		fmt.Fprintf(&b, "neigh add %s lladdr %s dev eth0 nud permanent\nneigh add %s lladdr %s dev eth0 nud permanent\n", gateway4(n), p.HostMAC, gateway6(n), p.HostMAC)
		if err := ipBatch(ctx, p.Netns, b.String()); err != nil {
			return fmt.Errorf("configuring pod %s: %w", p.Name, err)
		}
	}

	var b strings.Builder
	e := m.Ext
	fmt.Fprintf(&b, "link set lo up\nlink set eth0 up\naddr add %s/24 dev eth0\naddr add %s/64 dev eth0 nodad\n", e.GatewayV4, e.GatewayV6)
	fmt.Fprintf(&b, "addr add %s/32 dev lo\naddr add %s/128 dev lo\n", e.IPv4, e.IPv6)
	for _, n := range m.Nodes {
		fmt.Fprintf(&b, "neigh add %s lladdr %s dev eth0 nud permanent\nneigh add %s lladdr %s dev eth0 nud permanent\n", n.IPv4, n.MAC, n.IPv6, n.MAC)
		fmt.Fprintf(&b, "route add %s via %s\nroute add %s via %s\n", n.Prefix[0], n.IPv4, n.Prefix[1], n.IPv6)
	}
	if err := ipBatch(ctx, e.Netns, b.String()); err != nil {
		return fmt.Errorf("configuring the managed cache %s: %w", e.Name, err)
	}
	return nil
}

func isNode(m *Model, netns string) bool {
	for _, n := range m.Nodes {
		if n.Netns == netns {
			return true
		}
	}
	return false
}

// gateway4 and gateway6 are the node's address on every pod veth (the pods' next hop).
func gateway4(n *Node) string { return fmt.Sprintf("198.18.%d.1", n.Index) }
func gateway6(n *Node) string { return fmt.Sprintf("fd00:1:%d::1", n.Index) }

// RemoveNetwork deletes every namespace whose name starts with m.Prefix; deleting a namespace removes
// its links (and their peers) with it.
func RemoveNetwork(m *Model) error {
	ents, err := os.ReadDir(netns.Dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("listing %s: %w", netns.Dir, err)
	}
	var errs []error
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), m.Prefix) {
			if err := run(context.Background(), "ip", "netns", "del", e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveLeftovers deletes the network namespaces (<base><pid>-…) and run directories
// (<tmp>/<base><pid>-…, with the bpffs mounted in them) of demo runs whose process is gone. A run killed
// with SIGKILL leaves them behind; its child processes died with it (parent-death signal). This run's
// own are Close's to remove.
func RemoveLeftovers(base string) []string {
	removed := netns.RemoveStale(base, false)
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		if netns.Stale(e.Name(), base, false) {
			dir := filepath.Join(os.TempDir(), e.Name())
			unmountBelow(dir)
			if os.RemoveAll(dir) == nil {
				removed = append(removed, dir)
			}
		}
	}
	return removed
}

// unmountBelow detaches every mount under dir (the run's bpffs), read from /proc/self/mounts.
func unmountBelow(dir string) {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			_ = unix.Unmount(f[1], unix.MNT_DETACH)
		}
	}
}

// ipBatch runs iproute2 commands, one per line, in a namespace ("" is the caller's).
func ipBatch(ctx context.Context, netns, cmds string) error {
	args := []string{"-batch", "-"}
	if netns != "" {
		args = append([]string{"-n", netns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(cmds)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// InNetns runs fn on an OS thread switched into the named network namespace. Sockets fn opens stay in
// that namespace for their whole life, whichever thread uses them later; the process does not move.
func InNetns(name string, fn func() error) error {
	return netns.Do(filepath.Join(netns.Dir, name), fn)
}
