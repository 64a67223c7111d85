/*
 * inspect - the content-inspection interface the SMTP engine calls for
 * every transaction: the envelope first, then the message as a stream of
 * octets exactly as the destination will receive it (unstuffed, CRLF
 * lines), then a request for the verdict.  The engine withholds the
 * end-of-data (the final dot, or BDAT ... LAST) from the destination until
 * the verdict allows it.
 *
 * The content-inspection issue fills this with real inspectors (limits,
 * headers, MIME, ClamAV); today the engine uses inspect_allow.
 */
#ifndef SMTPGW_INSPECT_H
#define SMTPGW_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

struct inspect_envelope {
	uint64_t session_id;
	bool inbound;
	const union sockaddr_any *client, *server;
	const char *helo;
	const char *mail_from;   /* "" for the null sender */
	const char *const *rcpts; /* recipients sent to the destination */
	int nrcpts;
};

enum inspect_verdict {
	INSPECT_ALLOW,
	INSPECT_DENY,     /* permanent: reply is a 5xx */
	INSPECT_TEMPFAIL, /* temporary: reply is a 4xx */
};

struct inspect_result {
	enum inspect_verdict verdict;
	char reply[256]; /* SMTP reply without CRLF, for DENY / TEMPFAIL */
	char reason[64]; /* short token for the log */
};

struct inspector {
	const char *name;
	/* Returns the transaction's state (may be NULL for a stateless inspector). */
	void *(*begin)(const struct inspector *in, const struct inspect_envelope *env);
	void (*body)(void *txn, const char *data, size_t len);
	/* The verdict; the inspector frees txn here. */
	void (*end)(void *txn, struct inspect_result *res);
	/* The transaction was abandoned before end(); free txn. */
	void (*abort)(void *txn);
};

extern const struct inspector inspect_allow;

#endif
