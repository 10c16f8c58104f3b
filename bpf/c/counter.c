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
// active_idx between the _a and _b maps (one pair per address family),
// waiting an RCU grace period (by updating the map-in-map `active`, which
// makes the kernel wait for one), then reading and deleting the maps that are
// no longer written.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

// kfunc (6.2+); bpftool 7.1 and libbpf 1.1 do not declare it.
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id__k) __ksym;

// IPv6 flows: 16-byte addresses.
struct flow_key6 {
	__u8 src[16];
	__u8 dst[16];
};

// IPv4 flows have maps of their own with an 8-byte key: the hash and the
// key compare in the lookup cost per key byte, and 8 bytes instead of 32 is
// most of what a packet costs above an empty hook. The Go side returns them
// IPv4-mapped (::ffff:a.b.c.d), the report wire format.
struct flow_key4 {
	__be32 src;
	__be32 dst;
};

// Packets and segments share one counter, updated by one atomic add per
// packet: packets in the low 32 bits, segments in the high 32 bits. The
// program adds with fetch, so it sees exactly when a half wraps and records
// it in wraps (low 32 bits: carries of packets into segments; high 32 bits:
// carries out of segments). The Go side decodes all three exactly, whatever
// the rate; wraps itself cannot overflow before 2^64 packets.
struct flow_value {
	__u64 bytes;
	__u64 pkts_segs;
	__u64 wraps;
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
struct flows6 {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct flow_key6);
	__type(value, struct flow_value);
} flows6_a SEC(".maps"), flows6_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct flow_key4);
	__type(value, struct flow_value);
} flows4_a SEC(".maps"), flows4_b SEC(".maps");

// Holds the IPv6 map being written; updated only so the kernel waits a grace
// period (one wait covers both families: they switch on the same index).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct flows6);
} active SEC(".maps") = {
	.values = { [0] = &flows6_a },
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

// Which flow maps the programs write, and which program writes them. The
// value is (generation << 1) | side: side 0 = flows*_a, 1 = flows*_b; the
// Go side flips it and then waits an RCU grace period before it drains the
// other side. generation says which loaded copy of the program counts: an
// agent restarted with a different program attaches it next to the running
// one (both see every packet) and hands over by writing its generation in
// the same update that switches sides, so no packet is counted by both for
// longer than that one store (see docs/bpf.md, "Pinning, restarts and upgrades").
// An index instead of a lookup in `active`: a map known at load time lets
// the verifier inline the hash lookup, which a map-in-map lookup prevents.
// A one-entry array rather than a global: libbpf-style .bss is mmapable and
// so lives in vmalloc memory, a page of its own whose TLB entry is cold when
// a packet arrives after a system call; a small array sits in the kernel's
// direct map like the skb.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active_idx SEC(".maps");

// This program's generation: a placeholder immediate the loader patches
// (counter.patchGeneration) before loading. An immediate rather than a
// .rodata constant for the same reason as above: a read-only global is a
// load from another vmalloc page on every packet.
#define GENERATION_PLACEHOLDER 0x2a5a5447

// Returns the side to write, or -1 while another program's generation owns
// the maps.
static __always_inline int owned_side(void)
{
	__u32 zero = 0;
	__u32 *v = bpf_map_lookup_elem(&active_idx, &zero);
	__u32 cur;

	if (!v)
		return -1;
	cur = *v;
	// The placeholder goes through an asm move so clang keeps it as one
	// 32-bit immediate the loader can find, instead of folding it into the
	// comparison in some other form.
	__u32 gen;
	asm volatile("%0 = %1" : "=r"(gen) : "i"(GENERATION_PLACEHOLDER));
	if ((cur >> 1) != gen)
		return -1;
	return cur & 1;
}

#define PKT_ONE 1ULL
#define SEG_ONE (1ULL << 32)

// Adds one skb to v. With fetch (netfilter: its 6.4+ kernels have atomic
// fetch, 5.12+) the old value shows whether this add carried out of a half;
// exactly one adder sees each carry, so wraps is exact under concurrency. The tc fallback must load on 5.10 kernels, which lack atomic
// fetch: it adds without, and is exact while one pair sends fewer than 2^32
// skbs and segments per drain interval (see docs/bpf.md).
static __always_inline void add_value(struct flow_value *v, __u64 bytes, __u64 segs, int fetch)
{
	__u64 d = segs * SEG_ONE + PKT_ONE;

	__sync_fetch_and_add(&v->bytes, bytes);
	if (!fetch) {
		__sync_fetch_and_add(&v->pkts_segs, d);
		return;
	}
	__u64 old = __sync_fetch_and_add(&v->pkts_segs, d);

	if ((__u32)old == 0xffffffff)
		__sync_fetch_and_add(&v->wraps, PKT_ONE);
	if (old + d < old)
		__sync_fetch_and_add(&v->wraps, SEG_ONE);
}

// Adds one skb to its flow. Lookup first because almost every packet hits an
// existing flow; on a miss insert zero with NOEXIST and look up again, so two
// CPUs racing on a new flow both add to the same entry and none is lost.
static __always_inline void add_to(void *flows, void *key, __u64 bytes, __u64 segs, int fetch)
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
	add_value(v, bytes, segs, fetch);
}

// One call site per map, so each lookup stays inlinable.
static __always_inline void add4(int side, struct flow_key4 *key, __u64 bytes, __u64 segs, int fetch)
{
	if (side)
		add_to(&flows4_b, key, bytes, segs, fetch);
	else
		add_to(&flows4_a, key, bytes, segs, fetch);
}

static __always_inline void add6(int side, struct flow_key6 *key, __u64 bytes, __u64 segs, int fetch)
{
	if (side)
		add_to(&flows6_b, key, bytes, segs, fetch);
	else
		add_to(&flows6_a, key, bytes, segs, fetch);
}

// Bytes on the wire of a GSO skb (TSO, BIG TCP, UDP GSO, GRO'd forwarded
// traffic): one skb that leaves as gso_segs packets. skb->len holds the
// headers once; every further segment carries its own copy of the L3 and L4
// headers (and, for a tunnel, of the outer and inner ones), so the wire length
// is skb->len + (gso_segs - 1) * per-segment header length. This is what the
// kernel charges qdiscs (qdisc_pkt_len_init() in net/core/dev.c, there with
// the MAC header): header length = transport header offset + TCP header
// length (doff) for SKB_GSO_TCPV4/TCPV6, + 8 for SKB_GSO_UDP_L4. Unlike the
// qdisc's figure, an encapsulated skb (VXLAN, Geneve, GRE, IPIP with inner
// TSO) is measured up to its inner transport header, which each segment
// repeats with all the headers before it.
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

struct tcp_doff {
	__u8 pad[12];
	__u8 doff_res; // doff in the high nibble, in 4-byte words
};

#define SKB_GSO_TUNNEL_MASK                                                            \
	(SKB_GSO_GRE | SKB_GSO_GRE_CSUM | SKB_GSO_IPXIP4 | SKB_GSO_IPXIP6 | SKB_GSO_UDP_TUNNEL | \
	 SKB_GSO_UDP_TUNNEL_CSUM)

static __always_inline __u32 nf_gso_hdr_len(struct sk_buff *skb, struct skb_shared_info *shinfo)
{
	__u32 type = shinfo->gso_type;
	__u32 nh = skb->network_header;
	__u32 th = (type & SKB_GSO_TUNNEL_MASK) ? skb->inner_transport_header : skb->transport_header;
	__u32 hdr;

	// 0xffff: transport header not set (the qdisc adds nothing then either).
	if (th == 0xffff || th <= nh)
		return 0;
	hdr = th - nh;
	if (type & (SKB_GSO_TCPV4 | SKB_GSO_TCPV6)) {
		// GSO skbs have their headers in the linear part; if this one did
		// not, the load would read the tailroom, so take the minimum.
		if (th + sizeof(struct tcp_doff) > skb->tail)
			return hdr + 20;
		struct tcp_doff *t = bpf_rdonly_cast(skb->head + th, bpf_core_type_id_kernel(struct tcphdr));

		return hdr + (t->doff_res >> 4) * 4;
	}
	if (type & SKB_GSO_UDP_L4)
		return hdr + 8;
	return hdr;
}

// IPv6 BIG TCP (skbs past 64 KiB) on kernels that mark them with a
// hop-by-hop header holding a jumbo payload option (5.19 on): the 8 bytes are
// in skb->len and before the transport header, but segmentation
// (ipv6_gso_segment) and drivers remove them, so no wire packet carries them.
// Returns 8 for such an skb, as ipv6_has_hopopt_jumbo() decides, else 0.
#define GRO_LEGACY_MAX_SIZE 65536
#define NEXTHDR_HOP 0
#define IPV6_TLV_JUMBO 0xc2

struct jumbo_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
	__u8 tlv_type;
};

struct ip6_nexthdr {
	__u8 pad[6];
	__u8 nexthdr;
};

static __always_inline __u32 nf_jumbo_len(struct sk_buff *skb, unsigned char *nh)
{
	if (skb->len <= GRO_LEGACY_MAX_SIZE || skb->network_header + 40 + sizeof(struct jumbo_hdr) > skb->tail)
		return 0;
	struct ip6_nexthdr *ip = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct ipv6hdr));

	if (ip->nexthdr != NEXTHDR_HOP)
		return 0;
	// Any 20-byte kernel type will do for the cast: only its size is checked.
	struct jumbo_hdr *j = bpf_rdonly_cast(nh + 40, bpf_core_type_id_kernel(struct tcphdr));

	if (j->tlv_type != IPV6_TLV_JUMBO || j->hdrlen != 0 || j->nexthdr != IPPROTO_TCP)
		return 0;
	return 8;
}

// The same for tc, which has no skb fields but __sk_buff's and reads the
// headers with bpf_skb_load_bytes (5.10 has neither kfuncs nor BTF casts). It
// has no gso_type either, so it goes by the IP protocol: TCP adds its doff,
// UDP 8 (UDP GSO; the old UFO, which fragments instead, exists only for
// virtio guests), anything else its IP header alone. IPv6 extension headers
// (hop-by-hop, routing, destination options) are walked, at most four.
// Tunnels are not looked into (see docs/bpf.md).
static __always_inline __u32 tc_gso_hdr_len(struct __sk_buff *skb, int v6, __u32 *jumbo)
{
	__u8 b[10];
	__u32 off, proto;

	*jumbo = 0;

	if (!v6) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, b, 10))
			return 0;
		off = ETH_HLEN + (b[0] & 0xf) * 4;
		proto = b[9];
	} else {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, b, 8))
			return 0;
		off = ETH_HLEN + 40;
		proto = b[6];
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (proto != 0 && proto != 43 && proto != 60)
				break;
			if (bpf_skb_load_bytes(skb, off, b, 3))
				return 0;
			// A BIG TCP jumbo header (see nf_jumbo_len) is not on the wire.
			if (i == 0 && proto == NEXTHDR_HOP && skb->len - ETH_HLEN > GRO_LEGACY_MAX_SIZE &&
			    b[2] == IPV6_TLV_JUMBO && b[1] == 0 && b[0] == IPPROTO_TCP)
				*jumbo = 8;
			proto = b[0];
			off += (b[1] + 1) * 8;
		}
	}
	off -= *jumbo;
	if (proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, off + *jumbo + 12, b, 1))
			return off - ETH_HLEN + 20;
		return off - ETH_HLEN + (b[0] >> 4) * 4;
	}
	if (proto == IPPROTO_UDP)
		return off - ETH_HLEN + 8;
	return off - ETH_HLEN;
}

SEC("netfilter")
int count_nf(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	__u8 pf = ctx->state->pf;
	// At POST_ROUTING the IP header is in the linear part of the skb, at
	// head + network_header. bpf_rdonly_cast turns that address into a
	// read-only kernel pointer whose loads the JIT emits as plain loads with a
	// fault handler: far cheaper than the dynptr kfuncs or a probe-read
	// helper call, and the packet is never written.
	unsigned char *nh = skb->head + skb->network_header;

	if (pf != NFPROTO_IPV4 && pf != NFPROTO_IPV6)
		return NF_ACCEPT;
	int side = owned_side();

	if (side < 0)
		return NF_ACCEPT;

	// skb_shinfo(skb) = skb->head + skb->end; gso_segs is 0 for a non-GSO skb.
	struct skb_shared_info *shinfo = bpf_rdonly_cast(skb->head + skb->end,
							 bpf_core_type_id_kernel(struct skb_shared_info));
	__u16 segs = shinfo->gso_segs;
	__u64 len = skb->len;

	if (pf == NFPROTO_IPV4) {
		struct ip4_hdr *ip = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct iphdr));
		struct flow_key4 key = { .src = ip->saddr, .dst = ip->daddr };

		// Only GSO skbs pay for the header arithmetic; one compare for the rest.
		if (segs > 1)
			len += (__u64)(segs - 1) * nf_gso_hdr_len(skb, shinfo);
		add4(side, &key, len, segs ? segs : 1, 1);
		return NF_ACCEPT;
	}

	struct ip6_hdr32 *ip = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct ipv6hdr));
	struct flow_key6 key;
	__u32 *k = (__u32 *)&key;

	// 4-byte loads: the verifier checks each against the u32 array member of
	// struct in6_addr.
	for (int i = 0; i < 8; i++)
		k[i] = ip->addrs[i];
	if (segs > 1) {
		__u32 hdr = nf_gso_hdr_len(skb, shinfo);
		// A jumbo header lies before the transport header: hdr > 8 then.
		__u32 jumbo = hdr ? nf_jumbo_len(skb, nh) : 0;

		len += (__u64)(segs - 1) * (hdr - jumbo) - jumbo;
	}
	add6(side, &key, len, segs ? segs : 1, 1);
	return NF_ACCEPT;
}

// Uses only bpf_skb_load_bytes and context fields, so this fallback also
// loads on kernels older than the kfuncs the netfilter program uses.
SEC("tcx/ingress")
int count_tc(struct __sk_buff *skb)
{
	__u32 proto = skb->protocol;
	__u32 segs = skb->gso_segs;
	__u64 len = skb->len - ETH_HLEN;

	int side = owned_side();

	if (side < 0)
		return TCX_NEXT;
	if (segs == 0)
		segs = 1;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct flow_key4 key;

		if (bpf_skb_load_bytes(skb, ETH_HLEN + 12, &key, sizeof(key))) {
			count_failure(0, 1);
			return TCX_NEXT;
		}
		if (segs > 1) {
			__u32 jumbo;

			len += (__u64)(segs - 1) * tc_gso_hdr_len(skb, 0, &jumbo);
		}
		add4(side, &key, len, segs, 0);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct flow_key6 key;

		if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, &key, sizeof(key))) {
			count_failure(0, 1);
			return TCX_NEXT;
		}
		if (segs > 1) {
			__u32 jumbo;
			__u32 hdr = tc_gso_hdr_len(skb, 1, &jumbo);

			len += (__u64)(segs - 1) * hdr - jumbo;
		}
		add6(side, &key, len, segs, 0);
	}
	// ARP and other non-IP frames are not traffic we price.
	return TCX_NEXT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
