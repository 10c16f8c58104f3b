package demo

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// Every address the demo uses is in the ranges reserved for it, and each is owned once.
func TestModelAddresses(t *testing.T) {
	m := NewModel("ztdemo-1-")
	v4 := netip.MustParsePrefix("198.18.0.0/15")
	v6 := netip.MustParsePrefix("fd00::/8")
	seen := map[netip.Addr]string{}
	check := func(who string, a netip.Addr) {
		if !v4.Contains(a) && !v6.Contains(a) {
			t.Errorf("%s has %s, outside 198.18.0.0/15 and fd00::/8", who, a)
		}
		if prev, ok := seen[a]; ok && prev != who {
			t.Errorf("%s and %s both have %s", prev, who, a)
		}
		seen[a] = who
	}
	for _, n := range m.Nodes {
		check(n.Name, n.IPv4)
		check(n.Name, n.IPv6)
	}
	for _, p := range m.Pods {
		if p.HostNetwork {
			if p.IPv4 != p.Node.IPv4 {
				t.Errorf("host-network pod %s has %s, not its node's %s", p.Name, p.IPv4, p.Node.IPv4)
			}
			continue
		}
		check(p.Name, p.IPv4)
		check(p.Name, p.IPv6)
		if !p.Node.Prefix[0].Contains(p.IPv4) || !p.Node.Prefix[1].Contains(p.IPv6) {
			t.Errorf("pod %s (%s, %s) is outside its node's subnets %v", p.Name, p.IPv4, p.IPv6, p.Node.Prefix)
		}
	}
	check(m.Ext.Name, m.Ext.IPv4)
	check(m.Ext.Name, m.Ext.IPv6)

	if len(m.Zones) != 3 || len(m.Nodes) != 6 {
		t.Fatalf("%d zones and %d nodes, want 3 × 2", len(m.Zones), len(m.Nodes))
	}
	for _, z := range m.Zones {
		if len(m.NodesInZone(z)) != 2 {
			t.Errorf("zone %s has %d nodes, want 2", z, len(m.NodesInZone(z)))
		}
		for _, w := range []string{"frontend", "api"} {
			if p := m.Pod(w, z); p == nil || p.Node.Zone != z {
				t.Errorf("no %s pod in zone %s", w, z)
			}
		}
		if m.Pod("frontend", z).Node == m.Pod("api", z).Node {
			t.Errorf("frontend and api share a node in %s: their traffic would not cross nodes", z)
		}
	}
	for _, p := range m.Pods {
		if p.Kind == KindDeployment && !strings.HasPrefix(p.OwnerName, p.Workload+"-") {
			t.Errorf("pod %s: ReplicaSet %s is not named <deployment>-<hash>", p.Name, p.OwnerName)
		}
	}
}

// Phase 2 keeps every frontend call in its zone; phase 1 crosses to every zone.
func TestCalls(t *testing.T) {
	m := NewModel("ztdemo-1-")
	count := func(phase int) (cross, same int) {
		for _, c := range m.Calls(phase) {
			if c.Src.Workload != "frontend" {
				continue
			}
			if c.Dst.Node.Zone == c.Src.Node.Zone {
				same++
			} else {
				cross++
			}
		}
		return
	}
	if cross, same := count(1); cross != 6 || same != 3 {
		t.Errorf("phase 1: frontend calls %d cross-zone and %d same-zone, want 6 and 3", cross, same)
	}
	if cross, same := count(2); cross != 0 || same != 3 {
		t.Errorf("phase 2: frontend calls %d cross-zone and %d same-zone, want 0 and 3", cross, same)
	}
}

func TestExpected(t *testing.T) {
	m := NewModel("ztdemo-1-")
	fe, api := m.Pod("frontend", m.Zones[0]), m.Pod("api", m.Zones[1])
	var host *Pod
	for _, p := range m.Pods {
		if p.HostNetwork {
			host = p
		}
	}
	sent := map[[2]netip.Addr]PairCount{
		{fe.IPv4, api.IPv4}:                      {Packets: 10, Payload: 3000},
		{fe.IPv6, api.IPv6}:                      {Packets: 10, Payload: 3000},
		{api.IPv4, fe.IPv4}:                      {Packets: 4, Payload: 4800},
		{m.Ext.IPv4, api.IPv4}:                   {Packets: 7, Payload: 700}, // the managed cache: nobody counts it
		{host.IPv4, api.IPv4}:                    {Packets: 2, Payload: 200},
		{api.IPv6, m.Ext.IPv6}:                   {Packets: 1, Payload: 400},
		{api.IPv6, host.IPv6}:                    {Packets: 3, Payload: 3000},
		{fe.IPv4, m.Pod("api", m.Zones[0]).IPv4}: {Packets: 1, Payload: 100},
	}
	got := Expected(m, sent)
	za, zb, zc := m.Zones[0], m.Zones[1], m.Zones[2]
	key := func(src, dst Endpoint) PairKey {
		return PairKey{src.Namespace, src.Workload, src.Kind, src.Zone, dst.Namespace, dst.Workload, dst.Kind, dst.Zone}
	}
	want := map[string]map[PairKey]uint64{
		za: {
			key(m.ByAddr[fe.IPv4], m.ByAddr[api.IPv4]):              3000 + 10*28 + 3000 + 10*48,
			key(m.ByAddr[fe.IPv4], m.ByAddr[m.Pod("api", za).IPv4]): 100 + 28,
		},
		zb: {
			key(m.ByAddr[api.IPv4], m.ByAddr[fe.IPv4]):    4800 + 4*28,
			key(m.ByAddr[api.IPv6], m.ByAddr[m.Ext.IPv6]): 400 + 48,
			key(m.ByAddr[api.IPv6], m.ByAddr[host.IPv6]):  3000 + 3*48,
		},
		zc: {
			key(m.ByAddr[host.IPv4], m.ByAddr[api.IPv4]): 200 + 2*28,
		},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Expected:\n got %v\nwant %v", got, want)
	}
	if k := key(m.ByAddr[host.IPv4], m.ByAddr[api.IPv4]); k.SrcKind != KindNode || k.SrcWorkload != host.Node.Name {
		t.Errorf("the host-network pod resolves to %+v, want its node", k)
	}
	if k := key(m.ByAddr[api.IPv6], m.ByAddr[m.Ext.IPv6]); k.DstKind != "cidr:managed-cache" || k.DstZone != zc {
		t.Errorf("the managed cache resolves to %+v, want cidr:managed-cache in %s", k, zc)
	}
}

func TestL3Bytes(t *testing.T) {
	c := PairCount{Packets: 3, Payload: 1000}
	if got := L3Bytes(netip.MustParseAddr("198.18.1.1"), c); got != 1000+3*28 {
		t.Errorf("IPv4: %d", got)
	}
	if got := L3Bytes(netip.MustParseAddr("fd00::1"), c); got != 1000+3*48 {
		t.Errorf("IPv6: %d", got)
	}
}

// The application's Services list what a cluster would put behind them: the api's pod in every zone (so
// same-zone routing has a local endpoint everywhere), postgres headless, the managed cache by address;
// nothing lists the frontend, whose answers from the api are the api's Service traffic.
func TestModelServices(t *testing.T) {
	m := NewModel("ztdemo-1-")
	api := m.ServiceNamed("api")
	if api == nil || api.Headless || api.Selector["app"] != "api" {
		t.Fatalf("api Service %+v, want a ClusterIP Service selecting app=api", api)
	}
	for _, z := range m.Zones {
		found := false
		for _, p := range api.Pods {
			found = found || (p.Workload == "api" && p.Node.Zone == z)
		}
		if !found {
			t.Errorf("the api Service has no endpoint in %s", z)
		}
	}
	if pg := m.ServiceNamed("postgres"); pg == nil || !pg.Headless || len(pg.Pods) != 1 || pg.Pods[0].Kind != KindStatefulSet {
		t.Errorf("postgres Service %+v, want headless over the StatefulSet's pod", pg)
	}
	if c := m.ServiceNamed(m.Ext.Name); c == nil || c.Selector != nil || c.Ext == nil || len(c.Pods) != 0 {
		t.Errorf("%s Service %+v, want one without selector listing the cache's addresses", m.Ext.Name, c)
	}
	listed := map[netip.Addr]string{}
	for _, s := range m.Services {
		for _, a := range s.Addrs() {
			if prev, ok := listed[a]; ok {
				t.Errorf("%s is listed by %s and %s", a, prev, s.Name)
			}
			listed[a] = s.Name
			if e := m.ByAddr[a]; e.Workload == "frontend" {
				t.Errorf("Service %s lists the frontend's %s", s.Name, a)
			}
		}
	}
	if len(listed) != 2*(len(m.Zones)+2) {
		t.Errorf("%d addresses listed, want %d (the api's, postgres', the cache's; both families)", len(listed), 2*(len(m.Zones)+2))
	}
}
