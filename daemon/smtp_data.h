/*
 * smtp_data - the message framer: splits a message stream into lines one
 * at a time, strictly.
 *
 * DATA mode (RFC 5321 4.1.1.4, 4.5.2): only CRLF "." CRLF ends the message
 * -- a "." line counts as the end only when it and the line before it are
 * both ended by CRLF.  Leading dots are unstuffed on receipt; the caller
 * re-stuffs on output, so what the destination receives is exactly the
 * line sequence that was inspected.  This is what defeats SMTP smuggling:
 * "\n.\n", "\n.\r\n", "\r.\n", "\r\n.\r" ... are never an end here.
 *
 * RAW mode (BDAT chunks converted to DATA): no unstuffing, no end marker;
 * the caller ends the message.
 *
 * Bare CR, bare LF and NUL are flagged.  With DATA_BARE_NORMALIZE a bare CR
 * or LF ends the line (it becomes CRLF on output); with DATA_BARE_REJECT
 * the message is refused at its end.  NUL always refuses the message.
 * Lines longer than max_line octets (without CRLF) and messages larger
 * than max_size refuse the message; their bytes are discarded, never
 * buffered, so memory stays bounded whatever the input.
 */
#ifndef SMTPGW_SMTP_DATA_H
#define SMTPGW_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum data_bare_policy {
	DATA_BARE_REJECT,
	DATA_BARE_NORMALIZE,
};

#define DATA_F_BARE_LF 0x01u
#define DATA_F_BARE_CR 0x02u
#define DATA_F_NUL 0x04u
#define DATA_F_LONG_LINE 0x08u
#define DATA_F_TOO_BIG 0x10u

enum data_status {
	DATA_NEED_MORE, /* no complete line in the input; *consumed may be > 0 */
	DATA_LINE,      /* *line / *linelen: one unstuffed line without its end */
	DATA_SKIP,      /* bytes consumed, nothing to emit (overlong line) */
	DATA_END,       /* the end-of-data line was consumed */
};

struct data_framer {
	enum data_bare_policy policy;
	bool raw;
	size_t max_line;
	uint64_t max_size;
	uint64_t size;  /* message octets so far, as delivered (CRLF lines) */
	uint64_t lines;
	unsigned flags; /* DATA_F_* seen so far */
	bool prev_crlf; /* the last line ended with CRLF (true at start) */
	bool in_long;   /* discarding the rest of an overlong line */
	/* data_scan state: BDAT chunks forwarded as they are */
	bool scan_cr;
	size_t scan_len;
};

void data_init(struct data_framer *f, enum data_bare_policy policy, bool raw, size_t max_line,
    uint64_t max_size);
enum data_status data_next(struct data_framer *f, const char *in, size_t len,
    size_t *consumed, const char **line, size_t *linelen);
/*
 * The body's fast path (DATA mode): the length of the longest run of whole
 * lines at the head of in, at most max octets, that need no framing
 * decision -- each ended by CRLF, without another CR or a NUL, within the
 * line limit, not beginning with a dot, not making the message too big.
 * Such lines travel byte for byte (nothing to unstuff, nothing to
 * re-stuff), so the caller may pass the run on with one copy instead of a
 * line at a time; the framer counts them as data_next would have.  0: the
 * next line is data_next's.
 */
size_t data_run(struct data_framer *f, const char *in, size_t len, size_t max);
/* RAW mode: at the last chunk, emit what is left as a final line. */
enum data_status data_finish_raw(struct data_framer *f, const char *in, size_t len,
    size_t *consumed, const char **line, size_t *linelen);
/*
 * BDAT chunks forwarded to a CHUNKING destination keep their bytes; they
 * are only checked (bare CR/LF, NUL, line length, size), incrementally
 * across chunks.  data_scan_end() at the last chunk flags a trailing CR.
 */
void data_scan(struct data_framer *f, const char *p, size_t n);
void data_scan_end(struct data_framer *f);
/* Flags that refuse the message under the framer's policy. */
bool data_refused(const struct data_framer *f);
/* The reply for a refused message (static, without CRLF). */
const char *data_refusal_reply(const struct data_framer *f);

#endif
