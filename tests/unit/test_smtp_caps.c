/*
 * test_smtp_caps - EHLO mediation: the client is shown what the
 * destination offers AND smtpgw implements AND the configuration allows.
 * XCLIENT, XFORWARD, ETRN, private X- keywords, STARTTLS and VRFY never
 * pass; SIZE is capped; CHUNKING is smtpgw's own offer; the reply is
 * well-formed ("250-" lines, one final "250 ").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "smtp_caps.h"
#include "smtp_parse.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct config conf;

static int
setup(void **state)
{
	config_defaults(&conf);
	return 0;
}

/* caps_parse over NUL-terminated lines (text after "250-"). */
static void
parse(struct caps *up, const char *const *lines, int n)
{
	size_t lens[64];

	assert_true(n <= 64);
	for (int i = 0; i < n; i++)
		lens[i] = strlen(lines[i]);
	caps_parse(up, lines, lens, n);
}

/* Render into a NUL-terminated string; checks the reply's shape. */
static void
render_tls(const struct caps *up, const struct smtp_limits *lim, const char *greeting,
    char *out, size_t outsz, struct caps *shown, bool starttls)
{
	struct buf b;

	buf_init(&b, SMTP_REPLY_MAX);
	assert_int_equal(caps_render(up, lim, greeting, strlen(greeting), &b, shown, starttls), 0);
	assert_true(buf_len(&b) < outsz);
	memcpy(out, buf_head(&b), buf_len(&b));
	out[buf_len(&b)] = '\0';
	buf_free(&b);

	/* every line "250-..." CRLF, the last "250 ..." CRLF, each a valid reply line */
	const char *p = out;
	while (*p) {
		const char *crlf = strstr(p, "\r\n");
		int code;
		bool more;
		const char *text;
		size_t textlen;

		assert_non_null(crlf);
		assert_int_equal(smtp_reply_line(p, (size_t)(crlf - p), &code, &more, &text,
		    &textlen), 0);
		assert_int_equal(code, 250);
		assert_int_equal(more, crlf[2] != '\0');
		assert_true(crlf - p + 2 <= 512);
		p = crlf + 2;
	}
}

/* Plaintext leg where smtpgw does not offer STARTTLS itself. */
static void
render(const struct caps *up, const struct smtp_limits *lim, const char *greeting, char *out,
    size_t outsz, struct caps *shown)
{
	render_tls(up, lim, greeting, out, outsz, shown, false);
}

static const char *const full[] = {
	"mx.example.com Hello client.example [192.0.2.1]",
	"PIPELINING",
	"SIZE 10485760",
	"VRFY",
	"ETRN",
	"STARTTLS",
	"AUTH PLAIN LOGIN",
	"ENHANCEDSTATUSCODES",
	"8BITMIME",
	"DSN",
	"SMTPUTF8",
	"XCLIENT NAME ADDR PROTO HELO",
	"XFORWARD NAME ADDR PROTO HELO SOURCE",
	"X-FOO bar",
	"X-EXPS LOGIN",
	"DELIVERBY",
	"CHUNKING",
	"BINARYMIME",
};

static void
test_parse_flags(void **state)
{
	struct caps up;

	parse(&up, full, (int)N(full));
	assert_int_equal(up.flags, CAP_PIPELINING | CAP_SIZE | CAP_8BITMIME | CAP_SMTPUTF8 |
	    CAP_ENHANCEDSTATUSCODES | CAP_DSN | CAP_CHUNKING | CAP_AUTH | CAP_STARTTLS);
	assert_true(up.size == 10485760);
	assert_string_equal(up.auth, "PLAIN LOGIN");
}

/* The greeting line is not a keyword; keywords are case-insensitive. */
static void
test_parse_details(void **state)
{
	static const char *const lines[] = {
		"PIPELINING is my name", "pipelining", "size", "Auth plain cram-md5 x_y",
	};
	struct caps up;

	parse(&up, lines, (int)N(lines));
	assert_int_equal(up.flags, CAP_PIPELINING | CAP_SIZE | CAP_AUTH);
	assert_true(up.size == 0);
	assert_string_equal(up.auth, "PLAIN CRAM-MD5 X_Y");

	/* mechanism names only: anything else in the AUTH line is dropped */
	static const char *const evil[] = { "x", "AUTH PLAIN \x01\r;rm -rf=/ LOGIN" };
	parse(&up, evil, 2);
	assert_string_equal(up.auth, "PLAIN RM -RF LOGIN");

	/* a long AUTH line is truncated, never overflowed */
	char longauth[1000];
	memcpy(longauth, "AUTH ", 5);
	memset(longauth + 5, 'M', sizeof(longauth) - 6);
	longauth[sizeof(longauth) - 1] = '\0';
	const char *const big[] = { "x", longauth };
	parse(&up, big, 2);
	assert_int_equal(strlen(up.auth), sizeof(up.auth) - 1);

	/* garbage SIZE values are "no value" (0) or saturate; never trusted raw */
	static const char *const junk[] = { "x", "SIZE abc" };
	parse(&up, junk, 2);
	assert_true(up.size == 0);
	/* "AUTH=PLAIN" (an old, non-standard form) is not AUTH */
	static const char *const old[] = { "x", "AUTH=PLAIN LOGIN" };
	parse(&up, old, 2);
	assert_int_equal(up.flags, 0);
	/* a keyword longer than any we know does not match by its prefix */
	static const char *const pre[] = { "x", "PIPELININGPIPELININGPIPELININGPIPELINING" };
	parse(&up, pre, 2);
	assert_int_equal(up.flags, 0);
}

static void
test_render_full(void **state)
{
	struct caps up, shown;
	char out[4096];

	parse(&up, full, (int)N(full));
	render(&up, &conf.smtp, full[0], out, sizeof(out), &shown);
	assert_string_equal(out,
	    "250-mx.example.com Hello client.example [192.0.2.1]\r\n"
	    "250-PIPELINING\r\n"
	    "250-SIZE 10485760\r\n"
	    "250-8BITMIME\r\n"
	    "250-SMTPUTF8\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n"
	    "250-DSN\r\n"
	    "250-CHUNKING\r\n"
	    "250 AUTH PLAIN LOGIN\r\n");
	assert_int_equal(shown.flags, CAP_PIPELINING | CAP_SIZE | CAP_8BITMIME | CAP_SMTPUTF8 |
	    CAP_ENHANCEDSTATUSCODES | CAP_DSN | CAP_CHUNKING | CAP_AUTH);
	assert_true(shown.size == 10485760);
	assert_string_equal(shown.auth, "PLAIN LOGIN");
	/* never shown, whatever the upstream offers */
	static const char *const never[] = {
		"XCLIENT", "XFORWARD", "ETRN", "X-FOO", "X-EXPS", "STARTTLS", "VRFY", "DELIVERBY",
		"BINARYMIME",
	};
	for (size_t i = 0; i < N(never); i++)
		if (strstr(out, never[i]))
			fail_msg("%s passed through", never[i]);
}

static void
test_render_size_cap(void **state)
{
	static const struct {
		const char *line;
		uint64_t max;
		uint64_t want;
	} cases[] = {
		{"SIZE", 52428800, 52428800},        /* no value: our own maximum */
		{"SIZE 0", 52428800, 52428800},      /* 0 = no limit upstream */
		{"SIZE 1000", 52428800, 1000},       /* the upstream's smaller value */
		{"SIZE 99999999999", 52428800, 52428800}, /* never more than we accept */
		{"SIZE 18446744073709551616", 52428800, 52428800},
		{"SIZE 1000", 500, 500},
	};

	for (size_t i = 0; i < N(cases); i++) {
		const char *lines[] = { "mx", cases[i].line };
		struct smtp_limits lim = conf.smtp;
		struct caps up, shown;
		char out[1024], want[64];

		lim.max_message_size = cases[i].max;
		lim.allow_chunking = false;
		parse(&up, lines, 2);
		render(&up, &lim, "mx", out, sizeof(out), &shown);
		snprintf(want, sizeof(want), "250-mx\r\n250 SIZE %llu\r\n",
		    (unsigned long long)cases[i].want);
		if (strcmp(out, want) != 0)
			fail_msg("case %zu: \"%s\"", i, out);
		assert_true(shown.size == cases[i].want);
	}
	/* no SIZE upstream: none shown (the client learns our limit at MAIL) */
	const char *lines[] = { "mx", "8BITMIME" };
	struct caps up, shown;
	char out[1024];
	parse(&up, lines, 2);
	render(&up, &conf.smtp, "mx", out, sizeof(out), &shown);
	assert_null(strstr(out, "SIZE"));
	assert_false(shown.flags & CAP_SIZE);
}

static void
test_render_chunking(void **state)
{
	const char *without[] = { "mx", "PIPELINING" };
	const char *with[] = { "mx", "PIPELINING", "CHUNKING" };
	struct smtp_limits lim = conf.smtp;
	struct caps up, shown;
	char out[1024];

	/* offered even when the upstream lacks it: the engine converts BDAT to DATA */
	lim.allow_chunking = true;
	parse(&up, without, 2);
	render(&up, &lim, "mx", out, sizeof(out), &shown);
	assert_string_equal(out, "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
	assert_true(shown.flags & CAP_CHUNKING);
	/* never when the configuration says no, even if the upstream has it */
	lim.allow_chunking = false;
	parse(&up, with, 3);
	render(&up, &lim, "mx", out, sizeof(out), &shown);
	assert_string_equal(out, "250-mx\r\n250 PIPELINING\r\n");
	assert_false(shown.flags & CAP_CHUNKING);
}

static void
test_render_auth(void **state)
{
	const char *lines[] = { "mx", "AUTH PLAIN LOGIN" };
	const char *empty[] = { "mx", "AUTH" };
	struct smtp_limits lim = conf.smtp;
	struct caps up, shown;
	char out[1024];

	lim.allow_chunking = false;
	lim.allow_auth = true;
	parse(&up, lines, 2);
	render(&up, &lim, "mx", out, sizeof(out), &shown);
	assert_string_equal(out, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
	lim.allow_auth = false;
	render(&up, &lim, "mx", out, sizeof(out), &shown);
	assert_string_equal(out, "250 mx\r\n");
	assert_false(shown.flags & CAP_AUTH);
	/* AUTH without a mechanism is not offered */
	lim.allow_auth = true;
	parse(&up, empty, 2);
	render(&up, &lim, "mx", out, sizeof(out), &shown);
	assert_string_equal(out, "250 mx\r\n");
}

/*
 * STARTTLS is smtpgw's own offer (it terminates TLS), never the
 * destination's: shown when the caller says so, whatever upstream offers.
 */
static void
test_render_starttls(void **state)
{
	const char *with[] = { "mx", "STARTTLS", "PIPELINING" };
	const char *without[] = { "mx", "PIPELINING" };
	struct smtp_limits lim = conf.smtp;
	struct caps up, shown;
	char out[1024];

	lim.allow_chunking = false;
	parse(&up, with, 3);
	render_tls(&up, &lim, "mx", out, sizeof(out), &shown, false);
	assert_string_equal(out, "250-mx\r\n250 PIPELINING\r\n");
	assert_false(shown.flags & CAP_STARTTLS);
	parse(&up, without, 2);
	render_tls(&up, &lim, "mx", out, sizeof(out), &shown, true);
	assert_string_equal(out, "250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
	assert_true(shown.flags & CAP_STARTTLS);
}

/* Only the greeting: a single "250 " line.  A long greeting is truncated. */
static void
test_render_greeting(void **state)
{
	struct smtp_limits lim = conf.smtp;
	struct caps up, shown;
	char out[4096], big[1200];

	lim.allow_chunking = false;
	memset(&up, 0, sizeof(up));
	render(&up, &lim, "mx.example.com at your service", out, sizeof(out), &shown);
	assert_string_equal(out, "250 mx.example.com at your service\r\n");
	memset(big, 'g', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	render(&up, &lim, big, out, sizeof(out), &shown);
	assert_true(strlen(out) < 512);
	assert_int_equal(strncmp(out, "250 ggg", 7), 0);
}

/* Every known keyword alone: shown iff implemented and allowed. */
static void
test_render_each(void **state)
{
	static const struct {
		const char *kw;
		unsigned flag;
		bool shown;
	} cases[] = {
		{"PIPELINING", CAP_PIPELINING, true},
		{"SIZE 100", CAP_SIZE, true},
		{"8BITMIME", CAP_8BITMIME, true},
		{"SMTPUTF8", CAP_SMTPUTF8, true},
		{"ENHANCEDSTATUSCODES", CAP_ENHANCEDSTATUSCODES, true},
		{"DSN", CAP_DSN, true},
		{"AUTH PLAIN", CAP_AUTH, true},
		{"STARTTLS", CAP_STARTTLS, false},
		{"CHUNKING", CAP_CHUNKING, false}, /* allow_chunking is off here */
		{"XCLIENT NAME", 0, false},
		{"XFORWARD NAME", 0, false},
		{"ETRN", 0, false},
		{"VRFY", 0, false},
		{"X-FOO", 0, false},
	};
	struct smtp_limits lim = conf.smtp;

	lim.allow_chunking = false;
	for (size_t i = 0; i < N(cases); i++) {
		const char *lines[] = { "mx", cases[i].kw };
		struct caps up, shown;
		char out[1024];

		parse(&up, lines, 2);
		assert_int_equal(up.flags, cases[i].flag);
		render(&up, &lim, "mx", out, sizeof(out), &shown);
		assert_int_equal(shown.flags != 0, cases[i].shown);
		assert_int_equal(strcmp(out, "250 mx\r\n") != 0, cases[i].shown);
	}
}

/* ---- caps_names: flags as names for logs ---- */

static const struct {
	unsigned flags;
	size_t outlen;
	const char *want;
} names_cases[] = {
	{0, CAPS_NAMES_SIZE, "-"},
	{CAP_PIPELINING, CAPS_NAMES_SIZE, "PIPELINING"},
	{CAP_SIZE | CAP_PIPELINING | CAP_8BITMIME, CAPS_NAMES_SIZE, "PIPELINING,SIZE,8BITMIME"},
	{CAP_STARTTLS | CAP_DSN, CAPS_NAMES_SIZE, "DSN,STARTTLS"},
	/* Everything, in the defines' order (what "upstream=0x1ff" meant). */
	{0x1ff, CAPS_NAMES_SIZE,
	    "PIPELINING,SIZE,8BITMIME,SMTPUTF8,ENHANCEDSTATUSCODES,DSN,CHUNKING,AUTH,STARTTLS"},
	{0x17f, CAPS_NAMES_SIZE,
	    "PIPELINING,SIZE,8BITMIME,SMTPUTF8,ENHANCEDSTATUSCODES,DSN,CHUNKING,STARTTLS"},
	/* Bits without a name: one number at the end. */
	{CAP_DSN | 0x200 | 0x8000, CAPS_NAMES_SIZE, "DSN,0x8200"},
	{0xfffffe00u, CAPS_NAMES_SIZE, "0xfffffe00"},
	{0xffffffffu, CAPS_NAMES_SIZE,
	    "PIPELINING,SIZE,8BITMIME,SMTPUTF8,ENHANCEDSTATUSCODES,DSN,CHUNKING,AUTH,STARTTLS,"
	    "0xfffffe00"},
	/* Cut at a name, "..." at the end, never past outlen. */
	{CAP_PIPELINING | CAP_SIZE | CAP_8BITMIME, 20, "PIPELINING,SIZE..."},
	{CAP_PIPELINING | CAP_SIZE | CAP_8BITMIME, 19, "PIPELINING,SIZE..."},
	{CAP_PIPELINING | CAP_SIZE | CAP_8BITMIME, 18, "PIPELINING..."},
	{CAP_PIPELINING | CAP_SIZE, 16, "PIPELINING..."},
	{CAP_PIPELINING | CAP_SIZE, 14, "PIPELINING..."},
	{CAP_PIPELINING | CAP_SIZE, 13, "..."},
	{CAP_PIPELINING, 4, "..."},
	{CAP_PIPELINING, 3, ""},
	{CAP_PIPELINING, 1, ""},
	{0, 1, ""},
	{0, 2, "-"},
};

static void
test_names(void **state)
{
	char out[CAPS_NAMES_SIZE + 8];

	for (size_t i = 0; i < N(names_cases); i++) {
		memset(out, 'Z', sizeof(out));
		assert_ptr_equal(caps_names(names_cases[i].flags, out, names_cases[i].outlen), out);
		if (strcmp(out, names_cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\", expected \"%s\"", i, out, names_cases[i].want);
		assert_int_equal(out[names_cases[i].outlen], 'Z');
	}
}

/* Every flag value fits whole in CAPS_NAMES_SIZE; no ',' doubled or trailing. */
static void
test_names_fit(void **state)
{
	char out[CAPS_NAMES_SIZE];

	for (unsigned f = 0; f < 0x400; f++) {
		unsigned flags = f | (f & 0x200 ? 0xfffffc00u : 0);
		size_t n;

		caps_names(flags, out, sizeof(out));
		n = strlen(out);
		assert_true(n > 0);
		assert_null(strstr(out, "..."));
		assert_null(strstr(out, ",,"));
		assert_true(out[0] != ',' && out[n - 1] != ',');
	}
}

/* What caps_render shows is what caps_names names. */
static void
test_names_of_rendered(void **state)
{
	const char *lines[] = { "mx", "PIPELINING", "SIZE 1000", "8BITMIME", "XCLIENT ADDR",
		"DSN" };
	struct caps up, shown;
	char out[1024], names[CAPS_NAMES_SIZE];

	parse(&up, lines, (int)N(lines));
	render(&up, &conf.smtp, "mx", out, sizeof(out), &shown);
	assert_string_equal(caps_names(up.flags, names, sizeof(names)),
	    "PIPELINING,SIZE,8BITMIME,DSN");
	assert_string_equal(caps_names(shown.flags, names, sizeof(names)),
	    "PIPELINING,SIZE,8BITMIME,DSN,CHUNKING");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_flags),
		cmocka_unit_test(test_parse_details),
		cmocka_unit_test(test_render_full),
		cmocka_unit_test(test_render_size_cap),
		cmocka_unit_test(test_render_chunking),
		cmocka_unit_test(test_render_auth),
		cmocka_unit_test(test_render_starttls),
		cmocka_unit_test(test_render_greeting),
		cmocka_unit_test(test_render_each),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_names_fit),
		cmocka_unit_test(test_names_of_rendered),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
