package resolve

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/shared/report"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func addr(s string) report.Addr { return report.AddrFrom(netip.MustParseAddr(s)) }

func ips(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, x := range s {
		out[i] = netip.MustParseAddr(x)
	}
	return out
}

func newTestResolver(t *testing.T) *Resolver {
	t.Helper()
	r, err := New(Options{CIDRs: []CIDR{
		{Name: "wide", CIDRs: []string{"198.18.0.0/16"}, Zone: "zone-z"},
		{Name: "db", CIDRs: []string{"198.18.200.0/24"}, Kind: "database", Zone: "zone-c"},
		{Name: "v6", CIDRs: []string{"fd00:200::/64"}},
	}, GoneCapacity: 16})
	if err != nil {
		t.Fatal(err)
	}
	r.UpsertNode(NodeState{Name: "n-a", Zone: "zone-a", Region: "r", IPs: ips("198.19.1.1", "fd00:1::1")})
	r.UpsertNode(NodeState{Name: "n-b", Zone: "zone-b", Region: "r", IPs: ips("198.19.2.1")})
	r.UpsertNode(NodeState{Name: "n-x", IPs: ips("198.19.4.1")})
	return r
}

func resolveAt(r *Resolver, a string, from, to time.Time) *Endpoint {
	var ep *Endpoint
	r.Read(func(v View) { ep = v.Resolve(addr(a), from, to) })
	return ep
}

func TestResolveByKindAndTime(t *testing.T) {
	r := newTestResolver(t)
	// old holds .1 from 0 s until deleted at 60 s; new holds it from 70 s.
	r.UpsertPod(PodState{Namespace: "ns", Name: "old", Node: "n-a", OwnerKind: "ReplicaSet", OwnerName: "web-abc", TemplateHash: "abc", IPs: ips("198.19.10.1"), Created: at(0)}, at(0))
	r.DeletePod("ns", "old", at(60))
	r.UpsertPod(PodState{Namespace: "ns", Name: "new", Node: "n-b", OwnerKind: "StatefulSet", OwnerName: "db", IPs: ips("198.19.10.1"), Created: at(70)}, at(70))
	// A finished job pod's IP is free for others even though the pod object remains.
	r.UpsertPod(PodState{Namespace: "ns", Name: "job-x", Node: "n-a", OwnerKind: "Job", OwnerName: "job", IPs: ips("198.19.10.2"), Created: at(0)}, at(0))
	r.UpsertPod(PodState{Namespace: "ns", Name: "job-x", Node: "n-a", OwnerKind: "Job", OwnerName: "job", IPs: ips("198.19.10.2"), Created: at(0), Finished: true}, at(30))
	r.UpsertPod(PodState{Namespace: "kube-system", Name: "hostnet", Node: "n-b", HostNetwork: true, IPs: ips("198.19.2.1"), Created: at(0)}, at(0))
	r.UpsertPod(PodState{Namespace: "ns", Name: "mirror", Node: "n-x", OwnerKind: "Node", OwnerName: "n-x", IPs: ips("198.19.10.3"), Created: at(0)}, at(0))
	r.UpsertPod(PodState{Namespace: "ns", Name: "lost", Node: "n-gone", IPs: ips("198.19.10.4"), Created: at(0)}, at(0))

	tests := []struct {
		name           string
		addr           string
		from, to       time.Time
		wantName, kind string
		zone           string
		source         Source
		noZone         string
	}{
		{"live pod of a deployment (ReplicaSet not cached)", "198.19.10.1", at(80), at(90), "db", "statefulset", "zone-b", SourcePod, ""},
		{"late report: the deleted pod's time", "198.19.10.1", at(20), at(30), "web", "deployment", "zone-a", SourceDeletedPod, ""},
		{"window spanning the reuse goes to the longer holder", "198.19.10.1", at(50), at(90), "db", "statefulset", "zone-b", SourcePod, ""},
		{"before anyone held it: not guessed", "198.19.10.1", at(-100), at(-50), "", "external", "", SourceExternal, ""},
		{"finished pod during its life", "198.19.10.2", at(10), at(20), "job", "job", "zone-a", SourceDeletedPod, ""},
		{"host-network pod is its node", "198.19.2.1", at(10), at(20), "n-b", "node", "zone-b", SourceNode, ""},
		{"node IPv6 address", "fd00:1::1", at(10), at(20), "n-a", "node", "zone-a", SourceNode, ""},
		{"mirror pod of a static pod", "198.19.10.3", at(10), at(20), "mirror", "pod", "", SourcePod, "no_zone_label"},
		{"pod on an unknown node", "198.19.10.4", at(10), at(20), "lost", "pod", "", SourcePod, "node_unknown"},
		{"longest CIDR wins", "198.18.200.9", at(10), at(20), "db", "database", "zone-c", SourceCIDR, ""},
		{"shorter CIDR", "198.18.7.7", at(10), at(20), "wide", "cidr:wide", "zone-z", SourceCIDR, ""},
		{"IPv6 CIDR without zone", "fd00:200::9", at(10), at(20), "v6", "cidr:v6", "", SourceCIDR, ""},
		{"external", "fd00:999::1", at(10), at(20), "", "external", "", SourceExternal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := resolveAt(r, tt.addr, tt.from, tt.to)
			w := ep.Workload.Value()
			if w.Name != tt.wantName || w.Kind != tt.kind || w.Zone != tt.zone || ep.Source != tt.source || ep.NoZone != tt.noZone {
				t.Errorf("got %+v source=%v noZone=%q, want name=%s kind=%s zone=%q source=%v noZone=%q",
					w, ep.Source, ep.NoZone, tt.wantName, tt.kind, tt.zone, tt.source, tt.noZone)
			}
		})
	}
}

func TestResolveFollowsNodeAndOwnerChanges(t *testing.T) {
	r := newTestResolver(t)
	r.UpsertPod(PodState{Namespace: "ns", Name: "p", Node: "n-x", OwnerKind: "ReplicaSet", OwnerName: "rs-1", IPs: ips("198.19.10.1"), Created: at(0)}, at(0))
	ep := resolveAt(r, "198.19.10.1", at(10), at(20))
	if w := ep.Workload.Value(); w.Kind != "replicaset" || w.Name != "rs-1" || w.Zone != "" {
		t.Fatalf("before: %+v", w)
	}
	// The node gets a zone label, and the ReplicaSet turns out to belong to a Deployment.
	r.UpsertNode(NodeState{Name: "n-x", Zone: "zone-x", Region: "r", IPs: ips("198.19.4.1")})
	r.SetOwnerLookup(func(kind, ns, name string) (string, string, bool) {
		if kind == "ReplicaSet" && ns == "ns" && name == "rs-1" {
			return "Deployment", "web", true
		}
		return "", "", false
	})
	ep = resolveAt(r, "198.19.10.1", at(10), at(20))
	if w := ep.Workload.Value(); w.Kind != "deployment" || w.Name != "web" || w.Zone != "zone-x" {
		t.Fatalf("after: %+v", w)
	}
	if got := r.Zones(); got["zone-a"] != "r" || got["zone-x"] != "r" || len(got) != 3 {
		t.Errorf("Zones() = %v", got)
	}
}

func TestCIDRErrorsNameTheEntry(t *testing.T) {
	tests := []struct {
		name    string
		entries []CIDR
		want    string
	}{
		{"no name", []CIDR{{CIDRs: []string{"198.18.0.0/24"}}}, "cidrs[0].name"},
		{"no ranges", []CIDR{{Name: "a"}}, "cidrs[0] (a).cidrs: empty"},
		{"not a CIDR", []CIDR{{Name: "a", CIDRs: []string{"198.18.0.0/24", "nonsense"}}}, `cidrs[0] (a).cidrs[1] "nonsense"`},
		{"host bits", []CIDR{{Name: "a", CIDRs: []string{"198.18.0.1/24"}}}, "did you mean 198.18.0.0/24"},
		{"duplicate name", []CIDR{{Name: "a", CIDRs: []string{"198.18.0.0/24"}}, {Name: "a", CIDRs: []string{"198.18.1.0/24"}}}, "cidrs[1] (a).name: used twice"},
		{"same range twice", []CIDR{{Name: "a", CIDRs: []string{"198.18.0.0/24"}}, {Name: "b", CIDRs: []string{"198.18.0.0/24"}}}, "already belongs to a"},
		{"bad namespace", []CIDR{{Name: "a", Namespace: "Not_OK", CIDRs: []string{"198.18.0.0/24"}}}, `namespace "Not_OK"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newCIDRTable(tt.entries)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
