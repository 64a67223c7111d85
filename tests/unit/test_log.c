/*
 * test_log - log_quote turns untrusted bytes into one safe token that reads
 * as the value (bare, or quoted when it needs it: no field or line
 * forgery, and decodes back to the bytes); log lines have the documented
 * shape; the per-session limit of repeated lines lets the burst through
 * and reports the rest once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define S(lit) lit, sizeof(lit) - 1

static const struct {
	const char *src;
	size_t srclen;
	size_t dstlen;
	const char *want;
} quote_cases[] = {
	/* Bare where nothing needs quoting. */
	{S("mail.example.com"), 64, "mail.example.com"},
	{S(""), 64, ""},
	{S("<a@b>"), 64, "<a@b>"},
	/* Quoted: space and '=' as they are, '"' and '\' escaped. */
	{S("a b"), 64, "\"a b\""},
	{S("CN=x, O=y"), 64, "\"CN=x, O=y\""},
	{S("/O=smtpgw testbed/CN=mx.ext.test"), 64, "\"/O=smtpgw testbed/CN=mx.ext.test\""},
	{S("k=v"), 64, "\"k=v\""},
	{S("say \"hi\""), 64, "\"say \\\"hi\\\"\""},
	{S("back\\slash"), 64, "\"back\\\\slash\""},
	{S("a\tb"), 64, "\"a\\x09b\""},
	/* A peer must not be able to end the line or the field. */
	{S("x\r\n1234 smtp fake=1"), 64, "\"x\\x0d\\x0a1234 smtp fake=1\""},
	{S("x\" fake=\"1"), 64, "\"x\\\" fake=\\\"1\""},
	{S("nul\0byte"), 64, "\"nul\\x00byte\""},
	{S("\x7f\x80\xff"), 64, "\"\\x7f\\x80\\xff\""},
	{S("\x1b[31m"), 64, "\"\\x1b[31m\""},
	{S("caf\xc3\xa9"), 64, "\"caf\\xc3\\xa9\""},
	/* Cut to fit: whole characters, "..." (inside the quotes), terminator. */
	{S("abcdefghij"), 8, "abcd..."},
	{S("abcdefghij"), 11, "abcdefghij"},
	{S("ab cdefgh"), 10, "\"ab c...\""},
	{S("ab cdefgh"), 12, "\"ab cdefgh\""},
	{S("a\x01\x02\x03\x04"), 10, "\"a...\""},
	{S("a\x01\x02\x03\x04"), 12, "\"a\\x01...\""},
	{S("a\"\"\"\"\"\""), 10, "\"a\\\"...\""},
	{S("abcdefghij"), 4, "..."},
	{S("abcdefghij"), 3, ""},
	{S("abcdefghij"), 1, ""},
	{S("a bcdefghij"), 6, "\"...\""},
	{S("a bcdefghij"), 5, ""},
	{S("a b"), 3, ""},
	{S("a b"), 2, ""},
};

static void
test_quote(void **state)
{
	char dst[64];

	for (size_t i = 0; i < sizeof(quote_cases) / sizeof(quote_cases[0]); i++) {
		memset(dst, 'Z', sizeof(dst));
		assert_ptr_equal(log_quote(dst, quote_cases[i].dstlen, quote_cases[i].src,
		    quote_cases[i].srclen), dst);
		if (strcmp(dst, quote_cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\", expected \"%s\"", i, dst, quote_cases[i].want);
		/* Nothing written past dstlen. */
		if (quote_cases[i].dstlen < sizeof(dst))
			assert_int_equal(dst[quote_cases[i].dstlen], 'Z');
	}
}

static void
test_quote_zero_dst(void **state)
{
	char dst[4] = "ZZZ";

	log_quote(dst, 0, "abc", 3);
	assert_string_equal(dst, "ZZZ");
}

static void
test_quote_str(void **state)
{
	char dst[32];

	assert_string_equal(log_quote_str(dst, sizeof(dst), "mx.ext.test"), "mx.ext.test");
	assert_string_equal(log_quote_str(dst, sizeof(dst), "CN=a b"), "\"CN=a b\"");
	assert_string_equal(log_quote_str(dst, sizeof(dst), NULL), "-");
}

/*
 * Read a token back the way an admin's tools would (the e2e suite's
 * log_fields/log_unquote): one field, no raw control byte, and, when it
 * was not cut, exactly the source bytes.  Returns the decoded length, or
 * -1 when the token is not one safe field.
 */
static long
token_decode(const char *t, char *out, size_t outlen, bool *cut)
{
	size_t n = strlen(t), o = 0;

	*cut = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)t[i];

		if (c <= 0x20 && !(c == ' ' && t[0] == '"'))
			return -1;
		if (c >= 0x7f)
			return -1;
	}
	if (n == 0)
		return 0;
	if (t[0] != '"') {
		/* Bare: no quote, backslash or '='. */
		if (strpbrk(t, "\"\\=") != NULL)
			return -1;
		if (n >= 3 && strcmp(t + n - 3, "...") == 0)
			*cut = true;
		memcpy(out, t, n);
		return (long)n;
	}
	if (n < 2 || t[n - 1] != '"')
		return -1;
	for (size_t i = 1; i < n - 1; i++) {
		if (o >= outlen)
			return -1;
		if (t[i] == '"')
			return -1; /* an unescaped quote would end the field early */
		if (t[i] != '\\') {
			out[o++] = t[i];
			continue;
		}
		if (i + 1 >= n - 1)
			return -1; /* a backslash escaping the closing quote */
		if (t[i + 1] == '"' || t[i + 1] == '\\') {
			out[o++] = t[++i];
		} else if (t[i + 1] == 'x' && i + 3 < n - 1) {
			char hex[3] = {t[i + 2], t[i + 3], 0};

			out[o++] = (char)strtoul(hex, NULL, 16);
			i += 3;
		} else {
			return -1;
		}
	}
	if (n >= 5 && strcmp(t + n - 4, "...\"") == 0)
		*cut = true;
	return (long)o;
}

/*
 * Every byte value, at every output size: terminated, in bounds, one safe
 * field; and a value that fits comes back byte for byte.
 */
static void
test_quote_all_bytes(void **state)
{
	char src[256], dst[LOG_QUOTE_SIZE(256)], back[300];
	bool cut;
	long n;

	size_t whole;

	for (int i = 0; i < 256; i++)
		src[i] = (char)i;
	whole = strlen(log_quote(dst, sizeof(dst), src, sizeof(src))) + 1;
	for (size_t dstlen = 1; dstlen <= sizeof(dst); dstlen += 7) {
		memset(dst, 'Z', sizeof(dst));
		log_quote(dst, dstlen, src, sizeof(src));
		assert_true(strlen(dst) < dstlen);
		n = token_decode(dst, back, sizeof(back), &cut);
		if (n < 0)
			fail_msg("dstlen %zu: not one safe field: %s", dstlen, dst);
		if (dstlen >= 6)
			assert_int_equal(cut, dstlen < whole);
	}
	log_quote(dst, sizeof(dst), src, sizeof(src));
	n = token_decode(dst, back, sizeof(back), &cut);
	assert_int_equal(n, 256);
	assert_false(cut);
	assert_memory_equal(back, src, 256);
}

/* Random short values round-trip, whatever their bytes. */
static void
test_quote_round_trip(void **state)
{
	char src[40], dst[LOG_QUOTE_SIZE(40)], back[64];
	unsigned seed = 12345;
	bool cut;

	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)(round % 40);

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			/* Mostly the interesting bytes: controls, quote, backslash, '=', space. */
			src[i] = (char)((seed >> 16) % 4 ? "\"\\= \t\r\nab\x7f\x80"[(seed >> 8) % 11]
			    : (int)((seed >> 8) & 0xff));
		}
		log_quote(dst, sizeof(dst), src, len);
		long n = token_decode(dst, back, sizeof(back), &cut);

		if (n != (long)len || memcmp(back, src, len) != 0)
			fail_msg("round %d: %s does not decode to the %zu source bytes", round, dst, len);
	}
}

/* ---- log lines ---- */

static char capture_path[] = "/tmp/test_log.XXXXXX";
static int capture_saved = -1;

/* Send stderr to a fresh file until capture_end(). */
static void
capture_begin(int debug)
{
	int fd;

	memcpy(capture_path, "/tmp/test_log.XXXXXX", sizeof(capture_path));
	fd = mkstemp(capture_path);
	assert_true(fd >= 0);
	capture_saved = dup(STDERR_FILENO);
	assert_true(capture_saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
	log_init(LOG_TO_STDERR, "worker", debug);
}

/* The captured lines, without their time and process prefix; caller frees. */
static char *
capture_end(void)
{
	static const char tag[] = " worker: ";
	char line[2400], *out;
	size_t o = 0, cap = 65536;
	FILE *f;

	fflush(stderr);
	dup2(capture_saved, STDERR_FILENO);
	close(capture_saved);
	f = fopen(capture_path, "r");
	assert_non_null(f);
	out = calloc(1, cap);
	assert_non_null(out);
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *p = strstr(line, tag);
		size_t n;

		if (p == NULL)
			fail_msg("not a log line: %s", line);
		p += strlen(tag);
		n = strlen(p);
		assert_true(o + n < cap);
		memcpy(out + o, p, n);
		o += n;
	}
	fclose(f);
	unlink(capture_path);
	return out;
}

static int
count_lines(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* log_sid lines are "<12 hex digits> <message>" on stderr. */
static void
test_log_sid_line(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX";
	char line[512];
	int fd, saved;
	FILE *f;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	log_init(LOG_TO_STDERR, "worker", 0);
	log_sid(LOG_LVL_INFO, 0x4f2a91c0e1d3ull, "smtp tls side=%s", "client");
	log_sid(LOG_LVL_INFO, 0x1, "close");
	log_debug("not shown without debug");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);

	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	if (strstr(line, " worker: 4f2a91c0e1d3 smtp tls side=client\n") == NULL)
		fail_msg("line: %s", line);
	assert_non_null(fgets(line, sizeof(line), f));
	if (strstr(line, " worker: 000000000001 close\n") == NULL)
		fail_msg("line: %s", line);
	assert_null(fgets(line, sizeof(line), f));
	fclose(f);
	unlink(path);
}

static void
test_log_sid_debug(void **state)
{
	char *text;

	capture_begin(0);
	log_sid(LOG_LVL_DEBUG, 0x2, "smtp phase from=a to=b");
	text = capture_end();
	assert_string_equal(text, "");
	free(text);

	capture_begin(1);
	log_sid(LOG_LVL_DEBUG, 0x2, "smtp phase from=a to=b");
	text = capture_end();
	assert_string_equal(text, "000000000002 smtp phase from=a to=b\n");
	free(text);
}

/* A value with '=' and spaces reads as itself in a line, one field. */
static void
test_log_quoted_field(void **state)
{
	const char *subj = "/O=smtpgw testbed/CN=mx.ext.test";
	char q[LOG_QUOTE_SIZE(64)];
	char *text;

	capture_begin(0);
	log_sid(LOG_LVL_INFO, 0x3, "tls ready subject=%s next=1",
	    log_quote(q, sizeof(q), subj, strlen(subj)));
	text = capture_end();
	assert_string_equal(text,
	    "000000000003 tls ready subject=\"/O=smtpgw testbed/CN=mx.ext.test\" next=1\n");
	free(text);
}

static const char refused_fmt[] = "smtp refused command=%s reply=\"%.3s\"";
static const char other_fmt[] = "smtp protocol-error reason=%s";

/* burst lines of a kind pass; the rest are counted and reported once. */
static void
test_limit_burst(void **state)
{
	struct log_limit lim;
	char *text;
	int passed = 0;

	log_limit_init(&lim, 3, 60000);
	capture_begin(0);
	for (int i = 0; i < 10; i++)
		passed += log_sid_limited(&lim, LOG_LVL_INFO, 0x7, refused_fmt, "RCPT", "503");
	/* Another kind has its own budget. */
	for (int i = 0; i < 4; i++)
		passed += log_sid_limited(&lim, LOG_LVL_WARN, 0x7, other_fmt, "pipelining");
	log_limit_flush(&lim, 0x7);
	/* Flushed: nothing more to report. */
	log_limit_flush(&lim, 0x7);
	text = capture_end();

	assert_int_equal(passed, 6);
	assert_int_equal(count_lines(text, "000000000007 smtp refused command=RCPT reply=\"503\"\n"), 3);
	assert_int_equal(count_lines(text, "000000000007 smtp protocol-error reason=pipelining\n"), 3);
	assert_int_equal(count_lines(text,
	    "000000000007 log suppressed=7 line=\"smtp refused\" window_ms=60000\n"), 1);
	assert_int_equal(count_lines(text,
	    "000000000007 log suppressed=1 line=\"smtp protocol-error\" window_ms=60000\n"), 1);
	assert_int_equal(count_lines(text, "\n"), 8);
	free(text);
}

/* A new window lets lines through again, after the summary of the last. */
static void
test_limit_window(void **state)
{
	struct log_limit lim;
	struct timespec pause = {0, 150 * 1000000L};
	char *text;
	const char *sum, *next;

	log_limit_init(&lim, 2, 100);
	capture_begin(0);
	for (int i = 0; i < 5; i++)
		log_sid_limited(&lim, LOG_LVL_INFO, 0x8, refused_fmt, "VRFY", "252");
	nanosleep(&pause, NULL);
	assert_true(log_sid_limited(&lim, LOG_LVL_INFO, 0x8, refused_fmt, "EXPN", "502"));
	log_limit_flush(&lim, 0x8);
	text = capture_end();

	assert_int_equal(count_lines(text, "command=VRFY"), 2);
	sum = strstr(text, "000000000008 log suppressed=3 line=\"smtp refused\" window_ms=100\n");
	next = strstr(text, "command=EXPN");
	assert_non_null(sum);
	assert_non_null(next);
	assert_true(sum < next); /* the summary first, then the new window's line */
	assert_int_equal(count_lines(text, "suppressed="), 1);
	free(text);
}

/* Five kinds, five call sites (the format's address is the key). */
static void
limit_kind(struct log_limit *lim, int k, int i)
{
	switch (k) {
	case 0: log_sid_limited(lim, LOG_LVL_INFO, 0x9, "kind0 n=%d", i); break;
	case 1: log_sid_limited(lim, LOG_LVL_INFO, 0x9, "kind1 n=%d", i); break;
	case 2: log_sid_limited(lim, LOG_LVL_INFO, 0x9, "kind2 n=%d", i); break;
	case 3: log_sid_limited(lim, LOG_LVL_INFO, 0x9, "kind3 n=%d", i); break;
	default: log_sid_limited(lim, LOG_LVL_INFO, 0x9, "kind4 n=%d", i); break;
	}
}

/* More kinds than slots: the oldest is reported before its slot is reused. */
static void
test_limit_eviction(void **state)
{
	struct log_limit lim;
	char *text;

	assert_int_equal(LOG_LIMIT_SLOTS, 4);
	log_limit_init(&lim, 1, 60000);
	capture_begin(0);
	for (int k = 0; k < 5; k++)
		for (int i = 0; i < 3; i++)
			limit_kind(&lim, k, i);
	log_limit_flush(&lim, 0x9);
	text = capture_end();

	for (int k = 0; k < 5; k++) {
		char want[64];

		snprintf(want, sizeof(want), "kind%d n=0\n", k);
		assert_int_equal(count_lines(text, want), 1);
		snprintf(want, sizeof(want), "log suppressed=2 line=kind%d window_ms=60000\n", k);
		if (count_lines(text, want) != 1)
			fail_msg("no single summary for kind%d in:\n%s", k, text);
	}
	/* kind0 was evicted for kind4: its summary comes before kind4's line. */
	assert_true(strstr(text, "line=kind0 ") < strstr(text, "kind4 n=0"));
	free(text);
}

/* Debug lines do not count against the limit when debug is off. */
static void
test_limit_debug_off(void **state)
{
	struct log_limit lim;
	char *text;

	memset(&lim, 0, sizeof(lim)); /* zeroed: the defaults */
	capture_begin(0);
	for (int i = 0; i < 100; i++)
		assert_false(log_sid_limited(&lim, LOG_LVL_DEBUG, 0xa, "smtp phase n=%d", i));
	for (int i = 0; i < LOG_LIMIT_BURST + 5; i++)
		log_sid_limited(&lim, LOG_LVL_INFO, 0xa, "smtp refused n=%d", i);
	log_limit_flush(&lim, 0xa);
	text = capture_end();
	assert_int_equal(count_lines(text, "smtp refused n="), LOG_LIMIT_BURST);
	assert_int_equal(count_lines(text, "log suppressed=5 line=\"smtp refused\" window_ms=10000\n"), 1);
	assert_int_equal(count_lines(text, "smtp phase"), 0);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_quote_zero_dst),
		cmocka_unit_test(test_quote_str),
		cmocka_unit_test(test_quote_all_bytes),
		cmocka_unit_test(test_quote_round_trip),
		cmocka_unit_test(test_log_sid_line),
		cmocka_unit_test(test_log_sid_debug),
		cmocka_unit_test(test_log_quoted_field),
		cmocka_unit_test(test_limit_burst),
		cmocka_unit_test(test_limit_window),
		cmocka_unit_test(test_limit_eviction),
		cmocka_unit_test(test_limit_debug_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
