package demo

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// TestKubeProxyRoutesServiceByZone runs the real routing path of a Service on the demo's network: the
// EndpointSlice controller writes the api Service's slices from its pods, a kube-proxy in nftables mode in
// each node's namespace (as that Node, reading its zone) programs them, and a frontend pod calling the
// Service's ClusterIP (IPv4 and IPv6) reaches an api pod. Without trafficDistribution the calls of every
// frontend reach the api pods of all three zones; after the Service is patched to PreferSameZone, the
// controller writes zone hints, kube-proxy routes by them, and every call stays in the caller's zone.
// The host's nftables ruleset is the same before and after.
func TestKubeProxyRoutesServiceByZone(t *testing.T) {
	r := startRoutedAPI(t)
	ctx, m, c, fronts, apis, clusterIPs, routing := t.Context(), r.m, r.c, r.fronts, r.apis, r.clusterIPs, r.routing
	stop := echoServers(t, apis)
	defer stop()

	// 60 calls per frontend and family, each from a fresh socket (a fresh conntrack entry, so kube-proxy
	// picks an endpoint anew). Spread uniformly over 3 endpoints, the chance that one endpoint gets none
	// of 60 is at most 3·(2/3)^60 < 1e-10 per frontend and family.
	const calls = 60
	for _, f := range fronts {
		for _, vip := range clusterIPs {
			got := callService(t, f, vip, calls)
			for _, a := range apis {
				want := a.IPv4
				if vip.Is6() {
					want = a.IPv6
				}
				if got[want] == 0 {
					t.Errorf("frontend in %s: no call to %s reached the api in %s (%s); answers by endpoint: %v", f.Node.Zone, vip, a.Node.Zone, want, got)
				}
			}
		}
	}

	patch := []byte(`{"spec":{"trafficDistribution":"PreferSameZone"}}`)
	if _, err := c.Client.CoreV1().Services(m.AppNS).Patch(ctx, "api", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patching the Service: %v", err)
	}
	r.waitProgrammed(t, func(f *Pod) []netip.Addr {
		a := m.Pod("api", f.Node.Zone)
		return []netip.Addr{a.IPv4, a.IPv6}
	})
	for _, f := range fronts {
		a := m.Pod("api", f.Node.Zone)
		for _, vip := range clusterIPs {
			want := a.IPv4
			if vip.Is6() {
				want = a.IPv6
			}
			got := callService(t, f, vip, calls)
			if got[want] != calls {
				t.Errorf("frontend in %s after PreferSameZone: calls to %s answered by endpoint %v, want all %d from its zone's api %s", f.Node.Zone, vip, got, calls, want)
			}
		}
	}

	for _, kp := range routing.Proxies {
		if !kp.Running() {
			t.Errorf("kube-proxy of %s exited:\n%s", kp.NodeName, kp.LogTail())
		}
	}
	if after := hostRuleset(t); after != r.hostBefore {
		t.Errorf("the host's nftables ruleset changed:\nbefore:\n%s\nafter:\n%s", r.hostBefore, after)
	}
}

// routedAPI is the api Service of the demo's model on its network, routed by the real EndpointSlice
// controller and a kube-proxy (nftables mode) in every node's namespace.
type routedAPI struct {
	m            *Model
	c            *testcluster.Cluster
	fronts, apis []*Pod // by zone
	clusterIPs   []netip.Addr
	routing      *Routing
	hostBefore   string // the host's nftables ruleset before anything started
}

// startRoutedAPI builds the demo's network and a test cluster with its Nodes, one frontend and one api
// pod per zone, the routing parts and the dual-stack api Service (UDP Port, no trafficDistribution), and
// waits until every node's kube-proxy routes the Service to all api pods. Everything goes when t ends.
func startRoutedAPI(t *testing.T) *routedAPI {
	t.Helper()
	gate.Root(t)
	gate.Command(t, "ip", gate.Debian("iproute2"))
	gate.Command(t, "nft", gate.Debian("nftables"))
	testcluster.Need(t)
	testcluster.NeedRouting(t, "")
	ctx := t.Context()
	hostBefore := hostRuleset(t)

	m := NewModel(fmt.Sprintf("ztkp-%d-", os.Getpid()))
	t.Cleanup(func() {
		if err := RemoveNetwork(m); err != nil {
			t.Errorf("removing the network: %v", err)
		}
	})
	if err := BuildNetwork(ctx, m); err != nil {
		t.Fatal(err)
	}
	c := testcluster.StartT(t, testcluster.Options{ExtraAPIServerArgs: RoutingAPIServerArgs()})
	if _, err := c.CreateNamespace(ctx, m.AppNS); err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Nodes {
		if _, err := c.CreateNode(ctx, testcluster.NodeSpec{Name: n.Name, Zone: n.Zone, Region: m.Region,
			InternalIPs: []string{n.IPv4.String(), n.IPv6.String()}}); err != nil {
			t.Fatal(err)
		}
	}
	r := &routedAPI{m: m, c: c, hostBefore: hostBefore}
	for _, z := range m.Zones {
		r.fronts = append(r.fronts, m.Pod("frontend", z))
		r.apis = append(r.apis, m.Pod("api", z))
	}
	for _, p := range append(slices.Clone(r.fronts), r.apis...) {
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: p.Namespace, Name: p.Name, NodeName: p.Node.Name,
			IPs: []string{p.IPv4.String(), p.IPv6.String()}, Labels: map[string]string{"app": p.Workload}}); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	r.routing, err = StartRouting(ctx, c, m)
	if err != nil {
		t.Fatal(err)
	}
	dual := corev1.IPFamilyPolicyRequireDualStack
	svc, err := c.Client.CoreV1().Services(m.AppNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: m.AppNS, Name: "api"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "api"}, IPFamilyPolicy: &dual,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			Ports:      []corev1.ServicePort{{Name: "app", Protocol: corev1.ProtocolUDP, Port: Port}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svc.Spec.ClusterIPs {
		r.clusterIPs = append(r.clusterIPs, netip.MustParseAddr(s))
	}
	if len(r.clusterIPs) != 2 {
		t.Fatalf("Service api has ClusterIPs %v, want one IPv4 and one IPv6", r.clusterIPs)
	}
	var all []netip.Addr
	for _, a := range r.apis {
		all = append(all, a.IPv4, a.IPv6)
	}
	r.waitProgrammed(t, func(*Pod) []netip.Addr { return all })
	return r
}

// apiKey is the api Service port in kube-proxy's chain names.
const apiKey = "shop/api/udp/app"

// waitProgrammed waits until the kube-proxy of every frontend's node routes the api Service to want(frontend).
func (r *routedAPI) waitProgrammed(t *testing.T, want func(front *Pod) []netip.Addr) {
	t.Helper()
	for _, f := range r.fronts {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		err := WaitProgrammed(ctx, r.routing.Proxies[f.Node.Name], apiKey, want(f))
		cancel()
		if err != nil {
			t.Fatalf("%v\n%s", err, r.routing.Proxies[f.Node.Name].LogTail())
		}
	}
}

// hostRuleset is `nft list ruleset` in the test's own (the host's) namespace.
func hostRuleset(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

// echoServers answers every UDP datagram to port Port on each pod's addresses with the pod's address
// that received it, so a caller of a ClusterIP learns which endpoint kube-proxy picked.
func echoServers(t *testing.T, pods []*Pod) (stop func()) {
	t.Helper()
	var conns []*net.UDPConn
	var wg sync.WaitGroup
	for _, p := range pods {
		err := InNetns(p.Netns, func() error {
			for _, a := range []netip.Addr{p.IPv4, p.IPv6} {
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, Port)))
				if err != nil {
					return err
				}
				conns = append(conns, c)
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 64)
					for {
						_, from, err := c.ReadFromUDPAddrPort(buf)
						if err != nil {
							return
						}
						c.WriteToUDPAddrPort([]byte(a.String()), from)
					}
				}()
			}
			return nil
		})
		if err != nil {
			t.Fatalf("listening in %s: %v", p.Name, err)
		}
	}
	return func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}
}

// callRequest is the payload of callService's requests.
const callRequest = "which endpoint?"

// callService makes n calls from pod p to vip:Port, each from a new socket on a port not used recently
// (dialFresh: a fresh conntrack entry, so kube-proxy picks anew), and counts the answers by the
// endpoint address they name. A call without an answer fails the test.
func callService(t *testing.T, p *Pod, vip netip.Addr, n int) map[netip.Addr]int {
	t.Helper()
	got := map[netip.Addr]int{}
	src := p.IPv4
	if vip.Is6() {
		src = p.IPv6
	}
	for i := 0; i < n; i++ {
		c, err := dialFresh(p.Netns, src, vip)
		if err != nil {
			t.Fatalf("dialling %s from %s: %v", vip, p.Name, err)
		}
		buf := make([]byte, 64)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Write([]byte(callRequest))
		var k int
		if err == nil {
			k, err = c.Read(buf)
		}
		c.Close()
		if err != nil {
			t.Fatalf("call %d from %s (%s) to %s: %v", i, p.Name, p.Node.Zone, vip, err)
		}
		a, err := netip.ParseAddr(string(buf[:k]))
		if err != nil {
			t.Fatalf("answer %q from %s: %v", buf[:k], vip, err)
		}
		got[a]++
	}
	return got
}
