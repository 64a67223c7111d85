/*
 * fuzz_reply - a destination's reply stream: smtp_line_split and
 * smtp_reply_line on every line, then caps_parse / caps_render on every
 * complete 250 reply (as the EHLO mediation does).
 *
 * Input: byte 0 picks the limits (allow-chunking, allow-auth, STARTTLS
 * offered, a small or the default max message size); the rest is what the
 * destination sends.  Checks, besides memory errors:
 *  - a parsed reply line has a code in 200..559, its text inside the line,
 *    and re-emitted canonically ("%03d" '-'/' ' text) parses back the same;
 *  - the rendered EHLO reply is well-formed SMTP (250- lines, a last
 *    "250 " line, within the reply limits) and shows nothing smtpgw does
 *    not implement or the limits forbid, with SIZE never above the limit
 *    or the destination's own value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "smtp_caps.h"
#include "smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static struct config *conf;

static void
check_rendered(const struct buf *out, const struct caps *up, const struct smtp_limits *lim,
    const struct caps *shown, bool starttls)
{
	const char *p = buf_head(out), *end = p + buf_len(out);
	unsigned flags = 0;
	int lines = 0;

	CHECK(buf_len(out) > 0 && buf_len(out) <= SMTP_REPLY_MAX);
	while (p < end) {
		size_t linelen, consumed, textlen;
		const char *text;
		int code;
		bool more;

		CHECK(smtp_line_split(p, (size_t)(end - p), 512, &linelen, &consumed) == SMTP_LINE_OK);
		CHECK(smtp_reply_line(p, linelen, &code, &more, &text, &textlen) == 0);
		CHECK(code == 250);
		p += consumed;
		CHECK(more == (p < end));
		if (lines++ == 0)
			continue; /* the greeting line */
		/* each keyword line is one we implement and may show */
		if (textlen == 10 && !memcmp(text, "PIPELINING", 10))
			flags |= CAP_PIPELINING;
		else if (textlen > 5 && !memcmp(text, "SIZE ", 5)) {
			char num[32];
			CHECK(textlen - 5 < sizeof(num));
			memcpy(num, text + 5, textlen - 5);
			num[textlen - 5] = '\0';
			unsigned long long v = strtoull(num, NULL, 10);
			CHECK(v <= lim->max_message_size);
			CHECK(up->size == 0 || v <= up->size);
			CHECK(v == shown->size);
			flags |= CAP_SIZE;
		} else if (textlen == 8 && !memcmp(text, "8BITMIME", 8))
			flags |= CAP_8BITMIME;
		else if (textlen == 8 && !memcmp(text, "SMTPUTF8", 8))
			flags |= CAP_SMTPUTF8;
		else if (textlen == 19 && !memcmp(text, "ENHANCEDSTATUSCODES", 19))
			flags |= CAP_ENHANCEDSTATUSCODES;
		else if (textlen == 3 && !memcmp(text, "DSN", 3))
			flags |= CAP_DSN;
		else if (textlen == 8 && !memcmp(text, "CHUNKING", 8))
			flags |= CAP_CHUNKING;
		else if (textlen == 8 && !memcmp(text, "STARTTLS", 8))
			flags |= CAP_STARTTLS;
		else if (textlen > 5 && !memcmp(text, "AUTH ", 5)) {
			for (size_t i = 5; i < textlen; i++)
				CHECK((text[i] >= 'A' && text[i] <= 'Z') || (text[i] >= '0' &&
				    text[i] <= '9') || text[i] == '-' || text[i] == '_' || text[i] == ' ');
			flags |= CAP_AUTH;
		} else {
			fprintf(stderr, "unexpected keyword line \"%.*s\"\n", (int)textlen, text);
			CHECK(0);
		}
	}
	CHECK(flags == shown->flags);
	/* shown: implemented, offered upstream (or smtpgw's own), allowed */
	CHECK((flags & ~(up->flags | CAP_CHUNKING | CAP_STARTTLS)) == 0);
	CHECK(!(flags & CAP_CHUNKING) == !lim->allow_chunking);
	CHECK(!(flags & CAP_STARTTLS) == !starttls);
	CHECK(!(flags & CAP_AUTH) || lim->allow_auth);
}

static void
check_ehlo(const char *reply, size_t len, uint8_t sel)
{
	const char *lines[SMTP_REPLY_MAX_LINES];
	size_t lens[SMTP_REPLY_MAX_LINES];
	const char *p = reply, *end = reply + len;
	int n = 0;
	struct smtp_limits lim = conf->smtp;
	bool starttls = sel & 4;
	struct caps up, shown;
	struct buf out;

	/* the engine's reply_lines(): text after "250-" / "250 " */
	while (p < end && n < SMTP_REPLY_MAX_LINES) {
		const char *crlf = memchr(p, '\r', (size_t)(end - p));
		CHECK(crlf != NULL);
		lines[n] = crlf - p > 3 ? p + 4 : crlf;
		lens[n] = crlf - p > 3 ? (size_t)(crlf - p - 4) : 0;
		n++;
		p = crlf + 2;
	}
	lim.allow_chunking = sel & 1;
	lim.allow_auth = sel & 2;
	if (sel & 8)
		lim.max_message_size = 1000;
	caps_parse(&up, lines, lens, n);
	CHECK(memchr(up.auth, '\0', sizeof(up.auth)) != NULL);
	buf_init(&out, SMTP_REPLY_MAX);
	if (caps_render(&up, &lim, lines[0], lens[0], &out, &shown, starttls) == 0)
		check_rendered(&out, &up, &lim, &shown, starttls);
	buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char reply[SMTP_REPLY_MAX + SMTP_REPLYLINE_MAX + 16];
	size_t rlen = 0, off = 1;
	int rcode = 0, rlines = 0;
	uint8_t sel;

	if (conf == NULL) {
		conf = calloc(1, sizeof(*conf));
		CHECK(conf != NULL);
		config_defaults(conf);
	}
	if (size < 1)
		return 0;
	sel = data[0];
	/* the engine's server_input() loop */
	while (off < size) {
		const char *line = (const char *)data + off, *text;
		size_t linelen, consumed, textlen;
		bool more;
		int code;
		enum smtp_line st = smtp_line_split(line, size - off, SMTP_REPLYLINE_MAX, &linelen,
		    &consumed);

		if (st != SMTP_LINE_OK)
			break;
		off += consumed;
		if (smtp_reply_line(line, linelen, &code, &more, &text, &textlen) < 0) {
			rlen = 0, rlines = 0;
			continue;
		}
		CHECK(code >= 200 && code <= 559);
		CHECK(text >= line + 3 && text + textlen <= line + linelen);
		CHECK(memchr(text, '\r', textlen) == NULL && memchr(text, '\n', textlen) == NULL);
		CHECK(memchr(text, '\0', textlen) == NULL);

		char out[SMTP_REPLYLINE_MAX + 8];
		int n = snprintf(out, sizeof(out), "%03d%s%.*s", code,
		    more ? "-" : (textlen ? " " : ""), (int)textlen, text);
		CHECK(n > 0 && (size_t)n <= linelen);
		int code2;
		bool more2;
		const char *text2;
		size_t textlen2;
		CHECK(smtp_reply_line(out, (size_t)n, &code2, &more2, &text2, &textlen2) == 0);
		CHECK(code2 == code && more2 == more && textlen2 == textlen);
		CHECK(memcmp(text2, text, textlen) == 0);

		if (rlines > 0 && code != rcode) {
			rlen = 0, rlines = 0; /* the engine drops the connection here */
			continue;
		}
		if (rlines >= SMTP_REPLY_MAX_LINES || rlen + (size_t)n + 2 > SMTP_REPLY_MAX) {
			rlen = 0, rlines = 0;
			continue;
		}
		memcpy(reply + rlen, out, (size_t)n);
		rlen += (size_t)n;
		reply[rlen++] = '\r';
		reply[rlen++] = '\n';
		rcode = code;
		rlines++;
		if (!more) {
			if (code == 250)
				check_ehlo(reply, rlen, sel);
			rlen = 0, rlines = 0;
		}
	}
	return 0;
}
