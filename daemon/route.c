/*
 * route - RTM_GETROUTE with libmnl.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>

#include "log.h"
#include "route.h"
#include "util.h"

/* Fixed-size netlink message buffers (MNL_SOCKET_BUFFER_SIZE is a runtime value). */
#define NL_BUF_SIZE 8192

struct route_ctx {
	struct mnl_socket *nl;
	unsigned portid;
	unsigned seq;
};

struct route_ctx *
route_open(void)
{
	struct route_ctx *r = xcalloc(1, sizeof(*r));

	r->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (r->nl == NULL || mnl_socket_bind(r->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		log_err("route netlink socket: %s", strerror(errno));
		if (r->nl)
			mnl_socket_close(r->nl);
		free(r);
		return NULL;
	}
	r->portid = mnl_socket_get_portid(r->nl);
	r->seq = (unsigned)time(NULL);
	return r;
}

void
route_close(struct route_ctx *r)
{
	if (r == NULL)
		return;
	mnl_socket_close(r->nl);
	free(r);
}

static int
attr_cb(const struct nlattr *attr, void *data)
{
	int *oif = data;

	if (mnl_attr_get_type(attr) == RTA_OIF && mnl_attr_validate(attr, MNL_TYPE_U32) >= 0)
		*oif = (int)mnl_attr_get_u32(attr);
	return MNL_CB_OK;
}

static int
route_cb(const struct nlmsghdr *nlh, void *data)
{
	if (nlh->nlmsg_type != RTM_NEWROUTE)
		return MNL_CB_OK;
	mnl_attr_parse(nlh, sizeof(struct rtmsg), attr_cb, data);
	return MNL_CB_OK;
}

static int
lookup(struct route_ctx *r, int family, const uint8_t *src, const uint8_t *dst, int iif)
{
	char buf[NL_BUF_SIZE];
	size_t alen = family == AF_INET ? 4 : 16;
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;
	int oif = -1;
	ssize_t n;

	nlh->nlmsg_type = RTM_GETROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = ++r->seq;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (unsigned char)family;
	rtm->rtm_dst_len = (unsigned char)(alen * 8);
	mnl_attr_put(nlh, RTA_DST, alen, dst);
	if (iif > 0) {
		rtm->rtm_src_len = (unsigned char)(alen * 8);
		mnl_attr_put(nlh, RTA_SRC, alen, src);
		mnl_attr_put_u32(nlh, RTA_IIF, (uint32_t)iif);
	}
	if (mnl_socket_sendto(r->nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	n = mnl_socket_recvfrom(r->nl, buf, sizeof(buf));
	if (n < 0)
		return -1;
	if (mnl_cb_run(buf, (size_t)n, r->seq, r->portid, route_cb, &oif) < 0)
		return -1;
	return oif;
}

int
route_oif(struct route_ctx *r, int family, const uint8_t *src, const uint8_t *dst, int iif)
{
	int oif;

	if (r == NULL)
		return -1;
	/*
	 * An input lookup (with the ingress interface) honours policy
	 * routing by source; it fails where forwarding is off, so fall back
	 * to a plain output lookup.
	 */
	oif = lookup(r, family, src, dst, iif);
	if (oif < 0 && iif > 0)
		oif = lookup(r, family, src, dst, 0);
	return oif;
}
