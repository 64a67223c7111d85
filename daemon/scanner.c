/*
 * scanner - pools of content-scanner servers: health, connections,
 * queue, failover, timeouts, counters (see scanner.h).
 *
 * Every outcome and every resume() is delivered from the request's timer
 * (armed at 0 ms), never from the call that decided it: owners may call
 * scanner_req_* from anywhere, including their own callbacks, without
 * ever being re-entered.  Closed connections are freed by the pool's
 * reaper timer, which runs after the event batch, so an io closed inside
 * its own callback (or while another event of the batch names it) stays
 * valid until then.
 *
 * Why one file of this size: health checks, the queue, connections and
 * failover share each server's state and timers; the protocols
 * themselves are in clamd.c and rspamd.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "io.h"
#include "log.h"
#include "scanner.h"
#include "util.h"

enum health {
	HEALTH_UNCHECKED, /* no check answered yet: used like a healthy one */
	HEALTH_UP,
	HEALTH_DOWN,
};

/* Why an attempt failed; decides what happens to the server. */
enum fail_kind {
	FAIL_CONNECT, /* no connection: the server is down */
	FAIL_TIMEOUT, /* connected, then no progress for timeout_ms */
	FAIL_BROKEN,  /* connected, then closed or reset before a verdict */
};

struct scanner_conn {
	struct scanner_server *srv;
	struct io *io;
	struct scanner_req *req;  /* the request it carries; NULL: idle or a health check */
	struct scanner_conn *next; /* the server's idle list, or the pool's dead list */
	struct ev_timer idle;     /* lifetime while idle */
	unsigned seq;             /* commands sent in its session (clamd reply ids) */
	bool connected;           /* the connect completed */
	bool session;             /* proto->session_open was sent on it */
	bool sent;                /* the current request's framing started */
	bool reused;              /* taken from the idle list for this request */
	bool ping;                /* a health check connection */
	bool idling;              /* on the idle list */
	bool dead;                /* closed; on the dead list */
};

struct scanner_server {
	struct scanner_pool *pool;
	int index;
	struct conf_scan_server conf;
	char logname[LOG_QUOTE_SIZE(CONF_SCAN_ADDR_MAX)]; /* conf.text for log lines */
	enum health health;
	time_t since;             /* wall clock of the last health change */
	uint64_t down_ms;         /* monotonic time it went down */
	uint64_t ping_ms;         /* ... and the current check started */
	unsigned backoff_ms;      /* next wait before probing a down server */
	struct ev_timer check;
	struct scanner_conn *pinging;
	struct scanner_conn *idle;
	unsigned nidle;
	unsigned active;          /* requests on it now */
	uint64_t last_ok_ms;      /* monotonic time of its last good answer */
	uint64_t requests, replies, errors, timeouts, connects;
	uint64_t counters[SCANNER_COUNTERS_MAX];
	char last_error[SCANNER_ERROR_MAX];
	time_t last_error_time;
};

struct scanner_pool {
	const struct scanner_proto *proto;
	struct scanner_opts o;
	int n;
	struct scanner_server srv[CONF_MAX_SCAN_SERVERS];
	struct scanner_req *qhead, *qtail;
	unsigned qlen;
	struct scanner_conn *dead;
	struct ev_timer reaper;
	unsigned outstanding;
	unsigned in_callback;     /* depth of proto->done/resume calls */
	bool kicking, kick_again;
	uint64_t unavailable, too_large;
};

static void conn_cb(struct io *io, enum io_event ev, void *arg);
static void queue_unlink(struct scanner_req *r);
static void settle(struct scanner_req *r, enum scanner_outcome o, const char *why);
static void dispatch(struct scanner_req *r);
static void pool_kick(struct scanner_pool *p);
static void server_down(struct scanner_server *s, const char *why);

/* ------------------------------------------------------------------ util */

static const char *
health_name(enum health h)
{
	switch (h) {
	case HEALTH_UNCHECKED: return "unchecked";
	case HEALTH_UP: return "up";
	case HEALTH_DOWN: return "down";
	}
	return "invalid";
}

/* One printable line: what a server said may end up in a status file. */
static void
set_error(char *dst, size_t len, const char *why)
{
	size_t i;

	for (i = 0; why[i] != '\0' && i + 1 < len; i++) {
		unsigned char ch = (unsigned char)why[i];
		dst[i] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
	}
	dst[i] = '\0';
}

static void
server_error(struct scanner_server *s, const char *why)
{
	set_error(s->last_error, sizeof(s->last_error), why);
	s->last_error_time = time(NULL);
}

static unsigned
min_u(unsigned a, unsigned b)
{
	return a < b ? a : b;
}

/* ----------------------------------------------------------- connections */

static void
reaper_cb(struct ev_timer *t)
{
	struct scanner_pool *p = container_of(t, struct scanner_pool, reaper);

	while (p->dead) {
		struct scanner_conn *c = p->dead;

		p->dead = c->next;
		io_free(c->io);
		free(c);
	}
}

static void
idle_unlink(struct scanner_conn *c)
{
	struct scanner_conn **pp = &c->srv->idle;

	if (!c->idling)
		return;
	while (*pp && *pp != c)
		pp = &(*pp)->next;
	FATAL_IF(*pp == NULL);
	*pp = c->next;
	c->next = NULL;
	c->idling = false;
	c->srv->nidle--;
	ev_timer_cancel(&c->idle);
}

/* Close now, free after the event batch (the io may be inside its callback). */
static void
conn_close(struct scanner_conn *c)
{
	struct scanner_pool *p = c->srv->pool;

	if (c->dead)
		return;
	idle_unlink(c);
	ev_timer_cancel(&c->idle);
	io_close(c->io);
	c->dead = true;
	c->req = NULL;
	c->next = p->dead;
	p->dead = c;
	ev_timer_arm(&p->reaper, 0, reaper_cb);
}

/*
 * A new connection to s.  A Unix socket connects at once or fails (a full
 * backlog is EAGAIN: the server is not keeping up); TCP completes later
 * (IO_CONNECTED).  NULL with why on failure.
 */
static struct scanner_conn *
conn_open(struct scanner_server *s, bool ping, char *why, size_t whylen)
{
	const struct conf_scan_server *a = &s->conf;
	struct scanner_conn *c;
	int fd;

	fd = socket(a->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(why, whylen, "socket: %s", strerror(errno));
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->srv = s;
	c->ping = ping;
	if (a->addr.sa.sa_family == AF_UNIX) {
		if (connect(fd, &a->addr.sa, a->addrlen) < 0) {
			snprintf(why, whylen, "connect: %s", strerror(errno));
			close(fd);
			free(c);
			return NULL;
		}
		c->io = io_new(fd, SCANNER_IN_MAX, SCANNER_OUT_MAX, conn_cb, c);
		c->connected = true;
	} else {
		union sockaddr_any dst;

		memset(&dst, 0, sizeof(dst));
		memcpy(&dst, &a->addr, a->addrlen);
		c->io = io_new(fd, SCANNER_IN_MAX, SCANNER_OUT_MAX, conn_cb, c);
		if (io_connect(c->io, &dst) < 0) {
			snprintf(why, whylen, "connect: %s", io_error(c->io));
			/* Just made: no event of this batch can name it. */
			io_close(c->io);
			io_free(c->io);
			free(c);
			return NULL;
		}
	}
	io_set_lowat(c->io, SCANNER_LOWAT);
	return c;
}

/*
 * Read what the socket still holds after a failed write: a server that
 * refuses a request (clamd's "INSTREAM size limit exceeded") answers and
 * closes, and our next write fails before the loop reads the answer.
 * The io's own buffer is used, as its owner may.
 */
static void
salvage(struct scanner_conn *c)
{
	struct buf *in = io_in(c->io);
	int fd = io_fd(c->io);

	while (fd >= 0) {
		size_t got;
		char *w = buf_reserve(in, 4096, &got);
		ssize_t n;

		if (w == NULL)
			break;
		n = recv(fd, w, got, MSG_DONTWAIT);
		if (n <= 0)
			break;
		buf_commit(in, (size_t)n);
	}
}

/* ---------------------------------------------------------- idle reuse */

static void
idle_timer_cb(struct ev_timer *t)
{
	conn_close(container_of(t, struct scanner_conn, idle));
}

static void
idle_put(struct scanner_conn *c)
{
	struct scanner_server *s = c->srv;

	if (s->nidle >= s->pool->o.connections) {
		conn_close(c);
		return;
	}
	c->req = NULL;
	c->sent = false;
	c->reused = false;
	io_set_timeout(c->io, 0);
	c->next = s->idle;
	s->idle = c;
	s->nidle++;
	c->idling = true;
	ev_timer_arm(&c->idle, s->pool->o.idle_ms, idle_timer_cb);
}

/* An idle connection whose peer has not visibly closed it, or NULL. */
static struct scanner_conn *
idle_take(struct scanner_server *s)
{
	while (s->idle) {
		struct scanner_conn *c = s->idle;
		char b;
		ssize_t n;

		idle_unlink(c);
		n = recv(io_fd(c->io), &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->reused = true;
			return c;
		}
		/* Closed (0), an error, or bytes nobody asked for: not reusable. */
		conn_close(c);
	}
	return NULL;
}

/* --------------------------------------------------------------- outcomes */

static void
req_timer_cb(struct ev_timer *t)
{
	struct scanner_req *r = container_of(t, struct scanner_req, timer);
	struct scanner_pool *p = r->pool;

	if (r->finished) {
		enum scanner_outcome o = r->outcome;

		p->outstanding--;
		r->pool = NULL;
		buf_free(&r->hold);
		p->in_callback++;
		/* The last thing: the owner frees r, and may start new requests. */
		p->proto->done(r, o, o == SCANNER_REPLY ? NULL : r->reason);
		p->in_callback--;
		return;
	}
	if (r->queued) {
		char why[SCANNER_ERROR_MAX];

		snprintf(why, sizeof(why), "no connection to a scanner within %u ms",
		    p->o.timeout_ms);
		queue_unlink(r);
		settle(r, SCANNER_UNAVAILABLE, why);
		return;
	}
	if (r->resume_due) {
		r->resume_due = false;
		r->busy = false;
		p->in_callback++;
		p->proto->resume(r);
		p->in_callback--;
	}
}

static void
queue_unlink(struct scanner_req *r)
{
	struct scanner_pool *p = r->pool;
	struct scanner_req **pp = &p->qhead, *prev = NULL;

	if (!r->queued)
		return;
	while (*pp && *pp != r) {
		prev = *pp;
		pp = &(*pp)->qnext;
	}
	FATAL_IF(*pp == NULL);
	*pp = r->qnext;
	if (p->qtail == r)
		p->qtail = prev;
	p->qlen--;
	r->queued = false;
	r->qnext = NULL;
	ev_timer_cancel(&r->timer);
}

/* Detach r from its connection (closed: a reply may still come on it). */
static void
req_drop_conn(struct scanner_req *r)
{
	struct scanner_conn *c = r->conn;

	if (c == NULL)
		return;
	c->req = NULL;
	r->conn = NULL;
	c->srv->active--;
	conn_close(c);
}

/*
 * The outcome is decided: nothing more is sent, the connection (if any)
 * is closed, and the outcome goes out from the timer.
 */
static void
settle(struct scanner_req *r, enum scanner_outcome o, const char *why)
{
	struct scanner_pool *p = r->pool;

	if (r->finished)
		return;
	queue_unlink(r);
	req_drop_conn(r);
	r->finished = true;
	r->outcome = o;
	r->resume_due = false;
	set_error(r->reason, sizeof(r->reason), why ? why : "");
	if (o == SCANNER_UNAVAILABLE)
		p->unavailable++;
	else if (o == SCANNER_TOO_LARGE)
		p->too_large++;
	ev_timer_arm(&r->timer, 0, req_timer_cb);
	pool_kick(p);
}

static void
owe_resume(struct scanner_req *r)
{
	if (!r->busy || r->resume_due || r->finished)
		return;
	r->resume_due = true;
	ev_timer_arm(&r->timer, 0, req_timer_cb);
}

/* ---------------------------------------------------------------- attempts */

/* Frame the request into the connection: session, preamble, held octets, end. */
static int
send_request(struct scanner_conn *c)
{
	struct scanner_req *r = c->req;
	struct scanner_pool *p = r->pool;
	const struct scanner_proto *pr = p->proto;
	struct buf *out = io_out(c->io);
	size_t off = 0;

	if (!c->session && pr->session_open != NULL && p->o.idle_ms > 0) {
		if (buf_append(out, pr->session_open, pr->session_open_len) < 0)
			return -1;
		c->session = true;
		c->seq = 0;
	}
	c->seq++;
	c->sent = true;
	if (pr->begin(r, out) < 0)
		return -1;
	while (off < buf_len(&r->hold)) {
		size_t n = buf_len(&r->hold) - off;

		if (n > 65536)
			n = 65536;
		if (pr->chunk(r, out, buf_head(&r->hold) + off, n) < 0)
			return -1;
		off += n;
	}
	/* Sent now and never again: only a replayable request keeps them. */
	if (r->fed > SCANNER_REPLAY_MAX) {
		r->replayable = false;
		buf_reset(&r->hold);
	}
	if (r->ended && pr->end(r, out) < 0)
		return -1;
	io_kick(c->io);
	if (buf_len(out) <= SCANNER_LOWAT)
		owe_resume(r);
	return 0;
}

/* Whether s can take r now (healthy, untried, below its connection cap). */
static bool
usable(const struct scanner_server *s, const struct scanner_req *r)
{
	return s->health != HEALTH_DOWN && !(r->tried & (1ull << s->index));
}

/* The least busy usable server with room; *waitable: one is usable but full. */
static struct scanner_server *
pick(struct scanner_pool *p, const struct scanner_req *r, bool *waitable)
{
	struct scanner_server *best = NULL;

	*waitable = false;
	for (int i = 0; i < p->n; i++) {
		struct scanner_server *s = &p->srv[i];

		if (!usable(s, r))
			continue;
		if (s->active >= p->o.connections) {
			*waitable = true;
			continue;
		}
		if (best == NULL || s->active < best->active)
			best = s;
	}
	return best;
}

static void attempt_failed(struct scanner_req *r, struct scanner_server *s, enum fail_kind kind,
    bool stale, const char *why);

static void
attempt(struct scanner_req *r, struct scanner_server *s)
{
	struct scanner_pool *p = r->pool;
	struct scanner_conn *c;
	char why[SCANNER_ERROR_MAX];

	r->tried |= 1ull << s->index;
	r->server = s->conf.text;
	r->server_index = s->index;
	s->active++;
	s->requests++;
	c = idle_take(s);
	if (c == NULL) {
		c = conn_open(s, false, why, sizeof(why));
		if (c == NULL) {
			s->active--;
			attempt_failed(r, s, FAIL_CONNECT, false, why);
			return;
		}
		s->connects++;
	}
	c->req = r;
	r->conn = c;
	io_set_timeout(c->io, p->o.timeout_ms);
	if (c->connected) {
		r->accepted = true;
		if (send_request(c) < 0) {
			req_drop_conn(r);
			s->errors++;
			server_error(s, "request does not fit the output buffer");
			settle(r, SCANNER_ERROR, "request does not fit the output buffer");
		}
	}
}

/*
 * An attempt on s failed.  A stale reused connection is retried once on
 * a fresh one; otherwise s is down, and a replayable request moves on to
 * the next server (dispatch).
 */
static void
attempt_failed(struct scanner_req *r, struct scanner_server *s, enum fail_kind kind, bool stale,
    const char *why)
{
	struct scanner_pool *p = r->pool;
	char q[LOG_QUOTE_SIZE(SCANNER_ERROR_MAX)];

	s->errors++;
	if (kind == FAIL_TIMEOUT)
		s->timeouts++;
	server_error(s, why);
	set_error(r->reason, sizeof(r->reason), why);
	if (kind != FAIL_CONNECT)
		r->accepted = true;
	if (stale) {
		/* The server closed an idle session: it is not broken. */
		log_sid(LOG_LVL_INFO, r->sid, "%s stale connection server=%s error=%s retry=%s",
		    p->proto->name, s->logname, log_quote_str(q, sizeof(q), why),
		    !r->stale_retry && r->replayable ? "yes" : "no");
		if (r->stale_retry || !r->replayable) {
			settle(r, SCANNER_ERROR, why);
			return;
		}
		r->stale_retry = true;
		r->tried &= ~(1ull << s->index);
		dispatch(r);
		return;
	}
	log_sid(LOG_LVL_WARN, r->sid, "%s attempt failed server=%s error=%s replayable=%s",
	    p->proto->name, s->logname, log_quote_str(q, sizeof(q), why),
	    r->replayable ? "yes" : "no");
	server_down(s, why);
	if (!r->replayable) {
		settle(r, r->accepted ? SCANNER_ERROR : SCANNER_UNAVAILABLE, why);
		return;
	}
	dispatch(r);
}

static void
enqueue(struct scanner_req *r)
{
	struct scanner_pool *p = r->pool;

	if (p->qlen >= p->o.queue) {
		settle(r, SCANNER_UNAVAILABLE, "queue full");
		return;
	}
	r->queued = true;
	r->qnext = NULL;
	/* The timer now bounds the wait; a resume is owed again once connected. */
	r->resume_due = false;
	if (p->qtail)
		p->qtail->qnext = r;
	else
		p->qhead = r;
	p->qtail = r;
	p->qlen++;
	ev_timer_arm(&r->timer, p->o.timeout_ms, req_timer_cb);
}

/* r has no connection and is not queued: attempt, queue or give up. */
static void
dispatch(struct scanner_req *r)
{
	struct scanner_pool *p = r->pool;
	struct scanner_server *s;
	bool waitable;

	if (r->finished)
		return;
	s = pick(p, r, &waitable);
	if (s != NULL) {
		attempt(r, s);
		return;
	}
	if (waitable) {
		enqueue(r);
		return;
	}
	if (r->tried == 0)
		settle(r, SCANNER_UNAVAILABLE, p->n == 0 ? "no scanner configured"
		    : "no scanner server up");
	else
		settle(r, r->accepted ? SCANNER_ERROR : SCANNER_UNAVAILABLE, r->reason);
}

/* Give queued requests the room that freed up; fail those nobody can take. */
static void
pool_kick(struct scanner_pool *p)
{
	if (p->kicking) {
		p->kick_again = true;
		return;
	}
	p->kicking = true;
	do {
		struct scanner_req *r = p->qhead;

		p->kick_again = false;
		while (r) {
			struct scanner_req *next = r->qnext;
			struct scanner_server *s;
			bool waitable;

			s = pick(p, r, &waitable);
			if (s != NULL || !waitable) {
				queue_unlink(r);
				dispatch(r);
				/* dispatch may have changed the queue: start over */
				p->kick_again = true;
				break;
			}
			r = next;
		}
	} while (p->kick_again);
	p->kicking = false;
}

/* ------------------------------------------------------------- replies */

static void
conn_failed(struct scanner_conn *c, enum fail_kind kind, const char *why)
{
	struct scanner_req *r = c->req;
	struct scanner_server *s = c->srv;
	/* A reused connection that dies before answering was closed under us. */
	bool stale = c->reused && kind == FAIL_BROKEN && buf_len(io_in(c->io)) == 0;
	char reason[SCANNER_ERROR_MAX];

	snprintf(reason, sizeof(reason), "%s", why);
	req_drop_conn(r);
	attempt_failed(r, s, kind, stale, reason);
}

static void
read_reply(struct scanner_conn *c, bool eof)
{
	struct scanner_req *r = c->req;
	struct scanner_server *s = c->srv;
	struct scanner_pool *p = s->pool;
	char why[SCANNER_ERROR_MAX] = "";
	int rc;

	rc = p->proto->reply(r, io_in(c->io), c->session ? c->seq : 0, eof, why, sizeof(why));
	if (rc == SCANNER_PARSE_MORE) {
		if (eof) {
			conn_failed(c, FAIL_BROKEN, "connection closed before the reply");
			return;
		}
		io_kick(c->io); /* input consumed: read on */
		return;
	}
	if (rc == SCANNER_PARSE_BAD) {
		/* The server answered: not down, but this exchange failed. */
		char q[LOG_QUOTE_SIZE(SCANNER_ERROR_MAX)];

		s->errors++;
		server_error(s, why);
		log_sid(LOG_LVL_WARN, r->sid, "%s bad reply server=%s error=%s", p->proto->name,
		    s->logname, log_quote_str(q, sizeof(q), why));
		settle(r, SCANNER_ERROR, why);
		return;
	}
	if (!(r->ended && c->sent && buf_len(io_out(c->io)) == 0) && !p->proto->refusal(r)) {
		char q[LOG_QUOTE_SIZE(SCANNER_ERROR_MAX)];
		static const char early[] = "verdict before the whole message was sent";

		s->errors++;
		server_error(s, early);
		log_sid(LOG_LVL_WARN, r->sid, "%s bad reply server=%s error=%s", p->proto->name,
		    s->logname, log_quote_str(q, sizeof(q), early));
		settle(r, SCANNER_ERROR, early);
		return;
	}
	s->replies++;
	s->last_ok_ms = now_ms();
	/* Reuse only after a complete, clean exchange on a session. */
	if (c->session && r->ended && !eof && buf_len(io_out(c->io)) == 0 &&
	    buf_len(io_in(c->io)) == 0 && p->o.idle_ms > 0) {
		c->req = NULL;
		r->conn = NULL;
		s->active--;
		idle_put(c);
	}
	settle(r, SCANNER_REPLY, NULL);
}

/* ---------------------------------------------------------------- health */

static void check_cb(struct ev_timer *t);

static void
ping_done(struct scanner_server *s, bool ok, const char *why)
{
	struct scanner_pool *p = s->pool;
	char q[LOG_QUOTE_SIZE(SCANNER_ERROR_MAX)];

	if (s->pinging) {
		conn_close(s->pinging);
		s->pinging = NULL;
	}
	/*
	 * A check that started before the server went down says nothing
	 * about it since: the request that failed is the newer news.
	 */
	if (ok && s->health == HEALTH_DOWN && s->ping_ms <= s->down_ms) {
		ev_timer_arm(&s->check, s->backoff_ms, check_cb);
		return;
	}
	if (ok) {
		if (s->health != HEALTH_UP) {
			log_info("scanner up engine=%s server=%s was=%s", p->proto->name, s->logname,
			    health_name(s->health));
			s->health = HEALTH_UP;
			s->since = time(NULL);
		}
		s->last_ok_ms = now_ms();
		s->backoff_ms = SCANNER_BACKOFF_MIN_MS;
		ev_timer_arm(&s->check, SCANNER_CHECK_MS, check_cb);
		pool_kick(p);
		return;
	}
	if (s->health != HEALTH_DOWN) {
		server_down(s, why);
		return;
	}
	server_error(s, why);
	s->backoff_ms = min_u(s->backoff_ms * 2, SCANNER_BACKOFF_MAX_MS);
	log_debug("scanner check failed engine=%s server=%s error=%s next_ms=%u", p->proto->name,
	    s->logname, log_quote_str(q, sizeof(q), why), s->backoff_ms);
	ev_timer_arm(&s->check, s->backoff_ms, check_cb);
}

static void
ping_send(struct scanner_conn *c)
{
	const struct scanner_proto *pr = c->srv->pool->proto;

	if (io_write(c->io, pr->ping, pr->ping_len) < 0)
		ping_done(c->srv, false, "cannot send the check");
}

static void
ping_event(struct scanner_conn *c, enum io_event ev)
{
	struct scanner_server *s = c->srv;
	int rc;

	switch (ev) {
	case IO_CONNECTED:
		c->connected = true;
		ping_send(c);
		return;
	case IO_DATAIN:
	case IO_EOF:
	case IO_HUP:
		rc = s->pool->proto->pong(io_in(c->io), ev != IO_DATAIN);
		if (rc == SCANNER_PARSE_DONE)
			ping_done(s, true, NULL);
		else if (rc == SCANNER_PARSE_BAD)
			ping_done(s, false, "unexpected answer to the health check");
		else if (ev != IO_DATAIN)
			ping_done(s, false, "closed before answering the health check");
		return;
	case IO_TIMEOUT:
		ping_done(s, false, c->connected ? "health check timed out" : "connect timed out");
		return;
	case IO_ERROR:
		ping_done(s, false, io_error(c->io) ? io_error(c->io) : "socket error");
		return;
	case IO_LOWAT:
	case IO_TLS_READY:
	case IO_TLS_HELLO:
		return;
	}
}

static void
check_cb(struct ev_timer *t)
{
	struct scanner_server *s = container_of(t, struct scanner_server, check);
	struct scanner_pool *p = s->pool;
	char why[SCANNER_ERROR_MAX];
	struct scanner_conn *c;

	if (s->pinging)
		return;
	/* A healthy server that answered recently needs no probe. */
	if (s->health == HEALTH_UP && s->last_ok_ms + SCANNER_CHECK_MS > now_ms()) {
		ev_timer_arm(&s->check, s->last_ok_ms + SCANNER_CHECK_MS - now_ms(), check_cb);
		return;
	}
	c = conn_open(s, true, why, sizeof(why));
	if (c == NULL) {
		ping_done(s, false, why);
		return;
	}
	s->pinging = c;
	s->ping_ms = now_ms();
	io_set_timeout(c->io, min_u(p->o.timeout_ms, SCANNER_PING_TIMEOUT_MS));
	if (c->connected)
		ping_send(c);
}

static void
server_down(struct scanner_server *s, const char *why)
{
	struct scanner_pool *p = s->pool;
	char q[LOG_QUOTE_SIZE(SCANNER_ERROR_MAX)];

	server_error(s, why);
	if (s->health == HEALTH_DOWN)
		return;
	log_warn("scanner down engine=%s server=%s error=%s", p->proto->name, s->logname,
	    log_quote_str(q, sizeof(q), why));
	s->health = HEALTH_DOWN;
	s->since = time(NULL);
	s->down_ms = now_ms();
	s->backoff_ms = SCANNER_BACKOFF_MIN_MS;
	while (s->idle)
		conn_close(s->idle);
	if (s->pinging == NULL)
		ev_timer_arm(&s->check, s->backoff_ms, check_cb);
	pool_kick(p);
}

/* ------------------------------------------------------------- io events */

static void
conn_cb(struct io *io, enum io_event ev, void *arg)
{
	struct scanner_conn *c = arg;
	struct scanner_req *r = c->req;

	if (c->dead)
		return;
	if (c->ping) {
		ping_event(c, ev);
		return;
	}
	if (r == NULL) {
		/* Idle: anything but silence ends it. */
		if (ev != IO_LOWAT)
			conn_close(c);
		return;
	}
	switch (ev) {
	case IO_CONNECTED:
		c->connected = true;
		r->accepted = true;
		if (send_request(c) < 0) {
			struct scanner_server *s = c->srv;

			req_drop_conn(r);
			s->errors++;
			server_error(s, "request does not fit the output buffer");
			settle(r, SCANNER_ERROR, "request does not fit the output buffer");
		}
		return;
	case IO_DATAIN:
		read_reply(c, false);
		return;
	case IO_EOF:
	case IO_HUP:
		read_reply(c, true);
		return;
	case IO_LOWAT:
		owe_resume(r);
		return;
	case IO_TIMEOUT:
		conn_failed(c, c->connected ? FAIL_TIMEOUT : FAIL_CONNECT,
		    c->connected ? "timeout waiting for the scanner" : "connect timed out");
		return;
	case IO_ERROR: {
		char why[SCANNER_ERROR_MAX];

		snprintf(why, sizeof(why), "%s", io_error(io) ? io_error(io) : "socket error");
		if (c->connected) {
			salvage(c);
			if (buf_len(io_in(io)) > 0) {
				read_reply(c, true);
				return;
			}
		}
		conn_failed(c, c->connected ? FAIL_BROKEN : FAIL_CONNECT, why);
		return;
	}
	case IO_TLS_READY:
	case IO_TLS_HELLO:
		return;
	}
}

/* ------------------------------------------------------------------- API */

void
scanner_opts_from_conf(struct scanner_opts *o, const struct conf_scanners *sc)
{
	o->timeout_ms = sc->timeout * 1000u;
	o->connections = sc->connections;
	o->queue = sc->queue;
	o->max_size = sc->max_size;
	o->idle_ms = sc->idle_timeout * 1000u;
}

struct scanner_pool *
scanner_pool_new_opts(const struct scanner_proto *proto, const struct conf_scanners *sc,
    const struct scanner_opts *o)
{
	struct scanner_pool *p = xcalloc(1, sizeof(*p));

	FATAL_IF(proto->ncounters > SCANNER_COUNTERS_MAX);
	FATAL_IF(o->connections == 0 || o->timeout_ms == 0);
	p->proto = proto;
	p->o = *o;
	p->n = sc->n_servers;
	for (int i = 0; i < p->n; i++) {
		struct scanner_server *s = &p->srv[i];

		s->pool = p;
		s->index = i;
		s->conf = sc->servers[i];
		log_quote_str(s->logname, sizeof(s->logname), s->conf.text);
		s->health = HEALTH_UNCHECKED;
		s->backoff_ms = SCANNER_BACKOFF_MIN_MS;
		/* First check at once: a dead scanner is known before mail waits on it. */
		ev_timer_arm(&s->check, 0, check_cb);
	}
	return p;
}

struct scanner_pool *
scanner_pool_new(const struct scanner_proto *proto, const struct conf_scanners *sc)
{
	struct scanner_opts o;

	scanner_opts_from_conf(&o, sc);
	return scanner_pool_new_opts(proto, sc, &o);
}

void
scanner_pool_free(struct scanner_pool *p)
{
	if (p == NULL)
		return;
	/* Freeing inside a callback would pull the io out from under io.c. */
	FATAL_IF(p->in_callback > 0);
	FATAL_IF(p->outstanding > 0);
	for (int i = 0; i < p->n; i++) {
		struct scanner_server *s = &p->srv[i];

		ev_timer_cancel(&s->check);
		if (s->pinging)
			conn_close(s->pinging);
		s->pinging = NULL;
		while (s->idle)
			conn_close(s->idle);
	}
	ev_timer_cancel(&p->reaper);
	/* Outside any callback of these ios (checked above): free them now. */
	reaper_cb(&p->reaper);
	free(p);
}

int
scanner_pool_servers(const struct scanner_pool *p)
{
	return p->n;
}

uint64_t
scanner_pool_max_size(const struct scanner_pool *p)
{
	return p->o.max_size;
}

unsigned
scanner_pool_outstanding(const struct scanner_pool *p)
{
	return p->outstanding;
}

void
scanner_req_start(struct scanner_pool *p, struct scanner_req *r, uint64_t sid)
{
	r->pool = p;
	r->sid = sid;
	r->server_index = -1;
	r->replayable = true;
	r->started_ms = now_ms();
	buf_init(&r->hold, SCANNER_BACKLOG_MAX);
	p->outstanding++;
	dispatch(r);
}

int
scanner_req_feed(struct scanner_req *r, const char *data, size_t len)
{
	struct scanner_pool *p = r->pool;
	struct scanner_conn *c = r->conn;

	if (r->finished)
		return SCANNER_FEED_DONE;
	FATAL_IF(r->ended);
	if (len == 0)
		return r->busy ? SCANNER_FEED_BUSY : SCANNER_FEED_OK;
	if (len > p->o.max_size || r->fed > p->o.max_size - len) {
		char why[SCANNER_ERROR_MAX];

		snprintf(why, sizeof(why), "message larger than %llu octets",
		    (unsigned long long)p->o.max_size);
		settle(r, SCANNER_TOO_LARGE, why);
		return SCANNER_FEED_DONE;
	}
	r->fed += len;
	if (c != NULL && c->sent) {
		struct buf *out = io_out(c->io);

		if (buf_len(out) + len > SCANNER_BACKLOG_MAX ||
		    p->proto->chunk(r, out, data, len) < 0) {
			settle(r, SCANNER_ERROR, "fed past the back-pressure limit");
			return SCANNER_FEED_DONE;
		}
		if (r->replayable) {
			if (r->fed <= SCANNER_REPLAY_MAX) {
				(void)buf_append(&r->hold, data, len); /* fits: fed <= REPLAY < BACKLOG */
			} else {
				r->replayable = false;
				buf_reset(&r->hold);
			}
		}
		io_kick(c->io);
		if (buf_len(out) >= SCANNER_HIWAT)
			r->busy = true;
	} else {
		if (buf_append(&r->hold, data, len) < 0) {
			settle(r, SCANNER_ERROR, "fed past the back-pressure limit");
			return SCANNER_FEED_DONE;
		}
		if (buf_len(&r->hold) >= SCANNER_HIWAT)
			r->busy = true;
	}
	return r->busy ? SCANNER_FEED_BUSY : SCANNER_FEED_OK;
}

void
scanner_req_end(struct scanner_req *r)
{
	struct scanner_conn *c = r->conn;

	if (r->finished || r->ended)
		return;
	r->ended = true;
	if (c != NULL && c->sent) {
		if (r->pool->proto->end(r, io_out(c->io)) < 0) {
			settle(r, SCANNER_ERROR, "request does not fit the output buffer");
			return;
		}
		io_kick(c->io);
	}
}

void
scanner_req_cancel(struct scanner_req *r)
{
	struct scanner_pool *p = r->pool;

	if (p == NULL)
		return;
	queue_unlink(r);
	ev_timer_cancel(&r->timer);
	req_drop_conn(r);
	buf_free(&r->hold);
	p->outstanding--;
	r->pool = NULL;
	r->finished = true;
	pool_kick(p);
}

void
scanner_req_fail(struct scanner_req *r, enum scanner_outcome o, const char *reason)
{
	FATAL_IF(o == SCANNER_REPLY);
	if (r->pool == NULL || r->finished)
		return;
	settle(r, o, reason);
}

void
scanner_count(struct scanner_req *r, unsigned idx)
{
	struct scanner_pool *p = r->pool;

	if (p == NULL || r->server_index < 0 || idx >= p->proto->ncounters)
		return;
	p->srv[r->server_index].counters[idx]++;
}

uint64_t
scanner_req_elapsed(const struct scanner_req *r)
{
	return now_ms() - r->started_ms;
}

void
scanner_pool_status(const struct scanner_pool *p, const char *prefix, FILE *f)
{
	fprintf(f, "%s.servers=%d\n", prefix, p->n);
	fprintf(f, "%s.queued=%u\n", prefix, p->qlen);
	fprintf(f, "%s.unavailable=%llu\n", prefix, (unsigned long long)p->unavailable);
	fprintf(f, "%s.too-large=%llu\n", prefix, (unsigned long long)p->too_large);
	for (int i = 0; i < p->n; i++) {
		const struct scanner_server *s = &p->srv[i];
		int n = i + 1;

		fprintf(f, "%s.%d.address=%s\n", prefix, n, s->conf.text);
		fprintf(f, "%s.%d.health=%s\n", prefix, n, health_name(s->health));
		fprintf(f, "%s.%d.since=%lld\n", prefix, n, (long long)s->since);
		fprintf(f, "%s.%d.requests=%llu\n", prefix, n, (unsigned long long)s->requests);
		fprintf(f, "%s.%d.connects=%llu\n", prefix, n, (unsigned long long)s->connects);
		fprintf(f, "%s.%d.replies=%llu\n", prefix, n, (unsigned long long)s->replies);
		fprintf(f, "%s.%d.errors=%llu\n", prefix, n, (unsigned long long)s->errors);
		fprintf(f, "%s.%d.timeouts=%llu\n", prefix, n, (unsigned long long)s->timeouts);
		fprintf(f, "%s.%d.active=%u\n", prefix, n, s->active);
		fprintf(f, "%s.%d.idle=%u\n", prefix, n, s->nidle);
		for (unsigned k = 0; k < p->proto->ncounters; k++)
			fprintf(f, "%s.%d.%s=%llu\n", prefix, n, p->proto->counters[k],
			    (unsigned long long)s->counters[k]);
		fprintf(f, "%s.%d.last-error=%s\n", prefix, n, s->last_error);
		fprintf(f, "%s.%d.last-error-time=%lld\n", prefix, n, (long long)s->last_error_time);
	}
}
