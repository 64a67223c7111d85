/*
 * rspamd - rspamd as a scanner pool (scanner.h), over its HTTP protocol:
 * POST /checkv2 with the message as the body and the envelope in request
 * headers (IP, Helo, From, one Rcpt per recipient, Queue-Id, User when
 * the client authenticated, TLS-Version and TLS-Cipher when the client's
 * leg is TLS, Hostname when the client's name is known - otherwise
 * rspamd looks it up itself -, Settings-ID, MTA-Name).  The body goes
 * with Content-Length when the caller knows its size up front (a held
 * message), chunked otherwise (a message streamed as it arrives; rspamd
 * reads both).  The reply is JSON (action, score, required_score,
 * symbols, subject, milter.add_headers / remove_headers,
 * messages.smtp_message), read with json-c.
 *
 * rspamd's normal worker answers "Connection: close" even to HTTP/1.1,
 * so there is no connection to reuse: every request opens one.
 * Health check: GET /ping -> 200.
 *
 * Limits: a reply of at most RSPAMD_REPLY_MAX octets of body and
 * RSPAMD_HEAD_MAX of status line and headers, JSON nested at most
 * RSPAMD_JSON_DEPTH deep; the RSPAMD_SYMBOLS_MAX highest-scoring symbols
 * are kept (symbols_total says how many there were), RSPAMD_HEADERS_MAX
 * headers to add and to remove.  Every string kept is one line of
 * printable text (header folding undone, other controls become '?').
 * Envelope values are cut at RSPAMD_ENV_VALUE_MAX and their control
 * characters become '?' (the SMTP parser admits none; this keeps a
 * request header from ever being split); the first RSPAMD_RCPTS_MAX
 * recipients are sent.
 *
 * API: like clamd.h, plus the envelope at start; the result is a struct
 * rspamd_result.
 */
#ifndef SMTPGW_RSPAMD_H
#define SMTPGW_RSPAMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "buf.h"
#include "config.h"
#include "scanner.h"

#define RSPAMD_REPLY_MAX (256 * 1024)
#define RSPAMD_HEAD_MAX (16 * 1024)
#define RSPAMD_LINE_MAX 4096
#define RSPAMD_JSON_DEPTH 16
#define RSPAMD_SYMBOLS_MAX 32
#define RSPAMD_NAME_MAX 64       /* symbol and header names, terminator included */
#define RSPAMD_HEADERS_MAX 16
#define RSPAMD_VALUE_MAX 1024    /* a header value to add, terminator included */
#define RSPAMD_SUBJECT_MAX 1000
#define RSPAMD_MESSAGE_MAX 256
#define RSPAMD_ENV_VALUE_MAX 1000
#define RSPAMD_RCPTS_MAX 1000    /* Rcpt headers sent (rspamd's own max_recipients is 1024) */
#define RSPAMD_SIZE_UNKNOWN UINT64_MAX

enum rspamd_action {
	RSPAMD_NO_ACTION,
	RSPAMD_GREYLIST,
	RSPAMD_ADD_HEADER,
	RSPAMD_REWRITE_SUBJECT,
	RSPAMD_SOFT_REJECT,
	RSPAMD_REJECT,
	RSPAMD_DISCARD,    /* forced by rspamd settings only */
	RSPAMD_QUARANTINE, /* forced by rspamd settings only */
};

enum rspamd_status {
	RSPAMD_CHECKED,     /* action and the rest are valid */
	RSPAMD_TOO_LARGE,   /* above rspamd-max-size: not sent */
	RSPAMD_ERROR,       /* a server took it, no verdict (reason says why) */
	RSPAMD_UNAVAILABLE, /* no server took it (reason says why) */
};

struct rspamd_symbol {
	char name[RSPAMD_NAME_MAX];
	double score;
};

struct rspamd_header {
	char name[RSPAMD_NAME_MAX];   /* a valid field name (printable, no ':') */
	char value[RSPAMD_VALUE_MAX]; /* unfolded, one line */
};

struct rspamd_result {
	enum rspamd_status status;
	enum rspamd_action action;
	double score, required_score;
	bool skipped;                  /* rspamd skipped the checks (GTUBE, settings) */
	unsigned nsymbols;             /* kept, highest score first */
	unsigned symbols_total;        /* in the reply */
	struct rspamd_symbol symbols[RSPAMD_SYMBOLS_MAX];
	bool has_subject;              /* "rewrite subject": the new subject */
	char subject[RSPAMD_SUBJECT_MAX];
	unsigned nadd, nremove;        /* milter.add_headers / remove_headers */
	struct rspamd_header add[RSPAMD_HEADERS_MAX];
	char remove[RSPAMD_HEADERS_MAX][RSPAMD_NAME_MAX];
	char smtp_message[RSPAMD_MESSAGE_MAX]; /* messages.smtp_message, "" if none */
	char reason[SCANNER_ERROR_MAX];        /* TOO_LARGE, ERROR, UNAVAILABLE */
	const char *server;            /* as in struct clamd_result */
	uint64_t size;
	uint64_t elapsed_ms;
};

struct rspamd_envelope {
	const union sockaddr_any *client; /* IP; NULL: not sent */
	const char *helo;
	const char *mail_from;            /* "" for the null sender */
	const char *const *rcpts;
	int nrcpts;
	const char *queue_id;
	const char *user;                 /* AUTH identity; NULL: none */
	const char *tls_version;          /* client leg; NULL: cleartext */
	const char *tls_cipher;
	const char *hostname;             /* the client's verified name; NULL: rspamd resolves */
	const char *settings_id;          /* NULL: none */
	const char *mta_name;             /* NULL: none */
};

struct rspamd_pool;
struct rspamd_scan;

typedef void rspamd_done_fn(void *arg, const struct rspamd_result *res);
typedef void rspamd_resume_fn(void *arg);

struct rspamd_pool *rspamd_pool_new(const struct conf_scanners *sc);
struct rspamd_pool *rspamd_pool_new_opts(const struct conf_scanners *sc,
    const struct scanner_opts *o);
void rspamd_pool_free(struct rspamd_pool *p);
/*
 * scanner_pool_status() with the prefix "rspamd"; counters no-action,
 * greylist, add-header, rewrite-subject, soft-reject, reject, other
 * (discard, quarantine), scan-errors.
 */
void rspamd_pool_status(const struct rspamd_pool *p, FILE *f);

/*
 * Start a check; env is copied.  size: the message's size when known
 * (Content-Length; feeding more, or ending with less, is an ERROR), or
 * RSPAMD_SIZE_UNKNOWN (chunked).
 */
struct rspamd_scan *rspamd_scan_start(struct rspamd_pool *p, uint64_t sid,
    const struct rspamd_envelope *env, uint64_t size, rspamd_done_fn *done,
    rspamd_resume_fn *resume, void *arg);
int rspamd_scan_feed(struct rspamd_scan *s, const char *data, size_t len);
void rspamd_scan_end(struct rspamd_scan *s);
void rspamd_scan_cancel(struct rspamd_scan *s);

const char *rspamd_status_name(enum rspamd_status st);
/* "no action", "reject", ... as rspamd spells them. */
const char *rspamd_action_name(enum rspamd_action a);

/* --- pure parts (no I/O) --- */

/*
 * The request line and headers for env (size as for rspamd_scan_start),
 * appended to out; -1 when out has no room.
 */
int rspamd_request_head(struct buf *out, const struct rspamd_envelope *env, uint64_t size);

/* An HTTP/1.x response read incrementally. */
struct rspamd_http {
	int state;
	int status;                   /* 200, ... */
	uint64_t content_length;
	bool has_length, chunked;
	uint64_t chunk_left;
	size_t head_bytes;            /* status lines and headers so far */
	unsigned interim;             /* 1xx responses skipped */
	struct buf body;              /* bounded by RSPAMD_REPLY_MAX */
};

void rspamd_http_init(struct rspamd_http *h);
void rspamd_http_free(struct rspamd_http *h);
/*
 * Consume what in holds: SCANNER_PARSE_MORE, SCANNER_PARSE_DONE (status
 * and body complete) or SCANNER_PARSE_BAD (why filled).  eof: the server
 * closed (ends a body without length; anything else is incomplete).
 */
int rspamd_http_parse(struct rspamd_http *h, struct buf *in, bool eof, char *why, size_t whylen);

/*
 * Map a /checkv2 JSON reply into res (status RSPAMD_CHECKED); -1 with
 * why when it is not JSON, too deep, or lacks action / score.
 */
int rspamd_json_result(const char *json, size_t len, struct rspamd_result *res, char *why,
    size_t whylen);

#endif
