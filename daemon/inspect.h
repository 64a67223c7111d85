/*
 * inspect - the content-inspection interface the SMTP engine calls for
 * every transaction: begin() with the envelope, body() with the message
 * as a stream of octets exactly as the destination would receive it
 * (unstuffed CRLF lines, before any edit), then end() for the verdict.
 * The engine withholds the end of data (the final dot, BDAT ... LAST)
 * from the destination until the verdict allows it.
 *
 * Asynchronous inspectors (a scanner behind a socket, clamd, rspamd):
 *  - end() may return INSPECT_PENDING: the verdict comes later through
 *    hooks->verdict().  The client's end of data is simply not answered
 *    until then; the worker serves every other session meanwhile.
 *  - body() may return INSPECT_BUSY (back-pressure): what it was given is
 *    taken in full; the engine finishes the line it was feeding (at most
 *    its CRLF more), then feeds nothing -- and reads nothing from the
 *    client -- until hooks->resume().
 *  - Hooks are called from the event loop, never from inside begin(),
 *    body(), end() or abort().
 *  - abort() cancels the transaction at any point before its verdict has
 *    been delivered (RSET, a new MAIL, either peer gone, the verdict's
 *    timeout, the session's end).  When it returns the inspector has
 *    released the transaction (timers, sockets, memory) and calls no hook
 *    of it, ever.  That is the whole cancellation contract: it is what
 *    lets the engine -- and the hooks it handed out -- be freed while a
 *    verdict is outstanding.
 *  - Every wait is bounded by the proxy action's inspect-timeout; when it
 *    expires the engine aborts the transaction and applies
 *    inspect-timeout-action (default tempfail, 451 4.7.1).
 *
 * Held messages: begin() sets INSPECT_F_HOLD in *flags when a rule of
 * this transaction may change the message (strip, rewrite, an added
 * header).  The engine then holds the message -- in memory up to the
 * action's hold-memory, the rest in an unlinked spool file -- and sends
 * nothing of it upstream before the verdict; an ALLOW verdict may carry
 * edits, applied while the held copy streams to the destination.  Without
 * the flag the message streams upstream as it arrives and only its end
 * waits for the verdict; edits are then refused (tempfail).  From end()
 * until the verdict (or abort()), hooks->held() gives the inspector the
 * held message, sealed, to read (hold.h: hold_read): what it scans and
 * what it quarantines come from there.
 *
 * Edits are whole-line replacements in the octets body() saw: [off,
 * off + len) becomes text (empty text deletes, len 0 inserts before off).
 * Sorted by off, non-overlapping, off and off + len at line starts (or at
 * the end of the message); text is CRLF lines, none longer than the
 * action's max-line-length, with no NUL, bare CR or bare LF.  A verdict
 * whose edits break a rule is a tempfail: the engine never sends a
 * message it cannot frame.  Limits: INSPECT_MAX_EDITS edits,
 * INSPECT_EDIT_TEXT_MAX octets of text in all.
 */
#ifndef SMTPGW_INSPECT_H
#define SMTPGW_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"

#define INSPECT_MAX_EDITS 256
#define INSPECT_EDIT_TEXT_MAX (256 * 1024)

struct inspect_envelope {
	uint64_t session_id;
	bool inbound;
	const struct config *conf;        /* the session's configuration (its [global]) */
	const struct conf_action *action; /* the session's proxy action; NULL without one */
	const union sockaddr_any *client, *server;
	const char *helo;
	const char *mail_from;   /* "" for the null sender */
	const char *const *rcpts; /* recipients sent to the destination */
	int nrcpts;
	/* TLS: the client's leg (NULL: cleartext), whether the upstream leg is
	 * encrypted, and the name the upstream certificate is judged on ("") */
	const char *tls_version, *tls_cipher;
	bool upstream_tls;
	const char *server_name;
};

struct hold;

enum inspect_verdict {
	INSPECT_ALLOW,
	INSPECT_DENY,     /* permanent: reply is a 5xx */
	INSPECT_TEMPFAIL, /* temporary: reply is a 4xx */
};

struct inspect_edit {
	uint64_t off, len; /* the octets replaced, in the message as inspected */
	char *text;        /* what replaces them (owned by the result) */
	size_t textlen;
};

struct inspect_result {
	enum inspect_verdict verdict;
	char reply[256]; /* SMTP reply without CRLF, for DENY / TEMPFAIL */
	char reason[64]; /* short token for the log */
	/*
	 * DENY only: the session ends after the reply (a rule's drop), and
	 * the client's address goes on the blocked sites list (block).
	 */
	bool close, block;
	struct inspect_edit *edits; /* ALLOW of a held message; see inspect_result_edit() */
	unsigned nedits;
	size_t edit_text;           /* octets of text in all edits */
};

/* begin() flags */
#define INSPECT_F_HOLD 0x1u /* a rule may change this message: hold it until the verdict */

/* body() */
#define INSPECT_OK 0
#define INSPECT_BUSY 1 /* taken; nothing more after this line until hooks->resume() */
/* end() */
#define INSPECT_DONE 0    /* *res is the verdict; the transaction is over */
#define INSPECT_PENDING 1 /* the verdict comes through hooks->verdict() */

/* How an inspector reports back to the engine; valid until the verdict or abort(). */
struct inspect_hooks {
	/*
	 * The verdict of an end() that returned INSPECT_PENDING.  The
	 * transaction is over when this is called (the inspector frees its
	 * state before or after); the engine takes the edits out of res.
	 */
	void (*verdict)(void *ctx, struct inspect_result *res);
	/* body() returned INSPECT_BUSY: the inspector can take more now. */
	void (*resume)(void *ctx);
	/*
	 * The held message (INSPECT_F_HOLD, or hold = always), sealed, from
	 * end() until the verdict or abort(); NULL when it is not held.
	 */
	struct hold *(*held)(void *ctx);
	void *ctx;
};

struct inspector {
	const char *name;
	/*
	 * A new transaction: returns its state (NULL is allowed for a
	 * stateless inspector).  *flags starts at 0.
	 */
	void *(*begin)(const struct inspector *in, const struct inspect_envelope *env,
	    const struct inspect_hooks *hooks, unsigned *flags);
	/* Message octets; INSPECT_OK or INSPECT_BUSY. */
	int (*body)(void *txn, const char *data, size_t len);
	/* The verdict: INSPECT_DONE with *res filled, or INSPECT_PENDING. */
	int (*end)(void *txn, struct inspect_result *res);
	/* Cancel before the verdict (see above); frees txn. */
	void (*abort)(void *txn);
};

extern const struct inspector inspect_allow;

/*
 * Add an edit to an ALLOW result (text copied).  Returns -1 beyond
 * INSPECT_MAX_EDITS or INSPECT_EDIT_TEXT_MAX; the engine checks the
 * rules above when it applies them.
 */
int inspect_result_edit(struct inspect_result *res, uint64_t off, uint64_t len,
    const char *text, size_t textlen);
/* Free the edits and reset res to an empty ALLOW. */
void inspect_result_clear(struct inspect_result *res);
/* Move src into dst (dst cleared first); src is left empty. */
void inspect_result_move(struct inspect_result *dst, struct inspect_result *src);

#endif
