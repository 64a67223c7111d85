/*
 * fuzz_data - the message framer (smtp_data) on arbitrary message bytes,
 * in DATA mode under both bare-newline policies and in RAW mode.
 *
 * Input: byte 0 picks the mode: bit 0 NORMALIZE (else REJECT), bit 1 RAW,
 * bits 2-3 max_line (4, 10, 80, 998), bits 4-5 max_size (16, 100, 1000,
 * 10^9); byte 1 seeds the sizes of the pieces the rest is fed in.  The
 * framer is driven the way smtp_proxy.c drives it: bytes appended to a
 * buffer as they "arrive", data_next() until it needs more.
 *
 * Checks, besides memory errors:
 *  - the end of data is exactly where a strict receiver sees it: the first
 *    CRLF "." CRLF (counting the start of the message as after a CRLF);
 *    nothing after it is consumed; never an end in RAW mode;
 *  - emitted lines hold no LF (and no CR under NORMALIZE), are at most
 *    max_line octets, and a NUL or CR in one is flagged;
 *  - size accounting: size is the sum of the lines plus CRLFs, and
 *    TOO_BIG is set exactly when it exceeds max_size;
 *  - memory stays bounded: at most max_line + 3 octets wait in the buffer;
 *  - cutting the input differently changes nothing (whole vs. pieces);
 *  - taking runs of lines with data_run() first, as msg_data_input does,
 *    changes nothing either (same lines, flags, size and end), and a run
 *    is only whole CRLF lines that begin with no dot.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

#define MAX_INPUT 65536

struct res {
	uint64_t hash;  /* of the emitted lines, in order */
	uint64_t nlines;
	uint64_t bytes; /* sum of line lengths */
	bool end;
	size_t end_at;
	unsigned flags;
	uint64_t size;
};

static const size_t max_lines[] = { 4, 10, 80, 998 };
static const uint64_t max_sizes[] = { 16, 100, 1000, 1000000000 };

static void
line_out(struct res *r, const struct data_framer *f, const char *line, size_t len)
{
	CHECK(memchr(line, '\n', len) == NULL);
	if (f->policy == DATA_BARE_NORMALIZE)
		CHECK(memchr(line, '\r', len) == NULL);
	if (memchr(line, '\r', len))
		CHECK(f->flags & DATA_F_BARE_CR);
	if (memchr(line, '\0', len))
		CHECK(f->flags & DATA_F_NUL);
	if (len > f->max_line) {
		fprintf(stderr, "emitted a line of %zu octets, max_line %zu\n", len, f->max_line);
		CHECK(0);
	}
	/* FNV-1a over the line and a separator */
	for (size_t i = 0; i < len; i++)
		r->hash = (r->hash ^ (unsigned char)line[i]) * 1099511628211ull;
	r->hash = (r->hash ^ 0x100) * 1099511628211ull;
	r->nlines++;
	r->bytes += len;
}

/* A run from data_run: whole CRLF lines, none beginning with a dot. */
static void
run_out(struct res *r, const struct data_framer *f, const char *p, size_t n)
{
	while (n > 0) {
		const char *lf = memchr(p, '\n', n);
		size_t l;

		CHECK(lf != NULL && lf > p && lf[-1] == '\r');
		l = (size_t)(lf - p) - 1;
		CHECK(p[0] != '.' && memchr(p, '\r', l) == NULL && memchr(p, '\0', l) == NULL);
		line_out(r, f, p, l);
		p += l + 2;
		n -= l + 2;
	}
}

static void
run(const char *in, size_t len, enum data_bare_policy pol, bool raw, size_t max_line,
    uint64_t max_size, unsigned seed, bool whole, bool runs, struct res *r)
{
	static char buf[MAX_INPUT];
	struct data_framer f;
	size_t have = 0, fed = 0, total = 0;

	memset(r, 0, sizeof(*r));
	r->hash = 1469598103934665603ull;
	data_init(&f, pol, raw, max_line, max_size);
	while (fed < len && !r->end) {
		size_t piece = len - fed;

		if (!whole) {
			seed = seed * 1103515245u + 12345u;
			size_t k = 1 + (seed >> 16) % 13;
			if (k < piece)
				piece = k;
		}
		memcpy(buf + have, in + fed, piece);
		have += piece;
		fed += piece;
		for (;;) {
			const char *line = NULL;
			size_t consumed = (size_t)-1, linelen = 0;
			enum data_status st;

			if (runs) {
				/* a bound that varies, as the room upstream does */
				seed = seed * 1103515245u + 12345u;
				size_t n = data_run(&f, buf, have, (seed >> 16) % 7 ? have : (seed >> 20) % 64);

				CHECK(n <= have);
				CHECK(!raw || n == 0);
				if (n > 0) {
					run_out(r, &f, buf, n);
					memmove(buf, buf + n, have - n);
					have -= n;
					total += n;
					continue;
				}
			}
			st = data_next(&f, buf, have, &consumed, &line, &linelen);

			CHECK(consumed <= have);
			if (st == DATA_LINE) {
				CHECK(line >= buf && line + linelen <= buf + have);
				line_out(r, &f, line, linelen);
			} else if (st == DATA_SKIP) {
				CHECK(consumed > 0);
			} else if (st == DATA_END) {
				CHECK(!raw);
			} else {
				CHECK(st == DATA_NEED_MORE);
			}
			memmove(buf, buf + consumed, have - consumed);
			have -= consumed;
			total += consumed;
			if (st == DATA_END) {
				r->end = true;
				r->end_at = total;
				break;
			}
			if (st == DATA_NEED_MORE)
				break;
		}
		/* memory stays bounded whatever the input */
		if (!r->end && have > max_line + 3) {
			fprintf(stderr, "%zu octets held, max_line %zu\n", have, max_line);
			CHECK(0);
		}
	}
	if (raw) {
		const char *line = NULL;
		size_t consumed = 0, linelen = 0;
		enum data_status st = data_finish_raw(&f, buf, have, &consumed, &line, &linelen);

		CHECK(consumed == have);
		if (st == DATA_LINE)
			line_out(r, &f, line, linelen);
		else
			CHECK(st == DATA_SKIP);
	}
	r->flags = f.flags;
	r->size = f.size;
	CHECK(f.size == r->bytes + 2 * r->nlines);
	CHECK(!!(f.flags & DATA_F_TOO_BIG) == (f.size > max_size));
	CHECK(data_refused(&f) == ((f.flags & (DATA_F_NUL | DATA_F_LONG_LINE | DATA_F_TOO_BIG)) ||
	    (pol == DATA_BARE_REJECT && (f.flags & (DATA_F_BARE_LF | DATA_F_BARE_CR)))));
	if (data_refused(&f)) {
		const char *rep = data_refusal_reply(&f);
		CHECK(rep[0] == '5' && rep[3] == ' ' && strpbrk(rep, "\r\n") == NULL);
	}
}

/* Where a strict receiver ends the message: after the first CRLF "." CRLF. */
static bool
reference_end(const char *in, size_t len, size_t *end_at)
{
	if (len >= 3 && !memcmp(in, ".\r\n", 3)) {
		*end_at = 3;
		return true;
	}
	for (size_t i = 0; i + 5 <= len; i++)
		if (!memcmp(in + i, "\r\n.\r\n", 5)) {
			*end_at = i + 5;
			return true;
		}
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct res whole, cut;

	if (size < 2 || size - 2 > MAX_INPUT)
		return 0;
	enum data_bare_policy pol = data[0] & 1 ? DATA_BARE_NORMALIZE : DATA_BARE_REJECT;
	bool raw = data[0] & 2;
	size_t max_line = max_lines[(data[0] >> 2) & 3];
	uint64_t max_size = max_sizes[(data[0] >> 4) & 3];
	const char *in = (const char *)data + 2;
	size_t len = size - 2;

	run(in, len, pol, raw, max_line, max_size, data[1], true, false, &whole);
	if (!raw) {
		size_t ref_at = 0;
		bool ref = reference_end(in, len, &ref_at);

		if (ref != whole.end || (ref && ref_at != whole.end_at)) {
			fprintf(stderr, "end of data: framer %d at %zu, strict receiver %d at %zu\n",
			    whole.end, whole.end_at, ref, ref_at);
			CHECK(0);
		}
	}
	for (int k = 0; k < 3; k++) {
		/* pieces; pieces with runs; the whole with runs */
		run(in, len, pol, raw, max_line, max_size, data[1], k == 2, k > 0, &cut);
		if (cut.end != whole.end || cut.end_at != whole.end_at || cut.hash != whole.hash ||
		    cut.nlines != whole.nlines || cut.flags != whole.flags || cut.size != whole.size) {
			fprintf(stderr, "%s changes the result: end %d/%d at %zu/%zu lines %llu/%llu "
			    "flags %#x/%#x\n", k == 0 ? "cut" : k == 1 ? "cut with runs" : "runs",
			    whole.end, cut.end, whole.end_at, cut.end_at,
			    (unsigned long long)whole.nlines, (unsigned long long)cut.nlines,
			    whole.flags, cut.flags);
			CHECK(0);
		}
	}
	return 0;
}
