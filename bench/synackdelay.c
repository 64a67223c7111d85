/*
 * NAME
 *	synackdelay - hold every packet of a netfilter queue for a fixed time, for bench/run
 * SUMMARY
 *	synackdelay -q QUEUE -d MICROSECONDS
 * DESCRIPTION
 *	bench/run queues the sink's SYN-ACKs here (an nft rule in the sink's
 *	namespace, output hook, "queue flags bypass"), so every connection
 *	the sink accepts completes its handshake MICROSECONDS later, on every
 *	path alike.  What it is for: SSLsplit 0.5.5 exits ("readcb called
 *	when other end not connected") when the server's first bytes reach it
 *	in the same event-loop turn as its own connect's completion; a
 *	delayed SYN-ACK separates the two.  The machine's kernel may have no
 *	netem, hence a queue.
 *
 *	Packets wait in arrival order, each for the same time, so the queue
 *	is a FIFO: the head is always the next one due.  Copies only the
 *	packet's metadata.  SIGTERM or SIGINT ends it; queued packets then go
 *	on without it (the rule's bypass flag).
 * SECURITY
 *	A benchmark tool for the testbed's private namespaces; needs
 *	CAP_NET_ADMIN there.  Only ever accepts packets.
 */
#ifndef _GNU_SOURCE /* meson passes it for the whole project */
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define NL_BUF 8192u  /* one netlink message (MNL_SOCKET_BUFFER_SIZE is not a constant) */
#define RECV_BUF 65536u
#define RING 65536u /* packets waiting at most (the queue's own length is set to it too) */

struct held {
	uint32_t id;
	uint64_t due; /* CLOCK_MONOTONIC, ns */
};

static struct mnl_socket *nl;
static unsigned queue_num, portid, seq;
static struct held ring[RING];
static unsigned head, tail; /* ring[head..tail) wait; tail - head <= RING */
static volatile sig_atomic_t stop;
static unsigned long n_held, n_overflow;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
config(struct nlmsghdr *nlh)
{
	char buf[NL_BUF];
	ssize_t n;

	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = ++seq;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0)
		return -1;
	return mnl_cb_run(buf, (size_t)n, seq, portid, NULL, NULL) < 0 ? -1 : 0;
}

static void
accept_packet(uint32_t id)
{
	char buf[NL_BUF];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT, (int)queue_num);

	nfq_nlmsg_verdict_put(nlh, (int)id, NF_ACCEPT);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		fprintf(stderr, "synackdelay: verdict: %s\n", strerror(errno));
}

static int
packet_cb(const struct nlmsghdr *nlh, void *data)
{
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	struct nfqnl_msg_packet_hdr *ph;
	uint64_t delay = *(const uint64_t *)data;
	uint32_t id;

	if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == NULL)
		return MNL_CB_OK;
	ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	id = ntohl(ph->packet_id);
	if (tail - head == RING) { /* full: this one goes at once */
		n_overflow++;
		accept_packet(id);
		return MNL_CB_OK;
	}
	ring[tail % RING] = (struct held){ .id = id, .due = now_ns() + delay };
	tail++;
	n_held++;
	return MNL_CB_OK;
}

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int
main(int argc, char **argv)
{
	static char buf[RECV_BUF];
	struct nlmsghdr *nlh;
	uint64_t delay = 0;
	long q = -1, d = -1;
	int opt, one = 1;
	struct sigaction sa;

	while ((opt = getopt(argc, argv, "q:d:")) != -1) {
		switch (opt) {
		case 'q': q = atol(optarg); break;
		case 'd': d = atol(optarg); break;
		default: goto usage;
		}
	}
	if (q < 0 || q > 65535 || d < 0 || d > 1000000)
		goto usage;
	queue_num = (unsigned)q;
	delay = (uint64_t)d * 1000u;

	nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (nl == NULL || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		perror("synackdelay: netlink");
		return 1;
	}
	portid = mnl_socket_get_portid(nl);
	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, (int)queue_num);
	nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_BIND);
	if (config(nlh) < 0) {
		perror("synackdelay: bind queue");
		return 1;
	}
	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, (int)queue_num);
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
	if (config(nlh) < 0) {
		perror("synackdelay: copy mode");
		return 1;
	}
	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, (int)queue_num);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, RING);
	if (config(nlh) < 0) {
		perror("synackdelay: queue length");
		return 1;
	}
	(void)mnl_socket_setsockopt(nl, NETLINK_NO_ENOBUFS, &one, sizeof(one));

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	fprintf(stderr, "synackdelay: ready queue=%u delay_us=%ld\n", queue_num, d);

	while (!stop) {
		struct pollfd pfd = { .fd = mnl_socket_get_fd(nl), .events = POLLIN };
		struct timespec ts, *tsp = NULL;
		uint64_t t = now_ns();

		while (head != tail && ring[head % RING].due <= t) {
			accept_packet(ring[head % RING].id);
			head++;
		}
		if (head != tail) { /* ppoll: nanoseconds, so sub-millisecond delays hold */
			uint64_t w = ring[head % RING].due - t;
			ts.tv_sec = (time_t)(w / 1000000000u);
			ts.tv_nsec = (long)(w % 1000000000u);
			tsp = &ts;
		}
		if (ppoll(&pfd, 1, tsp, NULL) <= 0)
			continue;
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			perror("synackdelay: recv");
			return 1;
		}
		(void)mnl_cb_run(buf, (size_t)n, 0, portid, packet_cb, &delay);
	}
	while (head != tail)
		accept_packet(ring[head++ % RING].id);
	fprintf(stderr, "synackdelay: exit held=%lu overflow=%lu\n", n_held, n_overflow);
	return 0;
usage:
	fprintf(stderr, "usage: synackdelay -q QUEUE -d MICROSECONDS (0..1000000)\n");
	return 2;
}
