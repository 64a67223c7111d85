/*
 * decode - the content decoders of the inspection modules: streaming
 * base64 and quoted-printable (RFC 2045 6.7, 6.8), character sets to
 * UTF-8, RFC 2047 encoded words, and structured MIME field values with
 * their parameters (RFC 2045 5.1, RFC 2231 continuations and charsets).
 * Pure: no I/O, no allocation except inside iconv for uncommon charsets.
 *
 * Streaming decoders keep their state across calls, so a message can be
 * cut anywhere between two calls and the output is the same as if it had
 * been decoded in one piece.  Their output per call is bounded by a macro
 * of the input length (DECODE_B64_OUT, DECODE_QP_OUT): the caller owns
 * the output buffer and sizes it once.
 *
 * Nothing is refused here: every oddity is decoded the most common way and
 * reported in a flag (DECODE_F_*), so the caller (mime.c) can tell input
 * that decoders disagree on -- the bypasses scanners have suffered from --
 * from input that is merely untidy.
 */
#ifndef SMTPGW_DECODE_H
#define SMTPGW_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Base64 oddities. */
#define DECODE_F_B64_BAD_CHAR 0x0001u  /* a byte outside the alphabet (not CR, LF, SP, HT): skipped */
#define DECODE_F_B64_AFTER_PAD 0x0002u /* alphabet after '=' padding: decoded as a new group */
#define DECODE_F_B64_PARTIAL 0x0004u   /* the data ended inside a 4-character group */
#define DECODE_F_B64_BAD_PAD 0x0008u   /* '=' where a group cannot end: skipped */
/* Quoted-printable oddities. */
#define DECODE_F_QP_BAD_ESCAPE 0x0010u /* '=' not followed by 2 hex digits or a line end: literal */
#define DECODE_F_QP_LOWER_HEX 0x0020u  /* "=3d": accepted */
#define DECODE_F_QP_LONG_WS 0x0040u    /* a whitespace run longer than DECODE_QP_WS_MAX: kept */
/* Character sets and encoded words. */
#define DECODE_F_CHARSET 0x0100u   /* unknown or unusable charset: bytes taken as UTF-8 */
#define DECODE_F_INVALID 0x0200u   /* invalid sequence replaced by U+FFFD */
#define DECODE_F_TRUNCATED 0x0400u /* output did not fit: cut at a character boundary */
#define DECODE_F_BAD_WORD 0x0800u  /* "=?" that is not a well-formed encoded word: kept */
#define DECODE_F_NUL 0x1000u       /* the decoded text holds a NUL */

/*
 * Streaming base64.  CR, LF, SP and HT are skipped silently; other bytes
 * outside the alphabet are skipped and flagged (RFC 2045 says to ignore
 * them; a decoder that stops there instead sees different content).
 */
struct decode_b64 {
	uint32_t acc;   /* sextets of the current group, most significant first */
	unsigned n;     /* sextets in acc, 0..3 */
	unsigned pad;   /* '=' seen in the current group: 0, 1 or 2 */
	bool done;      /* the last group was padded: the data should end */
	unsigned flags; /* DECODE_F_B64_* */
};

/* Output bound of one decode_b64 call on n input octets. */
#define DECODE_B64_OUT(n) (((n) / 4 + 1) * 3)

void decode_b64_init(struct decode_b64 *d);
size_t decode_b64(struct decode_b64 *d, const char *in, size_t len, unsigned char *out);
/* End of data: emits what an incomplete group holds (at most 2 octets). */
size_t decode_b64_finish(struct decode_b64 *d, unsigned char *out);

/*
 * Streaming quoted-printable.  Trailing whitespace on a line is dropped
 * (it may have been added in transport); "=" CRLF (or "=" LF, or "=" WSP
 * CRLF) is a soft line break; an invalid escape is kept literally (RFC
 * 2045 6.7 note 1).  Line ends are kept as they are (CRLF or LF).
 */
#define DECODE_QP_WS_MAX 64
struct decode_qp {
	unsigned state;
	unsigned char hex1; /* first hex digit after '=' */
	unsigned nws;       /* pending whitespace, ws[0..nws) */
	unsigned char ws[DECODE_QP_WS_MAX];
	unsigned flags;     /* DECODE_F_QP_* */
};

#define DECODE_QP_OUT(n) ((n) + DECODE_QP_WS_MAX + 4)

void decode_qp_init(struct decode_qp *d);
size_t decode_qp(struct decode_qp *d, const char *in, size_t len, unsigned char *out);
size_t decode_qp_finish(struct decode_qp *d, unsigned char *out);

/*
 * Text in a charset to UTF-8, NUL-terminated, always valid UTF-8: invalid
 * input becomes U+FFFD.  UTF-8, US-ASCII, ISO-8859-1 and windows-1252 are
 * converted here; any other name goes through iconv (glibc loads its gconv
 * module; when that fails, DECODE_F_CHARSET and the bytes are read as
 * UTF-8).  An empty or NULL charset means UTF-8.  Output is cut at a
 * character boundary when outsz is too small.  Returns the length
 * (embedded NULs are kept and flagged DECODE_F_NUL).  outsz >= 1.
 */
size_t decode_charset(const char *charset, const unsigned char *in, size_t len, char *out,
    size_t outsz, unsigned *flags);

/*
 * RFC 2047 encoded words ("=?charset?B|Q?text?=") in a header value, to
 * UTF-8.  Decoded leniently, the way mail readers show them: whitespace
 * between adjacent encoded words is dropped, words inside other text are
 * decoded too.  Text outside words is kept (made valid UTF-8).  Malformed
 * words stay as they are, flagged.  NUL-terminated; returns the length.
 */
size_t decode_2047(const char *in, size_t len, char *out, size_t outsz, unsigned *flags);

/* Whether p[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool decode_utf8_valid(const void *p, size_t n);
/* Octets of the valid UTF-8 character at p[0..n), 0 if there is none (n >= 1). */
size_t decode_utf8_seq(const void *p, size_t n);

/*
 * A structured MIME field value: "value *(; attribute=value)" with RFC 822
 * comments, quoted strings and RFC 2231 continuations ("name*0", "name*1*")
 * and charsets ("name*=utf-8''%E2%82%AC").  The result holds the leading
 * token (lowercased, e.g. "multipart/mixed") and the parameters, each one
 * assembled and decoded to UTF-8 (a plain value that is not UTF-8 is read
 * as windows-1252, flagged DECODE_P_CHARSET).  A "name*" parameter and a
 * plain "name" are kept as two entries (ext differs).
 *
 * Syntax trouble is reported in flags; the ones mail readers disagree on
 * (which value wins, where a value ends) are DECODE_P_AMBIGUOUS.
 */
#define DECODE_P_DUP 0x0001u         /* the same parameter twice (first one kept) */
#define DECODE_P_ESCAPE 0x0002u      /* backslash escape in a quoted string */
#define DECODE_P_UNTERMINATED 0x0004u /* quoted string or comment without its end */
#define DECODE_P_JUNK 0x0008u        /* text after a quoted string, or before '=' */
#define DECODE_P_COMMENT 0x0010u     /* an RFC 822 comment */
#define DECODE_P_2231_GAP 0x0020u    /* continuation sections missing or repeated */
#define DECODE_P_2231_CHARSET 0x0040u /* extended value without a usable charset'lang' */
#define DECODE_P_TOO_MANY 0x0080u    /* more parameters than fit: the rest ignored */
#define DECODE_P_TRUNCATED 0x0100u   /* a value or name did not fit */
#define DECODE_P_SYNTAX 0x0200u      /* a parameter without '=', an empty name... */
#define DECODE_P_LOOSE 0x0400u       /* unquoted value with spaces or specials */
#define DECODE_P_8BIT 0x0800u        /* raw 8-bit octets */
#define DECODE_P_CHARSET 0x1000u     /* charset conversion trouble (see decode_charset) */
#define DECODE_P_NUL 0x2000u         /* a decoded value holds a NUL */
#define DECODE_P_VALUE_JUNK 0x4000u  /* text between the leading token and the first ';' */
#define DECODE_P_AMBIGUOUS (DECODE_P_DUP | DECODE_P_ESCAPE | DECODE_P_UNTERMINATED | \
    DECODE_P_JUNK | DECODE_P_COMMENT | DECODE_P_2231_GAP | DECODE_P_NUL | \
    DECODE_P_VALUE_JUNK)

#define DECODE_VALUE_MAX 128 /* the leading token */
#define DECODE_PNAME_MAX 64  /* a parameter name */
#define DECODE_PARAMS_MAX 24 /* parameters after assembly */
#define DECODE_RAW_MAX 64    /* parameter sections before assembly */

struct decode_param {
	char name[DECODE_PNAME_MAX]; /* lowercased, without the RFC 2231 "*" suffixes */
	bool ext;                    /* came from "name*" / "name*0*" (RFC 2231) */
	bool quoted;
	const char *value;           /* NUL-terminated UTF-8, in the caller's store */
	size_t len;
	unsigned flags;              /* DECODE_P_* that concern this parameter */
};

struct decode_field {
	char value[DECODE_VALUE_MAX];
	struct decode_param params[DECODE_PARAMS_MAX];
	unsigned nparams;
	unsigned flags; /* DECODE_P_*: the union over the field */
};

/* Store size that always holds every value of a field of len octets. */
#define DECODE_STORE_SIZE(len) (4 * (len) + 256)

/*
 * Parse in[0..len) into f; parameter values go into store.  Never fails:
 * what does not parse is flagged and skipped.
 */
void decode_field(const char *in, size_t len, struct decode_field *f, char *store,
    size_t storesz);
/* The first parameter called name (lowercase) with the given ext, or NULL. */
const struct decode_param *decode_field_param(const struct decode_field *f, const char *name,
    bool ext);

#endif
