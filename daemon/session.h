/*
 * session - one intercepted connection: a client leg (the accepted socket)
 * and a server leg (our own connection to the original destination).
 *
 * The server leg is connected before anything is said to the client (SMTP
 * is server-speaks-first); if that fails or times out the client gets
 * "421 4.4.1" and a clean close, never a silent drop.
 *
 * Until the SMTP engine lands, a connected session relays bytes between
 * the legs (session_relay_*).  The engine replaces exactly that part: it
 * consumes leg->io.in on each side and writes re-framed SMTP to the other.
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
#include "mark.h"

/* Per-leg buffer bounds (bytes): what one peer can make us hold. */
#define LEG_IN_MAX (64 * 1024)
#define LEG_OUT_MAX (256 * 1024)
#define LEG_OUT_LOWAT (64 * 1024)

/* No traffic in either direction for this long ends a relayed session (RFC 5321 4.5.3.2: 10 min for the longest wait). */
#define SESSION_IDLE_MS (10u * 60u * 1000u)
/* Time to flush a final reply to a client before the socket is dropped. */
#define SESSION_LINGER_MS 10000u

struct session;

struct leg {
	struct io io;
	struct session *s;
	union sockaddr_any local, peer;
	const char *name; /* "client" / "server" for logs */
	uint64_t bytes_in;
};

enum session_state {
	SESSION_CONNECTING, /* server leg connecting; the client hears nothing yet */
	SESSION_RELAY,
	SESSION_CLOSING,    /* flushing a final reply to the client */
};

struct session {
	uint64_t id;
	struct session *next, *prev;
	enum session_state state;
	const struct config *conf;
	struct mark_fields mf;
	bool spoof;
	bool dead;
	uint64_t start_ms;
	struct leg client, server;
	const char *end_reason;
};

/*
 * Take over an accepted, classified client socket.  orig_dst comes from
 * getsockname(), client from getpeername().  Returns NULL (and closes fd)
 * if the session could not even start.
 */
struct session *session_start(int fd, const union sockaddr_any *client,
    const union sockaddr_any *orig_dst, const struct mark_fields *mf,
    const struct config *conf);
/* End a session now; the reason goes to the log. */
void session_close(struct session *s, const char *reason);
/* Free the sessions closed since the last call (ev idle hook). */
void session_reap(void);
unsigned session_count(void);
unsigned session_count_for(const union sockaddr_any *client);
void session_close_all(const char *reason);

#endif
