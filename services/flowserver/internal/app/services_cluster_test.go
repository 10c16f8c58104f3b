package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/reportpost"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// endpoint is one endpoint of an EndpointSlice the test writes (there is no EndpointSlice controller
// in the test cluster, so the test writes what it would).
type endpoint struct {
	addr     string
	pod      string // targetRef; "" for none
	zone     string // endpoint.zone; "" for unset
	node     string // nodeName; "" for unset
	notReady bool
	forZones []string
}

func (f *fixture) createService(s *corev1.Service) {
	f.t.Helper()
	if _, err := f.c.Client.CoreV1().Services(s.Namespace).Create(f.ctx, s, metav1.CreateOptions{}); err != nil {
		f.t.Fatalf("creating Service %s: %v", s.Name, err)
	}
}

func endpointSlice(ns, name, service string, family discoveryv1.AddressType, eps ...endpoint) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{}},
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Port: ptr[int32](8080)}},
	}
	if service != "" {
		es.Labels[discoveryv1.LabelServiceName] = service
	}
	for _, e := range eps {
		de := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(!e.notReady)}}
		if e.pod != "" {
			de.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.pod}
		}
		if e.zone != "" {
			de.Zone = ptr(e.zone)
		}
		if e.node != "" {
			de.NodeName = ptr(e.node)
		}
		if len(e.forZones) > 0 {
			de.Hints = &discoveryv1.EndpointHints{}
			for _, z := range e.forZones {
				de.Hints.ForZones = append(de.Hints.ForZones, discoveryv1.ForZone{Name: z})
			}
		}
		es.Endpoints = append(es.Endpoints, de)
	}
	return es
}

func (f *fixture) createSlice(es *discoveryv1.EndpointSlice) {
	f.t.Helper()
	if _, err := f.c.Client.DiscoveryV1().EndpointSlices(es.Namespace).Create(f.ctx, es, metav1.CreateOptions{}); err != nil {
		f.t.Fatalf("creating EndpointSlice %s: %v", es.Name, err)
	}
}

func ptr[T any](v T) *T { return &v }

// serviceWorld adds to world() two more api pods (zone-a dual-stack, zone-c), a second db pod, and the
// Services and EndpointSlices of the shop. It returns the addresses' identities (world's and the new
// pods') and, by address, the Service target the contract gives bytes sent there ("namespace/service").
func (f *fixture) serviceWorld() (addrs map[string]expected, targets map[string]string) {
	t := f.t
	addrs = f.world()
	for _, p := range []testcluster.PodSpec{
		{Namespace: "shop", Name: "api-5c6b-aaaaa", NodeName: "n-a", IPs: []string{"198.18.10.12", "fd00:10::12"},
			Labels: map[string]string{"pod-template-hash": "5c6b"}, OwnerReferences: ctrl("ReplicaSet", "api-5c6b")},
		{Namespace: "shop", Name: "api-5c6b-ccccc", NodeName: "n-c", IPs: []string{"198.18.10.13"},
			Labels: map[string]string{"pod-template-hash": "5c6b"}, OwnerReferences: ctrl("ReplicaSet", "api-5c6b")},
		{Namespace: "shop", Name: "db-1", NodeName: "n-a", IPs: []string{"198.18.10.14"}, OwnerReferences: ctrl("StatefulSet", "db")},
	} {
		if _, err := f.c.CreatePod(f.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	addrs["198.18.10.12"] = expected{"shop", "api", "deployment", "zone-a", "api-5c6b-aaaaa"}
	addrs["fd00:10::12"] = expected{"shop", "api", "deployment", "zone-a", "api-5c6b-aaaaa"}
	addrs["198.18.10.13"] = expected{"shop", "api", "deployment", "zone-c", "api-5c6b-ccccc"}
	addrs["198.18.10.14"] = expected{"shop", "db", "statefulset", "zone-a", "db-1"}

	local := corev1.ServiceInternalTrafficPolicyLocal
	for _, s := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}, TrafficDistribution: ptr(corev1.ServiceTrafficDistributionPreferSameZone)}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-canary"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Port: 5432}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-read"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 5432}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "legacy", Annotations: map[string]string{corev1.DeprecatedAnnotationTopologyAwareHints: "auto"}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, InternalTrafficPolicy: &local, Ports: []corev1.ServicePort{{Port: 80}}}},
		// A Service without selector for the managed database: its slice is written by hand, as users do.
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 5432}}}},
	} {
		f.createService(s)
	}
	v4, v6 := discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6
	for _, es := range []*discoveryv1.EndpointSlice{
		// api: ready in zone-a and zone-b with hints for their own zones, not ready in zone-c;
		// its zone-a pod is dual-stack and listed again in the IPv6 slice.
		endpointSlice("shop", "api-v4", "api", v4,
			endpoint{addr: "198.18.10.2", pod: "api-5c6b-xyz12", zone: "zone-b", node: "n-b", forZones: []string{"zone-b"}},
			endpoint{addr: "198.18.10.12", pod: "api-5c6b-aaaaa", zone: "zone-a", node: "n-a", forZones: []string{"zone-a"}},
			endpoint{addr: "198.18.10.13", pod: "api-5c6b-ccccc", zone: "zone-c", node: "n-c", notReady: true}),
		endpointSlice("shop", "api-v6", "api", v6,
			endpoint{addr: "fd00:10::12", pod: "api-5c6b-aaaaa", zone: "zone-a", node: "n-a", forZones: []string{"zone-a"}}),
		// api-canary backs its traffic with one of api's pods.
		endpointSlice("shop", "api-canary-1", "api-canary", v4,
			endpoint{addr: "198.18.10.2", pod: "api-5c6b-xyz12", zone: "zone-b", node: "n-b"}),
		// db is headless over both db pods; db-read also lists db-1.
		endpointSlice("shop", "db-1", "db", v4,
			endpoint{addr: "198.18.10.3", pod: "db-0", zone: "zone-c"},
			endpoint{addr: "198.18.10.14", pod: "db-1", zone: "zone-a"}),
		endpointSlice("shop", "db-read-1", "db-read", v4,
			endpoint{addr: "198.18.10.14", pod: "db-1", zone: "zone-a"}),
		// legacy's endpoint names its node but no zone: the node's zone counts.
		endpointSlice("shop", "legacy-1", "legacy", v4, endpoint{addr: "198.18.10.6", pod: "debug", node: "n-c"}),
		endpointSlice("shop", "orders-1", "orders", v4, endpoint{addr: "198.18.200.9"}),
		// A slice without the service-name label: ignored.
		endpointSlice("shop", "stray", "", v4, endpoint{addr: "198.18.10.4", pod: "logs-q8w2", zone: "zone-a"}),
	} {
		f.createSlice(es)
	}
	targets = map[string]string{
		"198.18.10.2":  "shop/api+api-canary",
		"198.18.10.12": "shop/api",
		"fd00:10::12":  "shop/api",
		"198.18.10.13": "shop/api",
		"198.18.10.3":  "shop/db",
		"198.18.10.14": "shop/db-read",
		"198.18.10.6":  "shop/legacy",
		"198.18.200.9": "shop/orders",
	}
	return addrs, targets
}

// serviceWant sums flows into per-Service series the way flowserver.md says, from the test's tables: a
// flow to a listed address is a request to its Service; from a listed address to an unlisted one, that
// Service's response to the client (the destination); direct is the bytes between unlisted addresses.
func serviceWant(addrs map[string]expected, targets map[string]string, flows []report.Flow) (series map[string]float64, direct float64) {
	series = map[string]float64{}
	for _, fl := range flows {
		client, endpoint, direction := addrs[fl.Src.String()], addrs[fl.Dst.String()], "request"
		tg, ok := targets[fl.Dst.String()]
		if !ok {
			if tg, ok = targets[fl.Src.String()]; !ok {
				direct += float64(fl.Bytes)
				continue
			}
			client, endpoint, direction = endpoint, client, "response"
		}
		ns, svc, _ := strings.Cut(tg, "/")
		series[serviceKey(map[string]string{
			"src_namespace": client.ns, "src_workload": client.workload, "src_kind": client.kind, "src_zone": client.zone,
			"namespace": ns, "service": svc, "dst_zone": endpoint.zone, "direction": direction,
		})] += float64(fl.Bytes)
	}
	return series, direct
}

func serviceKey(l map[string]string) string {
	return fmt.Sprintf("src_namespace=%q,src_workload=%q,src_kind=%q,src_zone=%q,namespace=%q,service=%q,dst_zone=%q,direction=%q",
		l["src_namespace"], l["src_workload"], l["src_kind"], l["src_zone"], l["namespace"], l["service"], l["dst_zone"], l["direction"])
}

// checkServiceTraffic compares every per-Service series on /metrics with want, both ways, and checks
// that the per-Service bytes plus the direct bytes are the traffic total: no byte lost or doubled.
func checkServiceTraffic(t *testing.T, fams metricstest.Families, want map[string]float64, direct float64) {
	t.Helper()
	got := map[string]float64{}
	var perService float64
	for _, s := range series(fams, "zonetoll_service_traffic_bytes_total") {
		got[serviceKey(s.Labels)] = s.Value
		perService += s.Value
	}
	compare(t, "zonetoll_service_traffic_bytes_total", got, want)
	total := fams.Sum("zonetoll_traffic_bytes_total", nil)
	if perService+direct != total {
		t.Errorf("per-Service bytes %v + direct bytes %v = %v, but zonetoll_traffic_bytes_total sums to %v", perService, direct, perService+direct, total)
	}
}

// TestClusterTrafficPerService creates Services and EndpointSlices (with zones and hints) over pods in
// three zones, posts known reports over HTTP as the agent does, and checks /metrics: every per-Service
// series to the byte, per-Service plus direct bytes equal to the traffic total, the ready and hinted
// endpoint gauges, the Service info and the API server's version; then moves an address from one
// Service to another with a slice update and checks that later bytes follow it.
func TestClusterTrafficPerService(t *testing.T) {
	f := newFixture(t)
	addrs, targets := f.serviceWorld()
	svc := f.start(with(allowUnbound, map[string]string{"ZONETOLL_CIDRS_FILE": f.cidrs()}))
	f.waitGauge(svc, "zonetoll_flowserver_pods", worldPods+3)
	// The version is read in the background after start.
	f.waitFor("zonetoll_kubernetes_info", func() (bool, string) {
		n := len(metricstest.Scrape(t, svc.URL+"/metrics").Series("zonetoll_kubernetes_info", nil))
		return n == 1, fmt.Sprint(n, " series")
	})

	now := time.Now()
	flows := []report.Flow{
		flow("198.18.10.1", "198.18.10.2", 150_000, 120),   // frontend (a) → api+api-canary pod (b)
		flow("198.18.10.1", "198.18.10.12", 40_000, 30),    // frontend (a) → api (a), same zone
		flow("fd00:10::1", "fd00:10::12", 2_000, 2),        // frontend over IPv6 → api (a)
		flow("198.18.10.1", "198.18.10.13", 9_000, 7),      // frontend → api's not-ready pod (c): still api's
		flow("198.18.10.5", "198.18.10.12", 3_333, 3),      // cronjob (b) → api (a)
		flow("198.18.10.2", "198.18.10.3", 90_000, 70),     // api (b) → db-0: headless db only
		flow("198.18.10.2", "198.18.10.14", 60_000, 50),    // api (b) → db-1: db-read, headless db ignored
		flow("198.18.10.7", "198.18.10.6", 12_345, 10),     // pod on a zoneless node → legacy (c)
		flow("198.18.10.2", "198.18.200.9", 40_000, 30),    // api → orders, the managed database
		flow("198.18.10.1", "198.18.10.4", 5_000, 5),       // frontend → logs: only a stray slice lists it
		flow("198.18.10.2", "198.18.10.1", 1_000_000, 700), // api → frontend: api+api-canary's response
		flow("198.18.10.3", "198.19.77.7", 7_777, 9),       // db → external: db's "response" (the rule's known miss)
		flow("198.18.2.1", "198.18.10.12", 3_300, 3),       // node n-b → api (a)
	}
	for _, r := range f.perNode(1, now.Add(-10*time.Second), now, flows) {
		if got := reportpost.Post(t, svc.URL, f.agent, reportpost.Gzip(t, r), "gzip"); got.Status != http.StatusOK || strings.TrimSpace(got.Body) != "applied" {
			t.Fatalf("report from %s: %d %q, want 200 applied", r.Node, got.Status, got.Body)
		}
	}
	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	wantSvc, direct := serviceWant(addrs, targets, flows)
	checkServiceTraffic(t, fams, wantSvc, direct)
	// The other traffic metrics are unchanged by the attribution.
	checkTraffic(t, fams, want(addrs, flows))

	gauges := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "api", "zone": "zone-a"}, 1}, // dual-stack pod once
		{"zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "api", "zone": "zone-b"}, 1},
		{"zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "api", "zone": "zone-c"}, 0}, // not ready
		{"zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "api-canary", "zone": "zone-b"}, 1},
		{"zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "db", "zone": "zone-a"}, 1},
		{"zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "db", "zone": "zone-c"}, 1},
		{"zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "db-read", "zone": "zone-a"}, 1},
		{"zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "legacy", "zone": "zone-c"}, 1}, // the node's zone
		{"zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "orders", "zone": ""}, 1},
		{"zonetoll_service_hinted_endpoints", map[string]string{"namespace": "shop", "service": "api", "zone": "zone-a", "for_zone": "zone-a"}, 1},
		{"zonetoll_service_hinted_endpoints", map[string]string{"namespace": "shop", "service": "api", "zone": "zone-b", "for_zone": "zone-b"}, 1},
		{"zonetoll_service_info", map[string]string{"namespace": "shop", "service": "api", "type": "ClusterIP", "headless": "false",
			"traffic_distribution": "PreferSameZone", "topology_mode": "", "internal_traffic_policy": "Cluster"}, 1},
		{"zonetoll_service_info", map[string]string{"namespace": "shop", "service": "db", "type": "ClusterIP", "headless": "true",
			"traffic_distribution": "", "topology_mode": "", "internal_traffic_policy": "Cluster"}, 1},
		{"zonetoll_service_info", map[string]string{"namespace": "shop", "service": "legacy", "type": "NodePort", "headless": "false",
			"traffic_distribution": "", "topology_mode": "auto", "internal_traffic_policy": "Local"}, 1},
		{"zonetoll_kubernetes_info", map[string]string{"git_version": f.c.Version, "major": "1", "minor": minorOf(t, f.c.Version)}, 1},
	}
	for _, g := range gauges {
		if v, ok := fams.Value(g.name, g.labels); !ok || v != g.want {
			t.Errorf("%s%v = %v (present %v), want %v", g.name, g.labels, v, ok, g.want)
		}
	}
	for _, name := range []string{"zonetoll_service_ready_endpoints", "zonetoll_service_hinted_endpoints"} {
		if n := len(fams.Series(name, map[string]string{"namespace": "shop"})); n != map[string]int{"zonetoll_service_ready_endpoints": 9, "zonetoll_service_hinted_endpoints": 2}[name] {
			t.Errorf("%d series of %s, want only those above", n, name)
		}
	}

	// A slice update moves api's zone-a pod to api-canary: later bytes to it follow, earlier ones stay.
	moved := endpointSlice("shop", "api-v4", "api", discoveryv1.AddressTypeIPv4,
		endpoint{addr: "198.18.10.2", pod: "api-5c6b-xyz12", zone: "zone-b", node: "n-b", forZones: []string{"zone-b"}},
		endpoint{addr: "198.18.10.13", pod: "api-5c6b-ccccc", zone: "zone-c", node: "n-c", notReady: true})
	canary := endpointSlice("shop", "api-canary-1", "api-canary", discoveryv1.AddressTypeIPv4,
		endpoint{addr: "198.18.10.2", pod: "api-5c6b-xyz12", zone: "zone-b", node: "n-b"},
		endpoint{addr: "198.18.10.12", pod: "api-5c6b-aaaaa", zone: "zone-a", node: "n-a"})
	for _, es := range []*discoveryv1.EndpointSlice{moved, canary} {
		cur, err := f.c.Client.DiscoveryV1().EndpointSlices("shop").Get(f.ctx, es.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		es.ResourceVersion = cur.ResourceVersion
		if _, err := f.c.Client.DiscoveryV1().EndpointSlices("shop").Update(f.ctx, es, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("updating EndpointSlice %s: %v", es.Name, err)
		}
	}
	// Both updates come through one watch, in order: once the canary's zone-a endpoint shows, api's
	// update (sent first) has been applied too.
	f.waitFor("the slice updates seen by the flowserver", func() (bool, string) {
		v, _ := metricstest.Scrape(t, svc.URL+"/metrics").Value("zonetoll_service_ready_endpoints",
			map[string]string{"namespace": "shop", "service": "api-canary", "zone": "zone-a"})
		return v == 1, fmt.Sprintf("api-canary ready endpoints in zone-a: %v", v)
	})
	targets["198.18.10.12"] = "shop/api-canary"
	later := []report.Flow{
		flow("198.18.10.1", "198.18.10.12", 11_000, 9), // frontend → the moved pod: now api-canary
		flow("fd00:10::1", "fd00:10::12", 500, 1),      // its IPv6 address is still only in api's slice
		flow("198.18.10.1", "198.18.10.2", 1_000, 1),   // api+api-canary as before
	}
	for _, r3 := range f.perNode(2, now.Add(-5*time.Second), time.Now(), later) {
		if got := reportpost.Post(t, svc.URL, f.agent, reportpost.Gzip(t, r3), "gzip"); got.Status != http.StatusOK {
			t.Fatalf("report from %s after the slice update: %d %q", r3.Node, got.Status, got.Body)
		}
	}
	laterWant, laterDirect := serviceWant(addrs, targets, later)
	for k, v := range laterWant {
		wantSvc[k] += v
	}
	fams = metricstest.Scrape(t, svc.URL+"/metrics")
	checkServiceTraffic(t, fams, wantSvc, direct+laterDirect)
	metricstest.Promtool(t, svc.URL+"/metrics")
}

func minorOf(t *testing.T, gitVersion string) string {
	t.Helper()
	var major, minor int
	if _, err := fmt.Sscanf(gitVersion, "v%d.%d", &major, &minor); err != nil {
		t.Fatalf("test cluster version %q: %v", gitVersion, err)
	}
	return fmt.Sprint(minor)
}
