/*
 * clamd - INSTREAM framing, reply parsing and the clamd scanner pool
 * (protocol notes in clamd.h).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "clamd.h"
#include "log.h"
#include "util.h"

enum {
	CNT_CLEAN,
	CNT_INFECTED,
	CNT_TOO_LARGE,
	CNT_SCAN_ERRORS,
};

static const char *const clamd_counters[] = {
	[CNT_CLEAN] = "clean",
	[CNT_INFECTED] = "infected",
	[CNT_TOO_LARGE] = "too-large",
	[CNT_SCAN_ERRORS] = "scan-errors",
};

struct clamd_pool {
	struct scanner_pool *sp;
};

struct clamd_scan {
	struct scanner_req req; /* first: the pool's part */
	struct clamd_result res;
	clamd_done_fn *done;
	clamd_resume_fn *resume;
	void *arg;
};

static const char instream[] = "zINSTREAM"; /* sent with its NUL */
static const char size_limit[] = "INSTREAM size limit exceeded. ERROR";

const char *
clamd_status_name(enum clamd_status st)
{
	switch (st) {
	case CLAMD_CLEAN: return "clean";
	case CLAMD_INFECTED: return "infected";
	case CLAMD_TOO_LARGE: return "too-large";
	case CLAMD_ERROR: return "error";
	case CLAMD_UNAVAILABLE: return "unavailable";
	}
	return "invalid";
}

/* ------------------------------------------------------------- framing */

int
clamd_frame_begin(struct buf *out)
{
	return buf_append(out, instream, sizeof(instream));
}

int
clamd_frame_chunk(struct buf *out, const char *p, size_t n)
{
	size_t frames = (n + CLAMD_CHUNK_MAX - 1) / CLAMD_CHUNK_MAX;

	/* All or nothing: half a frame would desynchronise the stream. */
	if (n == 0)
		return 0;
	if (buf_room(out) < n + 4 * frames)
		return -1;
	while (n > 0) {
		size_t k = n > CLAMD_CHUNK_MAX ? CLAMD_CHUNK_MAX : n;
		unsigned char len[4] = {
			(unsigned char)(k >> 24), (unsigned char)(k >> 16),
			(unsigned char)(k >> 8), (unsigned char)k,
		};

		FATAL_IF(buf_append(out, len, 4) < 0 || buf_append(out, p, k) < 0);
		p += k;
		n -= k;
	}
	return 0;
}

int
clamd_frame_end(struct buf *out)
{
	static const char zero[4];

	return buf_append(out, zero, sizeof(zero));
}

/* --------------------------------------------------------------- replies */

static bool
virus_char(unsigned char ch)
{
	return isalnum(ch) || (ch != '\0' && strchr(".-_:/+()[]#@!~,", ch) != NULL);
}

/* The signature name, bounded and reduced to safe characters. */
static void
copy_virus(char *dst, const char *src, size_t n)
{
	size_t i;

	if (n >= CLAMD_VIRUS_MAX)
		n = CLAMD_VIRUS_MAX - 1;
	for (i = 0; i < n; i++)
		dst[i] = virus_char((unsigned char)src[i]) ? src[i] : '_';
	dst[i] = '\0';
	if (i == 0)
		snprintf(dst, CLAMD_VIRUS_MAX, "unknown");
}

/* One printable line out of what clamd said. */
static void
copy_text(char *dst, size_t dstlen, const char *prefix, const char *src, size_t n)
{
	size_t o = (size_t)snprintf(dst, dstlen, "%s", prefix);

	for (size_t i = 0; i < n && o + 1 < dstlen; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[o++] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
	}
	if (o < dstlen)
		dst[o] = '\0';
}

static bool
ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

int
clamd_reply_parse(const char *p, size_t len, unsigned seq, struct clamd_result *res,
    size_t *used, char *why, size_t whylen)
{
	const char *nul, *s;
	size_t n;

	nul = memchr(p, '\0', len < CLAMD_REPLY_MAX ? len : CLAMD_REPLY_MAX);
	if (nul == NULL) {
		if (len >= CLAMD_REPLY_MAX) {
			snprintf(why, whylen, "reply longer than %d octets", CLAMD_REPLY_MAX);
			return SCANNER_PARSE_BAD;
		}
		return SCANNER_PARSE_MORE;
	}
	*used = (size_t)(nul - p) + 1;
	s = p;
	n = (size_t)(nul - p);

	if (seq > 0) {
		/* "<id>: " - the id of the command this answers */
		unsigned long id = 0;
		size_t i = 0;

		while (i < n && i < 10 && isdigit((unsigned char)s[i]))
			id = id * 10 + (unsigned long)(s[i++] - '0');
		if (i == 0 || i + 2 > n || s[i] != ':' || s[i + 1] != ' ') {
			copy_text(why, whylen, "reply without a session id: ", s, n < 60 ? n : 60);
			return SCANNER_PARSE_BAD;
		}
		if (id != seq) {
			snprintf(why, whylen, "reply for command %lu, expected %u", id, seq);
			return SCANNER_PARSE_BAD;
		}
		s += i + 2;
		n -= i + 2;
	}

	memset(res->virus, 0, sizeof(res->virus));
	res->reason[0] = '\0';
	if (n == strlen("stream: OK") && memcmp(s, "stream: OK", n) == 0) {
		res->status = CLAMD_CLEAN;
		return SCANNER_PARSE_DONE;
	}
	if (n > strlen("stream: ") + strlen(" FOUND") && memcmp(s, "stream: ", 8) == 0 &&
	    ends_with(s, n, " FOUND")) {
		res->status = CLAMD_INFECTED;
		copy_virus(res->virus, s + 8, n - 8 - strlen(" FOUND"));
		return SCANNER_PARSE_DONE;
	}
	if (n == strlen(size_limit) && memcmp(s, size_limit, n) == 0) {
		res->status = CLAMD_TOO_LARGE;
		snprintf(res->reason, sizeof(res->reason),
		    "clamd: INSTREAM size limit exceeded (its StreamMaxLength is below clamd-max-size)");
		return SCANNER_PARSE_DONE;
	}
	/* "stream: <what> ERROR", "<what> ERROR", "UNKNOWN COMMAND", ... */
	res->status = CLAMD_ERROR;
	copy_text(res->reason, sizeof(res->reason), "clamd: ", s, n);
	return SCANNER_PARSE_DONE;
}

/* -------------------------------------------------------------- protocol */

static int
proto_begin(struct scanner_req *r, struct buf *out)
{
	return clamd_frame_begin(out);
}

static int
proto_chunk(struct scanner_req *r, struct buf *out, const char *p, size_t n)
{
	return clamd_frame_chunk(out, p, n);
}

static int
proto_end(struct scanner_req *r, struct buf *out)
{
	return clamd_frame_end(out);
}

static int
proto_reply(struct scanner_req *r, struct buf *in, unsigned seq, bool eof, char *why,
    size_t whylen)
{
	struct clamd_scan *s = container_of(r, struct clamd_scan, req);
	size_t used = 0;
	int rc;

	rc = clamd_reply_parse(scanner_head(in), buf_len(in), seq, &s->res, &used, why, whylen);
	if (rc != SCANNER_PARSE_DONE)
		return rc;
	buf_consume(in, used);
	switch (s->res.status) {
	case CLAMD_CLEAN:
		scanner_count(r, CNT_CLEAN);
		break;
	case CLAMD_INFECTED:
		scanner_count(r, CNT_INFECTED);
		break;
	case CLAMD_TOO_LARGE: {
		char q[LOG_QUOTE_SIZE(CONF_SCAN_ADDR_MAX)];

		scanner_count(r, CNT_TOO_LARGE);
		log_sid(LOG_LVL_WARN, r->sid,
		    "clamd size limit server=%s size=%llu: lower clamd-max-size to the server's "
		    "StreamMaxLength", log_quote_str(q, sizeof(q), r->server),
		    (unsigned long long)r->fed);
		break;
	}
	case CLAMD_ERROR:
	case CLAMD_UNAVAILABLE:
		scanner_count(r, CNT_SCAN_ERRORS);
		break;
	}
	return SCANNER_PARSE_DONE;
}

static bool
proto_refusal(const struct scanner_req *r)
{
	const struct clamd_scan *s = container_of(r, struct clamd_scan, req);

	return s->res.status == CLAMD_TOO_LARGE || s->res.status == CLAMD_ERROR;
}

static int
proto_pong(struct buf *in, bool eof)
{
	static const char pong[] = "PONG";
	const char *h = scanner_head(in);
	const char *nul = memchr(h, '\0', buf_len(in));

	if (nul == NULL)
		return buf_len(in) >= CLAMD_REPLY_MAX ? SCANNER_PARSE_BAD : SCANNER_PARSE_MORE;
	return (size_t)(nul - h) == strlen(pong) &&
	    memcmp(h, pong, strlen(pong)) == 0 ? SCANNER_PARSE_DONE : SCANNER_PARSE_BAD;
}

static void
proto_done(struct scanner_req *r, enum scanner_outcome o, const char *reason)
{
	struct clamd_scan *s = container_of(r, struct clamd_scan, req);

	switch (o) {
	case SCANNER_REPLY:
		break; /* res filled by proto_reply */
	case SCANNER_TOO_LARGE:
		s->res.status = CLAMD_TOO_LARGE;
		break;
	case SCANNER_ERROR:
		s->res.status = CLAMD_ERROR;
		break;
	case SCANNER_UNAVAILABLE:
		s->res.status = CLAMD_UNAVAILABLE;
		break;
	}
	if (o != SCANNER_REPLY)
		snprintf(s->res.reason, sizeof(s->res.reason), "%s", reason ? reason : "");
	s->res.server = r->server;
	s->res.size = r->fed;
	s->res.elapsed_ms = scanner_req_elapsed(r);
	s->done(s->arg, &s->res);
	free(s);
}

static void
proto_resume(struct scanner_req *r)
{
	struct clamd_scan *s = container_of(r, struct clamd_scan, req);

	if (s->resume)
		s->resume(s->arg);
}

static const struct scanner_proto clamd_proto = {
	.name = "clamd",
	.begin = proto_begin,
	.chunk = proto_chunk,
	.end = proto_end,
	.reply = proto_reply,
	.refusal = proto_refusal,
	.session_open = "zIDSESSION",
	.session_open_len = sizeof("zIDSESSION"), /* with its NUL */
	.ping = "zPING",
	.ping_len = sizeof("zPING"),
	.pong = proto_pong,
	.done = proto_done,
	.resume = proto_resume,
	.counters = clamd_counters,
	.ncounters = ARRAY_SIZE(clamd_counters),
};

/* ------------------------------------------------------------------ API */

struct clamd_pool *
clamd_pool_new_opts(const struct conf_scanners *sc, const struct scanner_opts *o)
{
	struct clamd_pool *p = xcalloc(1, sizeof(*p));

	p->sp = scanner_pool_new_opts(&clamd_proto, sc, o);
	return p;
}

struct clamd_pool *
clamd_pool_new(const struct conf_scanners *sc)
{
	struct scanner_opts o;

	scanner_opts_from_conf(&o, sc);
	return clamd_pool_new_opts(sc, &o);
}

void
clamd_pool_free(struct clamd_pool *p)
{
	if (p == NULL)
		return;
	scanner_pool_free(p->sp);
	free(p);
}

void
clamd_pool_status(const struct clamd_pool *p, FILE *f)
{
	scanner_pool_status(p->sp, "clamd", f);
}

struct clamd_scan *
clamd_scan_start(struct clamd_pool *p, uint64_t sid, clamd_done_fn *done, clamd_resume_fn *resume,
    void *arg)
{
	struct clamd_scan *s = xcalloc(1, sizeof(*s));

	s->done = done;
	s->resume = resume;
	s->arg = arg;
	scanner_req_start(p->sp, &s->req, sid);
	return s;
}

int
clamd_scan_feed(struct clamd_scan *s, const char *data, size_t len)
{
	return scanner_req_feed(&s->req, data, len);
}

void
clamd_scan_end(struct clamd_scan *s)
{
	scanner_req_end(&s->req);
}

void
clamd_scan_cancel(struct clamd_scan *s)
{
	if (s == NULL)
		return;
	scanner_req_cancel(&s->req);
	free(s);
}
