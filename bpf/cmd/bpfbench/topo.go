package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/shared/netns"
)

// netnsPrefix names every namespace bpfbench makes, so leftovers of a killed
// run are recognised and removed.
const netnsPrefix = "ztbench-"

// topo is a node namespace forwarding between two pod namespaces, built like
// the counter's kernel tests (198.18.0.0/15 and fd00::/8 only, veths created
// inside the namespaces, no DAD, permanent neighbours):
//
//	pod a eth0 198.18.1.2 fd00:1::2 <-> va (node) <-> vb (node) <-> eth0 198.18.2.2 fd00:2::2 pod b
//
// The node also routes fd00:ff::/64 to pod b, so pod a can make many distinct
// flows through the node without neighbour entries for each destination.
type topo struct {
	node, a, b string
}

var (
	podB4        = "198.18.2.2"
	podA6, podB6 = "fd00:1::2", "fd00:2::2"
	manyPrefix   = "fd00:ff::"
)

func newTopo(ctx context.Context) (*topo, error) {
	base := fmt.Sprintf("%s%d-", netnsPrefix, os.Getpid())
	tp := &topo{node: base + "node", a: base + "a", b: base + "b"}
	quiet := netns.QuietSysctls()
	var cmds [][]string
	for _, ns := range []string{tp.node, tp.a, tp.b} {
		cmds = append(cmds, []string{"ip", "netns", "add", ns},
			append([]string{"ip", "netns", "exec", ns, "sysctl", "-qw"}, quiet...))
	}
	cmds = append(cmds, []string{"ip", "netns", "exec", tp.node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"})
	for _, p := range []struct{ pod, dev, n string }{{tp.a, "va", "1"}, {tp.b, "vb", "2"}} {
		nodeMAC, podMAC := "02:00:00:00:0"+p.n+":01", "02:00:00:00:0"+p.n+":02"
		nodeV4, podV4 := "198.18."+p.n+".1", "198.18."+p.n+".2"
		nodeV6, podV6 := "fd00:"+p.n+"::1", "fd00:"+p.n+"::2"
		cmds = append(cmds,
			[]string{"ip", "link", "add", p.dev, "netns", tp.node, "address", nodeMAC, "type", "veth", "peer", "name", "eth0", "netns", p.pod, "address", podMAC},
			[]string{"ip", "-n", tp.node, "addr", "add", nodeV4 + "/24", "dev", p.dev},
			[]string{"ip", "-n", tp.node, "addr", "add", nodeV6 + "/64", "dev", p.dev, "nodad"},
			[]string{"ip", "-n", p.pod, "addr", "add", podV4 + "/24", "dev", "eth0"},
			[]string{"ip", "-n", p.pod, "addr", "add", podV6 + "/64", "dev", "eth0", "nodad"},
			[]string{"ip", "-n", tp.node, "link", "set", p.dev, "up"},
			[]string{"ip", "-n", p.pod, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", p.pod, "link", "set", "lo", "up"},
			[]string{"ip", "-n", tp.node, "neigh", "add", podV4, "lladdr", podMAC, "dev", p.dev, "nud", "permanent"},
			[]string{"ip", "-n", tp.node, "neigh", "add", podV6, "lladdr", podMAC, "dev", p.dev, "nud", "permanent"},
			[]string{"ip", "-n", p.pod, "neigh", "add", nodeV4, "lladdr", nodeMAC, "dev", "eth0", "nud", "permanent"},
			[]string{"ip", "-n", p.pod, "neigh", "add", nodeV6, "lladdr", nodeMAC, "dev", "eth0", "nud", "permanent"},
			[]string{"ip", "-n", p.pod, "route", "add", "default", "via", nodeV4},
			[]string{"ip", "-n", p.pod, "-6", "route", "add", "default", "via", nodeV6},
		)
	}
	cmds = append(cmds, []string{"ip", "-n", tp.node, "-6", "route", "add", manyPrefix + "/64", "via", podB6})
	for _, c := range cmds {
		if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			tp.close()
			return nil, fmt.Errorf("setting up namespaces: %s: %w: %s", strings.Join(c, " "), err, out)
		}
	}
	return tp, nil
}

func (tp *topo) close() {
	for _, ns := range []string{tp.node, tp.a, tp.b} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

func nsPath(name string) string { return filepath.Join(netns.Dir, name) }

// inNetns runs fn on an OS thread in namespace path, pinned to cpu if
// cpu >= 0. Sockets fn makes belong to that namespace. A pinned thread stays
// locked after fn, so it ends instead of taking its affinity to other
// goroutines.
func inNetns(path string, cpu int, fn func() error) error {
	return netns.Do(path, func() error {
		if cpu >= 0 {
			runtime.LockOSThread() // never unlocked: see above
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return fmt.Errorf("pinning to cpu %d: %w", cpu, err)
			}
		}
		return fn()
	})
}
