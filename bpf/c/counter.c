// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Byte counter per (source, destination) address pair. Two attach points feed
// the same maps:
//   - count_nf: netfilter NF_INET_POST_ROUTING, IPv4 and IPv6 (kernel >= 6.4);
//     bytes are skb->len = layer-3 bytes including IP headers.
//   - count_tc: tcx ingress on the host side of a pod veth (fallback); the
//     frame starts with a 14-byte Ethernet header, which is not counted.
//
// The Go side (bpf/counter) drains without losing updates by switching the
// single slot of `active` between flows_a and flows_b, then reading and
// deleting the map that is no longer active.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

// bpftool 7.1 does not emit kfunc prototypes into vmlinux.h.
extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *ptr, __u32 offset,
			      void *buffer__opt, __u32 buffer__szk) __ksym;

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
	__u64 parse_failed_packets; // header unreadable (truncated skb)
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

struct ip6_hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
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

// Reads the IP header at off and fills key. Returns 0 on success.
static __always_inline int read_key(struct bpf_dynptr *ptr, __u32 off, int v6,
				    struct flow_key *key)
{
	if (!v6) {
		struct ip4_hdr buf;
		struct ip4_hdr *ip = bpf_dynptr_slice(ptr, off, &buf, sizeof(buf));

		if (!ip)
			return -1;
		key->src[10] = 0xff;
		key->src[11] = 0xff;
		key->dst[10] = 0xff;
		key->dst[11] = 0xff;
		__builtin_memcpy(&key->src[12], &ip->saddr, 4);
		__builtin_memcpy(&key->dst[12], &ip->daddr, 4);
		return 0;
	}
	struct ip6_hdr buf;
	struct ip6_hdr *ip = bpf_dynptr_slice(ptr, off, &buf, sizeof(buf));

	if (!ip)
		return -1;
	__builtin_memcpy(key->src, ip->saddr, 16);
	__builtin_memcpy(key->dst, ip->daddr, 16);
	return 0;
}

// Adds one skb to its flow. Lookup first because almost every packet hits an
// existing flow; on a miss insert zero with NOEXIST and look up again, so two
// CPUs racing on a new flow both add to the same entry and none is lost.
static __always_inline void add(struct flow_key *key, __u64 bytes, __u64 segs)
{
	__u32 zero = 0;
	void *flows = bpf_map_lookup_elem(&active, &zero);

	if (!flows)
		return;
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

SEC("netfilter")
int count_nf(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct flow_key key = {};
	struct bpf_dynptr ptr;
	__u8 pf = ctx->state->pf;

	if (pf != NFPROTO_IPV4 && pf != NFPROTO_IPV6)
		return NF_ACCEPT;
	// Cast only in the kfunc call: reading __sk_buff fields through this
	// pointer is rejected; fields come from the BTF-typed struct sk_buff.
	if (bpf_dynptr_from_skb((struct __sk_buff *)skb, 0, &ptr) ||
	    read_key(&ptr, 0, pf == NFPROTO_IPV6, &key)) {
		count_failure(0, 1);
		return NF_ACCEPT;
	}

	// skb_shinfo(skb) = skb->head + skb->end; gso_segs is 0 for a non-GSO skb.
	struct skb_shared_info *shinfo = (void *)(skb->head + skb->end);
	__u16 segs = BPF_CORE_READ(shinfo, gso_segs);

	add(&key, skb->len, segs ? segs : 1);
	return NF_ACCEPT;
}

// Uses bpf_skb_load_bytes rather than dynptrs so the fallback also loads on
// kernels older than the netfilter program type.
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
