/*
 * smtp_parse - command, path, parameter and reply grammar (RFC 5321,
 * RFC 1869, RFC 6531, RFC 3030, RFC 3461).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "smtp_parse.h"
#include "util.h"

enum smtp_line
smtp_line_split(const char *buf, size_t len, size_t max, size_t *linelen, size_t *consumed)
{
	size_t scan = len < max ? len : max;
	const char *lf = memchr(buf, '\n', scan);

	if (lf == NULL)
		return len >= max ? SMTP_LINE_TOOLONG : SMTP_LINE_PARTIAL;
	size_t i = (size_t)(lf - buf);
	*consumed = i + 1;
	if (i > 0 && buf[i - 1] == '\r') {
		*linelen = i - 1;
		return SMTP_LINE_OK;
	}
	*linelen = i;
	return SMTP_LINE_BARE_LF;
}

bool
smtp_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + n >= len)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		/* overlong forms, surrogates, beyond U+10FFFF */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += n + 1;
	}
	return true;
}

bool
smtp_xtext_valid(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '+') {
			if (!isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
				return false;
			/* RFC 3461: hex digits are upper case */
			if (islower((unsigned char)s[1]) || islower((unsigned char)s[2]))
				return false;
			s += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
	}
	return true;
}

bool
smtp_helo_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SMTP_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 32 || c == 127)
			return false;
	}
	return smtp_utf8_valid((const unsigned char *)s, n);
}

static bool
is_atext(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL) || c >= 0x80;
}

/* sub-domain *("." sub-domain); letters/digits/hyphen (and UTF-8 U-labels) */
static const char *
scan_domain(const char *p, const char *end)
{
	const char *start = p;

	for (;;) {
		const char *label = p;

		while (p < end && (isalnum((unsigned char)*p) || *p == '-' ||
		    (unsigned char)*p >= 0x80))
			p++;
		if (p == label || *label == '-' || p[-1] == '-' || p - label > 63)
			return NULL;
		if (p < end && *p == '.') {
			p++;
			continue;
		}
		break;
	}
	return (size_t)(p - start) > SMTP_DOMAIN_MAX ? NULL : p;
}

/* "[" IPv4 / "IPv6:" IPv6 / tag ":" dcontent "]" */
static const char *
scan_addr_literal(const char *p, const char *end)
{
	const char *close = memchr(p, ']', (size_t)(end - p));
	char tmp[64];
	unsigned char a[16];
	size_t n;

	if (*p != '[' || close == NULL)
		return NULL;
	n = (size_t)(close - p - 1);
	if (n == 0 || n >= sizeof(tmp))
		return NULL;
	memcpy(tmp, p + 1, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET, tmp, a) == 1)
		return close + 1;
	if (n > 5 && strncasecmp(tmp, "IPv6:", 5) == 0 && inet_pton(AF_INET6, tmp + 5, a) == 1)
		return close + 1;
	/* General-address-literal: Standardized-tag ":" 1*dcontent */
	char *colon = strchr(tmp, ':');
	if (colon == NULL || colon == tmp || colon[1] == '\0')
		return NULL;
	for (char *t = tmp; t < colon; t++)
		if (!isalnum((unsigned char)*t) && *t != '-')
			return NULL;
	for (char *t = colon + 1; *t; t++)
		if ((unsigned char)*t < 33 || (unsigned char)*t > 126 || *t == '[' || *t == '\\' ||
		    *t == ']')
			return NULL;
	return close + 1;
}

/* Local-part: Dot-string or Quoted-string.  Returns the end or NULL. */
static const char *
scan_local(const char *p, const char *end)
{
	const char *start = p;

	if (p < end && *p == '"') {
		p++;
		while (p < end && *p != '"') {
			unsigned char c = (unsigned char)*p;
			if (c == '\\') {
				if (p + 1 >= end || (unsigned char)p[1] < 32 || (unsigned char)p[1] > 126)
					return NULL;
				p += 2;
				continue;
			}
			if (c < 32 || c == 127)
				return NULL;
			p++;
		}
		if (p >= end)
			return NULL;
		p++;
	} else {
		for (;;) {
			const char *atom = p;
			while (p < end && is_atext((unsigned char)*p))
				p++;
			if (p == atom)
				return NULL;
			if (p < end && *p == '.') {
				p++;
				continue;
			}
			break;
		}
	}
	return (size_t)(p - start) > SMTP_LOCAL_MAX ? NULL : p;
}

static int
parse_params(char *p, struct smtp_cmd *cmd, const char **reply)
{
	cmd->nparams = 0;
	/* Parameters follow the path after a space: "<a@b> SIZE=10 BODY=8BITMIME" */
	if (*p != '\0' && *p != ' ') {
		*reply = "501 5.5.4 Syntax error in parameters";
		return -1;
	}
	while (*p) {
		char *key, *eq;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		key = p;
		while (*p && *p != ' ')
			p++;
		if (*p)
			*p++ = '\0';
		if (cmd->nparams == SMTP_MAX_PARAMS) {
			*reply = "501 5.5.4 Too many parameters";
			return -1;
		}
		eq = strchr(key, '=');
		if (eq)
			*eq = '\0';
		if (!isalnum((unsigned char)key[0])) {
			*reply = "501 5.5.4 Syntax error in parameters";
			return -1;
		}
		for (char *k = key; *k; k++) {
			if (!isalnum((unsigned char)*k) && *k != '-') {
				*reply = "501 5.5.4 Syntax error in parameters";
				return -1;
			}
			*k = (char)toupper((unsigned char)*k);
		}
		if (eq) {
			char *v = eq + 1;
			if (*v == '\0') {
				*reply = "501 5.5.4 Syntax error in parameters";
				return -1;
			}
			for (char *c = v; *c; c++)
				if ((unsigned char)*c < 33 || *c == '=' || (unsigned char)*c == 127) {
					*reply = "501 5.5.4 Syntax error in parameters";
					return -1;
				}
			if (!smtp_utf8_valid((unsigned char *)v, strlen(v))) {
				*reply = "501 5.5.4 Syntax error in parameters";
				return -1;
			}
		}
		for (int i = 0; i < cmd->nparams; i++)
			if (!strcmp(cmd->params[i].key, key)) {
				*reply = "501 5.5.4 Duplicate parameter";
				return -1;
			}
		cmd->params[cmd->nparams].key = key;
		cmd->params[cmd->nparams].value = eq ? eq + 1 : NULL;
		cmd->nparams++;
	}
	return 0;
}

int
smtp_path_parse(char *s, struct smtp_cmd *cmd, bool allow_null, bool allow_postmaster,
    const char **reply)
{
	const char *bad = cmd->verb == SMTP_MAIL ? "501 5.1.7 Bad sender address syntax"
	    : "501 5.1.3 Bad recipient address syntax";
	char *p = s, *end, *mbox, *mend;
	const char *q;

	cmd->path[0] = '\0';
	cmd->null_path = false;
	cmd->utf8 = false;
	if (*p != '<') {
		*reply = bad;
		return -1;
	}
	p++;
	/* The closing '>' is found by scanning the grammar, not by strchr: a
	 * quoted local part may contain '>'. */
	end = p + strlen(p);
	if (*p == '>') {
		if (!allow_null) {
			*reply = bad;
			return -1;
		}
		cmd->null_path = true;
		return parse_params(p + 1, cmd, reply);
	}
	/* Source route "@a,@b:" is accepted and dropped (RFC 5321 4.1.2). */
	if (*p == '@') {
		cmd->routed = true;
		for (;;) {
			if (*p != '@' || (q = scan_domain(p + 1, end)) == NULL) {
				*reply = bad;
				return -1;
			}
			p = (char *)q;
			if (*p == ',') {
				p++;
				continue;
			}
			if (*p != ':') {
				*reply = bad;
				return -1;
			}
			p++;
			break;
		}
	}
	mbox = p;
	q = scan_local(p, end);
	if (q == NULL) {
		*reply = bad;
		return -1;
	}
	p = (char *)q;
	if (*p == '>' && allow_postmaster && (size_t)(p - mbox) == 10 &&
	    strncasecmp(mbox, "postmaster", 10) == 0) {
		mend = p;
	} else {
		if (*p != '@') {
			*reply = bad;
			return -1;
		}
		p++;
		q = *p == '[' ? scan_addr_literal(p, end) : scan_domain(p, end);
		if (q == NULL || *q != '>') {
			*reply = bad;
			return -1;
		}
		mend = (char *)q;
		p = (char *)q;
	}
	if ((size_t)(mend - mbox) > SMTP_PATH_MAX - 2) {
		*reply = cmd->verb == SMTP_MAIL ? "501 5.1.7 Sender address too long"
		    : "501 5.1.3 Recipient address too long";
		return -1;
	}
	memcpy(cmd->path, mbox, (size_t)(mend - mbox));
	cmd->path[mend - mbox] = '\0';
	for (const char *c = cmd->path; *c; c++)
		if ((unsigned char)*c >= 0x80)
			cmd->utf8 = true;
	if (cmd->utf8 && !smtp_utf8_valid((unsigned char *)cmd->path, strlen(cmd->path))) {
		*reply = bad;
		return -1;
	}
	return parse_params(p + 1, cmd, reply);
}

static const struct {
	const char *word;
	enum smtp_verb verb;
} verbs[] = {
	{ "HELO", SMTP_HELO }, { "EHLO", SMTP_EHLO }, { "MAIL", SMTP_MAIL },
	{ "RCPT", SMTP_RCPT }, { "DATA", SMTP_DATA }, { "BDAT", SMTP_BDAT },
	{ "RSET", SMTP_RSET }, { "NOOP", SMTP_NOOP }, { "QUIT", SMTP_QUIT },
	{ "HELP", SMTP_HELP }, { "VRFY", SMTP_VRFY }, { "EXPN", SMTP_EXPN },
	{ "AUTH", SMTP_AUTH }, { "STARTTLS", SMTP_STARTTLS },
	/* HTTP methods: a browser or proxy probe, never a mail client */
	{ "GET", SMTP_HTTP }, { "POST", SMTP_HTTP }, { "HEAD", SMTP_HTTP },
	{ "PUT", SMTP_HTTP }, { "CONNECT", SMTP_HTTP }, { "OPTIONS", SMTP_HTTP },
	{ "DELETE", SMTP_HTTP }, { "TRACE", SMTP_HTTP }, { "PATCH", SMTP_HTTP },
};

static int
parse_bdat(char *arg, struct smtp_cmd *cmd, const char **reply)
{
	char *p = arg;
	uint64_t v = 0;
	int digits = 0;

	while (isdigit((unsigned char)*p)) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10 || ++digits > 19) {
			*reply = "501 5.5.4 Syntax: BDAT size [LAST] (size too large)";
			return -1;
		}
		v = v * 10 + d;
		p++;
	}
	if (digits == 0) {
		*reply = "501 5.5.4 Syntax: BDAT size [LAST]";
		return -1;
	}
	cmd->chunk_size = v;
	cmd->last = false;
	if (*p == '\0')
		return 0;
	if (*p == ' ' && strcasecmp(p + 1, "LAST") == 0) {
		cmd->last = true;
		return 0;
	}
	*reply = "501 5.5.4 Syntax: BDAT size [LAST]";
	return -1;
}

int
smtp_cmd_parse(char *line, size_t len, struct smtp_cmd *cmd, const char **reply)
{
	size_t wlen = 0;
	char *arg;

	memset(cmd, 0, sizeof(*cmd));
	cmd->verb = SMTP_UNKNOWN;
	cmd->arg = line + len;
	/* The line was split at CRLF; anything left here would be smuggled. */
	for (size_t i = 0; i < len; i++)
		if (line[i] == '\r' || line[i] == '\n' || line[i] == '\0') {
			*reply = "500 5.5.2 Syntax error: CR, LF or NUL inside a command";
			return -1;
		}
	line[len] = '\0';
	while (wlen < len && line[wlen] != ' ')
		wlen++;
	/* "Header: value" lines are HTTP requests talking to the wrong port. */
	if (wlen > 1 && line[wlen - 1] == ':') {
		cmd->verb = SMTP_HTTP;
		snprintf(cmd->word, sizeof(cmd->word), "HEADER");
		return 0;
	}
	if (wlen == 0 || wlen >= sizeof(cmd->word)) {
		*reply = "500 5.5.2 Syntax error: command unrecognized";
		return -1;
	}
	for (size_t i = 0; i < wlen; i++) {
		if (!isalpha((unsigned char)line[i])) {
			*reply = "500 5.5.2 Syntax error: command unrecognized";
			return -1;
		}
		cmd->word[i] = (char)toupper((unsigned char)line[i]);
	}
	cmd->word[wlen] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(cmd->word, verbs[i].word))
			cmd->verb = verbs[i].verb;
	if (cmd->verb == SMTP_UNKNOWN || cmd->verb == SMTP_HTTP)
		return 0;

	arg = line + wlen;
	if (*arg == ' ')
		arg++;
	cmd->arg = arg;

	switch (cmd->verb) {
	case SMTP_HELO:
	case SMTP_EHLO:
		if (!smtp_helo_valid(arg)) {
			*reply = cmd->verb == SMTP_EHLO ? "501 5.5.4 Syntax: EHLO hostname"
			    : "501 5.5.4 Syntax: HELO hostname";
			return -1;
		}
		return 0;
	case SMTP_MAIL:
		if (strncasecmp(arg, "FROM:", 5) != 0) {
			*reply = "501 5.5.4 Syntax: MAIL FROM:<address>";
			return -1;
		}
		arg += 5;
		while (*arg == ' ')
			arg++;
		return smtp_path_parse(arg, cmd, true, false, reply);
	case SMTP_RCPT:
		if (strncasecmp(arg, "TO:", 3) != 0) {
			*reply = "501 5.5.4 Syntax: RCPT TO:<address>";
			return -1;
		}
		arg += 3;
		while (*arg == ' ')
			arg++;
		return smtp_path_parse(arg, cmd, false, true, reply);
	case SMTP_BDAT:
		return parse_bdat(arg, cmd, reply);
	case SMTP_DATA:
	case SMTP_RSET:
	case SMTP_QUIT:
	case SMTP_STARTTLS:
		if (*arg != '\0' || line[wlen] == ' ') {
			*reply = "501 5.5.4 Syntax error: no parameters allowed";
			return -1;
		}
		return 0;
	case SMTP_VRFY:
	case SMTP_EXPN:
	case SMTP_AUTH:
		if (*arg == '\0') {
			*reply = "501 5.5.4 Syntax error: argument required";
			return -1;
		}
		for (const char *c = arg; *c; c++)
			if ((unsigned char)*c < 32 || (unsigned char)*c == 127) {
				*reply = "501 5.5.4 Syntax error in argument";
				return -1;
			}
		return 0;
	case SMTP_NOOP:
	case SMTP_HELP:
		for (const char *c = arg; *c; c++)
			if ((unsigned char)*c < 32 || (unsigned char)*c == 127) {
				*reply = "501 5.5.4 Syntax error in argument";
				return -1;
			}
		return 0;
	default:
		return 0;
	}
}

int
smtp_reply_line(const char *line, size_t len, int *code, bool *more, const char **text,
    size_t *textlen)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    !isdigit((unsigned char)line[2]))
		return -1;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	for (size_t i = 3; i < len; i++)
		if (line[i] == '\r' || line[i] == '\n' || line[i] == '\0')
			return -1;
	if (len == 3) {
		*more = false;
		*text = line + 3;
		*textlen = 0;
		return 0;
	}
	if (line[3] != ' ' && line[3] != '-')
		return -1;
	*more = line[3] == '-';
	*text = line + 4;
	*textlen = len - 4;
	return 0;
}

int
smtp_params_render(const struct smtp_cmd *cmd, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < cmd->nparams; i++) {
		int n = snprintf(buf + o, len - o, cmd->params[i].value ? " %s=%s" : " %s",
		    cmd->params[i].key, cmd->params[i].value ? cmd->params[i].value : "");
		if (n < 0 || (size_t)n >= len - o)
			return -1;
		o += (size_t)n;
	}
	return 0;
}
