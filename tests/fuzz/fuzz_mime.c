/*
 * fuzz_mime - the streaming MIME parser on arbitrary messages.
 *
 * Input: byte 0 picks the limits (bits 0-1 max_depth 1/3/8/16, bits 2-3
 * max_parts 1/4/50/1000, bits 4-5 max_field 256/1000/8192/8192, bit 6 a
 * small max_header) and, bit 7, whether leaves are only partly wanted
 * (mime_want: a few octets of each, then once a few more); byte 1 seeds
 * the sizes of the pieces the rest is fed in.
 *
 * Checks, besides memory errors:
 *  - events are well-nested: every part begins once, ends once, after its
 *    children, in index order of appearance; HEADER and BODY events only
 *    for the part being read; a child's range lies inside its parent's;
 *    off_start <= off_body <= off_end <= octets fed;
 *  - BODY octets add up to decoded_size; decoded pieces never exceed
 *    MIME_OUT_SIZE unless they are the caller's own input (7bit/8bit/binary);
 *  - header names and values are NUL-terminated at their length, values no
 *    longer than max_field; file names are valid UTF-8 and NUL-free;
 *  - anomaly codes are valid, reported at most once per part and code,
 *    and their union is mime_anomalies();
 *  - with mime_want, a skipped leaf delivered at least what was asked,
 *    and no more than one input octet's worth beyond;
 *  - cutting the input differently changes nothing (whole vs. pieces).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

#define MAXP 1001

struct state {
	const struct mime_limits *lim;
	const char *in;   /* the whole input: identity BODY data may point into it */
	size_t inlen;
	uint64_t hash;    /* of the events, bodies hashed per part */
	uint64_t bodyhash[MAXP];
	uint64_t bodylen[MAXP];
	uint64_t anom[MAXP];
	uint64_t all;
	unsigned began, ended;
	unsigned stack[80]; /* open parts */
	unsigned depth;
	uint64_t fed;       /* octets fed so far (offsets never beyond) */
	uint64_t pstart[MAXP], pend[MAXP];
	struct mime_parser *p;
	bool want;          /* ask for part of each leaf */
	uint64_t asked[MAXP];
	bool extended[MAXP];
};

static void
mix(struct state *s, uint64_t v)
{
	s->hash = (s->hash ^ v) * 1099511628211ull;
}

static void
mix_bytes(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		*h = (*h ^ b[i]) * 1099511628211ull;
}

static void
cb(void *arg, const struct mime_event *ev)
{
	struct state *s = arg;
	const struct mime_part *pt = ev->part;
	unsigned i = pt->index;

	CHECK(i < MAXP);
	if (ev->kind != MIME_EV_BODY) {
		/* how decoded data is split into BODY events may depend on the cuts */
		mix(s, ev->kind);
		mix(s, i);
	}
	switch (ev->kind) {
	case MIME_EV_HEADER:
		CHECK(i == s->began); /* the part being read, not begun yet */
		CHECK(ev->name[ev->namelen] == '\0' && ev->value[ev->valuelen] == '\0');
		CHECK(ev->namelen + ev->valuelen <= s->lim->max_field);
		CHECK(ev->off < ev->off_end || ev->off == ev->off_end);
		CHECK(ev->off_end <= s->fed);
		mix_bytes(&s->hash, ev->name, ev->namelen);
		mix_bytes(&s->hash, ev->value, ev->valuelen);
		mix(s, ev->off);
		mix(s, ev->off_end);
		mix(s, ev->truncated);
		break;
	case MIME_EV_PART_BEGIN:
		CHECK(i == s->began); /* in order, once */
		s->began++;
		if (s->depth) {
			CHECK(pt->parent == s->stack[s->depth - 1]);
			CHECK(pt->depth == s->depth);
		} else {
			CHECK(i == 0 && pt->depth == 0);
		}
		CHECK(s->depth < 80);
		s->stack[s->depth++] = i;
		CHECK(pt->depth <= s->lim->max_depth);
		CHECK(pt->nnames <= MIME_NAMES_MAX);
		for (unsigned k = 0; k < pt->nnames; k++) {
			size_t n = strnlen(pt->names[k], MIME_NAME_MAX);

			CHECK(n > 0 && n < MIME_NAME_MAX);
			CHECK(decode_utf8_valid(pt->names[k], n));
			mix_bytes(&s->hash, pt->names[k], n);
		}
		CHECK(strnlen(pt->type, MIME_TYPE_MAX) < MIME_TYPE_MAX);
		CHECK(strchr(pt->type, '/') != NULL);
		CHECK(strnlen(pt->charset, MIME_CHARSET_MAX) < MIME_CHARSET_MAX);
		CHECK(!(pt->multipart && pt->message));
		CHECK(pt->off_start <= pt->off_body);
		mix_bytes(&s->hash, pt->type, strlen(pt->type));
		mix(s, pt->cte);
		mix(s, pt->disp);
		mix(s, pt->off_start);
		mix(s, pt->off_body);
		mix(s, pt->multipart | pt->message << 1);
		s->pstart[i] = pt->off_start;
		s->asked[i] = UINT64_MAX;
		if (s->want && !pt->multipart && !pt->message) {
			s->asked[i] = 1 + (i * 37) % 200;
			mime_want(s->p, s->asked[i]);
		}
		break;
	case MIME_EV_BODY:
		CHECK(s->depth > 0 && s->stack[s->depth - 1] == i);
		CHECK(!pt->multipart && !pt->message);
		CHECK(ev->len > 0);
		if ((const char *)ev->data < s->in || (const char *)ev->data >= s->in + s->inlen)
			CHECK(ev->len <= MIME_OUT_SIZE);
		mix_bytes(&s->bodyhash[i], ev->data, ev->len);
		s->bodylen[i] += ev->len;
		if (s->want && !s->extended[i] && s->bodylen[i] >= s->asked[i]) {
			s->extended[i] = true;
			s->asked[i] = s->bodylen[i] + 50;
			mime_want(s->p, 50);
		}
		break;
	case MIME_EV_PART_END:
		CHECK(s->depth > 0 && s->stack[s->depth - 1] == i);
		s->depth--;
		s->ended++;
		CHECK(pt->off_start <= pt->off_body && pt->off_body <= pt->off_end);
		CHECK(pt->off_end <= s->fed);
		CHECK(pt->decoded_size == s->bodylen[i]);
		CHECK(pt->anomalies == s->anom[i]);
		if (pt->skipped) {
			/* past the wish by what one input octet can add at most */
			uint64_t over = pt->cte == MIME_CTE_BASE64 ? 2 :
			    pt->cte == MIME_CTE_QP ? DECODE_QP_OUT(0) : 0;

			CHECK(s->want);
			CHECK(s->bodylen[i] >= s->asked[i] && s->bodylen[i] <= s->asked[i] + over);
		}
		s->pend[i] = pt->off_end;
		if (i) {
			/* inside the parent's range (the parent ends later, at or after) */
			CHECK(pt->off_start >= s->pstart[pt->parent]);
		}
		mix(s, pt->off_end);
		mix(s, pt->raw_size);
		mix(s, pt->skipped);
		mix(s, s->bodyhash[i]);
		mix(s, s->bodylen[i]);
		break;
	case MIME_EV_ANOMALY:
		CHECK(ev->anomaly < MIME_A_COUNT);
		CHECK(!(s->anom[i] >> ev->anomaly & 1)); /* once per part and code */
		s->anom[i] |= 1ull << ev->anomaly;
		s->all |= 1ull << ev->anomaly;
		CHECK(ev->off <= s->fed);
		mix(s, ev->anomaly);
		mix(s, ev->off);
		break;
	}
}

static uint64_t
run(const struct mime_limits *lim, const char *in, size_t len, unsigned seed, bool whole,
    bool want, struct state *s)
{
	struct mime_parser *p;
	size_t fed = 0;

	memset(s, 0, sizeof(*s));
	s->lim = lim;
	s->in = in;
	s->inlen = len;
	s->hash = 1469598103934665603ull;
	for (unsigned i = 0; i < MAXP; i++)
		s->bodyhash[i] = 1469598103934665603ull;
	p = mime_new(lim, cb, s);
	s->p = p;
	s->want = want;
	while (fed < len) {
		size_t piece = len - fed;

		if (!whole) {
			seed = seed * 1103515245u + 12345u;
			piece = 1 + (seed >> 16) % 64;
			if (piece > len - fed)
				piece = len - fed;
		}
		s->fed = fed + piece;
		mime_feed(p, in + fed, piece);
		fed += piece;
	}
	s->fed = len;
	mime_finish(p);
	CHECK(s->depth == 0);
	CHECK(s->began == s->ended && s->began >= 1);
	CHECK(s->began <= lim->max_parts);
	CHECK(mime_anomalies(p) == s->all);
	CHECK(mime_offset(p) == len);
	CHECK(s->pend[0] == len);
	mime_free(p);
	return s->hash;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned depths[] = { 1, 3, 8, 16 };
	static const unsigned parts[] = { 1, 4, 50, 1000 };
	static const size_t fields[] = { 256, 1000, 8192, 8192 };
	static struct state a, b;
	struct mime_limits lim;
	uint64_t h1, h2;

	if (size < 2 || size > 200000)
		return 0;
	lim.max_depth = depths[data[0] & 3];
	lim.max_parts = parts[data[0] >> 2 & 3];
	lim.max_field = fields[data[0] >> 4 & 3];
	lim.max_header = (data[0] >> 6 & 1) ? 2048 : 65536;
	h1 = run(&lim, (const char *)data + 2, size - 2, data[1], true, data[0] >> 7, &a);
	h2 = run(&lim, (const char *)data + 2, size - 2, data[1], false, data[0] >> 7, &b);
	if (h1 != h2) {
		fprintf(stderr, "cutting the input changed the events\n");
		__builtin_trap();
	}
	return 0;
}
