/*
 * rspamd - the /checkv2 request, the HTTP response reader, the JSON
 * mapping and the rspamd scanner pool (protocol notes in rspamd.h).
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <json-c/json_object_iterator.h>

#include "log.h"
#include "rspamd.h"
#include "util.h"

enum {
	CNT_NO_ACTION,
	CNT_GREYLIST,
	CNT_ADD_HEADER,
	CNT_REWRITE_SUBJECT,
	CNT_SOFT_REJECT,
	CNT_REJECT,
	CNT_OTHER,
	CNT_SCAN_ERRORS,
};

static const char *const rspamd_counters[] = {
	[CNT_NO_ACTION] = "no-action",
	[CNT_GREYLIST] = "greylist",
	[CNT_ADD_HEADER] = "add-header",
	[CNT_REWRITE_SUBJECT] = "rewrite-subject",
	[CNT_SOFT_REJECT] = "soft-reject",
	[CNT_REJECT] = "reject",
	[CNT_OTHER] = "other",
	[CNT_SCAN_ERRORS] = "scan-errors",
};

static const struct {
	const char *name;
	enum rspamd_action action;
	unsigned counter;
} actions[] = {
	{ "no action", RSPAMD_NO_ACTION, CNT_NO_ACTION },
	{ "greylist", RSPAMD_GREYLIST, CNT_GREYLIST },
	{ "add header", RSPAMD_ADD_HEADER, CNT_ADD_HEADER },
	{ "rewrite subject", RSPAMD_REWRITE_SUBJECT, CNT_REWRITE_SUBJECT },
	{ "soft reject", RSPAMD_SOFT_REJECT, CNT_SOFT_REJECT },
	{ "reject", RSPAMD_REJECT, CNT_REJECT },
	{ "discard", RSPAMD_DISCARD, CNT_OTHER },
	{ "quarantine", RSPAMD_QUARANTINE, CNT_OTHER },
};

struct rspamd_pool {
	struct scanner_pool *sp;
};

struct rspamd_scan {
	struct scanner_req req; /* first: the pool's part */
	struct rspamd_http http;
	struct buf head;        /* request line and headers, sent at every attempt */
	uint64_t size;          /* RSPAMD_SIZE_UNKNOWN: chunked */
	rspamd_done_fn *done;
	rspamd_resume_fn *resume;
	void *arg;
	struct rspamd_result res;
};

const char *
rspamd_status_name(enum rspamd_status st)
{
	switch (st) {
	case RSPAMD_CHECKED: return "checked";
	case RSPAMD_TOO_LARGE: return "too-large";
	case RSPAMD_ERROR: return "error";
	case RSPAMD_UNAVAILABLE: return "unavailable";
	}
	return "invalid";
}

const char *
rspamd_action_name(enum rspamd_action a)
{
	for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
		if (actions[i].action == a)
			return actions[i].name;
	return "invalid";
}

/* ------------------------------------------------------------- request */

/* "Name: value\r\n", the value one line of at most RSPAMD_ENV_VALUE_MAX octets. */
static int
put_header(struct buf *out, const char *name, const char *value)
{
	char line[RSPAMD_NAME_MAX + RSPAMD_ENV_VALUE_MAX + 8];
	size_t o = (size_t)snprintf(line, sizeof(line), "%s: ", name);

	for (size_t i = 0; value[i] != '\0' && i < RSPAMD_ENV_VALUE_MAX; i++) {
		unsigned char ch = (unsigned char)value[i];
		line[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	line[o++] = '\r';
	line[o++] = '\n';
	return buf_append(out, line, o);
}

int
rspamd_request_head(struct buf *out, const struct rspamd_envelope *env, uint64_t size)
{
	char num[32];
	size_t start = buf_len(out);
	int rc = 0;

	rc |= buf_append(out, "POST /checkv2 HTTP/1.1\r\n", 24);
	rc |= put_header(out, "Host", "rspamd");
	rc |= put_header(out, "User-Agent", "smtpgw");
	rc |= put_header(out, "Connection", "close");
	if (size == RSPAMD_SIZE_UNKNOWN) {
		rc |= put_header(out, "Transfer-Encoding", "chunked");
	} else {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
		rc |= put_header(out, "Content-Length", num);
	}
	if (env->client != NULL) {
		char ip[ADDR_STRLEN];

		rc |= put_header(out, "IP", addr_fmt_host(env->client, ip, sizeof(ip)));
	}
	if (env->helo != NULL && env->helo[0] != '\0')
		rc |= put_header(out, "Helo", env->helo);
	if (env->mail_from != NULL)
		rc |= put_header(out, "From", env->mail_from[0] != '\0' ? env->mail_from : "<>");
	for (int i = 0; i < env->nrcpts && i < RSPAMD_RCPTS_MAX; i++)
		rc |= put_header(out, "Rcpt", env->rcpts[i]);
	if (env->queue_id != NULL)
		rc |= put_header(out, "Queue-Id", env->queue_id);
	if (env->user != NULL)
		rc |= put_header(out, "User", env->user);
	if (env->tls_version != NULL)
		rc |= put_header(out, "TLS-Version", env->tls_version);
	if (env->tls_cipher != NULL)
		rc |= put_header(out, "TLS-Cipher", env->tls_cipher);
	if (env->hostname != NULL)
		rc |= put_header(out, "Hostname", env->hostname);
	if (env->settings_id != NULL)
		rc |= put_header(out, "Settings-ID", env->settings_id);
	if (env->mta_name != NULL)
		rc |= put_header(out, "MTA-Name", env->mta_name);
	rc |= buf_append(out, "\r\n", 2);
	if (rc != 0) {
		/* Never half a request: take back what was appended. */
		out->wpos = out->rpos + start;
		return -1;
	}
	return 0;
}

/* One chunk of a chunked body, all or nothing. */
static int
frame_chunk(struct buf *out, const char *p, size_t n)
{
	char size[24];
	int k;

	if (n == 0)
		return 0;
	k = snprintf(size, sizeof(size), "%zx\r\n", n);
	if (buf_room(out) < (size_t)k + n + 2)
		return -1;
	FATAL_IF(buf_append(out, size, (size_t)k) < 0 || buf_append(out, p, n) < 0 ||
	    buf_append(out, "\r\n", 2) < 0);
	return 0;
}

/* ------------------------------------------------------- HTTP response */

enum {
	ST_STATUS,
	ST_HEADERS,
	ST_BODY_LEN,
	ST_BODY_EOF,
	ST_CHUNK_SIZE,
	ST_CHUNK_DATA,
	ST_CHUNK_END,
	ST_TRAILERS,
	ST_DONE,
};

#define MAX_INTERIM 4

void
rspamd_http_init(struct rspamd_http *h)
{
	memset(h, 0, sizeof(*h));
	h->state = ST_STATUS;
	buf_init(&h->body, RSPAMD_REPLY_MAX);
}

void
rspamd_http_free(struct rspamd_http *h)
{
	buf_free(&h->body);
}

/*
 * One line out of in, without its LF or CRLF: 1 with line filled, 0 when
 * no whole line is there yet, -1 when it is longer than RSPAMD_LINE_MAX
 * or holds a NUL.
 */
static int
take_line(struct buf *in, char *line, size_t *n)
{
	size_t avail = buf_len(in), look = avail < RSPAMD_LINE_MAX + 2 ? avail : RSPAMD_LINE_MAX + 2;
	const char *h = scanner_head(in);
	const char *nl = memchr(h, '\n', look);
	size_t len;

	if (nl == NULL)
		return avail > RSPAMD_LINE_MAX + 1 ? -1 : 0;
	len = (size_t)(nl - h);
	if (len > 0 && h[len - 1] == '\r')
		len--;
	if (len > RSPAMD_LINE_MAX || memchr(h, '\0', len) != NULL)
		return -1;
	memcpy(line, h, len);
	line[len] = '\0';
	*n = len;
	buf_consume(in, (size_t)(nl - h) + 1);
	return 1;
}

static int
bad(char *why, size_t whylen, const char *what)
{
	snprintf(why, whylen, "%s", what);
	return SCANNER_PARSE_BAD;
}

static int
parse_status(struct rspamd_http *h, const char *line, size_t n, char *why, size_t whylen)
{
	/* "HTTP/1.x NNN[ reason]" */
	if (n < 12 || strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) ||
	    line[8] != ' ' || !isdigit((unsigned char)line[9]) ||
	    !isdigit((unsigned char)line[10]) || !isdigit((unsigned char)line[11]) ||
	    (n > 12 && line[12] != ' '))
		return bad(why, whylen, "malformed HTTP status line");
	h->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	if (h->status < 100)
		return bad(why, whylen, "malformed HTTP status code");
	h->state = ST_HEADERS;
	h->has_length = false;
	h->chunked = false;
	h->content_length = 0;
	return SCANNER_PARSE_MORE;
}

static char *
trim_ows(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

static int
parse_header(struct rspamd_http *h, char *line, char *why, size_t whylen)
{
	char *colon = strchr(line, ':'), *v;

	if (line[0] == ' ' || line[0] == '\t')
		return bad(why, whylen, "folded HTTP header");
	if (colon == NULL || colon == line)
		return bad(why, whylen, "malformed HTTP header");
	for (char *c = line; c < colon; c++)
		if (*c <= ' ' || *c >= 0x7f)
			return bad(why, whylen, "malformed HTTP header name");
	*colon = '\0';
	v = trim_ows(colon + 1);
	if (!strcasecmp(line, "Content-Length")) {
		uint64_t n = 0;
		size_t digits = strlen(v);

		if (digits == 0 || digits > 19 || strspn(v, "0123456789") != digits)
			return bad(why, whylen, "malformed Content-Length");
		for (size_t i = 0; i < digits; i++)
			n = n * 10 + (uint64_t)(v[i] - '0');
		if (h->has_length && h->content_length != n)
			return bad(why, whylen, "conflicting Content-Length headers");
		h->has_length = true;
		h->content_length = n;
	} else if (!strcasecmp(line, "Transfer-Encoding")) {
		if (strcasecmp(v, "chunked") != 0)
			return bad(why, whylen, "unsupported Transfer-Encoding");
		h->chunked = true;
	} else if (!strcasecmp(line, "Content-Encoding")) {
		/* We never ask for compression. */
		if (strcasecmp(v, "identity") != 0)
			return bad(why, whylen, "unsupported Content-Encoding");
	}
	return SCANNER_PARSE_MORE;
}

/* The blank line after the headers: what the body looks like. */
static int
headers_done(struct rspamd_http *h, char *why, size_t whylen)
{
	if (h->status >= 100 && h->status < 200) {
		if (++h->interim > MAX_INTERIM)
			return bad(why, whylen, "too many interim HTTP responses");
		h->state = ST_STATUS;
		return SCANNER_PARSE_MORE;
	}
	if (h->chunked && h->has_length)
		return bad(why, whylen, "both Content-Length and chunked");
	if (h->status == 204 || h->status == 304) {
		h->state = ST_DONE;
	} else if (h->chunked) {
		h->state = ST_CHUNK_SIZE;
	} else if (h->has_length) {
		if (h->content_length > RSPAMD_REPLY_MAX)
			return bad(why, whylen, "reply body too large");
		h->state = h->content_length == 0 ? ST_DONE : ST_BODY_LEN;
	} else {
		h->state = ST_BODY_EOF;
	}
	return h->state == ST_DONE ? SCANNER_PARSE_DONE : SCANNER_PARSE_MORE;
}

/* Move up to want octets of in into the body. */
static int
take_body(struct rspamd_http *h, struct buf *in, uint64_t want, size_t *took, char *why,
    size_t whylen)
{
	size_t n = buf_len(in);

	if ((uint64_t)n > want)
		n = (size_t)want;
	if (buf_append(&h->body, scanner_head(in), n) < 0)
		return bad(why, whylen, "reply body too large");
	buf_consume(in, n);
	*took = n;
	return SCANNER_PARSE_MORE;
}

int
rspamd_http_parse(struct rspamd_http *h, struct buf *in, bool eof, char *why, size_t whylen)
{
	char line[RSPAMD_LINE_MAX + 1];
	size_t n, took;
	int rc;

	for (;;) {
		switch (h->state) {
		case ST_DONE:
			return SCANNER_PARSE_DONE;
		case ST_STATUS:
		case ST_HEADERS:
		case ST_CHUNK_SIZE:
		case ST_CHUNK_END:
		case ST_TRAILERS:
			rc = take_line(in, line, &n);
			if (rc < 0)
				return bad(why, whylen, "HTTP line too long");
			if (rc == 0)
				return SCANNER_PARSE_MORE;
			if (h->state != ST_CHUNK_SIZE && h->state != ST_CHUNK_END) {
				h->head_bytes += n + 2;
				if (h->head_bytes > RSPAMD_HEAD_MAX)
					return bad(why, whylen, "HTTP headers too large");
			}
			break;
		case ST_BODY_LEN:
			if (buf_len(in) == 0)
				return SCANNER_PARSE_MORE;
			if (take_body(h, in, h->content_length - buf_len(&h->body), &took, why,
			    whylen) < 0)
				return SCANNER_PARSE_BAD;
			if (buf_len(&h->body) == h->content_length)
				h->state = ST_DONE;
			continue;
		case ST_BODY_EOF:
			if (buf_len(in) > 0 && take_body(h, in, UINT64_MAX, &took, why, whylen) < 0)
				return SCANNER_PARSE_BAD;
			if (!eof)
				return SCANNER_PARSE_MORE;
			h->state = ST_DONE;
			continue;
		case ST_CHUNK_DATA:
			if (buf_len(in) == 0)
				return SCANNER_PARSE_MORE;
			if (take_body(h, in, h->chunk_left, &took, why, whylen) < 0)
				return SCANNER_PARSE_BAD;
			h->chunk_left -= took;
			if (h->chunk_left == 0)
				h->state = ST_CHUNK_END;
			continue;
		default:
			return bad(why, whylen, "internal: bad HTTP parser state");
		}

		/* A whole line for a line state. */
		switch (h->state) {
		case ST_STATUS:
			if (n == 0 && h->interim > 0)
				continue; /* a blank line between responses */
			if (parse_status(h, line, n, why, whylen) < 0)
				return SCANNER_PARSE_BAD;
			break;
		case ST_HEADERS:
			rc = n == 0 ? headers_done(h, why, whylen) : parse_header(h, line, why, whylen);
			if (rc != SCANNER_PARSE_MORE)
				return rc;
			break;
		case ST_CHUNK_SIZE: {
			/* hex size, then optional ";extension" */
			size_t hex = strspn(line, "0123456789abcdefABCDEF");
			unsigned long long size;

			if (hex == 0 || hex > 8 || (line[hex] != '\0' && line[hex] != ';' &&
			    line[hex] != ' ' && line[hex] != '\t'))
				return bad(why, whylen, "malformed chunk size");
			size = strtoull(line, NULL, 16);
			if (size == 0) {
				h->state = ST_TRAILERS;
				break;
			}
			if (buf_len(&h->body) + size > RSPAMD_REPLY_MAX)
				return bad(why, whylen, "reply body too large");
			h->chunk_left = size;
			h->state = ST_CHUNK_DATA;
			break;
		}
		case ST_CHUNK_END:
			if (n != 0)
				return bad(why, whylen, "chunk without its CRLF");
			h->state = ST_CHUNK_SIZE;
			break;
		case ST_TRAILERS:
			if (n == 0) {
				h->state = ST_DONE;
				return SCANNER_PARSE_DONE;
			}
			break;
		default:
			break;
		}
	}
}

/* ------------------------------------------------------------------ JSON */

/*
 * src[0..n) as one line of text: a line break (CR, LF, with the blanks
 * after it: header folding) becomes one space, other controls and DEL
 * '?', and with ascii every octet above 0x7f too; cut to fit dstlen.
 */
static void
text_line(char *dst, size_t dstlen, const char *src, size_t n, bool ascii)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 1 < dstlen; i++) {
		unsigned char ch = (unsigned char)src[i];

		if (ch == '\r' || ch == '\n') {
			while (i + 1 < n && strchr("\r\n \t", src[i + 1]) != NULL && src[i + 1] != '\0')
				i++;
			dst[o++] = ' ';
			continue;
		}
		if (ch < 0x20 && ch != '\t')
			ch = '?';
		else if (ch == 0x7f || (ascii && ch >= 0x80))
			ch = '?';
		dst[o++] = (char)ch;
	}
	dst[o] = '\0';
}

/* A header field name: 1..RSPAMD_NAME_MAX-1 printable octets, no ':'. */
static bool
field_name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= RSPAMD_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':')
			return false;
	return true;
}

static bool
get_number(json_object *o, double *out)
{
	if (o == NULL || (!json_object_is_type(o, json_type_double) &&
	    !json_object_is_type(o, json_type_int)))
		return false;
	*out = json_object_get_double(o);
	return isfinite(*out);
}

/* Keep the RSPAMD_SYMBOLS_MAX highest scores, highest first. */
static void
keep_symbol(struct rspamd_result *res, const char *name, double score)
{
	unsigned i = res->nsymbols, last;

	res->symbols_total++;
	while (i > 0 && res->symbols[i - 1].score < score)
		i--;
	if (i >= RSPAMD_SYMBOLS_MAX)
		return;
	last = res->nsymbols < RSPAMD_SYMBOLS_MAX ? res->nsymbols : RSPAMD_SYMBOLS_MAX - 1;
	memmove(&res->symbols[i + 1], &res->symbols[i], (last - i) * sizeof(res->symbols[0]));
	text_line(res->symbols[i].name, sizeof(res->symbols[i].name), name, strlen(name), true);
	res->symbols[i].score = score;
	if (res->nsymbols < RSPAMD_SYMBOLS_MAX)
		res->nsymbols++;
}

static void
add_header(struct rspamd_result *res, const char *name, json_object *v)
{
	const char *value;
	size_t vlen;

	/* "value", {"value": "...", "order": N}, or an array of those */
	if (json_object_is_type(v, json_type_array)) {
		size_t n = json_object_array_length(v);

		for (size_t i = 0; i < n && i < RSPAMD_HEADERS_MAX; i++) {
			json_object *e = json_object_array_get_idx(v, i);

			if (e != NULL && !json_object_is_type(e, json_type_array))
				add_header(res, name, e);
		}
		return;
	}
	if (json_object_is_type(v, json_type_object)) {
		json_object *val;

		if (!json_object_object_get_ex(v, "value", &val))
			return;
		v = val;
	}
	if (!json_object_is_type(v, json_type_string) || res->nadd >= RSPAMD_HEADERS_MAX)
		return;
	if (!field_name_ok(name, strlen(name)))
		return;
	value = json_object_get_string(v);
	vlen = (size_t)json_object_get_string_len(v);
	snprintf(res->add[res->nadd].name, RSPAMD_NAME_MAX, "%s", name);
	text_line(res->add[res->nadd].value, RSPAMD_VALUE_MAX, value, vlen, false);
	res->nadd++;
}

/*
 * Every member of a JSON object, in order.  (json-c's own foreach macro
 * is a GNU statement expression; the iterator API is plain C.)
 */
#define FOREACH_MEMBER(obj, name, val, body) do {                                 \
		struct json_object_iterator it_ = json_object_iter_begin(obj);   \
		struct json_object_iterator end_ = json_object_iter_end(obj);    \
		while (!json_object_iter_equal(&it_, &end_)) {                   \
			const char *name = json_object_iter_peek_name(&it_);     \
			json_object *val = json_object_iter_peek_value(&it_);    \
			body                                                     \
			json_object_iter_next(&it_);                             \
		}                                                                \
	} while (0)

static void
map_milter(struct rspamd_result *res, json_object *milter)
{
	json_object *add, *rm;

	if (json_object_object_get_ex(milter, "add_headers", &add) &&
	    json_object_is_type(add, json_type_object))
		FOREACH_MEMBER(add, name, v, { add_header(res, name, v); });
	if (json_object_object_get_ex(milter, "remove_headers", &rm) &&
	    json_object_is_type(rm, json_type_object))
		FOREACH_MEMBER(rm, name, v, {
			(void)v;
			if (res->nremove < RSPAMD_HEADERS_MAX && field_name_ok(name, strlen(name)))
				snprintf(res->remove[res->nremove++], RSPAMD_NAME_MAX, "%s", name);
		});
}

int
rspamd_json_result(const char *json, size_t len, struct rspamd_result *res, char *why,
    size_t whylen)
{
	struct json_tokener *tok;
	json_object *root, *o;
	const char *action;
	int rc = -1;

	if (len > RSPAMD_REPLY_MAX) {
		snprintf(why, whylen, "reply too large");
		return -1;
	}
	tok = json_tokener_new_ex(RSPAMD_JSON_DEPTH);
	if (tok == NULL)
		fatal("json_tokener_new_ex: out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, json, (int)len);
	if (root == NULL || json_tokener_get_error(tok) != json_tokener_success) {
		snprintf(why, whylen, "reply is not JSON: %s",
		    root == NULL && json_tokener_get_error(tok) == json_tokener_continue
		    ? "truncated" : json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	/* Nothing but blanks may follow the value. */
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
		if (!isspace((unsigned char)json[i])) {
			snprintf(why, whylen, "reply has data after its JSON value");
			goto out;
		}
	}
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(why, whylen, "reply is not a JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(root, "action", &o) ||
	    !json_object_is_type(o, json_type_string)) {
		snprintf(why, whylen, "reply without an action");
		goto out;
	}
	action = json_object_get_string(o);
	size_t i;
	for (i = 0; i < ARRAY_SIZE(actions); i++)
		if (!strcmp(action, actions[i].name))
			break;
	if (i == ARRAY_SIZE(actions)) {
		char a[64];

		text_line(a, sizeof(a), action, strlen(action), true);
		snprintf(why, whylen, "unknown action \"%s\"", a);
		goto out;
	}
	res->action = actions[i].action;
	if (!json_object_object_get_ex(root, "score", &o) || !get_number(o, &res->score)) {
		snprintf(why, whylen, "reply without a score");
		goto out;
	}
	res->required_score = 0;
	if (json_object_object_get_ex(root, "required_score", &o) &&
	    !get_number(o, &res->required_score)) {
		snprintf(why, whylen, "required_score is not a number");
		goto out;
	}
	res->skipped = json_object_object_get_ex(root, "is_skipped", &o) &&
	    json_object_is_type(o, json_type_boolean) && json_object_get_boolean(o);
	if (json_object_object_get_ex(root, "symbols", &o) &&
	    json_object_is_type(o, json_type_object)) {
		FOREACH_MEMBER(o, name, sym, {
			json_object *sc;
			double score = 0;

			if (json_object_is_type(sym, json_type_object) &&
			    json_object_object_get_ex(sym, "score", &sc))
				(void)get_number(sc, &score);
			keep_symbol(res, name, score);
		});
	}
	if (json_object_object_get_ex(root, "subject", &o) &&
	    json_object_is_type(o, json_type_string)) {
		res->has_subject = true;
		text_line(res->subject, sizeof(res->subject), json_object_get_string(o),
		    (size_t)json_object_get_string_len(o), false);
	}
	if (json_object_object_get_ex(root, "milter", &o) && json_object_is_type(o, json_type_object))
		map_milter(res, o);
	if (json_object_object_get_ex(root, "messages", &o) &&
	    json_object_is_type(o, json_type_object)) {
		json_object *m;

		if (json_object_object_get_ex(o, "smtp_message", &m) &&
		    json_object_is_type(m, json_type_string))
			text_line(res->smtp_message, sizeof(res->smtp_message),
			    json_object_get_string(m), (size_t)json_object_get_string_len(m), true);
	}
	res->status = RSPAMD_CHECKED;
	rc = 0;
out:
	if (root != NULL)
		json_object_put(root);
	json_tokener_free(tok);
	return rc;
}

/* The "error" member of an error reply, if there is one. */
static void
json_error_text(const char *json, size_t len, char *dst, size_t dstlen)
{
	struct json_tokener *tok = json_tokener_new_ex(RSPAMD_JSON_DEPTH);
	json_object *root, *e;

	dst[0] = '\0';
	if (tok == NULL)
		fatal("json_tokener_new_ex: out of memory");
	root = json_tokener_parse_ex(tok, json, (int)len);
	if (root != NULL && json_object_is_type(root, json_type_object) &&
	    json_object_object_get_ex(root, "error", &e) && json_object_is_type(e, json_type_string))
		text_line(dst, dstlen, json_object_get_string(e),
		    (size_t)json_object_get_string_len(e), true);
	if (root != NULL)
		json_object_put(root);
	json_tokener_free(tok);
}

/* -------------------------------------------------------------- protocol */

static int
proto_begin(struct scanner_req *r, struct buf *out)
{
	struct rspamd_scan *s = container_of(r, struct rspamd_scan, req);

	/* A new attempt reads a new response. */
	rspamd_http_free(&s->http);
	rspamd_http_init(&s->http);
	return buf_append(out, buf_head(&s->head), buf_len(&s->head));
}

static int
proto_chunk(struct scanner_req *r, struct buf *out, const char *p, size_t n)
{
	struct rspamd_scan *s = container_of(r, struct rspamd_scan, req);

	if (s->size != RSPAMD_SIZE_UNKNOWN)
		return buf_append(out, p, n);
	return frame_chunk(out, p, n);
}

static int
proto_end(struct scanner_req *r, struct buf *out)
{
	struct rspamd_scan *s = container_of(r, struct rspamd_scan, req);

	if (s->size != RSPAMD_SIZE_UNKNOWN)
		return 0;
	return buf_append(out, "0\r\n\r\n", 5);
}

static int
proto_reply(struct scanner_req *r, struct buf *in, unsigned seq, bool eof, char *why,
    size_t whylen)
{
	struct rspamd_scan *s = container_of(r, struct rspamd_scan, req);
	struct rspamd_result *res = &s->res;
	int rc = rspamd_http_parse(&s->http, in, eof, why, whylen);

	if (rc != SCANNER_PARSE_DONE)
		return rc;
	if (s->http.status != 200) {
		char err[SCANNER_ERROR_MAX];

		json_error_text(scanner_head(&s->http.body), buf_len(&s->http.body), err, sizeof(err));
		res->status = RSPAMD_ERROR;
		snprintf(res->reason, sizeof(res->reason), "rspamd: HTTP %d%s%s", s->http.status,
		    err[0] ? ": " : "", err);
		scanner_count(r, CNT_SCAN_ERRORS);
		return SCANNER_PARSE_DONE;
	}
	if (rspamd_json_result(scanner_head(&s->http.body), buf_len(&s->http.body), res,
	    res->reason, sizeof(res->reason)) < 0) {
		char tmp[SCANNER_ERROR_MAX];

		snprintf(tmp, sizeof(tmp), "rspamd: %.150s", res->reason);
		memcpy(res->reason, tmp, sizeof(tmp));
		res->status = RSPAMD_ERROR;
		scanner_count(r, CNT_SCAN_ERRORS);
		return SCANNER_PARSE_DONE;
	}
	for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
		if (actions[i].action == res->action)
			scanner_count(r, actions[i].counter);
	return SCANNER_PARSE_DONE;
}

static bool
proto_refusal(const struct scanner_req *r)
{
	const struct rspamd_scan *s = container_of(r, struct rspamd_scan, req);

	return s->res.status != RSPAMD_CHECKED;
}

/* Healthy: a complete "HTTP/1.x 200" status and headers. */
static int
proto_pong(struct buf *in, bool eof)
{
	const char *h = scanner_head(in);
	size_t n = buf_len(in) < RSPAMD_LINE_MAX ? buf_len(in) : RSPAMD_LINE_MAX;
	bool end = false;

	for (size_t i = 0; i + 1 < n && !end; i++)
		end = (h[i] == '\n' && h[i + 1] == '\n') ||
		    (i + 3 < n && !memcmp(h + i, "\r\n\r\n", 4));
	if (!end)
		return buf_len(in) >= RSPAMD_LINE_MAX ? SCANNER_PARSE_BAD : SCANNER_PARSE_MORE;
	return n >= 12 && !strncmp(h, "HTTP/1.", 7) && !strncmp(h + 8, " 200", 4)
	    ? SCANNER_PARSE_DONE : SCANNER_PARSE_BAD;
}

static void
proto_done(struct scanner_req *r, enum scanner_outcome o, const char *reason)
{
	struct rspamd_scan *s = container_of(r, struct rspamd_scan, req);

	switch (o) {
	case SCANNER_REPLY:
		break; /* res filled by proto_reply */
	case SCANNER_TOO_LARGE:
		s->res.status = RSPAMD_TOO_LARGE;
		break;
	case SCANNER_ERROR:
		s->res.status = RSPAMD_ERROR;
		break;
	case SCANNER_UNAVAILABLE:
		s->res.status = RSPAMD_UNAVAILABLE;
		break;
	}
	if (o != SCANNER_REPLY)
		snprintf(s->res.reason, sizeof(s->res.reason), "%s", reason ? reason : "");
	s->res.server = r->server;
	s->res.size = r->fed;
	s->res.elapsed_ms = scanner_req_elapsed(r);
	s->done(s->arg, &s->res);
	rspamd_http_free(&s->http);
	buf_free(&s->head);
	free(s);
}

static void
proto_resume(struct scanner_req *r)
{
	struct rspamd_scan *s = container_of(r, struct rspamd_scan, req);

	if (s->resume)
		s->resume(s->arg);
}

static const char ping_request[] = "GET /ping HTTP/1.0\r\nHost: rspamd\r\n\r\n";

static const struct scanner_proto rspamd_proto = {
	.name = "rspamd",
	.begin = proto_begin,
	.chunk = proto_chunk,
	.end = proto_end,
	.reply = proto_reply,
	.refusal = proto_refusal,
	.session_open = NULL, /* rspamd closes after every reply */
	.ping = ping_request,
	.ping_len = sizeof(ping_request) - 1,
	.pong = proto_pong,
	.done = proto_done,
	.resume = proto_resume,
	.counters = rspamd_counters,
	.ncounters = ARRAY_SIZE(rspamd_counters),
};

/* ------------------------------------------------------------------ API */

struct rspamd_pool *
rspamd_pool_new_opts(const struct conf_scanners *sc, const struct scanner_opts *o)
{
	struct rspamd_pool *p = xcalloc(1, sizeof(*p));
	struct scanner_opts mine = *o;

	mine.idle_ms = 0;
	p->sp = scanner_pool_new_opts(&rspamd_proto, sc, &mine);
	return p;
}

struct rspamd_pool *
rspamd_pool_new(const struct conf_scanners *sc)
{
	struct scanner_opts o;

	scanner_opts_from_conf(&o, sc);
	return rspamd_pool_new_opts(sc, &o);
}

void
rspamd_pool_free(struct rspamd_pool *p)
{
	if (p == NULL)
		return;
	scanner_pool_free(p->sp);
	free(p);
}

void
rspamd_pool_status(const struct rspamd_pool *p, FILE *f)
{
	scanner_pool_status(p->sp, "rspamd", f);
}

/*
 * The request head is at most: the fixed headers, plus one line of at
 * most RSPAMD_ENV_VALUE_MAX + 16 octets per envelope value.
 */
static size_t
head_max(const struct rspamd_envelope *env)
{
	int nrcpts = env->nrcpts < RSPAMD_RCPTS_MAX ? env->nrcpts : RSPAMD_RCPTS_MAX;

	return 1024 + (size_t)(12 + (nrcpts > 0 ? nrcpts : 0)) * (RSPAMD_ENV_VALUE_MAX + 16);
}

struct rspamd_scan *
rspamd_scan_start(struct rspamd_pool *p, uint64_t sid, const struct rspamd_envelope *env,
    uint64_t size, rspamd_done_fn *done, rspamd_resume_fn *resume, void *arg)
{
	struct rspamd_scan *s = xcalloc(1, sizeof(*s));

	s->done = done;
	s->resume = resume;
	s->arg = arg;
	s->size = size;
	rspamd_http_init(&s->http);
	buf_init(&s->head, head_max(env));
	/* Sized for its worst case: it always fits. */
	FATAL_IF(rspamd_request_head(&s->head, env, size) < 0);
	scanner_req_start(p->sp, &s->req, sid);
	if (size != RSPAMD_SIZE_UNKNOWN && size > scanner_pool_max_size(p->sp)) {
		char why[SCANNER_ERROR_MAX];

		snprintf(why, sizeof(why), "message larger than %llu octets",
		    (unsigned long long)scanner_pool_max_size(p->sp));
		scanner_req_fail(&s->req, SCANNER_TOO_LARGE, why);
	}
	return s;
}

int
rspamd_scan_feed(struct rspamd_scan *s, const char *data, size_t len)
{
	if (s->size != RSPAMD_SIZE_UNKNOWN && (len > s->size || s->req.fed > s->size - len)) {
		scanner_req_fail(&s->req, SCANNER_ERROR, "fed more octets than announced");
		return SCANNER_FEED_DONE;
	}
	return scanner_req_feed(&s->req, data, len);
}

void
rspamd_scan_end(struct rspamd_scan *s)
{
	if (s->size != RSPAMD_SIZE_UNKNOWN && s->req.fed != s->size) {
		scanner_req_fail(&s->req, SCANNER_ERROR, "fed fewer octets than announced");
		return;
	}
	scanner_req_end(&s->req);
}

void
rspamd_scan_cancel(struct rspamd_scan *s)
{
	if (s == NULL)
		return;
	scanner_req_cancel(&s->req);
	rspamd_http_free(&s->http);
	buf_free(&s->head);
	free(s);
}
