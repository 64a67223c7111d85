/*
 * mime - a streaming MIME parser with bounded memory, for inspection.
 *
 * The engine feeds it the message exactly as the destination receives it
 * (unstuffed, CRLF lines), in whatever pieces it arrives, and the parser
 * calls back with events, in message order:
 *
 *   HEADER      one header field of a part, unfolded (CRLF before WSP
 *               removed), with its byte range in the message
 *   PART_BEGIN  a part's header section is complete: declared type,
 *               transfer encoding, disposition, decoded file names
 *   BODY        decoded octets of a leaf part (base64 and quoted-printable
 *               decoded; 7bit/8bit/binary passed through)
 *   PART_END    the part is over: its byte range in the message
 *   ANOMALY     something odd, with its class (below); once per part and code
 *
 * Part 0 is the message itself.  A multipart's children, and the message
 * inside a message/rfc822 part (also message/global and message/news,
 * which readers open the same way), are parts of their own (depth + 1); their
 * HEADER events come before their PART_BEGIN.  Multipart containers and
 * message/rfc822 containers get no BODY events: their leaves do.  The
 * preamble and epilogue of a multipart are skipped.
 *
 * Byte ranges: [off_start, off_end) of a part runs from the first octet of
 * its header section to the octet before the CRLF that precedes the next
 * delimiter (RFC 2046 5.1.1: that CRLF belongs to the delimiter) -- so the
 * engine strips a part by replacing exactly that range with a new part
 * ("Content-Type: text/plain" CRLF CRLF deny text, no trailing CRLF).
 * off_body is where the body starts (never after off_end).  Part 0 spans
 * the whole message.
 *
 * Memory: everything is allocated by mime_new() from the limits (about
 * 5 * max_field + 19 KiB + (max_depth + 1) * 2.1 KiB; 96 KiB with the
 * defaults)
 * and never grows: long fields are truncated, long lines are not buffered
 * (a line is held only while it may still be a delimiter, up to
 * MIME_CARRY_MAX octets).  BODY events for 7bit/8bit/binary parts point
 * into the caller's input (no copy); decoded data is batched in a 16 KiB
 * buffer, so there is no per-byte or per-line callback.
 *
 * Anomalies have a class:
 *  - AMBIGUOUS: two mail readers (or a reader and a scanner) could build
 *    different structure or content from these bytes.  These are the
 *    historical filter bypasses; the engine applies the action's
 *    "ambiguous" setting (default: deny inbound), never a silent pass.
 *  - MALFORMED: not what the RFCs say, but every reader we know of takes
 *    it the same way we do.  Logged.
 *  - LIMIT: a bound was hit; what follows the bound is not fully
 *    inspected (see each code).  The engine applies its limit action.
 * The table in mime.c (and mime_anomaly_name / mime_anomaly_text) gives
 * each code's class and a one-line reason for the log.
 */
#ifndef SMTPGW_MIME_H
#define SMTPGW_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIME_DEPTH_CAP 64     /* max_depth may not exceed this */
#define MIME_BOUNDARY_MAX 200 /* RFC 2046 allows 70; up to this we still follow it */
#define MIME_CARRY_MAX 1024   /* longest line that can be a delimiter (with padding) */
#define MIME_TYPE_MAX 128     /* "type/subtype" */
#define MIME_CHARSET_MAX 40
#define MIME_NAME_MAX 256     /* one decoded file name, UTF-8, with NUL */
#define MIME_NAMES_MAX 6      /* distinct names a part may carry */
#define MIME_OUT_SIZE 16384   /* decoded data is handed over in pieces of at most this */

struct mime_limits {
	unsigned max_depth;  /* nesting of multiparts and attached messages; part 0 is depth 0 */
	unsigned max_parts;  /* parts in the message, part 0 included */
	size_t max_field;    /* one unfolded header field */
	size_t max_header;   /* one header section */
};

/* 16, 1000, 8 KiB, 256 KiB. */
extern const struct mime_limits mime_default_limits;

enum mime_cte {
	MIME_CTE_7BIT, /* also when absent */
	MIME_CTE_8BIT,
	MIME_CTE_BINARY,
	MIME_CTE_QP,
	MIME_CTE_BASE64,
	MIME_CTE_UNKNOWN, /* passed through as binary (and flagged) */
};

enum mime_disp {
	MIME_DISP_NONE,
	MIME_DISP_INLINE,
	MIME_DISP_ATTACHMENT,
	MIME_DISP_OTHER,
};

enum mime_class {
	MIME_CLASS_AMBIGUOUS,
	MIME_CLASS_MALFORMED,
	MIME_CLASS_LIMIT,
};

/*
 * Anomalies.  Why each AMBIGUOUS one is ambiguous:
 */
enum mime_anomaly {
	/* -- ambiguous: structure -- */
	MIME_A_CT_DUP,          /* two Content-Type fields: readers take the first or the last */
	MIME_A_CTE_DUP,         /* two Content-Transfer-Encoding fields: same */
	MIME_A_CD_DUP,          /* two Content-Disposition fields: same (names!) */
	MIME_A_CT_SYNTAX,       /* Content-Type that is not type/subtype, or junk before the
	                         * first ';': text/plain to the RFC, a guess to others */
	MIME_A_BOUNDARY_DUP,    /* two boundary= parameters: which one delimits? */
	MIME_A_BOUNDARY_QUOTE,  /* boundary with quoted pairs, an unterminated quote, or text
	                         * after the closing quote: readers unquote differently */
	MIME_A_BOUNDARY_DASHES, /* boundary ends in "--": "--b--" is both b's open delimiter and
	                         * the close delimiter of a boundary "b" to a reader that
	                         * strips "--" first */
	MIME_A_BOUNDARY_SPACE,  /* boundary ends in a space (RFC 2046 forbids it): readers that
	                         * trim it and readers that do not see different delimiters */
	MIME_A_BOUNDARY_CHARS,  /* boundary with octets outside RFC 2046 bchars */
	MIME_A_BOUNDARY_PREFIX, /* nested boundary is a prefix of an enclosing one (or the
	                         * reverse): a line can delimit both levels */
	MIME_A_BOUNDARY_MISSING, /* multipart without a boundary: some readers guess one from
	                         * the body; here the body is one opaque leaf */
	MIME_A_DELIM_WSP,       /* delimiter followed by whitespace: RFC 2046 allows it, readers
	                         * that compare the whole line miss the delimiter */
	MIME_A_DELIM_JUNK,      /* a line that starts with a delimiter and goes on with other
	                         * text: not a delimiter to the RFC, one to prefix matchers */
	MIME_A_DELIM_AFTER_CLOSE, /* a delimiter again after the close delimiter: epilogue to
	                         * the RFC, more parts to readers that keep going */
	MIME_A_NO_CLOSE,        /* multipart without its close delimiter: where the last part
	                         * ends is up to the reader */
	MIME_A_HDR_NO_COLON,    /* a part header line that is no field (missing blank line):
	                         * here the body starts at that line; others skip it */
	MIME_A_HDR_DELIM,       /* a delimiter inside a part's header section */
	MIME_A_HDR_WSP_LINE,    /* a whitespace-only line in a header section: the end of the
	                         * header to some readers, a continuation to others */
	MIME_A_HDR_WSP_COLON,   /* "Content-Type : x": obsolete syntax some readers ignore */
	MIME_A_HDR_8BIT,        /* 8-bit octets in a field name: no field to RFC 5322 readers,
	                         * a field to lenient ones */
	MIME_A_HDR_NUL,         /* NUL in a header: C-string readers stop there */
	MIME_A_BARE_CR,         /* CR without LF in a header or delimiter line */
	MIME_A_BARE_LF,         /* LF without CR in a header or delimiter line */
	MIME_A_COMMENT,         /* an RFC 822 comment in a MIME field: "(boundary=x)" */
	MIME_A_PARAM,           /* a duplicate parameter, or quoting/continuation trouble in
	                         * one (RFC 2231 sections missing) */
	MIME_A_NAME_CONFLICT,   /* a part names two different files (filename vs filename*,
	                         * name vs filename): every name is reported */
	MIME_A_NAME_NUL,        /* a file name holds a NUL ("a.exe%00.txt"): both readings
	                         * are reported */
	/* -- ambiguous: content -- */
	MIME_A_CTE_UNKNOWN,     /* unknown transfer encoding: passed through undecoded */
	MIME_A_CTE_COMPOSITE,   /* an encoded multipart or message/rfc822: RFC readers parse
	                         * the raw body, others decode first; here it is decoded and
	                         * handed over as one leaf */
	MIME_A_B64_BAD,         /* base64 with octets outside the alphabet or data after the
	                         * padding: decoders skip, stop or fail */
	MIME_A_QP_BAD,          /* quoted-printable '=' not followed by hex or a line end */
	MIME_A_PARTIAL,         /* message/partial: the content is split over messages */
	/* -- malformed -- */
	MIME_A_NO_MIME_VERSION, /* MIME fields without MIME-Version */
	MIME_A_HDR_SYNTAX,      /* a field name with invalid octets or an empty one */
	MIME_A_HDR_UTF8,        /* 8-bit text in a header value (RFC 6532 UTF-8 or legacy
	                         * octets); in a boundary, type or encoding it is flagged
	                         * as such (BOUNDARY_CHARS, CT_SYNTAX, CTE_UNKNOWN) */
	MIME_A_HDR_UNTERMINATED, /* a part's header section ended with the message */
	MIME_A_BOUNDARY_LONG,   /* boundary of 71..MIME_BOUNDARY_MAX octets */
	MIME_A_8BIT_BODY,       /* 8-bit data in a 7bit body */
	MIME_A_NUL_BODY,        /* NUL in a 7bit/8bit body */
	MIME_A_B64_PARTIAL,     /* base64 ended inside a group */
	MIME_A_QP_SLOPPY,       /* lowercase hex, long whitespace runs */
	MIME_A_PARAM_SLOPPY,    /* unquoted value with spaces, bad %XX, charset trouble */
	MIME_A_ENCODED_WORD,    /* a malformed RFC 2047 word in a file name */
	/* -- limits -- */
	MIME_L_DEPTH,           /* nesting too deep: that container is one opaque leaf */
	MIME_L_PARTS,           /* too many parts: the rest of the message is not parsed */
	MIME_L_FIELD,           /* a header field longer than max_field: truncated */
	MIME_L_HEADER,          /* a header section longer than max_header */
	MIME_L_BOUNDARY,        /* boundary longer than MIME_BOUNDARY_MAX: one opaque leaf */
	MIME_L_PARAMS,          /* too many parameters, or a value that did not fit */
	MIME_L_NAME,            /* a file name truncated to MIME_NAME_MAX or names dropped */
	MIME_A_COUNT
};

struct mime_part {
	unsigned index;  /* 0 = the message; in order of appearance */
	unsigned parent; /* index of the enclosing part (0 for part 0) */
	unsigned depth;
	char type[MIME_TYPE_MAX]; /* lowercase "type/subtype"; the default when absent/invalid */
	bool type_declared;       /* a valid Content-Type gave it */
	char charset[MIME_CHARSET_MAX];
	enum mime_cte cte;
	enum mime_disp disp;
	/* File names from Content-Disposition filename / filename* and
	 * Content-Type name / name*, decoded (RFC 2231, RFC 2047) to UTF-8;
	 * distinct, preferred first (filename*, filename, name*, name). */
	char names[MIME_NAMES_MAX][MIME_NAME_MAX];
	unsigned nnames;
	bool multipart;   /* parsed as a multipart container */
	bool message;     /* parsed as an attached message (its child is the message) */
	uint64_t off_start, off_body, off_end; /* off_end: valid at PART_END */
	uint64_t raw_size;     /* body octets as transmitted (leaves) */
	uint64_t decoded_size; /* body octets after decoding (leaves) */
	bool skipped;          /* at PART_END: the caller wanted less (mime_want) and the
	                        * rest was not decoded */
	uint64_t anomalies;    /* bit (1 << code) for each code seen in this part */
};

enum mime_event_kind {
	MIME_EV_HEADER,
	MIME_EV_PART_BEGIN,
	MIME_EV_BODY,
	MIME_EV_PART_END,
	MIME_EV_ANOMALY,
};

struct mime_event {
	enum mime_event_kind kind;
	const struct mime_part *part; /* valid during the callback only */
	/* HEADER: name (trimmed), value (unfolded, trimmed), raw byte range of
	 * the field in the message [off, off_end) including its final CRLF. */
	const char *name, *value;
	size_t namelen, valuelen;
	bool truncated; /* the field was longer than max_field */
	/* BODY */
	const unsigned char *data;
	size_t len;
	/* ANOMALY */
	enum mime_anomaly anomaly;
	/* HEADER: start of the field; ANOMALY: where it was seen (approximate
	 * for body and decoding anomalies, which are reported at the part's end). */
	uint64_t off, off_end;
};

typedef void mime_cb(void *arg, const struct mime_event *ev);

struct mime_parser;

/* Limits are clamped to sane ranges (max_depth to MIME_DEPTH_CAP, ...). */
struct mime_parser *mime_new(const struct mime_limits *lim, mime_cb *cb, void *arg);
void mime_free(struct mime_parser *p);
/* Ready for a new message (same limits and callback), without reallocating. */
void mime_reset(struct mime_parser *p);
/* The next len octets of the message; any cut is fine. */
void mime_feed(struct mime_parser *p, const char *data, size_t len);
/* End of message: flushes decoders, closes open parts (NO_CLOSE), PART_END for all. */
void mime_finish(struct mime_parser *p);
/*
 * How many more decoded octets the caller wants from the leaf being read
 * (every leaf starts at UINT64_MAX: all of it).  Call it from the leaf's
 * PART_BEGIN or BODY events: a leaf hands over at least that many (a few
 * more with base64) in BODY events, then the rest of its body is only
 * scanned for delimiters, not decoded -- which is what makes inspection
 * cheap when only the start of each part is looked at (libmagic), and
 * costs nothing in structure checks.  When the wish is met the decoded
 * data is flushed at once, so a BODY event is the moment to ask for more
 * (an archive found in the first octets); once octets were skipped the
 * leaf stays skipped.  The decoders' anomalies then cover only the
 * decoded part (mime_part.skipped tells).
 */
void mime_want(struct mime_parser *p, uint64_t octets);

/* Union of (1 << code) over the whole message so far. */
uint64_t mime_anomalies(const struct mime_parser *p);
/* Octets fed so far. */
uint64_t mime_offset(const struct mime_parser *p);

enum mime_class mime_anomaly_class(enum mime_anomaly a);
/* "boundary-dup" */
const char *mime_anomaly_name(enum mime_anomaly a);
/* "two boundary parameters" */
const char *mime_anomaly_text(enum mime_anomaly a);
/* The mask of all codes of one class. */
uint64_t mime_class_mask(enum mime_class c);
const char *mime_cte_name(enum mime_cte c);

#endif
