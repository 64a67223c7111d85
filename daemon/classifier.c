/*
 * classifier - the SYN classifier loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#include "classify.h"
#include "log.h"
#include "classifier.h"
#include "route.h"
#include "util.h"

/* Fixed-size netlink message buffers (MNL_SOCKET_BUFFER_SIZE is a runtime value). */
#define NL_BUF_SIZE 8192

/* Enough of the packet for IPv6 with extension headers and the TCP ports. */
#define NFQ_COPY_RANGE 256
/* Packets the kernel may hold for us before it drops new SYNs (clients retry). */
#define NFQ_MAXLEN 4096

struct classifier {
	struct mnl_socket *nl;
	unsigned portid;
	unsigned queue_num;
	unsigned seq;
	struct route_ctx *route;
	const struct config *conf;
	unsigned long n_intercept, n_bypass, n_reject, n_bad;
};

/* Send one config message and wait for the kernel's ACK (errors are otherwise async). */
static int
nfq_config(struct classifier *q, struct nlmsghdr *nlh)
{
	char buf[NL_BUF_SIZE];
	ssize_t n;

	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = ++q->seq;
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	n = mnl_socket_recvfrom(q->nl, buf, sizeof(buf));
	if (n < 0)
		return -1;
	return mnl_cb_run(buf, (size_t)n, q->seq, q->portid, NULL, NULL) < 0 ? -1 : 0;
}

struct classifier *
classifier_open(unsigned queue_num, char *err, size_t errlen)
{
	char buf[NL_BUF_SIZE];
	struct classifier *q = xcalloc(1, sizeof(*q));
	struct nlmsghdr *nlh;
	int one = 1;

	q->queue_num = queue_num;
	q->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (q->nl == NULL || mnl_socket_bind(q->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		snprintf(err, errlen, "netfilter queue socket: %s", strerror(errno));
		goto fail;
	}
	q->portid = mnl_socket_get_portid(q->nl);

	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, (int)queue_num);
	nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_BIND);
	if (nfq_config(q, nlh) < 0) {
		snprintf(err, errlen, "bind netfilter queue %u: %s%s", queue_num, strerror(errno),
		    errno == EBUSY ? " (another process holds this queue)" : "");
		goto fail;
	}
	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, (int)queue_num);
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, NFQ_COPY_RANGE);
	if (nfq_config(q, nlh) < 0) {
		snprintf(err, errlen, "netfilter queue %u copy mode: %s", queue_num, strerror(errno));
		goto fail;
	}
	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, (int)queue_num);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, NFQ_MAXLEN);
	if (nfq_config(q, nlh) < 0) {
		snprintf(err, errlen, "netfilter queue %u length: %s", queue_num, strerror(errno));
		goto fail;
	}
	/* Losing a packet under load is survivable (the client resends the SYN). */
	(void)mnl_socket_setsockopt(q->nl, NETLINK_NO_ENOBUFS, &one, sizeof(one));
	return q;
fail:
	classifier_close(q);
	return NULL;
}

void
classifier_close(struct classifier *q)
{
	if (q == NULL)
		return;
	if (q->nl)
		mnl_socket_close(q->nl);
	route_close(q->route);
	free(q);
}

/*
 * ifindex -> name, cached for a few seconds: if_indextoname() costs a
 * socket and an ioctl, twice per SYN.  A short lifetime keeps renames and
 * re-used indexes from being believed for long.
 */
#define IFCACHE_SLOTS 64
#define IFCACHE_TTL_MS 2000

static struct {
	int index;
	char name[IFNAMSIZ];
	uint64_t at;
} ifcache[IFCACHE_SLOTS];

static bool
ifname(int index, char *out)
{
	unsigned slot = (unsigned)index % IFCACHE_SLOTS;
	uint64_t now = now_ms();

	if (index <= 0)
		return false;
	if (ifcache[slot].index == index && now - ifcache[slot].at < IFCACHE_TTL_MS) {
		memcpy(out, ifcache[slot].name, IFNAMSIZ);
		return true;
	}
	if (if_indextoname((unsigned)index, out) == NULL)
		return false;
	ifcache[slot].index = index;
	memcpy(ifcache[slot].name, out, IFNAMSIZ);
	ifcache[slot].at = now;
	return true;
}

static void
nfq_verdict(struct classifier *q, uint32_t id, uint32_t mark)
{
	char buf[NL_BUF_SIZE];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT, (int)q->queue_num);

	/*
	 * Always ACCEPT: the ruleset turns the mark into tproxy, forward or a
	 * TCP reset.  Dropping here would leave the client retrying for
	 * seconds where a reset tells it at once.
	 */
	nfq_nlmsg_verdict_put(nlh, (int)id, NF_ACCEPT);
	nfq_nlmsg_verdict_put_mark(nlh, mark);
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		log_err("classify verdict id=%u error=\"%s\"", id, strerror(errno));
}

static void
fmt_ip(int family, const uint8_t *a, char *buf, size_t len)
{
	if (inet_ntop(family, a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

static int
nfq_packet_cb(const struct nlmsghdr *nlh, void *data)
{
	struct classifier *q = data;
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	struct nfqnl_msg_packet_hdr *ph;
	struct classify_input in;
	struct classify_result res;
	uint32_t id, mark;
	int iif, oif;

	if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == NULL) {
		q->n_bad++;
		return MNL_CB_OK;
	}
	ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	id = ntohl(ph->packet_id);
	memset(&in, 0, sizeof(in));

	iif = attr[NFQA_IFINDEX_INDEV] ? (int)ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV])) : 0;
	if (!ifname(iif, in.in_ifname))
		in.in_ifname[0] = '\0';
	if (attr[NFQA_PAYLOAD] == NULL ||
	    classify_parse_packet(mnl_attr_get_payload(attr[NFQA_PAYLOAD]),
	        mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]), &in) < 0) {
		/* Not something the ruleset should have queued: refuse it. */
		q->n_bad++;
		struct mark_fields f = { .decision = DECISION_REJECT, .zone = -1, .policy = -1 };
		nfq_verdict(q, id, mark_encode(&f));
		log_warn("classify decision=reject reason=unparsable in=%s", in.in_ifname);
		return MNL_CB_OK;
	}
	oif = route_oif(q->route, in.family, in.src, in.dst, iif);
	if (!ifname(oif, in.out_ifname))
		in.out_ifname[0] = '\0';

	classify(q->conf, &in, &res);
	mark = mark_encode(&res.f);
	nfq_verdict(q, id, mark);

	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	fmt_ip(in.family, in.src, src, sizeof(src));
	fmt_ip(in.family, in.dst, dst, sizeof(dst));
	const struct config *c = q->conf;
	const char *zone = res.f.zone >= 0 ? c->zones[res.f.zone].name : "-";
	const char *tozone = res.to_zone >= 0 ? c->zones[res.to_zone].name : "-";
	const char *policy = res.f.policy >= 0 ? c->policies[res.f.policy].name : "-";
	switch (res.f.decision) {
	case DECISION_INTERCEPT:
		q->n_intercept++;
		log_debug("classify decision=intercept in=%s out=%s zone=%s to-zone=%s policy=%s "
		    "src=%s dst=%s dport=%u mark=0x%x", in.in_ifname, in.out_ifname, zone, tozone,
		    policy, src, dst, in.dport, mark);
		break;
	default:
		if (res.f.decision == DECISION_BYPASS)
			q->n_bypass++;
		else
			q->n_reject++;
		log_info("classify decision=%s reason=%s in=%s out=%s zone=%s to-zone=%s "
		    "policy=%s src=%s dst=%s dport=%u", decision_name(res.f.decision), res.reason,
		    in.in_ifname[0] ? in.in_ifname : "-", in.out_ifname[0] ? in.out_ifname : "-",
		    zone, tozone, policy, src, dst, in.dport);
		break;
	}
	return MNL_CB_OK;
}

int
classifier_run(struct classifier *q, const struct config *c, volatile int *stop)
{
	size_t bufsz = 0xffff + (MNL_SOCKET_BUFFER_SIZE / 2);
	char *buf = xmalloc(bufsz);

	q->conf = c;
	q->route = route_open();
	if (q->route == NULL)
		log_warn("classify route lookups unavailable: policies naming to-zones will not match");
	log_info("classify ready queue=%u zones=%d policies=%d", q->queue_num, c->n_zones,
	    c->n_policies);
	while (!*stop) {
		ssize_t n = mnl_socket_recvfrom(q->nl, buf, bufsz);

		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			log_err("classify recv error=\"%s\"", strerror(errno));
			free(buf);
			return -1;
		}
		if (mnl_cb_run(buf, (size_t)n, 0, q->portid, nfq_packet_cb, q) < 0 &&
		    errno != EINTR)
			log_warn("classify message error=\"%s\"", strerror(errno));
	}
	log_info("classify stop intercepted=%lu bypassed=%lu rejected=%lu malformed=%lu",
	    q->n_intercept, q->n_bypass, q->n_reject, q->n_bad);
	free(buf);
	return 0;
}
