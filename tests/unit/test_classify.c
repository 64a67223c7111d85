/*
 * test_classify - the decision table (classify) and the SYN parser
 * (classify_parse_packet).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

static struct config *conf;

/*
 * Zones: trusted (lan0 lan1), external (wan0, external by name), dmz (dmz0),
 * partner (vpn0, external by setting).  Policies in match order.
 */
static const char conf_text[] =
    "[zone trusted]\n"
    "interfaces = lan0 lan1\n"
    "[zone external]\n"
    "interfaces = wan0\n"
    "[zone dmz]\n"
    "interfaces = dmz0\n"
    "[zone partner]\n"
    "interfaces = vpn0\n"
    "external = yes\n"
    "\n"
    "# would match everything, but is switched off\n"
    "[policy Off]\n"
    "enabled = no\n"
    "from = any\n"
    "to = any\n"
    "action = never\n"
    "\n"
    "[policy DMZ-Filter]\n"
    "from = dmz\n"
    "to = external\n"
    "type = packet-filter\n"
    "\n"
    "[policy Out-Plain]\n"
    "from = trusted\n"
    "to = external\n"
    "src = 192.0.2.0/24 2001:db8:1::/48\n"
    "tls-support = disabled\n"
    "action = out-plain\n"
    "\n"
    "[policy Out-Smtps]\n"
    "from = trusted\n"
    "to = external\n"
    "tls-support = required\n"
    "action = out-smtps\n"
    "\n"
    "# matches what Out-Plain matches on port 25: never reached there\n"
    "[policy Out-Shadowed]\n"
    "from = trusted\n"
    "to = external\n"
    "src = 192.0.2.0/24\n"
    "action = shadowed\n"
    "\n"
    "[policy In]\n"
    "from = external\n"
    "to = trusted dmz\n"
    "dst = 198.51.100.0/24 2001:db8:2::/48\n"
    "action = in\n"
    "\n"
    "[policy Anywhere]\n"
    "from = trusted\n"
    "to = any\n"
    "dst = 203.0.113.0/24\n"
    "action = anywhere\n"
    "\n"
    "[action never]\n[action out-plain]\n[action out-smtps]\n[action shadowed]\n"
    "[action in]\n[action anywhere]\n";

static int
setup(void **state)
{
	char err[256];

	conf = malloc(sizeof(*conf));
	if (conf == NULL)
		return -1;
	if (config_parse(conf, "classify.conf", conf_text, strlen(conf_text), err,
	    sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	free(conf);
	return 0;
}

static int
policy_index(const char *name)
{
	for (int i = 0; i < conf->n_policies; i++)
		if (!strcmp(conf->policies[i].name, name))
			return i;
	fail_msg("no policy %s", name);
	return -1;
}

static void
make_input(struct classify_input *in, const char *in_if, const char *out_if,
    const char *src, const char *dst, uint16_t dport)
{
	memset(in, 0, sizeof(*in));
	snprintf(in->in_ifname, sizeof(in->in_ifname), "%s", in_if);
	snprintf(in->out_ifname, sizeof(in->out_ifname), "%s", out_if);
	in->family = strchr(src, ':') ? AF_INET6 : AF_INET;
	assert_int_equal(inet_pton(in->family, src, in->src), 1);
	assert_int_equal(inet_pton(in->family, dst, in->dst), 1);
	in->sport = 40000;
	in->dport = dport;
}

#define INTERCEPT DECISION_INTERCEPT
#define BYPASS DECISION_BYPASS
#define REJECT DECISION_REJECT

static const struct {
	const char *in_if, *out_if, *src, *dst;
	uint16_t dport;
	enum decision decision;
	const char *policy; /* NULL: none */
	const char *reason;
	bool inbound;
} table[] = {
	/* Ingress interface in no zone: rejected before any policy. */
	{"eth9", "wan0", "192.0.2.5", "192.0.2.99", 25, REJECT, NULL, "no-zone", false},
	{"", "wan0", "192.0.2.5", "192.0.2.99", 25, REJECT, NULL, "no-zone", false},

	/* Outbound, first match wins: Out-Plain before Out-Shadowed. */
	{"lan0", "wan0", "192.0.2.5", "8.8.8.8", 25, INTERCEPT, "Out-Plain", "policy", false},
	{"lan1", "wan0", "192.0.2.255", "8.8.8.8", 25, INTERCEPT, "Out-Plain", "policy", false},
	/* tls-support disabled covers 25 only; required covers 465 only. */
	{"lan0", "wan0", "192.0.2.5", "8.8.8.8", 465, INTERCEPT, "Out-Smtps", "policy", false},
	{"lan0", "wan0", "10.0.0.1", "8.8.8.8", 465, INTERCEPT, "Out-Smtps", "policy", false},
	{"lan0", "wan0", "10.0.0.1", "8.8.8.8", 25, REJECT, NULL, "no-policy", false},
	{"lan0", "wan0", "192.0.2.5", "8.8.8.8", 587, REJECT, NULL, "no-policy", false},
	/* Source prefix edges. */
	{"lan0", "wan0", "192.0.3.0", "8.8.8.8", 25, REJECT, NULL, "no-policy", false},
	{"lan0", "wan0", "192.0.1.255", "8.8.8.8", 25, REJECT, NULL, "no-policy", false},
	/* IPv6 source prefixes; the v4-only Out-Shadowed never matches v6. */
	{"lan0", "wan0", "2001:db8:1:ffff::5", "2001:db8:ff::1", 25, INTERCEPT, "Out-Plain",
	    "policy", false},
	{"lan0", "wan0", "2001:db8:2::5", "2001:db8:ff::1", 25, REJECT, NULL, "no-policy", false},
	{"lan0", "wan0", "2001:db8:2::5", "2001:db8:ff::1", 465, INTERCEPT, "Out-Smtps",
	    "policy", false},

	/* to = any also matches an unknown egress zone; named to-zones never do. */
	{"lan0", "wan0", "10.0.0.1", "203.0.113.9", 25, INTERCEPT, "Anywhere", "policy", false},
	{"lan0", "", "192.0.2.5", "203.0.113.9", 25, INTERCEPT, "Anywhere", "policy", false},
	{"lan0", "eth9", "192.0.2.5", "203.0.113.9", 25, INTERCEPT, "Anywhere", "policy", false},
	{"lan0", "", "192.0.2.5", "8.8.8.8", 25, REJECT, NULL, "no-policy", false},
	{"lan0", "eth9", "192.0.2.5", "8.8.8.8", 465, REJECT, NULL, "no-policy", false},

	/* packet-filter -> bypass; tls-support enabled covers 25 and 465. */
	{"dmz0", "wan0", "10.1.0.1", "8.8.8.8", 25, BYPASS, "DMZ-Filter", "policy", false},
	{"dmz0", "wan0", "10.1.0.1", "8.8.8.8", 465, BYPASS, "DMZ-Filter", "policy", false},
	{"dmz0", "wan0", "10.1.0.1", "8.8.8.8", 587, REJECT, NULL, "no-policy", false},
	{"dmz0", "lan0", "10.1.0.1", "10.0.0.1", 25, REJECT, NULL, "no-policy", false},

	/* Inbound iff the ingress zone is external, whatever the decision. */
	{"wan0", "lan0", "8.8.8.8", "198.51.100.7", 25, INTERCEPT, "In", "policy", true},
	{"wan0", "dmz0", "8.8.8.8", "198.51.100.7", 465, INTERCEPT, "In", "policy", true},
	{"wan0", "lan0", "2001:db8:ff::1", "2001:db8:2:3::25", 25, INTERCEPT, "In", "policy",
	    true},
	{"wan0", "lan0", "8.8.8.8", "192.0.2.7", 25, REJECT, NULL, "no-policy", true},
	{"wan0", "lan0", "2001:db8:ff::1", "2001:db8:3::25", 25, REJECT, NULL, "no-policy", true},
	{"wan0", "wan0", "8.8.8.8", "198.51.100.7", 25, REJECT, NULL, "no-policy", true},
	{"vpn0", "lan0", "10.9.0.1", "198.51.100.7", 25, REJECT, NULL, "no-policy", true},
};

static void
test_decision_table(void **state)
{
	struct classify_input in;
	struct classify_result r;

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		int want_policy = table[i].policy ? policy_index(table[i].policy) : -1;
		int want_from = config_zone_of_iface(conf, table[i].in_if);
		int want_to = config_zone_of_iface(conf, table[i].out_if);

		make_input(&in, table[i].in_if, table[i].out_if, table[i].src, table[i].dst,
		    table[i].dport);
		memset(&r, 0xa5, sizeof(r));
		classify(conf, &in, &r);
		if (r.f.decision != table[i].decision || r.f.policy != want_policy ||
		    r.f.inbound != table[i].inbound || strcmp(r.reason, table[i].reason) != 0)
			fail_msg("row %zu (%s -> %s, %s -> %s:%u): got %s policy=%d inbound=%d "
			    "reason=%s", i, table[i].in_if, table[i].out_if, table[i].src,
			    table[i].dst, table[i].dport, decision_name(r.f.decision), r.f.policy,
			    r.f.inbound, r.reason);
		assert_int_equal(r.f.zone, want_from);
		assert_int_equal(r.to_zone, want_to);
	}
}

/* With Off enabled it wins everything: the rows above only hold because it is skipped. */
static void
test_disabled_policy_skipped(void **state)
{
	struct classify_input in;
	struct classify_result r;
	int off = policy_index("Off");

	conf->policies[off].enabled = true;
	make_input(&in, "dmz0", "wan0", "10.1.0.1", "8.8.8.8", 25);
	classify(conf, &in, &r);
	conf->policies[off].enabled = false;
	assert_int_equal(r.f.decision, DECISION_INTERCEPT);
	assert_int_equal(r.f.policy, off);

	classify(conf, &in, &r);
	assert_int_equal(r.f.decision, DECISION_BYPASS);
	assert_int_equal(r.f.policy, policy_index("DMZ-Filter"));
}

/* A configuration without zones rejects everything. */
static void
test_empty_config(void **state)
{
	struct config *c = malloc(sizeof(*c));
	struct classify_input in;
	struct classify_result r;

	assert_non_null(c);
	config_defaults(c);
	make_input(&in, "lan0", "wan0", "192.0.2.5", "8.8.8.8", 25);
	classify(c, &in, &r);
	assert_int_equal(r.f.decision, DECISION_REJECT);
	assert_string_equal(r.reason, "no-zone");
	free(c);
}

/* ---- classify_parse_packet ---- */

/* A TCP SYN header: ports and flags, the rest zero. */
static size_t
put_tcp(uint8_t *p, uint16_t sport, uint16_t dport)
{
	memset(p, 0, 20);
	p[0] = (uint8_t)(sport >> 8);
	p[1] = (uint8_t)sport;
	p[2] = (uint8_t)(dport >> 8);
	p[3] = (uint8_t)dport;
	p[12] = 5 << 4; /* data offset */
	p[13] = 0x02;   /* SYN */
	return 20;
}

/* IPv4 header with ihl_words * 4 bytes (options zero). */
static size_t
put_ip4(uint8_t *p, unsigned ihl_words, uint8_t proto, const char *src, const char *dst)
{
	size_t ihl = ihl_words * 4;

	memset(p, 0, ihl < 20 ? 20 : ihl);
	p[0] = (uint8_t)(0x40 | ihl_words);
	p[8] = 64;
	p[9] = proto;
	assert_int_equal(inet_pton(AF_INET, src, p + 12), 1);
	assert_int_equal(inet_pton(AF_INET, dst, p + 16), 1);
	return ihl < 20 ? 20 : ihl;
}

static size_t
put_ip6(uint8_t *p, uint8_t next, const char *src, const char *dst)
{
	memset(p, 0, 40);
	p[0] = 0x60;
	p[6] = next;
	p[7] = 64;
	assert_int_equal(inet_pton(AF_INET6, src, p + 8), 1);
	assert_int_equal(inet_pton(AF_INET6, dst, p + 24), 1);
	return 40;
}

/* An extension header of (len8 + 1) * 8 bytes. */
static size_t
put_ext(uint8_t *p, uint8_t next, uint8_t len8)
{
	size_t n = ((size_t)len8 + 1) * 8;

	memset(p, 0, n);
	p[0] = next;
	p[1] = len8;
	return n;
}

/* Parse from an exact-size heap copy, so the sanitizer sees any overread. */
static int
parse_exact(const uint8_t *pkt, size_t len, struct classify_input *in)
{
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	if (len)
		memcpy(copy, pkt, len);
	rc = classify_parse_packet(copy, len, in);
	free(copy);
	return rc;
}

/* Every truncation shorter than `need` fails; need and longer succeed. */
static void
check_truncations(const uint8_t *pkt, size_t full, size_t need)
{
	struct classify_input in;

	for (size_t len = 0; len <= full; len++) {
		int rc = parse_exact(pkt, len, &in);

		if (rc != (len < need ? -1 : 0))
			fail_msg("len %zu of %zu: rc %d", len, full, rc);
	}
}

static void
test_parse_ipv4(void **state)
{
	uint8_t pkt[80], want[4];
	struct classify_input in;
	size_t n;

	n = put_ip4(pkt, 5, IPPROTO_TCP, "192.0.2.5", "198.51.100.7");
	n += put_tcp(pkt + n, 40000, 25);
	memset(&in, 0xa5, sizeof(in));
	assert_int_equal(parse_exact(pkt, n, &in), 0);
	assert_int_equal(in.family, AF_INET);
	inet_pton(AF_INET, "192.0.2.5", want);
	assert_memory_equal(in.src, want, 4);
	inet_pton(AF_INET, "198.51.100.7", want);
	assert_memory_equal(in.dst, want, 4);
	for (int i = 4; i < 16; i++) {
		assert_int_equal(in.src[i], 0);
		assert_int_equal(in.dst[i], 0);
	}
	assert_int_equal(in.sport, 40000);
	assert_int_equal(in.dport, 25);
	/* Only the ports are needed from the TCP header. */
	check_truncations(pkt, n, 20 + 4);

	/* IPv4 options: the TCP header starts after IHL * 4 bytes. */
	n = put_ip4(pkt, 15, IPPROTO_TCP, "192.0.2.5", "198.51.100.7");
	n += put_tcp(pkt + n, 1234, 465);
	assert_int_equal(parse_exact(pkt, n, &in), 0);
	assert_int_equal(in.sport, 1234);
	assert_int_equal(in.dport, 465);
	check_truncations(pkt, n, 60 + 4);
}

static void
test_parse_ipv4_bad(void **state)
{
	uint8_t pkt[80];
	struct classify_input in;
	size_t n;

	/* IHL below the minimum header. */
	for (unsigned ihl = 0; ihl < 5; ihl++) {
		n = put_ip4(pkt, 5, IPPROTO_TCP, "192.0.2.5", "198.51.100.7");
		n += put_tcp(pkt + n, 40000, 25);
		pkt[0] = (uint8_t)(0x40 | ihl);
		assert_int_equal(parse_exact(pkt, n, &in), -1);
	}
	/* IHL beyond the packet. */
	n = put_ip4(pkt, 5, IPPROTO_TCP, "192.0.2.5", "198.51.100.7");
	pkt[0] = 0x4f;
	assert_int_equal(parse_exact(pkt, 40, &in), -1);

	/* Not TCP. */
	n = put_ip4(pkt, 5, IPPROTO_UDP, "192.0.2.5", "198.51.100.7");
	n += put_tcp(pkt + n, 40000, 25);
	assert_int_equal(parse_exact(pkt, n, &in), -1);

	/* Fragments: a first fragment (MF set) is fine, a later one has no TCP header. */
	n = put_ip4(pkt, 5, IPPROTO_TCP, "192.0.2.5", "198.51.100.7");
	n += put_tcp(pkt + n, 40000, 25);
	pkt[6] = 0x20; /* MF, offset 0 */
	assert_int_equal(parse_exact(pkt, n, &in), 0);
	pkt[6] = 0x20;
	pkt[7] = 0x01; /* offset 8 bytes */
	assert_int_equal(parse_exact(pkt, n, &in), -1);
	pkt[6] = 0x1f; /* offset high bits only */
	pkt[7] = 0x00;
	assert_int_equal(parse_exact(pkt, n, &in), -1);
	pkt[6] = 0x40; /* DF alone is not a fragment */
	assert_int_equal(parse_exact(pkt, n, &in), 0);
}

static void
test_parse_ipv6(void **state)
{
	uint8_t pkt[160], want[16];
	struct classify_input in;
	size_t n;

	n = put_ip6(pkt, IPPROTO_TCP, "2001:db8:1::5", "2001:db8:2::25");
	n += put_tcp(pkt + n, 50000, 465);
	assert_int_equal(parse_exact(pkt, n, &in), 0);
	assert_int_equal(in.family, AF_INET6);
	inet_pton(AF_INET6, "2001:db8:1::5", want);
	assert_memory_equal(in.src, want, 16);
	inet_pton(AF_INET6, "2001:db8:2::25", want);
	assert_memory_equal(in.dst, want, 16);
	assert_int_equal(in.sport, 50000);
	assert_int_equal(in.dport, 465);
	check_truncations(pkt, n, 40 + 4);

	/* Hop-by-hop options (8 bytes), then TCP. */
	n = put_ip6(pkt, IPPROTO_HOPOPTS, "2001:db8:1::5", "2001:db8:2::25");
	n += put_ext(pkt + n, IPPROTO_TCP, 0);
	n += put_tcp(pkt + n, 50001, 25);
	assert_int_equal(parse_exact(pkt, n, &in), 0);
	assert_int_equal(in.sport, 50001);
	assert_int_equal(in.dport, 25);
	check_truncations(pkt, n, 48 + 4);

	/* Hop-by-hop, routing (24 bytes), destination options, then TCP. */
	n = put_ip6(pkt, IPPROTO_HOPOPTS, "2001:db8:1::5", "2001:db8:2::25");
	n += put_ext(pkt + n, IPPROTO_ROUTING, 0);
	n += put_ext(pkt + n, IPPROTO_DSTOPTS, 2);
	n += put_ext(pkt + n, IPPROTO_TCP, 0);
	n += put_tcp(pkt + n, 50002, 25);
	assert_int_equal(parse_exact(pkt, n, &in), 0);
	assert_int_equal(in.sport, 50002);
	check_truncations(pkt, n, 40 + 8 + 24 + 8 + 4);
}

static void
test_parse_ipv6_bad(void **state)
{
	uint8_t pkt[256];
	struct classify_input in;
	size_t n;

	/* Not TCP, directly and behind an extension header. */
	n = put_ip6(pkt, IPPROTO_UDP, "2001:db8:1::5", "2001:db8:2::25");
	n += put_tcp(pkt + n, 50000, 25);
	assert_int_equal(parse_exact(pkt, n, &in), -1);
	n = put_ip6(pkt, IPPROTO_HOPOPTS, "2001:db8:1::5", "2001:db8:2::25");
	n += put_ext(pkt + n, IPPROTO_ICMPV6, 0);
	n += put_tcp(pkt + n, 50000, 25);
	assert_int_equal(parse_exact(pkt, n, &in), -1);

	/* A fragment header is not walked: fragments are not classified. */
	n = put_ip6(pkt, IPPROTO_FRAGMENT, "2001:db8:1::5", "2001:db8:2::25");
	n += put_ext(pkt + n, IPPROTO_TCP, 0);
	n += put_tcp(pkt + n, 50000, 25);
	assert_int_equal(parse_exact(pkt, n, &in), -1);

	/* An extension header that claims more than the packet holds. */
	n = put_ip6(pkt, IPPROTO_HOPOPTS, "2001:db8:1::5", "2001:db8:2::25");
	n += put_ext(pkt + n, IPPROTO_TCP, 0);
	n += put_tcp(pkt + n, 50000, 25);
	pkt[41] = 255;
	assert_int_equal(parse_exact(pkt, n, &in), -1);

	/* A chain of more than 8 extension headers is refused. */
	n = put_ip6(pkt, IPPROTO_HOPOPTS, "2001:db8:1::5", "2001:db8:2::25");
	for (int i = 0; i < 9; i++)
		n += put_ext(pkt + n, i < 8 ? IPPROTO_DSTOPTS : IPPROTO_TCP, 0);
	n += put_tcp(pkt + n, 50000, 25);
	assert_int_equal(parse_exact(pkt, n, &in), -1);
	/* ... while 8 are fine. */
	n = put_ip6(pkt, IPPROTO_HOPOPTS, "2001:db8:1::5", "2001:db8:2::25");
	for (int i = 0; i < 8; i++)
		n += put_ext(pkt + n, i < 7 ? IPPROTO_DSTOPTS : IPPROTO_TCP, 0);
	n += put_tcp(pkt + n, 50000, 25);
	assert_int_equal(parse_exact(pkt, n, &in), 0);
}

static void
test_parse_not_ip(void **state)
{
	static const uint8_t versions[] = {0x00, 0x50, 0x70, 0xf0};
	uint8_t pkt[64];
	struct classify_input in;

	memset(pkt, 0, sizeof(pkt));
	for (size_t i = 0; i < sizeof(versions); i++) {
		pkt[0] = versions[i] | 5;
		assert_int_equal(parse_exact(pkt, sizeof(pkt), &in), -1);
	}
	assert_int_equal(parse_exact(pkt, 0, &in), -1);
}

/* The parser's output feeds classify directly. */
static void
test_parse_then_classify(void **state)
{
	uint8_t pkt[80];
	struct classify_input in;
	struct classify_result r;
	size_t n;

	n = put_ip4(pkt, 5, IPPROTO_TCP, "8.8.8.8", "198.51.100.7");
	n += put_tcp(pkt + n, 40000, 25);
	memset(&in, 0, sizeof(in));
	snprintf(in.in_ifname, sizeof(in.in_ifname), "wan0");
	snprintf(in.out_ifname, sizeof(in.out_ifname), "lan0");
	assert_int_equal(classify_parse_packet(pkt, n, &in), 0);
	classify(conf, &in, &r);
	assert_int_equal(r.f.decision, DECISION_INTERCEPT);
	assert_int_equal(r.f.policy, policy_index("In"));
	assert_true(r.f.inbound);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decision_table),
		cmocka_unit_test(test_disabled_policy_skipped),
		cmocka_unit_test(test_empty_config),
		cmocka_unit_test(test_parse_ipv4),
		cmocka_unit_test(test_parse_ipv4_bad),
		cmocka_unit_test(test_parse_ipv6),
		cmocka_unit_test(test_parse_ipv6_bad),
		cmocka_unit_test(test_parse_not_ip),
		cmocka_unit_test(test_parse_then_classify),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
