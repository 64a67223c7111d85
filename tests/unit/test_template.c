/*
 * test_template - the deny message.  Variables substituted, unknown ones
 * refused by tpl_check with their offset; hostile values (CR LF, controls,
 * 8-bit, invalid UTF-8, "--" at a line start, huge) can neither start a
 * new SMTP reply line nor fake a MIME delimiter; output always fits the
 * buffer, is NUL-terminated, and body lines stay under 998 octets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "template.h"

static size_t
render(const char *tpl, const struct tpl_vars *v, enum tpl_mode m, char *out, size_t sz)
{
	return tpl_render(tpl, strlen(tpl), v, m, out, sz);
}

static void
test_substitution(void **state)
{
	struct tpl_vars v = { "forbidden attachment", "application/x-dosexec", "a.exe", NULL,
		"stripped", "Ask the sender to zip it." };
	char out[512];

	(void)state;
	render("%(action)%: %(filename)% (%(type)%) because %(reason)%.%(virus)%", &v, TPL_REPLY,
	    out, sizeof(out));
	assert_string_equal(out,
	    "stripped: a.exe (application/x-dosexec) because forbidden attachment.");
	/* unknown or broken variables stay as they are at render time */
	render("%(nope)% %(reason %(", &v, TPL_REPLY, out, sizeof(out));
	assert_string_equal(out, "%(nope)% %(reason %(");
	render("100% sure", &v, TPL_REPLY, out, sizeof(out));
	assert_string_equal(out, "100% sure");
	render("%(reason)%%(reason)%", &v, TPL_BODY, out, sizeof(out));
	assert_string_equal(out, "forbidden attachmentforbidden attachment");
}

static void
test_check(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(tpl_check(tpl_default, strlen(tpl_default), err, sizeof(err)), 0);
	assert_int_equal(tpl_check("ok %(virus)%", 12, err, sizeof(err)), 0);
	assert_int_equal(tpl_check("bad %(virs)% x", 14, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown variable %(virs)% at offset 4"));
	assert_int_equal(tpl_check("cut %(reason", 12, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unterminated %( at offset 4"));
	assert_int_equal(tpl_check("a\0b", 3, err, sizeof(err)), -1);
	{
		char *big = malloc(TPL_SRC_MAX + 1);

		memset(big, 'x', TPL_SRC_MAX + 1);
		assert_int_equal(tpl_check(big, TPL_SRC_MAX + 1, err, sizeof(err)), -1);
		free(big);
	}
}

/* A file name is the attacker's: it must not break out of the reply line. */
static void
test_reply_is_one_clean_line(void **state)
{
	struct tpl_vars v = { 0 };
	char out[128];
	size_t n;

	(void)state;
	v.filename = "a.exe\r\n250 OK\r\n\x1b[31m\x7f\ttab caf\xc3\xa9 \xff";
	n = render("Denied %(filename)%\n(see admin)  ", &v, TPL_REPLY, out, sizeof(out));
	assert_int_equal(n, strlen(out));
	assert_string_equal(out, "Denied a.exe 250 OK  [31m  tab caf? ? (see admin)");
	for (size_t i = 0; i < n; i++)
		assert_true(out[i] >= 0x20 && out[i] < 0x7f);

	/* bounded by the buffer, whatever the value */
	{
		char *huge = malloc(100000);

		memset(huge, 'A', 99999);
		huge[99999] = '\0';
		v.filename = huge;
		n = render("x %(filename)% y", &v, TPL_REPLY, out, sizeof(out));
		assert_int_equal(n, sizeof(out) - 1);
		assert_int_equal(strlen(out), n);
		n = render("x %(filename)% y", &v, TPL_REPLY, out, 4096 < sizeof(out) ? 4096 :
		    sizeof(out));
		/* each value is cut at TPL_VALUE_MAX */
		{
			char big[2048];

			n = render("%(filename)%", &v, TPL_REPLY, big, sizeof(big));
			assert_int_equal(n, TPL_VALUE_MAX);
		}
		free(huge);
	}
	n = render("x", &v, TPL_REPLY, out, 1);
	assert_int_equal(n, 0);
	assert_string_equal(out, "");
}

static void
test_body(void **state)
{
	struct tpl_vars v = { 0 };
	char out[4096];

	(void)state;
	v.reason = "bad\r\n--boundary\r\n";
	v.filename = "caf\xc3\xa9\xff.exe";
	render("Line one\nReason: %(reason)%\r\n--not a delimiter\n\n%(filename)%\n\n\n", &v,
	    TPL_BODY, out, sizeof(out));
	assert_string_equal(out, "Line one\r\nReason: bad --boundary \r\n --not a delimiter\r\n"
	    "\r\ncaf\xc3\xa9\xef\xbf\xbd.exe");
	assert_true(decode_utf8_valid(out, strlen(out)));
	render("- item\n-\n--", &v, TPL_BODY, out, sizeof(out));
	assert_string_equal(out, "- item\r\n-\r\n --");
	render("%(filename)%", &v, TPL_BODY_ASCII, out, sizeof(out));
	assert_string_equal(out, "caf??.exe");
	/* a value starting a line with "--" */
	v.reason = "--b--";
	render("%(reason)%", &v, TPL_BODY, out, sizeof(out));
	assert_string_equal(out, " --b--");
}

static void
test_body_line_length(void **state)
{
	struct tpl_vars v = { 0 };
	char *val = malloc(TPL_VALUE_MAX + 1), *out = malloc(65536), *tpl = malloc(TPL_SRC_MAX);
	size_t n, col = 0;

	(void)state;
	memset(val, 'v', TPL_VALUE_MAX);
	val[TPL_VALUE_MAX] = '\0';
	v.reason = val;
	tpl[0] = '\0';
	for (int i = 0; i < 6; i++)
		strcat(tpl, "%(reason)%\xe2\x82\xac");
	n = render(tpl, &v, TPL_BODY, out, 65536);
	for (size_t i = 0; i < n; i++) {
		if (out[i] == '\r') {
			assert_int_equal(out[i + 1], '\n');
			assert_true(col <= TPL_LINE_MAX);
			col = 0;
			i++;
		} else {
			col++;
		}
	}
	assert_true(col <= TPL_LINE_MAX);
	assert_true(decode_utf8_valid(out, n)); /* never broken inside a character */
	free(val);
	free(out);
	free(tpl);
}

/* Every output size: NUL-terminated, never longer, never a cut character. */
static void
test_every_buffer_size(void **state)
{
	struct tpl_vars v = { "r\xc3\xa9", "t", "f\xe2\x82\xac", "v", "a", "rec" };
	char out[600];

	(void)state;
	for (size_t sz = 1; sz < sizeof(out); sz++) {
		for (int m = TPL_REPLY; m <= TPL_BODY_ASCII; m++) {
			size_t n;

			memset(out, 0x55, sizeof(out));
			n = tpl_render(tpl_default, strlen(tpl_default), &v, (enum tpl_mode)m, out, sz);
			assert_true(n < sz);
			assert_int_equal(out[n], '\0');
			assert_int_equal((unsigned char)out[sz < sizeof(out) ? sz : 0] ==
			    0x55 || sz >= sizeof(out), 1);
			assert_true(decode_utf8_valid(out, n));
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_substitution),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_reply_is_one_clean_line),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_body_line_length),
		cmocka_unit_test(test_every_buffer_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
