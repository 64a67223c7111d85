/*
 * test_mime - the streaming MIME parser.  Structure (nested multiparts,
 * attached messages, digests), decoding (base64, quoted-printable, names in
 * RFC 2231 and RFC 2047 form, folding), byte ranges that let the engine
 * strip a part exactly, every historical boundary/header bypass flagged
 * with its code, every limit reported, and -- for every message here --
 * the same events whatever the input is cut into (1..97 octet pieces and
 * random cuts).
 *
 * The recorder turns events into a transcript (one line per event, bodies
 * joined per part and printed at PART_END), which is what the cut test
 * compares; the tests also keep each part as it was at PART_END.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"

#define MAXP 64

struct rec {
	char *tr; /* transcript */
	size_t trlen, trcap;
	struct mime_part parts[MAXP]; /* as at PART_END */
	unsigned char *body[MAXP];
	size_t bodylen[MAXP];
	unsigned nparts;   /* PART_END events */
	unsigned nbegin;
	uint64_t anom;     /* all anomaly codes seen */
	uint64_t panom[MAXP];
	unsigned nbody_events;
	unsigned nheaders;
	char hdr[64][2][256]; /* name, value of the first headers */
	unsigned hdr_part[64];
	uint64_t hdr_off[64][2]; /* [off, off_end) */
	/* mime_want: ask for want0 octets of every leaf, then once want1 more */
	struct mime_parser *p;
	uint64_t want0, want1;
	bool extended[MAXP];
};

static void tr_add(struct rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
tr_add(struct rec *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(r->tr + r->trlen, r->trcap - r->trlen, fmt, ap);
		va_end(ap);
		assert_true(n >= 0);
		if ((size_t)n < r->trcap - r->trlen)
			break;
		r->trcap = r->trcap * 2 + (size_t)n + 1;
		r->tr = realloc(r->tr, r->trcap);
		assert_non_null(r->tr);
	}
	r->trlen += (size_t)n;
}

static void
tr_escaped(struct rec *r, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			tr_add(r, "%c", p[i]);
		else
			tr_add(r, "\\x%02x", p[i]);
	}
}

static void
rec_cb(void *arg, const struct mime_event *ev)
{
	struct rec *r = arg;
	unsigned i = ev->part->index;

	assert_true(i < MAXP);
	switch (ev->kind) {
	case MIME_EV_HEADER:
		/* names and values are NUL-terminated at their length */
		assert_int_equal(ev->name[ev->namelen], '\0');
		assert_int_equal(ev->value[ev->valuelen], '\0');
		tr_add(r, "H%u [%llu,%llu) ", i, (unsigned long long)ev->off,
		    (unsigned long long)ev->off_end);
		tr_escaped(r, (const unsigned char *)ev->name, ev->namelen);
		tr_add(r, ": ");
		tr_escaped(r, (const unsigned char *)ev->value, ev->valuelen);
		tr_add(r, "%s\n", ev->truncated ? " (truncated)" : "");
		if (r->nheaders < 64) {
			snprintf(r->hdr[r->nheaders][0], 256, "%.*s", (int)ev->namelen, ev->name);
			snprintf(r->hdr[r->nheaders][1], 256, "%.*s", (int)ev->valuelen, ev->value);
			r->hdr_part[r->nheaders] = i;
			r->hdr_off[r->nheaders][0] = ev->off;
			r->hdr_off[r->nheaders][1] = ev->off_end;
		}
		r->nheaders++;
		break;
	case MIME_EV_PART_BEGIN:
		r->nbegin++;
		if (r->want0 && !ev->part->multipart && !ev->part->message)
			mime_want(r->p, r->want0);
		tr_add(r, "B%u parent=%u depth=%u %s%s cte=%s disp=%d charset=%s%s%s names=",
		    i, ev->part->parent, ev->part->depth, ev->part->type,
		    ev->part->type_declared ? "" : "(default)", mime_cte_name(ev->part->cte),
		    (int)ev->part->disp, ev->part->charset, ev->part->multipart ? " multipart" : "",
		    ev->part->message ? " message" : "");
		for (unsigned k = 0; k < ev->part->nnames; k++) {
			tr_add(r, "[");
			tr_escaped(r, (const unsigned char *)ev->part->names[k],
			    strlen(ev->part->names[k]));
			tr_add(r, "]");
		}
		tr_add(r, " @%llu\n", (unsigned long long)ev->part->off_body);
		break;
	case MIME_EV_BODY:
		assert_true(ev->len > 0);
		assert_true(ev->len <= 1u << 20);
		r->body[i] = realloc(r->body[i], r->bodylen[i] + ev->len);
		assert_non_null(r->body[i]);
		memcpy(r->body[i] + r->bodylen[i], ev->data, ev->len);
		r->bodylen[i] += ev->len;
		r->nbody_events++;
		if (r->want1 && !r->extended[i] && r->bodylen[i] >= r->want0) {
			r->extended[i] = true;
			mime_want(r->p, r->want1);
		}
		break;
	case MIME_EV_PART_END:
		r->parts[i] = *ev->part;
		r->nparts++;
		assert_true(ev->part->off_start <= ev->part->off_body);
		assert_true(ev->part->off_body <= ev->part->off_end);
		assert_int_equal(ev->part->decoded_size, r->bodylen[i]);
		tr_add(r, "E%u%s [%llu,%llu,%llu) raw=%llu body=", i, ev->part->skipped ? " skipped" : "",
		    (unsigned long long)ev->part->off_start, (unsigned long long)ev->part->off_body,
		    (unsigned long long)ev->part->off_end, (unsigned long long)ev->part->raw_size);
		tr_escaped(r, r->body[i], r->bodylen[i]);
		tr_add(r, "\n");
		break;
	case MIME_EV_ANOMALY:
		r->anom |= 1ull << ev->anomaly;
		r->panom[i] |= 1ull << ev->anomaly;
		tr_add(r, "!%u %s @%llu\n", i, mime_anomaly_name(ev->anomaly),
		    (unsigned long long)ev->off);
		break;
	}
}

static void
rec_free(struct rec *r)
{
	free(r->tr);
	for (unsigned i = 0; i < MAXP; i++)
		free(r->body[i]);
	memset(r, 0, sizeof(*r));
}

/*
 * Parse msg: step 0 = whole, k > 0 = k-octet pieces, -1 = random pieces
 * from seed.  Each piece is copied to its own heap buffer, so reading past
 * a piece is an ASan error.
 */
static uint64_t want0, want1; /* for the next parse_lim */

static void
parse_lim(const struct mime_limits *lim, const char *msg, size_t len, int step, unsigned seed,
    struct rec *r)
{
	struct mime_parser *p;
	size_t fed = 0;

	memset(r, 0, sizeof(*r));
	r->want0 = want0;
	r->want1 = want1;
	r->trcap = 4096;
	r->tr = malloc(r->trcap);
	assert_non_null(r->tr);
	r->tr[0] = '\0';
	p = mime_new(lim, rec_cb, r);
	r->p = p;
	while (fed < len) {
		size_t piece = len - fed;
		char *copy;

		if (step > 0 && (size_t)step < piece)
			piece = (size_t)step;
		if (step < 0) {
			seed = seed * 1103515245u + 12345u;
			piece = 1 + (seed >> 16) % 200;
			if (piece > len - fed)
				piece = len - fed;
		}
		copy = malloc(piece);
		assert_non_null(copy);
		memcpy(copy, msg + fed, piece);
		mime_feed(p, copy, piece);
		free(copy);
		fed += piece;
	}
	mime_finish(p);
	assert_int_equal(mime_offset(p), len);
	assert_int_equal(mime_anomalies(p), r->anom);
	mime_free(p);
	assert_int_equal(r->nbegin, r->nparts);
}

static void
parse(const char *msg, struct rec *r)
{
	parse_lim(NULL, msg, strlen(msg), 0, 0, r);
}

/* A MIME message with the given Content-Type and body. */
#define MP(ct, body) "MIME-Version: 1.0\r\nContent-Type: " ct "\r\n\r\n" body

#define HAS(r, code) (((r)->anom >> (code)) & 1)
#define PHAS(r, part, code) (((r)->panom[part] >> (code)) & 1)

static void
assert_only(const struct rec *r, uint64_t allowed)
{
	if (r->anom & ~allowed) {
		for (unsigned i = 0; i < MIME_A_COUNT; i++)
			if ((r->anom & ~allowed) >> i & 1)
				fprintf(stderr, "unexpected anomaly %s\n", mime_anomaly_name(i));
		fprintf(stderr, "%s", r->tr);
		fail();
	}
}

static void
assert_body(const struct rec *r, unsigned part, const char *want)
{
	size_t n = strlen(want);

	if (r->bodylen[part] != n || memcmp(r->body[part], want, n) != 0) {
		fprintf(stderr, "part %u body (%zu) differs from (%zu) \"%s\"\n%s", part,
		    r->bodylen[part], n, want, r->tr);
		fail();
	}
}

/* The octets [off_start, off_end) of a part. */
static char *
slice(const char *msg, const struct mime_part *pt)
{
	size_t n = (size_t)(pt->off_end - pt->off_start);
	char *s = malloc(n + 1);

	assert_non_null(s);
	memcpy(s, msg + pt->off_start, n);
	s[n] = '\0';
	return s;
}

/* ---- messages (every one also goes through the cut test) -------------- */

static const char msg_plain[] =
	"From: a@example.org\r\n"
	"To: b@example.org\r\n"
	"Subject: hello\r\n"
	"\r\n"
	"line one\r\n"
	"-- \r\n"
	"sig\r\n";

static const char msg_mixed[] =
	"From: a@example.org\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"XX-b1\"\r\n"
	"\r\n"
	"This is the preamble.\r\n"
	"--XX-b1\r\n"
	"Content-Type: text/plain; charset=UTF-8\r\n"
	"\r\n"
	"Hello\r\n"
	"--XX-b1\r\n"
	"Content-Type: application/octet-stream; name=\"a.exe\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: attachment; filename=\"a.exe\"\r\n"
	"\r\n"
	"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	"AAAAgAAAAA==\r\n"
	"--XX-b1--\r\n"
	"epilogue\r\n";

static const char msg_nested[] =
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=outer\r\n"
	"\r\n"
	"--outer\r\n"
	"Content-Type: multipart/alternative; boundary=inner\r\n"
	"\r\n"
	"--inner\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"plain\r\n"
	"--inner\r\n"
	"Content-Type: text/html\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"<p class=3D\"x\">caf=C3=A9 =\r\n"
	"soft</p>   \r\n"
	"end\r\n"
	"--inner--\r\n"
	"--outer\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"From: c@example.org\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"deep\"\r\n"
	"\r\n"
	"--deep\r\n"
	"Content-Type: application/zip\r\n"
	"Content-Disposition: attachment;\r\n"
	" filename*0*=UTF-8''%E2%82%AC;\r\n"
	" filename*1=\".zip\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"UEsDBA==\r\n"
	"--deep--\r\n"
	"\r\n"
	"--outer--\r\n";

static const char msg_digest[] =
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/digest; boundary=d\r\n"
	"\r\n"
	"--d\r\n"
	"\r\n"
	"Subject: first\r\n"
	"\r\n"
	"one\r\n"
	"--d--\r\n";

static const char msg_folded[] =
	"Subject: a\r\n"
	" folded\r\n"
	"\tsubject\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed;\r\n"
	"\tboundary=\"f\"\r\n"
	"\r\n"
	"--f\r\n"
	"Content-Type: application/pdf;\r\n"
	" name=\"=?UTF-8?B?ZXZpbC5leGU=?=\"\r\n"
	"Content-Disposition: attachment;\r\n"
	" filename=\"=?iso-8859-1?Q?caf=E9?= =?iso-8859-1?Q?_doc.pdf?=\"\r\n"
	"\r\n"
	"%PDF\r\n"
	"--f--\r\n";

static const char *const corpus[] = { msg_plain, msg_mixed, msg_nested, msg_digest,
	msg_folded };

/* ---- structure --------------------------------------------------------- */

static void
test_plain(void **state)
{
	struct rec r;

	(void)state;
	parse(msg_plain, &r);
	assert_only(&r, 0);
	assert_int_equal(r.nparts, 1);
	assert_string_equal(r.parts[0].type, "text/plain");
	assert_false(r.parts[0].type_declared);
	/* the message's last line end is content: no delimiter follows */
	assert_body(&r, 0, "line one\r\n-- \r\nsig\r\n");
	assert_int_equal(r.parts[0].off_end, strlen(msg_plain));
	assert_int_equal(r.nheaders, 3);
	assert_string_equal(r.hdr[2][0], "Subject");
	assert_string_equal(r.hdr[2][1], "hello");
	rec_free(&r);
}

static void
test_mixed(void **state)
{
	struct rec r;
	char *s;
	static const unsigned char exe[] = { 'M', 'Z', 0x90, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0xff,
		0xff, 0, 0, 0xb8 };

	(void)state;
	parse(msg_mixed, &r);
	assert_only(&r, 0);
	assert_int_equal(r.nparts, 3);
	assert_true(r.parts[0].multipart);
	assert_string_equal(r.parts[1].type, "text/plain");
	assert_string_equal(r.parts[1].charset, "utf-8");
	assert_body(&r, 1, "Hello");
	assert_string_equal(r.parts[2].type, "application/octet-stream");
	assert_int_equal(r.parts[2].cte, MIME_CTE_BASE64);
	assert_int_equal(r.parts[2].disp, MIME_DISP_ATTACHMENT);
	assert_int_equal(r.parts[2].nnames, 1);
	assert_string_equal(r.parts[2].names[0], "a.exe");
	assert_true(r.bodylen[2] > sizeof(exe));
	assert_memory_equal(r.body[2], exe, sizeof(exe));
	assert_int_equal(r.parts[2].parent, 0);
	assert_int_equal(r.parts[2].depth, 1);

	/* the ranges: what the engine replaces to strip a part */
	s = slice(msg_mixed, &r.parts[1]);
	assert_string_equal(s, "Content-Type: text/plain; charset=UTF-8\r\n\r\nHello");
	free(s);
	s = slice(msg_mixed, &r.parts[2]);
	assert_true(strncmp(s, "Content-Type: application/octet-stream", 38) == 0);
	assert_true(strlen(s) > 4 && strcmp(s + strlen(s) - 4, "AA==") == 0);
	free(s);
	assert_int_equal(r.parts[0].off_end, strlen(msg_mixed));
	rec_free(&r);
}

/* Replace part 2 by a text part at its range: the result parses cleanly. */
static void
test_strip_by_range(void **state)
{
	struct rec r, r2;
	static const char repl[] = "Content-Type: text/plain\r\n\r\nThe attachment a.exe was removed.";
	char out[4096];
	size_t n;

	(void)state;
	parse(msg_mixed, &r);
	n = (size_t)r.parts[2].off_start;
	memcpy(out, msg_mixed, n);
	memcpy(out + n, repl, sizeof(repl) - 1);
	n += sizeof(repl) - 1;
	memcpy(out + n, msg_mixed + r.parts[2].off_end, strlen(msg_mixed) - r.parts[2].off_end);
	n += strlen(msg_mixed) - r.parts[2].off_end;
	out[n] = '\0';
	parse(out, &r2);
	assert_only(&r2, 0);
	assert_int_equal(r2.nparts, 3);
	assert_string_equal(r2.parts[2].type, "text/plain");
	assert_body(&r2, 2, "The attachment a.exe was removed.");
	assert_body(&r2, 1, "Hello");
	rec_free(&r);
	rec_free(&r2);
}

static void
test_nested(void **state)
{
	struct rec r;

	(void)state;
	parse(msg_nested, &r);
	assert_only(&r, 0);
	/* 0 mixed, 1 alternative, 2 plain, 3 html, 4 message/rfc822, 5 its message,
	 * 6 the zip */
	assert_int_equal(r.nparts, 7);
	assert_true(r.parts[1].multipart);
	assert_int_equal(r.parts[2].parent, 1);
	assert_int_equal(r.parts[2].depth, 2);
	assert_body(&r, 2, "plain");
	/* quoted-printable: =3D, UTF-8 octets, soft break, trailing space dropped */
	assert_body(&r, 3, "<p class=\"x\">caf\xc3\xa9 soft</p>\r\nend");
	assert_true(r.parts[4].message);
	assert_string_equal(r.parts[4].type, "message/rfc822");
	assert_int_equal(r.parts[5].parent, 4);
	assert_int_equal(r.parts[5].depth, 2);
	assert_true(r.parts[5].multipart);
	assert_int_equal(r.parts[6].depth, 3);
	assert_int_equal(r.parts[6].parent, 5);
	/* RFC 2231 continuation, first section with a charset */
	assert_int_equal(r.parts[6].nnames, 1);
	assert_string_equal(r.parts[6].names[0], "\xe2\x82\xac.zip");
	assert_body(&r, 6, "PK\x03\x04");
	/* the message part and its message end together, before "\r\n--outer--" */
	assert_int_equal(r.parts[4].off_end, r.parts[5].off_end);
	assert_int_equal(r.parts[4].off_body, r.parts[5].off_start);
	rec_free(&r);
}

static void
test_digest(void **state)
{
	struct rec r;

	(void)state;
	parse(msg_digest, &r);
	assert_only(&r, 0);
	assert_string_equal(r.parts[1].type, "message/rfc822");
	assert_false(r.parts[1].type_declared);
	assert_true(r.parts[1].message);
	assert_string_equal(r.hdr[2][0], "Subject");
	assert_int_equal(r.hdr_part[2], 2);
	assert_body(&r, 2, "one");
	rec_free(&r);
}

static void
test_folding_and_encoded_names(void **state)
{
	struct rec r;

	(void)state;
	parse(msg_folded, &r);
	/* name="evil.exe" and filename="café doc.pdf" disagree: both reported */
	assert_only(&r, 1ull << MIME_A_NAME_CONFLICT);
	assert_string_equal(r.hdr[0][1], "a folded\tsubject");
	assert_int_equal(r.parts[1].nnames, 2);
	assert_string_equal(r.parts[1].names[0], "caf\xc3\xa9 doc.pdf");
	assert_string_equal(r.parts[1].names[1], "evil.exe");
	rec_free(&r);
}

/* A header field's range is the whole field, folded lines and CRLF included. */
static void
test_header_ranges(void **state)
{
	static const char msg[] = "Subject: a\r\nX-Secret: one\r\n two\r\n\tthree\r\nTo: b\r\n\r\nbody\r\n";
	char out[256];
	struct rec r, r2;
	size_t n;

	(void)state;
	parse(msg, &r);
	assert_int_equal(r.nheaders, 3);
	assert_string_equal(r.hdr[1][0], "X-Secret");
	assert_string_equal(r.hdr[1][1], "one two\tthree");
	n = (size_t)(r.hdr_off[1][1] - r.hdr_off[1][0]);
	assert_int_equal(n, strlen("X-Secret: one\r\n two\r\n\tthree\r\n"));
	assert_memory_equal(msg + r.hdr_off[1][0], "X-Secret: one\r\n two\r\n\tthree\r\n", n);
	/* the ranges tile the header section */
	assert_int_equal(r.hdr_off[0][0], 0);
	assert_int_equal(r.hdr_off[0][1], r.hdr_off[1][0]);
	assert_int_equal(r.hdr_off[1][1], r.hdr_off[2][0]);
	assert_int_equal(r.hdr_off[2][1] + 2, r.parts[0].off_body);
	/* stripping it leaves a message without it */
	memcpy(out, msg, (size_t)r.hdr_off[1][0]);
	memcpy(out + r.hdr_off[1][0], msg + r.hdr_off[1][1], sizeof(msg) - r.hdr_off[1][1]);
	parse(out, &r2);
	assert_only(&r2, 0);
	assert_int_equal(r2.nheaders, 2);
	assert_string_equal(r2.hdr[1][0], "To");
	assert_body(&r2, 0, "body\r\n");
	rec_free(&r);
	rec_free(&r2);
}

/* An attached message whose blank line is followed by the delimiter. */
static void
test_empty_attached_message(void **state)
{
	struct rec r;

	(void)state;
	parse(MP("multipart/mixed; boundary=a", "--a\r\nContent-Type: message/rfc822\r\n\r\n"
	    "--a--\r\n"), &r);
	assert_only(&r, 0);
	assert_int_equal(r.nparts, 3);
	assert_true(r.parts[1].message);
	assert_int_equal(r.parts[2].parent, 1);
	assert_int_equal(r.parts[2].off_start, r.parts[2].off_end);
	rec_free(&r);
}

static void
test_headers_only_message(void **state)
{
	struct rec r;

	(void)state;
	parse("Subject: x\r\nFrom: y\r\n", &r);
	assert_only(&r, 0);
	assert_int_equal(r.nheaders, 2);
	assert_int_equal(r.bodylen[0], 0);
	rec_free(&r);
	parse("", &r);
	assert_int_equal(r.nparts, 1);
	rec_free(&r);
}

/* A large attachment: decoded octets equal the original, few events. */
static void
test_base64_large(void **state)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	enum { N = 100000 };
	unsigned char *bin = malloc(N);
	char *msg = malloc(N * 2 + 1000);
	size_t m = 0, col = 0;
	unsigned x = 1;
	struct rec r;

	(void)state;
	assert_non_null(bin);
	assert_non_null(msg);
	for (size_t i = 0; i < N; i++) {
		x = x * 1664525u + 1013904223u;
		bin[i] = (unsigned char)(x >> 24);
	}
	m += (size_t)sprintf(msg, "Content-Type: multipart/mixed; boundary=z\r\nMIME-Version: 1.0\r\n"
	    "\r\n--z\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	for (size_t i = 0; i < N; i += 3) {
		uint32_t v = (uint32_t)bin[i] << 16;
		size_t k = N - i < 3 ? N - i : 3;

		if (k > 1)
			v |= (uint32_t)bin[i + 1] << 8;
		if (k > 2)
			v |= bin[i + 2];
		msg[m++] = al[v >> 18 & 63];
		msg[m++] = al[v >> 12 & 63];
		msg[m++] = k > 1 ? al[v >> 6 & 63] : '=';
		msg[m++] = k > 2 ? al[v & 63] : '=';
		if ((col += 4) == 76) {
			msg[m++] = '\r';
			msg[m++] = '\n';
			col = 0;
		}
	}
	m += (size_t)sprintf(msg + m, "\r\n--z--\r\n");
	for (int step = 0; step <= 7; step += 7) {
		parse_lim(NULL, msg, m, step ? step : 0, 0, &r);
		assert_only(&r, 0);
		assert_int_equal(r.bodylen[1], N);
		assert_memory_equal(r.body[1], bin, N);
		/* batched: about one event per MIME_OUT_SIZE octets, not per line */
		assert_true(r.nbody_events <= N / (MIME_OUT_SIZE / 2) + 2);
		rec_free(&r);
	}
	free(bin);
	free(msg);
}

/* ---- the bypasses: one row per trick, the code it must raise ---------- */

struct bypass {
	const char *what;
	const char *msg;
	enum mime_anomaly code;
	int part; /* the part that carries it, -1: any */
};


static const struct bypass bypasses[] = {
	{ "boundary ends in --",
	  MP("multipart/mixed; boundary=\"b--\"", "--b--\r\n\r\nx\r\n--b----\r\n"),
	  MIME_A_BOUNDARY_DASHES, 0 },
	{ "quoted pair in boundary",
	  MP("multipart/mixed; boundary=\"a\\\"b\"", "--a\"b\r\n\r\nx\r\n--a\"b--\r\n"),
	  MIME_A_BOUNDARY_QUOTE, 0 },
	{ "text after the quoted boundary",
	  MP("multipart/mixed; boundary=\"abc\"def", "--abc\r\n\r\nx\r\n--abc--\r\n"),
	  MIME_A_BOUNDARY_QUOTE, 0 },
	{ "unterminated quote",
	  MP("multipart/mixed; boundary=\"abc", "--abc\r\n\r\nx\r\n--abc--\r\n"),
	  MIME_A_BOUNDARY_QUOTE, 0 },
	{ "boundary with trailing space",
	  MP("multipart/mixed; boundary=\"abc \"", "--abc \r\n\r\nx\r\n--abc --\r\n"),
	  MIME_A_BOUNDARY_SPACE, 0 },
	{ "two boundary parameters",
	  MP("multipart/mixed; boundary=a; boundary=b", "--a\r\n\r\nx\r\n--b\r\n\r\ny\r\n--a--\r\n"),
	  MIME_A_BOUNDARY_DUP, 0 },
	{ "boundary and boundary*",
	  MP("multipart/mixed; boundary=a; boundary*=''b", "--a\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_BOUNDARY_DUP, 0 },
	{ "two Content-Type fields",
	  "Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n"
	  "--a\r\n\r\nx\r\n--a--\r\n",
	  MIME_A_CT_DUP, 0 },
	{ "two Content-Transfer-Encoding fields",
	  "Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\nTVo=\r\n",
	  MIME_A_CTE_DUP, 0 },
	{ "two Content-Disposition fields",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Disposition: attachment; filename=a.txt\r\n"
	     "Content-Disposition: attachment; filename=a.exe\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_CD_DUP, 1 },
	{ "part header without the blank line",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Type: text/plain\r\nbody line\r\n--a--\r\n"),
	  MIME_A_HDR_NO_COLON, 1 },
	{ "delimiter inside a part header",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Type: text/plain\r\n--a\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_HDR_DELIM, 1 },
	{ "missing close delimiter",
	  MP("multipart/mixed; boundary=a", "--a\r\n\r\nx\r\n"),
	  MIME_A_NO_CLOSE, 0 },
	{ "inner multipart not closed",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
	     "--b\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_NO_CLOSE, 1 },
	{ "delimiter with trailing whitespace",
	  MP("multipart/mixed; boundary=a", "--a \t\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_DELIM_WSP, 0 },
	{ "delimiter followed by text",
	  MP("multipart/mixed; boundary=a", "--a\r\n\r\nx\r\n--ab\r\n\r\ny\r\n--a--\r\n"),
	  MIME_A_DELIM_JUNK, 0 },
	{ "delimiter after the close delimiter",
	  MP("multipart/mixed; boundary=a", "--a\r\n\r\nx\r\n--a--\r\n--a\r\n\r\nhidden\r\n--a--\r\n"),
	  MIME_A_DELIM_AFTER_CLOSE, 0 },
	{ "nested boundary prefix of the outer one",
	  MP("multipart/mixed; boundary=ab", "--ab\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n"
	     "--a\r\n\r\nx\r\n--a--\r\n--ab--\r\n"),
	  MIME_A_BOUNDARY_PREFIX, 1 },
	{ "same boundary nested",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n"
	     "--a\r\n\r\nx\r\n--a--\r\n--a--\r\n"),
	  MIME_A_BOUNDARY_PREFIX, 1 },
	{ "multipart without boundary",
	  MP("multipart/mixed", "--a\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_BOUNDARY_MISSING, 0 },
	{ "boundary with invalid characters",
	  MP("multipart/mixed; boundary=\"a;b\"", "--a;b\r\n\r\nx\r\n--a;b--\r\n"),
	  MIME_A_BOUNDARY_CHARS, 0 },
	{ "base64-encoded multipart",
	  "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=a\r\n"
	  "Content-Transfer-Encoding: base64\r\n\r\nLS1hDQoNCngNCi0tYS0tDQo=\r\n",
	  MIME_A_CTE_COMPOSITE, 0 },
	{ "quoted-printable message/rfc822",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Type: message/rfc822\r\n"
	     "Content-Transfer-Encoding: quoted-printable\r\n\r\nSubject: x=\r\n\r\n--a--\r\n"),
	  MIME_A_CTE_COMPOSITE, 1 },
	{ "unknown transfer encoding",
	  "Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a.exe\r\n",
	  MIME_A_CTE_UNKNOWN, 0 },
	{ "transfer encoding with a parameter",
	  "Content-Transfer-Encoding: base64; x=y\r\n\r\nTVo=\r\n",
	  MIME_A_CTE_UNKNOWN, 0 },
	{ "bad base64",
	  "Content-Transfer-Encoding: base64\r\n\r\nTV!o=\r\n",
	  MIME_A_B64_BAD, 0 },
	{ "base64 after padding",
	  "Content-Transfer-Encoding: base64\r\n\r\nTQ==TVo=\r\n",
	  MIME_A_B64_BAD, 0 },
	{ "bad quoted-printable escape",
	  "Content-Transfer-Encoding: quoted-printable\r\n\r\na=ZZb\r\n",
	  MIME_A_QP_BAD, 0 },
	{ "NUL in a header",
	  "Subject: a\0b\r\nContent-Type: text/plain\r\n\r\nx\r\n",
	  MIME_A_HDR_NUL, 0 },
	{ "8-bit field name",
	  "Cont\xe9nt-Type: text/plain\r\n\r\nx\r\n",
	  MIME_A_HDR_8BIT, 0 },
	{ "8-bit octets in a boundary",
	  MP("multipart/mixed; boundary=\"a\xe9\"", "--a\xe9\r\n\r\nx\r\n--a\xe9--\r\n"),
	  MIME_A_BOUNDARY_CHARS, 0 },
	{ "8-bit octets in a type",
	  MP("multip\xe4rt/mixed; boundary=a", "--a\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_CT_SYNTAX, 0 },
	{ "whitespace-only continuation line",
	  "Subject: x\r\n \r\nContent-Type: text/plain\r\n\r\nx\r\n",
	  MIME_A_HDR_WSP_LINE, 0 },
	{ "whitespace before the colon",
	  "MIME-Version: 1.0\r\nContent-Type : multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\nx\r\n--a--\r\n",
	  MIME_A_HDR_WSP_COLON, 0 },
	{ "comment in Content-Type",
	  MP("multipart/mixed; (boundary=x) boundary=a", "--a\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_COMMENT, 0 },
	{ "missing ';' before the parameters",
	  MP("multipart/mixed boundary=a", "--a\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_CT_SYNTAX, 0 },
	{ "Content-Type without subtype",
	  MP("multipart; boundary=a", "--a\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_CT_SYNTAX, 0 },
	{ "bare LF ends a header line",
	  "Subject: x\nContent-Type: text/plain\r\n\r\nx\r\n",
	  MIME_A_BARE_LF, 0 },
	{ "bare CR in a header line",
	  "Subject: x\rContent-Type: text/html\r\n\r\nx\r\n",
	  MIME_A_BARE_CR, 0 },
	{ "bare LF after a delimiter",
	  MP("multipart/mixed; boundary=a", "--a\n\r\nx\r\n--a--\r\n"),
	  MIME_A_BARE_LF, 0 },
	{ "duplicate filename parameter",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Disposition: attachment; filename=a.txt; "
	     "filename=a.exe\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_PARAM, 1 },
	{ "RFC 2231 section missing",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Disposition: attachment; filename*0=a; "
	     "filename*2=.exe\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_PARAM, 1 },
	{ "filename and filename* disagree",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Disposition: attachment; filename=a.txt; "
	     "filename*=UTF-8''a.exe\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_NAME_CONFLICT, 1 },
	{ "NUL in a file name",
	  MP("multipart/mixed; boundary=a", "--a\r\nContent-Disposition: attachment; "
	     "filename*=UTF-8''a.exe%00.txt\r\n\r\nx\r\n--a--\r\n"),
	  MIME_A_NAME_NUL, 1 },
	{ "message/partial",
	  MP("message/partial; id=\"x\"; number=1; total=2", "Subject: x\r\n"),
	  MIME_A_PARTIAL, 0 },
};

static const struct bypass *
bypass(const char *what)
{
	for (size_t i = 0; i < sizeof(bypasses) / sizeof(bypasses[0]); i++)
		if (strcmp(bypasses[i].what, what) == 0)
			return &bypasses[i];
	fail_msg("no bypass \"%s\"", what);
	return NULL;
}

static void
test_bypasses(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bypasses) / sizeof(bypasses[0]); i++) {
		const struct bypass *b = &bypasses[i];
		size_t len = strlen(b->msg);
		struct rec r;

		/* the NUL case: the literal goes on after the NUL */
		if (b->code == MIME_A_HDR_NUL)
			len = sizeof("Subject: a\0b\r\nContent-Type: text/plain\r\n\r\nx\r\n") - 1;
		parse_lim(NULL, b->msg, len, 0, 0, &r);
		if (!HAS(&r, b->code) || (b->part >= 0 && !PHAS(&r, b->part, b->code))) {
			fprintf(stderr, "bypass \"%s\": %s not raised on part %d\n%s", b->what,
			    mime_anomaly_name(b->code), b->part, r.tr);
			fail();
		}
		assert_int_equal(mime_anomaly_class(b->code), MIME_CLASS_AMBIGUOUS);
		rec_free(&r);
		/* and the same whatever the cuts */
		for (int step = 1; step <= 9; step++) {
			struct rec r1, r2;

			parse_lim(NULL, b->msg, len, 0, 0, &r1);
			parse_lim(NULL, b->msg, len, step, 0, &r2);
			if (strcmp(r1.tr, r2.tr) != 0) {
				fprintf(stderr, "bypass \"%s\" step %d:\n--- whole\n%s--- cut\n%s",
				    b->what, step, r1.tr, r2.tr);
				fail();
			}
			rec_free(&r1);
			rec_free(&r2);
		}
	}
}

/* What the tricks still let the scanners see. */
static void
test_bypass_content(void **state)
{
	struct rec r;

	(void)state;
	/* missing blank line: that line is the body's first */
	parse(bypass("part header without the blank line")->msg, &r);
	assert_body(&r, 1, "body line");
	assert_string_equal(r.parts[1].type, "text/plain");
	rec_free(&r);
	/* the base64-encoded multipart is decoded as one leaf */
	parse(bypass("base64-encoded multipart")->msg, &r);
	assert_body(&r, 0, "--a\r\n\r\nx\r\n--a--\r\n");
	rec_free(&r);
	/* a NUL in a name: both readings are names */
	parse(bypass("NUL in a file name")->msg, &r);
	assert_int_equal(r.parts[1].nnames, 2);
	assert_string_equal(r.parts[1].names[0], "a.exe");
	assert_string_equal(r.parts[1].names[1], "a.exe.txt");
	rec_free(&r);
	/* filename vs filename*: both names, filename* first */
	parse(bypass("filename and filename* disagree")->msg, &r);
	assert_int_equal(r.parts[1].nnames, 2);
	assert_string_equal(r.parts[1].names[0], "a.exe");
	assert_string_equal(r.parts[1].names[1], "a.txt");
	rec_free(&r);
	/* RFC 2231 gap: the sections before the gap */
	parse(bypass("RFC 2231 section missing")->msg, &r);
	assert_string_equal(r.parts[1].names[0], "a");
	rec_free(&r);
	/* delimiter with trailing whitespace still delimits (RFC 2046) */
	parse(bypass("delimiter with trailing whitespace")->msg, &r);
	assert_int_equal(r.nparts, 2);
	assert_body(&r, 1, "x");
	rec_free(&r);
	/* "--ab" is not the delimiter of "a": part 1 holds it */
	parse(bypass("delimiter followed by text")->msg, &r);
	assert_int_equal(r.nparts, 2);
	assert_body(&r, 1, "x\r\n--ab\r\n\r\ny");
	rec_free(&r);
}

/* Well-formed lookalikes must not raise anything. */
static void
test_no_false_alarms(void **state)
{
	static const char *const ok[] = {
		/* quoted boundary with allowed specials, and a close delimiter */
		MP("multipart/mixed; boundary=\"=_Part_1(x)+,./:=?\"",
		   "--=_Part_1(x)+,./:=?\r\n\r\nx\r\n--=_Part_1(x)+,./:=?--\r\n"),
		/* empty part, epilogue, body lines that start with "--" */
		MP("multipart/mixed; boundary=a", "--a\r\n\r\n--\r\n-- \r\n---\r\n--b\r\n--a--\r\nbye\r\n"),
		/* lowercase CTE, parameters in any case, charset in quotes */
		"MIME-Version: 1.0\r\nContent-Type: Text/Plain; CharSet=\"ISO-8859-1\"\r\n"
		"Content-Transfer-Encoding: Quoted-Printable\r\n\r\ncaf=E9\r\n",
		/* RFC 2231 with language, windows-1252 */
		MP("multipart/mixed; boundary=a", "--a\r\nContent-Disposition: attachment; "
		   "filename*=windows-1252'en'%80uro.txt\r\n\r\nx\r\n--a--\r\n"),
		/* a raw Latin-1 file name: logged, not ambiguous */
		MP("text/plain; name=\"\xe9t\xe9.exe\"", "x\r\n"),
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct rec r;

		parse(ok[i], &r);
		assert_only(&r, i == 4 ? 1ull << MIME_A_HDR_UTF8 | 1ull << MIME_A_PARAM_SLOPPY : 0);
		if (i == 3)
			assert_string_equal(r.parts[1].names[0], "\xe2\x82\xacuro.txt");
		if (i == 2)
			assert_body(&r, 0, "caf\xe9\r\n");
		if (i == 1)
			assert_body(&r, 1, "--\r\n-- \r\n---\r\n--b");
		if (i == 4)
			assert_string_equal(r.parts[0].names[0], "\xc3\xa9t\xc3\xa9.exe");
		rec_free(&r);
	}
}

/* ---- limits ------------------------------------------------------------ */

static void
test_limit_depth(void **state)
{
	char msg[8192];
	size_t m = 0;
	struct mime_limits lim = mime_default_limits;
	struct rec r;

	(void)state;
	lim.max_depth = 4;
	m += (size_t)sprintf(msg + m, "MIME-Version: 1.0\r\n");
	for (int d = 0; d < 8; d++)
		m += (size_t)sprintf(msg + m, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n",
		    d, d);
	m += (size_t)sprintf(msg + m, "\r\ninnermost\r\n");
	for (int d = 7; d >= 0; d--)
		m += (size_t)sprintf(msg + m, "--b%d--\r\n", d);
	parse_lim(&lim, msg, m, 0, 0, &r);
	assert_true(HAS(&r, MIME_L_DEPTH));
	assert_true(PHAS(&r, 4, MIME_L_DEPTH));
	assert_int_equal(mime_anomaly_class(MIME_L_DEPTH), MIME_CLASS_LIMIT);
	/* depth 4 is one opaque leaf: its body holds the rest, unparsed */
	assert_false(r.parts[4].multipart);
	assert_int_equal(r.parts[4].depth, 4);
	assert_true(r.bodylen[4] > 0);
	assert_int_equal(r.nparts, 5);
	rec_free(&r);
}

static void
test_limit_parts(void **state)
{
	char msg[8192];
	size_t m = 0;
	struct mime_limits lim = mime_default_limits;
	struct rec r;

	(void)state;
	lim.max_parts = 5;
	m += (size_t)sprintf(msg + m, MP("multipart/mixed; boundary=a", ""));
	for (int i = 0; i < 10; i++)
		m += (size_t)sprintf(msg + m, "--a\r\n\r\npart %d\r\n", i);
	m += (size_t)sprintf(msg + m, "--a--\r\n");
	for (int step = 0; step < 3; step++) {
		parse_lim(&lim, msg, m, step, 0, &r);
		assert_true(HAS(&r, MIME_L_PARTS));
		assert_int_equal(r.nparts, 5); /* the four that fit, and the message */
		assert_false(HAS(&r, MIME_A_NO_CLOSE));
		rec_free(&r);
	}
}

static void
test_limit_field_and_header(void **state)
{
	struct mime_limits lim = mime_default_limits;
	static char msg[200000];
	size_t m = 0;
	struct rec r;

	(void)state;
	lim.max_field = 1000;
	lim.max_header = 50000;
	m += (size_t)sprintf(msg, "Subject: ");
	memset(msg + m, 'x', 5000);
	m += 5000;
	m += (size_t)sprintf(msg + m, "\r\n");
	for (int i = 0; i < 1000; i++)
		m += (size_t)sprintf(msg + m, "X-Filler-%04d: 0123456789012345678901234567890123456789\r\n", i);
	m += (size_t)sprintf(msg + m, "\r\nbody\r\n");
	parse_lim(&lim, msg, m, 0, 0, &r);
	assert_true(HAS(&r, MIME_L_FIELD));
	assert_true(HAS(&r, MIME_L_HEADER));
	assert_int_equal(strlen(r.hdr[0][1]), 255); /* the recorder's copy; the value itself: */
	assert_non_null(strstr(r.tr, "(truncated)"));
	assert_body(&r, 0, "body\r\n");
	rec_free(&r);
}

static void
test_limit_boundary(void **state)
{
	char msg[2048], b[300];
	struct rec r;

	(void)state;
	memset(b, 'b', 250);
	b[250] = '\0';
	snprintf(msg, sizeof(msg), MP("multipart/mixed; boundary=%s", "--%s\r\n\r\nx\r\n--%s--\r\n"), b,
	    b, b);
	parse(msg, &r);
	assert_true(HAS(&r, MIME_L_BOUNDARY));
	assert_false(r.parts[0].multipart);
	rec_free(&r);
	/* 71..200: followed, flagged as malformed only */
	b[100] = '\0';
	snprintf(msg, sizeof(msg), MP("multipart/mixed; boundary=%s", "--%s\r\n\r\nx\r\n--%s--\r\n"), b,
	    b, b);
	parse(msg, &r);
	assert_only(&r, 1ull << MIME_A_BOUNDARY_LONG);
	assert_body(&r, 1, "x");
	rec_free(&r);
}

/* A long line that starts like a delimiter is not buffered whole. */
static void
test_long_dash_line(void **state)
{
	char *msg = malloc(100000);
	size_t m = 0;
	struct rec r;

	(void)state;
	assert_non_null(msg);
	m += (size_t)sprintf(msg, MP("multipart/mixed; boundary=a", "--a\r\n\r\n"));
	msg[m++] = '-';
	msg[m++] = '-';
	memset(msg + m, 'a', 50000);
	m += 50000;
	m += (size_t)sprintf(msg + m, "\r\n--a--\r\n");
	for (int step = 0; step <= 1000; step += 1000) {
		parse_lim(NULL, msg, m, step, 0, &r);
		assert_only(&r, 1ull << MIME_A_DELIM_JUNK);
		assert_int_equal(r.bodylen[1], 50002);
		rec_free(&r);
	}
	free(msg);
}

/* Transcripts must match; on failure both go to $TMPDIR for diff(1). */
static void
assert_same_tr(const struct rec *a, const struct rec *b, int step)
{
	if (strcmp(a->tr, b->tr) != 0) {
		FILE *f = fopen("/tmp/test_mime.whole", "w"), *g = fopen("/tmp/test_mime.cut", "w");

		if (f && g) {
			fputs(a->tr, f);
			fputs(b->tr, g);
		}
		if (f)
			fclose(f);
		if (g)
			fclose(g);
		fail_msg("step %d: transcripts differ (/tmp/test_mime.whole, /tmp/test_mime.cut)",
		    step);
	}
}

/*
 * mime_want: a leaf decodes what the caller asks for, then the rest is
 * skipped; asking for more when the wish is met continues without a gap;
 * where decoding stops does not depend on the cuts.
 */
static void
test_want(void **state)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	enum { N = 30000 };
	char *msg = malloc(N * 3 + 1000);
	unsigned char *bin = malloc(N);
	size_t m = 0, col = 0;
	struct rec whole, cut;
	unsigned x = 9;

	(void)state;
	for (size_t i = 0; i < N; i++) {
		x = x * 1664525u + 1013904223u;
		bin[i] = (unsigned char)(x >> 24);
	}
	m += (size_t)sprintf(msg, MP("multipart/mixed; boundary=z",
	    "--z\r\nContent-Transfer-Encoding: base64\r\n\r\n"));
	for (size_t i = 0; i + 3 <= N; i += 3) {
		uint32_t v = (uint32_t)bin[i] << 16 | (uint32_t)bin[i + 1] << 8 | bin[i + 2];

		msg[m++] = al[v >> 18];
		msg[m++] = al[v >> 12 & 63];
		msg[m++] = al[v >> 6 & 63];
		msg[m++] = al[v & 63];
		if (i == 3000)
			msg[m++] = '!'; /* bad base64 past what is wanted */
		if ((col += 4) == 76) {
			msg[m++] = '\r';
			msg[m++] = '\n';
			col = 0;
		}
	}
	m += (size_t)sprintf(msg + m, "\r\n--z\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
	for (int i = 0; i < 400; i++)
		m += (size_t)sprintf(msg + m, "line %03d caf=C3=A9 =\r\n", i);
	m += (size_t)sprintf(msg + m, "\r\n--z\r\n\r\n");
	for (int i = 0; i < 400; i++)
		m += (size_t)sprintf(msg + m, "plain line %03d\r\n", i);
	m += (size_t)sprintf(msg + m, "--z--\r\n");

	/* all of it: the '!' is seen */
	parse_lim(NULL, msg, m, 0, 0, &whole);
	assert_int_equal(whole.bodylen[1], N);
	assert_true(PHAS(&whole, 1, MIME_A_B64_BAD));
	assert_false(whole.parts[1].skipped);
	rec_free(&whole);

	/* 1000 octets of each leaf: the '!' (after octet 3000) is not reached */
	want0 = 1000;
	parse_lim(NULL, msg, m, 0, 0, &whole);
	for (unsigned i = 1; i <= 3; i++) {
		assert_true(whole.bodylen[i] >= 1000 && whole.bodylen[i] <= 1002);
		assert_true(whole.parts[i].skipped);
		assert_true(whole.parts[i].raw_size > whole.bodylen[i]);
	}
	assert_memory_equal(whole.body[1], bin, whole.bodylen[1]);
	assert_false(HAS(&whole, MIME_A_B64_BAD));
	assert_false(HAS(&whole, MIME_A_B64_PARTIAL));
	for (int step = 1; step <= 40; step++) {
		parse_lim(NULL, msg, m, step, 0, &cut);
		assert_same_tr(&whole, &cut, step);
		rec_free(&cut);
	}
	rec_free(&whole);

	/* ...then 2000 more when the first 1000 arrived: no gap */
	want1 = 2000;
	parse_lim(NULL, msg, m, 0, 0, &whole);
	assert_true(whole.bodylen[1] >= 3000 && whole.bodylen[1] <= 3004);
	assert_memory_equal(whole.body[1], bin, whole.bodylen[1]);
	for (int step = 1; step <= 40; step += 3) {
		parse_lim(NULL, msg, m, step, 0, &cut);
		assert_same_tr(&whole, &cut, step);
		rec_free(&cut);
	}
	rec_free(&whole);
	want0 = want1 = 0;
	free(msg);
	free(bin);
}

/* ---- cutting the input anywhere changes nothing ------------------------ */

static void
check_cuts(const char *msg, size_t len)
{
	struct rec whole, cut;

	parse_lim(NULL, msg, len, 0, 0, &whole);
	for (int step = 1; step <= 97; step++) {
		parse_lim(NULL, msg, len, step, 0, &cut);
		if (strcmp(whole.tr, cut.tr) != 0) {
			fprintf(stderr, "step %d:\n--- whole\n%s--- cut\n%s", step, whole.tr, cut.tr);
			fail();
		}
		rec_free(&cut);
	}
	for (unsigned seed = 1; seed <= 20; seed++) {
		parse_lim(NULL, msg, len, -1, seed, &cut);
		assert_string_equal(whole.tr, cut.tr);
		rec_free(&cut);
	}
	rec_free(&whole);
}

static void
test_cuts(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++)
		check_cuts(corpus[i], strlen(corpus[i]));
	for (size_t i = 0; i < sizeof(bypasses) / sizeof(bypasses[0]); i++)
		if (bypasses[i].code != MIME_A_HDR_NUL)
			check_cuts(bypasses[i].msg, strlen(bypasses[i].msg));
}

/* Every cut position of a message, split in two. */
static void
test_every_split(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		const char *msg = corpus[i];
		size_t len = strlen(msg);
		struct rec whole, cut;

		parse_lim(NULL, msg, len, 0, 0, &whole);
		for (size_t at = 1; at < len; at++) {
			struct mime_parser *p;

			memset(&cut, 0, sizeof(cut));
			cut.trcap = 4096;
			cut.tr = malloc(cut.trcap);
			cut.tr[0] = '\0';
			p = mime_new(NULL, rec_cb, &cut);
			mime_feed(p, msg, at);
			mime_feed(p, msg + at, len - at);
			mime_finish(p);
			mime_free(p);
			if (strcmp(whole.tr, cut.tr) != 0) {
				fprintf(stderr, "split at %zu:\n--- whole\n%s--- cut\n%s", at, whole.tr,
				    cut.tr);
				fail();
			}
			rec_free(&cut);
		}
		rec_free(&whole);
	}
}

/* mime_reset: the same parser, a second message, the same result. */
static void
test_reset(void **state)
{
	struct rec a, b;
	struct mime_parser *p;

	(void)state;
	parse(msg_nested, &a);
	memset(&b, 0, sizeof(b));
	b.trcap = 4096;
	b.tr = malloc(b.trcap);
	b.tr[0] = '\0';
	p = mime_new(NULL, rec_cb, &b);
	mime_feed(p, msg_mixed, strlen(msg_mixed) / 2); /* abandoned half-way */
	mime_reset(p);
	rec_free(&b);
	b.trcap = 4096;
	b.tr = malloc(b.trcap);
	b.tr[0] = '\0';
	mime_feed(p, msg_nested, strlen(msg_nested));
	mime_finish(p);
	mime_free(p);
	assert_string_equal(a.tr, b.tr);
	rec_free(&a);
	rec_free(&b);
}

static void
test_anomaly_table(void **state)
{
	uint64_t all = mime_class_mask(MIME_CLASS_AMBIGUOUS) | mime_class_mask(MIME_CLASS_MALFORMED) |
	    mime_class_mask(MIME_CLASS_LIMIT);

	(void)state;
	assert_true(MIME_A_COUNT <= 64);
	assert_int_equal(__builtin_popcountll(all), MIME_A_COUNT);
	for (unsigned i = 0; i < MIME_A_COUNT; i++) {
		assert_non_null(mime_anomaly_name(i));
		assert_true(strlen(mime_anomaly_text(i)) > 5);
		for (unsigned j = 0; j < i; j++)
			assert_string_not_equal(mime_anomaly_name(i), mime_anomaly_name(j));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_strip_by_range),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_folding_and_encoded_names),
		cmocka_unit_test(test_header_ranges),
		cmocka_unit_test(test_empty_attached_message),
		cmocka_unit_test(test_headers_only_message),
		cmocka_unit_test(test_base64_large),
		cmocka_unit_test(test_bypasses),
		cmocka_unit_test(test_bypass_content),
		cmocka_unit_test(test_no_false_alarms),
		cmocka_unit_test(test_limit_depth),
		cmocka_unit_test(test_limit_parts),
		cmocka_unit_test(test_limit_field_and_header),
		cmocka_unit_test(test_limit_boundary),
		cmocka_unit_test(test_long_dash_line),
		cmocka_unit_test(test_want),
		cmocka_unit_test(test_cuts),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_anomaly_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
