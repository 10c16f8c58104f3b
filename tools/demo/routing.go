package demo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// ServiceCIDRs are the Service ranges of a cluster whose Services kube-proxy routes: dual-stack, both
// inside the ranges the demo may use (198.18.0.0/15, fd00::/8) and away from its pod and node addresses.
// An IPv6 Service range may be at most 20 bits (/108).
var ServiceCIDRs = []string{testcluster.ServiceClusterIPRange, "fd00:5e::/108"}

// RoutingAPIServerArgs make the test cluster's API server allocate dual-stack ClusterIPs.
func RoutingAPIServerArgs() []string {
	return []string{"--service-cluster-ip-range=" + strings.Join(ServiceCIDRs, ",")}
}

// Routing is the part of a control plane that routes Services: the EndpointSlice controller (in
// kube-controller-manager) and one kube-proxy per node, each inside its node's network namespace.
type Routing struct {
	Proxies map[string]*testcluster.KubeProxy // by node name
}

// StartRouting starts kube-controller-manager's EndpointSlice controllers and a kube-proxy (nftables
// mode) in every node's namespace of m, as that node. The Nodes must exist in the API.
func StartRouting(ctx context.Context, c *testcluster.Cluster, m *Model) (*Routing, error) {
	if err := c.StartControllerManager(ctx, testcluster.ControllerManagerOptions{}); err != nil {
		return nil, err
	}
	r := &Routing{Proxies: map[string]*testcluster.KubeProxy{}}
	for _, n := range m.Nodes {
		kp, err := c.StartKubeProxy(ctx, testcluster.KubeProxyOptions{NodeName: n.Name, Netns: n.Netns})
		if err != nil {
			return nil, err
		}
		r.Proxies[n.Name] = kp
	}
	return r, nil
}

// A Service port's chain in kube-proxy's nftables mode picks an endpoint in one of two ways: where an
// endpoint needs rules of its own (masquerading, session affinity) it jumps to endpoint chains named
// endpoint-<hash>-<ns>/<svc>/<proto>/<port name>__<address>/<port> (IPv6 addresses in brackets);
// otherwise it DNATs straight from a map, `dnat ip to numgen random mod 3 map { 0 : <address> . <port>, … }`,
// or, with a single endpoint, `dnat to <address>:<port>` (`[<address>]:<port>` for IPv6).
var (
	endpointChain = regexp.MustCompile(`endpoint-[A-Z0-9]+-([a-z0-9.-]+/[a-z0-9.-]+/[a-z]+/[a-z0-9-]*)__\[?([0-9a-f.:]+)\]?/[0-9]+`)
	dnatElement   = regexp.MustCompile(`\b[0-9]+ : ([0-9a-f.:]+) \. [0-9]+\b`)
	dnatSingle    = regexp.MustCompile(`\bdnat (?:ip6? )?to (?:\[([0-9a-f:]+)\]|([0-9.]+)):[0-9]+\b`)
)

// ProgrammedEndpoints returns, from an `nft list ruleset` of kube-proxy's nftables mode, the endpoint
// addresses the chain of the Service port key (<ns>/<svc>/<proto>/<port name>, e.g. shop/api/udp/app)
// picks from, in the given family's table, sorted. Endpoints that the Service's chain does not jump to
// (for example other zones' endpoints once hints apply) are not listed.
func ProgrammedEndpoints(ruleset, key string, ipv6 bool) []netip.Addr {
	table := "table ip kube-proxy {"
	if ipv6 {
		table = "table ip6 kube-proxy {"
	}
	i := strings.Index(ruleset, table)
	if i < 0 {
		return nil
	}
	body := ruleset[i+len(table):]
	if j := strings.Index(body, "\ntable "); j >= 0 {
		body = body[:j]
	}
	var out []netip.Addr
	inService := false
	for _, line := range strings.Split(body, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "chain ") {
			name := strings.TrimSuffix(strings.TrimPrefix(l, "chain "), " {")
			inService = strings.HasPrefix(name, "service-") && strings.HasSuffix(name, "-"+key)
			continue
		}
		if !inService {
			continue
		}
		var addrs []string
		for _, m := range endpointChain.FindAllStringSubmatch(l, -1) {
			if m[1] == key {
				addrs = append(addrs, m[2])
			}
		}
		if strings.Contains(l, "dnat ") {
			for _, m := range dnatElement.FindAllStringSubmatch(l, -1) {
				addrs = append(addrs, m[1])
			}
			for _, m := range dnatSingle.FindAllStringSubmatch(l, -1) {
				addrs = append(addrs, m[1]+m[2])
			}
		}
		for _, s := range addrs {
			if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// WaitProgrammed waits (bounded by ctx) until kube-proxy routes the Service port key to exactly want in
// each family that want has addresses of, and returns the last rules seen otherwise.
func WaitProgrammed(ctx context.Context, kp *testcluster.KubeProxy, key string, want []netip.Addr) error {
	var v4, v6 []netip.Addr
	for _, a := range want {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	sortAddrs := func(s []netip.Addr) { slices.SortFunc(s, func(a, b netip.Addr) int { return a.Compare(b) }) }
	sortAddrs(v4)
	sortAddrs(v6)
	var got4, got6 []netip.Addr
	var rules string
	for {
		var err error
		rules, err = kp.Ruleset(ctx)
		if err == nil {
			got4, got6 = ProgrammedEndpoints(rules, key, false), ProgrammedEndpoints(rules, key, true)
			if slices.Equal(got4, v4) && (len(v6) == 0 || slices.Equal(got6, v6)) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("kube-proxy of %s routes %s to %v and %v, want %v and %v; its chains for it:\n%s",
				kp.NodeName, key, got4, got6, v4, v6, serviceChains(rules, key)), ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// serviceChains returns the lines of the ruleset that name the Service port key, for error messages.
func serviceChains(ruleset, key string) string {
	var out []string
	for _, l := range strings.Split(ruleset, "\n") {
		if strings.Contains(l, key) || strings.Contains(l, "dnat ") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}
