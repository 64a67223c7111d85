/*
 * smtp_data - incremental, strict message line framer (see smtp_data.h).
 */
#include <string.h>

#include "smtp_data.h"

void
data_init(struct data_framer *f, enum data_bare_policy policy, bool raw, size_t max_line,
    uint64_t max_size)
{
	memset(f, 0, sizeof(*f));
	f->policy = policy;
	f->raw = raw;
	f->max_line = max_line;
	f->max_size = max_size;
	f->prev_crlf = true;
}

static enum data_status
emit(struct data_framer *f, const char *in, size_t n, bool crlf, const char **line,
    size_t *linelen)
{
	/* Unstuff only at a line start as the client framed it (after CRLF). */
	if (!f->raw && f->prev_crlf && crlf && n == 1 && in[0] == '.') {
		return DATA_END;
	}
	/* A lone '.' not ended by CRLF (bare-newline = normalize) is text, not stuffing. */
	if (!f->raw && f->prev_crlf && n > 1 && in[0] == '.') {
		in++;
		n--;
	}
	f->prev_crlf = crlf;
	f->lines++;
	f->size += n + 2;
	if (f->size > f->max_size)
		f->flags |= DATA_F_TOO_BIG;
	*line = in;
	*linelen = n;
	return DATA_LINE;
}

enum data_status
data_next(struct data_framer *f, const char *in, size_t len, size_t *consumed,
    const char **line, size_t *linelen)
{
	/* A line may hold max_line octets, plus a leading dot if it is stuffed. */
	bool stuffed = !f->raw && f->prev_crlf && len > 0 && in[0] == '.';
	size_t limit = f->max_line + (stuffed ? 1 : 0);
	size_t scan = len < limit + 2 ? len : limit + 2;

	*consumed = 0;
	if (f->in_long) {
		const char *lf = memchr(in, '\n', len);

		if (lf == NULL) {
			/* Keep a trailing CR: it may begin the CRLF that ends the line. */
			*consumed = len > 0 && in[len - 1] == '\r' ? len - 1 : len;
			return *consumed ? DATA_SKIP : DATA_NEED_MORE;
		}
		*consumed = (size_t)(lf - in) + 1;
		f->in_long = false;
		/* the message is refused anyway; what follows is a new line */
		f->prev_crlf = lf > in && lf[-1] == '\r';
		return DATA_SKIP;
	}
	/* Fast path: a CRLF-ended line with no other CR and no NUL in it. */
	const char *lf = memchr(in, '\n', scan);
	if (lf != NULL && lf > in && lf[-1] == '\r') {
		size_t n = (size_t)(lf - in) - 1;

		if (n <= limit && memchr(in, '\r', n) == NULL && memchr(in, '\0', n) == NULL) {
			*consumed = n + 2;
			return emit(f, in, n, true, line, linelen);
		}
	}
	for (size_t i = 0; i < scan; i++) {
		char c = in[i];

		if (c == '\0') {
			f->flags |= DATA_F_NUL;
			continue;
		}
		if (c == '\n') {
			f->flags |= DATA_F_BARE_LF;
			if (i > limit)
				break;
			*consumed = i + 1;
			return emit(f, in, i, false, line, linelen);
		}
		if (c != '\r')
			continue;
		if (i + 1 >= len)
			return DATA_NEED_MORE; /* CR at the end: is an LF next? */
		if (in[i + 1] == '\n') {
			if (i > limit)
				break;
			*consumed = i + 2;
			return emit(f, in, i, true, line, linelen);
		}
		f->flags |= DATA_F_BARE_CR;
		if (f->policy == DATA_BARE_NORMALIZE) {
			if (i > limit)
				break;
			*consumed = i + 1;
			return emit(f, in, i, false, line, linelen);
		}
		/* reject policy: the CR stays in the line; the message is refused */
	}
	if (len <= limit + 1)
		return DATA_NEED_MORE;
	/* No line end within the limit: refuse the message, drop the line. */
	f->flags |= DATA_F_LONG_LINE;
	f->in_long = true;
	/* Keep a CR at the cut: with the LF after it, it ends the line (and
	 * tells the next line it follows a CRLF, so a final dot is seen). */
	*consumed = in[scan - 1] == '\r' ? scan - 1 : scan;
	return DATA_SKIP;
}

size_t
data_run(struct data_framer *f, const char *in, size_t len, size_t max)
{
	uint64_t size = f->size, lines = 0;
	size_t off = 0;

	if (f->raw || f->in_long)
		return 0;
	if (len > max)
		len = max;
	while (off < len) {
		const char *p = in + off, *lf;
		size_t rest = len - off, n;

		/* a dot at a line start may be the end or stuffing: data_next decides */
		if (p[0] == '.')
			break;
		lf = memchr(p, '\n', rest < f->max_line + 2 ? rest : f->max_line + 2);
		if (lf == NULL || lf == p || lf[-1] != '\r')
			break;
		n = (size_t)(lf - p) - 1;
		if (memchr(p, '\r', n) != NULL || memchr(p, '\0', n) != NULL)
			break;
		/* the line that makes the message too big is data_next's to flag */
		if (size + n + 2 > f->max_size)
			break;
		size += n + 2;
		lines++;
		off += n + 2;
	}
	if (off > 0) {
		f->size = size;
		f->lines += lines;
		f->prev_crlf = true;
	}
	return off;
}

enum data_status
data_finish_raw(struct data_framer *f, const char *in, size_t len, size_t *consumed,
    const char **line, size_t *linelen)
{
	*consumed = len;
	if (len == 0 || f->in_long) {
		f->in_long = false;
		return DATA_SKIP;
	}
	/* A chunk that ends without CRLF: the line ends with the message. */
	if (in[len - 1] == '\r') {
		f->flags |= DATA_F_BARE_CR;
		len--;
	}
	if (memchr(in, '\0', len))
		f->flags |= DATA_F_NUL;
	if (len > f->max_line) {
		f->flags |= DATA_F_LONG_LINE;
		return DATA_SKIP; /* refused with the message, never emitted */
	}
	return emit(f, in, len, true, line, linelen);
}

void
data_scan(struct data_framer *f, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (f->scan_cr) {
			f->scan_cr = false;
			if (c == '\n') {
				f->scan_len = 0;
				continue;
			}
			f->flags |= DATA_F_BARE_CR;
			f->scan_len++;
		}
		if (c == '\r') {
			f->scan_cr = true;
			continue;
		}
		if (c == '\n') {
			f->flags |= DATA_F_BARE_LF;
			f->scan_len = 0;
			continue;
		}
		if (c == '\0')
			f->flags |= DATA_F_NUL;
		if (++f->scan_len > f->max_line)
			f->flags |= DATA_F_LONG_LINE;
	}
	f->size += n;
	if (f->size > f->max_size)
		f->flags |= DATA_F_TOO_BIG;
}

void
data_scan_end(struct data_framer *f)
{
	if (f->scan_cr)
		f->flags |= DATA_F_BARE_CR;
	f->scan_cr = false;
}

bool
data_refused(const struct data_framer *f)
{
	unsigned bad = DATA_F_NUL | DATA_F_LONG_LINE | DATA_F_TOO_BIG;

	if (f->policy == DATA_BARE_REJECT)
		bad |= DATA_F_BARE_LF | DATA_F_BARE_CR;
	return (f->flags & bad) != 0;
}

const char *
data_refusal_reply(const struct data_framer *f)
{
	if (f->flags & DATA_F_TOO_BIG)
		return "552 5.3.4 Message size exceeds fixed maximum message size";
	if (f->flags & DATA_F_LONG_LINE)
		return "500 5.5.2 Message line too long";
	if (f->flags & DATA_F_NUL)
		return "554 5.6.0 Message contains NUL characters";
	if (f->flags & (DATA_F_BARE_LF | DATA_F_BARE_CR))
		return "554 5.6.0 Message contains bare CR or LF characters (only CRLF ends a line)";
	return "554 5.6.0 Message refused";
}
