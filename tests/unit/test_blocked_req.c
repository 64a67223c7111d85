/*
 * test_blocked_req - block requests on their way from a worker to the
 * blocker: making one from a socket address, the wire format (every field
 * a compromised worker could bend is refused), exceptions, the default and
 * longest block, the rate limit, the recent-additions ring, the nft
 * command; the [global] blocked-sites-* keys; and agreement of the names
 * with nftables/smtpgw.nft.in.
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
#include <sys/socket.h>

#include "blocked_req.h"
#include "config.h"

static union sockaddr_any
sa(const char *addr, uint16_t port)
{
	union sockaddr_any a;

	memset(&a, 0, sizeof(a));
	if (strchr(addr, ':')) {
		a.sin6.sin6_family = AF_INET6;
		a.sin6.sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, addr, &a.sin6.sin6_addr), 1);
	} else {
		a.sin.sin_family = AF_INET;
		a.sin.sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, addr, &a.sin.sin_addr), 1);
	}
	return a;
}

static const char *
fmt(const struct blocked_req *r, char *buf, size_t len)
{
	assert_non_null(inet_ntop(r->family, r->addr, buf, (socklen_t)len));
	return buf;
}

/* ---- making a request ---- */

static void
test_make(void **state)
{
	struct blocked_req r;
	union sockaddr_any a;
	const char *why = NULL;
	char buf[INET6_ADDRSTRLEN];

	a = sa("192.0.2.10", 40000);
	assert_int_equal(blocked_req_make(&r, &a, 60, "max-errors", 0x4f2a91c0e1d3ull, &why), 0);
	assert_int_equal(r.family, AF_INET);
	assert_string_equal(fmt(&r, buf, sizeof(buf)), "192.0.2.10");
	assert_int_equal(r.seconds, 60);
	assert_int_equal(r.sid, 0x4f2a91c0e1d3ull);
	assert_string_equal(r.reason, "max-errors");

	a = sa("2001:db8:2::10", 25);
	assert_int_equal(blocked_req_make(&r, &a, 0, "Rule_1.exe", 0, &why), 0);
	assert_int_equal(r.family, AF_INET6);
	assert_string_equal(fmt(&r, buf, sizeof(buf)), "2001:db8:2::10");

	/* An IPv4 client seen on a dual-stack socket is blocked as IPv4. */
	a = sa("::ffff:198.51.100.10", 25);
	assert_int_equal(blocked_req_make(&r, &a, 0, "x", 1, &why), 0);
	assert_int_equal(r.family, AF_INET);
	assert_string_equal(fmt(&r, buf, sizeof(buf)), "198.51.100.10");
}

static void
test_make_refused(void **state)
{
	static const struct {
		const char *addr;
		unsigned seconds;
		const char *reason;
		uint64_t sid;
		const char *why;
	} rows[] = {
		{ "0.0.0.0", 0, "r", 1, "address" },
		{ "0.1.2.3", 0, "r", 1, "address" },
		{ "127.0.0.1", 0, "r", 1, "address" },
		{ "127.255.0.9", 0, "r", 1, "address" },
		{ "224.0.0.1", 0, "r", 1, "address" },
		{ "239.255.255.255", 0, "r", 1, "address" },
		{ "255.255.255.255", 0, "r", 1, "address" },
		{ "::", 0, "r", 1, "address" },
		{ "::1", 0, "r", 1, "address" },
		{ "ff02::1", 0, "r", 1, "address" },
		{ "::ffff:127.0.0.1", 0, "r", 1, "address" },
		{ "192.0.2.10", BLOCKED_TIMEOUT_MAX + 1, "r", 1, "seconds" },
		{ "192.0.2.10", 0, "", 1, "reason" },
		{ "192.0.2.10", 0, "two words", 1, "reason" },
		{ "192.0.2.10", 0, "q\"uote", 1, "reason" },
		{ "192.0.2.10", 0, "brace}", 1, "reason" },
		{ "192.0.2.10", 0, "semi;colon", 1, "reason" },
		{ "192.0.2.10", 0, "new\nline", 1, "reason" },
		{ "192.0.2.10", 0, "\xc3\xa9t\xc3\xa9", 1, "reason" },
		{ "192.0.2.10", 0,
		  "a123456789b123456789c123456789d123456789e123456789f123456789g123", 1,
		  "reason" },
		{ "192.0.2.10", 0, "r", 0x1000000000000ull, "sid" },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct blocked_req r;
		union sockaddr_any a = sa(rows[i].addr, 25);
		const char *why = NULL;

		if (blocked_req_make(&r, &a, rows[i].seconds, rows[i].reason, rows[i].sid, &why) != -1)
			fail_msg("row %zu (%s, %s): accepted", i, rows[i].addr, rows[i].reason);
		assert_non_null(why);
		if (strcmp(why, rows[i].why) != 0)
			fail_msg("row %zu: why=%s, expected %s", i, why, rows[i].why);
	}

	/* 63 characters is the longest reason, NULL none at all. */
	struct blocked_req r;
	union sockaddr_any a = sa("192.0.2.10", 25), u;
	const char *why;
	char longest[BLOCKED_REASON_MAX + 1];

	memset(longest, 'z', BLOCKED_REASON_MAX);
	longest[BLOCKED_REASON_MAX] = '\0';
	assert_int_equal(blocked_req_make(&r, &a, BLOCKED_TIMEOUT_MAX, longest, 0xffffffffffffull,
	    &why), 0);
	assert_int_equal(blocked_req_make(&r, &a, 0, NULL, 1, &why), -1);
	assert_string_equal(why, "reason");
	assert_int_equal(blocked_req_make(&r, NULL, 0, "r", 1, &why), -1);
	memset(&u, 0, sizeof(u));
	u.sa.sa_family = AF_UNIX;
	assert_int_equal(blocked_req_make(&r, &u, 0, "r", 1, &why), -1);
	assert_string_equal(why, "family");
}

/* ---- the wire ---- */

static void
encode(const char *addr, unsigned seconds, const char *reason, uint64_t sid,
    uint8_t out[BLOCKED_REQ_WIRE])
{
	struct blocked_req r;
	union sockaddr_any a = sa(addr, 25);
	const char *why;

	assert_int_equal(blocked_req_make(&r, &a, seconds, reason, sid, &why), 0);
	blocked_req_encode(&r, out);
}

static void
test_wire_round_trip(void **state)
{
	uint8_t w[BLOCKED_REQ_WIRE];
	struct blocked_req r;
	const char *why;
	char buf[INET6_ADDRSTRLEN];

	encode("198.51.100.10", 300, "rcpt-rule.7", 0x0123456789abull, w);
	/* the documented layout */
	assert_int_equal(w[0], BLOCKED_REQ_VERSION);
	assert_int_equal(w[1], 4);
	assert_int_equal(w[2], 11);
	assert_int_equal(w[3], 0);
	assert_memory_equal(w + 16, "\xc6\x33\x64\x0a", 4);
	assert_memory_equal(w + 32, "rcpt-rule.7", 11);
	assert_int_equal(blocked_req_decode(w, sizeof(w), &r, &why), 0);
	assert_int_equal(r.family, AF_INET);
	assert_string_equal(fmt(&r, buf, sizeof(buf)), "198.51.100.10");
	assert_int_equal(r.seconds, 300);
	assert_int_equal(r.sid, 0x0123456789abull);
	assert_string_equal(r.reason, "rcpt-rule.7");

	encode("2001:db8:2::10", 0, "x", 0, w);
	assert_int_equal(w[1], 6);
	assert_int_equal(blocked_req_decode(w, sizeof(w), &r, &why), 0);
	assert_int_equal(r.family, AF_INET6);
	assert_string_equal(fmt(&r, buf, sizeof(buf)), "2001:db8:2::10");
	assert_int_equal(r.seconds, 0);
}

/* What a taken-over worker could send instead. */
static void
test_wire_refused(void **state)
{
	uint8_t good[BLOCKED_REQ_WIRE], w[BLOCKED_REQ_WIRE + 1];
	struct blocked_req r;
	const char *why;
	uint32_t secs;
	uint64_t sid;

	encode("192.0.2.10", 60, "abc", 7, good);

#define REFUSED(expect) do { \
		why = NULL; \
		assert_int_equal(blocked_req_decode(w, BLOCKED_REQ_WIRE, &r, &why), -1); \
		assert_non_null(why); \
		assert_string_equal(why, expect); \
		assert_int_equal(r.family, 0); /* nothing half-filled */ \
	} while (0)

	memcpy(w, good, sizeof(good));
	assert_int_equal(blocked_req_decode(w, BLOCKED_REQ_WIRE - 1, &r, &why), -1);
	assert_string_equal(why, "length");
	w[BLOCKED_REQ_WIRE] = 0;
	assert_int_equal(blocked_req_decode(w, BLOCKED_REQ_WIRE + 1, &r, &why), -1);
	assert_string_equal(why, "length");
	assert_int_equal(blocked_req_decode(w, 0, &r, &why), -1);

	memcpy(w, good, sizeof(good)); w[0] = 2; REFUSED("version");
	memcpy(w, good, sizeof(good)); w[1] = 5; REFUSED("family");
	memcpy(w, good, sizeof(good)); w[1] = 0; REFUSED("family");
	memcpy(w, good, sizeof(good)); w[3] = 1; REFUSED("padding");
	/* IPv4 with bytes after its 4 */
	memcpy(w, good, sizeof(good)); w[20] = 1; REFUSED("address");
	memcpy(w, good, sizeof(good)); w[31] = 1; REFUSED("address");
	/* never-blocked addresses */
	memcpy(w, good, sizeof(good)); memcpy(w + 16, "\x7f\0\0\1", 4); REFUSED("address");
	memcpy(w, good, sizeof(good)); memset(w + 16, 0, 4); REFUSED("address");
	memcpy(w, good, sizeof(good)); memcpy(w + 16, "\xe0\0\0\x05", 4); REFUSED("address");
	memcpy(w, good, sizeof(good)); w[1] = 6; memset(w + 16, 0, 16); w[31] = 1;
	REFUSED("address");
	memcpy(w, good, sizeof(good)); w[1] = 6; memset(w + 16, 0, 16); w[26] = 0xff;
	w[27] = 0xff; w[28] = 192; w[29] = 0; w[30] = 2; w[31] = 10; REFUSED("address");
	/* seconds */
	memcpy(w, good, sizeof(good));
	secs = BLOCKED_TIMEOUT_MAX + 1;
	memcpy(w + 4, &secs, 4);
	REFUSED("seconds");
	secs = 0xffffffffu;
	memcpy(w + 4, &secs, 4);
	REFUSED("seconds");
	/* sid beyond 48 bits */
	memcpy(w, good, sizeof(good));
	sid = 1ull << 48;
	memcpy(w + 8, &sid, 8);
	REFUSED("sid");
	/* reason: length, characters, what follows it */
	memcpy(w, good, sizeof(good)); w[2] = 0; REFUSED("reason");
	memcpy(w, good, sizeof(good)); w[2] = 64; REFUSED("reason");
	memcpy(w, good, sizeof(good)); w[2] = 255; REFUSED("reason");
	memcpy(w, good, sizeof(good)); w[2] = 4; REFUSED("reason"); /* its 4th byte is 0 */
	memcpy(w, good, sizeof(good)); w[2] = 2; REFUSED("reason"); /* 'c' after the reason */
	memcpy(w, good, sizeof(good)); w[33] = '"'; REFUSED("reason");
	memcpy(w, good, sizeof(good)); w[33] = ' '; REFUSED("reason");
	memcpy(w, good, sizeof(good)); w[33] = '}'; REFUSED("reason");
	memcpy(w, good, sizeof(good)); w[33] = '\n'; REFUSED("reason");
	memcpy(w, good, sizeof(good)); w[33] = (uint8_t)'\xc3'; REFUSED("reason");
	memcpy(w, good, sizeof(good)); w[95] = 'x'; REFUSED("reason");
#undef REFUSED
}

/* ---- exceptions, seconds ---- */

static void
test_exceptions(void **state)
{
	struct blocked_settings s;
	uint8_t a[16];

	memset(&s, 0, sizeof(s));
	assert_int_equal(prefix_parse("192.0.2.0/24", &s.exceptions[0]), 0);
	assert_int_equal(prefix_parse("198.51.100.25", &s.exceptions[1]), 0);
	assert_int_equal(prefix_parse("2001:db8:1::/48", &s.exceptions[2]), 0);
	s.n_exceptions = 3;

	static const struct {
		const char *addr;
		bool excepted;
	} rows[] = {
		{ "192.0.2.1", true }, { "192.0.2.255", true }, { "192.0.3.1", false },
		{ "198.51.100.25", true }, { "198.51.100.26", false }, { "198.51.100.24", false },
		{ "2001:db8:1::10", true }, { "2001:db8:1:ffff::1", true },
		{ "2001:db8:2::10", false },
		/* the IPv4 prefix never matches IPv6, nor the reverse */
		{ "::c000:20a", false },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int fam = strchr(rows[i].addr, ':') ? AF_INET6 : AF_INET;

		memset(a, 0, sizeof(a));
		assert_int_equal(inet_pton(fam, rows[i].addr, a), 1);
		if (blocked_excepted(&s, fam, a) != rows[i].excepted)
			fail_msg("row %zu (%s): expected %s", i, rows[i].addr,
			    rows[i].excepted ? "excepted" : "not excepted");
	}
	s.n_exceptions = 0;
	assert_int_equal(inet_pton(AF_INET, "192.0.2.1", a), 1);
	assert_false(blocked_excepted(&s, AF_INET, a));
}

static void
test_seconds(void **state)
{
	struct blocked_settings s = { .timeout = 1200 };
	struct blocked_req r = { .family = AF_INET };

	r.seconds = 0;
	assert_int_equal(blocked_req_seconds(&r, &s), 1200);
	r.seconds = 5;
	assert_int_equal(blocked_req_seconds(&r, &s), 5);
	r.seconds = BLOCKED_TIMEOUT_MAX;
	assert_int_equal(blocked_req_seconds(&r, &s), BLOCKED_TIMEOUT_MAX);
	r.seconds = BLOCKED_TIMEOUT_MAX + 100;
	assert_int_equal(blocked_req_seconds(&r, &s), BLOCKED_TIMEOUT_MAX);
	s.timeout = 0;
	r.seconds = 0;
	assert_int_equal(blocked_req_seconds(&r, &s), 1);
}

/* ---- rate limit, recent additions ---- */

static void
test_rate(void **state)
{
	struct blocked_rate b;
	uint64_t t = 1000000;

	blocked_rate_init(&b, 5, t);
	for (int i = 0; i < 5; i++)
		assert_true(blocked_rate_take(&b, t));
	assert_false(blocked_rate_take(&b, t));
	/* 5 per second: one token every 200 ms */
	assert_false(blocked_rate_take(&b, t + 199));
	assert_true(blocked_rate_take(&b, t + 200));
	assert_false(blocked_rate_take(&b, t + 200));
	/* a long pause fills the bucket to one second's worth, no more */
	t += 3600 * 1000;
	for (int i = 0; i < 5; i++)
		assert_true(blocked_rate_take(&b, t));
	assert_false(blocked_rate_take(&b, t));
	/* a clock that goes back gives nothing */
	assert_false(blocked_rate_take(&b, t - 10000));
	assert_false(blocked_rate_take(&b, t - 10000 + 199));

	/* 1000 requests a second, sustained for 10 s: 10000 + the first burst */
	unsigned got = 0;
	blocked_rate_init(&b, 1000, 0);
	for (uint64_t ms = 0; ms < 10000; ms++)
		for (int i = 0; i < 5; i++)
			got += blocked_rate_take(&b, ms);
	assert_in_range(got, 10000, 11000);
	/* rate 0 is treated as 1 */
	blocked_rate_init(&b, 0, 0);
	assert_true(blocked_rate_take(&b, 0));
	assert_false(blocked_rate_take(&b, 999));
	assert_true(blocked_rate_take(&b, 1000));
}

static struct blocked_req
req(const char *addr)
{
	struct blocked_req r;
	union sockaddr_any a = sa(addr, 25);
	const char *why;

	assert_int_equal(blocked_req_make(&r, &a, 0, "r", 1, &why), 0);
	return r;
}

static void
test_recent(void **state)
{
	static struct blocked_recent c;
	struct blocked_req r1 = req("192.0.2.10"), r2 = req("192.0.2.11"),
	    r6 = req("2001:db8::c000:20a");
	uint64_t t = 50000;

	memset(&c, 0, sizeof(c));
	assert_false(blocked_recent_seen(&c, &r1, t));
	blocked_recent_note(&c, &r1, t);
	assert_true(blocked_recent_seen(&c, &r1, t));
	assert_true(blocked_recent_seen(&c, &r1, t + BLOCKED_RECENT_MS - 1));
	assert_false(blocked_recent_seen(&c, &r1, t + BLOCKED_RECENT_MS));
	assert_false(blocked_recent_seen(&c, &r2, t));
	assert_false(blocked_recent_seen(&c, &r6, t));
	/* a ring: after BLOCKED_RECENT other addresses r1 is forgotten */
	for (int i = 0; i < BLOCKED_RECENT; i++) {
		char a[32];
		struct blocked_req x;

		snprintf(a, sizeof(a), "198.51.100.%d", i + 1);
		x = req(a);
		blocked_recent_note(&c, &x, t);
	}
	assert_false(blocked_recent_seen(&c, &r1, t));
}

/* ---- the nft command ---- */

static void
test_nft_cmd(void **state)
{
	struct blocked_req r = req("192.0.2.10");
	char buf[BLOCKED_NFT_CMD_MAX];

	snprintf(r.reason, sizeof(r.reason), "max-errors");
	r.sid = 0x4f2a91c0e1d3ull;
	assert_true(blocked_req_nft_cmd(&r, 1200, buf, sizeof(buf)) > 0);
	assert_string_equal(buf,
	    "add element inet smtpgw_blocked blocked4 { 192.0.2.10 timeout 1200s }\n"
	    "delete element inet smtpgw_blocked blocked4 { 192.0.2.10 }\n"
	    "add element inet smtpgw_blocked blocked4 { 192.0.2.10 timeout 1200s "
	    "comment \"smtpgw reason=max-errors sid=4f2a91c0e1d3\" }\n");

	r = req("2001:db8:2::10");
	r.sid = 0;
	assert_true(blocked_req_nft_cmd(&r, 1, buf, sizeof(buf)) > 0);
	assert_string_equal(buf,
	    "add element inet smtpgw_blocked blocked6 { 2001:db8:2::10 timeout 1s }\n"
	    "delete element inet smtpgw_blocked blocked6 { 2001:db8:2::10 }\n"
	    "add element inet smtpgw_blocked blocked6 { 2001:db8:2::10 timeout 1s "
	    "comment \"smtpgw reason=r sid=000000000000\" }\n");

	/* the longest request fits in BLOCKED_NFT_CMD_MAX */
	r = req("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
	memset(r.reason, 'z', BLOCKED_REASON_MAX);
	r.reason[BLOCKED_REASON_MAX] = '\0';
	r.sid = 0xffffffffffffull;
	assert_true(blocked_req_nft_cmd(&r, BLOCKED_TIMEOUT_MAX, buf, sizeof(buf)) > 0);
	assert_int_equal(blocked_req_nft_cmd(&r, BLOCKED_TIMEOUT_MAX, buf, 300), -1);

	/* whatever reaches it unchecked is refused, never written */
	r = req("192.0.2.10");
	snprintf(r.reason, sizeof(r.reason), "a\" } ; flush ruleset ; #");
	assert_int_equal(blocked_req_nft_cmd(&r, 60, buf, sizeof(buf)), -1);
	r = req("192.0.2.10");
	assert_int_equal(blocked_req_nft_cmd(&r, 0, buf, sizeof(buf)), -1);
	assert_int_equal(blocked_req_nft_cmd(&r, BLOCKED_TIMEOUT_MAX + 1, buf, sizeof(buf)), -1);
	r.family = AF_UNIX;
	assert_int_equal(blocked_req_nft_cmd(&r, 60, buf, sizeof(buf)), -1);
	r = req("192.0.2.10");
	r.addr[0] = 127;
	assert_int_equal(blocked_req_nft_cmd(&r, 60, buf, sizeof(buf)), -1);
	r = req("192.0.2.10");
	r.sid = 1ull << 48;
	assert_int_equal(blocked_req_nft_cmd(&r, 60, buf, sizeof(buf)), -1);
}

/* ---- configuration ---- */

static void
test_config_keys(void **state)
{
	static struct config c;
	struct blocked_settings s;
	char err[512];
	const char *ok =
	    "[global]\n"
	    "blocked-sites-timeout = 600\n"
	    "blocked-sites-max = 500\n"
	    "blocked-sites-rate = 3\n"
	    "blocked-sites-exceptions = 192.0.2.0/24 2001:db8:1::25\n";

	assert_int_equal(config_parse(&c, "t.conf", "", 0, err, sizeof(err)), 0);
	assert_int_equal(c.blocked_timeout, 1200);
	assert_int_equal(c.blocked_max, 10000);
	assert_int_equal(c.blocked_rate, 20);
	assert_int_equal(c.n_blocked_exceptions, 0);

	/* absolute: the dump's tls-dir (beside the file) must parse back */
	if (config_parse(&c, "/etc/smtpgw/t.conf", ok, strlen(ok), err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c.blocked_timeout, 600);
	assert_int_equal(c.blocked_max, 500);
	assert_int_equal(c.blocked_rate, 3);
	assert_int_equal(c.n_blocked_exceptions, 2);
	blocked_settings_from_config(&s, &c);
	assert_int_equal(s.timeout, 600);
	assert_int_equal(s.rate, 3);
	assert_int_equal(s.n_exceptions, 2);
	assert_int_equal(s.exceptions[1].family, AF_INET6);
	assert_int_equal(s.exceptions[1].len, 128);

	/* the dump reads back to the same values */
	char dump[65536];
	FILE *f = fmemopen(dump, sizeof(dump), "w");
	assert_non_null(f);
	config_dump(&c, f);
	fclose(f);
	assert_non_null(strstr(dump, "\nblocked-sites-timeout = 600\n"));
	assert_non_null(strstr(dump, "\nblocked-sites-max = 500\n"));
	assert_non_null(strstr(dump, "\nblocked-sites-rate = 3\n"));
	assert_non_null(strstr(dump,
	    "\nblocked-sites-exceptions = 192.0.2.0/24 2001:db8:1::25/128\n"));
	/* its [global] section, that is (predefined sections are read-only) */
	char *next = strstr(dump, "\n[tls-profile ");
	assert_non_null(next);
	next[1] = '\0';
	if (config_parse(&c, "/etc/smtpgw/dump.conf", dump, strlen(dump), err, sizeof(err)) != 0)
		fail_msg("dump does not parse back: %s", err);
	assert_int_equal(c.n_blocked_exceptions, 2);

	/* "none" clears; an empty list shows as none */
	const char *none = "[global]\nblocked-sites-exceptions = 192.0.2.0/24\n"
	    "blocked-sites-exceptions = none\n";
	assert_int_equal(config_parse(&c, "t.conf", none, strlen(none), err, sizeof(err)), 0);
	assert_int_equal(c.n_blocked_exceptions, 0);
	f = fmemopen(dump, sizeof(dump), "w");
	config_dump(&c, f);
	fclose(f);
	assert_non_null(strstr(dump, "\nblocked-sites-exceptions = none\n"));

	static const struct {
		const char *text;
		const char *err;
	} bad[] = {
		{ "[global]\nblocked-sites-timeout = 0\n",
		  "t.conf:2: blocked-sites-timeout: 0 is out of range (1..1966020)" },
		{ "[global]\nblocked-sites-timeout = 1966021\n",
		  "t.conf:2: blocked-sites-timeout: 1966021 is out of range (1..1966020)" },
		{ "[global]\nblocked-sites-max = 0\n",
		  "t.conf:2: blocked-sites-max: 0 is out of range (1..1000000)" },
		{ "[global]\nblocked-sites-rate = 20/s\n",
		  "t.conf:2: blocked-sites-rate: \"20/s\" is not a number" },
		{ "[global]\nblocked-sites-exceptions = 192.0.2.1/24\n",
		  "t.conf:2: blocked-sites-exceptions: \"192.0.2.1/24\" is not an address or "
		  "prefix (host bits must be zero), or \"none\"" },
		{ "[global]\n\nblocked-sites-exceptions = mx.int.test\n",
		  "t.conf:3: blocked-sites-exceptions: \"mx.int.test\" is not an address or "
		  "prefix (host bits must be zero), or \"none\"" },
		{ "[global]\nblocked-sites-exceptions = none 192.0.2.0/24\n",
		  "t.conf:2: blocked-sites-exceptions: \"none\" is not an address or "
		  "prefix (host bits must be zero), or \"none\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(config_parse(&c, "t.conf", bad[i].text, strlen(bad[i].text), err,
		    sizeof(err)), -1);
		if (strcmp(err, bad[i].err) != 0)
			fail_msg("row %zu: got \"%s\", expected \"%s\"", i, err, bad[i].err);
	}
	/* 33 prefixes are one too many */
	char many[1024] = "[global]\nblocked-sites-exceptions =";
	for (int i = 0; i <= CONF_MAX_BLOCK_EXCEPTIONS; i++) {
		size_t n = strlen(many);
		snprintf(many + n, sizeof(many) - n, " 192.0.2.%d", i);
	}
	strncat(many, "\n", sizeof(many) - strlen(many) - 1);
	assert_int_equal(config_parse(&c, "t.conf", many, strlen(many), err, sizeof(err)), -1);
	assert_string_equal(err, "t.conf:2: blocked-sites-exceptions: more than 32 prefixes");
}

/* ---- the ruleset's names ---- */

static void
test_nft_names(void **state)
{
	const char *path = SMTPGW_SRCDIR "/nftables/smtpgw.nft.in";
	FILE *f = fopen(path, "r");
	static char text[65536];
	size_t n;

	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	static const char *const want[] = {
		"\ntable inet " BLOCKED_NFT_TABLE " {\n",
		"\tset " BLOCKED_NFT_SET4 " {\n",
		"\tset " BLOCKED_NFT_SET6 " {\n",
		"ip saddr @" BLOCKED_NFT_SET4 " ",
		"ip6 saddr @" BLOCKED_NFT_SET6 " ",
		"flags timeout",
		"size @BLOCKED_MAX@",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (strstr(text, want[i]) == NULL)
			fail_msg("%s does not contain \"%s\" (blocked_req.h and the ruleset disagree)",
			    path, want[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_make),
		cmocka_unit_test(test_make_refused),
		cmocka_unit_test(test_wire_round_trip),
		cmocka_unit_test(test_wire_refused),
		cmocka_unit_test(test_exceptions),
		cmocka_unit_test(test_seconds),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_recent),
		cmocka_unit_test(test_nft_cmd),
		cmocka_unit_test(test_config_keys),
		cmocka_unit_test(test_nft_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
