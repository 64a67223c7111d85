/*
 * smtp_proxy - the SMTP engine: smtpgw speaks SMTP as a server to the
 * client and as a client to the real destination.  Every command, reply
 * and message line is parsed (smtp_parse, smtp_data) and re-emitted in
 * canonical form; no byte is spliced from one leg to the other.
 *
 * Replies reach the client in command order through one FIFO of pending
 * replies: a command answered locally gets a ready entry, a command
 * forwarded upstream an entry that the upstream's reply fills.
 *
 * The engine is split by concern, sharing one private header
 * (smtp_int.h):
 *   smtp_proxy.c     this interface, the phase, the client timer, events
 *   smtp_cmd.c       the client's commands: the command table, handlers
 *   smtp_reply.c     the reply FIFO, the upstream's replies, upstream loss
 *   smtp_msg.c       the transaction, DATA and BDAT into the inspector and upstream
 *   tls_intercept.c  STARTTLS on each leg, the ClientHello pause, certificates
 *
 * Invariants (each enforced in one place):
 *  - nothing is sent upstream before the final line of its greeting
 *    (smtp_reply.c);
 *  - DATA mode starts only after the upstream's 354 (smtp_reply.c);
 *  - the end of data (".", BDAT LAST) goes upstream only after the
 *    inspection verdict, and never for incomplete or refused data
 *    (smtp_msg.c, msg_end);
 *  - the client's end of data is answered with the upstream's own reply;
 *  - a held message (inspect.h) reaches the destination only after its
 *    verdict, with its edits; nothing of a denied one ever does, and the
 *    session goes on (smtp_msg.c, smtp_upstream.c);
 *  - bytes after a group-ending command, before its reply, are a protocol
 *    error: never executed (smtp_cmd.c);
 *  - after either leg's STARTTLS, no byte read before the handshake is
 *    ever interpreted (tls_intercept.c, io.c).
 *
 * The engine owns its timers and knows its session only through the
 * narrow smtp_ops below: it never includes session.h.
 */
#ifndef SMTPGW_SMTP_PROXY_H
#define SMTPGW_SMTP_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "inspect.h"
#include "io.h"

struct smtp_engine;

/* What the engine may ask of the session that owns it. */
struct smtp_ops {
	/* End the session now; the reason goes to the log. */
	void (*close)(void *owner, const char *reason);
	/* Flush what is queued to the client, then close both legs. */
	void (*finish)(void *owner, const char *reason);
	/* TLS action "allow": relay raw bytes between the legs from now on. */
	void (*splice)(void *owner);
	/*
	 * A new connection to the same destination, from the same source
	 * address rules, in place of the server leg (already closed by the
	 * engine): its io, connecting -- IO_CONNECTED or a failure follows
	 * through smtp_server_event() -- or NULL and *why.
	 */
	struct io *(*reconnect)(void *owner, const char **why);
};

/* Everything the engine is told about its session when it is created. */
struct smtp_setup {
	uint64_t id;                   /* the session id, for every log line */
	const struct config *conf;
	const struct smtp_limits *lim; /* the policy's proxy action's (global without one) */
	int policy;                    /* policy index, -1 for none */
	bool inbound;
	const union sockaddr_any *client_addr, *server_addr; /* stay valid for the engine's life */
	struct io *client;             /* the accepted socket */
	const struct inspector *insp;  /* NULL: allow everything */
	const struct smtp_ops *ops;
	void *owner;
};

struct smtp_engine *smtp_new(const struct smtp_setup *setup);
/* The session is closing: cancel the engine's timers, deliver nothing more. */
void smtp_stop(struct smtp_engine *e);
/* Free; only after smtp_stop() and outside any callback (the session's reap). */
void smtp_free(struct smtp_engine *e);
/* The upstream connection is up: wait for its greeting. */
void smtp_upstream_connected(struct smtp_engine *e, struct io *server);
void smtp_client_event(struct smtp_engine *e, enum io_event ev);
void smtp_server_event(struct smtp_engine *e, enum io_event ev);
/* The engine's own (client) timer is running. */
bool smtp_timer_armed(const struct smtp_engine *e);

/* Worker start: install the ClientHello and new-session callbacks on the TLS contexts. */
void tlsi_init(void);
/* Implicit TLS (465): the client's handshake starts now, paused at its ClientHello. */
void tlsi_implicit_start(struct smtp_engine *e);
/*
 * The session is refusing the client while its handshake (465, or after
 * STARTTLS) is paused at its ClientHello: let it finish (Proxy Server
 * certificate) so the client can read the refusal.  0 when there is
 * nothing to do; -1 when that is impossible (close at once).
 */
int tlsi_finish_for_reply(struct smtp_engine *e);

#endif
