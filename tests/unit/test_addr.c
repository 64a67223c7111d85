/*
 * test_addr - prefix parsing and matching, address formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/un.h>

#include "addr.h"

static const struct {
	const char *text;
	int rc;
	int family;
	unsigned len;
} parse_cases[] = {
	{"192.0.2.0/24", 0, AF_INET, 24},
	{"192.0.2.128/25", 0, AF_INET, 25},
	{"192.0.2.1", 0, AF_INET, 32},
	{"192.0.2.1/32", 0, AF_INET, 32},
	{"0.0.0.0/0", 0, AF_INET, 0},
	{"2001:db8::/32", 0, AF_INET6, 32},
	{"2001:db8::1", 0, AF_INET6, 128},
	{"2001:db8:0:1::/63", -1, 0, 0}, /* bit 63 set */
	{"2001:db8:0:2::/63", 0, AF_INET6, 63},
	{"::/0", 0, AF_INET6, 0},
	{"::ffff:192.0.2.0/120", 0, AF_INET6, 120},
	/* host bits set */
	{"192.0.2.1/24", -1, 0, 0},
	{"192.0.2.128/24", -1, 0, 0},
	{"198.51.0.0/15", -1, 0, 0},
	{"2001:db8::1/64", -1, 0, 0},
	{"::1/127", -1, 0, 0},
	/* bad length */
	{"192.0.2.0/33", -1, 0, 0},
	{"2001:db8::/129", -1, 0, 0},
	{"192.0.2.0/", -1, 0, 0},
	{"192.0.2.0/-1", -1, 0, 0},
	{"192.0.2.0/+24", -1, 0, 0},
	{"192.0.2.0/ 24", -1, 0, 0},
	{"192.0.2.0/24x", -1, 0, 0},
	{"192.0.2.0/24/24", -1, 0, 0},
	{"192.0.2.0/99999999999999999999999", -1, 0, 0},
	/* garbage */
	{"", -1, 0, 0},
	{"/24", -1, 0, 0},
	{"any", -1, 0, 0},
	{"192.0.2", -1, 0, 0},
	{"192.0.2.0.0", -1, 0, 0},
	{"256.0.0.0", -1, 0, 0},
	{" 192.0.2.0", -1, 0, 0},
	{"2001:db8:::1", -1, 0, 0},
	{"[2001:db8::1]", -1, 0, 0},
	{"fe80::1%eth0", -1, 0, 0},
	{"1111:2222:3333:4444:5555:6666:7777:8888:9999/128", -1, 0, 0},
	{"192.0.2.0/0000000000000000000000000000000000000000000000000024", -1, 0, 0}, /* long */
};

static void
test_prefix_parse(void **state)
{
	struct prefix p;

	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		int rc = prefix_parse(parse_cases[i].text, &p);

		if (rc != parse_cases[i].rc)
			fail_msg("\"%s\": rc %d, expected %d", parse_cases[i].text, rc,
			    parse_cases[i].rc);
		if (rc == 0) {
			assert_int_equal(p.family, parse_cases[i].family);
			assert_int_equal(p.len, parse_cases[i].len);
		}
	}
}

static void
test_prefix_bytes(void **state)
{
	static const uint8_t v4[16] = {192, 0, 2, 0};
	static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8};
	struct prefix p;

	assert_int_equal(prefix_parse("192.0.2.0/24", &p), 0);
	assert_memory_equal(p.bytes, v4, 16);
	assert_int_equal(prefix_parse("2001:db8::/32", &p), 0);
	assert_memory_equal(p.bytes, v6, 16);
}

static const struct {
	const char *prefix, *addr;
	bool match;
} match_cases[] = {
	{"192.0.2.0/24", "192.0.2.0", true},
	{"192.0.2.0/24", "192.0.2.255", true},
	{"192.0.2.0/24", "192.0.3.0", false},
	{"192.0.2.0/24", "192.0.1.255", false},
	{"192.0.2.128/25", "192.0.2.128", true},
	{"192.0.2.128/25", "192.0.2.127", false},
	{"198.50.0.0/15", "198.51.255.255", true},
	{"198.50.0.0/15", "198.52.0.0", false},
	{"192.0.2.7", "192.0.2.7", true},
	{"192.0.2.7", "192.0.2.6", false},
	{"0.0.0.0/0", "255.255.255.255", true},
	{"0.0.0.0/0", "::", false}, /* families never mix */
	{"::/0", "0.0.0.0", false},
	{"::/0", "2001:db8::1", true},
	{"2001:db8::/32", "2001:db8:ffff::1", true},
	{"2001:db8::/32", "2001:db9::1", false},
	{"2001:db8:0:2::/63", "2001:db8:0:3:ffff::", true},
	{"2001:db8:0:2::/63", "2001:db8:0:4::", false},
	{"2001:db8::1", "2001:db8::1", true},
	{"2001:db8::1", "2001:db8::2", false},
};

static void
test_prefix_match(void **state)
{
	struct prefix p;
	uint8_t a[16];

	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		int family = strchr(match_cases[i].addr, ':') ? AF_INET6 : AF_INET;

		assert_int_equal(prefix_parse(match_cases[i].prefix, &p), 0);
		memset(a, 0, sizeof(a));
		assert_int_equal(inet_pton(family, match_cases[i].addr, a), 1);
		if (prefix_match(&p, family, a) != match_cases[i].match)
			fail_msg("%s in %s: expected %d", match_cases[i].addr, match_cases[i].prefix,
			    match_cases[i].match);
	}
}

static void
make_sa(union sockaddr_any *a, const char *host, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	if (strchr(host, ':')) {
		a->sin6.sin6_family = AF_INET6;
		a->sin6.sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, host, &a->sin6.sin6_addr), 1);
	} else {
		a->sin.sin_family = AF_INET;
		a->sin.sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, host, &a->sin.sin_addr), 1);
	}
}

static void
test_prefix_match_sa(void **state)
{
	static const struct {
		const char *prefix, *host;
		bool match;
	} cases[] = {
		{"192.0.2.0/24", "192.0.2.7", true},
		{"192.0.2.0/24", "192.0.3.7", false},
		/* IPv4-mapped IPv6 addresses (dual-stack sockets) match IPv4 prefixes. */
		{"192.0.2.0/24", "::ffff:192.0.2.7", true},
		{"192.0.2.0/24", "::ffff:192.0.3.7", false},
		{"0.0.0.0/0", "::ffff:10.1.2.3", true},
		/* ... but an IPv4-compatible or NAT64 address is not mapped. */
		{"0.0.0.0/0", "::192.0.2.7", false},
		{"0.0.0.0/0", "64:ff9b::192.0.2.7", false},
		{"2001:db8::/32", "2001:db8::25", true},
		{"2001:db8::/32", "192.0.2.7", false},
	};
	union sockaddr_any a;
	struct prefix p;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(prefix_parse(cases[i].prefix, &p), 0);
		make_sa(&a, cases[i].host, 25);
		if (prefix_match_sa(&p, &a) != cases[i].match)
			fail_msg("%s in %s: expected %d", cases[i].host, cases[i].prefix,
			    cases[i].match);
	}

	/* Other families match nothing. */
	memset(&a, 0, sizeof(a));
	a.sa.sa_family = AF_UNIX;
	assert_int_equal(prefix_parse("0.0.0.0/0", &p), 0);
	assert_false(prefix_match_sa(&p, &a));
}

static void
test_addr_fmt(void **state)
{
	static const struct {
		const char *host;
		uint16_t port;
		const char *full, *bare;
	} cases[] = {
		{"1.2.3.4", 25, "1.2.3.4:25", "1.2.3.4"},
		{"255.255.255.255", 65535, "255.255.255.255:65535", "255.255.255.255"},
		{"2001:db8::1", 25, "[2001:db8::1]:25", "2001:db8::1"},
		{"::", 0, "[::]:0", "::"},
		{"::ffff:192.0.2.7", 465, "[::ffff:192.0.2.7]:465", "::ffff:192.0.2.7"},
		{"2001:db8:1111:2222:3333:4444:5555:6666", 10025,
		    "[2001:db8:1111:2222:3333:4444:5555:6666]:10025",
		    "2001:db8:1111:2222:3333:4444:5555:6666"},
	};
	union sockaddr_any a;
	char buf[ADDR_STRLEN];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		make_sa(&a, cases[i].host, cases[i].port);
		assert_ptr_equal(addr_fmt(&a, buf, sizeof(buf)), buf);
		assert_string_equal(buf, cases[i].full);
		assert_string_equal(addr_fmt_host(&a, buf, sizeof(buf)), cases[i].bare);
		assert_int_equal(addr_port(&a), cases[i].port);
		assert_int_equal(addr_len(&a), a.sa.sa_family == AF_INET6
		    ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	}
}

static void
test_addr_fmt_odd(void **state)
{
	union sockaddr_any a;
	char buf[ADDR_STRLEN], small[8];

	memset(&a, 0, sizeof(a));
	a.sa.sa_family = AF_UNIX;
	assert_string_equal(addr_fmt_host(&a, buf, sizeof(buf)), "unknown");
	assert_string_equal(addr_fmt(&a, buf, sizeof(buf)), "unknown:0");
	assert_int_equal(addr_port(&a), 0);

	/* A short buffer truncates and stays terminated. */
	make_sa(&a, "192.0.2.100", 25);
	assert_string_equal(addr_fmt(&a, small, sizeof(small)), "192.0.2");
	make_sa(&a, "2001:db8::1", 25);
	assert_string_equal(addr_fmt(&a, small, sizeof(small)), "[2001:d");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefix_parse),
		cmocka_unit_test(test_prefix_bytes),
		cmocka_unit_test(test_prefix_match),
		cmocka_unit_test(test_prefix_match_sa),
		cmocka_unit_test(test_addr_fmt),
		cmocka_unit_test(test_addr_fmt_odd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
