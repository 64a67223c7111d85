/*
 * smtp_proxy - the SMTP engine's core (design and invariants in
 * smtp_proxy.h): its life cycle, the one place its phase changes, the
 * client timer, and the io events of both legs, dispatched to the
 * command side (smtp_cmd.c), the message side (smtp_msg.c), the reply
 * side (smtp_reply.c) and TLS interception (tls_intercept.c).
 */
#include <stdlib.h>
#include <string.h>

#include "blocked.h"
#include "certcache.h"
#include "log.h"
#include "smtp_int.h"
#include "util.h"

static const char *const phase_names[] = {
	[SP_GREETING] = "greeting",
	[SP_COMMAND] = "command",
	[SP_DATA] = "data",
	[SP_BDAT] = "bdat",
	[SP_AUTH] = "auth",
	[SP_NOUP] = "no-upstream",
	[SP_TLS_WAIT] = "tls-wait",
	[SP_CLOSING] = "closing",
	[SP_VERDICT] = "verdict",
	[SP_RELINK] = "relink",
};

const char *
smtp_phase_name(enum smtp_phase phase)
{
	return (size_t)phase < ARRAY_SIZE(phase_names) ? phase_names[phase] : "?";
}

/* The only place the phase changes (the debug log shows every change). */
void
smtp_enter(struct smtp_engine *e, enum smtp_phase phase)
{
	if (e->phase == phase)
		return;
	if (log_debug_enabled())
		log_sid(LOG_LVL_DEBUG, e->id, "smtp phase from=%s to=%s", phase_names[e->phase],
		    phase_names[phase]);
	e->phase = phase;
}

const struct conf_action *
smtp_action(const struct smtp_engine *e)
{
	return config_action_of(e->conf, e->policy);
}

int
smtp_profile(const struct smtp_engine *e)
{
	const struct conf_action *a = smtp_action(e);

	return a ? a->profile : 0;
}

/*
 * A rule said block: the client's address goes on the blocked sites list
 * (the kernel refuses its next connections until the list's timeout);
 * the session itself ends as with drop.
 */
void
smtp_block_client(struct smtp_engine *e, const char *token, const char *reason)
{
	char addr[ADDR_STRLEN], q[LOG_QUOTE_SIZE(200)];

	log_sid(LOG_LVL_WARN, e->id, "smtp block client=%s rule=%s reason=%s",
	    addr_fmt(e->client_addr, addr, sizeof(addr)), token,
	    log_quote(q, sizeof(q), reason, strlen(reason) > 200 ? 200 : strlen(reason)));
	/* 0: the blocked-sites-timeout of the configuration */
	(void)blocked_request(e->client_addr, 0, token, e->id);
}

/* The last replies are out (or given up on): flush, then the session ends. */
void
smtp_finish(struct smtp_engine *e, const char *why)
{
	smtp_enter(e, SP_CLOSING);
	/* A client handshake paused at its hello finishes first, so the last reply can be read. */
	if (tlsi_finish_for_reply(e) < 0) {
		smtp_close(e, "tls-local-error");
		return;
	}
	e->ops->finish(e->owner, why);
}

void
smtp_close(struct smtp_engine *e, const char *why)
{
	e->ops->close(e->owner, why);
}

/* Run the client's buffered input through the phase that owns it. */
void
smtp_process_client(struct smtp_engine *e)
{
	while (!smtp_stopped(e)) {
		enum smtp_phase before = e->phase;

		switch (e->phase) {
		case SP_GREETING:
			return; /* kept in the buffer: checked when the greeting is out */
		case SP_TLS_WAIT:
		case SP_VERDICT: /* the client's next commands wait for the message's end */
		case SP_RELINK:  /* ... or for the new upstream */
			return;
		case SP_CLOSING:
			buf_reset(io_in(e->cio));
			smtp_client_timer(e);
			return;
		case SP_COMMAND:
		case SP_AUTH:
		case SP_NOUP:
			cmd_input(e);
			break;
		case SP_DATA:
			msg_data_input(e);
			break;
		case SP_BDAT:
			msg_bdat_input(e);
			break;
		}
		if (e->phase == before)
			break;
	}
	/* Consuming input may have made room: let the io read again. */
	if (!smtp_stopped(e))
		io_kick(e->cio);
	smtp_client_timer(e);
}

/* ------------------------------------------------------------- timers */

static void
client_timeout(struct ev_timer *t)
{
	struct smtp_engine *e = container_of(t, struct smtp_engine, ctimer);

	if (smtp_stopped(e))
		return;
	log_sid(LOG_LVL_INFO, e->id, "smtp client timeout phase=%s", phase_names[e->phase]);
	/* A message cut off by the timeout never gets its end of data upstream. */
	if (e->phase == SP_DATA || e->phase == SP_BDAT)
		reply_upstream_abort(e, "client timeout");
	(void)io_printf(e->cio, "%s\r\n", R_TIMEOUT);
	smtp_finish(e, "client-timeout");
}

/*
 * The client timer measures how long we wait for the client, not for the
 * upstream: a command must arrive whole within t_client_command of the
 * moment we started waiting (dribbling bytes does not extend it), and a
 * message must not stall longer than t_client_data between reads.
 */
void
smtp_client_timer(struct smtp_engine *e)
{
	const struct smtp_limits *lim = e->lim;

	switch (e->phase) {
	case SP_COMMAND:
	case SP_AUTH:
	case SP_NOUP:
		if (e->npend > 0)
			ev_timer_cancel(&e->ctimer);
		else if (!ev_timer_armed(&e->ctimer))
			ev_timer_arm(&e->ctimer, lim->t_client_command * 1000ull, client_timeout);
		break;
	case SP_DATA:
	case SP_BDAT:
		/*
		 * Paused for the inspector: smtpgw is the one waiting (bounded by
		 * inspect-timeout).  Otherwise the clock runs from the client's
		 * last read (IO_DATAIN restarts it), not from our last event: a
		 * held message's keepalive NOOPs come back every few seconds and
		 * used to restart it, so a client that went silent mid-message
		 * was kept forever (with the destination's connection).
		 */
		if (msg_client_waits(e))
			ev_timer_cancel(&e->ctimer);
		else if (!ev_timer_armed(&e->ctimer))
			ev_timer_arm(&e->ctimer, lim->t_client_data * 1000ull, client_timeout);
		break;
	case SP_GREETING:
	case SP_CLOSING:
	case SP_TLS_WAIT:
	case SP_VERDICT: /* bounded by inspect-timeout and the upstream's timers */
	case SP_RELINK:  /* bounded by connect-timeout and the upstream's timers */
		ev_timer_cancel(&e->ctimer);
		break;
	}
}

/* ------------------------------------------------------- entry points */

struct smtp_engine *
smtp_new(const struct smtp_setup *setup)
{
	struct smtp_engine *e = xcalloc(1, sizeof(*e));

	e->id = setup->id;
	e->conf = setup->conf;
	e->lim = setup->lim;
	e->policy = setup->policy;
	e->inbound = setup->inbound;
	e->client_addr = setup->client_addr;
	e->server_addr = setup->server_addr;
	e->cio = setup->client;
	e->ops = setup->ops;
	e->owner = setup->owner;
	e->insp = setup->insp ? setup->insp : &inspect_allow;
	e->phase = SP_GREETING;
	e->flags = EF_GROUP_WAIT;
	buf_init(&e->reply, SMTP_REPLY_MAX);
	msg_init(e);
	return e;
}

/* Some timer of this engine's is running (the liveness property, see session_unwatched()). */
bool
smtp_timer_armed(const struct smtp_engine *e)
{
	/* the client's; the inspector's wait; the DKIM slices; the held upstream's keepalive */
	return ev_timer_armed(&e->ctimer) || ev_timer_armed(&e->txn.itimer) ||
	    ev_timer_armed(&e->txn.work) || ev_timer_armed(&e->txn.keepalive);
}

void
smtp_stop(struct smtp_engine *e)
{
	if (!(e->flags & EF_STOPPED))
		log_limit_flush(&e->loglim, e->id);
	e->flags |= EF_STOPPED;
	ev_timer_cancel(&e->ctimer);
	/* A leaf still asked of the signer: its answer will only fill the cache. */
	if (e->cert_req) {
		certcache_cancel(e->cert_req);
		e->cert_req = NULL;
	}
	msg_stop(e);
}

void
smtp_free(struct smtp_engine *e)
{
	if (e == NULL)
		return;
	ev_timer_cancel(&e->ctimer);
	msg_free(e);
	while (e->head) {
		struct pend *n = e->head->next;
		free(e->head->note);
		free(e->head->reply);
		free(e->head);
		e->head = n;
	}
	buf_free(&e->reply);
	free(e);
}

void
smtp_upstream_connected(struct smtp_engine *e, struct io *server)
{
	e->sio = server;
	/* Read the client meanwhile, to catch clients that talk first. */
	io_resume(e->cio);
	reply_server_timeout(e, e->lim->t_server_greeting);
	tlsi_upstream_connected(e);
}

void
smtp_client_event(struct smtp_engine *e, enum io_event ev)
{
	if (smtp_stopped(e))
		return;
	switch (ev) {
	case IO_DATAIN:
		/* Message octets from the client: its data clock starts again. */
		if (e->phase == SP_DATA || e->phase == SP_BDAT) {
			ev_timer_cancel(&e->ctimer);
			smtp_client_timer(e);
		}
		smtp_process_client(e);
		break;
	case IO_LOWAT:
	case IO_CONNECTED:
		break;
	case IO_TLS_HELLO:
		/* Implicit TLS: the client's hello waits until the upstream TLS is up. */
		tlsi_client_hello(e);
		break;
	case IO_TLS_READY:
		tlsi_client_ready(e);
		break;
	case IO_HUP:
		/*
		 * The client closed while we were not reading it.  A TLS client
		 * cannot finish a handshake after that, so waiting for one is
		 * over; in the other phases what it sent before its close is
		 * still to be read (pipelined commands, the rest of a message),
		 * and reading it ends in IO_EOF.
		 */
		if (e->phase == SP_TLS_WAIT || io_hs_paused(e->cio) || io_in_handshake(e->cio))
			smtp_close(e, "client-disconnect");
		break;
	case IO_EOF:
		/* Gone mid-message: the upstream never sees an end of data. */
		if (e->phase == SP_DATA || e->phase == SP_BDAT) {
			reply_upstream_abort(e, "client disconnected mid-message");
			smtp_close(e, "client-disconnect-mid-message");
			break;
		}
		/*
		 * A client that half-closes after ".\r\nQUIT" still reads: the
		 * replies it is owed -- above all the destination's answer to its
		 * message -- go out before we close, or it would send the
		 * message again.
		 */
		if (e->npend > 0 && !(e->flags & EF_UP_DEAD)) {
			smtp_enter(e, SP_CLOSING);
			smtp_client_timer(e);
			break;
		}
		smtp_close(e, e->phase == SP_CLOSING ? "client-quit" : "client-disconnect");
		break;
	case IO_ERROR:
	case IO_TIMEOUT:
		if (e->phase == SP_DATA || e->phase == SP_BDAT)
			reply_upstream_abort(e, "client error mid-message");
		smtp_close(e, "client-error");
		break;
	}
}

void
smtp_server_event(struct smtp_engine *e, enum io_event ev)
{
	if (smtp_stopped(e))
		return;
	if (e->phase == SP_RELINK) {
		up_event(e, ev);
		return;
	}
	switch (ev) {
	case IO_DATAIN:
		reply_input(e);
		break;
	case IO_LOWAT:
		/* The upstream drained: a held message goes on, or the client may send more. */
		if (msg_upstream_busy(e)) {
			msg_release(e);
		} else if (e->phase == SP_DATA || e->phase == SP_BDAT) {
			io_resume(e->cio);
			smtp_process_client(e);
		}
		break;
	case IO_TIMEOUT:
		reply_upstream_lost(e, "timeout");
		break;
	case IO_TLS_READY:
		tlsi_upstream_ready(e);
		break;
	case IO_EOF:
		reply_upstream_lost(e, "connection closed");
		break;
	case IO_HUP:
		break; /* never paused here; its EOF is read in turn */
	case IO_CONNECTED:
	case IO_ERROR:
	case IO_TLS_HELLO:
		reply_upstream_lost(e, io_error(e->sio) ? io_error(e->sio) : "error");
		break;
	}
}
