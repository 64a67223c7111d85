/*
 * test_rspamd - the /checkv2 request head octet by octet, the HTTP
 * response reader (whole, split at every octet, chunked, interim
 * responses, the refusals), and the JSON mapping (a real reply, bounds,
 * header forms, malformed replies).
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

#include "rspamd.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---------------------------------------------------------- request */

static void
test_request_head_full(void **state)
{
	union sockaddr_any ip;
	const char *rcpts[] = { "bob@int.test", "carol+x@int.test" };
	struct rspamd_envelope env = {
		.client = &ip, .helo = "client.ext.test", .mail_from = "alice@ext.test",
		.rcpts = rcpts, .nrcpts = 2, .queue_id = "4f2a91c0e1d3.1", .user = "alice",
		.tls_version = "TLSv1.3", .tls_cipher = "TLS_AES_256_GCM_SHA384",
		.settings_id = "inbound", .mta_name = "gw.int.test",
	};
	static const char want[] =
	    "POST /checkv2 HTTP/1.1\r\n"
	    "Host: rspamd\r\n"
	    "User-Agent: smtpgw\r\n"
	    "Connection: close\r\n"
	    "Content-Length: 1234\r\n"
	    "IP: 2001:db8:2::10\r\n"
	    "Helo: client.ext.test\r\n"
	    "From: alice@ext.test\r\n"
	    "Rcpt: bob@int.test\r\n"
	    "Rcpt: carol+x@int.test\r\n"
	    "Queue-Id: 4f2a91c0e1d3.1\r\n"
	    "User: alice\r\n"
	    "TLS-Version: TLSv1.3\r\n"
	    "TLS-Cipher: TLS_AES_256_GCM_SHA384\r\n"
	    "Settings-ID: inbound\r\n"
	    "MTA-Name: gw.int.test\r\n"
	    "\r\n";
	struct buf b;

	memset(&ip, 0, sizeof(ip));
	ip.sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8:2::10", &ip.sin6.sin6_addr);
	buf_init(&b, 4096);
	assert_int_equal(rspamd_request_head(&b, &env, 1234), 0);
	assert_int_equal(buf_len(&b), sizeof(want) - 1);
	assert_memory_equal(buf_head(&b), want, sizeof(want) - 1);
	buf_free(&b);
}

static void
test_request_head_minimal_chunked(void **state)
{
	union sockaddr_any ip;
	struct rspamd_envelope env = { .client = &ip, .mail_from = "" };
	static const char want[] =
	    "POST /checkv2 HTTP/1.1\r\n"
	    "Host: rspamd\r\n"
	    "User-Agent: smtpgw\r\n"
	    "Connection: close\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "IP: 198.51.100.10\r\n"
	    "From: <>\r\n"
	    "\r\n";
	struct buf b;

	memset(&ip, 0, sizeof(ip));
	ip.sin.sin_family = AF_INET;
	inet_pton(AF_INET, "198.51.100.10", &ip.sin.sin_addr);
	buf_init(&b, 4096);
	assert_int_equal(rspamd_request_head(&b, &env, RSPAMD_SIZE_UNKNOWN), 0);
	assert_int_equal(buf_len(&b), sizeof(want) - 1);
	assert_memory_equal(buf_head(&b), want, sizeof(want) - 1);
	buf_free(&b);
}

static void
test_request_head_never_split(void **state)
{
	const char *rcpts[] = { "a@b\r\nX-Injected: 1", "c@d" };
	struct rspamd_envelope env = {
		.helo = "evil\r\nSettings: {}", .mail_from = "x\ny@z", .rcpts = rcpts, .nrcpts = 2,
	};
	char *long_helo = malloc(3000);
	struct buf b;

	buf_init(&b, 8192);
	assert_int_equal(rspamd_request_head(&b, &env, 5), 0);
	assert_int_equal(buf_append(&b, "\0", 1), 0);
	assert_non_null(strstr(buf_head(&b), "Helo: evil??Settings: {}\r\n"));
	assert_non_null(strstr(buf_head(&b), "From: x?y@z\r\n"));
	assert_non_null(strstr(buf_head(&b), "Rcpt: a@b??X-Injected: 1\r\n"));
	assert_null(strstr(buf_head(&b), "\nX-Injected"));
	assert_null(strstr(buf_head(&b), "\nSettings"));

	/* values are cut, never spill into another header */
	assert_non_null(long_helo);
	memset(long_helo, 'h', 2999);
	long_helo[2999] = '\0';
	env.helo = long_helo;
	buf_reset(&b);
	assert_int_equal(rspamd_request_head(&b, &env, 5), 0);
	assert_int_equal(buf_append(&b, "\0", 1), 0);
	{
		const char *h = strstr(buf_head(&b), "Helo: ");
		assert_non_null(h);
		assert_int_equal(strcspn(h + 6, "\r"), RSPAMD_ENV_VALUE_MAX);
	}
	/* no room: nothing appended */
	buf_free(&b);
	buf_init(&b, 64);
	assert_int_equal(buf_append(&b, "keep", 4), 0);
	assert_int_equal(rspamd_request_head(&b, &env, 5), -1);
	assert_int_equal(buf_len(&b), 4);
	buf_free(&b);
	free(long_helo);
}

/* --------------------------------------------------------------- HTTP */

struct parsed {
	int rc;
	int status;
	char body[8192];
	size_t body_len;
	char why[160];
};

/* Feed text in pieces of step octets (0: all at once), then EOF if asked. */
static void
http_run(const char *text, size_t len, size_t step, bool eof, struct parsed *out)
{
	struct rspamd_http h;
	struct buf in;
	size_t off = 0;

	memset(out, 0, sizeof(*out));
	rspamd_http_init(&h);
	buf_init(&in, 1 << 20);
	out->rc = SCANNER_PARSE_MORE;
	while (off < len && out->rc == SCANNER_PARSE_MORE) {
		size_t n = step && len - off > step ? step : len - off;

		assert_int_equal(buf_append(&in, text + off, n), 0);
		off += n;
		out->rc = rspamd_http_parse(&h, &in, false, out->why, sizeof(out->why));
	}
	if (out->rc == SCANNER_PARSE_MORE && eof)
		out->rc = rspamd_http_parse(&h, &in, true, out->why, sizeof(out->why));
	out->status = h.status;
	out->body_len = buf_len(&h.body);
	if (out->body_len < sizeof(out->body))
		memcpy(out->body, scanner_head(&h.body), out->body_len);
	buf_free(&in);
	rspamd_http_free(&h);
}

static const char reply_cl[] =
    "HTTP/1.1 200 OK\r\n"
    "Connection: close\r\n"
    "Server: rspamd/3.4\r\n"
    "Content-Length: 13\r\n"
    "Content-Type: application/json\r\n"
    "\r\n"
    "{\"a\":\"b\",\"c\"}";

static void
test_http_content_length_any_split(void **state)
{
	struct parsed p;

	for (size_t step = 0; step <= 7; step++) {
		http_run(S(reply_cl), step, false, &p);
		assert_int_equal(p.rc, SCANNER_PARSE_DONE);
		assert_int_equal(p.status, 200);
		assert_int_equal(p.body_len, 13);
		assert_memory_equal(p.body, "{\"a\":\"b\",\"c\"}", 13);
	}
	/* one octet short: not done, even at EOF */
	http_run(reply_cl, sizeof(reply_cl) - 2, 0, true, &p);
	assert_int_equal(p.rc, SCANNER_PARSE_MORE);
}

static void
test_http_chunked_and_interim(void **state)
{
	static const char text[] =
	    "HTTP/1.1 100 Continue\r\n\r\n"
	    "HTTP/1.1 200 OK\n"                     /* bare LF lines are read too */
	    "transfer-encoding: Chunked\r\n"
	    "\r\n"
	    "5;name=value\r\nhello\r\n"
	    "1\r\n \r\n"
	    "A\r\n0123456789\r\n"
	    "0\r\n"
	    "X-Trailer: yes\r\n"
	    "\r\n";
	struct parsed p;

	for (size_t step = 0; step <= 3; step++) {
		http_run(S(text), step, false, &p);
		assert_int_equal(p.rc, SCANNER_PARSE_DONE);
		assert_int_equal(p.status, 200);
		assert_int_equal(p.body_len, 16);
		assert_memory_equal(p.body, "hello 0123456789", 16);
	}
}

static void
test_http_body_until_eof(void **state)
{
	static const char text[] = "HTTP/1.0 500 Internal Server Error\r\n\r\n{\"error\":\"x\"}";
	struct parsed p;

	http_run(S(text), 0, false, &p);
	assert_int_equal(p.rc, SCANNER_PARSE_MORE);
	http_run(S(text), 0, true, &p);
	assert_int_equal(p.rc, SCANNER_PARSE_DONE);
	assert_int_equal(p.status, 500);
	assert_int_equal(p.body_len, 13);
}

static void
expect_bad(const char *text, size_t len, const char *why)
{
	struct parsed p;

	http_run(text, len, 0, true, &p);
	assert_int_equal(p.rc, SCANNER_PARSE_BAD);
	assert_string_equal(p.why, why);
}

static void
test_http_refusals(void **state)
{
	char *big;
	int n;

	expect_bad(S("HTTP/2 200 OK\r\n\r\n"), "malformed HTTP status line");
	expect_bad(S("HTTP/1.1 20 OK\r\n\r\n"), "malformed HTTP status line");
	expect_bad(S("HTTP/1.1 200OK\r\n\r\n"), "malformed HTTP status line");
	expect_bad(S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
	    "both Content-Length and chunked");
	expect_bad(S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
	    "conflicting Content-Length headers");
	expect_bad(S("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"), "malformed Content-Length");
	expect_bad(S("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
	    "malformed Content-Length");
	expect_bad(S("HTTP/1.1 200 OK\r\nContent-Length: 262145\r\n\r\n"), "reply body too large");
	expect_bad(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
	    "unsupported Transfer-Encoding");
	expect_bad(S("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"),
	    "unsupported Content-Encoding");
	expect_bad(S("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n"), "folded HTTP header");
	expect_bad(S("HTTP/1.1 200 OK\r\nno colon\r\n\r\n"), "malformed HTTP header");
	expect_bad(S("HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n"), "malformed HTTP header name");
	expect_bad(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n"),
	    "malformed chunk size");
	expect_bad(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
	    "malformed chunk size");
	expect_bad(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n"),
	    "chunk without its CRLF");
	expect_bad(S("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"), "HTTP line too long");
	expect_bad(S("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
	    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
	    "HTTP/1.1 100 Continue\r\n\r\n"), "too many interim HTTP responses");

	/* one line too long; headers too large in all */
	big = malloc(64 * 1024);
	assert_non_null(big);
	n = snprintf(big, 64 * 1024, "HTTP/1.1 200 OK\r\nX: ");
	memset(big + n, 'a', RSPAMD_LINE_MAX + 10);
	expect_bad(big, (size_t)n + RSPAMD_LINE_MAX + 10, "HTTP line too long");
	n = snprintf(big, 64 * 1024, "HTTP/1.1 200 OK\r\n");
	while (n < 20000)
		n += snprintf(big + n, 64 * 1024 - (size_t)n, "X-Filler: %0100d\r\n", 1);
	expect_bad(big, (size_t)n, "HTTP headers too large");
	/* a chunked body past the bound */
	n = snprintf(big, 64 * 1024, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "40001\r\n");
	expect_bad(big, (size_t)n, "reply body too large");
	free(big);
}

/* --------------------------------------------------------------- JSON */

/* A /checkv2 reply of rspamd 3.4 (trimmed), as the testbed's gives it. */
static const char real_reply[] =
    "{\"is_skipped\":false,\"score\":6.300000,\"required_score\":15.0,\"action\":\"add header\","
    "\"symbols\":{\"RDNS_NONE\":{\"name\":\"RDNS_NONE\",\"score\":1.0,\"metric_score\":1.0,"
    "\"description\":\"Cannot resolve reverse DNS for sender's IP\"},"
    "\"R_SPF_DNSFAIL\":{\"name\":\"R_SPF_DNSFAIL\",\"score\":0.0,\"metric_score\":0.0,"
    "\"options\":[\"temporary DNS error\"]},"
    "\"HFILTER_HOSTNAME_UNKNOWN\":{\"name\":\"HFILTER_HOSTNAME_UNKNOWN\",\"score\":2.500000},"
    "\"MIME_GOOD\":{\"name\":\"MIME_GOOD\",\"score\":-0.100000,\"options\":[\"text/plain\"]},"
    "\"HFILTER_FROMHOST_NORES_A_OR_MX\":{\"name\":\"x\",\"score\":1.500000}},"
    "\"messages\":{},\"message-id\":\"1@ext.test\",\"time_real\":3.470165,"
    "\"milter\":{\"add_headers\":{\"X-Spamd-Bar\":{\"value\":\"++++++\",\"order\":0},"
    "\"X-Spam\":\"Yes\",\"X-Spamd-Result\":\"default: False [6.30 / 15.00];\\r\\n\\tRDNS_NONE(1.00)\"},"
    "\"remove_headers\":{\"X-Spam\":0}}}";

static int
json(const char *text, size_t len, struct rspamd_result *r, char *why)
{
	memset(r, 0, sizeof(*r));
	why[0] = '\0';
	return rspamd_json_result(text, len, r, why, 160);
}

static void
test_json_real_reply(void **state)
{
	struct rspamd_result r;
	char why[160];

	assert_int_equal(json(S(real_reply), &r, why), 0);
	assert_int_equal(r.status, RSPAMD_CHECKED);
	assert_int_equal(r.action, RSPAMD_ADD_HEADER);
	assert_true(r.score > 6.29 && r.score < 6.31);
	assert_true(r.required_score > 14.9 && r.required_score < 15.1);
	assert_false(r.skipped);
	/* highest score first */
	assert_int_equal(r.symbols_total, 5);
	assert_int_equal(r.nsymbols, 5);
	assert_string_equal(r.symbols[0].name, "HFILTER_HOSTNAME_UNKNOWN");
	assert_string_equal(r.symbols[1].name, "HFILTER_FROMHOST_NORES_A_OR_MX");
	assert_string_equal(r.symbols[2].name, "RDNS_NONE");
	assert_string_equal(r.symbols[3].name, "R_SPF_DNSFAIL");
	assert_string_equal(r.symbols[4].name, "MIME_GOOD");
	/* the three forms of a header to add; folding undone */
	assert_int_equal(r.nadd, 3);
	for (unsigned i = 0; i < r.nadd; i++) {
		if (!strcmp(r.add[i].name, "X-Spamd-Bar"))
			assert_string_equal(r.add[i].value, "++++++");
		else if (!strcmp(r.add[i].name, "X-Spam"))
			assert_string_equal(r.add[i].value, "Yes");
		else if (!strcmp(r.add[i].name, "X-Spamd-Result"))
			assert_string_equal(r.add[i].value, "default: False [6.30 / 15.00]; RDNS_NONE(1.00)");
		else
			fail_msg("unexpected header %s", r.add[i].name);
	}
	assert_int_equal(r.nremove, 1);
	assert_string_equal(r.remove[0], "X-Spam");
	assert_false(r.has_subject);
	assert_string_equal(r.smtp_message, "");
}

static void
test_json_actions_subject_message(void **state)
{
	static const char *const names[] = { "no action", "greylist", "add header",
		"rewrite subject", "soft reject", "reject", "discard", "quarantine" };
	struct rspamd_result r;
	char why[160], text[256];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int n = snprintf(text, sizeof(text), "{\"action\":\"%s\",\"score\":1}", names[i]);

		assert_int_equal(json(text, (size_t)n, &r, why), 0);
		assert_int_equal(r.action, (enum rspamd_action)i);
		assert_string_equal(rspamd_action_name(r.action), names[i]);
	}
	assert_int_equal(json(S("{\"action\":\"rewrite subject\",\"score\":9,\"is_skipped\":true,"
	    "\"subject\":\"*** SPAM *** h\\u00e9llo\\r\\n world\\u0000\","
	    "\"messages\":{\"smtp_message\":\"Gtube pattern \\u00e9\\r\\n250 x\"}}"), &r, why), 0);
	assert_true(r.skipped);
	assert_true(r.has_subject);
	/* UTF-8 kept in the subject, one line; the SMTP text is ASCII only */
	assert_string_equal(r.subject, "*** SPAM *** h\xc3\xa9llo world?");
	assert_string_equal(r.smtp_message, "Gtube pattern ?? 250 x");
}

static void
test_json_bounds(void **state)
{
	char *text = malloc(RSPAMD_REPLY_MAX + 100);
	struct rspamd_result r;
	char why[160];
	size_t n;

	assert_non_null(text);
	/* 40 symbols scored 0..39: the 32 highest, highest first */
	n = (size_t)snprintf(text, 64, "{\"action\":\"reject\",\"score\":20,\"symbols\":{");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(text + n, 100, "%s\"S%02d\":{\"score\":%d}", i ? "," : "", i, i);
	n += (size_t)snprintf(text + n, 64, "},\"milter\":{\"add_headers\":{");
	for (int i = 0; i < 20; i++)
		n += (size_t)snprintf(text + n, 100, "%s\"X-H%02d\":[\"a\",{\"value\":\"b\"}]", i ? "," : "", i);
	n += (size_t)snprintf(text + n, 100, ",\"Bad:Name\":\"x\",\"Bad Name\":\"y\"}}}");
	assert_int_equal(json(text, n, &r, why), 0);
	assert_int_equal(r.symbols_total, 40);
	assert_int_equal(r.nsymbols, RSPAMD_SYMBOLS_MAX);
	assert_string_equal(r.symbols[0].name, "S39");
	assert_string_equal(r.symbols[RSPAMD_SYMBOLS_MAX - 1].name, "S08");
	for (unsigned i = 1; i < r.nsymbols; i++)
		assert_true(r.symbols[i - 1].score >= r.symbols[i].score);
	assert_int_equal(r.nadd, RSPAMD_HEADERS_MAX);
	for (unsigned i = 0; i < r.nadd; i++)
		assert_null(strpbrk(r.add[i].name, ": "));

	/* nesting deeper than RSPAMD_JSON_DEPTH */
	n = (size_t)snprintf(text, 64, "{\"action\":\"reject\",\"score\":1,\"x\":");
	for (int i = 0; i < 40; i++)
		text[n++] = '[';
	for (int i = 0; i < 40; i++)
		text[n++] = ']';
	text[n++] = '}';
	assert_int_equal(json(text, n, &r, why), -1);

	/* larger than the reply bound */
	memset(text, ' ', RSPAMD_REPLY_MAX + 1);
	assert_int_equal(json(text, RSPAMD_REPLY_MAX + 1, &r, why), -1);
	assert_string_equal(why, "reply too large");
	free(text);
}

static void
test_json_malformed(void **state)
{
	struct rspamd_result r;
	char why[160];

	assert_int_equal(json(S("not json"), &r, why), -1);
	assert_non_null(strstr(why, "not JSON"));
	assert_int_equal(json(S("{\"action\":\"reject\""), &r, why), -1);
	assert_int_equal(json(S(""), &r, why), -1);
	assert_int_equal(json(S("[1,2]"), &r, why), -1);
	assert_string_equal(why, "reply is not a JSON object");
	assert_int_equal(json(S("{\"score\":1}"), &r, why), -1);
	assert_string_equal(why, "reply without an action");
	assert_int_equal(json(S("{\"action\":\"explode\",\"score\":1}"), &r, why), -1);
	assert_string_equal(why, "unknown action \"explode\"");
	assert_int_equal(json(S("{\"action\":\"reject\"}"), &r, why), -1);
	assert_string_equal(why, "reply without a score");
	assert_int_equal(json(S("{\"action\":\"reject\",\"score\":\"15\"}"), &r, why), -1);
	assert_int_equal(json(S("{\"action\":\"reject\",\"score\":NaN}"), &r, why), -1);
	assert_int_equal(json(S("{\"action\":\"reject\",\"score\":1e999}"), &r, why), -1);
	assert_int_equal(json(S("{\"action\":\"reject\",\"score\":1,\"required_score\":\"x\"}"), &r,
	    why), -1);
	/* json-c's strict mode refuses data after the value itself */
	assert_int_equal(json(S("{\"action\":\"reject\",\"score\":1} {}"), &r, why), -1);
	assert_non_null(strstr(why, "JSON"));
	/* blanks after the value are fine */
	assert_int_equal(json(S("{\"action\":\"reject\",\"score\":1}\r\n"), &r, why), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_head_full),
		cmocka_unit_test(test_request_head_minimal_chunked),
		cmocka_unit_test(test_request_head_never_split),
		cmocka_unit_test(test_http_content_length_any_split),
		cmocka_unit_test(test_http_chunked_and_interim),
		cmocka_unit_test(test_http_body_until_eof),
		cmocka_unit_test(test_http_refusals),
		cmocka_unit_test(test_json_real_reply),
		cmocka_unit_test(test_json_actions_subject_message),
		cmocka_unit_test(test_json_bounds),
		cmocka_unit_test(test_json_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
