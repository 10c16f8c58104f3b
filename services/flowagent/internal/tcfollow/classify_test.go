package tcfollow

import (
	"maps"
	"net"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestClassify(t *testing.T) {
	// An EKS node with the VPC CNI: eth0 and a secondary ENI eth1 (default route in its own
	// table), pod veths; a flannel node's flannel.1; Calico's IPIP tunl0 and a WireGuard device
	// (no Ethernet header); Cilium's cilium_vxlan and its host veth pair.
	links := []iface{
		{"lo", 1, "device", "loopback"},
		{"eth0", 2, "device", "ether"},
		{"eth1", 3, "device", "ether"},
		{"eni1a2b3c4d5e6", 4, "veth", "ether"},
		{"flannel.1", 5, "vxlan", "ether"},
		{"cni0", 6, "bridge", "ether"},
		{"tunl0", 7, "ipip", "ipip"},
		{"wg0", 8, "wireguard", "none"},
		{"cilium_vxlan", 9, "vxlan", "ether"},
		{"cilium_host", 10, "veth", "ether"},
		{"kube-ipvs0", 11, "dummy", "ether"},
		{"ens5", 12, "device", "ether"},
	}
	defaults := map[int]bool{2: true, 3: true, 8: true}
	for _, tc := range []struct {
		name    string
		rules   Rules
		want    map[string]Role
		skipped []string
	}{
		{"detected", Rules{}, map[string]Role{
			"eth0": RoleUplink, "eth1": RoleUplink, "flannel.1": RoleOverlay, "cilium_vxlan": RoleOverlay,
		}, []string{"wg0 (wireguard, none)"}},
		{"patterns add", Rules{Patterns: []string{"ens*", "lo"}}, map[string]Role{
			"eth0": RoleUplink, "eth1": RoleUplink, "flannel.1": RoleOverlay, "cilium_vxlan": RoleOverlay, "ens5": RolePattern,
		}, []string{"wg0 (wireguard, none)"}},
		{"a list replaces detection", Rules{Interfaces: []string{"eth1", "tunl0", "missing0"}}, map[string]Role{
			"eth1": RoleListed,
		}, []string{"tunl0 (ipip, ipip)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, skipped := tc.rules.classify(links, defaults)
			got := map[string]Role{}
			for name, tg := range want {
				got[name] = tg.Role
				if tg.Name != name || tg.Index == 0 {
					t.Errorf("target %+v under name %s", tg, name)
				}
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("counted %v, want %v", got, tc.want)
			}
			if !slices.Equal(skipped, tc.skipped) {
				t.Errorf("skipped %v, want %v", skipped, tc.skipped)
			}
		})
	}
}

func TestDefaultRouteDevices(t *testing.T) {
	_, v4default, _ := net.ParseCIDR("0.0.0.0/0")
	_, v6default, _ := net.ParseCIDR("::/0")
	_, podRoute, _ := net.ParseCIDR("198.18.1.2/32")
	routes := []netlink.Route{
		{Type: unix.RTN_UNICAST, LinkIndex: 2, Table: unix.RT_TABLE_MAIN},                // default, no RTA_DST
		{Type: unix.RTN_UNICAST, LinkIndex: 3, Dst: v4default, Table: 2},                 // VPC CNI per-ENI table
		{Type: unix.RTN_UNICAST, LinkIndex: 4, Dst: podRoute, Table: unix.RT_TABLE_MAIN}, // pod veth
		{Type: unix.RTN_UNICAST, Dst: v6default, MultiPath: []*netlink.NexthopInfo{{LinkIndex: 5}, {LinkIndex: 6}}},
		{Type: unix.RTN_BLACKHOLE, Dst: v4default, Table: 9},
		{Type: unix.RTN_UNREACHABLE, LinkIndex: 7, Dst: v6default},
	}
	got := defaultRouteDevices(routes)
	want := map[int]bool{2: true, 3: true, 5: true, 6: true}
	if !maps.Equal(got, want) {
		t.Errorf("default route devices %v, want %v", got, want)
	}
}

func TestRulesValidate(t *testing.T) {
	for _, tc := range []struct {
		rules Rules
		ok    bool
	}{
		{Rules{}, true},
		{Rules{Patterns: []string{"eth*", "ens[0-9]"}}, true},
		{Rules{Patterns: []string{"eth["}}, false},
	} {
		if err := tc.rules.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.rules, err, tc.ok)
		}
	}
}

func TestKeepAttached(t *testing.T) {
	links := []iface{{"eth0", 2, "device", "ether"}, {"eth1", 7, "device", "ether"}, {"eth2", 4, "device", "ether"}}
	attached := map[string]Target{
		"eth0": {"eth0", 2, RoleUplink}, // lost its default route for a moment: kept
		"eth1": {"eth1", 3, RoleUplink}, // recreated under the same name (index 3 → 7): let go
		"eth3": {"eth3", 5, RoleUplink}, // gone: let go
	}
	want := map[string]Target{"eth2": {"eth2", 4, RoleUplink}}
	keepAttached(want, attached, links)
	got := slices.Sorted(maps.Keys(want))
	if !slices.Equal(got, []string{"eth0", "eth2"}) {
		t.Errorf("after keepAttached: %v, want eth0 and eth2", got)
	}
}
