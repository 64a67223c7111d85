/*
 * classify - the zone/policy decision for a new connection (rules in
 * classify.h) and the packet parser that feeds it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "classify.h"

static bool
zone_in(const int *zones, int n, int zone)
{
	if (n == 0)
		return true; /* "any" */
	for (int i = 0; i < n; i++)
		if (zones[i] == zone)
			return true;
	return false;
}

static bool
prefix_any(const struct prefix *p, int n, int family, const uint8_t *addr)
{
	if (n == 0)
		return true;
	for (int i = 0; i < n; i++)
		if (prefix_match(&p[i], family, addr))
			return true;
	return false;
}

void
classify(const struct config *c, const struct classify_input *in, struct classify_result *out)
{
	int from = config_zone_of_iface(c, in->in_ifname);
	int to = in->out_ifname[0] ? config_zone_of_iface(c, in->out_ifname) : -1;

	memset(out, 0, sizeof(*out));
	out->f.zone = from;
	out->f.policy = -1;
	out->to_zone = to;
	out->f.inbound = from >= 0 && c->zones[from].external;
	if (from < 0) {
		out->f.decision = DECISION_REJECT;
		out->reason = "no-zone";
		return;
	}
	for (int i = 0; i < c->n_policies && i < MARK_MAX_INDEX; i++) {
		const struct conf_policy *p = &c->policies[i];

		if (!p->enabled)
			continue;
		if (!zone_in(p->from, p->n_from, from))
			continue;
		/* A policy that names to-zones never matches an unknown egress. */
		if (p->n_to > 0 && (to < 0 || !zone_in(p->to, p->n_to, to)))
			continue;
		if (!prefix_any(p->src, p->n_src, in->family, in->src) ||
		    !prefix_any(p->dst, p->n_dst, in->family, in->dst))
			continue;
		if (!policy_covers_port(p, in->dport))
			continue;
		out->f.policy = i;
		out->f.decision = p->type == POLICY_PROXY ? DECISION_INTERCEPT : DECISION_BYPASS;
		out->reason = "policy";
		return;
	}
	out->f.decision = DECISION_REJECT;
	out->reason = "no-policy";
}

int
classify_parse_packet(const uint8_t *pkt, size_t len, struct classify_input *in)
{
	size_t off;
	uint8_t proto;

	if (len < 1)
		return -1;
	switch (pkt[0] >> 4) {
	case 4: {
		size_t ihl;

		if (len < 20)
			return -1;
		ihl = (size_t)(pkt[0] & 0x0f) * 4;
		if (ihl < 20 || ihl > len)
			return -1;
		/* A non-first fragment has no TCP header. */
		if ((((uint16_t)pkt[6] << 8 | pkt[7]) & 0x1fff) != 0)
			return -1;
		proto = pkt[9];
		in->family = AF_INET;
		memset(in->src, 0, sizeof(in->src));
		memset(in->dst, 0, sizeof(in->dst));
		memcpy(in->src, pkt + 12, 4);
		memcpy(in->dst, pkt + 16, 4);
		off = ihl;
		break;
	}
	case 6: {
		int hops = 0;

		if (len < 40)
			return -1;
		proto = pkt[6];
		in->family = AF_INET6;
		memcpy(in->src, pkt + 8, 16);
		memcpy(in->dst, pkt + 24, 16);
		off = 40;
		/* Walk the extension headers a SYN may plausibly carry. */
		while (proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING ||
		    proto == IPPROTO_DSTOPTS) {
			if (++hops > 8 || off + 8 > len)
				return -1;
			proto = pkt[off];
			off += ((size_t)pkt[off + 1] + 1) * 8;
			if (off > len)
				return -1;
		}
		break;
	}
	default:
		return -1;
	}
	if (proto != IPPROTO_TCP || off + 4 > len)
		return -1;
	in->sport = (uint16_t)(pkt[off] << 8 | pkt[off + 1]);
	in->dport = (uint16_t)(pkt[off + 2] << 8 | pkt[off + 3]);
	return 0;
}
