/*
 * mime - streaming MIME parser.  See mime.h for the events, the byte
 * ranges and the anomaly classes.
 *
 * How the input is walked: the open parts form a stack (part 0 at the
 * bottom, the innermost open part on top).  Only the top part consumes
 * octets, in one of three ways: a header section (line by line into a
 * bounded field buffer), a leaf body (decoded in long runs), or a
 * multipart's preamble/epilogue (skipped in long runs).  A line that
 * starts with '-' at the start of a line, while some multipart is open, may
 * be a delimiter: it is collected (at most MIME_CARRY_MAX octets) and
 * compared with the boundaries of every open multipart, innermost first.
 * Everything else goes through without being looked at twice: body runs
 * end only where "\n-" occurs, found with memchr.
 *
 * The line end before a delimiter belongs to the delimiter (RFC 2046
 * 5.1.1), so a leaf holds back the line end of its last line (held[])
 * until it knows the next line is not a delimiter.
 *
 * Why one file of this size: one state machine whose states (the part
 * stack, delimiter collection, header fields, leaf decoding) share the
 * stack and its invariants; split, they would be checked across files.
 */
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "mime.h"
#include "util.h"

const struct mime_limits mime_default_limits = {
	.max_depth = 16,
	.max_parts = 1000,
	.max_field = 8192,
	.max_header = 262144,
};

#define A MIME_CLASS_AMBIGUOUS
#define M MIME_CLASS_MALFORMED
#define L MIME_CLASS_LIMIT
static const struct {
	const char *name;
	enum mime_class cls;
	const char *text;
} anomaly_tab[MIME_A_COUNT] = {
	[MIME_A_CT_DUP] = { "ct-dup", A, "two Content-Type fields" },
	[MIME_A_CTE_DUP] = { "cte-dup", A, "two Content-Transfer-Encoding fields" },
	[MIME_A_CD_DUP] = { "cd-dup", A, "two Content-Disposition fields" },
	[MIME_A_CT_SYNTAX] = { "ct-syntax", A, "Content-Type is not type/subtype" },
	[MIME_A_BOUNDARY_DUP] = { "boundary-dup", A, "two boundary parameters" },
	[MIME_A_BOUNDARY_QUOTE] = { "boundary-quote", A, "boundary with odd quoting" },
	[MIME_A_BOUNDARY_DASHES] = { "boundary-dashes", A, "boundary ends in --" },
	[MIME_A_BOUNDARY_SPACE] = { "boundary-space", A, "boundary ends in a space" },
	[MIME_A_BOUNDARY_CHARS] = { "boundary-chars", A, "boundary with invalid characters" },
	[MIME_A_BOUNDARY_PREFIX] = { "boundary-prefix", A,
		"nested boundary is a prefix of an enclosing one" },
	[MIME_A_BOUNDARY_MISSING] = { "boundary-missing", A, "multipart without a boundary" },
	[MIME_A_DELIM_WSP] = { "delimiter-space", A, "delimiter followed by whitespace" },
	[MIME_A_DELIM_JUNK] = { "delimiter-junk", A, "delimiter followed by other text" },
	[MIME_A_DELIM_AFTER_CLOSE] = { "delimiter-after-close", A,
		"delimiter after the close delimiter" },
	[MIME_A_NO_CLOSE] = { "no-close-delimiter", A, "multipart without its close delimiter" },
	[MIME_A_HDR_NO_COLON] = { "header-no-colon", A,
		"part header line without a colon (missing blank line)" },
	[MIME_A_HDR_DELIM] = { "header-delimiter", A, "delimiter inside a part header" },
	[MIME_A_HDR_WSP_LINE] = { "header-blank-continuation", A,
		"whitespace-only line in a header" },
	[MIME_A_HDR_WSP_COLON] = { "header-space-colon", A, "whitespace before the colon" },
	[MIME_A_HDR_8BIT] = { "header-8bit", A, "8-bit octets in a field name" },
	[MIME_A_HDR_NUL] = { "header-nul", A, "NUL in a header" },
	[MIME_A_BARE_CR] = { "bare-cr", A, "CR without LF in a header or delimiter" },
	[MIME_A_BARE_LF] = { "bare-lf", A, "LF without CR in a header or delimiter" },
	[MIME_A_COMMENT] = { "comment", A, "comment in a MIME field" },
	[MIME_A_PARAM] = { "param", A, "duplicate or badly quoted MIME parameter" },
	[MIME_A_NAME_CONFLICT] = { "name-conflict", A, "part names two different files" },
	[MIME_A_NAME_NUL] = { "name-nul", A, "file name holds a NUL" },
	[MIME_A_CTE_UNKNOWN] = { "cte-unknown", A, "unknown transfer encoding" },
	[MIME_A_CTE_COMPOSITE] = { "cte-composite", A, "encoded multipart or message" },
	[MIME_A_B64_BAD] = { "base64-bad", A, "invalid base64" },
	[MIME_A_QP_BAD] = { "qp-bad", A, "invalid quoted-printable escape" },
	[MIME_A_PARTIAL] = { "message-partial", A, "message/partial" },
	[MIME_A_NO_MIME_VERSION] = { "no-mime-version", M, "MIME fields without MIME-Version" },
	[MIME_A_HDR_SYNTAX] = { "header-syntax", M, "invalid field name" },
	[MIME_A_HDR_UTF8] = { "header-8bit-value", M, "8-bit text in a header value" },
	[MIME_A_HDR_UNTERMINATED] = { "header-unterminated", M,
		"part header ends with the message" },
	[MIME_A_BOUNDARY_LONG] = { "boundary-long", M, "boundary longer than 70" },
	[MIME_A_8BIT_BODY] = { "body-8bit", M, "8-bit data in a 7bit body" },
	[MIME_A_NUL_BODY] = { "body-nul", M, "NUL in a text body" },
	[MIME_A_B64_PARTIAL] = { "base64-partial", M, "base64 ends inside a group" },
	[MIME_A_QP_SLOPPY] = { "qp-sloppy", M, "sloppy quoted-printable" },
	[MIME_A_PARAM_SLOPPY] = { "param-sloppy", M, "sloppy MIME parameter" },
	[MIME_A_ENCODED_WORD] = { "encoded-word", M, "malformed encoded word in a name" },
	[MIME_L_DEPTH] = { "limit-depth", L, "nesting too deep" },
	[MIME_L_PARTS] = { "limit-parts", L, "too many parts" },
	[MIME_L_FIELD] = { "limit-field", L, "header field too long" },
	[MIME_L_HEADER] = { "limit-header", L, "header section too long" },
	[MIME_L_BOUNDARY] = { "limit-boundary", L, "boundary too long" },
	[MIME_L_PARAMS] = { "limit-params", L, "too many or too long MIME parameters" },
	[MIME_L_NAME] = { "limit-name", L, "file name too long or too many names" },
};
#undef A
#undef M
#undef L

enum ent_state {
	ENT_HEADERS,  /* reading the header section (only ever on top) */
	ENT_LEAF,     /* decoding the body */
	ENT_PREAMBLE, /* multipart before its first delimiter */
	ENT_PARTS,    /* multipart with a child part open */
	ENT_EPILOGUE, /* multipart after its close delimiter */
	ENT_MESSAGE,  /* message/rfc822 with its message open as child */
};

/* One open part. */
struct ent {
	struct mime_part part;
	enum ent_state state;
	bool bounded; /* a multipart whose boundary is compared (counted in nbound) */
	size_t blen;
	char boundary[MIME_BOUNDARY_MAX + 1];
	uint64_t hdr_bytes;
	bool body_nul, body_8bit; /* seen in a 7bit/8bit body: reported at its end */
	uint64_t want;            /* decoded octets the caller still wants (mime_want) */
	bool skipped;             /* body octets were left undecoded */
	struct decode_b64 b64;
	struct decode_qp qp;
};

enum hstate {
	H_LINE_START, /* at the start of a header line */
	H_CR_START,   /* a CR at the start of a line: blank line if LF follows */
	H_IN_LINE,
};

/* Header-section scratch: only the top part reads a header section. */
#define SEEN_CT 0x1u
#define SEEN_CTE 0x2u
#define SEEN_CD 0x4u
#define SEEN_MV 0x8u
enum { HN_FILENAME_X, HN_FILENAME, HN_NAME_X, HN_NAME, HN_COUNT };

struct mime_parser {
	struct mime_limits lim;
	mime_cb *cb;
	void *arg;

	struct ent *ents; /* lim.max_depth + 1 */
	unsigned nents;
	unsigned nparts;
	unsigned nbound;
	bool opaque;   /* the parts limit was hit: the rest is only counted */
	bool finished;
	uint64_t off;  /* octets fed so far */
	uint64_t anomalies;

	/* the last two octets consumed, and whether the next starts a line */
	bool bol;
	unsigned char last1, last2;

	/* a line that may be a delimiter, collected across pieces */
	size_t ncarry;
	uint64_t carry_off;
	char carry[MIME_CARRY_MAX];

	/* the top leaf's last line end, held until the next line is known */
	unsigned nheld;
	char held[2];

	/* header section */
	enum hstate hstate;
	bool factive;   /* a field is being collected */
	bool ftrunc;
	bool fcont;     /* the current line is a continuation line */
	bool fwsp;      /* ... and holds only whitespace so far */
	bool fcr;       /* the last octet of the current line was a CR */
	bool hany;      /* the section had a line */
	size_t nfield;
	uint64_t foff;
	char *field;    /* lim.max_field + 1 */
	unsigned seen;  /* SEEN_* */
	bool hbound_set;
	size_t hblen;   /* may exceed MIME_BOUNDARY_MAX: then too long */
	char hbound[MIME_BOUNDARY_MAX + 1];
	size_t hnlen[HN_COUNT]; /* 0: unset */
	bool hnset[HN_COUNT];
	char hn[HN_COUNT][MIME_NAME_MAX];
	char *store;    /* decode_field values */
	size_t storesz;

	size_t nout;
	unsigned char out[MIME_OUT_SIZE];
};

/* ---- small helpers ----------------------------------------------------- */

enum mime_class
mime_anomaly_class(enum mime_anomaly a)
{
	return a < MIME_A_COUNT ? anomaly_tab[a].cls : MIME_CLASS_MALFORMED;
}

const char *
mime_anomaly_name(enum mime_anomaly a)
{
	return a < MIME_A_COUNT ? anomaly_tab[a].name : "?";
}

const char *
mime_anomaly_text(enum mime_anomaly a)
{
	return a < MIME_A_COUNT ? anomaly_tab[a].text : "?";
}

uint64_t
mime_class_mask(enum mime_class c)
{
	uint64_t m = 0;

	for (unsigned i = 0; i < MIME_A_COUNT; i++)
		if (anomaly_tab[i].cls == c)
			m |= 1ull << i;
	return m;
}

const char *
mime_cte_name(enum mime_cte c)
{
	static const char *const names[] = { "7bit", "8bit", "binary", "quoted-printable",
		"base64", "unknown" };

	return (unsigned)c < ARRAY_SIZE(names) ? names[c] : "?";
}

uint64_t
mime_anomalies(const struct mime_parser *p)
{
	return p->anomalies;
}

uint64_t
mime_offset(const struct mime_parser *p)
{
	return p->off;
}

static struct ent *
top(struct mime_parser *p)
{
	FATAL_IF(p->nents == 0);
	return &p->ents[p->nents - 1];
}

static void
anomaly(struct mime_parser *p, struct ent *e, enum mime_anomaly a, uint64_t off)
{
	uint64_t bit = 1ull << a;
	struct mime_event ev;

	p->anomalies |= bit;
	if (e->part.anomalies & bit)
		return; /* once per part and code: a hostile part cannot flood */
	e->part.anomalies |= bit;
	memset(&ev, 0, sizeof(ev));
	ev.kind = MIME_EV_ANOMALY;
	ev.part = &e->part;
	ev.anomaly = a;
	ev.off = off;
	p->cb(p->arg, &ev);
}

static void
emit_part(struct mime_parser *p, struct ent *e, enum mime_event_kind kind)
{
	struct mime_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = kind;
	ev.part = &e->part;
	ev.off = kind == MIME_EV_PART_END ? e->part.off_end : e->part.off_start;
	p->cb(p->arg, &ev);
}

static void
emit_body(struct mime_parser *p, struct ent *e, const void *data, size_t len)
{
	struct mime_event ev;

	if (len == 0)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.kind = MIME_EV_BODY;
	ev.part = &e->part;
	ev.data = data;
	ev.len = len;
	p->cb(p->arg, &ev);
}

static void
out_flush(struct mime_parser *p, struct ent *e)
{
	if (p->nout) {
		emit_body(p, e, p->out, p->nout);
		p->nout = 0;
	}
}

/* Bookkeeping for every octet run consumed, in order. */
static void
consumed(struct mime_parser *p, const char *s, size_t n)
{
	if (n == 0)
		return;
	p->last2 = n >= 2 ? (unsigned char)s[n - 2] : p->last1;
	p->last1 = (unsigned char)s[n - 1];
	p->bol = s[n - 1] == '\n';
}

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool
ieq(const char *a, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

/* Whether p[0..n) holds an octet >= 0x80, eight at a time. */
static bool
has_8bit(const char *p, size_t n)
{
	uint64_t acc = 0, w;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		acc |= w;
	}
	for (; i < n; i++)
		acc |= (unsigned char)p[i];
	return (acc & 0x8080808080808080ull) != 0;
}

/* ---- parts ------------------------------------------------------------- */

static void
hscratch_reset(struct mime_parser *p)
{
	p->hstate = H_LINE_START;
	p->factive = false;
	p->hany = false;
	p->nfield = 0;
	p->seen = 0;
	p->hbound_set = false;
	p->hblen = 0;
	for (unsigned i = 0; i < HN_COUNT; i++) {
		p->hnset[i] = false;
		p->hnlen[i] = 0;
	}
}

/* A new part on top of the stack, reading its header section at off. */
static bool
push_part(struct mime_parser *p, uint64_t off)
{
	struct ent *parent = p->nents ? top(p) : NULL;
	struct ent *e;

	if (p->nparts >= p->lim.max_parts) {
		anomaly(p, parent ? parent : &p->ents[0], MIME_L_PARTS, off);
		p->opaque = true;
		return false;
	}
	FATAL_IF(p->nents > p->lim.max_depth);
	e = &p->ents[p->nents++];
	memset(&e->part, 0, sizeof(e->part));
	e->part.index = p->nparts++;
	e->part.parent = parent ? parent->part.index : 0;
	e->part.depth = parent ? parent->part.depth + 1 : 0;
	e->part.off_start = e->part.off_body = e->part.off_end = off;
	/* RFC 2046 5.1.5: parts of a digest are messages by default */
	if (parent && strcmp(parent->part.type, "multipart/digest") == 0)
		memcpy(e->part.type, "message/rfc822", sizeof("message/rfc822"));
	else
		memcpy(e->part.type, "text/plain", sizeof("text/plain"));
	e->state = ENT_HEADERS;
	e->bounded = false;
	e->blen = 0;
	e->hdr_bytes = 0;
	hscratch_reset(p);
	return true;
}

static void
add_name(struct mime_parser *p, struct ent *e, const char *name, size_t len)
{
	struct mime_part *pt = &e->part;

	if (len == 0)
		return;
	if (len >= MIME_NAME_MAX) {
		len = MIME_NAME_MAX - 1; /* already cut at a character boundary */
		anomaly(p, e, MIME_L_NAME, pt->off_start);
	}
	for (unsigned i = 0; i < pt->nnames; i++)
		if (strlen(pt->names[i]) == len && memcmp(pt->names[i], name, len) == 0)
			return;
	if (pt->nnames == MIME_NAMES_MAX) {
		anomaly(p, e, MIME_L_NAME, pt->off_start);
		return;
	}
	memcpy(pt->names[pt->nnames], name, len);
	pt->names[pt->nnames][len] = '\0';
	pt->nnames++;
}

/*
 * The names the header section gave, preferred first.  A NUL inside a
 * name is read two ways (cut there, or dropped), and both are reported.
 */
static void
collect_names(struct mime_parser *p, struct ent *e)
{
	const char *first = NULL;
	size_t firstlen = 0;

	for (unsigned i = 0; i < HN_COUNT; i++) {
		const char *n = p->hn[i];
		size_t len = p->hnlen[i];
		const char *nul;

		if (!p->hnset[i] || len == 0)
			continue;
		if (first == NULL) {
			first = n;
			firstlen = len;
		} else if (len != firstlen || memcmp(n, first, len) != 0) {
			anomaly(p, e, MIME_A_NAME_CONFLICT, e->part.off_start);
		}
		nul = memchr(n, '\0', len);
		if (nul == NULL) {
			add_name(p, e, n, len);
			continue;
		}
		char dropped[MIME_NAME_MAX];
		size_t k = 0;

		anomaly(p, e, MIME_A_NAME_NUL, e->part.off_start);
		add_name(p, e, n, (size_t)(nul - n));
		for (size_t j = 0; j < len; j++)
			if (n[j] != '\0')
				dropped[k++] = n[j];
		add_name(p, e, dropped, k);
	}
}

static bool
bchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    strchr("'()+_,-./:=? ", c) != NULL;
}

/*
 * Is the declared boundary usable, and does it invite two readings?
 * Returns false when the multipart must be treated as one opaque leaf.
 */
static bool
boundary_check(struct mime_parser *p, struct ent *e)
{
	const char *b = p->hbound;
	size_t n = p->hblen;

	if (!p->hbound_set || n == 0) {
		anomaly(p, e, MIME_A_BOUNDARY_MISSING, e->part.off_start);
		return false;
	}
	if (n > MIME_BOUNDARY_MAX) {
		anomaly(p, e, MIME_L_BOUNDARY, e->part.off_start);
		return false;
	}
	if (n > 70)
		anomaly(p, e, MIME_A_BOUNDARY_LONG, e->part.off_start);
	if (b[n - 1] == ' ')
		anomaly(p, e, MIME_A_BOUNDARY_SPACE, e->part.off_start);
	if (n >= 2 && b[n - 1] == '-' && b[n - 2] == '-')
		anomaly(p, e, MIME_A_BOUNDARY_DASHES, e->part.off_start);
	for (size_t i = 0; i < n; i++) {
		if (!bchar((unsigned char)b[i])) {
			anomaly(p, e, MIME_A_BOUNDARY_CHARS, e->part.off_start);
			break;
		}
	}
	for (unsigned k = 0; k + 1 < p->nents; k++) {
		const struct ent *o = &p->ents[k];
		size_t m = o->blen < n ? o->blen : n;

		if (o->bounded && memcmp(o->boundary, b, m) == 0) {
			anomaly(p, e, MIME_A_BOUNDARY_PREFIX, e->part.off_start);
			break;
		}
	}
	return true;
}

static bool
identity_cte(enum mime_cte c)
{
	return c == MIME_CTE_7BIT || c == MIME_CTE_8BIT || c == MIME_CTE_BINARY;
}

/*
 * The header section of the top part is complete (closing: the part ends
 * right here, so it cannot become a container).  Decide what the body is,
 * announce the part, and set up its reading.
 */
static void
headers_done(struct mime_parser *p, bool closing)
{
	struct ent *e = top(p);
	struct mime_part *pt = &e->part;
	const struct ent *parent = p->nents >= 2 ? &p->ents[p->nents - 2] : NULL;
	bool is_message_part = parent == NULL || parent->state == ENT_MESSAGE;
	enum { LEAF, MULTI, MESSAGE } kind = LEAF;

	collect_names(p, e);
	if (is_message_part && (p->seen & (SEEN_CT | SEEN_CTE | SEEN_CD)) &&
	    !(p->seen & SEEN_MV))
		anomaly(p, e, MIME_A_NO_MIME_VERSION, pt->off_start);

	if (strncmp(pt->type, "multipart/", 10) == 0) {
		if (!boundary_check(p, e)) {
			kind = LEAF;
		} else if (!identity_cte(pt->cte)) {
			anomaly(p, e, MIME_A_CTE_COMPOSITE, pt->off_start);
		} else if (pt->depth + 1 > p->lim.max_depth) {
			anomaly(p, e, MIME_L_DEPTH, pt->off_start);
		} else {
			kind = MULTI;
		}
	} else if (strcmp(pt->type, "message/rfc822") == 0 ||
	    strcmp(pt->type, "message/global") == 0 ||
	    /* an attached message to Thunderbird (and RFC 1036's readers), parts and all */
	    strcmp(pt->type, "message/news") == 0) {
		if (!identity_cte(pt->cte))
			anomaly(p, e, MIME_A_CTE_COMPOSITE, pt->off_start);
		else if (pt->depth + 1 > p->lim.max_depth)
			anomaly(p, e, MIME_L_DEPTH, pt->off_start);
		else
			kind = MESSAGE;
	} else if (strcmp(pt->type, "message/partial") == 0) {
		anomaly(p, e, MIME_A_PARTIAL, pt->off_start);
	}
	if (closing)
		kind = LEAF;

	if (kind == MULTI) {
		pt->multipart = true;
		memcpy(e->boundary, p->hbound, p->hblen);
		e->boundary[p->hblen] = '\0';
		e->blen = p->hblen;
		e->bounded = true;
		p->nbound++;
		e->state = ENT_PREAMBLE;
		emit_part(p, e, MIME_EV_PART_BEGIN);
	} else if (kind == MESSAGE) {
		pt->message = true;
		e->state = ENT_MESSAGE;
		emit_part(p, e, MIME_EV_PART_BEGIN);
		push_part(p, pt->off_body);
	} else {
		e->state = ENT_LEAF;
		e->body_nul = e->body_8bit = false;
		e->want = UINT64_MAX;
		e->skipped = false;
		decode_b64_init(&e->b64);
		decode_qp_init(&e->qp);
		p->nheld = 0;
		p->nout = 0;
		emit_part(p, e, MIME_EV_PART_BEGIN);
	}
}

/* ---- MIME fields ------------------------------------------------------- */

/* Anomalies of a field's parameter syntax, from a set of DECODE_P_* flags. */
static void
param_flags(struct mime_parser *p, struct ent *e, unsigned fl, uint64_t off)
{
	if (fl & DECODE_P_COMMENT)
		anomaly(p, e, MIME_A_COMMENT, off);
	if (fl & (DECODE_P_DUP | DECODE_P_ESCAPE | DECODE_P_UNTERMINATED | DECODE_P_JUNK |
	    DECODE_P_2231_GAP | DECODE_P_NUL))
		anomaly(p, e, MIME_A_PARAM, off);
	if (fl & (DECODE_P_TOO_MANY | DECODE_P_TRUNCATED))
		anomaly(p, e, MIME_L_PARAMS, off);
	if (fl & (DECODE_P_SYNTAX | DECODE_P_LOOSE | DECODE_P_2231_CHARSET | DECODE_P_CHARSET))
		anomaly(p, e, MIME_A_PARAM_SLOPPY, off);
}

/*
 * The field-wide flags plus those of every parameter but the named one,
 * whose trouble is reported under its own codes (the boundary).
 */
static unsigned
flags_except(const struct decode_field *df, const char *name)
{
	unsigned fl = df->flags & (DECODE_P_COMMENT | DECODE_P_TOO_MANY | DECODE_P_SYNTAX);

	for (unsigned i = 0; i < df->nparams; i++)
		if (name == NULL || strcmp(df->params[i].name, name) != 0)
			fl |= df->params[i].flags;
	return fl;
}

/* A name parameter into the header scratch, RFC 2047 words decoded. */
static void
take_name(struct mime_parser *p, struct ent *e, unsigned slot, const struct decode_param *dp,
    uint64_t off)
{
	unsigned fl = 0;

	if (dp == NULL)
		return;
	if (!dp->ext && memmem(dp->value, dp->len, "=?", 2) != NULL) {
		p->hnlen[slot] = decode_2047(dp->value, dp->len, p->hn[slot], MIME_NAME_MAX, &fl);
		if (fl & DECODE_F_BAD_WORD)
			anomaly(p, e, MIME_A_ENCODED_WORD, off);
		if (fl & DECODE_F_TRUNCATED)
			anomaly(p, e, MIME_L_NAME, off);
	} else {
		size_t n = dp->len;

		if (n >= MIME_NAME_MAX) {
			/* back to a character boundary */
			n = MIME_NAME_MAX - 1;
			while (n > 0 && ((unsigned char)dp->value[n] & 0xc0) == 0x80)
				n--;
			anomaly(p, e, MIME_L_NAME, off);
		}
		memcpy(p->hn[slot], dp->value, n);
		p->hn[slot][n] = '\0';
		p->hnlen[slot] = n;
	}
	if (dp->flags & DECODE_P_TRUNCATED)
		anomaly(p, e, MIME_L_NAME, off);
	p->hnset[slot] = true;
}

static bool
token_chars(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= ' ' || c >= 0x7f || strchr("()<>@,;:\\\"/[]?=", c))
			return false;
	}
	return true;
}

static void
field_content_type(struct mime_parser *p, struct ent *e, const char *v, size_t vl,
    uint64_t off)
{
	struct decode_field df;
	const struct decode_param *b, *bx, *cs;
	const char *slash;

	if (p->seen & SEEN_CT) {
		anomaly(p, e, MIME_A_CT_DUP, off);
		return; /* the first one counts here; flagged because others differ */
	}
	p->seen |= SEEN_CT;
	decode_field(v, vl, &df, p->store, p->storesz);
	param_flags(p, e, flags_except(&df, "boundary"), off);

	slash = strchr(df.value, '/');
	if (slash == NULL || !token_chars(df.value, (size_t)(slash - df.value)) ||
	    !token_chars(slash + 1, strlen(slash + 1)) || (df.flags & DECODE_P_VALUE_JUNK)) {
		anomaly(p, e, MIME_A_CT_SYNTAX, off);
	} else {
		memcpy(e->part.type, df.value, strlen(df.value) + 1);
		e->part.type_declared = true;
	}

	b = decode_field_param(&df, "boundary", false);
	bx = decode_field_param(&df, "boundary", true);
	if ((b && bx) || (b && (b->flags & DECODE_P_DUP)) || (bx && (bx->flags & DECODE_P_DUP)))
		anomaly(p, e, MIME_A_BOUNDARY_DUP, off);
	if (b == NULL)
		b = bx;
	if (b) {
		if (b->flags & (DECODE_P_ESCAPE | DECODE_P_UNTERMINATED | DECODE_P_JUNK))
			anomaly(p, e, MIME_A_BOUNDARY_QUOTE, off);
		if (b->flags & (DECODE_P_COMMENT | DECODE_P_2231_GAP | DECODE_P_NUL))
			anomaly(p, e, MIME_A_BOUNDARY_CHARS, off);
		p->hbound_set = true;
		p->hblen = b->len;
		memcpy(p->hbound, b->value, b->len > MIME_BOUNDARY_MAX ? MIME_BOUNDARY_MAX : b->len);
	}
	cs = decode_field_param(&df, "charset", false);
	if (cs) {
		size_t n = cs->len < MIME_CHARSET_MAX - 1 ? cs->len : MIME_CHARSET_MAX - 1;

		for (size_t i = 0; i < n; i++) {
			char c = cs->value[i];

			e->part.charset[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
		}
		e->part.charset[n] = '\0';
	}
	take_name(p, e, HN_NAME_X, decode_field_param(&df, "name", true), off);
	take_name(p, e, HN_NAME, decode_field_param(&df, "name", false), off);
}

static void
field_cte(struct mime_parser *p, struct ent *e, const char *v, size_t vl, uint64_t off)
{
	static const struct {
		const char *name;
		enum mime_cte cte;
	} ctes[] = {
		{ "7bit", MIME_CTE_7BIT },
		{ "8bit", MIME_CTE_8BIT },
		{ "binary", MIME_CTE_BINARY },
		{ "quoted-printable", MIME_CTE_QP },
		{ "base64", MIME_CTE_BASE64 },
	};
	struct decode_field df;

	if (p->seen & SEEN_CTE) {
		anomaly(p, e, MIME_A_CTE_DUP, off);
		return;
	}
	p->seen |= SEEN_CTE;
	decode_field(v, vl, &df, p->store, p->storesz);
	if (df.flags & DECODE_P_COMMENT)
		anomaly(p, e, MIME_A_COMMENT, off);
	e->part.cte = MIME_CTE_UNKNOWN;
	if (df.nparams == 0 && !(df.flags & (DECODE_P_VALUE_JUNK | DECODE_P_SYNTAX)))
		for (size_t i = 0; i < ARRAY_SIZE(ctes); i++)
			if (strcmp(df.value, ctes[i].name) == 0)
				e->part.cte = ctes[i].cte;
	if (e->part.cte == MIME_CTE_UNKNOWN)
		anomaly(p, e, MIME_A_CTE_UNKNOWN, off);
}

static void
field_disposition(struct mime_parser *p, struct ent *e, const char *v, size_t vl,
    uint64_t off)
{
	struct decode_field df;

	if (p->seen & SEEN_CD) {
		anomaly(p, e, MIME_A_CD_DUP, off);
		return;
	}
	p->seen |= SEEN_CD;
	decode_field(v, vl, &df, p->store, p->storesz);
	param_flags(p, e, flags_except(&df, NULL), off);
	if (strcmp(df.value, "inline") == 0)
		e->part.disp = MIME_DISP_INLINE;
	else if (strcmp(df.value, "attachment") == 0)
		e->part.disp = MIME_DISP_ATTACHMENT;
	else
		e->part.disp = MIME_DISP_OTHER;
	take_name(p, e, HN_FILENAME_X, decode_field_param(&df, "filename", true), off);
	take_name(p, e, HN_FILENAME, decode_field_param(&df, "filename", false), off);
}

/* ---- header section ---------------------------------------------------- */

static void
field_start(struct mime_parser *p, uint64_t off)
{
	p->factive = true;
	p->ftrunc = false;
	p->fcont = false;
	p->fwsp = false;
	p->fcr = false;
	p->nfield = 0;
	p->foff = off;
	p->hany = true;
}

static void
field_append(struct mime_parser *p, const char *s, size_t n)
{
	size_t room = p->lim.max_field - p->nfield;

	if (n > room) {
		n = room;
		p->ftrunc = true;
	}
	memcpy(p->field + p->nfield, s, n);
	p->nfield += n;
}

/* The collected field is complete; the next line starts at end_off. */
static void
field_end(struct mime_parser *p, struct ent *e, uint64_t end_off)
{
	char *f = p->field, *colon;
	size_t n = p->nfield, nl, vl;
	const char *v;
	bool wsp_colon = false, mimef;
	struct mime_event ev;

	if (!p->factive)
		return;
	p->factive = false;
	colon = memchr(f, ':', n);
	if (colon == NULL)
		return; /* the line was handed to the body already */
	nl = (size_t)(colon - f);
	while (nl > 0 && is_wsp(f[nl - 1])) {
		nl--;
		wsp_colon = true;
	}
	v = colon + 1;
	vl = n - (size_t)(v - f);
	while (vl > 0 && (is_wsp(v[0]) || v[0] == '\r')) {
		v++;
		vl--;
	}
	while (vl > 0 && (is_wsp(v[vl - 1]) || v[vl - 1] == '\r'))
		vl--;

	if (p->ftrunc)
		anomaly(p, e, MIME_L_FIELD, p->foff);
	if (memchr(f, '\0', n))
		anomaly(p, e, MIME_A_HDR_NUL, p->foff);
	if (nl == 0)
		anomaly(p, e, MIME_A_HDR_SYNTAX, p->foff);
	for (size_t i = 0; i < nl; i++) {
		unsigned char c = (unsigned char)f[i];

		if (c >= 0x80) {
			anomaly(p, e, MIME_A_HDR_8BIT, p->foff);
		} else if (c <= ' ' || c == 0x7f) {
			anomaly(p, e, MIME_A_HDR_SYNTAX, p->foff);
		}
	}
	mimef = nl > 8 && strncasecmp(f, "content-", 8) == 0;
	if (ieq(f, nl, "mime-version"))
		mimef = true;
	/*
	 * 8-bit values are RFC 6532 UTF-8 or legacy octets (raw Latin-1 file
	 * names are still common): readers may show them differently, but
	 * the structure does not change -- a boundary, type or encoding with
	 * 8-bit octets is flagged where it is parsed.
	 */
	if (has_8bit(v, vl))
		anomaly(p, e, MIME_A_HDR_UTF8, p->foff);
	if (wsp_colon && mimef)
		anomaly(p, e, MIME_A_HDR_WSP_COLON, p->foff);

	/* NUL-terminated for the callback: the trimmed octets are free */
	f[nl] = '\0';
	((char *)v)[vl] = '\0';
	memset(&ev, 0, sizeof(ev));
	ev.kind = MIME_EV_HEADER;
	ev.part = &e->part;
	ev.name = f;
	ev.namelen = nl;
	ev.value = v;
	ev.valuelen = vl;
	ev.truncated = p->ftrunc;
	ev.off = p->foff;
	ev.off_end = end_off;
	p->cb(p->arg, &ev);

	if (ieq(f, nl, "content-type"))
		field_content_type(p, e, v, vl, p->foff);
	else if (ieq(f, nl, "content-transfer-encoding"))
		field_cte(p, e, v, vl, p->foff);
	else if (ieq(f, nl, "content-disposition"))
		field_disposition(p, e, v, vl, p->foff);
	else if (ieq(f, nl, "mime-version"))
		p->seen |= SEEN_MV;
}

/*
 * Count header octets; returns the offset of the octet that took the
 * section over max_header, or UINT64_MAX if these did not.
 */
static uint64_t
hdr_count(struct mime_parser *p, struct ent *e, size_t n, uint64_t off)
{
	uint64_t before = e->hdr_bytes;

	e->hdr_bytes += n;
	if (e->hdr_bytes > p->lim.max_header && before <= p->lim.max_header)
		return off + (p->lim.max_header - before);
	return UINT64_MAX;
}

static void
hdr_account(struct mime_parser *p, struct ent *e, size_t n, uint64_t off)
{
	uint64_t at = hdr_count(p, e, n, off);

	if (at != UINT64_MAX)
		anomaly(p, e, MIME_L_HEADER, at);
}

static void leaf_segment(struct mime_parser *p, struct ent *e, const char *s, size_t n);

/* The header section ends with a blank line [line_off, body_off). */
static void
end_headers(struct mime_parser *p, uint64_t line_off, uint64_t body_off)
{
	struct ent *e = top(p);

	field_end(p, e, line_off);
	e->part.off_body = body_off;
	headers_done(p, false);
}

/*
 * Header octets: at most one line per call, so the caller sees every
 * line start (a delimiter may follow).  Returns octets consumed (>= 1).
 */
static size_t
headers_run(struct mime_parser *p, const char *s, size_t n, uint64_t off)
{
	struct ent *e = top(p);
	const char *lf;
	size_t seg, keep, i;
	uint64_t cr_at, lim_at;

	switch (p->hstate) {
	case H_LINE_START:
		if (s[0] == '\r') {
			p->hstate = H_CR_START;
			hdr_account(p, e, 1, off);
			consumed(p, s, 1);
			return 1;
		}
		if (s[0] == '\n') {
			anomaly(p, e, MIME_A_BARE_LF, off);
			hdr_account(p, e, 1, off);
			consumed(p, s, 1);
			end_headers(p, off, off + 1);
			return 1;
		}
		if (is_wsp(s[0]) && p->factive) {
			p->fcont = true;
			p->fwsp = true;
		} else {
			field_end(p, e, off);
			field_start(p, off);
		}
		p->hstate = H_IN_LINE;
		break;
	case H_CR_START:
		if (s[0] == '\n') {
			hdr_account(p, e, 1, off);
			consumed(p, s, 1);
			end_headers(p, off - 1, off + 1);
			return 1;
		}
		/* a bare CR opening a line: it is that line's first octet */
		anomaly(p, e, MIME_A_BARE_CR, off - 1);
		field_end(p, e, off - 1);
		field_start(p, off - 1);
		field_append(p, "\r", 1);
		p->fcr = true;
		p->hstate = H_IN_LINE;
		break;
	case H_IN_LINE:
		break;
	}

	lf = memchr(s, '\n', n);
	seg = lf ? (size_t)(lf - s) + 1 : n;
	keep = lf ? seg - 1 : seg;
	if (p->fcr && s[0] != '\n')
		anomaly(p, e, MIME_A_BARE_CR, off - 1);
	/*
	 * A bare CR and the header limit found in this run are reported in
	 * octet order, so the events are the same however the input is cut.
	 */
	cr_at = UINT64_MAX;
	for (const char *cr = s; (cr = memchr(cr, '\r', keep - (size_t)(cr - s))) != NULL; cr++) {
		if (cr + 1 < s + keep) {
			cr_at = off + (uint64_t)(cr - s);
			break;
		}
	}
	lim_at = hdr_count(p, e, seg, off);
	if (lim_at < cr_at)
		anomaly(p, e, MIME_L_HEADER, lim_at);
	if (cr_at != UINT64_MAX)
		anomaly(p, e, MIME_A_BARE_CR, cr_at);
	if (lim_at != UINT64_MAX && lim_at >= cr_at)
		anomaly(p, e, MIME_L_HEADER, lim_at);
	for (i = 0; p->fwsp && i < keep; i++)
		if (!is_wsp(s[i]) && s[i] != '\r')
			p->fwsp = false;
	field_append(p, s, keep);
	if (keep)
		p->fcr = s[keep - 1] == '\r';
	consumed(p, s, seg);
	if (!lf)
		return seg;

	/* the line is complete */
	if (p->fcr) {
		if (!p->ftrunc && p->nfield > 0)
			p->nfield--; /* the CR of CRLF is not field content */
	} else {
		anomaly(p, e, MIME_A_BARE_LF, off + seg - 1);
	}
	p->hstate = H_LINE_START;
	if (p->fcont) {
		if (p->fwsp)
			anomaly(p, e, MIME_A_HDR_WSP_LINE, p->foff);
		p->fcont = false;
		p->fwsp = false;
	} else if (memchr(p->field, ':', p->nfield) == NULL) {
		/*
		 * Not a field: the blank line is missing.  The body starts
		 * at this line (as Python's email and others read it).
		 */
		char eol[2] = { '\r', '\n' };
		unsigned neol = p->fcr ? 2 : 1;

		anomaly(p, e, MIME_A_HDR_NO_COLON, p->foff);
		p->factive = false;
		end_headers(p, p->foff, p->foff);
		e = top(p);
		if (e->state == ENT_LEAF) {
			leaf_segment(p, e, p->field, p->nfield);
			leaf_segment(p, e, eol + 2 - neol, neol);
		}
	}
	p->fcr = false;
	return seg;
}

/* ---- bodies ------------------------------------------------------------ */

/*
 * Count decoded octets against the caller's wish, before they are handed
 * over: a mime_want() from the BODY event then counts from there.
 */
static void
want_take(struct ent *e, size_t got)
{
	if (e->want != UINT64_MAX)
		e->want = got >= e->want ? 0 : e->want - got;
}

/*
 * Decoded (or passed-through) octets of the top leaf, as long as the
 * caller wants them; after that only counted (the delimiter scan does not
 * need them decoded).
 */
static void
leaf_data(struct mime_parser *p, struct ent *e, const char *s, size_t n)
{
	struct mime_part *pt = &e->part;
	size_t got, take;

	pt->raw_size += n;
	while (n && e->want) {
		size_t room = MIME_OUT_SIZE - p->nout;

		switch (pt->cte) {
		case MIME_CTE_BASE64:
			if (room < 64) {
				out_flush(p, e);
				room = MIME_OUT_SIZE;
			}
			take = (room / 3 - 1) * 4; /* DECODE_B64_OUT(take) <= room */
			if (e->want != UINT64_MAX) {
				/*
				 * Stay below the wish in bulk, then go octet by
				 * octet: decoding stops at the same input octet
				 * whatever the cuts, so do the anomalies.
				 */
				uint64_t g = (e->want - 1) / 3;

				if (g < 2)
					take = 1;
				else if ((g - 1) * 4 < take)
					take = (size_t)(g - 1) * 4;
			}
			if (take > n)
				take = n;
			got = decode_b64(&e->b64, s, take, p->out + p->nout);
			p->nout += got;
			want_take(e, got);
			break;
		case MIME_CTE_QP:
			if (room < DECODE_QP_OUT(64)) {
				out_flush(p, e);
				room = MIME_OUT_SIZE;
			}
			take = room - DECODE_QP_OUT(0); /* DECODE_QP_OUT(take) <= room */
			if (e->want != UINT64_MAX) {
				if (e->want <= DECODE_QP_OUT(0) + 1)
					take = 1;
				else if (e->want - 1 - DECODE_QP_OUT(0) < take)
					take = (size_t)(e->want - 1 - DECODE_QP_OUT(0));
			}
			if (take > n)
				take = n;
			got = decode_qp(&e->qp, s, take, p->out + p->nout);
			p->nout += got;
			want_take(e, got);
			break;
		default:
			take = got = e->want < n ? (size_t)e->want : n;
			if (pt->cte == MIME_CTE_7BIT || pt->cte == MIME_CTE_8BIT) {
				if (!e->body_nul && memchr(s, '\0', take))
					e->body_nul = true;
				if (pt->cte == MIME_CTE_7BIT && !e->body_8bit)
					e->body_8bit = has_8bit(s, take);
			}
			want_take(e, got);
			/* small runs are batched; large ones are handed over in place */
			if (take <= 512 && take <= room) {
				memcpy(p->out + p->nout, s, take);
				p->nout += take;
			} else {
				out_flush(p, e);
				emit_body(p, e, s, take);
			}
			break;
		}
		pt->decoded_size += got;
		s += take;
		n -= take;
		if (e->want == 0)
			out_flush(p, e); /* all of the wish, now: the caller may ask for more */
	}
	if (n)
		e->skipped = true;
}

/* The leaf is over: flush the decoder and report what it found. */
static void
leaf_end(struct mime_parser *p, struct ent *e)
{
	struct mime_part *pt = &e->part;
	unsigned fl = 0;
	size_t got = 0;

	pt->skipped = e->skipped;
	if (MIME_OUT_SIZE - p->nout < DECODE_QP_OUT(0))
		out_flush(p, e); /* room for what the decoders still hold */
	if (e->skipped) {
		/* a group cut by the skip is not an error of the sender's */
		fl = pt->cte == MIME_CTE_BASE64 ? e->b64.flags & ~(unsigned)DECODE_F_B64_PARTIAL :
		    pt->cte == MIME_CTE_QP ? e->qp.flags : 0;
	} else if (pt->cte == MIME_CTE_BASE64) {
		got = decode_b64_finish(&e->b64, p->out + p->nout);
		fl = e->b64.flags;
	} else if (pt->cte == MIME_CTE_QP) {
		got = decode_qp_finish(&e->qp, p->out + p->nout);
		fl = e->qp.flags;
	}
	p->nout += got;
	pt->decoded_size += got;
	out_flush(p, e);
	if (fl & (DECODE_F_B64_BAD_CHAR | DECODE_F_B64_AFTER_PAD | DECODE_F_B64_BAD_PAD))
		anomaly(p, e, MIME_A_B64_BAD, pt->off_body);
	if (fl & DECODE_F_B64_PARTIAL)
		anomaly(p, e, MIME_A_B64_PARTIAL, pt->off_body);
	if (fl & DECODE_F_QP_BAD_ESCAPE)
		anomaly(p, e, MIME_A_QP_BAD, pt->off_body);
	if (fl & (DECODE_F_QP_LOWER_HEX | DECODE_F_QP_LONG_WS))
		anomaly(p, e, MIME_A_QP_SLOPPY, pt->off_body);
	/* at the end, like the decoders' findings: the same order whatever the cuts */
	if (e->body_8bit)
		anomaly(p, e, MIME_A_8BIT_BODY, pt->off_body);
	if (e->body_nul)
		anomaly(p, e, MIME_A_NUL_BODY, pt->off_body);
}

/*
 * Body octets of the top leaf, ending either anywhere (a piece boundary)
 * or with the line end before a possible delimiter.  The final line end
 * is held: it is data only if no delimiter follows.
 */
static void
leaf_segment(struct mime_parser *p, struct ent *e, const char *s, size_t n)
{
	size_t t;

	if (n == 0)
		return;
	if (p->nheld == 1 && p->held[0] == '\r' && s[0] == '\n') {
		p->held[1] = '\n';
		p->nheld = 2;
		s++;
		n--;
		if (n == 0)
			return;
	}
	if (p->nheld) {
		leaf_data(p, e, p->held, p->nheld);
		p->nheld = 0;
	}
	t = n;
	if (s[n - 1] == '\n')
		t = n >= 2 && s[n - 2] == '\r' ? n - 2 : n - 1;
	else if (s[n - 1] == '\r')
		t = n - 1;
	if (t)
		leaf_data(p, e, s, t);
	memcpy(p->held, s + t, n - t);
	p->nheld = (unsigned)(n - t);
}

/*
 * Body, preamble or epilogue octets up to the next line that starts with
 * '-' (s[0] itself is never such a line start here).  Returns octets
 * consumed (>= 1).
 */
static size_t
body_run(struct mime_parser *p, const char *s, size_t n)
{
	struct ent *e = top(p);
	size_t seg = n;

	if (p->nbound) {
		const char *q = s + 1, *end = s + n;

		while (q < end && (q = memchr(q, '-', (size_t)(end - q))) != NULL) {
			if (q[-1] == '\n') {
				seg = (size_t)(q - s);
				break;
			}
			q++;
		}
	}
	if (e->state == ENT_LEAF)
		leaf_segment(p, e, s, seg);
	consumed(p, s, seg);
	return seg;
}

/* ---- delimiters -------------------------------------------------------- */

/* Close the top part; its content ended at end. */
static void
close_top(struct mime_parser *p, uint64_t end, bool eof)
{
	struct ent *e = top(p);

	if (e->state == ENT_HEADERS) {
		field_end(p, e, end);
		if (!eof && p->hany && !p->opaque)
			anomaly(p, e, MIME_A_HDR_DELIM, end);
		if (eof && e->part.depth > 0 && p->hany && !p->opaque)
			anomaly(p, e, MIME_A_HDR_UNTERMINATED, end);
		/* the line end before a delimiter may be the one opening the body */
		e->part.off_body = end < e->part.off_start ? e->part.off_start : end;
		headers_done(p, true);
	}
	switch (e->state) {
	case ENT_LEAF:
		if (eof && p->nheld)
			leaf_data(p, e, p->held, p->nheld);
		p->nheld = 0;
		leaf_end(p, e);
		break;
	case ENT_PREAMBLE:
	case ENT_PARTS:
		if (!p->opaque)
			anomaly(p, e, MIME_A_NO_CLOSE, end);
		break;
	default:
		break;
	}
	if (e->bounded) {
		p->nbound--;
		e->bounded = false;
	}
	e->part.off_end = end < e->part.off_start ? e->part.off_start : end;
	if (e->part.off_body > e->part.off_end)
		e->part.off_body = e->part.off_end;
	emit_part(p, e, MIME_EV_PART_END);
	p->nents--;
}

/*
 * Which open multipart does this line (without its line end) delimit?
 * Innermost first.  Lines that only start like a delimiter are flagged.
 */
static int
match_delim(struct mime_parser *p, const char *line, size_t n, bool whole, uint64_t off,
    bool *close, bool *wsp)
{
	if (n < 2 || line[0] != '-' || line[1] != '-')
		return -1;
	for (int k = (int)p->nents - 1; k >= 0; k--) {
		struct ent *e = &p->ents[k];
		const char *r;
		size_t rl, i;
		bool cl = false;

		if (!e->bounded || n - 2 < e->blen || memcmp(line + 2, e->boundary, e->blen) != 0)
			continue;
		r = line + 2 + e->blen;
		rl = n - 2 - e->blen;
		if (rl >= 2 && r[0] == '-' && r[1] == '-') {
			cl = true;
			r += 2;
			rl -= 2;
		}
		for (i = 0; i < rl && is_wsp(r[i]); i++)
			;
		if (!whole || i < rl) {
			anomaly(p, e, MIME_A_DELIM_JUNK, off);
			continue;
		}
		if (e->state == ENT_EPILOGUE) {
			anomaly(p, e, MIME_A_DELIM_AFTER_CLOSE, off);
			continue;
		}
		*close = cl;
		*wsp = rl > 0;
		return k;
	}
	return -1;
}

static size_t dispatch(struct mime_parser *p, const char *s, size_t n, uint64_t off);

static void
dispatch_all(struct mime_parser *p, const char *s, size_t n, uint64_t off)
{
	while (n && !p->opaque) {
		size_t k = dispatch(p, s, n, off);

		s += k;
		n -= k;
		off += k;
	}
}

/*
 * A line that started with '-' at a line start: s[0..n), complete when it
 * ends with LF (or at the end of the message).  A delimiter closes parts
 * and maybe opens the next; anything else is ordinary input.
 */
static void
candidate(struct mime_parser *p, const char *s, size_t n, uint64_t off, bool complete)
{
	size_t ln = n;
	bool lf = false, crlf = false, close = false, wsp = false;
	int k;
	unsigned eol;
	uint64_t end;

	if (complete && n && s[n - 1] == '\n') {
		lf = true;
		ln--;
		if (ln && s[ln - 1] == '\r') {
			ln--;
			crlf = true;
		}
	}
	k = match_delim(p, s, ln, complete && n <= MIME_CARRY_MAX, off, &close, &wsp);
	if (k < 0) {
		dispatch_all(p, s, n, off);
		return;
	}
	if (wsp)
		anomaly(p, &p->ents[k], MIME_A_DELIM_WSP, off);
	if (lf && !crlf)
		anomaly(p, &p->ents[k], MIME_A_BARE_LF, off);
	if (memchr(s, '\r', ln))
		anomaly(p, &p->ents[k], MIME_A_BARE_CR, off);

	/* the line end before the delimiter is the delimiter's */
	eol = (off == 0 || p->last1 != '\n') ? 0 : (p->last2 == '\r' ? 2 : 1);
	end = off - eol;
	p->nheld = 0;
	while (p->nents - 1 > (unsigned)k)
		close_top(p, end, false);
	consumed(p, s, n);
	if (close) {
		p->ents[k].state = ENT_EPILOGUE; /* still watched: DELIM_AFTER_CLOSE */
	} else {
		p->ents[k].state = ENT_PARTS;
		push_part(p, off + n);
	}
}

static size_t
dispatch(struct mime_parser *p, const char *s, size_t n, uint64_t off)
{
	switch (top(p)->state) {
	case ENT_HEADERS:
		return headers_run(p, s, n, off);
	case ENT_LEAF:
	case ENT_PREAMBLE:
	case ENT_EPILOGUE:
		return body_run(p, s, n);
	default:
		fatal("part %u in state %d on top", top(p)->part.index, (int)top(p)->state);
	}
}

/* ---- API --------------------------------------------------------------- */

struct mime_parser *
mime_new(const struct mime_limits *lim, mime_cb *cb, void *arg)
{
	struct mime_parser *p = xcalloc(1, sizeof(*p));

	p->lim = lim ? *lim : mime_default_limits;
	if (p->lim.max_depth > MIME_DEPTH_CAP)
		p->lim.max_depth = MIME_DEPTH_CAP;
	if (p->lim.max_parts < 1)
		p->lim.max_parts = 1;
	if (p->lim.max_field < 256)
		p->lim.max_field = 256;
	if (p->lim.max_field > 1024 * 1024)
		p->lim.max_field = 1024 * 1024;
	p->cb = cb;
	p->arg = arg;
	p->ents = xcalloc(p->lim.max_depth + 1, sizeof(*p->ents));
	p->field = xmalloc(p->lim.max_field + 1);
	p->storesz = DECODE_STORE_SIZE(p->lim.max_field);
	p->store = xmalloc(p->storesz);
	mime_reset(p);
	return p;
}

void
mime_free(struct mime_parser *p)
{
	if (p == NULL)
		return;
	free(p->ents);
	free(p->field);
	free(p->store);
	free(p);
}

void
mime_reset(struct mime_parser *p)
{
	p->nents = 0;
	p->nparts = 0;
	p->nbound = 0;
	p->opaque = false;
	p->finished = false;
	p->off = 0;
	p->anomalies = 0;
	p->bol = true;
	p->last1 = p->last2 = 0;
	p->ncarry = 0;
	p->nheld = 0;
	p->nout = 0;
	push_part(p, 0);
}

void
mime_want(struct mime_parser *p, uint64_t octets)
{
	struct ent *e;

	if (p->nents == 0)
		return;
	e = top(p);
	if (e->state == ENT_LEAF && !e->skipped)
		e->want = octets;
}

void
mime_feed(struct mime_parser *p, const char *data, size_t len)
{
	size_t pos = 0;

	if (p->finished)
		return;
	while (pos < len && !p->opaque) {
		uint64_t off = p->off + pos;

		if (p->ncarry) {
			size_t room = MIME_CARRY_MAX - p->ncarry, avail = len - pos;
			size_t look = avail < room ? avail : room, take;
			const char *lf = memchr(data + pos, '\n', look);

			take = lf ? (size_t)(lf - (data + pos)) + 1 : look;
			memcpy(p->carry + p->ncarry, data + pos, take);
			p->ncarry += take;
			pos += take;
			if (lf || p->ncarry == MIME_CARRY_MAX) {
				size_t n = p->ncarry;

				p->ncarry = 0;
				candidate(p, p->carry, n, p->carry_off, lf != NULL);
			}
			continue;
		}
		if (p->bol && p->nbound && data[pos] == '-') {
			size_t avail = len - pos;
			const char *lf = memchr(data + pos, '\n', avail);

			if (lf) {
				size_t n = (size_t)(lf - (data + pos)) + 1;

				candidate(p, data + pos, n, off, true);
				pos += n;
			} else if (avail < MIME_CARRY_MAX) {
				memcpy(p->carry, data + pos, avail);
				p->ncarry = avail;
				p->carry_off = off;
				pos = len;
			} else {
				candidate(p, data + pos, avail, off, false);
				pos = len;
			}
			continue;
		}
		pos += dispatch(p, data + pos, len - pos, off);
	}
	p->off += len;
}

void
mime_finish(struct mime_parser *p)
{
	if (p->finished)
		return;
	if (p->ncarry && !p->opaque) {
		size_t n = p->ncarry;

		/* the message's last line, without a line end: may still delimit */
		p->ncarry = 0;
		candidate(p, p->carry, n, p->carry_off, true);
	}
	if (p->opaque) {
		p->nheld = 0;
		p->nout = 0;
	}
	while (p->nents)
		close_top(p, p->off, true);
	p->finished = true;
}
