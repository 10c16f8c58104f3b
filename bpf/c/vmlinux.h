/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Minimal kernel type header for zonetoll's BPF programs.
 *
 * Hand-written instead of a full `bpftool btf dump` (2.8 MB) because the
 * programs need only a handful of types. Kernel-internal structs carry
 * preserve_access_index, so clang emits CO-RE relocations and the loader
 * fixes field offsets against the running kernel's BTF: only the fields
 * named here have to exist, their offsets may differ. UAPI types (__sk_buff,
 * map and action constants) are stable ABI and copied from linux/bpf.h.
 *
 * To regenerate or extend: find the definition in
 *   bpftool btf dump file /sys/kernel/btf/vmlinux format c
 * copy only the fields used, and keep the attribute on kernel structs.
 */
#ifndef __ZONETOLL_VMLINUX_H__
#define __ZONETOLL_VMLINUX_H__

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;

/* UAPI: enum bpf_map_type (subset) */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
};

/* UAPI: map update flags */
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

/* UAPI: netfilter verdicts, families and hooks */
#define NF_DROP 0
#define NF_ACCEPT 1
#define NFPROTO_IPV4 2
#define NFPROTO_IPV6 10

/* UAPI: tcx return codes */
#define TCX_NEXT -1

#define __bpf_md_ptr(type, name) \
	union {                  \
		type name;       \
		__u64 : 64;      \
	} __attribute__((aligned(8)))

/* UAPI: context of tc/tcx programs (linux/bpf.h). */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	__bpf_md_ptr(struct bpf_flow_keys *, flow_keys);
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	__bpf_md_ptr(struct bpf_sock *, sk);
	__u32 gso_size;
	__u8 tstamp_type;
	__u32 : 24;
	__u64 hwtstamp;
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct sk_buff {
	unsigned int len;
	__u16 inner_transport_header;
	__u16 transport_header;
	__u16 network_header;
	unsigned int tail; /* sk_buff_data_t: an offset from head on 64-bit */
	unsigned int end;
	unsigned char *head;
};

struct skb_shared_info {
	unsigned short gso_size;
	unsigned short gso_segs;
	unsigned int gso_type;
};

/* SKB_GSO_* (include/linux/skbuff.h): an anonymous enum, so no CO-RE
 * relocation; these bits have kept their values since 5.6 (FRAGLIST, the
 * newest used here, was added then; checked against 6.18's BTF). */
#define SKB_GSO_TCPV4 (1 << 0)
#define SKB_GSO_DODGY (1 << 1)
#define SKB_GSO_TCPV6 (1 << 4)
#define SKB_GSO_GRE (1 << 6)
#define SKB_GSO_GRE_CSUM (1 << 7)
#define SKB_GSO_IPXIP4 (1 << 8)
#define SKB_GSO_IPXIP6 (1 << 9)
#define SKB_GSO_UDP_TUNNEL (1 << 10)
#define SKB_GSO_UDP_TUNNEL_CSUM (1 << 11)
#define SKB_GSO_UDP_L4 (1 << 17)

/* Only named for bpf_core_type_id_kernel(); headers are read by offset. */
struct iphdr {
	__u8 ihl_version;
};

struct ipv6hdr {
	__u8 priority_version;
};

struct tcphdr {
	__be16 source;
};

struct nf_hook_state {
	u8 hook;
	u8 pf;
};

struct bpf_nf_ctx {
	const struct nf_hook_state *state;
	struct sk_buff *skb;
};

#pragma clang attribute pop

#endif /* __ZONETOLL_VMLINUX_H__ */
