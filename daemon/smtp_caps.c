/*
 * smtp_caps - parse and mediate EHLO capabilities.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp_caps.h"
#include "util.h"

static const struct {
	const char *kw;
	unsigned flag;
} known[] = {
	{ "PIPELINING", CAP_PIPELINING },
	{ "SIZE", CAP_SIZE },
	{ "8BITMIME", CAP_8BITMIME },
	{ "SMTPUTF8", CAP_SMTPUTF8 },
	{ "ENHANCEDSTATUSCODES", CAP_ENHANCEDSTATUSCODES },
	{ "DSN", CAP_DSN },
	{ "CHUNKING", CAP_CHUNKING },
	{ "AUTH", CAP_AUTH },
	{ "STARTTLS", CAP_STARTTLS },
};

void
caps_parse(struct caps *up, const char *const *lines, const size_t *lens, int nlines)
{
	memset(up, 0, sizeof(*up));
	for (int i = 1; i < nlines; i++) {
		char kw[32];
		size_t n = 0;
		const char *l = lines[i];

		while (n < lens[i] && n < sizeof(kw) - 1 && l[n] != ' ')
			kw[n] = (char)toupper((unsigned char)l[n]), n++;
		kw[n] = '\0';
		const char *params = n < lens[i] ? l + n + 1 : l + n;
		size_t plen = n < lens[i] ? lens[i] - n - 1 : 0;

		for (size_t k = 0; k < ARRAY_SIZE(known); k++) {
			if (strcmp(kw, known[k].kw) != 0)
				continue;
			up->flags |= known[k].flag;
			if (known[k].flag == CAP_SIZE && plen > 0) {
				char num[24];
				size_t m = plen < sizeof(num) - 1 ? plen : sizeof(num) - 1;
				memcpy(num, params, m);
				num[m] = '\0';
				up->size = strtoull(num, NULL, 10);
			}
			if (known[k].flag == CAP_AUTH) {
				size_t m = plen < sizeof(up->auth) - 1 ? plen : sizeof(up->auth) - 1;
				/* mechanism names only: letters, digits, '-', '_', spaces */
				size_t o = 0;
				for (size_t j = 0; j < m; j++) {
					char c = params[j];
					if (isalnum((unsigned char)c) || c == '-' || c == '_' || c == ' ')
						up->auth[o++] = (char)toupper((unsigned char)c);
				}
				up->auth[o] = '\0';
			}
		}
	}
}

static int
add_line(struct buf *out, bool last, const char *fmt, ...) PRINTF_LIKE(3, 4);

static int
add_line(struct buf *out, bool last, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "250%c", last ? ' ' : '-');
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		return -1;
	line[n++] = '\r';
	line[n++] = '\n';
	return buf_append(out, line, (size_t)n);
}

int
caps_render(const struct caps *up, const struct smtp_limits *lim, const char *greeting,
    size_t greetlen, struct buf *out, struct caps *shown, bool offer_starttls)
{
	const char *kw[16];
	char sizebuf[48], authbuf[300];
	int n = 0;

	memset(shown, 0, sizeof(*shown));
	if (up->flags & CAP_PIPELINING)
		kw[n++] = "PIPELINING", shown->flags |= CAP_PIPELINING;
	if (up->flags & CAP_SIZE) {
		/* Never advertise more than we accept ourselves. */
		uint64_t sz = lim->max_message_size;
		if (up->size && up->size < sz)
			sz = up->size;
		snprintf(sizebuf, sizeof(sizebuf), "SIZE %llu", (unsigned long long)sz);
		kw[n++] = sizebuf;
		shown->flags |= CAP_SIZE;
		shown->size = sz;
	}
	if (up->flags & CAP_8BITMIME)
		kw[n++] = "8BITMIME", shown->flags |= CAP_8BITMIME;
	if (up->flags & CAP_SMTPUTF8)
		kw[n++] = "SMTPUTF8", shown->flags |= CAP_SMTPUTF8;
	if (up->flags & CAP_ENHANCEDSTATUSCODES)
		kw[n++] = "ENHANCEDSTATUSCODES", shown->flags |= CAP_ENHANCEDSTATUSCODES;
	if (up->flags & CAP_DSN)
		kw[n++] = "DSN", shown->flags |= CAP_DSN;
	if (lim->allow_chunking)
		kw[n++] = "CHUNKING", shown->flags |= CAP_CHUNKING;
	if (offer_starttls)
		kw[n++] = "STARTTLS", shown->flags |= CAP_STARTTLS;
	if ((up->flags & CAP_AUTH) && lim->allow_auth && up->auth[0]) {
		snprintf(authbuf, sizeof(authbuf), "AUTH %s", up->auth);
		kw[n++] = authbuf;
		shown->flags |= CAP_AUTH;
		snprintf(shown->auth, sizeof(shown->auth), "%s", up->auth);
	}
	if (greetlen > 400)
		greetlen = 400;
	char first[420];
	memcpy(first, greeting, greetlen);
	first[greetlen] = '\0';
	if (add_line(out, n == 0, "%s", first) < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (add_line(out, i == n - 1, "%s", kw[i]) < 0)
			return -1;
	return 0;
}

/* Append word (and the comma before it) if it fits with room for "...". */
static bool
names_add(char *out, size_t outlen, size_t *o, const char *word, bool *cut)
{
	size_t n = strlen(word) + (*o ? 1 : 0);

	if (*cut)
		return false;
	if (*o + n + 4 > outlen) {
		/* Keep "..." and the terminator room. */
		*cut = true;
		return false;
	}
	if (*o)
		out[(*o)++] = ',';
	memcpy(out + *o, word, strlen(word));
	*o += strlen(word);
	out[*o] = '\0';
	return true;
}

const char *
caps_names(unsigned flags, char *out, size_t outlen)
{
	unsigned rest = flags;
	bool cut = false;
	size_t o = 0;

	if (outlen == 0)
		return out;
	out[0] = '\0';
	if (flags == 0) {
		(void)strlcpy_checked(out, "-", outlen);
		return out;
	}
	for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
		if (!(flags & known[k].flag))
			continue;
		rest &= ~known[k].flag;
		(void)names_add(out, outlen, &o, known[k].kw, &cut);
	}
	if (rest != 0) {
		char hex[16];

		snprintf(hex, sizeof(hex), "0x%x", rest);
		(void)names_add(out, outlen, &o, hex, &cut);
	}
	if (cut && outlen >= 4) {
		memcpy(out + o, "...", 4);
	}
	return out;
}
