package demo

import (
	"net/netip"
	"slices"
	"testing"
)

// A ruleset as kube-proxy v1.37's nftables mode writes it, as `nft list ruleset` prints it (trimmed): the
// api Service's chains DNAT straight from a map (several endpoints) or to one address (a single endpoint,
// as the IPv6 chain and the db Service here); another Service's chain jumps to endpoint chains (what it
// writes when endpoints need rules of their own).
const sampleRuleset = `table ip kube-proxy {
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 198.19.242.78 . udp . 7070 : goto service-NYN6JPHQ-shop/api/udp/app }
	}

	chain service-NYN6JPHQ-shop/api/udp/app {
		meta l4proto udp dnat ip to numgen random mod 3 map { 0 : 198.18.2.11 . 7070, 1 : 198.18.4.11 . 7070, 2 : 198.18.6.11 . 7070 }
	}

	chain service-ABCDEFGH-shop/web/tcp/http {
		ip daddr 198.19.240.20 tcp dport 80 ip saddr != 198.18.0.0/15 jump mark-for-masquerade
		numgen random mod 2 vmap { 0 : goto endpoint-AAAA1111-shop/web/tcp/http__198.18.9.11/8080, 1 : goto endpoint-BBBB2222-shop/web/tcp/http__198.18.9.12/8080 }
	}

	chain service-QWERTYUI-shop/db/tcp/sql {
		meta l4proto tcp dnat to 198.18.8.11:5432
	}

	chain endpoint-AAAA1111-shop/web/tcp/http__198.18.9.11/8080 {
		ip saddr 198.18.9.11 jump mark-for-masquerade
		meta l4proto tcp dnat to 198.18.9.11:8080
	}
}
table ip6 kube-proxy {
	chain service-NYN6JPHQ-shop/api/udp/app {
		meta l4proto udp dnat to [fd00:1:2::11]:7070
	}

	chain service-ZXCVBNMA-shop/web/tcp/http {
		meta l4proto tcp dnat ip6 to numgen random mod 2 map { 0 : fd00:1:9::11 . 8080, 1 : fd00:1:9::12 . 8080 }
	}
}
`

func TestProgrammedEndpoints(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	for _, tt := range []struct {
		key  string
		ipv6 bool
		want []netip.Addr
	}{
		{"shop/api/udp/app", false, addrs("198.18.2.11", "198.18.4.11", "198.18.6.11")},
		{"shop/api/udp/app", true, addrs("fd00:1:2::11")},
		{"shop/web/tcp/http", false, addrs("198.18.9.11", "198.18.9.12")},
		{"shop/web/tcp/http", true, addrs("fd00:1:9::11", "fd00:1:9::12")},
		{"shop/db/tcp/sql", false, addrs("198.18.8.11")},
		{"shop/db/tcp/sql", true, nil},
		{"shop/other/udp/app", false, nil},
	} {
		if got := ProgrammedEndpoints(sampleRuleset, tt.key, tt.ipv6); !slices.Equal(got, tt.want) {
			t.Errorf("ProgrammedEndpoints(%s, ipv6=%v) = %v, want %v", tt.key, tt.ipv6, got, tt.want)
		}
	}
}
