/*
 * test_smtp_data - the message framer.  Only CRLF "." CRLF after a
 * CRLF-terminated line ends a message: every SMTP-smuggling variant of the
 * end marker is an ordinary line here.  Leading dots are unstuffed; bare
 * CR / LF and NUL are flagged (and split lines under NORMALIZE); long
 * lines and big messages are refused without buffering them; and the
 * result does not depend on how the input is cut into reads.
 *
 * The helper run() drives the framer the way smtp_proxy.c does: bytes are
 * appended to a buffer as they "arrive", data_next() is called until it
 * needs more, and what it consumed is dropped from the buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp_data.h"

#define S(lit) lit, sizeof(lit) - 1
#define N(a) (sizeof(a) / sizeof((a)[0]))

struct res {
	char out[16384]; /* emitted lines, each followed by '\n' (a line never holds LF) */
	size_t outlen;
	int nlines;
	bool end;
	size_t end_at;      /* input octets consumed when END came */
	unsigned flags;
	uint64_t size;
	size_t max_buffered; /* most octets held in the input buffer at once */
	size_t max_linelen;
};

struct cfg {
	enum data_bare_policy policy;
	bool raw;
	size_t max_line;
	uint64_t max_size;
};

static const struct cfg REJ = { DATA_BARE_REJECT, false, 998, 1000000 };
static const struct cfg NORM = { DATA_BARE_NORMALIZE, false, 998, 1000000 };

static void
add_line(struct res *r, const char *line, size_t len)
{
	assert_true(r->outlen + len + 1 <= sizeof(r->out));
	assert_null(memchr(line, '\n', len));
	memcpy(r->out + r->outlen, line, len);
	r->outlen += len;
	r->out[r->outlen++] = '\n';
	r->nlines++;
	if (len > r->max_linelen)
		r->max_linelen = len;
}

/* run() takes runs with data_run() before each data_next(), as msg_data_input does */
static bool use_runs;

/* A run: whole CRLF lines, none beginning with a dot, added line by line. */
static void
add_run(struct res *r, const char *p, size_t n)
{
	while (n > 0) {
		const char *lf = memchr(p, '\n', n);
		size_t l;

		assert_non_null(lf);
		assert_true(lf > p && lf[-1] == '\r' && p[0] != '.');
		l = (size_t)(lf - p) - 1;
		assert_null(memchr(p, '\r', l));
		add_line(r, p, l);
		p += l + 2;
		n -= l + 2;
	}
}

/*
 * Feed in[0..len) in pieces: step 0 = all at once, step k = k octets at a
 * time, step -1 = pseudo-random piece sizes from seed.  finish: RAW mode,
 * call data_finish_raw on what is left at the end (the last BDAT chunk).
 */
static void
run(const struct cfg *c, const char *in, size_t len, int step, unsigned seed, bool finish,
    struct res *r)
{
	struct data_framer f;
	static char buf[1 << 16];
	size_t have = 0, fed = 0, consumed_total = 0;

	memset(r, 0, sizeof(*r));
	data_init(&f, c->policy, c->raw, c->max_line, c->max_size);
	while (fed < len && !r->end) {
		size_t piece = len - fed;

		if (step > 0 && (size_t)step < piece)
			piece = (size_t)step;
		if (step < 0) {
			seed = seed * 1103515245u + 12345u;
			size_t k = 1 + (seed >> 16) % 7;
			if (k < piece)
				piece = k;
		}
		assert_true(have + piece <= sizeof(buf));
		memcpy(buf + have, in + fed, piece);
		have += piece;
		fed += piece;
		if (have > r->max_buffered)
			r->max_buffered = have;
		for (;;) {
			const char *line = NULL;
			size_t consumed = 12345, linelen = 0;
			enum data_status st;

			if (use_runs) {
				size_t n = data_run(&f, buf, have, have);

				assert_true(n <= have);
				if (n > 0) {
					add_run(r, buf, n);
					memmove(buf, buf + n, have - n);
					have -= n;
					consumed_total += n;
					continue;
				}
			}
			st = data_next(&f, buf, have, &consumed, &line, &linelen);
			assert_true(consumed <= have);
			if (st == DATA_LINE) {
				assert_true(line >= buf && line + linelen <= buf + have);
				add_line(r, line, linelen);
			}
			if (st != DATA_NEED_MORE)
				assert_true(consumed > 0 || st == DATA_END);
			memmove(buf, buf + consumed, have - consumed);
			have -= consumed;
			consumed_total += consumed;
			if (st == DATA_END) {
				assert_false(c->raw);
				r->end = true;
				r->end_at = consumed_total;
				break;
			}
			if (st == DATA_NEED_MORE)
				break;
		}
	}
	if (finish && !r->end) {
		const char *line = NULL;
		size_t consumed = 0, linelen = 0;
		enum data_status st = data_finish_raw(&f, buf, have, &consumed, &line, &linelen);

		assert_int_equal(consumed, have);
		if (st == DATA_LINE)
			add_line(r, line, linelen);
		else
			assert_int_equal(st, DATA_SKIP);
	}
	r->flags = f.flags;
	r->size = f.size;
	if (!r->end && !finish)
		r->end_at = consumed_total;
	/* as delivered: every emitted line plus its CRLF */
	assert_true(r->size == r->outlen - (size_t)r->nlines + 2u * (size_t)r->nlines);
	assert_int_equal(data_refused(&f), c->policy == DATA_BARE_REJECT ?
	    (f.flags != 0) : (f.flags & ~(DATA_F_BARE_LF | DATA_F_BARE_CR)) != 0);
}

static void
expect_lines(const struct res *r, const char *want, size_t wantlen)
{
	if (r->outlen != wantlen || memcmp(r->out, want, wantlen) != 0) {
		char got[512], exp[512];
		size_t i, o = 0;

		for (i = 0; i < r->outlen && o + 5 < sizeof(got); i++)
			o += (size_t)snprintf(got + o, sizeof(got) - o,
			    r->out[i] >= 32 && r->out[i] < 127 ? "%c" : "\\x%02x",
			    (unsigned char)r->out[i]);
		got[o] = '\0';
		o = 0;
		for (i = 0; i < wantlen && o + 5 < sizeof(exp); i++)
			o += (size_t)snprintf(exp + o, sizeof(exp) - o,
			    want[i] >= 32 && want[i] < 127 ? "%c" : "\\x%02x", (unsigned char)want[i]);
		exp[o] = '\0';
		fail_msg("lines \"%s\", expected \"%s\"", got, exp);
	}
}

#define EXPECT_LINES(r, lit) expect_lines(r, lit, sizeof(lit) - 1)

/* ---------------------------------------------------------------- basics */

static void
test_simple_message(void **state)
{
	struct res r;
	static const char msg[] = "Subject: hi\r\n\r\nbody\r\n.\r\n";

	run(&REJ, S(msg), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.end_at, sizeof(msg) - 1);
	EXPECT_LINES(&r, "Subject: hi\n\nbody\n");
	assert_int_equal(r.flags, 0);
	assert_int_equal(r.size, 13 + 2 + 6);
}

static void
test_empty_message(void **state)
{
	struct res r;

	run(&REJ, S(".\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.nlines, 0);
	assert_int_equal(r.size, 0);
}

/* What follows the end belongs to the next command: never consumed. */
static void
test_end_stops_consuming(void **state)
{
	struct res r;

	run(&REJ, S("a\r\n.\r\nMAIL FROM:<x@y.example>\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.end_at, 6);
	EXPECT_LINES(&r, "a\n");
}

static void
test_unstuffing(void **state)
{
	struct res r;

	run(&REJ, S("..leading\r\n...\r\n..\r\n.x\r\n x.\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	EXPECT_LINES(&r, ".leading\n..\n.\nx\n x.\n");
	assert_int_equal(r.flags, 0);
}

/* A "." line ends the message only when it and the line before end in CRLF. */
static void
test_end_needs_crlf(void **state)
{
	struct res r;

	run(&REJ, S(".\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	run(&NORM, S("a\n.\r\nb\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.end_at, 11);
	EXPECT_LINES(&r, "a\n.\nb\n"); /* the "." after a bare LF is content */
	run(&NORM, S("a\r.\r\nb\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.end_at, 11);
	EXPECT_LINES(&r, "a\n.\nb\n");
}

/* --------------------------------------------------------- smuggling */

/*
 * Every sequence here stands between "x\r\n" and "smuggled\r\n.\r\n".  None
 * contains CRLF "." CRLF, so the only end is the final one, whatever the
 * policy, however the input is cut.
 */
static const struct {
	const char *s;
	size_t len;
} smuggle[] = {
	{S("\n.\n")},
	{S("\n.\r\n")},
	{S("\r.\r\n")},
	{S("\r.\n")},
	{S("\r.\r")},
	{S(".\n")},            /* i.e. CRLF "." LF */
	{S(".\r")},            /* CRLF "." CR */
	{S(".\r\r\n")},        /* CRLF "." CR CRLF */
	{S("\n.\r")},
	{S("\r\n.\n")},
	{S("\r\n.\r")},
	{S("\r\n.\r\r\n")},
	{S("\n\n.\n\n")},
	{S("\r\r.\r\r")},
	{S(".\0\r\n")},
	{S("\0.\r\n")},
	{S(". \r\n")},
	{S(" .\r\n")},
	{S(".\r\0\n")},
	{S("\r\n.\0\r\n")},
	{S(".\n\r\n")},
	{S("\r\n..\r\n")},     /* a stuffed dot: content "." */
};

static bool
contains(const char *h, size_t hlen, const char *n, size_t nlen)
{
	for (size_t i = 0; i + nlen <= hlen; i++)
		if (memcmp(h + i, n, nlen) == 0)
			return true;
	return false;
}

/* A NUL, or a CR or LF that is not part of a CRLF pair. */
static bool
bare_or_nul(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\0')
			return true;
		if (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n'))
			return true;
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			return true;
	}
	return false;
}

static size_t
smuggle_input(size_t i, char *buf, size_t bufsz)
{
	size_t o = 0;

	memcpy(buf + o, "x\r\n", 3), o += 3;
	assert_true(o + smuggle[i].len + 32 < bufsz);
	memcpy(buf + o, smuggle[i].s, smuggle[i].len), o += smuggle[i].len;
	memcpy(buf + o, "smuggled\r\n.\r\n", 13), o += 13;
	return o;
}

static void
test_smuggling_variants(void **state)
{
	static const struct cfg *cfgs[] = { &REJ, &NORM };
	char in[128];
	struct res r, whole;
	int checked = 0;

	for (size_t i = 0; i < N(smuggle); i++) {
		size_t len = smuggle_input(i, in, sizeof(in));

		/* the genuine end is the last 5 octets; skip rows that hold another */
		if (contains(in, len - 3, "\r\n.\r\n", 5))
			continue;
		checked++;
		for (size_t c = 0; c < N(cfgs); c++) {
			run(cfgs[c], in, len, 0, 0, false, &whole);
			if (!whole.end || whole.end_at != len)
				fail_msg("variant %zu policy %zu: end %d at %zu of %zu", i, c, whole.end,
				    whole.end_at, len);
			/* the message must at least reach the line that follows */
			assert_true(contains(whole.out, whole.outlen, "smuggled\n", 9));
			/* every cut gives the same lines and flags */
			for (int step = 1; step <= 4; step++) {
				run(cfgs[c], in, len, step, 0, false, &r);
				assert_true(r.end && r.end_at == len);
				assert_int_equal(r.outlen, whole.outlen);
				assert_memory_equal(r.out, whole.out, whole.outlen);
				assert_int_equal(r.flags, whole.flags);
			}
			/* under REJECT a bare CR, LF or a NUL in the variant refuses the message */
			if (cfgs[c] == &REJ)
				assert_int_equal(whole.flags != 0, bare_or_nul(in, len));
		}
	}
	assert_true(checked >= 20);
}

/* ------------------------------------------------- bare CR, LF and NUL */

static void
test_bare_lf(void **state)
{
	struct res r;

	run(&REJ, S("a\nb\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.flags, DATA_F_BARE_LF);
	EXPECT_LINES(&r, "a\nb\n");
	run(&NORM, S("a\nb\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.flags, DATA_F_BARE_LF);
	EXPECT_LINES(&r, "a\nb\n");
}

static void
test_bare_cr(void **state)
{
	struct res r;

	/* REJECT keeps the CR inside the line (the message is refused anyway) */
	run(&REJ, S("a\rb\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.flags, DATA_F_BARE_CR);
	EXPECT_LINES(&r, "a\rb\n");
	/* NORMALIZE splits the line at the CR */
	run(&NORM, S("a\rb\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.flags, DATA_F_BARE_CR);
	EXPECT_LINES(&r, "a\nb\n");
	run(&NORM, S("a\r\rb\r\n.\r\n"), 0, 0, false, &r);
	EXPECT_LINES(&r, "a\n\nb\n");
	/* a CR at the end of a read waits for the next octet */
	run(&NORM, S("a\r"), 0, 0, false, &r);
	assert_int_equal(r.nlines, 0);
	assert_int_equal(r.end_at, 0);
}

static void
test_nul(void **state)
{
	struct res r;

	run(&NORM, S("a\0b\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.flags, DATA_F_NUL);
	assert_int_equal(r.outlen, 4);
	assert_memory_equal(r.out, "a\0b\n", 4);
	run(&REJ, S("\0\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.flags, DATA_F_NUL);
}

/* ------------------------------------------------------- long lines */

/* n times c, then tail (one static buffer: a failing test leaks nothing) */
static char *
repeat(char c, size_t n, const char *tail)
{
	static char buf[70000];
	size_t tl = strlen(tail);

	assert_true(n + tl < sizeof(buf));
	memset(buf, c, n);
	memcpy(buf + n, tail, tl + 1);
	return buf;
}

static void
test_line_exactly_max(void **state)
{
	struct cfg c = REJ;
	struct res r;
	char *in;

	c.max_line = 10;
	in = repeat('a', 10, "\r\n.\r\n");
	run(&c, in, strlen(in), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.flags, 0);
	assert_int_equal(r.max_linelen, 10);
	/* a stuffed line: 10 octets after unstuffing */
	in = repeat('.', 11, "\r\n.\r\n");
	run(&c, in, strlen(in), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.flags, 0);
	assert_int_equal(r.max_linelen, 10);
}

/* max_line + 1 octets is too long, with or without a stuffing dot. */
static void
test_line_max_plus_one(void **state)
{
	struct cfg c = REJ;
	struct res r;
	char *in;

	c.max_line = 10;
	in = repeat('.', 12, "\r\nx\r\n.\r\n"); /* 11 after unstuffing */
	run(&c, in, strlen(in), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.flags, DATA_F_LONG_LINE);
	in = repeat('a', 11, "\r\nx\r\n.\r\n");
	run(&c, in, strlen(in), 0, 0, false, &r);
	assert_true(r.end);
	if (r.flags != DATA_F_LONG_LINE)
		fail_msg("a line of max_line + 1 octets was accepted (emitted %zu octets, max %zu)",
		    r.max_linelen, c.max_line);
}

/*
 * Overlong lines are dropped as they arrive: the framer never asks for
 * more than max_line + a few octets to be buffered, whatever the length,
 * and the end of data after them is still found.
 */
static void
test_long_line_discarded(void **state)
{
	struct cfg c = NORM;
	struct res r, whole;

	c.max_line = 10;
	/* (11 octets is test_line_max_plus_one's case) */
	for (size_t n = 12; n <= 40; n++) {
		/* with a line between the long one and the end, and without */
		for (int k = 0; k < 2; k++) {
			char *in = repeat('a', n, k ? "\r\n.\r\n" : "\r\nok\r\n.\r\n");
			size_t len = strlen(in);

			run(&c, in, len, 0, 0, false, &whole);
			if (!whole.end)
				fail_msg("line of %zu octets (max 10)%s: end of data not found", n,
				    k ? " right before the dot" : "");
			assert_int_equal(whole.end_at, len);
			assert_true(whole.flags & DATA_F_LONG_LINE);
			if (k)
				EXPECT_LINES(&whole, "");
			else
				EXPECT_LINES(&whole, "ok\n");
			for (int step = 1; step <= 13; step++) {
				run(&c, in, len, step, 0, false, &r);
				if (!r.end)
					fail_msg("line of %zu octets%s fed %d at a time: end of data not "
					    "found", n, k ? " right before the dot" : "", step);
				assert_int_equal(r.outlen, whole.outlen);
				assert_true(r.max_buffered <= c.max_line + 3 + (size_t)step);
			}
		}
	}
}

/* A long line that ends in a bare LF, and one ended by the input. */
static void
test_long_line_variants(void **state)
{
	struct cfg c = REJ;
	struct res r;
	char *in;

	c.max_line = 10;
	in = repeat('b', 50, "\n.\r\nnext\r\n.\r\n");
	run(&c, in, strlen(in), 3, 0, false, &r);
	/* the dot after the bare LF is content; the one after "next" CRLF ends */
	assert_true(r.end);
	assert_int_equal(r.end_at, strlen(in));
	EXPECT_LINES(&r, ".\nnext\n");
	assert_true(r.flags & DATA_F_LONG_LINE);
	/* megabytes of one line: consumed as it comes, never buffered */
	in = repeat('z', 60000, "\r\n.\r\n");
	run(&c, in, strlen(in), 0, 0, false, &r);
	assert_true(r.end);
	assert_true(r.flags & DATA_F_LONG_LINE);
	assert_int_equal(r.nlines, 0);
}

/* ------------------------------------------------------------- size */

static void
test_size_limit(void **state)
{
	struct cfg c = REJ;
	struct res r;

	c.max_size = 24;
	/* two 12-octet lines as delivered: exactly the maximum */
	run(&c, S("0123456789\r\n0123456789\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.size, 24);
	assert_int_equal(r.flags, 0);
	run(&c, S("0123456789\r\n0123456789\r\nx\r\n.\r\n"), 0, 0, false, &r);
	assert_true(r.end);
	assert_int_equal(r.size, 27);
	assert_int_equal(r.flags, DATA_F_TOO_BIG);
	/* a stuffed line counts as delivered (without the stuffing dot) */
	c.max_size = 3;
	run(&c, S("..\r\n.\r\n"), 0, 0, false, &r);
	assert_int_equal(r.size, 3);
	assert_int_equal(r.flags, 0);
	/* bare LF lines count as CRLF lines */
	run(&NORM, S("a\nb\n\r\n.\r\n"), 0, 0, false, &r);
	assert_int_equal(r.size, 8);
}

/* ------------------------------------------------------ cut invariance */

/* Every variant, every policy, random cuts: the same result as one read. */
static void
test_cut_invariance(void **state)
{
	static const struct {
		const char *s;
		size_t len;
	} extra[] = {
		{S("a\r\nb\r\n.\r\n")},
		{S("..\r\n.\r\n")},
		{S("\r\n\r\n.\r\n")},
		{S("x\ry\nz\r\n.\r\n")},
		{S("line\0nul\r\n.\r\n")},
		{S(".\r\n")},
		{S("\r\r\n.\r\n")},
		{S("a\r\r\r\n.\r\n")},
		{S("0123456789012345678901234567890\r\n.\r\n")},
		{S("0123456789012\r\n.\r\n")},
		{S("012345678901\r\n.\r\n")},
		{S("01234567890\r\n.\r\n")},
		{S(".01234567890\r\n.\r\n")},
	};
	struct cfg cfgs[4] = { REJ, NORM, REJ, NORM };
	char in[256];
	struct res whole, r;

	cfgs[2].max_line = cfgs[3].max_line = 10;
	for (size_t v = 0; v < N(smuggle) + N(extra); v++) {
		size_t len;

		if (v < N(smuggle)) {
			len = smuggle_input(v, in, sizeof(in));
		} else {
			len = extra[v - N(smuggle)].len;
			memcpy(in, extra[v - N(smuggle)].s, len);
		}
		for (size_t c = 0; c < N(cfgs); c++) {
			run(&cfgs[c], in, len, 0, 0, false, &whole);
			for (unsigned seed = 1; seed < 40; seed++) {
				run(&cfgs[c], in, len, -1, seed, false, &r);
				if (r.end != whole.end || r.end_at != whole.end_at ||
				    r.outlen != whole.outlen || memcmp(r.out, whole.out, r.outlen) ||
				    r.flags != whole.flags)
					fail_msg("input %zu config %zu seed %u: cut changes the result "
					    "(end %d/%d at %zu/%zu, flags %#x/%#x)", v, c, seed, r.end,
					    whole.end, r.end_at, whole.end_at, r.flags, whole.flags);
			}
			for (int step = 0; step < 6; step++) {
				/* step 0: the whole input, taking runs first */
				use_runs = step == 0;
				run(&cfgs[c], in, len, step, 0, false, &r);
				use_runs = false;
				if (r.end != whole.end || r.end_at != whole.end_at ||
				    r.outlen != whole.outlen || memcmp(r.out, whole.out, r.outlen) ||
				    r.flags != whole.flags)
					fail_msg("input %zu config %zu step %d: cut changes the result "
					    "(end %d/%d, flags %#x/%#x)", v, c, step, r.end, whole.end, r.flags,
					    whole.flags);
			}
		}
	}
}

/* The fast path takes whole plain lines and leaves every decision to data_next. */
static void
test_run_stops_where_framing_decides(void **state)
{
	struct data_framer f;
	static const char in[] = "a\r\nbb\r\n.x\r\nc\r\n";
	size_t n;

	(void)state;
	data_init(&f, DATA_BARE_REJECT, false, 998, 1000000);
	n = data_run(&f, in, sizeof(in) - 1, SIZE_MAX);
	assert_int_equal(n, 7); /* "a" and "bb", not the stuffed ".x" */
	assert_int_equal(f.lines, 2);
	assert_int_equal(f.size, 7);
	assert_int_equal(data_run(&f, in + 7, sizeof(in) - 8, SIZE_MAX), 0);
	/* bounded by max: only whole lines */
	data_init(&f, DATA_BARE_REJECT, false, 998, 1000000);
	assert_int_equal(data_run(&f, in, sizeof(in) - 1, 6), 3);
	/* bare LF, lone CR, NUL, an unfinished line, RAW mode: nothing */
	data_init(&f, DATA_BARE_NORMALIZE, false, 998, 1000000);
	assert_int_equal(data_run(&f, "a\nb\r\n", 5, SIZE_MAX), 0);
	assert_int_equal(data_run(&f, "a\rb\r\n", 5, SIZE_MAX), 0);
	assert_int_equal(data_run(&f, "a\0b\r\n", 5, SIZE_MAX), 0);
	assert_int_equal(data_run(&f, "abc\r", 4, SIZE_MAX), 0);
	assert_int_equal(f.lines, 0);
	data_init(&f, DATA_BARE_REJECT, true, 998, 1000000);
	assert_int_equal(data_run(&f, "a\r\n", 3, SIZE_MAX), 0);
	/* the line over the line limit or the size limit is data_next's to flag */
	data_init(&f, DATA_BARE_REJECT, false, 3, 1000000);
	assert_int_equal(data_run(&f, "abc\r\nabcd\r\n", 11, SIZE_MAX), 5);
	data_init(&f, DATA_BARE_REJECT, false, 998, 8);
	assert_int_equal(data_run(&f, "abc\r\nabc\r\n", 10, SIZE_MAX), 5);
	assert_int_equal(f.flags, 0);
}

/* --------------------------------------------------------------- RAW */

static void
test_raw_mode(void **state)
{
	struct cfg c = REJ;
	struct res r;

	c.raw = true;
	/* no unstuffing, no end marker: the caller ends the message */
	run(&c, S("a\r\n.\r\n..b\r\n.\r\n"), 0, 0, true, &r);
	assert_false(r.end);
	EXPECT_LINES(&r, "a\n.\n..b\n.\n");
	/* the rest of the last chunk becomes the final line */
	run(&c, S("a\r\ntail"), 0, 0, true, &r);
	EXPECT_LINES(&r, "a\ntail\n");
	assert_int_equal(r.size, 3 + 6);
	run(&c, S("a\r\ntail"), 1, 0, true, &r);
	EXPECT_LINES(&r, "a\ntail\n");
	/* a trailing CR is a bare CR */
	run(&c, S("x\r"), 0, 0, true, &r);
	EXPECT_LINES(&r, "x\n");
	assert_int_equal(r.flags, DATA_F_BARE_CR);
	/* NUL in the final piece */
	run(&c, S("x\0y"), 0, 0, true, &r);
	assert_int_equal(r.flags, DATA_F_NUL);
	/* nothing left: nothing emitted */
	run(&c, S("a\r\n"), 0, 0, true, &r);
	EXPECT_LINES(&r, "a\n");
}

static void
test_raw_finish_direct(void **state)
{
	struct data_framer f;
	const char *line = NULL;
	size_t consumed = 99, linelen = 99;

	data_init(&f, DATA_BARE_REJECT, true, 998, 1000);
	assert_int_equal(data_finish_raw(&f, "", 0, &consumed, &line, &linelen), DATA_SKIP);
	assert_int_equal(consumed, 0);
	assert_int_equal(data_finish_raw(&f, "abc", 3, &consumed, &line, &linelen), DATA_LINE);
	assert_int_equal(consumed, 3);
	assert_int_equal(linelen, 3);
	assert_int_equal(f.size, 5);
	/* an overlong line being discarded stays discarded */
	data_init(&f, DATA_BARE_REJECT, true, 4, 1000);
	static const char big[] = "0123456789";
	assert_int_equal(data_next(&f, big, 10, &consumed, &line, &linelen), DATA_SKIP);
	assert_true(f.in_long);
	assert_int_equal(data_finish_raw(&f, big + consumed, 10 - consumed, &consumed, &line,
	    &linelen), DATA_SKIP);
	assert_false(f.in_long);
	assert_true(data_refused(&f));
}

static void
test_raw_long_line(void **state)
{
	struct cfg c = NORM;
	struct res r;
	char *in;

	c.raw = true;
	c.max_line = 10;
	in = repeat('r', 30, "\r\nshort\r\n");
	run(&c, in, strlen(in), 2, 0, true, &r);
	assert_true(r.flags & DATA_F_LONG_LINE);
	EXPECT_LINES(&r, "short\n");
	in = repeat('r', 10, "\r\n");
	run(&c, in, strlen(in), 0, 0, true, &r);
	assert_int_equal(r.flags, 0);
	/* RAW has no stuffing dot: 11 octets are too long */
	in = repeat('.', 11, "\r\n");
	run(&c, in, strlen(in), 0, 0, true, &r);
	if (!(r.flags & DATA_F_LONG_LINE))
		fail_msg("RAW: a line of max_line + 1 octets was accepted");
	/* the last chunk's final line, without CRLF, is held to the same limit */
	in = repeat('r', 11, "");
	run(&c, in, strlen(in), 0, 0, true, &r);
	if (!(r.flags & DATA_F_LONG_LINE))
		fail_msg("RAW: a final line of max_line + 1 octets was accepted");
	assert_int_equal(r.nlines, 0);
}

/* --------------------------------------------------------- refusals */

static void
test_refusal_replies(void **state)
{
	static const struct {
		enum data_bare_policy policy;
		unsigned flags;
		bool refused;
		const char *reply;
	} cases[] = {
		{DATA_BARE_REJECT, 0, false, "554 5.6.0 Message refused"},
		{DATA_BARE_REJECT, DATA_F_BARE_LF, true, "554 5.6.0 Message contains bare CR or LF"},
		{DATA_BARE_REJECT, DATA_F_BARE_CR, true, "554 5.6.0 Message contains bare CR or LF"},
		{DATA_BARE_NORMALIZE, DATA_F_BARE_LF | DATA_F_BARE_CR, false, NULL},
		{DATA_BARE_NORMALIZE, DATA_F_NUL, true, "554 5.6.0 Message contains NUL"},
		{DATA_BARE_REJECT, DATA_F_NUL | DATA_F_BARE_LF, true, "554 5.6.0 Message contains NUL"},
		{DATA_BARE_NORMALIZE, DATA_F_LONG_LINE, true, "500 5.5.2 Message line too long"},
		{DATA_BARE_REJECT, DATA_F_LONG_LINE | DATA_F_NUL, true, "500 5.5.2"},
		{DATA_BARE_NORMALIZE, DATA_F_TOO_BIG, true, "552 5.3.4"},
		{DATA_BARE_REJECT, DATA_F_TOO_BIG | DATA_F_LONG_LINE | DATA_F_NUL, true, "552 5.3.4"},
	};

	for (size_t i = 0; i < N(cases); i++) {
		struct data_framer f;

		data_init(&f, cases[i].policy, false, 998, 1000);
		f.flags = cases[i].flags;
		assert_int_equal(data_refused(&f), cases[i].refused);
		if (cases[i].reply)
			if (strncmp(data_refusal_reply(&f), cases[i].reply, strlen(cases[i].reply)))
				fail_msg("case %zu: \"%s\"", i, data_refusal_reply(&f));
		const char *rep = data_refusal_reply(&f);
		assert_true(rep[0] == '5' && rep[3] == ' ');
		assert_null(strpbrk(rep, "\r\n"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_message),
		cmocka_unit_test(test_empty_message),
		cmocka_unit_test(test_end_stops_consuming),
		cmocka_unit_test(test_unstuffing),
		cmocka_unit_test(test_end_needs_crlf),
		cmocka_unit_test(test_smuggling_variants),
		cmocka_unit_test(test_bare_lf),
		cmocka_unit_test(test_bare_cr),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_line_exactly_max),
		cmocka_unit_test(test_line_max_plus_one),
		cmocka_unit_test(test_long_line_discarded),
		cmocka_unit_test(test_long_line_variants),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_cut_invariance),
		cmocka_unit_test(test_run_stops_where_framing_decides),
		cmocka_unit_test(test_raw_mode),
		cmocka_unit_test(test_raw_finish_direct),
		cmocka_unit_test(test_raw_long_line),
		cmocka_unit_test(test_refusal_replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
