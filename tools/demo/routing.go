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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

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

// APIServicePort is the api Service's port in kube-proxy's chain names (<ns>/<svc>/<proto>/<port name>).
func (m *Model) APIServicePort() string { return m.AppNS + "/api/udp/app" }

// startRouting starts the EndpointSlice controller and a kube-proxy per node, reads the api Service's
// ClusterIPs, and waits until the kube-proxy of every node with a frontend routes them to all api pods.
func (d *Demo) startRouting(ctx context.Context) error {
	d.say("starting kube-controller-manager (EndpointSlice controllers) and a kube-proxy (nftables) in each node's namespace")
	r, err := StartRouting(ctx, d.Cluster, d.Model)
	if err != nil {
		return err
	}
	d.Routing = r
	svc, err := d.Cluster.Client.CoreV1().Services(d.Model.AppNS).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the api Service: %w", err)
	}
	for _, s := range svc.Spec.ClusterIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("the api Service's ClusterIP %q: %w", s, err)
		}
		if a.Is4() {
			d.APIClusterIPs[0] = a
		} else {
			d.APIClusterIPs[1] = a
		}
	}
	if !d.APIClusterIPs[0].IsValid() || !d.APIClusterIPs[1].IsValid() {
		return fmt.Errorf("the api Service has ClusterIPs %v, want an IPv4 and an IPv6 one", svc.Spec.ClusterIPs)
	}
	var all []netip.Addr
	for _, z := range d.Model.Zones {
		a := d.Model.Pod("api", z)
		all = append(all, a.IPv4, a.IPv6)
	}
	return d.waitRouted(ctx, func(string) []netip.Addr { return all })
}

// waitRouted waits (at most a minute) until the kube-proxy of every frontend's node routes the api
// Service to want(the frontend's zone).
func (d *Demo) waitRouted(ctx context.Context, want func(zone string) []netip.Addr) error {
	for _, z := range d.Model.Zones {
		n := d.Model.Pod("frontend", z).Node
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := WaitProgrammed(wctx, d.Routing.Proxies[n.Name], d.Model.APIServicePort(), want(z))
		cancel()
		if err != nil {
			return fmt.Errorf("waiting for kube-proxy of %s: %w\n%s", n.Name, err, d.Routing.Proxies[n.Name].LogTail())
		}
	}
	return nil
}

// SameZonePatch is the merge patch of the advice's recommendation `trafficDistribution: PreferSameZone`.
const SameZonePatch = `{"spec":{"trafficDistribution":"PreferSameZone"}}`

// ApplyAdvice applies the advice (`costcalc advise --format json`) for the api Service through the API,
// as its user would run the command it prints, and waits until every frontend node's kube-proxy routes
// the Service only to the api pod of its own zone. It refuses advice that does not recommend
// PreferSameZone for the api Service.
func (d *Demo) ApplyAdvice(ctx context.Context, adviceJSON []byte) error {
	if d.Routing == nil {
		return errors.New("applying the advice: the demo runs without routing (Options.Routing)")
	}
	api, err := apiAdvice(d.Model, adviceJSON)
	if err != nil {
		return err
	}
	setting := "nothing"
	if api.Recommendation != nil {
		setting = api.Recommendation.Setting
	}
	if !strings.Contains(setting, "PreferSameZone") {
		return fmt.Errorf("applying the advice: it recommends %s for %s/api, not trafficDistribution: PreferSameZone", setting, d.Model.AppNS)
	}
	d.say("applying the advice: kubectl patch service api -n %s --type merge -p '%s'", d.Model.AppNS, SameZonePatch)
	if _, err := d.Cluster.Client.CoreV1().Services(d.Model.AppNS).Patch(ctx, "api", types.MergePatchType, []byte(SameZonePatch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patching Service %s/api: %w", d.Model.AppNS, err)
	}
	began := time.Now()
	if err := d.waitRouted(ctx, func(z string) []netip.Addr {
		a := d.Model.Pod("api", z)
		return []netip.Addr{a.IPv4, a.IPv6}
	}); err != nil {
		return fmt.Errorf("after patching Service %s/api to PreferSameZone: %w", d.Model.AppNS, err)
	}
	d.say("the api Service was patched to PreferSameZone; %s later every frontend node's kube-proxy routed it in zone", time.Since(began).Round(time.Millisecond))
	return nil
}

// LoseEndpoint plays the risk the advice names for a zone served by a single api endpoint: that pod turns
// not ready, as the kubelet reports a failing readiness probe (Ready and ContainersReady False on the
// pod's status); the EndpointSlice controller marks the endpoint not ready; and kube-proxy, finding no
// ready endpoint hinted for that zone, falls back to every ready endpoint for the zone's clients (the
// safeguard the advice states), while the other zones keep routing in zone. The pod keeps running and
// sending its own calls. It waits until every frontend node's kube-proxy routes so.
func (d *Demo) LoseEndpoint(ctx context.Context, zone string) error {
	if d.Routing == nil {
		return errors.New("losing an endpoint: the demo runs without routing (Options.Routing)")
	}
	p := d.Model.Pod("api", zone)
	if p == nil {
		return fmt.Errorf("losing an endpoint: no api pod in zone %q", zone)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	patch := fmt.Sprintf(`{"status":{"conditions":[`+
		`{"type":"Ready","status":"False","reason":"ContainersNotReady","lastTransitionTime":%[1]q},`+
		`{"type":"ContainersReady","status":"False","reason":"ContainersNotReady","lastTransitionTime":%[1]q}]}}`, now)
	d.say("the risk: the only api pod of %s (%s) turns not ready", zone, p.Name)
	if _, err := d.Cluster.Client.CoreV1().Pods(d.Model.AppNS).Patch(ctx, p.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("marking pod %s/%s not ready: %w", d.Model.AppNS, p.Name, err)
	}
	began := time.Now()
	if err := d.waitRouted(ctx, func(z string) []netip.Addr {
		var out []netip.Addr
		for _, z2 := range d.Model.Zones {
			if (z2 == z) != (z == zone) { // the own zone's pod, or for the zone that lost it every other's
				a := d.Model.Pod("api", z2)
				out = append(out, a.IPv4, a.IPv6)
			}
		}
		return out
	}); err != nil {
		return fmt.Errorf("after marking pod %s/%s not ready: %w", d.Model.AppNS, p.Name, err)
	}
	d.say("%s later kube-proxy routed %s's frontend to the other zones' api pods, and the other zones still in zone", time.Since(began).Round(time.Millisecond), zone)
	return nil
}
