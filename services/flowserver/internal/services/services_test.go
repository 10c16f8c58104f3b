package services

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(ns, name string, headless bool) ServiceState {
	return ServiceState{Namespace: ns, Name: name, Type: "ClusterIP", Headless: headless}
}

func ep(addrs ...string) EndpointState {
	e := EndpointState{Ready: true}
	for _, a := range addrs {
		e.Addrs = append(e.Addrs, netip.MustParseAddr(a))
	}
	return e
}

func slice(ns, name, service string, eps ...EndpointState) SliceState {
	return SliceState{Namespace: ns, Name: name, Service: service, Endpoints: eps}
}

// op is one change to the index, in the order the informers could deliver it.
type op struct {
	svc      *ServiceState
	delSvc   string // namespace/name
	slice    *SliceState
	delSlice string // namespace/name
}

func apply(x *Index, ops []op) {
	for _, o := range ops {
		switch {
		case o.svc != nil:
			x.UpsertService(*o.svc)
		case o.delSvc != "":
			ns, name, _ := strings.Cut(o.delSvc, "/")
			x.DeleteService(ns, name)
		case o.slice != nil:
			x.UpsertSlice(*o.slice)
		case o.delSlice != "":
			ns, name, _ := strings.Cut(o.delSlice, "/")
			x.DeleteSlice(ns, name)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestAttribution(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		// want maps an address to namespace/service, "" for no attribution.
		want map[string]string
	}{
		{
			name: "one Service",
			ops: []op{
				{svc: ptr(svc("shop", "api", false))},
				{slice: ptr(slice("shop", "api-x1", "api", ep("198.18.10.2"), ep("198.18.10.3")))},
			},
			want: map[string]string{"198.18.10.2": "shop/api", "198.18.10.3": "shop/api", "198.18.10.4": ""},
		},
		{
			name: "several Services: names sorted and joined, counted once",
			ops: []op{
				{svc: ptr(svc("shop", "api-canary", false))},
				{svc: ptr(svc("shop", "api", false))},
				{slice: ptr(slice("shop", "api-canary-1", "api-canary", ep("198.18.10.2")))},
				{slice: ptr(slice("shop", "api-1", "api", ep("198.18.10.2"), ep("198.18.10.3")))},
			},
			want: map[string]string{"198.18.10.2": "shop/api+api-canary", "198.18.10.3": "shop/api"},
		},
		{
			name: "only headless",
			ops: []op{
				{svc: ptr(svc("shop", "db", true))},
				{slice: ptr(slice("shop", "db-1", "db", ep("198.18.10.5")))},
			},
			want: map[string]string{"198.18.10.5": "shop/db"},
		},
		{
			name: "headless beside non-headless: the headless one is ignored",
			ops: []op{
				{svc: ptr(svc("shop", "db", true))},
				{svc: ptr(svc("shop", "db-read", false))},
				{slice: ptr(slice("shop", "db-1", "db", ep("198.18.10.5"), ep("198.18.10.6")))},
				{slice: ptr(slice("shop", "db-read-1", "db-read", ep("198.18.10.5")))},
			},
			want: map[string]string{"198.18.10.5": "shop/db-read", "198.18.10.6": "shop/db"},
		},
		{
			name: "two headless Services",
			ops: []op{
				{svc: ptr(svc("shop", "db", true))},
				{svc: ptr(svc("shop", "db-peers", true))},
				{slice: ptr(slice("shop", "db-1", "db", ep("198.18.10.5")))},
				{slice: ptr(slice("shop", "db-peers-1", "db-peers", ep("198.18.10.5")))},
			},
			want: map[string]string{"198.18.10.5": "shop/db+db-peers"},
		},
		{
			name: "headless from the slice label while the Service is not known yet",
			ops: []op{
				{slice: ptr(SliceState{Namespace: "shop", Name: "db-1", Service: "db", HeadlessLabel: true, Endpoints: []EndpointState{ep("198.18.10.5")}})},
				{slice: ptr(slice("shop", "db-read-1", "db-read", ep("198.18.10.5")))},
			},
			want: map[string]string{"198.18.10.5": "shop/db-read"},
		},
		{
			name: "the Service arriving headless after its slices changes the attribution",
			ops: []op{
				{slice: ptr(slice("shop", "db-1", "db", ep("198.18.10.5")))},
				{slice: ptr(slice("shop", "db-read-1", "db-read", ep("198.18.10.5")))},
				{svc: ptr(svc("shop", "db", true))},
			},
			want: map[string]string{"198.18.10.5": "shop/db-read"},
		},
		{
			name: "a Service deleted: its slices stay and decide by their label again",
			ops: []op{
				{svc: ptr(svc("shop", "db", true))},
				{slice: ptr(slice("shop", "db-1", "db", ep("198.18.10.5")))}, // no headless label
				{slice: ptr(slice("shop", "db-read-1", "db-read", ep("198.18.10.5")))},
				{delSvc: "shop/db"},
			},
			want: map[string]string{"198.18.10.5": "shop/db+db-read"},
		},
		{
			name: "no Service lists the address",
			ops: []op{
				{svc: ptr(svc("shop", "api", false))},
				{svc: ptr(svc("shop", "empty", false))},
				{slice: ptr(slice("shop", "api-1", "api", ep("198.18.10.2")))},
			},
			want: map[string]string{"198.18.10.9": "", "fd00:10::9": ""},
		},
		{
			name: "a slice without the service-name label is ignored",
			ops: []op{
				{slice: ptr(slice("shop", "manual", "", ep("198.18.10.7")))},
			},
			want: map[string]string{"198.18.10.7": ""},
		},
		{
			name: "a slice losing its service-name label drops its addresses",
			ops: []op{
				{slice: ptr(slice("shop", "manual", "ext", ep("198.18.10.7")))},
				{slice: ptr(slice("shop", "manual", "", ep("198.18.10.7")))},
			},
			want: map[string]string{"198.18.10.7": ""},
		},
		{
			name: "IPv6 and IPv4 slices of a dual-stack Service",
			ops: []op{
				{svc: ptr(svc("shop", "api", false))},
				{slice: ptr(slice("shop", "api-v4", "api", ep("198.18.10.2")))},
				{slice: ptr(slice("shop", "api-v6", "api", ep("fd00:10::2")))},
			},
			want: map[string]string{"198.18.10.2": "shop/api", "fd00:10::2": "shop/api", "::ffff:198.18.10.2": "shop/api"},
		},
		{
			name: "an endpoint that is not ready is still the Service's",
			ops: []op{
				{svc: ptr(svc("shop", "api", false))},
				{slice: ptr(slice("shop", "api-1", "api", EndpointState{Addrs: []netip.Addr{netip.MustParseAddr("198.18.10.2")}, Ready: false}))},
			},
			want: map[string]string{"198.18.10.2": "shop/api"},
		},
		{
			name: "a slice update moves an address from one Service to another",
			ops: []op{
				{svc: ptr(svc("shop", "api", false))},
				{svc: ptr(svc("shop", "web", false))},
				{slice: ptr(slice("shop", "api-1", "api", ep("198.18.10.2"), ep("198.18.10.3")))},
				{slice: ptr(slice("shop", "api-1", "api", ep("198.18.10.3")))},
				{slice: ptr(slice("shop", "web-1", "web", ep("198.18.10.2")))},
			},
			want: map[string]string{"198.18.10.2": "shop/web", "198.18.10.3": "shop/api"},
		},
		{
			name: "an address in two slices of one Service stays until both drop it",
			ops: []op{
				{svc: ptr(svc("shop", "api", false))},
				{slice: ptr(slice("shop", "api-1", "api", ep("198.18.10.2")))},
				{slice: ptr(slice("shop", "api-2", "api", ep("198.18.10.2"), ep("198.18.10.3")))},
				{delSlice: "shop/api-1"},
				{slice: ptr(slice("shop", "api-2", "api", ep("198.18.10.2")))},
			},
			want: map[string]string{"198.18.10.2": "shop/api", "198.18.10.3": ""},
		},
		{
			name: "Services of two namespaces",
			ops: []op{
				{slice: ptr(slice("shop", "api-1", "api", ep("198.18.10.2")))},
				{slice: ptr(slice("mirror", "api-1", "shop-api", ep("198.18.10.2")))},
			},
			want: map[string]string{"198.18.10.2": "mirror+shop/shop-api+api"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := New()
			apply(x, tt.ops)
			for addr, want := range tt.want {
				got, ok := x.Lookup(netip.MustParseAddr(addr))
				gotS := ""
				if ok {
					gotS = got.Namespace + "/" + got.Service
				}
				if gotS != want {
					t.Errorf("%s: attributed to %q, want %q", addr, gotS, want)
				}
			}
		})
	}
}

// TestDeletingEverythingLeavesNothing checks that the reference counts return to empty tables: an
// index that leaked entries would attribute the bytes of a reused address to a Service long gone.
func TestDeletingEverythingLeavesNothing(t *testing.T) {
	x := New()
	apply(x, []op{
		{svc: ptr(svc("shop", "api", false))},
		{slice: ptr(slice("shop", "api-1", "api", ep("198.18.10.2"), ep("198.18.10.2", "198.18.10.3")))},
		{slice: ptr(slice("shop", "api-2", "api", ep("fd00:10::2")))},
		{delSlice: "shop/api-1"},
		{delSlice: "shop/api-2"},
		{delSvc: "shop/api"},
	})
	if len(x.refs) != 0 || len(x.attr) != 0 || len(x.slices) != 0 || len(x.bySvc) != 0 || len(x.services) != 0 {
		t.Errorf("tables not empty: refs %v, attr %v, slices %d, bySvc %d, services %d", x.refs, x.attr, len(x.slices), len(x.bySvc), len(x.services))
	}
}

func TestEndpointsPerZone(t *testing.T) {
	x := New()
	notReady := EndpointState{Addrs: []netip.Addr{netip.MustParseAddr("198.18.10.4")}, Zone: "zone-c", Ref: "pod:shop/api-4"}
	hinted := func(e EndpointState, zone, ref string, forZones ...string) EndpointState {
		e.Zone, e.Ref, e.ForZones = zone, ref, forZones
		return e
	}
	onNode := ep("198.18.10.5")
	onNode.Node, onNode.Ref = "n-b", "pod:shop/api-5"
	apply(x, []op{
		{svc: ptr(svc("shop", "api", false))},
		{slice: ptr(slice("shop", "api-v4", "api",
			hinted(ep("198.18.10.1"), "zone-a", "pod:shop/api-1", "zone-a"),
			hinted(ep("198.18.10.2"), "zone-a", "pod:shop/api-2", "zone-a", "zone-c"),
			hinted(ep("198.18.10.3"), "zone-b", "pod:shop/api-3", "zone-b"),
			notReady, onNode))},
		// The IPv6 slice lists the same pods again: each still counts once.
		{slice: ptr(slice("shop", "api-v6", "api",
			hinted(ep("fd00:10::1"), "zone-a", "pod:shop/api-1", "zone-a"),
			hinted(ep("fd00:10::3"), "zone-b", "pod:shop/api-3", "zone-b")))},
		{svc: ptr(svc("shop", "web", false))},
		{slice: ptr(slice("shop", "web-1", "web", ep("198.18.20.1")))}, // no zone, no node, no hints
		{svc: ptr(svc("shop", "idle", false))},
		{slice: ptr(slice("shop", "idle-1", "idle"))}, // no endpoints: not exported
		// A Service without selector, dual-stack by hand: no targetRef ties the two listings of its
		// endpoint in zone-c together, so each family counts and the zone takes the larger count.
		{svc: ptr(svc("shop", "cache", false))},
		{slice: ptr(slice("shop", "cache-v4", "cache", hinted(ep("198.19.200.10"), "zone-c", "")))},
		{slice: ptr(slice("shop", "cache-v6", "cache", hinted(ep("fd00:200::10"), "zone-c", ""), hinted(ep("fd00:200::11"), "zone-a", "")))},
	})
	got := map[Key]Endpoints{}
	for _, e := range x.Endpoints(map[string]string{"n-b": "zone-b"}) {
		got[e.Service] = e
	}
	api := got[Key{"shop", "api"}]
	wantReady := map[string]int{"zone-a": 2, "zone-b": 2, "zone-c": 0}
	if !maps.Equal(api.Ready, wantReady) {
		t.Errorf("api ready = %v, want %v", api.Ready, wantReady)
	}
	wantHinted := map[ZonePair]int{{"zone-a", "zone-a"}: 2, {"zone-a", "zone-c"}: 1, {"zone-b", "zone-b"}: 1}
	if !maps.Equal(api.Hinted, wantHinted) {
		t.Errorf("api hinted = %v, want %v", api.Hinted, wantHinted)
	}
	if cache := got[Key{"shop", "cache"}]; !maps.Equal(cache.Ready, map[string]int{"zone-c": 1, "zone-a": 1}) {
		t.Errorf("cache ready = %v, want 1 in zone-c (listed once per family) and 1 in zone-a", cache.Ready)
	}
	web := got[Key{"shop", "web"}]
	if !maps.Equal(web.Ready, map[string]int{"": 1}) || len(web.Hinted) != 0 {
		t.Errorf("web = %+v, want 1 ready endpoint in zone \"\" and no hints", web)
	}
	if _, ok := got[Key{"shop", "idle"}]; ok || len(got) != 3 {
		t.Errorf("Services with endpoints = %v, want api, cache and web only", got)
	}
}

func TestStatesOfAPIObjects(t *testing.T) {
	local := corev1.ServiceInternalTrafficPolicyLocal
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api", Annotations: map[string]string{
			corev1.DeprecatedAnnotationTopologyAwareHints: "auto", "other": "x",
		}},
		Spec: corev1.ServiceSpec{ClusterIP: "None", TrafficDistribution: ptr("PreferSameZone"), InternalTrafficPolicy: &local},
	}
	tr, err := trim(s)
	if err != nil {
		t.Fatal(err)
	}
	got := ServiceStateOf(tr.(*corev1.Service))
	want := ServiceState{Namespace: "shop", Name: "api", Type: "ClusterIP", Headless: true,
		TrafficDistribution: "PreferSameZone", TopologyMode: "auto", InternalTrafficPolicy: "Local"}
	if got != want {
		t.Errorf("Service state after trim = %+v, want %+v", got, want)
	}
	s.Annotations[corev1.AnnotationTopologyMode] = "Auto"
	if got := ServiceStateOf(s); got.TopologyMode != "Auto" {
		t.Errorf("topology mode with both annotations = %q, want the newer one's Auto", got.TopologyMode)
	}

	no := false
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-x", Labels: map[string]string{
			discoveryv1.LabelServiceName: "api", corev1.IsHeadlessService: "", "other": "x"}},
		AddressType: discoveryv1.AddressTypeIPv6,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"fd00:10::2"}, Zone: ptr("zone-b"), NodeName: ptr("n-b"),
				Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-b"}, {Name: "zone-c"}}},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "api-2"}},
			{Addresses: []string{"fd00:10::3"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},
			{Addresses: []string{"not-an-ip"}},
		},
		Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr[int32](8080)}},
	}
	tr, err = trim(es)
	if err != nil {
		t.Fatal(err)
	}
	if tes := tr.(*discoveryv1.EndpointSlice); tes.Ports != nil || len(tes.Labels) != 2 {
		t.Errorf("trimmed slice kept ports %v or labels %v", tes.Ports, tes.Labels)
	}
	st := SliceStateOf(tr.(*discoveryv1.EndpointSlice))
	if st.Service != "api" || !st.HeadlessLabel || len(st.Endpoints) != 2 {
		t.Fatalf("slice state = %+v, want Service api, headless label, two endpoints (the unparsable one skipped)", st)
	}
	e0, e1 := st.Endpoints[0], st.Endpoints[1]
	if !e0.Ready || e0.Zone != "zone-b" || e0.Node != "n-b" || !slices.Equal(e0.ForZones, []string{"zone-b", "zone-c"}) || e0.Ref != "pod:shop/api-2" {
		t.Errorf("first endpoint = %+v", e0)
	}
	if e1.Ready || e1.Ref != "" || e1.Addrs[0] != netip.MustParseAddr("fd00:10::3") {
		t.Errorf("second endpoint = %+v, want not ready, no ref", e1)
	}
}
