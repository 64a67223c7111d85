/*
 * fuzz_packet - classify_parse_packet, then classify, on arbitrary bytes.
 *
 * Input: byte 0 picks the ingress interface, byte 1 the egress interface
 * (from the list below, modulo its length), the rest is the packet as the
 * queue delivers it (IPv4 or IPv6 header first).  Checks the decision
 * against the rules in classify.h and that the mark round-trips.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static const char conf_text[] =
    "[zone trusted]\ninterfaces = lan0 lan1\n"
    "[zone external]\ninterfaces = wan0\n"
    "[zone dmz]\ninterfaces = dmz0\n"
    "[policy off]\nenabled = no\nfrom = any\nto = any\naction = off\n"
    "[policy dmz]\nfrom = dmz\nto = external\ntype = packet-filter\n"
    "[policy out]\nfrom = trusted\nto = external\nsrc = 192.0.2.0/24 2001:db8:1::/48\n"
    "tls-support = disabled\naction = out\n"
    "[policy smtps]\nfrom = trusted\nto = external\ntls-support = required\naction = smtps\n"
    "[policy in]\nfrom = external\nto = trusted dmz\n"
    "dst = 198.51.100.0/24 2001:db8:2::/48\naction = in\n"
    "[policy any]\nfrom = trusted\nto = any\ndst = 203.0.113.0/24 ::/0\naction = any\n"
    "[action off]\n[action out]\n[action smtps]\n[action in]\n[action any]\n";

static const char *const ifaces[] = {"lan0", "lan1", "wan0", "dmz0", "eth9", ""};
#define N_IFACES (sizeof(ifaces) / sizeof(ifaces[0]))

static struct config *conf;

static void
load_config(void)
{
	char err[256];

	conf = malloc(sizeof(*conf));
	if (conf == NULL ||
	    config_parse(conf, "fuzz.conf", conf_text, strlen(conf_text), err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_packet: %s\n", conf ? err : "out of memory");
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct classify_input in;
	struct classify_result r;
	struct mark_fields back;
	uint32_t mark;

	if (conf == NULL)
		load_config();
	if (size < 2)
		return 0;
	memset(&in, 0, sizeof(in));
	snprintf(in.in_ifname, sizeof(in.in_ifname), "%s", ifaces[data[0] % N_IFACES]);
	snprintf(in.out_ifname, sizeof(in.out_ifname), "%s", ifaces[data[1] % N_IFACES]);
	if (classify_parse_packet(data + 2, size - 2, &in) < 0)
		return 0;
	CHECK(in.family == AF_INET || in.family == AF_INET6);

	classify(conf, &in, &r);
	CHECK(r.reason != NULL);
	CHECK(r.f.zone == config_zone_of_iface(conf, in.in_ifname));
	CHECK(r.f.inbound == (r.f.zone >= 0 && conf->zones[r.f.zone].external));
	switch (r.f.decision) {
	case DECISION_REJECT:
		CHECK(r.f.policy == -1);
		break;
	case DECISION_INTERCEPT:
	case DECISION_BYPASS: {
		const struct conf_policy *p;

		CHECK(r.f.zone >= 0);
		CHECK(r.f.policy >= 0 && r.f.policy < conf->n_policies);
		p = &conf->policies[r.f.policy];
		CHECK(p->enabled);
		CHECK(policy_covers_port(p, in.dport));
		CHECK((p->type == POLICY_PROXY) == (r.f.decision == DECISION_INTERCEPT));
		CHECK(p->n_to == 0 || r.to_zone >= 0);
		break;
	}
	default:
		CHECK(0);
	}

	mark = mark_encode(&r.f);
	CHECK((mark & ~MARK_CT_MASK) == 0);
	CHECK(mark_decode(mark, &back) == 0);
	CHECK(back.decision == r.f.decision && back.inbound == r.f.inbound &&
	    back.zone == r.f.zone && back.policy == r.f.policy);
	return 0;
}
