// SPDX-License-Identifier: MIT OR GPL-2.0
//
// The TURN relay's kernel fast path: ChannelData <-> UDP for bound channels,
// at XDP, for the std adapter of turn-core (feature `xdp`).
//
// Userspace (the TURN server in turn-core) stays the single source of truth: it
// installs a route per channel it has bound, for UDP clients, with the moment the
// route stops (the earliest of the channel's, its permission's and its relayed
// address's expiry, on CLOCK_MONOTONIC), and removes it when the allocation or the
// channel goes. This program only relays what a route says, until then:
//
//   client -> listener, ChannelData on a routed channel whose length field is
//     exactly the datagram's payload    => UDP from the relay address to the peer
//   peer -> relay address, from the routed peer address
//                                        => ChannelData from the listener to the client
//
// in both families and across them (an IPv6 client relaying to an IPv4 peer),
// rewriting the IP and UDP headers and fixing the checksums incrementally, and sends
// it with XDP_TX (same interface) or XDP_REDIRECT (another one) the way the
// destination's own routed packets came in (or, before any did, where the FIB
// says, when the host forwards: its answer kept for a second, so a peer that
// never speaks costs a FIB lookup a second, not one a packet).
// Anything else, or anything it is unsure of (IP options, fragments, extension
// headers, VLAN tags, padding, a lying length, an expired route, no way to the
// destination yet, a frame too large for the egress MTU, a missing UDP checksum
// it would need),
// goes to userspace unchanged, where the TURN server decides.
//
// Built from this source by turn-core's build script (clang -target bpf); the
// object is never committed.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define AF_INET6 10
#define CD_HEADER 4

/* A client's ChannelData arriving at a listener. */
struct to_peer_key {
	__u8 client[16];
	__u8 server[16];
	__be16 client_port;
	__be16 server_port;
	__be16 channel;
	__u8 family; /* 4 or 6: of the client side */
	__u8 pad;
};

/* A peer's datagram arriving at a relay address. */
struct from_peer_key {
	__u8 peer[16];
	__u8 relay[16];
	__be16 peer_port;
	__be16 relay_port;
	__u8 family; /* of the peer side */
	__u8 pad[3];
};

/* Where a routed packet goes, until when, and what it has carried. */
struct route {
	__u8 src[16]; /* the address it leaves from: the relay's or the listener's */
	__u8 dst[16]; /* the peer's or the client's */
	__be16 src_port;
	__be16 dst_port;
	__be16 channel; /* from_peer: the channel to wrap in */
	__u8 family;    /* of src and dst */
	__u8 pad;
	__u64 until_ns; /* CLOCK_MONOTONIC */
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct to_peer_key);
	__type(value, struct route);
} to_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct from_peer_key);
	__type(value, struct route);
} from_peer SEC(".maps");

/* The link-layer way back to a client or a peer: learned from its own routed
 * packets (the interface they came in on, and the frame's addresses swapped), so
 * the fast path needs no IP forwarding. A frame teaches only what the host's own
 * routing agrees with (the FIB, looked up as for an outgoing packet, sends the
 * answer out of the interface the frame came in on, to the MAC it came from);
 * where the FIB cannot answer (no forwarding on the interface), only the first
 * way learned is kept. Either way a spoofed frame from another interface or
 * neighbour re-points nothing. */
struct neigh_key {
	__u8 ip[16];
	__u8 family;
	__u8 pad[3];
};

struct neigh {
	__u32 ifindex;
	__u8 ours[ETH_ALEN];
	__u8 theirs[ETH_ALEN];
	/* 0: learned from its own frames (kept until a frame re-points it);
	 * else when the FIB gave it, for a destination that has not spoken: asked
	 * again once FIB_KEPT_NS has passed. */
	__u64 fib_ns;
};

/* How long the FIB's answer toward a destination is used before it is asked
 * again (a route or neighbour change reaches a silent peer's packets within
 * this). */
#define FIB_KEPT_NS 1000000000ull

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct neigh_key);
	__type(value, struct neigh);
} neighbours SEC(".maps");

/* Counters, per CPU: see enum stat. */
enum stat {
	STAT_TO_PEER_PACKETS,
	STAT_TO_PEER_BYTES,
	STAT_FROM_PEER_PACKETS,
	STAT_FROM_PEER_BYTES,
	STAT_EXPIRED,     /* routed, but past its end: to userspace */
	STAT_BAD_LENGTH,  /* ChannelData on a route whose length is not its payload */
	STAT_NO_FIB,      /* no way back learned, no FIB route, or past the MTU: to userspace */
	STAT_NO_CHECKSUM, /* an IPv4 datagram without checksum bound for IPv6 */
	STAT_NOT_LEARNED, /* a frame the FIB toward its sender disagrees with: its way back not learned */
	STAT_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 which, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += n;
}

/* What the parser found. */
struct packet {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u16 udp_len; /* host order */
	__u16 check;   /* as on the wire */
	__u8 family;
	__u8 l3_len;
};

/* Ones' complement arithmetic over 16-bit words, folded at the end. */
static __always_inline __u32 add16(__u32 sum, __u16 word)
{
	return sum + word;
}

static __always_inline __u32 sub16(__u32 sum, __u16 word)
{
	return sum + (__u16)~word;
}

static __always_inline __u16 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Adds (or subtracts) the words of an address of `family`. */
static __always_inline __u32 addr_sum(__u32 sum, const __u8 *a, __u8 family, int negate)
{
	int words = family == 4 ? 2 : 8;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (i < words) {
			__u16 w = ((__u16)a[2 * i] << 8) | a[2 * i + 1];
			sum = negate ? sub16(sum, w) : add16(sum, w);
		}
	}
	return sum;
}

/* The UDP pseudo-header and header words but the checksum (host order). */
static __always_inline __u32 header_sum(__u32 sum, const __u8 *src, const __u8 *dst, __u8 family,
					__be16 sport, __be16 dport, __u16 udp_len, int negate)
{
	sum = addr_sum(sum, src, family, negate);
	sum = addr_sum(sum, dst, family, negate);
	__u16 words[4] = { IPPROTO_UDP, udp_len, bpf_ntohs(sport), bpf_ntohs(dport) };
	/* The length appears twice: in the pseudo-header and in the UDP header. */
	__u16 all[5] = { words[0], words[1], words[1], words[2], words[3] };
#pragma unroll
	for (int i = 0; i < 5; i++)
		sum = negate ? sub16(sum, all[i]) : add16(sum, all[i]);
	return sum;
}

static __always_inline __u16 ipv4_check(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return ~fold(sum);
}

static __always_inline int parse(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct udphdr *udp;

	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return -1;
		if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
		    (ip->frag_off & bpf_htons(0x3fff)))
			return -1;
		__builtin_memset(p->src, 0, 32);
		__builtin_memcpy(p->src, &ip->saddr, 4);
		__builtin_memcpy(p->dst, &ip->daddr, 4);
		p->family = 4;
		p->l3_len = sizeof(*ip);
		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return -1;
		if (bpf_ntohs(ip->tot_len) != sizeof(*ip) + bpf_ntohs(udp->len))
			return -1;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return -1;
		if (ip6->nexthdr != IPPROTO_UDP)
			return -1;
		__builtin_memcpy(p->src, &ip6->saddr, 16);
		__builtin_memcpy(p->dst, &ip6->daddr, 16);
		p->family = 6;
		p->l3_len = sizeof(*ip6);
		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > end)
			return -1;
		if (bpf_ntohs(ip6->payload_len) != bpf_ntohs(udp->len))
			return -1;
	} else {
		return -1;
	}
	p->udp_len = bpf_ntohs(udp->len);
	if (p->udp_len < sizeof(*udp) || (void *)udp + p->udp_len > end)
		return -1;
	p->sport = udp->source;
	p->dport = udp->dest;
	p->check = udp->check;
	return 0;
}

static __always_inline int same_mac(const __u8 *a, const __u8 *b)
{
	int same = 1;
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		same &= a[i] == b[i];
	return same;
}

/* Remembers the way back to the sender of this (routed) frame, if the host's
 * routing agrees with it. */
static __always_inline void learn(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return;
	struct neigh_key k = {};
	__builtin_memcpy(k.ip, p->src, 16);
	k.family = p->family;
	struct neigh *n = bpf_map_lookup_elem(&neighbours, &k);
	if (n && n->ifindex == ctx->ingress_ifindex && same_mac(n->theirs, eth->h_source) &&
	    same_mac(n->ours, eth->h_dest))
		return;
	/* New, or changed: only what the FIB toward the sender confirms (an
	 * answer from our address to it leaves by this interface, to this MAC). */
	struct bpf_fib_lookup fib = {};
	fib.l4_protocol = IPPROTO_UDP;
	fib.sport = p->dport;
	fib.dport = p->sport;
	fib.tot_len = p->udp_len;
	fib.ifindex = ctx->ingress_ifindex;
	if (p->family == 4) {
		fib.family = AF_INET;
		__builtin_memcpy(&fib.ipv4_src, p->dst, 4);
		__builtin_memcpy(&fib.ipv4_dst, p->src, 4);
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, p->dst, 16);
		__builtin_memcpy(fib.ipv6_dst, p->src, 16);
	}
	int rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (fib.ifindex != ctx->ingress_ifindex || !same_mac(fib.dmac, eth->h_source)) {
			count(STAT_NOT_LEARNED, 1);
			return;
		}
	} else if (n) {
		/* Routing cannot answer (the host does not forward on this
		 * interface, or has no neighbour yet): the way first learned stays,
		 * and a frame from elsewhere re-points nothing. */
		count(STAT_NOT_LEARNED, 1);
		return;
	}
	struct neigh v = { .ifindex = ctx->ingress_ifindex };
	__builtin_memcpy(v.ours, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(v.theirs, eth->h_source, ETH_ALEN);
	bpf_map_update_elem(&neighbours, &k, &v, BPF_ANY);
}

/*
 * Sends what `r` routes: the UDP payload `data_len` bytes at offset `data_off`
 * of the frame stays where it is; the headers before it are rewritten for the
 * route's family, with a ChannelData header if `wrap`. `strip` says the input
 * carried one (to_peer). Returns the XDP action, XDP_PASS when unsure.
 */
static __always_inline int forward(struct xdp_md *ctx, struct packet *p, struct route *r,
				   __u32 data_off, __u16 data_len, int wrap, __u64 now)
{
	int strip = !wrap;
	__u16 out_udp_len = sizeof(struct udphdr) + data_len + (wrap ? CD_HEADER : 0);
	__u8 out_l3 = r->family == 4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	__u16 check = 0;

	/* The checksum, from the input's: the data's words are the same, at an even
	 * offset in both. */
	if (p->check == 0) {
		if (p->family == 6 || r->family == 6) {
			count(STAT_NO_CHECKSUM, 1);
			return XDP_PASS;
		}
	} else {
		__u32 sum = (__u16)~bpf_ntohs(p->check);
		sum = header_sum(sum, p->src, p->dst, p->family, p->sport, p->dport, p->udp_len, 1);
		void *data = (void *)(long)ctx->data;
		void *end = (void *)(long)ctx->data_end;
		if (strip) {
			__u8 *cd = data + data_off - CD_HEADER;
			if ((void *)(cd + CD_HEADER) > end)
				return XDP_PASS;
			sum = sub16(sum, ((__u16)cd[0] << 8) | cd[1]);
			sum = sub16(sum, ((__u16)cd[2] << 8) | cd[3]);
		} else {
			sum = add16(sum, bpf_ntohs(r->channel));
			sum = add16(sum, data_len);
		}
		sum = header_sum(sum, r->src, r->dst, r->family, r->src_port, r->dst_port, out_udp_len,
				 0);
		check = ~fold(sum);
		if (check == 0)
			check = 0xffff;
		check = bpf_htons(check);
	}

	/* Where it goes: the way back the destination's own packets came in on, or
	 * else what the FIB says (when the host forwards), kept a while. */
	__u32 ifindex;
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	struct neigh_key nk = {};
	__builtin_memcpy(nk.ip, r->dst, 16);
	nk.family = r->family;
	struct neigh *n = bpf_map_lookup_elem(&neighbours, &nk);
	if (n && (n->fib_ns == 0 || now - n->fib_ns < FIB_KEPT_NS)) {
		ifindex = n->ifindex;
		__builtin_memcpy(smac, n->ours, ETH_ALEN);
		__builtin_memcpy(dmac, n->theirs, ETH_ALEN);
	} else {
		struct bpf_fib_lookup fib = {};
		fib.l4_protocol = IPPROTO_UDP;
		fib.sport = r->src_port;
		fib.dport = r->dst_port;
		fib.tot_len = out_l3 + out_udp_len;
		fib.ifindex = ctx->ingress_ifindex;
		if (r->family == 4) {
			fib.family = AF_INET;
			__builtin_memcpy(&fib.ipv4_src, r->src, 4);
			__builtin_memcpy(&fib.ipv4_dst, r->dst, 4);
		} else {
			fib.family = AF_INET6;
			__builtin_memcpy(fib.ipv6_src, r->src, 16);
			__builtin_memcpy(fib.ipv6_dst, r->dst, 16);
		}
		if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) {
			count(STAT_NO_FIB, 1);
			return XDP_PASS;
		}
		ifindex = fib.ifindex;
		__builtin_memcpy(smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(dmac, fib.dmac, ETH_ALEN);
		struct neigh v = { .ifindex = ifindex, .fib_ns = now | 1 };
		__builtin_memcpy(v.ours, smac, ETH_ALEN);
		__builtin_memcpy(v.theirs, dmac, ETH_ALEN);
		bpf_map_update_elem(&neighbours, &nk, &v, BPF_ANY);
	}

	/* The headers in front of the data, before and after. */
	int old_hdr = sizeof(struct ethhdr) + p->l3_len + sizeof(struct udphdr) + (strip ? CD_HEADER : 0);
	int new_hdr = sizeof(struct ethhdr) + out_l3 + sizeof(struct udphdr) + (wrap ? CD_HEADER : 0);
	/* A frame grown past the egress MTU goes to userspace (which fragments or
	 * drops it as the socket's DF says). */
	__u32 mtu_len = 0;
	if (bpf_check_mtu(ctx, ifindex, &mtu_len, new_hdr - old_hdr, 0) != BPF_MTU_CHK_RET_SUCCESS) {
		count(STAT_NO_FIB, 1);
		return XDP_PASS;
	}
	if (bpf_xdp_adjust_head(ctx, old_hdr - new_hdr))
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	struct udphdr *udp;
	if (r->family == 4) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return XDP_DROP;
		eth->h_proto = bpf_htons(ETH_P_IP);
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = 0;
		ip->tot_len = bpf_htons(sizeof(*ip) + out_udp_len);
		ip->id = 0;
		ip->frag_off = bpf_htons(0x4000); /* DF, as the relay sockets set it */
		ip->ttl = 64;
		ip->protocol = IPPROTO_UDP;
		ip->check = 0;
		__builtin_memcpy(&ip->saddr, r->src, 4);
		__builtin_memcpy(&ip->daddr, r->dst, 4);
		ip->check = ipv4_check(ip);
		udp = (void *)(ip + 1);
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return XDP_DROP;
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		__builtin_memset(ip6, 0, 4);
		ip6->version = 6;
		ip6->payload_len = bpf_htons(out_udp_len);
		ip6->nexthdr = IPPROTO_UDP;
		ip6->hop_limit = 64;
		__builtin_memcpy(&ip6->saddr, r->src, 16);
		__builtin_memcpy(&ip6->daddr, r->dst, 16);
		udp = (void *)(ip6 + 1);
	}
	if ((void *)(udp + 1) > end)
		return XDP_DROP;
	udp->source = r->src_port;
	udp->dest = r->dst_port;
	udp->len = bpf_htons(out_udp_len);
	udp->check = check;
	if (wrap) {
		__u8 *cd = (void *)(udp + 1);
		if ((void *)(cd + CD_HEADER) > end)
			return XDP_DROP;
		__builtin_memcpy(cd, &r->channel, 2);
		cd[2] = data_len >> 8;
		cd[3] = data_len & 0xff;
	}

	__sync_fetch_and_add(&r->packets, 1);
	__sync_fetch_and_add(&r->bytes, data_len);
	if (wrap) {
		count(STAT_FROM_PEER_PACKETS, 1);
		count(STAT_FROM_PEER_BYTES, data_len);
	} else {
		count(STAT_TO_PEER_PACKETS, 1);
		count(STAT_TO_PEER_BYTES, data_len);
	}
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ifindex, 0);
}

SEC("xdp")
int turn_relay(struct xdp_md *ctx)
{
	struct packet p;
	if (parse(ctx, &p))
		return XDP_PASS;
	__u32 payload_off = sizeof(struct ethhdr) + p.l3_len + sizeof(struct udphdr);
	__u16 payload_len = p.udp_len - sizeof(struct udphdr);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *payload = data + payload_off;
	/* The coarse clock (a tick behind at most): a route's end is seconds
	 * away, and it is a cheaper read than the precise one. */
	__u64 now = bpf_ktime_get_coarse_ns();

	/* A client's ChannelData on a routed channel (0x4000-0x7fff), or else a
	 * peer's datagram on a relay address; one call of learn() and forward()
	 * for both (each inlined once: the stack is 512 bytes). */
	struct route *r = 0;
	__u32 data_off = payload_off;
	__u16 data_len = payload_len;
	int wrap = 1;
	if ((void *)(payload + CD_HEADER) <= end && (payload[0] & 0xc0) == 0x40) {
		struct to_peer_key k = {};
		__builtin_memcpy(k.client, p.src, 16);
		__builtin_memcpy(k.server, p.dst, 16);
		k.client_port = p.sport;
		k.server_port = p.dport;
		__builtin_memcpy(&k.channel, payload, 2);
		k.family = p.family;
		r = bpf_map_lookup_elem(&to_peer, &k);
		if (r) {
			__u16 len = ((__u16)payload[2] << 8) | payload[3];
			if (len + CD_HEADER != payload_len) {
				/* Padded, or lying: the server decides. */
				count(STAT_BAD_LENGTH, 1);
				return XDP_PASS;
			}
			data_off = payload_off + CD_HEADER;
			data_len = len;
			wrap = 0;
		}
	}
	if (!r) {
		struct from_peer_key k = {};
		__builtin_memcpy(k.peer, p.src, 16);
		__builtin_memcpy(k.relay, p.dst, 16);
		k.peer_port = p.sport;
		k.relay_port = p.dport;
		k.family = p.family;
		r = bpf_map_lookup_elem(&from_peer, &k);
		if (!r)
			return XDP_PASS;
		if (payload_len > 0xffff - CD_HEADER - sizeof(struct udphdr))
			return XDP_PASS;
	}
	if (now >= r->until_ns) {
		count(STAT_EXPIRED, 1);
		return XDP_PASS;
	}
	learn(ctx, &p);
	return forward(ctx, &p, r, data_off, data_len, wrap, now);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
