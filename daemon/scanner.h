/*
 * scanner - the client side of a pool of content scanners (clamd,
 * rspamd), inside the worker's event loop.  The protocols (clamd.c,
 * rspamd.c) frame requests and parse replies; this module owns what they
 * share: the servers, their health, connections, the queue, failover,
 * timeouts and counters.
 *
 * A request is a message streamed in as it arrives:
 *   scanner_req_start()  enter the pool: a connection to a server now, or
 *                        a place in the queue
 *   scanner_req_feed()   message octets, taken in full every time; the
 *                        answer SCANNER_FEED_BUSY asks the feeder to wait
 *                        for proto->resume() before feeding more
 *                        (back-pressure: nothing is read from the client
 *                        meanwhile, so memory stays bounded)
 *   scanner_req_end()    the whole message was fed
 *   proto->done()        the outcome, exactly once, always from the event
 *                        loop (never from inside a scanner_req_* call)
 *   scanner_req_cancel() the owner gives up (its session ends): no call
 *                        back, ever; the request's connection is closed
 *                        (never reused: a reply may still come on it).
 *
 * Servers are tried least busy first among the healthy ones (ties in the
 * configured order).  A connect error or timeout, a server that closes or
 * stalls (no progress for `timeout`) marks the server down; the request
 * then fails over to the next healthy server it has not tried, as long as
 * it can be replayed: everything fed is kept while the message is at most
 * SCANNER_REPLAY_MAX octets (covers most mail, and always what goes out
 * before a reused connection can turn out stale).  A down server is
 * probed (proto->ping) after a backoff of 1 s doubling to 60 s, and a
 * healthy idle one every SCANNER_CHECK_MS, so a dead scanner is noticed
 * before a message waits on it.
 *
 * Outcomes (enum scanner_outcome):
 *   REPLY        a server answered; the protocol parsed the verdict
 *   TOO_LARGE    more than max_size octets were fed: nothing more is sent
 *   ERROR        a server took the request but no verdict came (stall,
 *                closed mid-request, malformed reply, an error reply).
 *                Message-specific failures land here, never in
 *                UNAVAILABLE: a message that crashes or hangs a scanner
 *                must not pass as "scanner unavailable -> allow".
 *   UNAVAILABLE  no server took the request: all down, every connect
 *                failed, or the queue is full / waited too long.
 *
 * Connection reuse (proto->session_open, clamd's IDSESSION): after a
 * complete reply a connection goes idle for idle_timeout, then closes; a
 * request takes an idle connection before opening one.  An idle
 * connection whose server closed it is noticed by the loop; one closed at
 * the very moment it is reused fails at once and the request retries on a
 * fresh connection (once, same server, not marked down).  A connection is
 * reused only after a complete, clean exchange.
 *
 * Limits (per worker): `connections` requests at once per server,
 * `queue` waiting, SCANNER_BACKLOG_MAX octets of a request not yet on the
 * wire (feeding past it is an ERROR: the feeder ignored back-pressure),
 * SCANNER_REPLAY_MAX kept for replay.
 */
#ifndef SMTPGW_SCANNER_H
#define SMTPGW_SCANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "ev.h"

#define SCANNER_HIWAT (128 * 1024)        /* unsent octets that make feed() answer BUSY */
#define SCANNER_LOWAT (32 * 1024)         /* ... and that resume the feeder */
#define SCANNER_BACKLOG_MAX (1024 * 1024) /* unsent octets a request may have at most */
#define SCANNER_REPLAY_MAX (256 * 1024)   /* a request is replayable up to this size */
#define SCANNER_OUT_MAX (2 * SCANNER_BACKLOG_MAX) /* a connection's output buffer */
#define SCANNER_IN_MAX (512 * 1024)       /* a connection's input buffer */
#define SCANNER_CHECK_MS 30000            /* health check of an idle healthy server */
#define SCANNER_BACKOFF_MIN_MS 1000
#define SCANNER_BACKOFF_MAX_MS 60000
#define SCANNER_PING_TIMEOUT_MS 5000      /* at most; less when timeout is shorter */
#define SCANNER_ERROR_MAX 160             /* reasons and last errors, bounded */
#define SCANNER_COUNTERS_MAX 8            /* protocol-specific counters per server */

enum scanner_outcome {
	SCANNER_REPLY,
	SCANNER_TOO_LARGE,
	SCANNER_ERROR,
	SCANNER_UNAVAILABLE,
};

/* scanner_req_feed() */
#define SCANNER_FEED_OK 0
#define SCANNER_FEED_BUSY 1 /* taken; feed more only after proto->resume() */
#define SCANNER_FEED_DONE 2 /* not wanted: the outcome is decided and on its way */

/* proto->reply() and proto->pong() */
#define SCANNER_PARSE_MORE 0
#define SCANNER_PARSE_DONE 1
#define SCANNER_PARSE_BAD (-1)

struct scanner_req;
struct scanner_pool;
struct scanner_server;

/* A protocol: how requests are framed and replies read (clamd.c, rspamd.c). */
struct scanner_proto {
	const char *name; /* "clamd": logs and status keys */
	/*
	 * Framing of one attempt into out (called again for each attempt);
	 * -1 when out has no room (the attempt fails as an error).
	 */
	int (*begin)(struct scanner_req *r, struct buf *out);
	int (*chunk)(struct scanner_req *r, struct buf *out, const char *p, size_t n);
	int (*end)(struct scanner_req *r, struct buf *out);
	/*
	 * Parse what the server sent (consume from in).  seq is the reply id
	 * the server must use (1, 2, ... on a reused session connection; 0
	 * when the connection carries no session).  eof: the server closed.
	 * DONE when the verdict is complete (the protocol keeps it in its
	 * request), BAD with why filled for a malformed or failed exchange.
	 */
	int (*reply)(struct scanner_req *r, struct buf *in, unsigned seq, bool eof, char *why,
	    size_t whylen);
	/*
	 * Whether the reply just parsed refuses the request (an error, too
	 * large): the only kind a server may send before it has the whole
	 * message.  A verdict that comes earlier is malformed (an ERROR):
	 * "clean" for half a message must never pass.
	 */
	bool (*refusal)(const struct scanner_req *r);
	/* Opens a reusable session on a new connection (NULL: no reuse). */
	const char *session_open;
	size_t session_open_len;
	/* Health check: the request, and whether a reply means "healthy". */
	const char *ping;
	size_t ping_len;
	int (*pong)(struct buf *in, bool eof);
	/* The outcome (see above); reason for everything but REPLY. */
	void (*done)(struct scanner_req *r, enum scanner_outcome o, const char *reason);
	/* feed() answered BUSY and more can be taken now. */
	void (*resume)(struct scanner_req *r);
	/* Names of the counters the protocol bumps with scanner_count(). */
	const char *const *counters;
	unsigned ncounters;
};

struct scanner_opts {
	unsigned timeout_ms;      /* no progress on a request (connect, send, reply) */
	unsigned connections;     /* requests at once per server */
	unsigned queue;           /* requests waiting for a connection */
	uint64_t max_size;        /* octets of a message */
	unsigned idle_ms;         /* reuse window of a finished connection; 0: never */
};

/*
 * A request.  Protocols embed it (first member or container_of) and keep
 * their own state beside it; every field is the pool's.
 */
struct scanner_req {
	struct scanner_pool *pool;
	uint64_t sid;               /* session id for log lines */
	struct scanner_conn *conn;  /* the attempt's connection; NULL when queued */
	struct scanner_req *qnext;  /* queue link */
	struct buf hold;            /* fed octets: all of them while replayable, else unsent ones */
	uint64_t fed;               /* octets fed in all */
	uint64_t tried;             /* bit per server index: attempted */
	struct ev_timer timer;      /* queue wait; deferred outcome */
	uint64_t started_ms;
	enum scanner_outcome outcome;
	char reason[SCANNER_ERROR_MAX];
	const char *server;         /* address text of the server of the last attempt */
	int server_index;           /* -1 before the first attempt */
	bool queued;                /* waiting in the pool's queue */
	bool ended;                 /* scanner_req_end() was called */
	bool replayable;            /* hold has every octet fed: another attempt can start */
	bool accepted;              /* some server took a connection for it */
	bool stale_retry;           /* the one retry after a stale reused connection is used */
	bool busy;                  /* feed() answered BUSY; resume() is owed */
	bool resume_due;            /* ... and is on its way (timer) */
	bool finished;              /* the outcome is decided (delivered by the timer) */
};

/*
 * A new pool for proto over the servers of sc (copied); health checks
 * start at once.  Call inside the worker, after ev_init().
 */
struct scanner_pool *scanner_pool_new(const struct scanner_proto *proto,
    const struct conf_scanners *sc);
/* Options derived from a configuration section (seconds to milliseconds). */
void scanner_opts_from_conf(struct scanner_opts *o, const struct conf_scanners *sc);
/* The same pool with explicit options (tests, the test driver). */
struct scanner_pool *scanner_pool_new_opts(const struct scanner_proto *proto,
    const struct conf_scanners *sc, const struct scanner_opts *o);
/* Frees the pool: every request must be finished or cancelled first. */
void scanner_pool_free(struct scanner_pool *p);
int scanner_pool_servers(const struct scanner_pool *p);
uint64_t scanner_pool_max_size(const struct scanner_pool *p);
/* Requests started and not yet finished or cancelled. */
unsigned scanner_pool_outstanding(const struct scanner_pool *p);

/* See the top of this file.  req is zeroed by the caller's allocation. */
void scanner_req_start(struct scanner_pool *p, struct scanner_req *req, uint64_t sid);
int scanner_req_feed(struct scanner_req *req, const char *data, size_t len);
void scanner_req_end(struct scanner_req *req);
void scanner_req_cancel(struct scanner_req *req);
/*
 * The owner ends the request with outcome o (not REPLY) and reason:
 * nothing more is sent, and done() brings the outcome back like any
 * other (from the loop).  For checks only the protocol can make (rspamd:
 * fewer octets than announced).
 */
void scanner_req_fail(struct scanner_req *req, enum scanner_outcome o, const char *reason);
/* Bump protocol counter idx of the server that answered req. */
void scanner_count(struct scanner_req *req, unsigned idx);

/*
 * The pool's state as "key=value" lines for smtpgwctl status (status.h
 * format), keys "<prefix>.<n>.<item>" per server n (1-based) and
 * "<prefix>.<item>" for the pool:
 *   <prefix>.servers            number of servers
 *   <prefix>.queued             requests waiting now
 *   <prefix>.unavailable        outcomes UNAVAILABLE (no server took it)
 *   <prefix>.too-large          outcomes TOO_LARGE
 *   <prefix>.N.address          as configured
 *   <prefix>.N.health           up | down | unchecked
 *   <prefix>.N.since            epoch of the last health change (0: none)
 *   <prefix>.N.requests         attempts sent to it
 *   <prefix>.N.connects         connections opened for them (fewer: reuse)
 *   <prefix>.N.replies          verdicts it gave
 *   <prefix>.N.errors           attempts that failed (timeouts included)
 *   <prefix>.N.timeouts         ... of which timeouts
 *   <prefix>.N.active           requests on it now
 *   <prefix>.N.idle             idle reusable connections now
 *   <prefix>.N.<counter>        the protocol's counters (clamd: infected...)
 *   <prefix>.N.last-error       the last failure, one line (empty: none)
 *   <prefix>.N.last-error-time  its epoch (0: none)
 */
void scanner_pool_status(const struct scanner_pool *p, const char *prefix, FILE *f);

/*
 * The pending octets of a buffer that may never have held any (its data
 * still NULL: buf_head() would be NULL + 0): "" then, for parsers that
 * are handed an empty input.
 */
static inline const char *
scanner_head(const struct buf *b)
{
	return b->data != NULL ? buf_head(b) : "";
}

/* Milliseconds since the request started (for log lines). */
uint64_t scanner_req_elapsed(const struct scanner_req *req);

#endif
