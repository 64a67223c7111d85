/*
 * test_decode - the content decoders.  Base64 and quoted-printable:
 * tables of input -> output + flags, each also decoded in every split into
 * two calls and one octet at a time (the state across calls must not
 * change anything), output within the DECODE_*_OUT bounds.  Charsets to
 * valid UTF-8, RFC 2047 words (joined across words, malformed ones kept),
 * and structured fields with RFC 2231 continuations and their trouble
 * flags.
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

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- base64 ------------------------------------------------------------ */

struct b64case {
	const char *in;
	const char *out;
	size_t outlen; /* 0: strlen(out) */
	unsigned flags;
};

static const struct b64case b64cases[] = {
	{ "", "", 0, 0 },
	{ "TWFu", "Man", 0, 0 },
	{ "TWE=", "Ma", 0, 0 },
	{ "TQ==", "M", 0, 0 },
	{ "TWFu\r\nTWFu\r\n", "ManMan", 0, 0 },
	{ "T W\tF\r\nu", "Man", 0, 0 },
	{ "AAEC/+/+", "\x00\x01\x02\xff\xef\xfe", 6, 0 },
	{ "TWF", "Ma", 0, DECODE_F_B64_PARTIAL },
	{ "TW", "M", 0, DECODE_F_B64_PARTIAL },
	{ "T", "", 0, DECODE_F_B64_PARTIAL },
	{ "TQ=", "M", 0, DECODE_F_B64_PARTIAL },
	{ "TW!Fu", "Man", 0, DECODE_F_B64_BAD_CHAR },
	{ "TW\x80\0" "Fu", "Man", 0, DECODE_F_B64_BAD_CHAR },
	{ "TQ==TWFu", "MMan", 0, DECODE_F_B64_AFTER_PAD },
	{ "TQ=TWFu", "MMan", 0, DECODE_F_B64_AFTER_PAD },
	{ "TWE=TWFu", "MaMan", 0, DECODE_F_B64_AFTER_PAD },
	{ "=TWFu", "Man", 0, DECODE_F_B64_BAD_PAD },
	{ "TWFu=", "Man", 0, DECODE_F_B64_BAD_PAD },
	{ "TQ===", "M", 0, DECODE_F_B64_BAD_PAD },
	{ "TWFu\r\n", "Man", 0, 0 },
};

static size_t
b64_run(const char *in, size_t len, size_t split, bool bytewise, unsigned char *out,
    unsigned *flags)
{
	struct decode_b64 d;
	size_t o = 0, got;

	decode_b64_init(&d);
	if (bytewise) {
		for (size_t i = 0; i < len; i++) {
			got = decode_b64(&d, in + i, 1, out + o);
			assert_true(got <= DECODE_B64_OUT(1));
			o += got;
		}
	} else {
		got = decode_b64(&d, in, split, out);
		assert_true(got <= DECODE_B64_OUT(split));
		o += got;
		got = decode_b64(&d, in + split, len - split, out + o);
		assert_true(got <= DECODE_B64_OUT(len - split));
		o += got;
	}
	o += decode_b64_finish(&d, out + o);
	*flags = d.flags;
	return o;
}

static void
test_base64(void **state)
{
	(void)state;
	for (size_t c = 0; c < N(b64cases); c++) {
		const struct b64case *t = &b64cases[c];
		size_t len = strlen(t->in), want = t->outlen ? t->outlen : strlen(t->out);
		unsigned char out[256];
		unsigned flags;
		size_t n;

		if (c == 12)
			len = 6; /* holds a NUL */
		for (size_t split = 0; split <= len; split++) {
			n = b64_run(t->in, len, split, false, out, &flags);
			if (n != want || memcmp(out, t->out, want) != 0 || flags != t->flags) {
				fprintf(stderr, "base64 \"%s\" split %zu: %zu octets flags %#x, want %zu %#x\n",
				    t->in, split, n, flags, want, t->flags);
				fail();
			}
		}
		n = b64_run(t->in, len, 0, true, out, &flags);
		assert_int_equal(n, want);
		assert_memory_equal(out, t->out, want);
		assert_int_equal(flags, t->flags);
	}
}

/* Every byte value round-trips through an encoder of our own. */
static void
test_base64_all_octets(void **state)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char bin[256], out[400];
	char enc[400];
	size_t e = 0;
	struct decode_b64 d;
	size_t n;

	(void)state;
	for (int i = 0; i < 256; i++)
		bin[i] = (unsigned char)i;
	for (size_t i = 0; i < 256; i += 3) {
		size_t k = 256 - i < 3 ? 256 - i : 3;
		uint32_t v = (uint32_t)bin[i] << 16 | (k > 1 ? (uint32_t)bin[i + 1] << 8 : 0) |
		    (k > 2 ? bin[i + 2] : 0);

		enc[e++] = al[v >> 18];
		enc[e++] = al[v >> 12 & 63];
		enc[e++] = k > 1 ? al[v >> 6 & 63] : '=';
		enc[e++] = k > 2 ? al[v & 63] : '=';
	}
	decode_b64_init(&d);
	n = decode_b64(&d, enc, e, out);
	n += decode_b64_finish(&d, out + n);
	assert_int_equal(d.flags, 0);
	assert_int_equal(n, 256);
	assert_memory_equal(out, bin, 256);
}

/* ---- quoted-printable ---------------------------------------------------- */

struct qpcase {
	const char *in;
	const char *out;
	unsigned flags;
};

static const struct qpcase qpcases[] = {
	{ "", "", 0 },
	{ "plain text", "plain text", 0 },
	{ "a=3Db", "a=b", 0 },
	{ "caf=C3=A9", "caf\xc3\xa9", 0 },
	{ "soft=\r\nbreak", "softbreak", 0 },
	{ "soft=\nbreak", "softbreak", 0 },
	{ "padded=  \r\nbreak", "paddedbreak", 0 },
	{ "trailing   \r\nline", "trailing\r\nline", 0 },
	{ "trailing\t \nline", "trailing\nline", 0 },
	{ "trailing at end  ", "trailing at end", 0 },
	{ "inner  space", "inner  space", 0 },
	{ "ends with =", "ends with ", 0 },
	{ "a=3db", "a=b", DECODE_F_QP_LOWER_HEX },
	{ "a=ZZb", "a=ZZb", DECODE_F_QP_BAD_ESCAPE },
	{ "a=3", "a=3", DECODE_F_QP_BAD_ESCAPE },
	{ "a=3G", "a=3G", DECODE_F_QP_BAD_ESCAPE },
	{ "a= b", "a= b", DECODE_F_QP_BAD_ESCAPE },
	{ "a=\rb", "a=\rb", DECODE_F_QP_BAD_ESCAPE },
	{ "bare\rcr", "bare\rcr", 0 },
	{ "ws \rx", "ws \rx", 0 },
	{ "x\r", "x\r", 0 },
	{ "==41", "=A", DECODE_F_QP_BAD_ESCAPE },
};

static size_t
qp_run(const char *in, size_t len, size_t split, bool bytewise, unsigned char *out,
    unsigned *flags)
{
	struct decode_qp d;
	size_t o = 0, got;

	decode_qp_init(&d);
	if (bytewise) {
		for (size_t i = 0; i < len; i++) {
			got = decode_qp(&d, in + i, 1, out + o);
			assert_true(got <= DECODE_QP_OUT(1));
			o += got;
		}
	} else {
		got = decode_qp(&d, in, split, out);
		assert_true(got <= DECODE_QP_OUT(split));
		o += got;
		got = decode_qp(&d, in + split, len - split, out + o);
		assert_true(got <= DECODE_QP_OUT(len - split));
		o += got;
	}
	o += decode_qp_finish(&d, out + o);
	*flags = d.flags;
	return o;
}

static void
test_qp(void **state)
{
	(void)state;
	for (size_t c = 0; c < N(qpcases); c++) {
		const struct qpcase *t = &qpcases[c];
		size_t len = strlen(t->in), want = strlen(t->out), n;
		unsigned char out[512];
		unsigned flags;

		for (size_t split = 0; split <= len; split++) {
			n = qp_run(t->in, len, split, false, out, &flags);
			if (n != want || memcmp(out, t->out, want) != 0 || flags != t->flags) {
				fprintf(stderr, "qp \"%s\" split %zu: \"%.*s\" flags %#x, want \"%s\" %#x\n",
				    t->in, split, (int)n, out, flags, t->out, t->flags);
				fail();
			}
		}
		n = qp_run(t->in, len, 0, true, out, &flags);
		assert_int_equal(n, want);
		assert_memory_equal(out, t->out, want);
	}
}

/* A whitespace run longer than the decoder holds is kept, flagged. */
static void
test_qp_long_whitespace(void **state)
{
	char in[300];
	unsigned char out[DECODE_QP_OUT(300)];
	unsigned flags;
	size_t n;

	(void)state;
	memset(in, ' ', 200);
	memcpy(in + 200, "x\r\n", 3);
	n = qp_run(in, 203, 100, false, out, &flags);
	assert_int_equal(n, 203);
	assert_int_equal(flags, DECODE_F_QP_LONG_WS);
	/* trailing: only what is still held (the last run) is dropped */
	n = qp_run(in, 200, 0, true, out, &flags);
	assert_true(n < 200);
	assert_int_equal(n % DECODE_QP_WS_MAX, 0);
}

/* ---- charsets ------------------------------------------------------------ */

static void
test_charset(void **state)
{
	char out[64];
	unsigned fl;
	size_t n;

	(void)state;
	fl = 0;
	n = decode_charset("utf-8", (const unsigned char *)"caf\xc3\xa9", 5, out, sizeof(out), &fl);
	assert_string_equal(out, "caf\xc3\xa9");
	assert_int_equal(n, 5);
	assert_int_equal(fl, 0);
	fl = 0;
	decode_charset("ISO-8859-1", (const unsigned char *)"caf\xe9", 4, out, sizeof(out), &fl);
	assert_string_equal(out, "caf\xc3\xa9");
	fl = 0;
	decode_charset("windows-1252", (const unsigned char *)"\x80\x99", 2, out, sizeof(out), &fl);
	assert_string_equal(out, "\xe2\x82\xac\xe2\x84\xa2");
	/* through iconv (glibc gconv) */
	fl = 0;
	decode_charset("KOI8-R", (const unsigned char *)"\xc1", 1, out, sizeof(out), &fl);
	assert_string_equal(out, "\xd0\xb0");
	assert_int_equal(fl, 0);
	fl = 0;
	decode_charset("ISO-2022-JP", (const unsigned char *)"\x1b$B$\"\x1b(B", 8, out, sizeof(out),
	    &fl);
	assert_string_equal(out, "\xe3\x81\x82");
	/* invalid UTF-8: one U+FFFD per bad octet */
	fl = 0;
	decode_charset(NULL, (const unsigned char *)"a\xff\xc0\xafz", 5, out, sizeof(out), &fl);
	assert_string_equal(out, "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
	assert_int_equal(fl, DECODE_F_INVALID);
	/* surrogates and overlongs are invalid */
	assert_false(decode_utf8_valid("\xed\xa0\x80", 3));
	assert_false(decode_utf8_valid("\xe0\x80\xaf", 3));
	assert_false(decode_utf8_valid("\xf4\x90\x80\x80", 4));
	assert_true(decode_utf8_valid("\xf4\x8f\xbf\xbf", 4));
	/* unknown or unsafe names: read as UTF-8, flagged */
	fl = 0;
	decode_charset("x-no-such-charset", (const unsigned char *)"ok", 2, out, sizeof(out), &fl);
	assert_string_equal(out, "ok");
	assert_int_equal(fl, DECODE_F_CHARSET);
	fl = 0;
	decode_charset("UTF-8//TRANSLIT", (const unsigned char *)"ok", 2, out, sizeof(out), &fl);
	assert_int_equal(fl, DECODE_F_CHARSET);
	/* truncation at a character boundary */
	fl = 0;
	n = decode_charset("utf-8", (const unsigned char *)"ab\xe2\x82\xac", 5, out, 5, &fl);
	assert_int_equal(n, 2);
	assert_string_equal(out, "ab");
	assert_int_equal(fl, DECODE_F_TRUNCATED);
	fl = 0;
	n = decode_charset("utf-8", (const unsigned char *)"abcdef", 6, out, 4, &fl);
	assert_string_equal(out, "abc");
	assert_int_equal(fl, DECODE_F_TRUNCATED);
	/* NUL is kept and flagged */
	fl = 0;
	n = decode_charset("utf-8", (const unsigned char *)"a\0b", 3, out, sizeof(out), &fl);
	assert_int_equal(n, 3);
	assert_int_equal(fl, DECODE_F_NUL);
}

/* ---- RFC 2047 -------------------------------------------------------------- */

struct wcase {
	const char *in;
	const char *out;
	unsigned flags;
};

static const struct wcase wcases[] = {
	{ "plain", "plain", 0 },
	{ "=?UTF-8?B?ZXZpbC5leGU=?=", "evil.exe", 0 },
	{ "=?utf-8?q?caf=C3=A9_bar?=", "caf\xc3\xa9 bar", 0 },
	{ "=?iso-8859-1?Q?caf=E9?= =?iso-8859-1?Q?_doc?=", "caf\xc3\xa9 doc", 0 },
	{ "a =?utf-8?q?b?= c", "a b c", 0 },
	{ "=?utf-8?q?a?=  \t =?utf-8?q?b?=", "ab", 0 },
	/* a character split across two words comes out whole */
	{ "=?utf-8?B?4oI=?= =?utf-8?B?rA==?=", "\xe2\x82\xac", 0 },
	{ "=?utf-8*en?q?x?=", "x", 0 },
	{ "x=?utf-8?q?y?=z", "xyz", 0 },
	{ "=?utf-8?x?y?=", "=?utf-8?x?y?=", DECODE_F_BAD_WORD },
	{ "=?utf-8?q?no end", "=?utf-8?q?no end", DECODE_F_BAD_WORD },
	{ "=??q?x?=", "=??q?x?=", DECODE_F_BAD_WORD },
	{ "=?utf-8?B?!!!?=", "", DECODE_F_BAD_WORD },
	{ "=?utf-8?q?a=ZZ?=", "a=ZZ", DECODE_F_BAD_WORD },
	{ "=?koi8-r?B?wQ==?=", "\xd0\xb0", 0 },
	{ "raw \xc3\xa9 text", "raw \xc3\xa9 text", 0 },
	{ "raw \xff", "raw \xef\xbf\xbd", DECODE_F_INVALID },
	{ "=?utf-8?q?a=00b?=", "a", DECODE_F_NUL },
};

static void
test_2047(void **state)
{
	(void)state;
	for (size_t c = 0; c < N(wcases); c++) {
		char out[256];
		unsigned fl = 0;
		size_t n = decode_2047(wcases[c].in, strlen(wcases[c].in), out, sizeof(out), &fl);

		if (strcmp(out, wcases[c].out) != 0 || fl != wcases[c].flags) {
			fprintf(stderr, "2047 \"%s\": \"%s\" %#x, want \"%s\" %#x\n", wcases[c].in, out,
			    fl, wcases[c].out, wcases[c].flags);
			fail();
		}
		if (!(fl & DECODE_F_NUL))
			assert_int_equal(n, strlen(out));
	}
}

static void
test_2047_bounded(void **state)
{
	char in[4096], out[16];
	size_t m = 0;
	unsigned fl = 0;

	(void)state;
	while (m + 30 < sizeof(in))
		m += (size_t)sprintf(in + m, "=?utf-8?q?abcdef?= ");
	assert_true(decode_2047(in, m, out, sizeof(out), &fl) < sizeof(out));
	assert_int_equal(fl, DECODE_F_TRUNCATED);
	assert_string_equal(out, "abcdefabcdefabc");
}

/* ---- fields and parameters -------------------------------------------------- */

static const struct decode_param *
field(const char *in, struct decode_field *f, char **store)
{
	size_t len = strlen(in);

	*store = malloc(DECODE_STORE_SIZE(len));
	assert_non_null(*store);
	decode_field(in, len, f, *store, DECODE_STORE_SIZE(len));
	return f->nparams ? &f->params[0] : NULL;
}

static void
test_field_basic(void **state)
{
	struct decode_field f;
	char *st;
	const struct decode_param *p;

	(void)state;
	field("Multipart/Mixed; Boundary=\"=_a b\"; charset=us-ascii", &f, &st);
	assert_string_equal(f.value, "multipart/mixed");
	assert_int_equal(f.nparams, 2);
	p = decode_field_param(&f, "boundary", false);
	assert_non_null(p);
	assert_string_equal(p->value, "=_a b");
	assert_true(p->quoted);
	assert_int_equal(f.flags, 0);
	assert_null(decode_field_param(&f, "boundary", true));
	free(st);

	field("  attachment  ;filename=a.exe;", &f, &st);
	assert_string_equal(f.value, "attachment");
	assert_string_equal(decode_field_param(&f, "filename", false)->value, "a.exe");
	assert_int_equal(f.flags, 0);
	free(st);

	field("text/plain", &f, &st);
	assert_int_equal(f.nparams, 0);
	assert_int_equal(f.flags, 0);
	free(st);
	field("", &f, &st);
	assert_string_equal(f.value, "");
	free(st);
}

struct fcase {
	const char *in;
	const char *param; /* first param name, ext form if it starts with '*' */
	const char *value;
	unsigned flags;    /* field flags that must be set (all of them) */
	unsigned none;     /* field flags that must not be set */
};

static const struct fcase fcases[] = {
	/* RFC 2231 */
	{ "a; filename*=UTF-8''%e2%82%ac.exe", "*filename", "\xe2\x82\xac.exe", 0, ~0u },
	{ "a; filename*=iso-8859-1'fr'caf%E9", "*filename", "caf\xc3\xa9", 0, ~0u },
	{ "a; filename*0=\"long \"; filename*1=name.exe", "*filename", "long name.exe", 0, ~0u },
	{ "a; filename*1=b.exe; filename*0=a", "*filename", "ab.exe", 0, ~0u },
	{ "a; filename*0*=UTF-8''%41; filename*1*=%42; filename*2=C", "*filename", "ABC", 0, ~0u },
	{ "a; filename*0=a; filename*2=c", "*filename", "a", DECODE_P_2231_GAP, 0 },
	{ "a; filename*0=a; filename*0=b", "*filename", "a", DECODE_P_2231_GAP, 0 },
	{ "a; filename*=a.exe", "*filename", "a.exe", DECODE_P_2231_CHARSET, 0 },
	{ "a; filename*=bogus//x''a", "*filename", "a", DECODE_P_2231_CHARSET, 0 },
	{ "a; filename*=utf-8''a%zz", "*filename", "a%zz", DECODE_P_SYNTAX, 0 },
	{ "a; filename*00=x", "filename*00", "x", DECODE_P_SYNTAX, 0 },
	{ "a; filename*=utf-8''a%00.txt", "*filename", "a", DECODE_P_NUL, 0 },
	/* quoting */
	{ "a; b=\"x\\\"y\"", "b", "x\"y", DECODE_P_ESCAPE, 0 },
	{ "a; b=\"xy", "b", "xy", DECODE_P_UNTERMINATED, 0 },
	{ "a; b=\"x\"y; c=d", "b", "x", DECODE_P_JUNK, 0 },
	{ "a; b=my file.exe; c=d", "b", "my file.exe", DECODE_P_LOOSE, DECODE_P_JUNK },
	{ "a; b=my \"file\"", "b", "my \"file\"", DECODE_P_LOOSE | DECODE_P_JUNK, 0 },
	{ "a; b=x (comment); c=d", "b", "x", DECODE_P_COMMENT, DECODE_P_LOOSE },
	{ "a (c) ; b=x", "b", "x", DECODE_P_COMMENT, 0 },
	{ "a; b=x; b=y", "b", "x", DECODE_P_DUP, 0 },
	{ "a; B=x; b=y", "b", "x", DECODE_P_DUP, 0 },
	{ "a; b", NULL, NULL, DECODE_P_SYNTAX, 0 },
	{ "a; =x; b=y", "b", "y", DECODE_P_SYNTAX, 0 },
	{ "a b; c=d", "c", "d", DECODE_P_VALUE_JUNK, DECODE_P_JUNK },
	{ "a; b=\xc3\xa9", "b", "\xc3\xa9", DECODE_P_8BIT, DECODE_P_CHARSET },
	{ "a; b=\"\xe9t\xe9\"", "b", "\xc3\xa9t\xc3\xa9", DECODE_P_8BIT | DECODE_P_CHARSET, 0 },
	{ "a; b=\"(not a comment)\"", "b", "(not a comment)", 0, ~0u },
	{ "a; b=\"x;y\"; c=d", "b", "x;y", 0, ~0u },
	{ "a; b=(unterminated", NULL, NULL, DECODE_P_UNTERMINATED | DECODE_P_COMMENT, 0 },
};

static void
test_field_cases(void **state)
{
	(void)state;
	for (size_t c = 0; c < N(fcases); c++) {
		const struct fcase *t = &fcases[c];
		struct decode_field f;
		const struct decode_param *p = NULL;
		char *st;

		field(t->in, &f, &st);
		if (t->param)
			p = decode_field_param(&f, t->param[0] == '*' ? t->param + 1 : t->param,
			    t->param[0] == '*');
		if ((t->param && (p == NULL || strcmp(p->value, t->value) != 0)) ||
		    (f.flags & t->flags) != t->flags || (f.flags & t->none)) {
			fprintf(stderr, "field \"%s\": param %s = \"%s\", flags %#x\n", t->in,
			    t->param ? t->param : "-", p ? p->value : "(none)", f.flags);
			fail();
		}
		if (t->flags & DECODE_P_AMBIGUOUS)
			assert_true(f.flags & DECODE_P_AMBIGUOUS);
		free(st);
	}
}

/* Too many parameters, and a store too small: flagged, never overrun. */
static void
test_field_bounds(void **state)
{
	char in[8192], store[64];
	size_t m = 0;
	struct decode_field f;

	(void)state;
	m += (size_t)sprintf(in, "x");
	for (int i = 0; i < 100; i++)
		m += (size_t)sprintf(in + m, "; p%d=v%d", i, i);
	decode_field(in, m, &f, store, sizeof(store));
	assert_true(f.flags & DECODE_P_TOO_MANY);
	assert_true(f.flags & DECODE_P_TRUNCATED);
	assert_true(f.nparams <= DECODE_PARAMS_MAX);
	for (unsigned i = 0; i < f.nparams; i++)
		assert_true(f.params[i].value >= store ? f.params[i].value < store + sizeof(store) :
		    f.params[i].value[0] == '\0');
	/* a long parameter name is cut, not overrun */
	memset(in, 'n', 500);
	memcpy(in, "x; ", 3);
	memcpy(in + 500, "=v", 2);
	{
		char *big = malloc(DECODE_STORE_SIZE(502));

		decode_field(in, 502, &f, big, DECODE_STORE_SIZE(502));
		assert_int_equal(f.nparams, 1);
		assert_int_equal(strlen(f.params[0].name), DECODE_PNAME_MAX - 1);
		assert_true(f.flags & DECODE_P_TRUNCATED);
		free(big);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_base64_all_octets),
		cmocka_unit_test(test_qp),
		cmocka_unit_test(test_qp_long_whitespace),
		cmocka_unit_test(test_charset),
		cmocka_unit_test(test_2047),
		cmocka_unit_test(test_2047_bounded),
		cmocka_unit_test(test_field_basic),
		cmocka_unit_test(test_field_cases),
		cmocka_unit_test(test_field_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
