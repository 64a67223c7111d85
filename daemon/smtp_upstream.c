/*
 * smtp_upstream - a new upstream connection in place of one the engine
 * closed to discard a message (a refused or denied message that was
 * streaming: DATA can only be aborted by closing).  The client's session
 * goes on as if nothing happened: its next transaction is delivered.
 *
 * The replacement is made the way the first one was: the session opens
 * it (same destination, same source-address rules: smtp_ops.reconnect),
 * then here: the greeting, EHLO (or HELO) with the client's own name,
 * and TLS again when the first leg had it -- STARTTLS after EHLO, or
 * TLS from the first byte on port 465, with the same SNI -- then EHLO
 * again.  The client's commands wait in its buffer meanwhile (SP_RELINK),
 * its timer stopped; every step is bounded by the upstream's timers.
 *
 * What the new upstream must match:
 *  - TLS: trusted (validated, or allowed by the profile) and no older a
 *    version than the client's leg; otherwise the reconnection fails:
 *    the client was shown a certificate, and a protection, based on the
 *    first leg.
 *  - the extensions the client was shown (SIZE no smaller, the same AUTH
 *    mechanisms): when the new upstream offers less, MAIL gets a 4xx
 *    (up_mail_refusal) and the client retries later.
 * A client that authenticated is not reconnected: its credentials were
 * relayed once and are not kept.  A failed reconnection leaves the
 * session without upstream (SP_NOUP): the next command gets 421.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "log.h"
#include "smtp_int.h"
#include "tls.h"
#include "util.h"

enum relink_step {
	RL_CONNECT,      /* the session's connect */
	RL_TLS_IMPLICIT, /* port 465: the TLS handshake, before the greeting */
	RL_GREETING,
	RL_HELLO,        /* EHLO/HELO */
	RL_STARTTLS,
	RL_TLS,          /* the handshake after STARTTLS */
	RL_HELLO_TLS,    /* EHLO again, inside TLS */
};

static const char *const step_names[] = {
	[RL_CONNECT] = "connect",
	[RL_TLS_IMPLICIT] = "tls",
	[RL_GREETING] = "greeting",
	[RL_HELLO] = "ehlo",
	[RL_STARTTLS] = "starttls",
	[RL_TLS] = "tls",
	[RL_HELLO_TLS] = "ehlo-tls",
};

#define R_UP_CHANGED "451 4.3.0 Error: the destination's capabilities changed after a " \
	"reconnection, try again later"

const char *
up_mail_refusal(const struct smtp_engine *e)
{
	return (e->flags & EF_UP_CHANGED) ? R_UP_CHANGED : NULL;
}

/* The session goes on without upstream: the next command gets 421. */
static void
fail(struct smtp_engine *e, const char *why, bool async)
{
	log_sid(LOG_LVL_INFO, e->id, "smtp upstream reconnect failed step=%s reason=\"%s\"",
	    step_names[e->relink.step], why);
	e->flags &= ~EF_RELINK;
	e->flags |= EF_UP_DEAD;
	if (e->sio)
		io_close(e->sio);
	smtp_enter(e, SP_NOUP);
	if (async) {
		reply_flush(e);
		if (!smtp_stopped(e))
			smtp_process_client(e);
	}
}

static void
send_line(struct smtp_engine *e, enum relink_step next, unsigned timeout, const char *line)
{
	if (io_write(e->sio, line, strlen(line)) < 0) {
		fail(e, "write failed", true);
		return;
	}
	e->relink.step = next;
	io_set_timeout(e->sio, timeout * 1000u);
}

static void
send_hello(struct smtp_engine *e, enum relink_step next)
{
	char line[SMTP_DOMAIN_MAX + 16];

	snprintf(line, sizeof(line), "%s %s\r\n", (e->flags & EF_ESMTP) ? "EHLO" : "HELO",
	    e->helo);
	send_line(e, next, e->lim->t_server_command, line);
}

/* Does the new upstream offer what the client was shown? */
static bool
compatible(struct smtp_engine *e, struct caps *shown)
{
	struct buf scratch;
	bool ok = true;
	unsigned need = e->shown.flags & ~(CAP_STARTTLS | CAP_CHUNKING);

	memset(shown, 0, sizeof(*shown));
	if (!(e->flags & EF_ESMTP))
		return true;
	buf_init(&scratch, SMTP_REPLY_MAX);
	if (caps_render(&e->relink.caps, e->lim, "-", 1, &scratch, shown, false) < 0)
		ok = false;
	buf_free(&scratch);
	if ((need & ~shown->flags) != 0)
		ok = false;
	if ((need & CAP_SIZE) && shown->size < e->shown.size)
		ok = false;
	if ((need & CAP_AUTH) && strcmp(shown->auth, e->shown.auth) != 0)
		ok = false;
	return ok;
}

static void
done(struct smtp_engine *e)
{
	struct caps shown;
	char up[120], missing[120];
	bool ok = compatible(e, &shown);

	e->upcaps = e->relink.caps;
	e->flags &= ~(EF_UP_DEAD | EF_RELINK | EF_UP_CHANGED);
	if (!ok)
		e->flags |= EF_UP_CHANGED;
	io_set_timeout(e->sio, 0);
	log_sid(ok ? LOG_LVL_INFO : LOG_LVL_WARN, e->id,
	    "smtp upstream reconnected ms=%llu tls=%s upstream=%s compatible=%s%s%s",
	    (unsigned long long)(now_ms() - e->relink.start_ms),
	    (e->flags & EF_UP_TLS) ? "yes" : "no", caps_names(e->upcaps.flags, up, sizeof(up)),
	    ok ? "yes" : "no", ok ? "" : " missing=",
	    ok ? "" : caps_names(e->shown.flags & ~(CAP_STARTTLS | CAP_CHUNKING) & ~shown.flags,
	    missing, sizeof(missing)));
	smtp_enter(e, SP_COMMAND);
	reply_flush(e);
	if (!smtp_stopped(e))
		smtp_process_client(e);
}

/* The reply's lines as text (after "ddd-" / "ddd "), for caps_parse(). */
static int
reply_lines(const struct buf *r, const char **lines, size_t *lens, int max)
{
	const char *p = buf_head(r), *end = p + buf_len(r);
	int n = 0;

	while (p < end && n < max) {
		const char *cr = memchr(p, '\r', (size_t)(end - p));

		if (cr == NULL)
			break;
		lines[n] = cr - p > 3 ? p + 4 : cr;
		lens[n] = cr - p > 3 ? (size_t)(cr - p - 4) : 0;
		n++;
		p = cr + 2;
	}
	return n;
}

static void
on_reply(struct smtp_engine *e, int code)
{
	const char *lines[SMTP_REPLY_MAX_LINES];
	size_t lens[SMTP_REPLY_MAX_LINES];
	char why[64];
	int n;

	switch (e->relink.step) {
	case RL_GREETING:
		if (code != 220) {
			snprintf(why, sizeof(why), "greeting %d", code);
			fail(e, why, true);
			return;
		}
		send_hello(e, RL_HELLO);
		return;
	case RL_HELLO:
	case RL_HELLO_TLS:
		if (code != 250) {
			snprintf(why, sizeof(why), "%s refused with %d",
			    (e->flags & EF_ESMTP) ? "EHLO" : "HELO", code);
			fail(e, why, true);
			return;
		}
		memset(&e->relink.caps, 0, sizeof(e->relink.caps));
		if (e->flags & EF_ESMTP) {
			n = reply_lines(&e->reply, lines, lens, SMTP_REPLY_MAX_LINES);
			caps_parse(&e->relink.caps, lines, lens, n);
		}
		if (e->relink.step == RL_HELLO && e->relink.tls && !(e->flags & EF_IMPLICIT_TLS)) {
			/* Never a weaker destination leg than the first one. */
			if (!(e->relink.caps.flags & CAP_STARTTLS)) {
				fail(e, "the destination no longer offers STARTTLS", true);
				return;
			}
			send_line(e, RL_STARTTLS, e->lim->t_server_command, "STARTTLS\r\n");
			return;
		}
		done(e);
		return;
	case RL_STARTTLS:
		if (code != 220) {
			snprintf(why, sizeof(why), "STARTTLS refused with %d", code);
			fail(e, why, true);
			return;
		}
		/* Nothing may follow the 220 (response injection). */
		if (buf_len(io_in(e->sio)) > 0) {
			fail(e, "data after the STARTTLS reply", true);
			return;
		}
		e->relink.step = RL_TLS;
		tlsi_upstream_begin(e);
		io_set_timeout(e->sio, e->lim->t_server_command * 1000u);
		return;
	default:
		fail(e, "unexpected reply", true);
		return;
	}
}

static void
input(struct smtp_engine *e)
{
	struct buf *in = io_in(e->sio);

	while (e->phase == SP_RELINK && !smtp_stopped(e) && buf_len(in) > 0) {
		size_t len, consumed, textlen;
		const char *text;
		enum smtp_line st;
		bool more;
		int code;
		char out[SMTP_REPLYLINE_MAX + 8];

		st = smtp_line_split(buf_head(in), buf_len(in), SMTP_REPLYLINE_MAX, &len, &consumed);
		if (st == SMTP_LINE_PARTIAL)
			return;
		if (st != SMTP_LINE_OK ||
		    smtp_reply_line(buf_head(in), len, &code, &more, &text, &textlen) < 0 ||
		    (e->reply_lines > 0 && code != e->reply_code) ||
		    e->reply_lines >= SMTP_REPLY_MAX_LINES) {
			fail(e, "malformed reply", true);
			return;
		}
		int n = snprintf(out, sizeof(out), "%03d%s%.*s\r\n", code,
		    more ? "-" : (textlen ? " " : ""), (int)textlen, text);
		if (n < 0 || buf_append(&e->reply, out, (size_t)n) < 0) {
			fail(e, "reply too long", true);
			return;
		}
		e->reply_code = code;
		e->reply_lines++;
		buf_consume(in, consumed);
		if (!more) {
			on_reply(e, code);
			buf_reset(&e->reply);
			e->reply_lines = 0;
		}
	}
}

/* The new leg's TLS is up: it must be as trustworthy as the first one was. */
static void
tls_ready(struct smtp_engine *e)
{
	const struct conf_tls_profile *prof = &e->conf->profiles[smtp_profile(e)];
	SSL *ssl = io_ssl(e->sio);
	struct tls_verdict v;

	/*
	 * The reference name is the first leg's, on 25 as on 465: the
	 * client's SNI (tls_intercept.c judges every leg against it).  None
	 * here would let any certificate that chains to a trusted CA stand
	 * in for the destination the client was shown.
	 */
	tls_judge(prof, ssl, e->sni, &v);
	log_sid(LOG_LVL_INFO, e->id,
	    "tls verify side=server result=%s version=%s action=%s detail=\"%s\" reconnect=yes",
	    v.ok ? "ok" : "failed", SSL_get_version(ssl), certfail_action_name(v.action),
	    v.detail);
	if (!v.ok && v.action != CERTFAIL_ALLOW) {
		fail(e, "the destination's certificate is not trusted", true);
		return;
	}
	if ((e->flags & EF_CLIENT_TLS) && io_ssl(e->cio) &&
	    SSL_version(ssl) < SSL_version(io_ssl(e->cio))) {
		fail(e, "older TLS than the client's leg", true);
		return;
	}
	e->flags |= EF_UP_TLS;
	if (e->relink.step == RL_TLS_IMPLICIT) {
		e->relink.step = RL_GREETING;
		io_set_timeout(e->sio, e->lim->t_server_greeting * 1000u);
		return;
	}
	send_hello(e, RL_HELLO_TLS);
}

void
up_event(struct smtp_engine *e, enum io_event ev)
{
	switch (ev) {
	case IO_CONNECTED: {
		union sockaddr_any local;
		socklen_t len = sizeof(local);
		char buf[ADDR_STRLEN];

		if (e->relink.step != RL_CONNECT) {
			fail(e, "unexpected connect", true);
			return;
		}
		if (getsockname(io_fd(e->sio), &local.sa, &len) < 0)
			memset(&local, 0, sizeof(local));
		log_sid(LOG_LVL_INFO, e->id, "smtp upstream reconnect connected local=%s ms=%llu",
		    addr_fmt(&local, buf, sizeof(buf)),
		    (unsigned long long)(now_ms() - e->relink.start_ms));
		if (e->flags & EF_IMPLICIT_TLS) {
			e->relink.step = RL_TLS_IMPLICIT;
			tlsi_upstream_begin(e);
			io_set_timeout(e->sio, e->lim->t_server_command * 1000u);
		} else {
			e->relink.step = RL_GREETING;
			io_set_timeout(e->sio, e->lim->t_server_greeting * 1000u);
		}
		return;
	}
	case IO_DATAIN:
		input(e);
		return;
	case IO_TLS_READY:
		if (e->relink.step == RL_TLS || e->relink.step == RL_TLS_IMPLICIT)
			tls_ready(e);
		else
			fail(e, "unexpected TLS", true);
		return;
	case IO_LOWAT:
	case IO_HUP:
		return; /* never paused: its EOF is read in turn */
	case IO_TIMEOUT:
		fail(e, "timeout", true);
		return;
	case IO_EOF:
		fail(e, "connection closed", true);
		return;
	case IO_ERROR:
	case IO_TLS_HELLO:
		fail(e, io_error(e->sio) ? io_error(e->sio) : "error", true);
		return;
	}
}

void
up_relink(struct smtp_engine *e)
{
	const char *why = NULL;
	struct io *io;

	e->relink.step = RL_CONNECT;
	if (e->flags & EF_AUTH) {
		fail(e, "the client authenticated on the first connection", false);
		return;
	}
	if (e->ops->reconnect == NULL) {
		fail(e, "the session cannot reconnect", false);
		return;
	}
	/* The first leg's TLS, which the new one must have again. */
	e->relink.tls = (e->flags & EF_UP_TLS) != 0;
	e->flags &= ~EF_UP_TLS;
	e->relink.start_ms = now_ms();
	memset(&e->relink.caps, 0, sizeof(e->relink.caps));
	/* A reply the old connection left half-assembled is forgotten. */
	buf_reset(&e->reply);
	e->reply_lines = 0;
	io = e->ops->reconnect(e->owner, &why);
	if (io == NULL) {
		e->sio = NULL;
		fail(e, why ? why : "cannot connect", false);
		return;
	}
	e->sio = io;
	log_sid(LOG_LVL_INFO, e->id, "smtp upstream reconnect tls=%s",
	    e->relink.tls ? ((e->flags & EF_IMPLICIT_TLS) ? "implicit" : "starttls") : "no");
	smtp_enter(e, SP_RELINK);
	/* What the client is owed (the refusal that brought us here) goes out meanwhile. */
	reply_flush(e);
}
