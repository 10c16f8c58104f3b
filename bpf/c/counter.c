// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Byte counter per (source, destination) address pair. Two attach points feed
// the same maps:
//   - count_nf: netfilter NF_INET_POST_ROUTING, IPv4 and IPv6 (kernel >= 6.4);
//     bytes are skb->len = layer-3 bytes including IP headers.
//   - count_tc: tcx ingress on the host side of a pod veth (fallback); the
//     frame starts with a 14-byte Ethernet header, which is not counted.
//
// The Go side (bpf/counter) drains without losing updates by switching
// active_idx between flows_a and flows_b, waiting an RCU grace period (by
// updating the map-in-map `active`, which makes the kernel wait for one), then
// reading and deleting the map that is no longer written.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

// kfunc (6.2+); bpftool 7.1 and libbpf 1.1 do not declare it.
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id__k) __ksym;

// Addresses are 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so one
// key type serves both families and matches the report wire format.
struct flow_key {
	__u8 src[16];
	__u8 dst[16];
};

struct flow_value {
	__u64 bytes;
	__u64 packets;
	__u64 segments; // wire segments: gso_segs of a GSO skb, else 1
};

// Counters of packets the program saw but could not attribute to a flow.
// Per-CPU so the hot path never contends on them; the Go side sums them.
struct counter_stats {
	__u64 insert_failed_packets; // flow map full: packet not counted
	__u64 insert_failed_bytes;
	__u64 parse_failed_packets; // tc only: IP header unreadable (truncated frame)
};

// Wire layouts; no CO-RE needed.
struct ip4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ip6_hdr32 {
	__be32 ver_tc_flow;
	__be32 len_next_hop;
	__be32 addrs[8]; // source then destination
};

// max_entries of the flow maps is a placeholder: the loader sets it from
// config before loading.
struct flows {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows_a SEC(".maps"), flows_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct flows);
} active SEC(".maps") = {
	.values = { [0] = &flows_a },
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter_stats);
} stats SEC(".maps");

static __always_inline void count_failure(__u64 bytes, int parse)
{
	__u32 zero = 0;
	struct counter_stats *s = bpf_map_lookup_elem(&stats, &zero);

	if (!s)
		return;
	// Per-CPU slot and programs run with preemption/migration disabled:
	// plain increments are enough.
	if (parse) {
		s->parse_failed_packets++;
		return;
	}
	s->insert_failed_packets++;
	s->insert_failed_bytes += bytes;
}

// Which flow map the programs write: 0 = flows_a, 1 = flows_b. Set by the Go
// side, which then waits an RCU grace period before it drains the other map.
// A global instead of a lookup in `active`: a map known at load time lets
// the verifier inline the hash lookup, which a map-in-map lookup prevents.
volatile __u32 active_idx;

// Adds one skb to its flow. Lookup first because almost every packet hits an
// existing flow; on a miss insert zero with NOEXIST and look up again, so two
// CPUs racing on a new flow both add to the same entry and none is lost.
static __always_inline void add_to(void *flows, struct flow_key *key, __u64 bytes, __u64 segs)
{
	struct flow_value *v = bpf_map_lookup_elem(flows, key);

	if (!v) {
		struct flow_value init = {};

		bpf_map_update_elem(flows, key, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(flows, key);
		if (!v) {
			count_failure(bytes, 0);
			return;
		}
	}
	__sync_fetch_and_add(&v->bytes, bytes);
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->segments, segs);
}

static __always_inline void add(struct flow_key *key, __u64 bytes, __u64 segs)
{
	// Two call sites, one map each, so each lookup stays inlinable.
	if (active_idx)
		add_to(&flows_b, key, bytes, segs);
	else
		add_to(&flows_a, key, bytes, segs);
}

SEC("netfilter")
int count_nf(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct flow_key key;
	__u8 pf = ctx->state->pf;
	// At POST_ROUTING the IP header is in the linear part of the skb, at
	// head + network_header. bpf_rdonly_cast turns that address into a
	// read-only kernel pointer whose loads the JIT emits as plain loads with a
	// fault handler: far cheaper than the dynptr kfuncs or a probe-read
	// helper call, and the packet is never written.
	unsigned char *nh = skb->head + skb->network_header;

	if (pf == NFPROTO_IPV4) {
		struct ip4_hdr *ip = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct iphdr));

		__builtin_memset(&key, 0, sizeof(key));
		key.src[10] = 0xff;
		key.src[11] = 0xff;
		key.dst[10] = 0xff;
		key.dst[11] = 0xff;
		*(__u32 *)&key.src[12] = ip->saddr;
		*(__u32 *)&key.dst[12] = ip->daddr;
	} else if (pf == NFPROTO_IPV6) {
		struct ip6_hdr32 *ip = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct ipv6hdr));
		__u32 *k = (__u32 *)&key;

		// 4-byte loads: the verifier checks each against the u32 array
		// member of struct in6_addr.
		for (int i = 0; i < 8; i++)
			k[i] = ip->addrs[i];
	} else {
		return NF_ACCEPT;
	}

	// skb_shinfo(skb) = skb->head + skb->end; gso_segs is 0 for a non-GSO skb.
	struct skb_shared_info *shinfo = bpf_rdonly_cast(skb->head + skb->end,
							 bpf_core_type_id_kernel(struct skb_shared_info));
	__u16 segs = shinfo->gso_segs;

	add(&key, skb->len, segs ? segs : 1);
	return NF_ACCEPT;
}

// Uses only bpf_skb_load_bytes and context fields, so this fallback also
// loads on kernels older than the kfuncs the netfilter program uses.
SEC("tcx/ingress")
int count_tc(struct __sk_buff *skb)
{
	struct flow_key key = {};
	__u32 proto = skb->protocol;

	if (proto == bpf_htons(ETH_P_IP)) {
		__be32 addrs[2];

		if (bpf_skb_load_bytes(skb, ETH_HLEN + 12, addrs, sizeof(addrs))) {
			count_failure(0, 1);
			return TCX_NEXT;
		}
		key.src[10] = 0xff;
		key.src[11] = 0xff;
		key.dst[10] = 0xff;
		key.dst[11] = 0xff;
		__builtin_memcpy(&key.src[12], &addrs[0], 4);
		__builtin_memcpy(&key.dst[12], &addrs[1], 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, &key, sizeof(key))) {
			count_failure(0, 1);
			return TCX_NEXT;
		}
	} else {
		// ARP and other non-IP frames are not traffic we price.
		return TCX_NEXT;
	}

	__u32 segs = skb->gso_segs;

	add(&key, skb->len - ETH_HLEN, segs ? segs : 1);
	return TCX_NEXT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
