// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Experiment: the netfilter counter of bpf/c/counter.c with the BPF HASH
// maps replaced by open-addressing tables in one ARRAY map per family.
// Compiled with -DSLOTS_LOG2=n: each side's table has 2^n slots; the array
// holds both sides (side s uses slots [s<<n, (s+1)<<n)).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#ifndef SLOTS_LOG2
#define SLOTS_LOG2 18
#endif
#define SLOTS (1u << SLOTS_LOG2)
#define SLOT_MASK (SLOTS - 1)
#ifndef PROBES
#define PROBES 8
#endif
#ifdef NO_UNROLL
#define LOOP_HINT _Pragma("clang loop unroll(disable)")
#else
#define LOOP_HINT
#endif
#define BPF_F_MMAPABLE (1U << 10)
#define GOLDEN 0x9E3779B97F4A7C15ULL

extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id__k) __ksym;

struct slot4 {
	__u64 key; // src<<32 | dst (network byte order halves); 0 = empty
	__u64 bytes;
	__u64 pkts_segs;
	__u64 wraps;
};

// state: 0 = empty; (hash & ~3) | CLAIMED once a CPU owns the slot; | READY
// once the key is written.
#define CLAIMED 1ULL
#define READY 2ULL
struct slot6 {
	__u64 state;
	__u64 key[4];
	__u64 bytes;
	__u64 pkts_segs;
	__u64 wraps;
};

struct counter_stats {
	__u64 insert_failed_packets;
	__u64 insert_failed_bytes;
	__u64 parse_failed_packets;
};

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
	__be32 addrs[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SLOTS);
#ifndef NO_MMAPABLE
	__uint(map_flags, BPF_F_MMAPABLE);
#endif
	__type(key, __u32);
	__type(value, struct slot4);
} oa4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SLOTS);
#ifndef NO_MMAPABLE
	__uint(map_flags, BPF_F_MMAPABLE);
#endif
	__type(key, __u32);
	__type(value, struct slot6);
} oa6 SEC(".maps");

// Updated from user space only to wait for an RCU grace period.
struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gp_a SEC(".maps"), gp_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct inner);
} gp SEC(".maps") = {
	.values = { [0] = &gp_a },
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active_idx SEC(".maps");

#define GENERATION_PLACEHOLDER 0x2a5a5447

static __always_inline void count_failure(__u64 bytes)
{
	__u32 zero = 0;
	struct counter_stats *s = bpf_map_lookup_elem(&stats, &zero);

	if (!s)
		return;
	s->insert_failed_packets++;
	s->insert_failed_bytes += bytes;
}

static __always_inline int owned_side(void)
{
	__u32 zero = 0;
	__u32 *v = bpf_map_lookup_elem(&active_idx, &zero);
	__u32 cur;

	if (!v)
		return -1;
	cur = *v;
	__u32 gen;
	asm volatile("%0 = %1" : "=r"(gen) : "i"(GENERATION_PLACEHOLDER));
	if ((cur >> 1) != gen)
		return -1;
	return cur & 1;
}

#define PKT_ONE 1ULL
#define SEG_ONE (1ULL << 32)

// Same as counter.c's add_value with fetch; v points at bytes, pkts_segs,
// wraps in that order.
static __always_inline void add_value(__u64 *bytes_p, __u64 *ps_p, __u64 *wraps_p, __u64 bytes, __u64 segs)
{
	__u64 d = segs * SEG_ONE + PKT_ONE;

#ifdef PLAIN_ADDS
	// Diagnostic only: not exact under concurrency.
	*bytes_p += bytes;
	__u64 old = *ps_p;
	*ps_p = old + d;
#else
	__sync_fetch_and_add(bytes_p, bytes);
	__u64 old = __sync_fetch_and_add(ps_p, d);
#endif

	if ((__u32)old == 0xffffffff)
		__sync_fetch_and_add(wraps_p, PKT_ONE);
	if (old + d < old)
		__sync_fetch_and_add(wraps_p, SEG_ONE);
}

static __always_inline __attribute__((unused)) void add4(__u32 side, __u64 key, __u64 bytes, __u64 segs)
{
	__u32 h = (key * GOLDEN) >> (64 - SLOTS_LOG2);
	__u32 base = side << SLOTS_LOG2;

	LOOP_HINT
	for (__u32 i = 0; i < PROBES; i++) {
		__u32 idx = base + ((h + i) & SLOT_MASK);
		struct slot4 *s = bpf_map_lookup_elem(&oa4, &idx);

		if (!s)
			break;
		__u64 k = s->key;

		if (k == 0) {
			k = __sync_val_compare_and_swap(&s->key, 0, key);
			if (k == 0)
				k = key; // ours
		}
		if (k == key) {
			add_value(&s->bytes, &s->pkts_segs, &s->wraps, bytes, segs);
			return;
		}
	}
	count_failure(bytes);
}

static __always_inline int key6_eq(struct slot6 *s, __u64 *key)
{
	return s->key[0] == key[0] && s->key[1] == key[1] && s->key[2] == key[2] && s->key[3] == key[3];
}

static __always_inline __attribute__((unused)) void add6(__u32 side, __u64 *key, __u64 bytes, __u64 segs)
{
	__u64 hash = key[0] * GOLDEN + key[1] * 0xC2B2AE3D27D4EB4FULL + key[2] * 0x165667B19E3779F9ULL +
		     key[3] * 0xD6E8FEB86659FD93ULL;
	__u32 h = hash >> (64 - SLOTS_LOG2);
	__u64 tag = (hash & ~3ULL) | CLAIMED;
	__u32 base = side << SLOTS_LOG2;

	LOOP_HINT
	for (__u32 i = 0; i < PROBES; i++) {
		__u32 idx = base + ((h + i) & SLOT_MASK);
		struct slot6 *s = bpf_map_lookup_elem(&oa6, &idx);

		if (!s)
			break;
		__u64 st = s->state;

		if (st == 0) {
			st = __sync_val_compare_and_swap(&s->state, 0, tag);
			if (st == 0) {
				s->key[0] = key[0];
				s->key[1] = key[1];
				s->key[2] = key[2];
				s->key[3] = key[3];
				// Fetch form: fully ordered on every JIT, so the key
				// stores are visible before READY.
				if (__sync_fetch_and_or(&s->state, READY) & READY)
					count_failure(0); // cannot happen
				add_value(&s->bytes, &s->pkts_segs, &s->wraps, bytes, segs);
				return;
			}
		}
		// Claimed but not ready: move on (a second slot for the flow is
		// allowed; the drain adds them up).
		if (st == (tag | READY) && key6_eq(s, key)) {
			add_value(&s->bytes, &s->pkts_segs, &s->wraps, bytes, segs);
			return;
		}
	}
	count_failure(bytes);
}

SEC("netfilter")
int count_oa(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	__u8 pf = ctx->state->pf;
	unsigned char *nh = skb->head + skb->network_header;

	if (pf != NFPROTO_IPV4 && pf != NFPROTO_IPV6)
		return NF_ACCEPT;
	int side = owned_side();

	if (side < 0)
		return NF_ACCEPT;

	struct skb_shared_info *shinfo = bpf_rdonly_cast(skb->head + skb->end,
							 bpf_core_type_id_kernel(struct skb_shared_info));
	__u16 segs = shinfo->gso_segs;
	__u64 len = skb->len;

	if (pf == NFPROTO_IPV4) {
		struct ip4_hdr *ip = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct iphdr));
		__u64 key = (__u64)ip->saddr << 32 | ip->daddr;

#ifdef PARSE_ONLY
		asm volatile("" ::"r"(key), "r"(len), "r"(segs), "r"(side));
#else
		add4(side, key, len, segs ? segs : 1);
#endif
		return NF_ACCEPT;
	}

	struct ip6_hdr32 *ip = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct ipv6hdr));
	__u64 key[4];
	__u32 *k = (__u32 *)key;

	for (int i = 0; i < 8; i++)
		k[i] = ip->addrs[i];
#ifdef PARSE_ONLY
	asm volatile("" ::"r"(key[0]), "r"(key[1]), "r"(key[2]), "r"(key[3]), "r"(len), "r"(segs), "r"(side));
#else
	add6(side, key, len, segs ? segs : 1);
#endif
	return NF_ACCEPT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
