/* The two ways a TC program can hand a packet to user space, for bench/punt_path.py.
 *
 * punt_veth:  bpf_redirect out of the CPU veth (the map cpu[0] holds its ifindex); user space
 *             reads the other end with an AF_PACKET socket (what `dysco switch` does today).
 * punt_ring:  the packet's bytes (up to MAX_REC) copied into the ring buffer `ring`; user space
 *             polls it through libbpf.  The original is dropped.
 *
 * Both count what they handed over in `stats` (0: punted, 1: refused: the ring was full or the
 * redirect failed), so the benchmark can tell loss in the kernel from loss in user space.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define MAX_REC 2048

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u8[MAX_REC]);
	__uint(max_entries, 1);
} copybuf SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &which);
	if (n)
		*n += 1;
}

SEC("tc")
int punt_veth(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&cpu, &zero);
	if (!ifindex)
		return TC_ACT_SHOT;
	long rc = bpf_redirect(*ifindex, 0);
	count(rc == TC_ACT_REDIRECT ? 0 : 1);
	return (int)rc;
}

SEC("tc")
int punt_ring(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u8 *buf = bpf_map_lookup_elem(&copybuf, &zero);
	if (!buf)
		return TC_ACT_SHOT;
	__u32 len = skb->len;
	if (len > MAX_REC)
		len = MAX_REC;
	if (len < 1)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, 0, buf, len) < 0)
		return TC_ACT_SHOT;
	count(bpf_ringbuf_output(&ring, buf, len, 0) == 0 ? 0 : 1);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
