/* Frame generator for the veth benchmarks (bench/_veth.py builds it with clang).
 *
 *   blast IFACE SECONDS HEXFRAME
 *
 * Sends the one frame HEXFRAME out of IFACE through an AF_PACKET socket as fast as
 * sendmmsg(2) allows, in batches, for SECONDS, then prints "SENT ELAPSED_S" on stdout.
 * Run it in the namespace that holds IFACE (ip netns exec).  A Python send loop tops out
 * at a few hundred thousand frames a second, below what the ebpf back end forwards; this
 * one does not need to be the bottleneck.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 256
#define MAX_FRAME 2048

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int unhex(const char *hex, unsigned char *out, size_t cap)
{
	size_t n = strlen(hex);
	if (n % 2 != 0 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int byte;
		if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
			return -1;
		out[i] = (unsigned char)byte;
	}
	return (int)(n / 2);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: blast IFACE SECONDS HEXFRAME\n");
		return 2;
	}
	unsigned char frame[MAX_FRAME];
	int len = unhex(argv[3], frame, sizeof frame);
	double seconds = atof(argv[2]);
	unsigned int ifindex = if_nametoindex(argv[1]);
	if (len < 14 || seconds <= 0 || ifindex == 0) {
		fprintf(stderr, "blast: bad frame, duration or interface %s\n", argv[1]);
		return 2;
	}
	int fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0) {
		perror("blast: socket");
		return 1;
	}
	struct sockaddr_ll addr = {
		.sll_family = AF_PACKET,
		.sll_ifindex = (int)ifindex,
		.sll_halen = ETH_ALEN,
	};
	memcpy(addr.sll_addr, frame, ETH_ALEN);
	if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		perror("blast: bind");
		return 1;
	}
	struct iovec iov = { .iov_base = frame, .iov_len = (size_t)len };
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof msgs);
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	unsigned long long sent = 0;
	double start = now(), end = start + seconds, t = start;
	while (t < end) {
		int n = sendmmsg(fd, msgs, BATCH, 0);
		if (n > 0)
			sent += (unsigned long long)n;
		else if (n < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
			perror("blast: sendmmsg");
			return 1;
		}
		t = now();
	}
	printf("%llu %.6f\n", sent, t - start);
	return 0;
}
