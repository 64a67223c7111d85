/*
 * session - the two legs of an intercepted connection, the upstream
 * connect (optionally from the client's own address), and the handover
 * to the SMTP engine.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "content.h"
#include "quota.h"
#include "log.h"
#include "session.h"
#include "tls.h"
#include "util.h"

static struct session *sessions;      /* live sessions */
static struct session *dead_sessions; /* closed, freed by session_reap() */
static unsigned n_sessions;

/* Server legs replaced by a reconnection, freed by session_reap() (after the event batch). */
struct retired_io {
	struct io *io;
	struct retired_io *next;
};
static struct retired_io *retired;

static void client_cb(struct io *io, enum io_event ev, void *arg);
static void server_cb(struct io *io, enum io_event ev, void *arg);
static void session_finish(struct session *s, const char *reason);
static void session_splice(struct session *s);

/* The engine's view of its session (smtp_proxy.h). */
static void
ops_close(void *owner, const char *reason)
{
	session_close(owner, reason);
}

static void
ops_finish(void *owner, const char *reason)
{
	session_finish(owner, reason);
}

static void
ops_splice(void *owner)
{
	session_splice(owner);
}

static struct io *ops_reconnect(void *owner, const char **why);

static const struct smtp_ops session_ops = {
	.close = ops_close,
	.finish = ops_finish,
	.splice = ops_splice,
	.reconnect = ops_reconnect,
};

static void
io_close_leg(struct leg *l)
{
	if (l->io)
		io_close(l->io);
}

/*
 * Give the client a final reply and close: the reply is flushed, the write
 * side shut, and the client's further input read and discarded until it
 * closes or the linger timer ends the session.
 */
static void
session_refuse(struct session *s, const char *reply)
{
	io_close_leg(&s->server);
	s->state = SESSION_CLOSING;
	/* Implicit TLS: the reply goes out inside TLS once the handshake is done. */
	if (s->implicit_tls && tlsi_finish_for_reply(s->eng) < 0) {
		session_close(s, "tls-local-error");
		return;
	}
	io_printf(s->client.io, "%s\r\n", reply);
	io_shutdown_after_flush(s->client.io);
	io_set_timeout(s->client.io, SESSION_LINGER_MS);
	io_resume(s->client.io);
}

static const char *
zone_name(const struct session *s)
{
	if (s->mf.zone >= 0 && s->mf.zone < s->conf->n_zones)
		return s->conf->zones[s->mf.zone].name;
	return "-";
}

static const char *
policy_name(const struct session *s)
{
	if (s->mf.policy >= 0 && s->mf.policy < s->conf->n_policies)
		return s->conf->policies[s->mf.policy].name;
	return "-";
}

static void
new_engine(struct session *s, const struct inspector *insp)
{
	struct smtp_setup setup = {
		.id = s->id,
		.conf = s->conf,
		.lim = s->lim,
		.policy = s->mf.policy,
		.inbound = s->mf.inbound,
		.client_addr = &s->client.peer,
		.server_addr = &s->server.peer,
		.client = s->client.io,
		.insp = insp,
		.ops = &session_ops,
		.owner = s,
	};

	s->eng = smtp_new(&setup);
}

/*
 * Our own socket to the original destination.  With spoofing it is bound
 * to the client's address (port chosen by the kernel: reusing the client's
 * port would share one conntrack entry with the client's connection) and
 * marked so the ruleset exempts it from masquerading.
 */
static int
upstream_socket(const struct session *s, const char **why)
{
	int family = s->server.peer.sa.sa_family;
	int fd, one = 1;

	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*why = strerror(errno);
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (s->spoof) {
		union sockaddr_any src = s->client.peer;
		uint32_t mark = MARK_UPSTREAM;
		int rc;

		if (family == AF_INET) {
			src.sin.sin_port = 0;
			rc = setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
		} else {
			src.sin6.sin6_port = 0;
			rc = setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one));
		}
		if (rc < 0 || setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
			*why = "transparent upstream socket refused (CAP_NET_RAW missing?)";
			close(fd);
			return -1;
		}
		if (bind(fd, &src.sa, addr_len(&src)) < 0) {
			*why = strerror(errno);
			close(fd);
			return -1;
		}
	}
	return fd;
}

/*
 * The engine closed the server leg to discard a message and wants a new
 * one: the same destination, the same source-address rules.  The old io
 * is freed after this event batch (it may be the one whose callback is
 * running).
 */
static struct io *
ops_reconnect(void *owner, const char **why)
{
	struct session *s = owner;
	struct retired_io *r;
	int fd;

	if (s->dead || (s->server.peer.sa.sa_family != AF_INET &&
	    s->server.peer.sa.sa_family != AF_INET6)) {
		*why = "no destination address";
		return NULL;
	}
	fd = upstream_socket(s, why);
	if (fd < 0)
		return NULL;
	if (s->server.io) {
		io_close(s->server.io);
		s->server_bytes += io_rbytes(s->server.io);
		r = xcalloc(1, sizeof(*r));
		r->io = s->server.io;
		r->next = retired;
		retired = r;
	}
	s->server.io = io_new(fd, LEG_IN_MAX, LEG_OUT_MAX, server_cb, &s->server);
	io_set_lowat(s->server.io, LEG_OUT_LOWAT);
	io_set_timeout(s->server.io, s->conf->connect_timeout * 1000u);
	s->reconnects++;
	if (io_connect(s->server.io, &s->server.peer) < 0) {
		*why = io_error(s->server.io) ? io_error(s->server.io) : "connect failed";
		io_close(s->server.io);
		return NULL;
	}
	return s->server.io;
}

struct session *
session_start(int fd, const union sockaddr_any *client, const union sockaddr_any *orig_dst,
    const struct mark_fields *mf, const struct config *conf)
{
	struct session *s = xcalloc(1, sizeof(*s));
	char cbuf[ADDR_STRLEN], sbuf[ADDR_STRLEN];
	const char *why = NULL;
	int ufd;

	s->id = random_id();
	s->conf = conf;
	s->mf = *mf;
	s->lim = config_limits(conf, mf->policy);
	s->spoof = conf->spoof_source;
	s->start_ms = now_ms();
	s->state = SESSION_CONNECTING;
	s->client.s = s->server.s = s;
	s->client.name = "client";
	s->server.name = "server";
	s->client.peer = *client;
	s->client.local = *orig_dst;
	s->server.peer = *orig_dst;

	s->next = sessions;
	if (sessions)
		sessions->prev = s;
	sessions = s;
	n_sessions++;
	s->limit_bucket = quota_bucket(client);
	s->counted = true;
	quota_take(s->limit_bucket);

	s->client.io = io_new(fd, LEG_IN_MAX, LEG_OUT_MAX, client_cb, &s->client);
	io_set_lowat(s->client.io, LEG_OUT_LOWAT);
	/* Nothing is read from the client before the upstream connection is up. */
	io_pause(s->client.io);
	new_engine(s, &inspect_content);
	/* Port 465: TLS from the first byte (the handshake waits for the upstream's). */
	if (addr_port(orig_dst) == 465) {
		const struct conf_action *a = config_action_of(conf, mf->policy);

		if (tls_global == NULL || a == NULL || a->tls_action != TLS_ACTION_INSPECT) {
			log_sid(LOG_LVL_WARN, s->id, "session refused reason=implicit-tls-not-inspected");
			session_close(s, "implicit-tls-refused");
			return s;
		}
		s->implicit_tls = true;
		tlsi_implicit_start(s->eng);
		if (s->dead)
			return s;
	}

	log_sid(LOG_LVL_INFO, s->id,
	    "session start client=%s server=%s zone=%s direction=%s policy=%s spoof=%s",
	    addr_fmt(client, cbuf, sizeof(cbuf)), addr_fmt(orig_dst, sbuf, sizeof(sbuf)),
	    zone_name(s), s->mf.inbound ? "inbound" : "outbound", policy_name(s),
	    s->spoof ? "yes" : "no");

	ufd = upstream_socket(s, &why);
	if (ufd < 0) {
		log_sid(LOG_LVL_ERR, s->id, "session upstream socket error=\"%s\" reply=421", why);
		session_refuse(s, "421 4.3.0 Local error, try again later");
		return s;
	}
	s->server.io = io_new(ufd, LEG_IN_MAX, LEG_OUT_MAX, server_cb, &s->server);
	io_set_lowat(s->server.io, LEG_OUT_LOWAT);
	io_set_timeout(s->server.io, conf->connect_timeout * 1000u);
	if (io_connect(s->server.io, orig_dst) < 0) {
		log_sid(LOG_LVL_INFO, s->id, "session upstream failed error=\"%s\" reply=421",
		    io_error(s->server.io));
		session_refuse(s, "421 4.4.1 Destination unreachable, try again later");
	}
	return s;
}

struct session *
session_attach(int cfd, int sfd, const struct config *conf, const struct inspector *insp)
{
	struct session *s = xcalloc(1, sizeof(*s));
	socklen_t len;

	s->id = random_id();
	s->conf = conf;
	s->lim = &conf->smtp;
	s->mf.zone = s->mf.policy = -1;
	s->start_ms = now_ms();
	s->client.s = s->server.s = s;
	s->client.name = "client";
	s->server.name = "server";
	len = sizeof(s->client.peer);
	(void)getpeername(cfd, &s->client.peer.sa, &len);
	/* A TCP destination (tests) can be reconnected to; a socket pair cannot. */
	len = sizeof(s->server.peer);
	(void)getpeername(sfd, &s->server.peer.sa, &len);
	s->next = sessions;
	if (sessions)
		sessions->prev = s;
	sessions = s;
	n_sessions++;
	s->client.io = io_new(cfd, LEG_IN_MAX, LEG_OUT_MAX, client_cb, &s->client);
	io_set_lowat(s->client.io, LEG_OUT_LOWAT);
	s->server.io = io_new(sfd, LEG_IN_MAX, LEG_OUT_MAX, server_cb, &s->server);
	io_set_lowat(s->server.io, LEG_OUT_LOWAT);
	new_engine(s, insp);
	s->state = SESSION_SMTP;
	smtp_upstream_connected(s->eng, s->server.io);
	return s;
}

/* Flush what is queued to the client, then close both legs. */
static void
session_finish(struct session *s, const char *reason)
{
	if (s->dead || s->state == SESSION_CLOSING)
		return;
	s->end_reason = reason;
	io_close_leg(&s->server);
	/* The client already closed its side and has everything: done. */
	if (io_eof(s->client.io) && buf_len(io_out(s->client.io)) == 0) {
		session_close(s, reason);
		return;
	}
	s->state = SESSION_CLOSING;
	io_shutdown_after_flush(s->client.io);
	io_set_timeout(s->client.io, SESSION_LINGER_MS);
	io_resume(s->client.io);
}

void
session_close(struct session *s, const char *reason)
{
	if (s->dead)
		return;
	s->dead = true;
	if (s->state == SESSION_CLOSING && s->end_reason)
		reason = s->end_reason;
	s->end_reason = reason;
	if (s->eng)
		smtp_stop(s->eng);
	if (s->counted)
		quota_release(s->limit_bucket);
	s->counted = false;
	io_close_leg(&s->client);
	io_close_leg(&s->server);
	log_sid(LOG_LVL_INFO, s->id,
	    "session end reason=%s duration_ms=%llu client_bytes=%llu server_bytes=%llu "
	    "reconnects=%u", reason,
	    (unsigned long long)(now_ms() - s->start_ms),
	    (unsigned long long)(s->client.io ? io_rbytes(s->client.io) : 0),
	    (unsigned long long)(s->server_bytes + (s->server.io ? io_rbytes(s->server.io) : 0)),
	    s->reconnects);

	if (s->prev)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	n_sessions--;
	s->next = dead_sessions;
	s->prev = NULL;
	dead_sessions = s;
}

void
session_reap(void)
{
	while (retired) {
		struct retired_io *r = retired;

		retired = r->next;
		io_free(r->io);
		free(r);
	}
	while (dead_sessions) {
		struct session *s = dead_sessions;

		dead_sessions = s->next;
		smtp_free(s->eng);
		io_free(s->client.io);
		io_free(s->server.io);
		free(s);
	}
}

/*
 * The liveness property: every live session has a running timer (its
 * engine's, or one of its legs' inactivity timers), so none can be held
 * forever by a silent peer.  Returns how many live sessions break it
 * (tests and fuzzers check it after every event batch).
 */
unsigned
session_unwatched(void)
{
	unsigned n = 0;

	for (struct session *s = sessions; s; s = s->next) {
		bool armed = (s->eng && smtp_timer_armed(s->eng)) ||
		    (s->client.io && io_timer_armed(s->client.io)) ||
		    (s->server.io && !io_closed(s->server.io) && io_timer_armed(s->server.io));
		if (!armed) {
			log_sid(LOG_LVL_ERR, s->id, "session unwatched state=%d", (int)s->state);
			n++;
		}
	}
	return n;
}

unsigned
session_count(void)
{
	return n_sessions;
}

void
session_close_all(const char *reason)
{
	while (sessions) {
		struct session *s = sessions;

		/*
		 * Tell SMTP clients why (RFC 5321 3.8): a 421 makes a sending MTA
		 * keep its mail and retry.  Best effort, never blocking; the
		 * upstream never saw an end of data for an unfinished message.
		 */
		if (s->state == SESSION_SMTP && !io_in_handshake(s->client.io))
			(void)io_printf(s->client.io,
			    "421 4.3.2 Service shutting down, try again later\r\n");
		session_close(s, reason);
	}
}

/* Splice: move what one leg received to the other, bounded by its output buffer. */
static struct leg *
other_leg(struct leg *l)
{
	return l == &l->s->client ? &l->s->server : &l->s->client;
}

static void
splice_move(struct leg *from, struct leg *to)
{
	struct buf *in = io_in(from->io);
	size_t n = buf_len(in);

	if (n > buf_room(io_out(to->io)))
		n = buf_room(io_out(to->io));
	if (n > 0) {
		if (io_write(to->io, buf_head(in), n) < 0) {
			session_close(from->s, "splice-write");
			return;
		}
		buf_consume(in, n);
	}
	if (buf_len(in) > 0)
		io_pause(from->io);
	else if (!io_eof(from->io))
		io_resume(from->io);
}

static void
splice_event(struct leg *l, enum io_event ev)
{
	struct session *s = l->s;
	struct leg *o = other_leg(l);

	switch (ev) {
	case IO_DATAIN:
		splice_move(l, o);
		break;
	case IO_LOWAT:
		splice_move(o, l);
		break;
	case IO_EOF:
		splice_move(l, o);
		if (s->dead)
			return;
		io_shutdown_after_flush(o->io);
		if (io_eof(o->io))
			session_close(s, "spliced-end");
		break;
	case IO_HUP:
		break; /* paused for the other leg: its EOF is read in turn */
	case IO_TIMEOUT:
		session_close(s, "spliced-idle-timeout");
		break;
	default:
		session_close(s, l == &s->client ? "client-error" : "server-error");
		break;
	}
}

/*
 * TLS action "allow": from now on relay bytes between the legs without
 * parsing (the STARTTLS exchange was relayed; what follows is TLS we do
 * not terminate).  Only reachable with TLS Support disabled (port 25).
 */
static void
session_splice(struct session *s)
{
	log_sid(LOG_LVL_INFO, s->id, "tls action=allow spliced=yes inspected=no");
	s->state = SESSION_SPLICE;
	/*
	 * TLS we do not terminate has no SMTP phases to time: each leg may
	 * stay idle as long as the longest wait SMTP knows (the destination's
	 * answer to the end of data), then the session ends.
	 */
	io_set_timeout(s->client.io, s->lim->t_server_data_end * 1000u);
	io_set_timeout(s->server.io, s->lim->t_server_data_end * 1000u);
	io_resume(s->client.io);
	io_resume(s->server.io);
	splice_move(&s->server, &s->client);
	splice_move(&s->client, &s->server);
}

static void
upstream_failed(struct session *s, const char *why)
{
	log_sid(LOG_LVL_INFO, s->id, "session upstream failed error=\"%s\" reply=421", why);
	/*
	 * The client has heard nothing yet; whatever it sent early is
	 * dropped with the session.  421 makes a sending MTA keep the mail
	 * queued and retry later.
	 */
	session_refuse(s, "421 4.4.1 Destination unreachable, try again later");
}

static void
server_cb(struct io *io, enum io_event ev, void *arg)
{
	struct leg *l = arg;
	struct session *s = l->s;
	char buf[ADDR_STRLEN];

	if (s->state == SESSION_CONNECTING) {
		switch (ev) {
		case IO_CONNECTED: {
			socklen_t len = sizeof(l->local);

			if (getsockname(io_fd(io), &l->local.sa, &len) < 0)
				memset(&l->local, 0, sizeof(l->local));
			log_sid(LOG_LVL_INFO, s->id, "session upstream connected local=%s ms=%llu",
			    addr_fmt(&l->local, buf, sizeof(buf)),
			    (unsigned long long)(now_ms() - s->start_ms));
			s->state = SESSION_SMTP;
			io_set_timeout(io, 0);
			smtp_upstream_connected(s->eng, io);
			return;
		}
		case IO_TIMEOUT:
			upstream_failed(s, "connect timeout");
			return;
		default:
			upstream_failed(s, io_error(io) ? io_error(io) : "connect failed");
			return;
		}
	}
	if (s->state == SESSION_SMTP)
		smtp_server_event(s->eng, ev);
	else if (s->state == SESSION_SPLICE)
		splice_event(l, ev);
}

static void
client_cb(struct io *io, enum io_event ev, void *arg)
{
	struct leg *l = arg;
	struct session *s = l->s;

	switch (s->state) {
	case SESSION_CONNECTING:
		/* Only a close, errors or the idle timer can arrive: reading is paused. */
		if (ev == IO_EOF || ev == IO_HUP || ev == IO_ERROR || ev == IO_TIMEOUT)
			session_close(s, "client-gone-before-greeting");
		return;
	case SESSION_CLOSING:
		if (ev == IO_DATAIN) {
			buf_reset(io_in(io));
		} else if (ev == IO_TLS_HELLO) {
			if (tlsi_finish_for_reply(s->eng) < 0)
				session_close(s, "tls-local-error");
		} else if (ev == IO_TLS_READY) {
			io_kick(io); /* the final reply goes out encrypted */
		} else if (ev != IO_LOWAT && !(ev == IO_HUP && !io_hs_paused(io))) {
			session_close(s, s->end_reason ? s->end_reason : "refused");
		}
		return;
	case SESSION_SMTP:
		smtp_client_event(s->eng, ev);
		return;
	case SESSION_SPLICE:
		splice_event(l, ev);
		return;
	}
}
