/*
 * decode - base64, quoted-printable, charsets, RFC 2047 words and RFC 2231
 * parameters.  See decode.h for the contracts; comments here say why the
 * code does what it does.
 *
 * Why one file of this size: five small pure decoders that share charset
 * conversion and their bounds; one is split out by noun only when it
 * grows.
 */
#include <errno.h>
#include <iconv.h>
#include <string.h>

#include "decode.h"
#include "util.h"

/* ---- base64 ---------------------------------------------------------- */

/* 0..63: alphabet; B64_WS: skipped silently; B64_PAD: '='; B64_BAD: other. */
#define B64_WS 0x40
#define B64_PAD 0x41
#define B64_BAD 0x80

static const unsigned char b64_tab[256] = {
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0x40, 0x80, 0x80, 0x40, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x40, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x3e, 0x80, 0x80, 0x80, 0x3f,
	0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x80, 0x80, 0x80, 0x41, 0x80, 0x80,
	0x80, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
	0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
	0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
};

/*
 * The fast path's tables, built once per process from b64_tab: each
 * sextet shifted into the little-endian 32-bit word whose low three octets
 * are the group's output.
 */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the base64 fast path stores little-endian words"
#endif
#define B64_FBAD 0x01000000u
static uint32_t b64_f[4][256];
static bool b64_fast_ready;

static void
b64_fast_init(void)
{
	for (unsigned c = 0; c < 256; c++) {
		uint32_t v = b64_tab[c];

		if (v >= 64) {
			b64_f[0][c] = b64_f[1][c] = b64_f[2][c] = b64_f[3][c] = B64_FBAD;
			continue;
		}
		b64_f[0][c] = v << 2;
		b64_f[1][c] = v >> 4 | (v & 0x0f) << 12;
		b64_f[2][c] = (v >> 2) << 8 | (v & 0x03) << 22;
		b64_f[3][c] = v << 16;
	}
	b64_fast_ready = true;
}

void
decode_b64_init(struct decode_b64 *d)
{
	memset(d, 0, sizeof(*d));
}

/* A group "xx=" closed early: its one octet. */
static size_t
b64_close_pad1(struct decode_b64 *d, unsigned char *o)
{
	o[0] = (unsigned char)(d->acc >> 4);
	d->acc = 0;
	d->n = 0;
	d->pad = 0;
	return 1;
}

size_t
decode_b64(struct decode_b64 *d, const char *in, size_t len, unsigned char *out)
{
	const unsigned char *p = (const unsigned char *)in, *end = p + len;
	unsigned char *o = out;

	while (p < end) {
		/*
		 * Fast path: whole groups of four alphabet octets, which is
		 * nearly all of a well-formed body (lines are 76 octets).  The
		 * four tables hold each sextet already shifted to its place in
		 * the three output octets (little-endian), and B64_FBAD for
		 * anything else, so a group is four loads, three ORs and one
		 * test.  Storing 4 octets and advancing 3 stays within
		 * DECODE_B64_OUT.
		 */
		if (d->n == 0 && d->pad == 0 && end - p >= 4) {
			const unsigned char *p0 = p;

			if (!b64_fast_ready)
				b64_fast_init();
			while (end - p >= 8) {
				uint32_t x = b64_f[0][p[0]] | b64_f[1][p[1]] | b64_f[2][p[2]] |
				    b64_f[3][p[3]];
				uint32_t y = b64_f[0][p[4]] | b64_f[1][p[5]] | b64_f[2][p[6]] |
				    b64_f[3][p[7]];

				if ((x | y) & B64_FBAD)
					break;
				memcpy(o, &x, 4);
				memcpy(o + 3, &y, 4);
				o += 6;
				p += 8;
			}
			while (end - p >= 4) {
				uint32_t x = b64_f[0][p[0]] | b64_f[1][p[1]] | b64_f[2][p[2]] |
				    b64_f[3][p[3]];

				if (x & B64_FBAD)
					break;
				memcpy(o, &x, 4);
				o += 3;
				p += 4;
			}
			if (p != p0 && d->done) {
				d->flags |= DECODE_F_B64_AFTER_PAD;
				d->done = false;
			}
			if (p == end)
				break;
		}

		unsigned v = b64_tab[*p++];

		if (v < 64) {
			if (d->pad) {
				/* "xx=y": close the group as "xx==", start anew */
				o += b64_close_pad1(d, o);
				d->flags |= DECODE_F_B64_AFTER_PAD;
			} else if (d->done) {
				d->flags |= DECODE_F_B64_AFTER_PAD;
			}
			d->done = false;
			d->acc = d->acc << 6 | v;
			if (++d->n == 4) {
				o[0] = (unsigned char)(d->acc >> 16);
				o[1] = (unsigned char)(d->acc >> 8);
				o[2] = (unsigned char)d->acc;
				o += 3;
				d->acc = 0;
				d->n = 0;
			}
		} else if (v == B64_WS) {
			continue;
		} else if (v == B64_PAD) {
			if (d->n == 2 && d->pad == 0) {
				d->pad = 1;
			} else if (d->n == 2) {
				o += b64_close_pad1(d, o);
				d->done = true;
			} else if (d->n == 3) {
				o[0] = (unsigned char)(d->acc >> 10);
				o[1] = (unsigned char)(d->acc >> 2);
				o += 2;
				d->acc = 0;
				d->n = 0;
				d->done = true;
			} else {
				d->flags |= DECODE_F_B64_BAD_PAD;
			}
		} else {
			d->flags |= DECODE_F_B64_BAD_CHAR;
		}
	}
	return (size_t)(o - out);
}

size_t
decode_b64_finish(struct decode_b64 *d, unsigned char *out)
{
	size_t n = 0;

	if (d->pad) {
		n = b64_close_pad1(d, out); /* "xx=": lenient, one octet */
		d->flags |= DECODE_F_B64_PARTIAL;
	} else if (d->n == 2) {
		out[0] = (unsigned char)(d->acc >> 4);
		n = 1;
		d->flags |= DECODE_F_B64_PARTIAL;
	} else if (d->n == 3) {
		out[0] = (unsigned char)(d->acc >> 10);
		out[1] = (unsigned char)(d->acc >> 2);
		n = 2;
		d->flags |= DECODE_F_B64_PARTIAL;
	} else if (d->n == 1) {
		d->flags |= DECODE_F_B64_PARTIAL; /* six bits: no octet */
	}
	d->acc = 0;
	d->n = 0;
	d->pad = 0;
	return n;
}

/* ---- quoted-printable -------------------------------------------------- */

enum {
	QP_TEXT,
	QP_CR,     /* CR seen: a line end if LF follows */
	QP_EQ,     /* '=' seen */
	QP_EQ_HEX, /* '=' and one hex digit */
	QP_EQ_CR,  /* '=' CR: a soft break if LF follows */
	QP_EQ_WS,  /* '=' and whitespace (in ws): a padded soft break if a line end follows */
};

/* Octets that end the fast copy in QP_TEXT. */
static const unsigned char qp_special[256] = {
	[' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1, ['='] = 1,
};

static int
hexval(unsigned char c, unsigned *flags)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f') {
		if (flags)
			*flags |= DECODE_F_QP_LOWER_HEX;
		return c - 'a' + 10;
	}
	return -1;
}

void
decode_qp_init(struct decode_qp *d)
{
	memset(d, 0, sizeof(*d));
}

static size_t
qp_flush_ws(struct decode_qp *d, unsigned char *o)
{
	size_t n = d->nws;

	memcpy(o, d->ws, n);
	d->nws = 0;
	return n;
}

size_t
decode_qp(struct decode_qp *d, const char *in, size_t len, unsigned char *out)
{
	const unsigned char *p = (const unsigned char *)in, *end = p + len;
	unsigned char *o = out;

	while (p < end) {
		unsigned char c = *p;
		int h;

		switch (d->state) {
		case QP_TEXT:
			if (!qp_special[c]) {
				const unsigned char *s = p;

				if (d->nws)
					o += qp_flush_ws(d, o);
				while (p < end && !qp_special[*p])
					p++;
				memcpy(o, s, (size_t)(p - s));
				o += p - s;
				break;
			}
			p++;
			if (c == ' ' || c == '\t') {
				/* held: dropped if the line ends here */
				if (d->nws == DECODE_QP_WS_MAX) {
					o += qp_flush_ws(d, o);
					d->flags |= DECODE_F_QP_LONG_WS;
				}
				d->ws[d->nws++] = c;
			} else if (c == '\r') {
				d->state = QP_CR;
			} else if (c == '\n') {
				d->nws = 0;
				*o++ = '\n';
			} else { /* '=' */
				if (d->nws)
					o += qp_flush_ws(d, o);
				d->state = QP_EQ;
			}
			break;
		case QP_CR:
			d->state = QP_TEXT;
			if (c == '\n') {
				p++;
				d->nws = 0;
				*o++ = '\r';
				*o++ = '\n';
			} else {
				/* a bare CR is data; c is read again as text */
				o += qp_flush_ws(d, o);
				*o++ = '\r';
			}
			break;
		case QP_EQ:
			if (hexval(c, NULL) >= 0) {
				d->hex1 = c;
				p++;
				d->state = QP_EQ_HEX;
			} else if (c == '\r') {
				p++;
				d->state = QP_EQ_CR;
			} else if (c == '\n') {
				p++;
				d->state = QP_TEXT; /* soft break, bare LF */
			} else if (c == ' ' || c == '\t') {
				p++;
				d->ws[0] = c;
				d->nws = 1;
				d->state = QP_EQ_WS;
			} else {
				*o++ = '=';
				d->flags |= DECODE_F_QP_BAD_ESCAPE;
				d->state = QP_TEXT;
			}
			break;
		case QP_EQ_HEX:
			d->state = QP_TEXT;
			h = hexval(c, &d->flags);
			if (h >= 0) {
				p++;
				*o++ = (unsigned char)(hexval(d->hex1, &d->flags) << 4 | h);
			} else {
				*o++ = '=';
				*o++ = d->hex1;
				d->flags |= DECODE_F_QP_BAD_ESCAPE;
			}
			break;
		case QP_EQ_CR:
			d->state = QP_TEXT;
			if (c == '\n') {
				p++; /* soft break */
			} else {
				*o++ = '=';
				*o++ = '\r';
				d->flags |= DECODE_F_QP_BAD_ESCAPE;
			}
			break;
		case QP_EQ_WS:
			if (c == ' ' || c == '\t') {
				if (d->nws == DECODE_QP_WS_MAX) {
					*o++ = '=';
					o += qp_flush_ws(d, o);
					d->flags |= DECODE_F_QP_BAD_ESCAPE | DECODE_F_QP_LONG_WS;
					d->state = QP_TEXT;
				} else {
					d->ws[d->nws++] = c;
					p++;
				}
			} else if (c == '\r') {
				p++;
				d->nws = 0;
				d->state = QP_EQ_CR;
			} else if (c == '\n') {
				p++;
				d->nws = 0;
				d->state = QP_TEXT;
			} else {
				*o++ = '=';
				o += qp_flush_ws(d, o);
				d->flags |= DECODE_F_QP_BAD_ESCAPE;
				d->state = QP_TEXT;
			}
			break;
		}
	}
	return (size_t)(o - out);
}

size_t
decode_qp_finish(struct decode_qp *d, unsigned char *out)
{
	unsigned char *o = out;

	switch (d->state) {
	case QP_CR:
		o += qp_flush_ws(d, o);
		*o++ = '\r';
		break;
	case QP_EQ_HEX:
		*o++ = '=';
		*o++ = d->hex1;
		d->flags |= DECODE_F_QP_BAD_ESCAPE;
		break;
	default:
		/*
		 * Trailing whitespace at the end of the data is dropped, and a
		 * final '=' is a soft break whose line end the caller held back.
		 */
		break;
	}
	d->nws = 0;
	d->state = QP_TEXT;
	return (size_t)(o - out);
}

/* ---- UTF-8 output ------------------------------------------------------ */

struct u8out {
	char *buf;
	size_t size, len; /* len < size: room for the NUL is always kept */
	bool full;        /* something did not fit: everything after is dropped */
	unsigned *flags;
};

static void
u8_init(struct u8out *o, char *buf, size_t size, unsigned *flags)
{
	o->buf = buf;
	o->size = size;
	o->len = 0;
	o->full = size == 0;
	o->flags = flags;
	if (size)
		buf[0] = '\0';
}

/* n octets forming whole characters: all or nothing. */
static bool
u8_put(struct u8out *o, const void *p, size_t n)
{
	if (o->full || o->len + n + 1 > o->size) {
		if (!o->full && o->size)
			*o->flags |= DECODE_F_TRUNCATED;
		o->full = true;
		return false;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	o->buf[o->len] = '\0';
	return true;
}

static bool
u8_cp(struct u8out *o, uint32_t cp)
{
	unsigned char b[4];
	size_t n;

	if (cp == 0)
		*o->flags |= DECODE_F_NUL;
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | cp >> 6);
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | cp >> 18);
		b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return u8_put(o, b, n);
}

static bool
u8_bad(struct u8out *o)
{
	*o->flags |= DECODE_F_INVALID;
	return u8_cp(o, 0xfffd);
}

/* Length of the valid UTF-8 sequence at p, 0 if there is none (RFC 3629). */
static size_t
utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

		return n >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

		return n >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 &&
		    (p[3] & 0xc0) == 0x80 ? 4 : 0;
	}
	return 0;
}

size_t
decode_utf8_seq(const void *p, size_t n)
{
	return n ? utf8_seq(p, n) : 0;
}

bool
decode_utf8_valid(const void *v, size_t n)
{
	const unsigned char *p = v, *end = p + n;

	while (p < end) {
		size_t k;

		if (*p < 0x80) {
			p++;
			continue;
		}
		k = utf8_seq(p, (size_t)(end - p));
		if (k == 0)
			return false;
		p += k;
	}
	return true;
}

/* Copy UTF-8, invalid octets replaced one by one. */
static void
u8_copy_utf8(struct u8out *o, const unsigned char *p, size_t n)
{
	const unsigned char *end = p + n;

	while (p < end && !o->full) {
		const unsigned char *s = p;
		size_t k;

		while (p < end && *p >= 0x01 && *p < 0x80)
			p++;
		if (p > s) {
			/* ASCII runs may be cut anywhere */
			size_t room = o->size - o->len - 1, take = (size_t)(p - s);

			if (take > room) {
				u8_put(o, s, room);
				u8_put(o, s + room, 1); /* marks it full and truncated */
				return;
			}
			u8_put(o, s, take);
			continue;
		}
		k = utf8_seq(p, (size_t)(end - p));
		if (k == 0) {
			u8_bad(o);
			p++;
		} else {
			if (*p == 0)
				*o->flags |= DECODE_F_NUL;
			u8_put(o, p, k);
			p += k;
		}
	}
}

/* windows-1252 0x80..0x9f (WHATWG: undefined ones map to the C1 control). */
static const uint16_t cp1252_hi[32] = {
	0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f,
	0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

static void
u8_copy_1252(struct u8out *o, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n && !o->full; i++) {
		unsigned char c = p[i];

		u8_cp(o, c >= 0x80 && c < 0xa0 ? cp1252_hi[c - 0x80] : c);
	}
}

enum cs_kind { CS_UTF8, CS_1252, CS_ICONV, CS_BAD };

/*
 * Label to decoder.  us-ascii and iso-8859-1 are read as windows-1252, as
 * the WHATWG encoding standard (and so the mail readers built on it) does.
 */
static enum cs_kind
cs_lookup(const char *cs)
{
	static const char *const utf8[] = { "utf-8", "utf8", "unicode-1-1-utf-8" };
	static const char *const w1252[] = { "us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us",
		"iso-8859-1", "iso8859-1", "iso_8859-1", "iso88591", "latin1", "l1",
		"windows-1252", "cp1252", "x-cp1252", "cp819", "ibm819" };
	size_t n;

	if (cs == NULL || cs[0] == '\0')
		return CS_UTF8;
	n = strlen(cs);
	if (n > 40)
		return CS_BAD;
	for (size_t i = 0; i < n; i++) {
		char c = cs[i];

		/* no "//TRANSLIT" or paths into iconv: plain names only */
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':'))
			return CS_BAD;
	}
	for (size_t i = 0; i < ARRAY_SIZE(utf8); i++)
		if (strcasecmp(cs, utf8[i]) == 0)
			return CS_UTF8;
	for (size_t i = 0; i < ARRAY_SIZE(w1252); i++)
		if (strcasecmp(cs, w1252[i]) == 0)
			return CS_1252;
	return CS_ICONV;
}

static void
u8_copy_iconv(struct u8out *o, const char *cs, const unsigned char *in, size_t len)
{
	iconv_t cd = iconv_open("UTF-8", cs);
	char *ip = (char *)(uintptr_t)in;
	size_t il = len;
	char tmp[512];

	if (cd == (iconv_t)-1) {
		*o->flags |= DECODE_F_CHARSET;
		u8_copy_utf8(o, in, len);
		return;
	}
	while (!o->full) {
		char *op = tmp;
		size_t ol = sizeof(tmp), r;
		int err;

		r = il ? iconv(cd, &ip, &il, &op, &ol) : iconv(cd, NULL, NULL, &op, &ol);
		err = errno;
		/* iconv writes whole characters; checked again all the same */
		u8_copy_utf8(o, (const unsigned char *)tmp, (size_t)(op - tmp));
		if (r != (size_t)-1) {
			if (il == 0)
				break;
			continue;
		}
		if (err == E2BIG)
			continue;
		if ((err == EILSEQ || err == EINVAL) && il > 0) {
			u8_bad(o);
			ip++;
			il--;
			continue;
		}
		break;
	}
	iconv_close(cd);
}

static void
u8_copy_cs(struct u8out *o, const char *cs, const unsigned char *in, size_t len)
{
	switch (cs_lookup(cs)) {
	case CS_UTF8:
		u8_copy_utf8(o, in, len);
		break;
	case CS_1252:
		u8_copy_1252(o, in, len);
		break;
	case CS_ICONV:
		u8_copy_iconv(o, cs, in, len);
		break;
	case CS_BAD:
		*o->flags |= DECODE_F_CHARSET;
		u8_copy_utf8(o, in, len);
		break;
	}
}

size_t
decode_charset(const char *charset, const unsigned char *in, size_t len, char *out,
    size_t outsz, unsigned *flags)
{
	struct u8out o;

	u8_init(&o, out, outsz, flags);
	u8_copy_cs(&o, charset, in, len);
	return o.len;
}

/* ---- RFC 2047 ---------------------------------------------------------- */

/*
 * One encoded word at in[0..len) (starting "=?").  On success: its
 * charset (without "*lang"), its decoded octets in raw, and the length of
 * the word.  0 if it is not a well-formed word.
 */
static size_t
word_parse(const char *in, size_t len, char *cs, size_t cssz, unsigned char *raw,
    size_t rawsz, size_t *rawlen, unsigned *flags)
{
	size_t i = 2, csl = 0, t0, t1;
	char enc;

	while (i < len && in[i] != '?' && in[i] != ' ' && in[i] != '\t') {
		if (csl + 1 < cssz)
			cs[csl++] = in[i];
		else
			return 0;
		i++;
	}
	if (i + 3 > len || in[i] != '?' || csl == 0)
		return 0;
	cs[csl] = '\0';
	char *star = strchr(cs, '*'); /* RFC 2231 language suffix */
	if (star)
		*star = '\0';
	enc = in[i + 1];
	if ((enc != 'B' && enc != 'b' && enc != 'Q' && enc != 'q') || in[i + 2] != '?')
		return 0;
	t0 = i + 3;
	for (t1 = t0; t1 < len && in[t1] != '?'; t1++)
		if (in[t1] == ' ' || in[t1] == '\t' || in[t1] == '\r' || in[t1] == '\n')
			return 0;
	if (t1 + 1 >= len || in[t1 + 1] != '=')
		return 0;
	if (enc == 'B' || enc == 'b') {
		struct decode_b64 d;
		size_t n = t1 - t0, got;

		if (DECODE_B64_OUT(n) > rawsz)
			return 0;
		decode_b64_init(&d);
		got = decode_b64(&d, in + t0, n, raw);
		got += decode_b64_finish(&d, raw + got);
		if (d.flags)
			*flags |= DECODE_F_BAD_WORD;
		*rawlen = got;
	} else {
		size_t o = 0;

		if (t1 - t0 > rawsz)
			return 0;
		for (size_t k = t0; k < t1; k++) {
			int h1, h2;

			if (in[k] == '_') {
				raw[o++] = ' ';
			} else if (in[k] == '=' && k + 2 < t1 &&
			    (h1 = hexval((unsigned char)in[k + 1], NULL)) >= 0 &&
			    (h2 = hexval((unsigned char)in[k + 2], NULL)) >= 0) {
				raw[o++] = (unsigned char)(h1 << 4 | h2);
				k += 2;
			} else {
				if (in[k] == '=')
					*flags |= DECODE_F_BAD_WORD;
				raw[o++] = (unsigned char)in[k];
			}
		}
		*rawlen = o;
	}
	return t1 + 2;
}

size_t
decode_2047(const char *in, size_t len, char *out, size_t outsz, unsigned *flags)
{
	struct u8out o;
	/* Adjacent words in one charset are joined before conversion, so a
	 * character split across two words comes out whole. */
	unsigned char run[768], raw[768];
	char runcs[48] = "", cs[48];
	size_t runlen = 0, i = 0, ws0 = 0, wsn = 0;
	bool after_word = false;

	u8_init(&o, out, outsz, flags);
	while (i < len && !o.full) {
		size_t rawlen = 0, wl = 0;

		if (in[i] == '=' && i + 1 < len && in[i + 1] == '?')
			wl = word_parse(in + i, len - i, cs, sizeof(cs), raw, sizeof(raw), &rawlen,
			    flags);
		if (wl) {
			/* whitespace between two words is dropped (RFC 2047 6.2) */
			wsn = 0;
			if (runlen && (strcasecmp(cs, runcs) != 0 || runlen + rawlen > sizeof(run))) {
				u8_copy_cs(&o, runcs, run, runlen);
				runlen = 0;
			}
			if (runlen == 0)
				memcpy(runcs, cs, sizeof(runcs));
			if (rawlen > sizeof(run))
				rawlen = sizeof(run); /* cannot happen: raw is no larger */
			memcpy(run + runlen, raw, rawlen);
			runlen += rawlen;
			after_word = true;
			i += wl;
			continue;
		}
		if (after_word && (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' ||
		    in[i] == '\n')) {
			if (wsn == 0)
				ws0 = i;
			wsn++;
			i++;
			continue;
		}
		if (runlen) {
			u8_copy_cs(&o, runcs, run, runlen);
			runlen = 0;
		}
		if (wsn) {
			u8_copy_utf8(&o, (const unsigned char *)in + ws0, wsn);
			wsn = 0;
		}
		after_word = false;
		if (in[i] == '=' && i + 1 < len && in[i + 1] == '?')
			*flags |= DECODE_F_BAD_WORD;
		/* plain text up to the next possible word */
		size_t j = i + 1;
		while (j < len && !(in[j] == '=' && j + 1 < len && in[j + 1] == '?'))
			j++;
		u8_copy_utf8(&o, (const unsigned char *)in + i, j - i);
		i = j;
	}
	if (runlen)
		u8_copy_cs(&o, runcs, run, runlen);
	if (wsn)
		u8_copy_utf8(&o, (const unsigned char *)in + ws0, wsn);
	return o.len;
}

/* ---- structured fields and parameters (RFC 2045 5.1, RFC 2231) -------- */

struct store {
	char *buf;
	size_t size, used;
};

/* RFC 2045 tspecials, plus SP and CTLs: what a token cannot hold. */
static bool
is_tspecial(unsigned char c)
{
	return c <= ' ' || c == 0x7f || strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static bool
is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skip whitespace and RFC 822 comments (nested, with quoted pairs). */
static size_t
skip_cfws(const char *in, size_t len, size_t i, unsigned *flags)
{
	for (;;) {
		while (i < len && is_wsp((unsigned char)in[i]))
			i++;
		if (i >= len || in[i] != '(')
			return i;
		*flags |= DECODE_P_COMMENT;
		unsigned depth = 0;
		for (; i < len; i++) {
			if (in[i] == '\\' && i + 1 < len) {
				i++;
			} else if (in[i] == '(') {
				depth++;
			} else if (in[i] == ')') {
				if (--depth == 0) {
					i++;
					break;
				}
			}
		}
		if (depth)
			*flags |= DECODE_P_UNTERMINATED;
	}
}

/* One "attribute=value" as written, before RFC 2231 assembly. */
struct raw_param {
	char name[DECODE_PNAME_MAX];
	int section; /* -1: none */
	bool ext;    /* ends in '*': charset'lang'%XX or %XX */
	bool quoted;
	unsigned flags;
	const char *value; /* in the store, NUL-terminated */
	size_t len;
};

static char *
store_take(struct store *s, size_t n)
{
	char *p;

	if (s->size - s->used < n)
		return NULL;
	p = s->buf + s->used;
	s->used += n;
	return p;
}

/* Store in[0..n) with quoted pairs removed when unquote. */
static const char *
store_raw(struct store *s, const char *in, size_t n, bool unquote, size_t *outlen,
    unsigned *flags)
{
	char *p = store_take(s, n + 1);
	size_t o = 0;

	if (p == NULL) {
		*flags |= DECODE_P_TRUNCATED;
		*outlen = 0;
		return "";
	}
	for (size_t i = 0; i < n; i++) {
		if (unquote && in[i] == '\\' && i + 1 < n)
			i++;
		p[o++] = in[i];
	}
	p[o] = '\0';
	s->used -= n - o;
	*outlen = o;
	return p;
}

/* "name", "name*", "name*3", "name*3*" */
static void
parse_attr(const char *a, size_t n, struct raw_param *r, unsigned *flags)
{
	size_t star = n;
	size_t k;

	r->section = -1;
	r->ext = false;
	for (k = 0; k < n; k++) {
		if (a[k] == '*') {
			star = k;
			break;
		}
	}
	if (star < n) {
		const char *s = a + star + 1;
		size_t sn = n - star - 1;

		if (sn == 0) {
			r->ext = true;
		} else {
			size_t d = 0;
			long sec = 0;

			while (d < sn && s[d] >= '0' && s[d] <= '9' && d < 4)
				sec = sec * 10 + (s[d++] - '0');
			if (d > 0 && (d == sn || (d + 1 == sn && s[d] == '*')) &&
			    !(d > 1 && s[0] == '0')) {
				r->section = (int)sec;
				r->ext = d + 1 == sn;
			} else {
				star = n; /* not RFC 2231: a name with a '*' in it */
				*flags |= DECODE_P_SYNTAX;
			}
		}
	}
	if (star >= DECODE_PNAME_MAX) {
		star = DECODE_PNAME_MAX - 1;
		*flags |= DECODE_P_TRUNCATED;
	}
	for (k = 0; k < star; k++) {
		char c = a[k];

		r->name[k] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
	}
	r->name[star] = '\0';
}

/* %XX decoding of an extended value, in place into dst (dst may == src). */
static size_t
pct_decode(const char *src, size_t n, unsigned char *dst, unsigned *flags)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int h1, h2;

		if (src[i] == '%' && i + 2 < n &&
		    (h1 = hexval((unsigned char)src[i + 1], NULL)) >= 0 &&
		    (h2 = hexval((unsigned char)src[i + 2], NULL)) >= 0) {
			dst[o++] = (unsigned char)(h1 << 4 | h2);
			i += 2;
		} else {
			if (src[i] == '%')
				*flags |= DECODE_P_SYNTAX;
			dst[o++] = (unsigned char)src[i];
		}
	}
	return o;
}

static struct decode_param *
final_find(struct decode_field *f, const char *name, bool ext)
{
	for (unsigned i = 0; i < f->nparams; i++)
		if (f->params[i].ext == ext && strcmp(f->params[i].name, name) == 0)
			return &f->params[i];
	return NULL;
}

static struct decode_param *
final_add(struct decode_field *f, const char *name, bool ext, unsigned *flags)
{
	struct decode_param *p = final_find(f, name, ext);

	if (p) {
		p->flags |= DECODE_P_DUP;
		*flags |= DECODE_P_DUP;
		return NULL;
	}
	if (f->nparams == DECODE_PARAMS_MAX) {
		*flags |= DECODE_P_TOO_MANY;
		return NULL;
	}
	p = &f->params[f->nparams++];
	memset(p, 0, sizeof(*p));
	memcpy(p->name, name, strlen(name) + 1);
	p->ext = ext;
	return p;
}

/* Convert raw octets in cs into the store as the param's value. */
static void
final_value(struct decode_param *p, struct store *s, const char *cs, const unsigned char *raw,
    size_t n, unsigned *flags)
{
	size_t room = s->size - s->used;
	unsigned cf = 0;

	if (room == 0) {
		p->value = "";
		p->len = 0;
		p->flags |= DECODE_P_TRUNCATED;
		*flags |= p->flags;
		return;
	}
	p->value = s->buf + s->used;
	p->len = decode_charset(cs, raw, n, s->buf + s->used, room, &cf);
	s->used += p->len + 1;
	if (cf & DECODE_F_TRUNCATED)
		p->flags |= DECODE_P_TRUNCATED;
	if (cf & (DECODE_F_CHARSET | DECODE_F_INVALID))
		p->flags |= DECODE_P_CHARSET;
	if (cf & DECODE_F_NUL)
		p->flags |= DECODE_P_NUL;
	*flags |= p->flags;
}

/* "charset'lang'rest": the charset and where the rest starts. */
static size_t
split_charset(const char *v, size_t n, char *cs, size_t cssz, unsigned *flags)
{
	const char *q1 = memchr(v, '\'', n), *q2;

	cs[0] = '\0';
	if (q1 == NULL || (q2 = memchr(q1 + 1, '\'', n - (size_t)(q1 + 1 - v))) == NULL) {
		*flags |= DECODE_P_2231_CHARSET;
		return 0;
	}
	if ((size_t)(q1 - v) >= cssz) {
		*flags |= DECODE_P_2231_CHARSET;
	} else {
		memcpy(cs, v, (size_t)(q1 - v));
		cs[q1 - v] = '\0';
	}
	if (cs[0] && cs_lookup(cs) == CS_BAD)
		*flags |= DECODE_P_2231_CHARSET;
	return (size_t)(q2 + 1 - v);
}

static void
assemble(struct decode_field *f, struct raw_param *raw, unsigned nraw, struct store *s)
{
	for (unsigned i = 0; i < nraw; i++) {
		struct raw_param *r = &raw[i];
		struct decode_param *p;
		char cs[48];

		if (r->name[0] == '\0')
			continue; /* consumed by an earlier section group */
		if (r->section < 0 && !r->ext) {
			p = final_add(f, r->name, false, &f->flags);
			if (p == NULL)
				continue;
			p->quoted = r->quoted;
			p->flags |= r->flags;
			/*
			 * RFC 6532 UTF-8, or legacy raw octets: read as
			 * windows-1252 then (flagged), as mail readers fall
			 * back to, rather than as replacement characters.
			 */
			if (decode_utf8_valid(r->value, r->len)) {
				final_value(p, s, NULL, (const unsigned char *)r->value, r->len,
				    &f->flags);
			} else {
				p->flags |= DECODE_P_CHARSET;
				final_value(p, s, "windows-1252", (const unsigned char *)r->value, r->len,
				    &f->flags);
			}
			continue;
		}
		if (r->section < 0) {
			/* "name*=charset'lang'%XX" */
			unsigned fl = r->flags;
			size_t skip = split_charset(r->value, r->len, cs, sizeof(cs), &fl);
			unsigned char *tmp = (unsigned char *)(uintptr_t)r->value + skip;
			size_t n = pct_decode(r->value + skip, r->len - skip, tmp, &fl);

			p = final_add(f, r->name, true, &f->flags);
			if (p == NULL)
				continue;
			p->flags |= fl;
			f->flags |= fl;
			final_value(p, s, cs, tmp, n, &f->flags);
			continue;
		}

		/*
		 * Continuations "name*0", "name*1*", ...: gather the group in
		 * section order, stop at the first gap (RFC 2231 3), decode the
		 * extended sections, then convert the whole.
		 */
		char name[DECODE_PNAME_MAX];
		int maxsec = -1;
		unsigned fl = 0;
		struct raw_param *bysec[DECODE_RAW_MAX];

		memcpy(name, r->name, sizeof(name));
		memset(bysec, 0, sizeof(bysec));
		for (unsigned j = i; j < nraw; j++) {
			struct raw_param *q = &raw[j];

			if (q->section < 0 || strcmp(q->name, name) != 0)
				continue;
			if (q->section >= DECODE_RAW_MAX || bysec[q->section]) {
				fl |= DECODE_P_2231_GAP;
			} else {
				bysec[q->section] = q;
				if (q->section > maxsec)
					maxsec = q->section;
			}
			fl |= q->flags;
			q->name[0] = '\0';
		}
		p = final_add(f, name, true, &f->flags);
		if (p == NULL)
			continue;
		cs[0] = '\0';
		/* The sections' octets go to the store, then get converted
		 * from there to a fresh place in the store. */
		size_t start = s->used, n = 0;
		for (int k = 0; k <= maxsec; k++) {
			struct raw_param *q = bysec[k];
			size_t skip = 0, m;
			unsigned char *dst;

			if (q == NULL) {
				fl |= DECODE_P_2231_GAP;
				break;
			}
			if (k == 0 && q->ext)
				skip = split_charset(q->value, q->len, cs, sizeof(cs), &fl);
			dst = (unsigned char *)store_take(s, q->len - skip);
			if (dst == NULL) {
				fl |= DECODE_P_TRUNCATED;
				break;
			}
			if (q->ext) {
				m = pct_decode(q->value + skip, q->len - skip, dst, &fl);
			} else {
				memcpy(dst, q->value + skip, q->len - skip);
				m = q->len - skip;
			}
			s->used -= q->len - skip - m;
			n += m;
			if (q->quoted)
				p->quoted = true;
		}
		p->flags |= fl;
		f->flags |= fl;
		final_value(p, s, cs, (const unsigned char *)s->buf + start, n, &f->flags);
	}
}

void
decode_field(const char *in, size_t len, struct decode_field *f, char *store, size_t storesz)
{
	struct raw_param raw[DECODE_RAW_MAX];
	unsigned nraw = 0;
	struct store s = { store, storesz, 0 };
	size_t i, v = 0;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < len; i++)
		if ((unsigned char)in[i] >= 0x80)
			f->flags |= DECODE_P_8BIT;

	/* the leading token: "text/plain", "attachment", "base64" */
	i = skip_cfws(in, len, 0, &f->flags);
	while (i < len && in[i] != ';' && in[i] != '(' && !is_wsp((unsigned char)in[i])) {
		char c = in[i++];

		if (v + 1 < sizeof(f->value))
			f->value[v++] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
		else
			f->flags |= DECODE_P_TRUNCATED;
	}
	f->value[v] = '\0';
	i = skip_cfws(in, len, i, &f->flags);

	while (i < len) {
		struct raw_param *r;
		size_t a0, an, v0, vn;
		bool quoted = false;
		unsigned pf = 0;

		if (in[i] != ';') {
			/* "text/plain charset=x", or junk after a value */
			f->flags |= nraw == 0 && f->nparams == 0 ? DECODE_P_VALUE_JUNK : DECODE_P_JUNK;
			while (i < len && in[i] != ';')
				i++;
			continue;
		}
		i = skip_cfws(in, len, i + 1, &f->flags);
		if (i >= len || in[i] == ';')
			continue; /* "a;" or "a;;b": nothing to see */
		a0 = i;
		while (i < len && !is_tspecial((unsigned char)in[i]))
			i++;
		an = i - a0;
		i = skip_cfws(in, len, i, &f->flags);
		if (an == 0 || i >= len || in[i] != '=') {
			f->flags |= DECODE_P_SYNTAX;
			while (i < len && in[i] != ';')
				i++;
			continue;
		}
		i = skip_cfws(in, len, i + 1, &f->flags);
		if (i < len && in[i] == '"') {
			quoted = true;
			v0 = ++i;
			while (i < len && in[i] != '"') {
				if (in[i] == '\\' && i + 1 < len) {
					pf |= DECODE_P_ESCAPE;
					i++;
				}
				i++;
			}
			vn = i - v0;
			if (i >= len) {
				pf |= DECODE_P_UNTERMINATED;
			} else {
				i = skip_cfws(in, len, i + 1, &f->flags);
				if (i < len && in[i] != ';')
					pf |= DECODE_P_JUNK; /* "abc"def: where does it end? */
			}
		} else {
			v0 = i;
			while (i < len && !is_tspecial((unsigned char)in[i]) && in[i] != '(')
				i++;
			vn = i - v0;
			size_t after = skip_cfws(in, len, i, &pf);
			if (after < len && in[after] != ';') {
				/*
				 * "name=my file.exe": readers take everything up
				 * to ';', and so do we; quotes or comments in
				 * there make the reading a guess.
				 */
				size_t e = i;

				pf &= ~(unsigned)DECODE_P_COMMENT;
				while (e < len && in[e] != ';') {
					if (in[e] == '"' || in[e] == '(')
						pf |= DECODE_P_JUNK;
					e++;
				}
				while (e > i && is_wsp((unsigned char)in[e - 1]))
					e--;
				vn = e - v0;
				pf |= DECODE_P_LOOSE;
				i = e;
			} else {
				i = after;
			}
			/* tspecials a token cannot hold, except the separator */
			for (size_t k = v0; k < v0 + vn && !(pf & DECODE_P_LOOSE); k++)
				if (is_tspecial((unsigned char)in[k]))
					pf |= DECODE_P_LOOSE;
		}
		if (nraw == DECODE_RAW_MAX) {
			f->flags |= DECODE_P_TOO_MANY;
			while (i < len && in[i] != ';')
				i++;
			continue;
		}
		r = &raw[nraw++];
		memset(r, 0, sizeof(*r));
		parse_attr(in + a0, an, r, &pf);
		r->quoted = quoted;
		r->value = store_raw(&s, in + v0, vn, quoted, &r->len, &pf);
		r->flags = pf;
		f->flags |= pf;
		while (i < len && in[i] != ';')
			i++; /* after junk: on to the next parameter */
	}
	assemble(f, raw, nraw, &s);
}

const struct decode_param *
decode_field_param(const struct decode_field *f, const char *name, bool ext)
{
	for (unsigned i = 0; i < f->nparams; i++)
		if (f->params[i].ext == ext && strcmp(f->params[i].name, name) == 0)
			return &f->params[i];
	return NULL;
}
