/*
 * smtp_parse - the one strict grammar for what crosses the gateway:
 * command lines from clients, reply lines from servers, RFC 5321 paths
 * and ESMTP parameters.  Pure functions over bounded input; every result
 * is re-emitted in canonical form by the caller, never spliced.
 *
 * Limits (RFC 5321 4.5.3.1 and the extensions' allowances):
 *   command line  SMTP_CMDLINE_MAX octets including CRLF (AUTH lines:
 *                 SMTP_AUTHLINE_MAX)
 *   reply line    SMTP_REPLYLINE_MAX octets including CRLF
 *   reply         SMTP_REPLY_MAX_LINES lines, SMTP_REPLY_MAX octets
 *   path          256, local part 64, domain 255 octets
 */
#ifndef SMTPGW_SMTP_PARSE_H
#define SMTPGW_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_CMDLINE_MAX 2048
/*
 * RFC 4954 4: an AUTH command with its initial response, and each SASL
 * response line, may be up to 12288 octets (Kerberos/GSSAPI and OAuth
 * tokens get there); only those lines get the larger limit.
 */
#define SMTP_AUTHLINE_MAX 12288
#define SMTP_REPLYLINE_MAX 2048
#define SMTP_REPLY_MAX_LINES 100
#define SMTP_REPLY_MAX 16384
#define SMTP_PATH_MAX 256
#define SMTP_LOCAL_MAX 64
#define SMTP_DOMAIN_MAX 255
#define SMTP_MAX_PARAMS 16

enum smtp_verb {
	SMTP_HELO,
	SMTP_EHLO,
	SMTP_MAIL,
	SMTP_RCPT,
	SMTP_DATA,
	SMTP_BDAT,
	SMTP_RSET,
	SMTP_NOOP,
	SMTP_QUIT,
	SMTP_HELP,
	SMTP_VRFY,
	SMTP_EXPN,
	SMTP_AUTH,
	SMTP_STARTTLS,
	SMTP_UNKNOWN, /* a word we do not implement */
	SMTP_HTTP,    /* looks like HTTP: answered, then the connection closes */
};

/* Result of splitting one line off an input buffer. */
enum smtp_line {
	SMTP_LINE_OK,      /* a line ending in CRLF */
	SMTP_LINE_PARTIAL, /* no LF yet (and under the limit) */
	SMTP_LINE_BARE_LF, /* ended by LF without CR */
	SMTP_LINE_TOOLONG, /* no LF within the limit */
};

/*
 * Find the next line in buf[0..len).  On OK/BARE_LF *linelen is the
 * content length (without the terminator) and *consumed the bytes to drop.
 */
enum smtp_line smtp_line_split(const char *buf, size_t len, size_t max, size_t *linelen,
    size_t *consumed);

struct smtp_param {
	const char *key; /* points into the caller's line copy, NUL-terminated */
	const char *value; /* NULL when the parameter has no "=value" */
};

struct smtp_cmd {
	enum smtp_verb verb;
	char word[16];   /* the verb as sent, upper-cased, for logs/errors */
	char *arg;       /* rest of the line after one space; "" if none */
	/* MAIL / RCPT */
	char path[SMTP_PATH_MAX + 1]; /* canonical mailbox, "" for <> */
	bool null_path;
	bool utf8;     /* path contains non-ASCII (needs SMTPUTF8) */
	bool routed;   /* a source route "@a,@b:" was given (and dropped) */
	int nparams;
	struct smtp_param params[SMTP_MAX_PARAMS];
	/* BDAT */
	uint64_t chunk_size;
	bool last;
};

/*
 * Parse a command line (without CRLF) in place: line is modified
 * (NUL-terminated tokens).  Returns 0, or -1 with *reply set to the SMTP
 * reply to give (a static string without CRLF).
 */
int smtp_cmd_parse(char *line, size_t len, struct smtp_cmd *cmd, const char **reply);

/*
 * Parse "<path>" of MAIL FROM / RCPT TO (after the colon) into cmd->path,
 * then the ESMTP parameters.  allow_null for MAIL's "<>"; allow_postmaster
 * for RCPT's "<Postmaster>".
 */
int smtp_path_parse(char *s, struct smtp_cmd *cmd, bool allow_null, bool allow_postmaster,
    const char **reply);

/*
 * The canonical form of cmd's ESMTP parameters as re-emitted upstream:
 * " KEY=VALUE" or " KEY" each.  Returns -1 if they do not fit in len.
 */
int smtp_params_render(const struct smtp_cmd *cmd, char *buf, size_t len);

/* True if s is a well-formed, minimal UTF-8 sequence of len bytes. */
bool smtp_utf8_valid(const unsigned char *s, size_t len);
/* RFC 3461 xtext */
bool smtp_xtext_valid(const char *s);
/* A HELO/EHLO argument: a domain or an address literal (lenient: any printable word). */
bool smtp_helo_valid(const char *s);

/*
 * Reply lines.  smtp_reply_line parses one line (without CRLF): 3 digits,
 * then '-' (more follow), ' ' or nothing (last).  Returns -1 if malformed.
 */
int smtp_reply_line(const char *line, size_t len, int *code, bool *more, const char **text,
    size_t *textlen);

#endif
