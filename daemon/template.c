/*
 * template - the deny message.  See template.h for the two output forms
 * and why each filter is there.
 */
#include <string.h>

#include "decode.h"
#include "template.h"
#include "util.h"

const char tpl_default[] =
    "The message was not delivered as sent: %(reason)%\n"
    "\n"
    "Content type: %(type)%\n"
    "File name: %(filename)%\n"
    "Virus: %(virus)%\n"
    "Action taken: %(action)%\n"
    "%(recovery)%";

static const char *const var_names[] = { "reason", "type", "filename", "virus", "action",
	"recovery" };

/* Index of the variable named s[0..n), or -1. */
static int
var_index(const char *s, size_t n)
{
	for (unsigned i = 0; i < ARRAY_SIZE(var_names); i++)
		if (strlen(var_names[i]) == n && memcmp(var_names[i], s, n) == 0)
			return (int)i;
	return -1;
}

static const char *
var_value(const struct tpl_vars *v, int i)
{
	const char *const vals[] = { v->reason, v->type, v->filename, v->virus, v->action,
		v->recovery };

	return vals[i] ? vals[i] : "";
}

/* At tpl[i] == '%', tpl[i+1] == '(': the length of "%(name)%", or 0 if unterminated. */
static size_t
var_end(const char *tpl, size_t len, size_t i, size_t *name0, size_t *namen)
{
	for (size_t j = i + 2; j + 1 < len && j < i + 2 + 32; j++) {
		if (tpl[j] == ')' && tpl[j + 1] == '%') {
			*name0 = i + 2;
			*namen = j - (i + 2);
			return j + 2 - i;
		}
	}
	return 0;
}

int
tpl_check(const char *tpl, size_t len, char *err, size_t errsz)
{
	if (len > TPL_SRC_MAX) {
		snprintf(err, errsz, "deny message longer than %d octets", TPL_SRC_MAX);
		return -1;
	}
	if (memchr(tpl, '\0', len)) {
		snprintf(err, errsz, "deny message holds a NUL");
		return -1;
	}
	for (size_t i = 0; i + 1 < len; i++) {
		size_t n0, nn, k;

		if (tpl[i] != '%' || tpl[i + 1] != '(')
			continue;
		k = var_end(tpl, len, i, &n0, &nn);
		if (k == 0) {
			snprintf(err, errsz, "unterminated %%( at offset %zu", i);
			return -1;
		}
		if (var_index(tpl + n0, nn) < 0) {
			snprintf(err, errsz,
			    "unknown variable %%(%.*s)%% at offset %zu (reason, type, filename, "
			    "virus, action, recovery)", (int)nn, tpl + n0, i);
			return -1;
		}
		i += k - 1;
	}
	return 0;
}

struct tw {
	char *out;
	size_t size, len;
	enum tpl_mode mode;
	size_t col;  /* octets in the current line (body modes) */
	bool dash;   /* a '-' opening a line, not written yet */
	bool full;
};

/* All or nothing, so a character is never cut. */
static void
tw_raw(struct tw *w, const char *s, size_t n)
{
	if (w->full || w->len + n + 1 > w->size) {
		w->full = true;
		return;
	}
	memcpy(w->out + w->len, s, n);
	w->len += n;
	w->col += n;
}

static void
tw_flush_dash(struct tw *w)
{
	if (w->dash) {
		w->dash = false;
		tw_raw(w, "-", 1);
	}
}

static void
tw_newline(struct tw *w)
{
	tw_flush_dash(w);
	tw_raw(w, "\r\n", 2);
	if (!w->full)
		w->col = 0;
}

/* One character of n octets. */
static void
tw_put(struct tw *w, const char *s, size_t n)
{
	if (w->mode == TPL_REPLY) {
		tw_raw(w, s, n);
		return;
	}
	if (w->col + n + (w->dash ? 2 : 0) > TPL_LINE_MAX)
		tw_newline(w);
	if (w->dash) {
		/* "--" opening a line would look like a MIME delimiter */
		w->dash = false;
		tw_raw(w, n == 1 && s[0] == '-' ? " -" : "-", n == 1 && s[0] == '-' ? 2 : 1);
	} else if (w->col == 0 && n == 1 && s[0] == '-') {
		w->dash = true;
		return;
	}
	tw_raw(w, s, n);
}

static void
tw_feed(struct tw *w, const char *s, size_t n, bool value)
{
	const unsigned char *p = (const unsigned char *)s;
	bool text_nl = w->mode != TPL_REPLY && !value;

	for (size_t i = 0; i < n && !w->full;) {
		unsigned char c = p[i];
		size_t k;

		if (c == '\r') {
			/* CRLF is one line end; a bare CR is a space (dropped in the text) */
			if (i + 1 < n && p[i + 1] == '\n') {
				i++;
				continue;
			}
			if (!text_nl)
				tw_put(w, " ", 1);
			i++;
		} else if (c == '\n') {
			if (text_nl)
				tw_newline(w);
			else
				tw_put(w, " ", 1);
			i++;
		} else if (c == '\t') {
			tw_put(w, w->mode == TPL_REPLY ? " " : "\t", 1);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			tw_put(w, " ", 1);
			i++;
		} else if (c < 0x80) {
			tw_put(w, s + i, 1);
			i++;
		} else if ((k = decode_utf8_seq(p + i, n - i)) == 0) {
			tw_put(w, w->mode == TPL_BODY ? "\xef\xbf\xbd" : "?", w->mode == TPL_BODY ? 3 : 1);
			i++;
		} else {
			if (w->mode == TPL_BODY)
				tw_put(w, s + i, k);
			else
				tw_put(w, "?", 1);
			i += k;
		}
	}
}

size_t
tpl_render(const char *tpl, size_t len, const struct tpl_vars *v, enum tpl_mode mode,
    char *out, size_t outsz)
{
	struct tw w = { out, outsz, 0, mode, 0, false, outsz == 0 };
	size_t i = 0, lit = 0;

	if (len > TPL_SRC_MAX)
		len = TPL_SRC_MAX;
	while (i < len) {
		size_t n0, nn, k;
		int vi;

		if (tpl[i] != '%' || i + 1 >= len || tpl[i + 1] != '(' ||
		    (k = var_end(tpl, len, i, &n0, &nn)) == 0 || (vi = var_index(tpl + n0, nn)) < 0) {
			i++;
			continue;
		}
		tw_feed(&w, tpl + lit, i - lit, false);
		const char *val = var_value(v, vi);
		size_t vn = strnlen(val, TPL_VALUE_MAX + 1);
		if (vn > TPL_VALUE_MAX) {
			vn = TPL_VALUE_MAX;
			while (vn > 0 && ((unsigned char)val[vn] & 0xc0) == 0x80)
				vn--;
		}
		tw_feed(&w, val, vn, true);
		i += k;
		lit = i;
	}
	tw_feed(&w, tpl + lit, len - lit, false);
	/* a text ending in a lone '-' on its line; once full, nothing more
	 * is written (a later short write could lengthen a cut line) */
	tw_flush_dash(&w);
	if (mode == TPL_REPLY) {
		while (w.len > 0 && out[w.len - 1] == ' ')
			w.len--;
	} else {
		while (w.len >= 2 && out[w.len - 2] == '\r' && out[w.len - 1] == '\n')
			w.len -= 2;
	}
	if (outsz)
		out[w.len] = '\0';
	return w.len;
}
