/*
 * fuzz_cmd - smtp_line_split and smtp_cmd_parse on arbitrary bytes.
 *
 * The input is a client's byte stream: it is split into lines the way the
 * engine does (SMTP_CMDLINE_MAX), and every complete line is parsed.
 * Checks, besides memory errors:
 *  - line splitting: results consistent with the bytes (no LF inside a
 *    line, OK really ends in CRLF, TOOLONG really has no LF in reach);
 *  - a refused command gets a well-formed 4xx/5xx reply without CR/LF;
 *  - an accepted command holds no CR, LF or NUL, and its canonical
 *    re-emission (what smtp_proxy.c sends upstream) parses back to the
 *    same command and is no longer than the line it came from.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static void
check_split(const char *buf, size_t len, size_t max)
{
	size_t linelen = (size_t)-1, consumed = (size_t)-1;
	enum smtp_line st = smtp_line_split(buf, len, max, &linelen, &consumed);
	size_t reach = len < max ? len : max;

	switch (st) {
	case SMTP_LINE_OK:
		CHECK(consumed == linelen + 2 && consumed <= reach);
		CHECK(buf[linelen] == '\r' && buf[linelen + 1] == '\n');
		CHECK(memchr(buf, '\n', linelen) == NULL);
		break;
	case SMTP_LINE_BARE_LF:
		CHECK(consumed == linelen + 1 && consumed <= reach);
		CHECK(buf[linelen] == '\n');
		CHECK(linelen == 0 || buf[linelen - 1] != '\r');
		CHECK(memchr(buf, '\n', linelen) == NULL);
		break;
	case SMTP_LINE_PARTIAL:
		CHECK(len < max && memchr(buf, '\n', len) == NULL);
		break;
	case SMTP_LINE_TOOLONG:
		CHECK(len >= max && memchr(buf, '\n', max) == NULL);
		break;
	default:
		CHECK(0);
	}
}

static void
check_reply(const char *reply)
{
	CHECK(reply != NULL);
	CHECK((reply[0] == '4' || reply[0] == '5') && reply[1] >= '0' && reply[1] <= '5' &&
	    reply[2] >= '0' && reply[2] <= '9' && reply[3] == ' ');
	CHECK(strpbrk(reply, "\r\n") == NULL && strlen(reply) < 512);
}

/* What the engine sends upstream for cmd, or "" for verbs it does not forward as is. */
static int
canonical(const struct smtp_cmd *cmd, char *out, size_t outsz)
{
	char params[SMTP_CMDLINE_MAX + 1];

	switch (cmd->verb) {
	case SMTP_HELO:
	case SMTP_EHLO:
		return snprintf(out, outsz, "%s %s", cmd->word, cmd->arg);
	case SMTP_MAIL:
		CHECK(smtp_params_render(cmd, params, sizeof(params)) == 0);
		return snprintf(out, outsz, "MAIL FROM:<%s>%s", cmd->path, params);
	case SMTP_RCPT:
		CHECK(smtp_params_render(cmd, params, sizeof(params)) == 0);
		return snprintf(out, outsz, "RCPT TO:<%s>%s", cmd->path, params);
	case SMTP_BDAT:
		return snprintf(out, outsz, "BDAT %llu%s", (unsigned long long)cmd->chunk_size,
		    cmd->last ? " LAST" : "");
	case SMTP_VRFY:
	case SMTP_EXPN:
	case SMTP_AUTH:
		return snprintf(out, outsz, "%s %s", cmd->word, cmd->arg);
	case SMTP_HELP:
		return snprintf(out, outsz, cmd->arg[0] ? "HELP %s" : "HELP%s", cmd->arg);
	case SMTP_DATA:
	case SMTP_RSET:
	case SMTP_NOOP:
	case SMTP_QUIT:
	case SMTP_STARTTLS:
		return snprintf(out, outsz, "%s", cmd->word);
	default:
		out[0] = '\0';
		return 0;
	}
}

static void
check_same(const struct smtp_cmd *a, const struct smtp_cmd *b)
{
	CHECK(a->verb == b->verb);
	CHECK(strcmp(a->word, b->word) == 0);
	switch (a->verb) {
	case SMTP_MAIL:
	case SMTP_RCPT:
		CHECK(strcmp(a->path, b->path) == 0);
		CHECK(a->null_path == b->null_path && a->utf8 == b->utf8);
		CHECK(a->nparams == b->nparams);
		for (int i = 0; i < a->nparams; i++) {
			CHECK(strcmp(a->params[i].key, b->params[i].key) == 0);
			CHECK((a->params[i].value == NULL) == (b->params[i].value == NULL));
			CHECK(!a->params[i].value || !strcmp(a->params[i].value, b->params[i].value));
		}
		break;
	case SMTP_BDAT:
		CHECK(a->chunk_size == b->chunk_size && a->last == b->last);
		break;
	case SMTP_HELO:
	case SMTP_EHLO:
	case SMTP_VRFY:
	case SMTP_EXPN:
	case SMTP_AUTH:
	case SMTP_HELP:
		CHECK(strcmp(a->arg, b->arg) == 0);
		break;
	default:
		break;
	}
}

static void
check_cmd(const char *src, size_t len)
{
	static char line[SMTP_CMDLINE_MAX + 1], again[SMTP_CMDLINE_MAX + 1];
	static char canon[2 * SMTP_CMDLINE_MAX];
	struct smtp_cmd cmd, cmd2;
	const char *reply = NULL;

	if (len > SMTP_CMDLINE_MAX - 2)
		return;
	memcpy(line, src, len);
	line[len] = 'Z';
	if (smtp_cmd_parse(line, len, &cmd, &reply) < 0) {
		check_reply(reply);
		return;
	}
	CHECK(line[len] == '\0');
	CHECK(memchr(src, '\r', len) == NULL && memchr(src, '\n', len) == NULL);
	CHECK(memchr(src, '\0', len) == NULL);
	CHECK(memchr(cmd.word, '\0', sizeof(cmd.word)) != NULL);
	CHECK(cmd.arg >= line && cmd.arg <= line + len);
	if (cmd.verb == SMTP_HTTP || cmd.verb == SMTP_UNKNOWN)
		return;
	CHECK(cmd.nparams >= 0 && cmd.nparams <= SMTP_MAX_PARAMS);
	if (cmd.verb == SMTP_MAIL || cmd.verb == SMTP_RCPT) {
		size_t pl = strnlen(cmd.path, sizeof(cmd.path));

		CHECK(pl <= SMTP_PATH_MAX - 2);
		CHECK(cmd.null_path == (pl == 0));
		CHECK(!cmd.null_path || cmd.verb == SMTP_MAIL);
		CHECK(strpbrk(cmd.path, "\r\n") == NULL);
		bool high = false;
		for (size_t i = 0; i < pl; i++)
			high |= (unsigned char)cmd.path[i] >= 0x80;
		CHECK(high == cmd.utf8);
		CHECK(smtp_utf8_valid((const unsigned char *)cmd.path, pl));
		for (int i = 0; i < cmd.nparams; i++) {
			const char *k = cmd.params[i].key, *v = cmd.params[i].value;
			CHECK(k[0] != '\0');
			for (const char *c = k; *c; c++)
				CHECK((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-');
			if (v)
				for (const char *c = v; *c; c++)
					CHECK((unsigned char)*c > 32 && *c != '=' && *c != 127);
		}
	}
	if (cmd.verb == SMTP_BDAT)
		CHECK(cmd.chunk_size <= 9999999999999999999ull);

	/* The canonical form parses back to the same command, and does not grow. */
	int n = canonical(&cmd, canon, sizeof(canon));
	CHECK(n >= 0 && (size_t)n < sizeof(canon));
	if (n == 0)
		return;
	CHECK((size_t)n <= len);
	memcpy(again, canon, (size_t)n);
	reply = NULL;
	if (smtp_cmd_parse(again, (size_t)n, &cmd2, &reply) != 0) {
		fprintf(stderr, "canonical form refused: \"%s\" -> %s\n", canon, reply);
		CHECK(0);
	}
	check_same(&cmd, &cmd2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t off = 0;

	/* splitting at a few limits, from every offset's point of view once */
	check_split(buf, size, SMTP_CMDLINE_MAX);
	check_split(buf, size, 16);
	check_split(buf, size, 1);
	/* the engine's loop over the stream */
	while (off < size) {
		size_t linelen, consumed;
		enum smtp_line st = smtp_line_split(buf + off, size - off, SMTP_CMDLINE_MAX, &linelen,
		    &consumed);

		if (st == SMTP_LINE_PARTIAL || st == SMTP_LINE_TOOLONG) {
			/* the rest as one unterminated line, as a test of the parser alone */
			check_cmd(buf + off, size - off);
			break;
		}
		check_split(buf + off, size - off, SMTP_CMDLINE_MAX);
		check_cmd(buf + off, linelen);
		off += consumed;
	}
	return 0;
}
