/*
 * test_log - log_quote turns untrusted bytes into one printable token (no
 * field or line forgery), and log lines have the documented shape.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define S(lit) lit, sizeof(lit) - 1

static const struct {
	const char *src;
	size_t srclen;
	size_t dstlen;
	const char *want;
} quote_cases[] = {
	{S("mail.example.com"), 64, "mail.example.com"},
	{S(""), 64, ""},
	{S("<a@b>"), 64, "<a@b>"},
	{S("a b"), 64, "a\\x20b"},
	{S("a\tb"), 64, "a\\x09b"},
	{S("say \"hi\""), 64, "say\\x20\\x22hi\\x22"},
	{S("back\\slash"), 64, "back\\x5cslash"},
	{S("k=v"), 64, "k\\x3dv"},
	/* A peer must not be able to end the line or the field. */
	{S("x\r\n1234 smtp fake=1"), 64, "x\\x0d\\x0a1234\\x20smtp\\x20fake\\x3d1"},
	{S("nul\0byte"), 64, "nul\\x00byte"},
	{S("\x7f\x80\xff"), 64, "\\x7f\\x80\\xff"},
	{S("\x1b[31m"), 64, "\\x1b[31m"},
	/* Truncation leaves room for "..." and the terminator. */
	{S("abcdefghij"), 8, "abcd..."},
	{S("ab cdefgh"), 10, "ab\\x20..."},
	{S("a\x01\x02\x03\x04"), 12, "a\\x01..."},
	{S("abcdefghij"), 4, "..."},
	{S("abcdefghij"), 3, ""},
	{S("abcdefghij"), 1, ""},
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

/* Every byte value, at every output size: terminated, in bounds, printable. */
static void
test_quote_all_bytes(void **state)
{
	char src[256], dst[300];

	for (int i = 0; i < 256; i++)
		src[i] = (char)i;
	for (size_t dstlen = 1; dstlen < sizeof(dst); dstlen += 7) {
		size_t n;

		memset(dst, 'Z', sizeof(dst));
		log_quote(dst, dstlen, src, sizeof(src));
		n = strlen(dst);
		assert_true(n < dstlen);
		for (size_t j = 0; j < n; j++) {
			unsigned char c = (unsigned char)dst[j];
			assert_true(c > 0x20 && c < 0x7f && c != '"' && c != '=');
		}
		if (dstlen >= 4)
			assert_string_equal(dst + n - 3, "...");
	}
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_quote_zero_dst),
		cmocka_unit_test(test_quote_all_bytes),
		cmocka_unit_test(test_log_sid_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
