/*
 * session - one intercepted connection: a client leg (the accepted socket)
 * and a server leg (our own connection to the original destination).
 *
 * The server leg is connected before anything is said to the client (SMTP
 * is server-speaks-first); if that fails or times out the client gets
 * "421 4.4.1" and a clean close, never a silent drop.
 *
 * Once the server leg is up, the SMTP engine (smtp_proxy.h) owns both
 * legs' input: it parses every command, reply and message line and writes
 * re-framed SMTP to the other leg.  No byte is relayed unparsed, except
 * after the engine asks for a splice (TLS action "allow": TLS we do not
 * terminate).  The engine knows the session only through struct
 * smtp_ops (close, finish, splice, reconnect); the session owns the legs'
 * sockets and the engine's life.  A reconnect replaces the server leg
 * (same destination, same source-address rules) after the engine closed
 * it to discard a message.
 *
 * Sessions are freed only from the event loop's idle hook (session_reap),
 * so closing a session from inside any io callback is safe.
 */
#ifndef SMTPGW_SESSION_H
#define SMTPGW_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "io.h"
#include "inspect.h"
#include "mark.h"
#include "smtp_proxy.h"

/* Per-leg buffer bounds (bytes): what one peer can make us hold. */
#define LEG_IN_MAX (64 * 1024)
#define LEG_OUT_MAX (256 * 1024)
#define LEG_OUT_LOWAT (64 * 1024)

/* Time to flush a final reply to a client before the socket is dropped. */
#define SESSION_LINGER_MS 10000u

struct session;

struct leg {
	struct io *io; /* NULL until the socket exists (the server leg before connect) */
	struct session *s;
	union sockaddr_any local, peer;
	const char *name; /* "client" / "server" for logs */
};

enum session_state {
	SESSION_CONNECTING, /* server leg connecting; the client hears nothing yet */
	SESSION_SMTP,       /* the engine runs */
	SESSION_CLOSING,    /* flushing a final reply to the client */
	SESSION_SPLICE,     /* TLS action allow: after STARTTLS, bytes are relayed untouched */
};

struct session {
	uint64_t id;
	struct session *next, *prev;
	enum session_state state;
	const struct config *conf;
	const struct smtp_limits *lim; /* the policy's proxy action's (global without one) */
	struct mark_fields mf;
	bool spoof;
	bool dead;
	bool counted;          /* holds a place in the shared session limits */
	unsigned limit_bucket;
	uint64_t start_ms;
	struct leg client, server;
	const char *end_reason;
	struct smtp_engine *eng; /* the SMTP engine; owned, freed by session_reap() */
	bool implicit_tls;       /* port 465: TLS from the first byte on both legs */
	unsigned reconnects;     /* server legs replaced (smtp_ops.reconnect) */
	uint64_t server_bytes;   /* octets read on replaced server legs */
};

/*
 * Take over an accepted, classified client socket.  orig_dst comes from
 * getsockname(), client from getpeername().  Returns NULL (and closes fd)
 * if the session could not even start.
 */
struct session *session_start(int fd, const union sockaddr_any *client,
    const union sockaddr_any *orig_dst, const struct mark_fields *mf,
    const struct config *conf);
/*
 * Take over two connected sockets (tests and fuzzers drive the engine
 * through socket pairs): the server leg is treated as already connected.
 */
struct session *session_attach(int cfd, int sfd, const struct config *conf,
    const struct inspector *insp);
/* End a session now; the reason goes to the log. */
void session_close(struct session *s, const char *reason);
/* Free the sessions closed since the last call (ev idle hook). */
void session_reap(void);
unsigned session_count(void);
/* Live sessions without a running timer (the liveness property; 0 is right). */
unsigned session_unwatched(void);
void session_close_all(const char *reason);

#endif
