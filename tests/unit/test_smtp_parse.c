/*
 * test_smtp_parse - the one grammar for what crosses the gateway: line
 * splitting, every command verb, RFC 5321 paths and ESMTP parameters,
 * BDAT sizes, HTTP probes, reply lines, xtext and UTF-8.  Each table row is
 * an input line and what must come out (or the reply it must be refused
 * with).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp_parse.h"

#define S(lit) lit, sizeof(lit) - 1
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------- line splitting */

static const struct {
	const char *in;
	size_t len;
	size_t max;
	enum smtp_line want;
	size_t linelen, consumed;
} split_cases[] = {
	{S("EHLO x\r\n"), 2048, SMTP_LINE_OK, 6, 8},
	{S("EHLO x\r\nMAIL"), 2048, SMTP_LINE_OK, 6, 8}, /* only the first line */
	{S("\r\n"), 2048, SMTP_LINE_OK, 0, 2},
	{S("EHLO x\n"), 2048, SMTP_LINE_BARE_LF, 6, 7},
	{S("\n"), 2048, SMTP_LINE_BARE_LF, 0, 1},
	{S("a\r\r\n"), 2048, SMTP_LINE_OK, 2, 4}, /* the stray CR stays in the line */
	{S("EHLO x"), 2048, SMTP_LINE_PARTIAL, 0, 0},
	{S("EHLO x\r"), 2048, SMTP_LINE_PARTIAL, 0, 0},
	{S(""), 2048, SMTP_LINE_PARTIAL, 0, 0},
	/* max counts the CRLF: 8 octets + CRLF fit in 10 */
	{S("12345678\r\n"), 10, SMTP_LINE_OK, 8, 10},
	{S("123456789\r\n"), 10, SMTP_LINE_TOOLONG, 0, 0},
	{S("123456789\r"), 10, SMTP_LINE_TOOLONG, 0, 0}, /* the LF could only come at 11 */
	{S("123456789"), 10, SMTP_LINE_PARTIAL, 0, 0},
	{S("1234567890"), 10, SMTP_LINE_TOOLONG, 0, 0},
	{S("1234567890123\r\n"), 10, SMTP_LINE_TOOLONG, 0, 0},
	{S("12345678\n"), 10, SMTP_LINE_BARE_LF, 8, 9},
};

static void
test_line_split(void **state)
{
	for (size_t i = 0; i < N(split_cases); i++) {
		size_t linelen = 0, consumed = 0;
		enum smtp_line got = smtp_line_split(split_cases[i].in, split_cases[i].len,
		    split_cases[i].max, &linelen, &consumed);

		if (got != split_cases[i].want)
			fail_msg("case %zu: got %d, expected %d", i, got, split_cases[i].want);
		if (got == SMTP_LINE_OK || got == SMTP_LINE_BARE_LF) {
			assert_int_equal(linelen, split_cases[i].linelen);
			assert_int_equal(consumed, split_cases[i].consumed);
		}
	}
}

/* The real limit: a command line of SMTP_CMDLINE_MAX octets with its CRLF. */
static void
test_line_split_cmdline_max(void **state)
{
	static char buf[SMTP_CMDLINE_MAX + 8];
	size_t linelen, consumed;

	memset(buf, 'a', sizeof(buf));
	memcpy(buf + SMTP_CMDLINE_MAX - 2, "\r\n", 2);
	assert_int_equal(smtp_line_split(buf, SMTP_CMDLINE_MAX, SMTP_CMDLINE_MAX, &linelen,
	    &consumed), SMTP_LINE_OK);
	assert_int_equal(linelen, SMTP_CMDLINE_MAX - 2);
	memset(buf, 'a', sizeof(buf));
	memcpy(buf + SMTP_CMDLINE_MAX - 1, "\r\n", 2);
	assert_int_equal(smtp_line_split(buf, SMTP_CMDLINE_MAX + 1, SMTP_CMDLINE_MAX, &linelen,
	    &consumed), SMTP_LINE_TOOLONG);
}

/* ---------------------------------------------------------- commands */

/*
 * One command line.  reply == NULL: it must parse, to verb with arg/path;
 * else it must be refused with a reply starting with reply.
 */
struct cmd_case {
	const char *line;
	size_t len;
	enum smtp_verb verb;
	const char *reply;
	const char *arg;  /* expected cmd.arg (NULL: not checked) */
	const char *path; /* expected cmd.path for MAIL/RCPT (NULL: not checked) */
	const char *word; /* expected cmd.word (NULL: not checked) */
};

static const struct cmd_case cmd_cases[] = {
	/* HELO / EHLO: one printable word, any case for the verb */
	{S("EHLO mail.example.com"), SMTP_EHLO, NULL, "mail.example.com", NULL, "EHLO"},
	{S("ehlo mail.example.com"), SMTP_EHLO, NULL, "mail.example.com", NULL, "EHLO"},
	{S("eHlO x"), SMTP_EHLO, NULL, "x", NULL, "EHLO"},
	{S("HELO [192.0.2.1]"), SMTP_HELO, NULL, "[192.0.2.1]", NULL, "HELO"},
	{S("HELO [IPv6:2001:db8::1]"), SMTP_HELO, NULL, "[IPv6:2001:db8::1]", NULL, NULL},
	{S("EHLO \xc3\xa9xample.com"), SMTP_EHLO, NULL, "\xc3\xa9xample.com", NULL, NULL},
	{S("EHLO"), SMTP_EHLO, "501 5.5.4 Syntax: EHLO", NULL, NULL, NULL},
	{S("EHLO "), SMTP_EHLO, "501 5.5.4 Syntax: EHLO", NULL, NULL, NULL},
	{S("HELO"), SMTP_HELO, "501 5.5.4 Syntax: HELO", NULL, NULL, NULL},
	{S("EHLO a b"), SMTP_EHLO, "501", NULL, NULL, NULL},
	{S("EHLO a\tb"), SMTP_EHLO, "501", NULL, NULL, NULL},
	{S("EHLO a\x7f"), SMTP_EHLO, "501", NULL, NULL, NULL},
	{S("EHLO \xff\xfe"), SMTP_EHLO, "501", NULL, NULL, NULL},
	/* MAIL FROM */
	{S("MAIL FROM:<>"), SMTP_MAIL, NULL, NULL, "", "MAIL"},
	{S("MAIL FROM:<a@example.com>"), SMTP_MAIL, NULL, NULL, "a@example.com", NULL},
	{S("mail from:<a@example.com>"), SMTP_MAIL, NULL, NULL, "a@example.com", "MAIL"},
	{S("MAIL FROM: <a@example.com>"), SMTP_MAIL, NULL, NULL, "a@example.com", NULL},
	{S("MAIL FROM:<first.last+tag@sub.example.com>"), SMTP_MAIL, NULL, NULL,
	    "first.last+tag@sub.example.com", NULL},
	/* quoted local part: '>' and spaces inside do not end the path */
	{S("MAIL FROM:<\"a>b c\"@example.com>"), SMTP_MAIL, NULL, NULL, "\"a>b c\"@example.com",
	    NULL},
	{S("MAIL FROM:<\"a\\\"b\"@example.com>"), SMTP_MAIL, NULL, NULL, "\"a\\\"b\"@example.com",
	    NULL},
	{S("MAIL FROM:<\"unterminated@example.com>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	/* address literals */
	{S("MAIL FROM:<u@[192.0.2.1]>"), SMTP_MAIL, NULL, NULL, "u@[192.0.2.1]", NULL},
	{S("MAIL FROM:<u@[IPv6:2001:db8::1]>"), SMTP_MAIL, NULL, NULL, "u@[IPv6:2001:db8::1]",
	    NULL},
	{S("MAIL FROM:<u@[300.1.1.1]>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<u@[192.0.2]>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<u@[]>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<u@[192.0.2.1>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	/* source routes are accepted and dropped (RFC 5321 4.1.2) */
	{S("MAIL FROM:<@a.example,@b.example:u@c.example>"), SMTP_MAIL, NULL, NULL,
	    "u@c.example", NULL},
	{S("RCPT TO:<@a.example:u@c.example>"), SMTP_RCPT, NULL, NULL, "u@c.example", NULL},
	{S("RCPT TO:<@a.example,u@c.example>"), SMTP_RCPT, "501 5.1.3", NULL, NULL, NULL},
	{S("RCPT TO:<@:u@c.example>"), SMTP_RCPT, "501 5.1.3", NULL, NULL, NULL},
	/* malformed paths */
	{S("MAIL FROM:a@example.com"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<a>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<@example.com>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<a@>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<a..b@example.com>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<a@-example.com>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example-.com>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example..com>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<a b@example.com>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com>>"), SMTP_MAIL, "501", NULL, NULL, NULL},
	{S("MAIL FROM:<postmaster>"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	{S("MAIL TO:<a@example.com>"), SMTP_MAIL, "501 5.5.4 Syntax: MAIL FROM", NULL, NULL, NULL},
	{S("MAIL"), SMTP_MAIL, "501 5.5.4 Syntax: MAIL FROM", NULL, NULL, NULL},
	{S("MAIL FROM:"), SMTP_MAIL, "501 5.1.7", NULL, NULL, NULL},
	/* RCPT TO */
	{S("RCPT TO:<b@example.org>"), SMTP_RCPT, NULL, NULL, "b@example.org", "RCPT"},
	{S("rcpt to:<b@example.org>"), SMTP_RCPT, NULL, NULL, "b@example.org", NULL},
	{S("RCPT TO:<Postmaster>"), SMTP_RCPT, NULL, NULL, "Postmaster", NULL},
	{S("RCPT TO:<postmaster>"), SMTP_RCPT, NULL, NULL, "postmaster", NULL},
	{S("RCPT TO:<>"), SMTP_RCPT, "501 5.1.3", NULL, NULL, NULL},
	{S("RCPT FROM:<b@example.org>"), SMTP_RCPT, "501 5.5.4 Syntax: RCPT TO", NULL, NULL, NULL},
	/* parameters */
	{S("MAIL FROM:<a@example.com>SIZE=10"), SMTP_MAIL, "501 5.5.4", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> SIZE="), SMTP_MAIL, "501 5.5.4", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> SIZE=a=b"), SMTP_MAIL, "501 5.5.4", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> -SIZE=1"), SMTP_MAIL, "501 5.5.4", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> SI_ZE=1"), SMTP_MAIL, "501 5.5.4", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> SI.ZE=1"), SMTP_MAIL, "501 5.5.4", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> =1"), SMTP_MAIL, "501 5.5.4", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> X=\xff"), SMTP_MAIL, "501 5.5.4", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> X=a\x7f"), SMTP_MAIL, "501 5.5.4", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> SIZE=1 size=2"), SMTP_MAIL, "501 5.5.4 Duplicate", NULL,
	    NULL, NULL},
	{S("MAIL FROM:<a@example.com> A B C D E F G H I J K L M N O P Q"), SMTP_MAIL,
	    "501 5.5.4 Too many", NULL, NULL, NULL},
	{S("MAIL FROM:<a@example.com> A B C D E F G H I J K L M N O P"), SMTP_MAIL, NULL, NULL,
	    "a@example.com", NULL},
	/* BDAT */
	{S("BDAT 0"), SMTP_BDAT, NULL, NULL, NULL, "BDAT"},
	{S("BDAT 100 LAST"), SMTP_BDAT, NULL, NULL, NULL, NULL},
	{S("BDAT 100 last"), SMTP_BDAT, NULL, NULL, NULL, NULL},
	{S("bdat 100 LaSt"), SMTP_BDAT, NULL, NULL, NULL, NULL},
	{S("BDAT"), SMTP_BDAT, "501 5.5.4 Syntax: BDAT", NULL, NULL, NULL},
	{S("BDAT x"), SMTP_BDAT, "501 5.5.4 Syntax: BDAT", NULL, NULL, NULL},
	{S("BDAT -1"), SMTP_BDAT, "501 5.5.4 Syntax: BDAT", NULL, NULL, NULL},
	{S("BDAT +1"), SMTP_BDAT, "501 5.5.4 Syntax: BDAT", NULL, NULL, NULL},
	{S("BDAT 10x"), SMTP_BDAT, "501 5.5.4 Syntax: BDAT", NULL, NULL, NULL},
	{S("BDAT 10 LAST x"), SMTP_BDAT, "501 5.5.4 Syntax: BDAT", NULL, NULL, NULL},
	{S("BDAT 10  LAST"), SMTP_BDAT, "501 5.5.4 Syntax: BDAT", NULL, NULL, NULL},
	{S("BDAT 10 LASTX"), SMTP_BDAT, "501 5.5.4 Syntax: BDAT", NULL, NULL, NULL},
	{S("BDAT  10"), SMTP_BDAT, "501 5.5.4 Syntax: BDAT", NULL, NULL, NULL},
	{S("BDAT 18446744073709551615"), SMTP_BDAT, "501 5.5.4", NULL, NULL, NULL},
	{S("BDAT 18446744073709551616"), SMTP_BDAT, "501 5.5.4", NULL, NULL, NULL},
	{S("BDAT 00000000000000000001"), SMTP_BDAT, "501 5.5.4", NULL, NULL, NULL},
	{S("BDAT 99999999999999999999999"), SMTP_BDAT, "501 5.5.4", NULL, NULL, NULL},
	/* argument-less verbs */
	{S("DATA"), SMTP_DATA, NULL, "", NULL, "DATA"},
	{S("data"), SMTP_DATA, NULL, "", NULL, NULL},
	{S("DATA x"), SMTP_DATA, "501 5.5.4 Syntax error: no parameters", NULL, NULL, NULL},
	{S("DATA "), SMTP_DATA, "501 5.5.4 Syntax error: no parameters", NULL, NULL, NULL},
	{S("RSET"), SMTP_RSET, NULL, "", NULL, NULL},
	{S("RSET x"), SMTP_RSET, "501", NULL, NULL, NULL},
	{S("QUIT"), SMTP_QUIT, NULL, "", NULL, NULL},
	{S("quit "), SMTP_QUIT, "501", NULL, NULL, NULL},
	{S("STARTTLS"), SMTP_STARTTLS, NULL, "", NULL, NULL},
	{S("STARTTLS now"), SMTP_STARTTLS, "501", NULL, NULL, NULL},
	/* optional / required arguments */
	{S("NOOP"), SMTP_NOOP, NULL, "", NULL, NULL},
	{S("NOOP hello there"), SMTP_NOOP, NULL, "hello there", NULL, NULL},
	{S("NOOP a\x01"), SMTP_NOOP, "501", NULL, NULL, NULL},
	{S("HELP"), SMTP_HELP, NULL, "", NULL, NULL},
	{S("HELP MAIL"), SMTP_HELP, NULL, "MAIL", NULL, NULL},
	{S("VRFY"), SMTP_VRFY, "501 5.5.4 Syntax error: argument required", NULL, NULL, NULL},
	{S("VRFY postmaster"), SMTP_VRFY, NULL, "postmaster", NULL, "VRFY"},
	{S("VRFY a\x1b"), SMTP_VRFY, "501", NULL, NULL, NULL},
	{S("EXPN staff"), SMTP_EXPN, NULL, "staff", NULL, NULL},
	{S("EXPN"), SMTP_EXPN, "501", NULL, NULL, NULL},
	{S("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q="), SMTP_AUTH, NULL, "PLAIN dGVzdAB0ZXN0AHRlc3Q=",
	    NULL, "AUTH"},
	{S("AUTH"), SMTP_AUTH, "501", NULL, NULL, NULL},
	/* CR, LF or NUL inside a line are refused, whatever the verb */
	{S("EHLO a\rb"), SMTP_UNKNOWN, "500 5.5.2 Syntax error: CR, LF or NUL", NULL, NULL, NULL},
	{S("MAIL FROM:<a@b.example>\rRCPT TO:<c@d.example>"), SMTP_UNKNOWN, "500 5.5.2", NULL,
	    NULL, NULL},
	{S("NOOP\nQUIT"), SMTP_UNKNOWN, "500 5.5.2 Syntax error: CR, LF or NUL", NULL, NULL, NULL},
	{S("DATA\0"), SMTP_UNKNOWN, "500 5.5.2 Syntax error: CR, LF or NUL", NULL, NULL, NULL},
	{S("RCPT TO:<a\0@b.example>"), SMTP_UNKNOWN, "500 5.5.2", NULL, NULL, NULL},
	{S("\r"), SMTP_UNKNOWN, "500 5.5.2", NULL, NULL, NULL},
	/* HTTP on the SMTP port */
	{S("GET / HTTP/1.1"), SMTP_HTTP, NULL, NULL, NULL, "GET"},
	{S("POST /submit HTTP/1.0"), SMTP_HTTP, NULL, NULL, NULL, "POST"},
	{S("CONNECT mail.example.com:25 HTTP/1.1"), SMTP_HTTP, NULL, NULL, NULL, "CONNECT"},
	{S("get /"), SMTP_HTTP, NULL, NULL, NULL, NULL},
	{S("Host: x"), SMTP_HTTP, NULL, NULL, NULL, "HEADER"},
	{S("User-Agent: curl/8"), SMTP_HTTP, NULL, NULL, NULL, "HEADER"},
	/* words we do not implement: parsed, verb UNKNOWN; junk: refused */
	{S("XCLIENT NAME=spoofed"), SMTP_UNKNOWN, NULL, NULL, NULL, "XCLIENT"},
	{S("ETRN example.com"), SMTP_UNKNOWN, NULL, NULL, NULL, "ETRN"},
	{S("turn"), SMTP_UNKNOWN, NULL, NULL, NULL, "TURN"},
	{S("X-FOO bar"), SMTP_UNKNOWN, "500 5.5.2 Syntax error: command unrecognized", NULL, NULL,
	    NULL},
	{S("EHLO1 x"), SMTP_UNKNOWN, "500 5.5.2 Syntax error: command unrecognized", NULL, NULL,
	    NULL},
	{S(""), SMTP_UNKNOWN, "500 5.5.2 Syntax error: command unrecognized", NULL, NULL, NULL},
	{S(" EHLO x"), SMTP_UNKNOWN, "500 5.5.2 Syntax error: command unrecognized", NULL, NULL,
	    NULL},
	{S("ABCDEFGHIJKLMNOP"), SMTP_UNKNOWN, "500 5.5.2 Syntax error: command unrecognized", NULL,
	    NULL, NULL},
	{S("ABCDEFGHIJKLMNO"), SMTP_UNKNOWN, NULL, NULL, NULL, "ABCDEFGHIJKLMNO"},
};

static void
check_cmd_case(size_t i, const struct cmd_case *c)
{
	char line[SMTP_CMDLINE_MAX + 1];
	struct smtp_cmd cmd;
	const char *reply = NULL;
	int rc;

	assert_true(c->len < sizeof(line));
	memcpy(line, c->line, c->len);
	line[c->len] = 'Z'; /* the parser terminates the line itself */
	rc = smtp_cmd_parse(line, c->len, &cmd, &reply);
	if (c->reply == NULL) {
		if (rc != 0)
			fail_msg("case %zu \"%s\": refused with \"%s\"", i, c->line, reply);
		if (cmd.verb != c->verb)
			fail_msg("case %zu \"%s\": verb %d, expected %d", i, c->line, cmd.verb, c->verb);
		if (c->arg && strcmp(cmd.arg, c->arg) != 0)
			fail_msg("case %zu: arg \"%s\", expected \"%s\"", i, cmd.arg, c->arg);
		if (c->path && strcmp(cmd.path, c->path) != 0)
			fail_msg("case %zu: path \"%s\", expected \"%s\"", i, cmd.path, c->path);
		if (c->word && strcmp(cmd.word, c->word) != 0)
			fail_msg("case %zu: word \"%s\", expected \"%s\"", i, cmd.word, c->word);
	} else {
		if (rc != -1)
			fail_msg("case %zu \"%s\": accepted, expected \"%s\"", i, c->line, c->reply);
		assert_non_null(reply);
		if (strncmp(reply, c->reply, strlen(c->reply)) != 0)
			fail_msg("case %zu \"%s\": reply \"%s\", expected \"%s...\"", i, c->line, reply,
			    c->reply);
		/* a reply we send: three digits, a space, no CR/LF */
		assert_true(reply[0] >= '4' && reply[0] <= '5' && reply[3] == ' ');
		assert_null(strpbrk(reply, "\r\n"));
	}
}

static void
test_cmd_table(void **state)
{
	for (size_t i = 0; i < N(cmd_cases); i++)
		check_cmd_case(i, &cmd_cases[i]);
}

static int
parse(const char *lit, struct smtp_cmd *cmd, char *line, size_t linesz, const char **reply)
{
	size_t n = strlen(lit);

	assert_true(n < linesz);
	memcpy(line, lit, n + 1);
	*reply = NULL;
	return smtp_cmd_parse(line, n, cmd, reply);
}

static void
test_cmd_null_path(void **state)
{
	char line[256];
	struct smtp_cmd cmd;
	const char *reply;

	assert_int_equal(parse("MAIL FROM:<>", &cmd, line, sizeof(line), &reply), 0);
	assert_true(cmd.null_path);
	assert_string_equal(cmd.path, "");
	assert_int_equal(cmd.nparams, 0);
	assert_int_equal(parse("MAIL FROM:<> BODY=8BITMIME", &cmd, line, sizeof(line), &reply), 0);
	assert_true(cmd.null_path);
	assert_int_equal(cmd.nparams, 1);
	assert_int_equal(parse("MAIL FROM:<a@b.example>", &cmd, line, sizeof(line), &reply), 0);
	assert_false(cmd.null_path);
}

static void
test_cmd_params(void **state)
{
	char line[256];
	struct smtp_cmd cmd;
	const char *reply;

	assert_int_equal(parse("MAIL FROM:<a@example.com> size=1000 Body=8BITMIME  SMTPUTF8 "
	    "ret=hdrs x-y=Va+2Blue", &cmd, line, sizeof(line), &reply), 0);
	assert_int_equal(cmd.nparams, 5);
	/* keywords are upper-cased, values are kept as sent */
	assert_string_equal(cmd.params[0].key, "SIZE");
	assert_string_equal(cmd.params[0].value, "1000");
	assert_string_equal(cmd.params[1].key, "BODY");
	assert_string_equal(cmd.params[1].value, "8BITMIME");
	assert_string_equal(cmd.params[2].key, "SMTPUTF8");
	assert_null(cmd.params[2].value);
	assert_string_equal(cmd.params[3].key, "RET");
	assert_string_equal(cmd.params[3].value, "hdrs");
	assert_string_equal(cmd.params[4].key, "X-Y");
	assert_string_equal(cmd.params[4].value, "Va+2Blue");

	assert_int_equal(parse("RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE "
	    "ORCPT=rfc822;b@example.org", &cmd, line, sizeof(line), &reply), 0);
	assert_int_equal(cmd.nparams, 2);
	assert_string_equal(cmd.params[1].key, "ORCPT");
	assert_string_equal(cmd.params[1].value, "rfc822;b@example.org");

	/* duplicates are found case-insensitively */
	assert_int_equal(parse("MAIL FROM:<a@example.com> body=7BIT BODY=8BITMIME", &cmd, line,
	    sizeof(line), &reply), -1);
	assert_string_equal(reply, "501 5.5.4 Duplicate parameter");
	/* trailing spaces are not an empty parameter */
	assert_int_equal(parse("MAIL FROM:<a@example.com>   ", &cmd, line, sizeof(line), &reply),
	    0);
	assert_int_equal(cmd.nparams, 0);
}

static void
test_cmd_param_limit(void **state)
{
	char line[1024];
	struct smtp_cmd cmd;
	const char *reply;
	char lit[1024];
	int o = snprintf(lit, sizeof(lit), "MAIL FROM:<a@example.com>");

	for (int i = 0; i < SMTP_MAX_PARAMS; i++)
		o += snprintf(lit + o, sizeof(lit) - (size_t)o, " P%d=%d", i, i);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), 0);
	assert_int_equal(cmd.nparams, SMTP_MAX_PARAMS);
	snprintf(lit + o, sizeof(lit) - (size_t)o, " ONEMORE");
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), -1);
	assert_string_equal(reply, "501 5.5.4 Too many parameters");
}

/* Local part at most 64 octets, the whole path at most 256 with its brackets. */
static void
test_cmd_path_lengths(void **state)
{
	char lit[SMTP_CMDLINE_MAX], line[SMTP_CMDLINE_MAX], local[80], domain[300];
	struct smtp_cmd cmd;
	const char *reply;

	memset(local, 'l', 64);
	local[64] = '\0';
	snprintf(lit, sizeof(lit), "MAIL FROM:<%s@example.com>", local);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), 0);
	assert_int_equal(strlen(cmd.path), 64 + 12);
	local[64] = 'l';
	local[65] = '\0';
	snprintf(lit, sizeof(lit), "MAIL FROM:<%s@example.com>", local);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), -1);
	assert_string_equal(reply, "501 5.1.7 Bad sender address syntax");
	/* a quoted local part counts its quotes */
	memset(local, 'q', 62);
	local[62] = '\0';
	snprintf(lit, sizeof(lit), "RCPT TO:<\"%s\"@example.com>", local);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), 0);
	snprintf(lit, sizeof(lit), "RCPT TO:<\"%sq\"@example.com>", local);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), -1);

	/*
	 * 64 + 1 + 189 = 254 octets: the longest mailbox that fits "<>" in 256.
	 * The domain: 63 + "." + 63 + "." + 61 octets.
	 */
	memset(local, 'l', 64);
	local[64] = '\0';
	memset(domain, 'a', 63);
	domain[63] = '.';
	memset(domain + 64, 'b', 63);
	domain[127] = '.';
	memset(domain + 128, 'c', 61);
	domain[189] = '\0';
	snprintf(lit, sizeof(lit), "MAIL FROM:<%s@%s>", local, domain);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), 0);
	assert_int_equal(strlen(cmd.path), 254);
	/* one octet more: too long for a 256-octet path */
	domain[189] = 'c';
	domain[190] = '\0';
	snprintf(lit, sizeof(lit), "MAIL FROM:<%s@%s>", local, domain);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), -1);
	assert_string_equal(reply, "501 5.1.7 Sender address too long");
	snprintf(lit, sizeof(lit), "RCPT TO:<%s@%s>", local, domain);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), -1);
	assert_string_equal(reply, "501 5.1.3 Recipient address too long");
	/* a label of 64 octets is refused */
	memset(domain, 'x', 64);
	memcpy(domain + 64, ".example", 9);
	snprintf(lit, sizeof(lit), "RCPT TO:<u@%s>", domain);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), -1);
	domain[1] = '.';
	snprintf(lit, sizeof(lit), "RCPT TO:<u@%s>", domain);
	assert_int_equal(parse(lit, &cmd, line, sizeof(line), &reply), 0);
}

static void
test_cmd_utf8(void **state)
{
	char line[256];
	struct smtp_cmd cmd;
	const char *reply;

	assert_int_equal(parse("MAIL FROM:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90."
	    "example> SMTPUTF8", &cmd, line, sizeof(line), &reply), 0);
	assert_true(cmd.utf8);
	assert_int_equal(parse("RCPT TO:<j\xc3\xb6rg@example.com>", &cmd, line, sizeof(line),
	    &reply), 0);
	assert_true(cmd.utf8);
	assert_int_equal(parse("RCPT TO:<jorg@example.com>", &cmd, line, sizeof(line), &reply), 0);
	assert_false(cmd.utf8);
	/* invalid UTF-8 in a path is a syntax error */
	static const char *const bad[] = {
		"RCPT TO:<\xff@example.com>",
		"RCPT TO:<\xc0\xaf@example.com>",            /* overlong '/' */
		"RCPT TO:<a@\xed\xa0\x80.example>",          /* surrogate */
		"RCPT TO:<a\xc3@example.com>",                /* truncated */
		"MAIL FROM:<\xf4\x90\x80\x80@example.com>",  /* > U+10FFFF */
	};
	for (size_t i = 0; i < N(bad); i++) {
		if (parse(bad[i], &cmd, line, sizeof(line), &reply) != -1)
			fail_msg("bad utf-8 case %zu accepted", i);
		assert_string_equal(reply, i < 4 ? "501 5.1.3 Bad recipient address syntax"
		    : "501 5.1.7 Bad sender address syntax");
	}
}

static void
test_cmd_bdat(void **state)
{
	static const struct {
		const char *line;
		uint64_t size;
		bool last;
	} ok[] = {
		{"BDAT 0", 0, false},
		{"BDAT 0 LAST", 0, true},
		{"BDAT 1", 1, false},
		{"BDAT 65536 last", 65536, true},
		{"BDAT 9999999999999999999", 9999999999999999999ull, false}, /* 19 digits */
		{"BDAT 0000000000000000042 LAST", 42, true},
	};
	char line[256];
	struct smtp_cmd cmd;
	const char *reply;

	for (size_t i = 0; i < N(ok); i++) {
		if (parse(ok[i].line, &cmd, line, sizeof(line), &reply) != 0)
			fail_msg("%s: refused \"%s\"", ok[i].line, reply);
		assert_int_equal(cmd.verb, SMTP_BDAT);
		assert_true(cmd.chunk_size == ok[i].size);
		assert_int_equal(cmd.last, ok[i].last);
	}
	/* UINT64_MAX has 20 digits: refused with the size message */
	assert_int_equal(parse("BDAT 18446744073709551615", &cmd, line, sizeof(line), &reply), -1);
	assert_string_equal(reply, "501 5.5.4 Syntax: BDAT size [LAST] (size too large)");
	assert_int_equal(parse("BDAT 10000000000000000000", &cmd, line, sizeof(line), &reply), -1);
	assert_string_equal(reply, "501 5.5.4 Syntax: BDAT size [LAST] (size too large)");
}

/* The parser writes only inside line[0..len]: a NUL at len, nothing beyond. */
static void
test_cmd_bounds(void **state)
{
	char line[64];
	struct smtp_cmd cmd;
	const char *reply;

	memset(line, 'Z', sizeof(line));
	memcpy(line, "RCPT TO:<a@b.example> NOTIFY=NEVER", 34);
	assert_int_equal(smtp_cmd_parse(line, 34, &cmd, &reply), 0);
	assert_int_equal(line[34], '\0');
	for (size_t i = 35; i < sizeof(line); i++)
		assert_int_equal(line[i], 'Z');
}

/* ------------------------------------------------------------ replies */

static const struct {
	const char *line;
	size_t len;
	int rc;
	int code;
	bool more;
	const char *text;
} reply_cases[] = {
	{S("250 ok"), 0, 250, false, "ok"},
	{S("250"), 0, 250, false, ""},
	{S("250-x"), 0, 250, true, "x"},
	{S("250-"), 0, 250, true, ""},
	{S("250 "), 0, 250, false, ""},
	{S("220 mail.example.com ESMTP"), 0, 220, false, "mail.example.com ESMTP"},
	{S("354 go ahead"), 0, 354, false, "go ahead"},
	{S("421 4.3.2 bye"), 0, 421, false, "4.3.2 bye"},
	{S("554-5.7.1 no"), 0, 554, true, "5.7.1 no"},
	{S("559 x"), 0, 559, false, "x"},
	{S("199 x"), -1, 0, false, NULL},
	{S("600 x"), -1, 0, false, NULL},
	{S("260 x"), -1, 0, false, NULL},
	{S("2x0 x"), -1, 0, false, NULL},
	{S("25"), -1, 0, false, NULL},
	{S(""), -1, 0, false, NULL},
	{S("250x"), -1, 0, false, NULL},
	{S("250\tx"), -1, 0, false, NULL},
	{S("250 a\rb"), -1, 0, false, NULL},
	{S("250-a\nb"), -1, 0, false, NULL},
	{S("250 a\0b"), -1, 0, false, NULL},
	{S(" 250 x"), -1, 0, false, NULL},
	{S("ABC x"), -1, 0, false, NULL},
};

static void
test_reply_line(void **state)
{
	for (size_t i = 0; i < N(reply_cases); i++) {
		int code = -7;
		bool more = false;
		const char *text = NULL;
		size_t textlen = 0;
		int rc = smtp_reply_line(reply_cases[i].line, reply_cases[i].len, &code, &more, &text,
		    &textlen);

		if (rc != reply_cases[i].rc)
			fail_msg("case %zu \"%s\": rc %d", i, reply_cases[i].line, rc);
		if (rc != 0)
			continue;
		assert_int_equal(code, reply_cases[i].code);
		assert_int_equal(more, reply_cases[i].more);
		assert_int_equal(textlen, strlen(reply_cases[i].text));
		assert_memory_equal(text, reply_cases[i].text, textlen);
	}
}

/* ------------------------------------------------------ xtext and UTF-8 */

static void
test_xtext(void **state)
{
	static const struct {
		const char *s;
		bool ok;
	} cases[] = {
		{"abc", true},
		{"a+2Bb", true},
		{"+2B+3D", true},
		{"rfc822;a@b", true},
		{"", false},
		{"a+2bb", false}, /* hex digits are upper case */
		{"a+2", false},
		{"a+", false},
		{"+G0", false},
		{"a=b", false},
		{"a b", false},
		{"a\x7f", false},
		{"a\x01", false},
		{"\xc3\xa9", false},
	};

	for (size_t i = 0; i < N(cases); i++)
		if (smtp_xtext_valid(cases[i].s) != cases[i].ok)
			fail_msg("xtext \"%s\": expected %d", cases[i].s, cases[i].ok);
}

static void
test_utf8(void **state)
{
	static const struct {
		const char *s;
		size_t len;
		bool ok;
	} cases[] = {
		{S(""), true},
		{S("plain ascii"), true},
		{S("\xc3\xa9"), true},             /* U+00E9 */
		{S("\xc2\x80"), true},             /* U+0080, smallest 2-byte */
		{S("\xe0\xa0\x80"), true},         /* U+0800 */
		{S("\xef\xbf\xbf"), true},         /* U+FFFF */
		{S("\xf0\x90\x80\x80"), true},     /* U+10000 */
		{S("\xf4\x8f\xbf\xbf"), true},     /* U+10FFFF */
		{S("\xed\x9f\xbf"), true},         /* U+D7FF, just below the surrogates */
		{S("\xee\x80\x80"), true},         /* U+E000, just above */
		{S("\xc0\x80"), false},            /* overlong NUL */
		{S("\xc1\xbf"), false},            /* overlong */
		{S("\xe0\x80\x80"), false},        /* overlong */
		{S("\xe0\x9f\xbf"), false},        /* overlong U+07FF */
		{S("\xf0\x80\x80\x80"), false},    /* overlong */
		{S("\xf0\x8f\xbf\xbf"), false},    /* overlong U+FFFF */
		{S("\xed\xa0\x80"), false},        /* U+D800 */
		{S("\xed\xbf\xbf"), false},        /* U+DFFF */
		{S("\xf4\x90\x80\x80"), false},    /* U+110000 */
		{S("\xf8\x88\x80\x80\x80"), false}, /* 5-byte form */
		{S("\xff"), false},
		{S("\x80"), false},                /* lone continuation */
		{S("\xc3"), false},                /* truncated */
		{S("\xe2\x82"), false},            /* truncated */
		{S("\xf0\x9f\x98"), false},        /* truncated */
		{S("a\xc3"), false},
		{S("\xc3\x28"), false},            /* bad continuation */
		{S("\xe2\x28\xa1"), false},
		{S("\xe2\x82\x28"), false},
	};

	for (size_t i = 0; i < N(cases); i++)
		if (smtp_utf8_valid((const unsigned char *)cases[i].s, cases[i].len) != cases[i].ok)
			fail_msg("utf-8 case %zu: expected %d", i, cases[i].ok);
	/* a valid sequence cut anywhere inside is invalid */
	const char *emoji = "\xf0\x9f\x98\x80";
	for (size_t n = 1; n < 4; n++)
		assert_false(smtp_utf8_valid((const unsigned char *)emoji, n));
}

static void
test_helo_valid(void **state)
{
	char big[300];

	assert_true(smtp_helo_valid("x"));
	assert_true(smtp_helo_valid("[192.0.2.1]"));
	assert_false(smtp_helo_valid(""));
	assert_false(smtp_helo_valid("a b"));
	memset(big, 'a', SMTP_DOMAIN_MAX);
	big[SMTP_DOMAIN_MAX] = '\0';
	assert_true(smtp_helo_valid(big));
	big[SMTP_DOMAIN_MAX] = 'a';
	big[SMTP_DOMAIN_MAX + 1] = '\0';
	assert_false(smtp_helo_valid(big));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_split),
		cmocka_unit_test(test_line_split_cmdline_max),
		cmocka_unit_test(test_cmd_table),
		cmocka_unit_test(test_cmd_null_path),
		cmocka_unit_test(test_cmd_params),
		cmocka_unit_test(test_cmd_param_limit),
		cmocka_unit_test(test_cmd_path_lengths),
		cmocka_unit_test(test_cmd_utf8),
		cmocka_unit_test(test_cmd_bdat),
		cmocka_unit_test(test_cmd_bounds),
		cmocka_unit_test(test_reply_line),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_helo_valid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
