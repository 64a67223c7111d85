/*
 * test_session - the SMTP engine end to end, over two socket pairs.
 *
 * The test holds the client's end of one pair and the destination's end
 * of the other; session_attach() gets the two middle ends.  Each scenario
 * writes scripted bytes on one side, runs the event loop until the other
 * side has received what it must, and compares transcripts exactly:
 * expect() checks the next bytes a peer received, expect_quiet() that
 * nothing more arrived, expect_eof() that the engine closed that leg.
 *
 * What the scenarios prove, beyond "the bytes are right":
 *  - the end of data reaches the destination only after the verdict, and
 *    the client's final reply is the destination's own, sent only after
 *    the destination gave it;
 *  - refused, denied or cut-off messages never get their end of data
 *    upstream (the destination sees its connection closed instead);
 *  - bytes a client sends where it must wait are never executed;
 *  - BDAT is relayed as BDAT to a CHUNKING destination (LAST only after
 *    the verdict) and converted to dot-stuffed DATA otherwise;
 *  - a verdict that comes later (the test inspector answers from an ev
 *    timer) holds the client's reply and its next commands, the wait is
 *    bounded by inspect-timeout, and a session that dies meanwhile
 *    cancels the inspection (ASan: no callback into freed memory);
 *  - a held message reaches the destination only after its verdict, as
 *    DATA, with the inspector's edits, byte-exact through the spool; a
 *    denied one never does, and the same connection goes on (RSET);
 *  - an edit that would break a DKIM signature is refused (libopendkim);
 *  - a streamed message that is refused closes the upstream, and the
 *    engine reconnects (a TCP destination on loopback) so the session's
 *    next transaction is delivered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <dkim.h>

#include "config.h"
#include "ev.h"
#include "inspect.h"
#include "session.h"
#include "util.h"

#define WAIT_MS 3000u

struct peer {
	const char *name;
	int fd;
	char *buf;
	size_t len, cap, mark; /* mark: bytes already checked by expect() */
	bool eof;
};

static struct peer cli = { .name = "client", .fd = -1 };
static struct peer srv = { .name = "server", .fd = -1 };
static struct config conf;
static struct ev_timer pump_timer;

/* ------------------------------------------------------------- plumbing */

static void
pump_break_cb(struct ev_timer *t)
{
	(void)t;
	ev_break();
}

static void
drain(struct peer *p)
{
	while (p->fd >= 0 && !p->eof) {
		if (p->cap - p->len < 4096) {
			p->cap = p->cap ? p->cap * 2 : 65536;
			p->buf = realloc(p->buf, p->cap);
			assert_non_null(p->buf);
		}
		ssize_t n = recv(p->fd, p->buf + p->len, p->cap - p->len - 1, 0);
		if (n > 0) {
			p->len += (size_t)n;
			p->buf[p->len] = '\0';
		} else if (n == 0) {
			p->eof = true;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			return;
		} else {
			p->eof = true; /* reset */
		}
	}
}

/* One turn of the event loop (blocking at most ms), then read both peers. */
static void
pump(unsigned ms)
{
	ev_timer_arm(&pump_timer, ms, pump_break_cb);
	ev_loop();
	ev_timer_cancel(&pump_timer);
	drain(&cli);
	drain(&srv);
}

static void
settle(unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end)
		pump(1);
}

static const char *
esc(const char *s, size_t n)
{
	static char out[4][2048];
	static int k;
	char *o = out[k++ & 3];
	size_t j = 0;

	for (size_t i = 0; i < n && j + 8 < sizeof(out[0]); i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			j += (size_t)snprintf(o + j, 8, "\\r");
		else if (c == '\n')
			j += (size_t)snprintf(o + j, 8, "\\n");
		else if (c < 32 || c >= 127)
			j += (size_t)snprintf(o + j, 8, "\\x%02x", c);
		else
			o[j++] = (char)c;
	}
	o[j] = '\0';
	return o;
}

static void
send_all(struct peer *p, const char *s, size_t n)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (n > 0) {
		ssize_t w = send(p->fd, s, n, MSG_NOSIGNAL);
		if (w > 0) {
			s += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && now_ms() < end) {
			pump(1);
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		fail_msg("%s: send failed (%s)", p->name, strerror(errno));
	}
	pump(0);
}

#define CSEND(lit) send_all(&cli, lit, sizeof(lit) - 1)
#define SSEND(lit) send_all(&srv, lit, sizeof(lit) - 1)

/* The next bytes p received must be exactly want (waits for them). */
static void
expect(struct peer *p, const char *want, size_t n)
{
	uint64_t end = now_ms() + WAIT_MS;

	for (;;) {
		size_t have = p->len - p->mark;
		size_t cmp = have < n ? have : n;

		if (memcmp(p->buf ? p->buf + p->mark : "", want, cmp) != 0)
			break;
		if (have >= n) {
			p->mark += n;
			return;
		}
		if (p->eof || now_ms() >= end)
			break;
		pump(1);
	}
	fail_msg("%s received \"%s\"%s, expected \"%s\"", p->name,
	    esc(p->buf ? p->buf + p->mark : "", p->len - p->mark), p->eof ? " then EOF" : "",
	    esc(want, n));
}

#define EXPECT(p, lit) expect(p, lit, sizeof(lit) - 1)

/* Nothing more arrives at p for a while. */
static void
expect_quiet(struct peer *p, unsigned ms)
{
	settle(ms);
	if (p->len != p->mark)
		fail_msg("%s received unexpected \"%s\"", p->name,
		    esc(p->buf + p->mark, p->len - p->mark));
}

/* The engine closes p's leg, with nothing more said. */
static void
expect_eof(struct peer *p)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (!p->eof && now_ms() < end)
		pump(1);
	if (p->len != p->mark)
		fail_msg("%s received unexpected \"%s\" before EOF", p->name,
		    esc(p->buf + p->mark, p->len - p->mark));
	if (!p->eof)
		fail_msg("%s: the connection was not closed", p->name);
}

/*
 * The engine closes p's leg; what p received before is a prefix of
 * partial (lines queued before an abort may or may not have been sent).
 */
static void
expect_partial_eof(struct peer *p, const char *partial)
{
	uint64_t end = now_ms() + WAIT_MS;
	size_t n = strlen(partial), have;

	while (!p->eof && now_ms() < end)
		pump(1);
	have = p->len - p->mark;
	if (have > n || memcmp(p->buf + p->mark, partial, have) != 0)
		fail_msg("%s received \"%s\", expected a prefix of \"%s\"", p->name,
		    esc(p->buf + p->mark, have), esc(partial, n));
	if (!p->eof)
		fail_msg("%s: the connection was not closed", p->name);
	p->mark = p->len;
}

static bool
received(const struct peer *p, const char *needle)
{
	return p->buf && memmem(p->buf, p->len, needle, strlen(needle)) != NULL;
}

static void
start(const struct inspector *insp)
{
	int c[2], s[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, c), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s), 0);
	cli.fd = c[0];
	srv.fd = s[0];
	assert_non_null(session_attach(c[1], s[1], &conf, insp));
	assert_int_equal(session_count(), 1);
}

/*
 * After every event batch: reap, and check the liveness property (every
 * live session has a running timer).  Counted, and checked in teardown.
 */
static unsigned unwatched_seen;

static void
idle_check(void)
{
	session_reap();
	unwatched_seen += session_unwatched();
}

/*
 * A destination the engine can reconnect to: a TCP listener on loopback
 * (a socket pair has no address to connect to again).
 */
static int lfd = -1;

static void
start_tcp(const struct inspector *insp)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int c[2], sfd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, c), 0);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(sfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(fcntl(sfd, F_SETFL, O_NONBLOCK), 0);
	srv.fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	assert_true(srv.fd >= 0);
	cli.fd = c[0];
	assert_non_null(session_attach(c[1], sfd, &conf, insp));
}

/* The engine reconnects: the destination takes the new connection, the old one is gone. */
static void
srv_accept(void)
{
	uint64_t end = now_ms() + WAIT_MS;
	int fd;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0 &&
	    now_ms() < end)
		pump(1);
	if (fd < 0)
		fail_msg("the engine did not reconnect");
	close(srv.fd);
	srv.fd = fd;
	srv.len = srv.mark = 0;
	srv.eof = false;
}

static int
setup(void **state)
{
	config_defaults(&conf);
	ev_init();
	ev_set_idle_hook(idle_check);
	unwatched_seen = 0;
	cli.len = cli.mark = srv.len = srv.mark = 0;
	cli.eof = srv.eof = false;
	return 0;
}

static int
teardown(void **state)
{
	uint64_t end;

	/* TEST_VERBOSE=1 prints both transcripts */
	if (getenv("TEST_VERBOSE")) {
		fprintf(stderr, "client got: %s\n", esc(cli.buf ? cli.buf : "", cli.len));
		fprintf(stderr, "server got: %s\n", esc(srv.buf ? srv.buf : "", srv.len));
	}
	if (cli.fd >= 0)
		close(cli.fd);
	if (srv.fd >= 0)
		close(srv.fd);
	if (lfd >= 0)
		close(lfd);
	cli.fd = srv.fd = lfd = -1;
	end = now_ms() + WAIT_MS;
	while (session_count() > 0 && now_ms() < end)
		pump(1);
	if (session_count() > 0) {
		session_close_all("test-teardown");
		session_reap();
		fail_msg("the session did not end when both peers closed");
	}
	session_reap();
	if (unwatched_seen)
		fail_msg("a live session had no running timer (%u times)", unwatched_seen);
	free(cli.buf);
	free(srv.buf);
	cli.buf = srv.buf = NULL;
	cli.cap = srv.cap = 0;
	return 0;
}

/* --------------------------------------------------------- inspector */

/*
 * The test inspector: records what it is shown, and answers at once or
 * later (an ev timer: the way a scanner behind a socket answers), asks
 * for a pause in the middle, holds the message and returns edits.  Its
 * transactions are real allocations, so one never ended nor aborted
 * leaks (ASan), and abort() cancels its timers: a verdict after abort()
 * would be a callback into a freed engine.
 */
struct ti_txn {
	const struct inspect_hooks *hooks;
	struct ev_timer verdict_timer, resume_timer;
	size_t seen;
	bool busy_done;
};

static struct {
	int begun, ended, aborted, resumed, busy;
	enum inspect_verdict verdict;
	const char *reply;
	char helo[300], from[300], rcpts[1024];
	int nrcpts;
	char body[65536];
	size_t bodylen;
	uint64_t bodytotal;
	/* behaviour */
	int delay_ms;      /* 0: the verdict at once; > 0: after delay_ms; < 0: never */
	bool hold;         /* INSPECT_F_HOLD */
	size_t busy_after; /* body() is busy once this many octets arrived (0: never) */
	int resume_ms;     /* ... and resumes after resume_ms (< 0: never) */
	struct { uint64_t off, len; const char *text; } edits[8];
	int nedits;
	struct ti_txn *live;
} ti;

static void
ti_result(struct inspect_result *res)
{
	inspect_result_clear(res);
	res->verdict = ti.verdict;
	if (ti.reply)
		snprintf(res->reply, sizeof(res->reply), "%s", ti.reply);
	snprintf(res->reason, sizeof(res->reason), "test");
	for (int i = 0; i < ti.nedits; i++)
		assert_int_equal(inspect_result_edit(res, ti.edits[i].off, ti.edits[i].len,
		    ti.edits[i].text, strlen(ti.edits[i].text)), 0);
}

static void
ti_free(struct ti_txn *t)
{
	ev_timer_cancel(&t->verdict_timer);
	ev_timer_cancel(&t->resume_timer);
	if (ti.live == t)
		ti.live = NULL;
	free(t);
}

static void *
ti_begin(const struct inspector *in, const struct inspect_envelope *env,
    const struct inspect_hooks *hooks, unsigned *flags)
{
	size_t o = 0;
	struct ti_txn *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_int_equal(*flags, 0);
	t->hooks = hooks;
	ti.live = t;
	ti.begun++;
	ti.bodylen = 0;
	ti.bodytotal = 0;
	snprintf(ti.helo, sizeof(ti.helo), "%s", env->helo ? env->helo : "(null)");
	snprintf(ti.from, sizeof(ti.from), "%s", env->mail_from);
	ti.nrcpts = env->nrcpts;
	ti.rcpts[0] = '\0';
	for (int i = 0; i < env->nrcpts; i++)
		o += (size_t)snprintf(ti.rcpts + o, sizeof(ti.rcpts) - o, "%s<%s>", i ? "," : "",
		    env->rcpts[i]);
	if (ti.hold)
		*flags |= INSPECT_F_HOLD;
	return t;
}

static void
ti_resume_cb(struct ev_timer *tm)
{
	struct ti_txn *t = container_of(tm, struct ti_txn, resume_timer);

	ti.resumed++;
	t->hooks->resume(t->hooks->ctx);
}

static int
ti_body(void *txn, const char *data, size_t len)
{
	struct ti_txn *t = txn;

	assert_non_null(t);
	assert_false(ev_timer_armed(&t->verdict_timer)); /* nothing after end() */
	if (ti.bodylen + len <= sizeof(ti.body)) {
		memcpy(ti.body + ti.bodylen, data, len);
		ti.bodylen += len;
	}
	ti.bodytotal += len;
	t->seen += len;
	if (ti.busy_after && !t->busy_done && t->seen >= ti.busy_after) {
		t->busy_done = true;
		ti.busy++;
		if (ti.resume_ms >= 0)
			ev_timer_arm(&t->resume_timer, (uint64_t)ti.resume_ms, ti_resume_cb);
		return INSPECT_BUSY;
	}
	return INSPECT_OK;
}

static void
ti_verdict_cb(struct ev_timer *tm)
{
	struct ti_txn *t = container_of(tm, struct ti_txn, verdict_timer);
	struct inspect_result res;

	memset(&res, 0, sizeof(res));
	ti_result(&res);
	ti.ended++;
	/* The transaction is over when the verdict is delivered. */
	const struct inspect_hooks *h = t->hooks;
	ti_free(t);
	h->verdict(h->ctx, &res);
	inspect_result_clear(&res);
}

static int
ti_end(void *txn, struct inspect_result *res)
{
	struct ti_txn *t = txn;

	ev_timer_cancel(&t->resume_timer);
	if (ti.delay_ms == 0) {
		ti_result(res);
		ti.ended++;
		ti_free(t);
		return INSPECT_DONE;
	}
	if (ti.delay_ms > 0)
		ev_timer_arm(&t->verdict_timer, (uint64_t)ti.delay_ms, ti_verdict_cb);
	return INSPECT_PENDING;
}

static void
ti_abort(void *txn)
{
	ti_free(txn);
	ti.aborted++;
}

static const struct inspector test_insp = {
	.name = "test",
	.begin = ti_begin,
	.body = ti_body,
	.end = ti_end,
	.abort = ti_abort,
};

static void
insp_reset(enum inspect_verdict v, const char *reply)
{
	memset(&ti, 0, sizeof(ti));
	ti.verdict = v;
	ti.reply = reply;
}

/* ------------------------------------------------------------ scripts */

#define EHLO_PLAIN "250-mx.example.com\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000\r\n"
#define EHLO_PLAIN_SHOWN \
	"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n" \
	"250 CHUNKING\r\n"
#define EHLO_CHUNK "250-mx.example.com\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
#define EHLO_CHUNK_SHOWN "250-mx.example.com\r\n250-PIPELINING\r\n250 CHUNKING\r\n"

static void
greet(void)
{
	SSEND("220 mx.example.com ESMTP\r\n");
	EXPECT(&cli, "220 mx.example.com ESMTP\r\n");
}

/* Greeting and EHLO with the given upstream reply and what the client must see. */
static void
ehlo(const char *up, const char *shown)
{
	greet();
	CSEND("EHLO client.example\r\n");
	EXPECT(&srv, "EHLO client.example\r\n");
	send_all(&srv, up, strlen(up));
	expect(&cli, shown, strlen(shown));
}

/* MAIL and one RCPT, both accepted. */
static void
envelope(void)
{
	CSEND("MAIL FROM:<alice@example.com>\r\n");
	EXPECT(&srv, "MAIL FROM:<alice@example.com>\r\n");
	SSEND("250 2.1.0 Ok\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n");
	CSEND("RCPT TO:<bob@example.org>\r\n");
	EXPECT(&srv, "RCPT TO:<bob@example.org>\r\n");
	SSEND("250 2.1.5 Ok\r\n");
	EXPECT(&cli, "250 2.1.5 Ok\r\n");
}

static void
data_go(void)
{
	CSEND("DATA\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 End data with <CR><LF>.<CR><LF>\r\n");
	EXPECT(&cli, "354 End data with <CR><LF>.<CR><LF>\r\n");
}

/* ----------------------------------------------------------- greeting */

static void
test_greeting(void **state)
{
	start(NULL);
	/* nothing is said to the client before the destination speaks */
	expect_quiet(&cli, 30);
	SSEND("220 mx.example.com ESMTP ready\r\n");
	EXPECT(&cli, "220 mx.example.com ESMTP ready\r\n");
	expect_quiet(&srv, 10);
}

static void
test_greeting_multiline(void **state)
{
	start(NULL);
	/* arrives in pieces; relayed once complete, canonical */
	SSEND("220-mx.example.com first\r\n220-");
	SSEND("second\r\n220 ");
	SSEND("third\r\n");
	EXPECT(&cli, "220-mx.example.com first\r\n220-second\r\n220 third\r\n");
}

static void
test_greeting_554(void **state)
{
	start(NULL);
	SSEND("554 5.3.2 No service for you\r\n");
	EXPECT(&cli, "554 5.3.2 No service for you\r\n");
	CSEND("QUIT\r\n");
	EXPECT(&srv, "QUIT\r\n");
	SSEND("221 2.0.0 Bye\r\n");
	EXPECT(&cli, "221 2.0.0 Bye\r\n");
	expect_eof(&cli);
	expect_eof(&srv);
}

static void
test_greeting_421(void **state)
{
	start(NULL);
	SSEND("421 4.3.2 Too busy\r\n");
	EXPECT(&cli, "421 4.3.2 Too busy\r\n");
	expect_eof(&cli);
	expect_eof(&srv);
}

/* A malformed greeting is never relayed: the client gets our 421. */
static void
test_greeting_malformed(void **state)
{
	start(NULL);
	SSEND("220 bare lf\n");
	EXPECT(&cli, "421 4.4.2 ");
	settle(10);
	cli.mark = cli.len;
	expect_eof(&cli);
	assert_false(received(&cli, "bare lf"));
}

/* A client that talks before the greeting is not an SMTP client. */
static void
test_talk_before_greeting(void **state)
{
	start(NULL);
	CSEND("EHLO early.example\r\n");
	settle(20);
	SSEND("220 mx.example.com ESMTP\r\n");
	EXPECT(&cli, "220 mx.example.com ESMTP\r\n421 4.5.0 ");
	expect_quiet(&srv, 20);
	assert_false(received(&srv, "EHLO"));
}

/* ------------------------------------------------------------- EHLO */

static void
test_ehlo_mediation(void **state)
{
	start(NULL);
	greet();
	CSEND("ehlo client.example\r\n");
	EXPECT(&srv, "EHLO client.example\r\n");
	SSEND("250-mx.example.com Hello client\r\n"
	      "250-PIPELINING\r\n"
	      "250-XCLIENT NAME ADDR PROTO HELO\r\n"
	      "250-SIZE 10240000\r\n"
	      "250-ETRN\r\n"
	      "250-STARTTLS\r\n"
	      "250-AUTH PLAIN LOGIN\r\n"
	      "250-XFORWARD NAME ADDR\r\n"
	      "250-X-FOO\r\n"
	      "250-VRFY\r\n"
	      "250-ENHANCEDSTATUSCODES\r\n"
	      "250-8BITMIME\r\n"
	      "250 DSN\r\n");
	EXPECT(&cli, "250-mx.example.com Hello client\r\n"
	      "250-PIPELINING\r\n"
	      "250-SIZE 10240000\r\n"
	      "250-8BITMIME\r\n"
	      "250-ENHANCEDSTATUSCODES\r\n"
	      "250-DSN\r\n"
	      "250-CHUNKING\r\n"
	      "250 AUTH PLAIN LOGIN\r\n");
	/* XCLIENT was not shown, and is not implemented either */
	CSEND("XCLIENT NAME=spoofed.example ADDR=10.0.0.1\r\n");
	EXPECT(&cli, "500 5.5.2 Error: command not recognized\r\n");
	expect_quiet(&srv, 10);
}

static void
test_ehlo_refused_upstream(void **state)
{
	start(NULL);
	greet();
	CSEND("EHLO client.example\r\n");
	EXPECT(&srv, "EHLO client.example\r\n");
	SSEND("502 5.5.2 EHLO not supported\r\n");
	EXPECT(&cli, "502 5.5.2 EHLO not supported\r\n");
	CSEND("HELO client.example\r\n");
	EXPECT(&srv, "HELO client.example\r\n");
	SSEND("250 mx.example.com\r\n");
	EXPECT(&cli, "250 mx.example.com\r\n");
	/* after HELO no ESMTP parameter is accepted */
	CSEND("MAIL FROM:<a@example.com> BODY=8BITMIME\r\n");
	EXPECT(&cli, "555 5.5.4 Unsupported MAIL parameter\r\n");
	expect_quiet(&srv, 10);
}

/* --------------------------------------------------------- transaction */

static void
test_transaction(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("Subject: test\r\n\r\n..leading dot\r\nbody\r\n.\r\n");
	/* re-stuffed, exactly */
	EXPECT(&srv, "Subject: test\r\n\r\n..leading dot\r\nbody\r\n.\r\n");
	/* the destination has not answered: neither has smtpgw */
	expect_quiet(&cli, 50);
	SSEND("250 2.0.0 Ok: queued as 4F2A\r\n");
	EXPECT(&cli, "250 2.0.0 Ok: queued as 4F2A\r\n");
	/* the inspector saw the envelope and the unstuffed message */
	assert_int_equal(ti.begun, 1);
	assert_int_equal(ti.ended, 1);
	assert_int_equal(ti.aborted, 0);
	assert_string_equal(ti.helo, "client.example");
	assert_string_equal(ti.from, "alice@example.com");
	assert_string_equal(ti.rcpts, "<bob@example.org>");
	assert_int_equal(ti.bodylen, strlen("Subject: test\r\n\r\n.leading dot\r\nbody\r\n"));
	assert_memory_equal(ti.body, "Subject: test\r\n\r\n.leading dot\r\nbody\r\n", ti.bodylen);
	CSEND("QUIT\r\n");
	EXPECT(&srv, "QUIT\r\n");
	SSEND("221 2.0.0 Bye\r\n");
	EXPECT(&cli, "221 2.0.0 Bye\r\n");
	expect_eof(&cli);
	expect_eof(&srv);
}

/* The client's reply to its end of data is the destination's, whatever it says. */
static void
test_transaction_rejected_upstream(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("hello\r\n.\r\n");
	EXPECT(&srv, "hello\r\n.\r\n");
	SSEND("554-5.7.1 spam\r\n554 5.7.1 go away\r\n");
	EXPECT(&cli, "554-5.7.1 spam\r\n554 5.7.1 go away\r\n");
	/* a new transaction may follow */
	envelope();
}

static void
test_pipelined(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	CSEND("MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\n"
	      "RCPT TO:<nobody@example.org>\r\nDATA\r\n");
	EXPECT(&srv, "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\n"
	      "RCPT TO:<nobody@example.org>\r\nDATA\r\n");
	/* replies in pieces, one with several lines: relayed in order */
	SSEND("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550-5.1.1 <nobody@example.org>:\r\n");
	SSEND("550 5.1.1 no such user\r\n354 go ahead\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550-5.1.1 <nobody@example.org>:\r\n"
	      "550 5.1.1 no such user\r\n354 go ahead\r\n");
	CSEND("x\r\n.\r\n");
	EXPECT(&srv, "x\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/* Message data sent before the 354 is a protocol error, never relayed. */
static void
test_data_before_354(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("DATA\r\nSubject: smuggled\r\n\r\nhi\r\n.\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&cli, "354 go ahead\r\n421 4.5.0 Error: protocol violation");
	expect_eof(&srv);
	assert_false(received(&srv, "Subject"));
	assert_false(received(&srv, "\r\n.\r\n"));
}

/* The verdict is asked before the end of data goes upstream; a deny keeps it back. */
static void
test_inspector_deny(void **state)
{
	insp_reset(INSPECT_DENY, "554 5.7.1 denied by test");
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("Subject: bad\r\n\r\nevil\r\n.\r\n");
	EXPECT(&cli, "554 5.7.1 denied by test\r\n");
	/* the destination may get the lines, never the dot: its connection is closed */
	expect_partial_eof(&srv, "Subject: bad\r\n\r\nevil\r\n");
	assert_int_equal(ti.ended, 1);
	assert_memory_equal(ti.body, "Subject: bad\r\n\r\nevil\r\n", ti.bodylen);
	/* without a destination the session can only end */
	CSEND("MAIL FROM:<alice@example.com>\r\n");
	EXPECT(&cli, "421 4.4.2 ");
}

/* A verdict with a reply of the wrong class is replaced by a safe one. */
static void
test_inspector_tempfail_bad_reply(void **state)
{
	insp_reset(INSPECT_TEMPFAIL, "250 2.0.0 looks fine\r\nto me");
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("x\r\n.\r\n");
	EXPECT(&cli, "451 4.7.1 Message temporarily rejected by content policy\r\n");
	expect_partial_eof(&srv, "x\r\n");
}

/* An RSET or a new MAIL aborts the inspection of an unfinished envelope cleanly. */
static void
test_inspector_abort(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("partial\r\n");
	EXPECT(&srv, "partial\r\n");
	/* the client vanishes mid-message: the inspector's state is released */
	close(cli.fd);
	cli.fd = -1;
	expect_eof(&srv);
	assert_int_equal(ti.begun, 1);
	assert_int_equal(ti.ended + ti.aborted, 1);
}

static void
test_client_disconnect_mid_data(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	/* the dot without its CRLF is not an end */
	CSEND("Subject: cut\r\n\r\nbody\r\n.");
	EXPECT(&srv, "Subject: cut\r\n\r\nbody\r\n");
	shutdown(cli.fd, SHUT_WR);
	expect_eof(&srv);
}

static void
test_upstream_close_mid_data(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("Subject: x\r\n");
	EXPECT(&srv, "Subject: x\r\n");
	close(srv.fd);
	srv.fd = -1;
	/* the client is still sending: it hears about it at its dot, not before */
	CSEND("more\r\n");
	expect_quiet(&cli, 30);
	CSEND(".\r\n");
	EXPECT(&cli, "451 4.4.2 Error: connection to destination lost, message not delivered\r\n");
	CSEND("QUIT\r\n");
	EXPECT(&cli, "221 2.0.0 Bye\r\n");
	expect_eof(&cli);
}

/*
 * A message line longer than max-line-length (998) refuses the message;
 * the end of data after it is still found and answered.
 */
static void
long_line(size_t n)
{
	static char line[6000];

	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	assert_true(n + 5 <= sizeof(line));
	memset(line, 'L', n);
	memcpy(line + n, "\r\n.\r\n", 5);
	CSEND("ok\r\n");
	send_all(&cli, line, n + 5);
	EXPECT(&cli, "500 5.5.2 Message line too long\r\n");
	expect_partial_eof(&srv, "ok\r\n");
}

static void
test_long_line_998(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	static char line[1003];
	memset(line, 'L', 998);
	memcpy(line + 998, "\r\n.\r\n", 5);
	send_all(&cli, line, sizeof(line));
	expect(&srv, line, sizeof(line));
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

static void
test_long_line_999(void **state)
{
	long_line(999);
}

static void
test_long_line_1000(void **state)
{
	long_line(1000);
}

static void
test_long_line_1001(void **state)
{
	long_line(1001);
}

static void
test_long_line_5000(void **state)
{
	long_line(5000);
}

/* ---------------------------------------------------------------- BDAT */

static void
test_bdat_chunking(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	start(&test_insp);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 8\r\nchunk1\r\n");
	EXPECT(&srv, "BDAT 8\r\nchunk1\r\n");
	SSEND("250 2.0.0 8 octets received\r\n");
	EXPECT(&cli, "250 2.0.0 8 octets received\r\n");
	CSEND("BDAT 6 LAST\r\nlast\r\n");
	/* LAST goes up separately, after the verdict */
	EXPECT(&srv, "BDAT 6\r\nlast\r\nBDAT 0 LAST\r\n");
	SSEND("250 2.0.0 6 octets received\r\n");
	expect_quiet(&cli, 30); /* the 250 for "BDAT 6" is ours, not the client's */
	SSEND("250 2.0.0 Ok: queued as 77\r\n");
	EXPECT(&cli, "250 2.0.0 Ok: queued as 77\r\n");
	assert_int_equal(ti.ended, 1);
	assert_int_equal(ti.bodylen, 14);
	assert_memory_equal(ti.body, "chunk1\r\nlast\r\n", 14);
}

static void
test_bdat_chunking_deny(void **state)
{
	insp_reset(INSPECT_DENY, "554 5.7.1 denied by test");
	start(&test_insp);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 6 LAST\r\nevil\r\n");
	EXPECT(&cli, "554 5.7.1 denied by test\r\n");
	expect_partial_eof(&srv, "BDAT 6\r\nevil\r\n");
}

static void
test_bdat_zero_last(void **state)
{
	start(NULL);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 4\r\nab\r\n");
	EXPECT(&srv, "BDAT 4\r\nab\r\n");
	SSEND("250 2.0.0 4 octets\r\n");
	EXPECT(&cli, "250 2.0.0 4 octets\r\n");
	CSEND("BDAT 0 LAST\r\n");
	EXPECT(&srv, "BDAT 0 LAST\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/*
 * The destination refuses the chunk of a "BDAT n LAST": the client gets one
 * reply for its one command (the refusal), and the reply to the "BDAT 0
 * LAST" smtpgw sent on its own is not passed on.
 */
static void
test_bdat_chunking_upstream_refuses(void **state)
{
	start(NULL);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 5 LAST\r\nhello");
	EXPECT(&srv, "BDAT 5\r\nhelloBDAT 0 LAST\r\n");
	SSEND("552 5.3.4 Too much mail data\r\n503 5.5.1 Error: earlier BDAT failed\r\n");
	EXPECT(&cli, "552 5.3.4 Too much mail data\r\n");
	CSEND("RSET\r\n");
	EXPECT(&srv, "RSET\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "250 2.0.0 Ok\r\n");
}

/*
 * The destination refuses a "BDAT n LAST" before the chunk is all in: the
 * client gets that one reply, and the rest of its chunk is skipped.
 */
static void
test_bdat_chunking_early_refusal(void **state)
{
	start(NULL);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 10 LAST\r\nhello");
	EXPECT(&srv, "BDAT 10\r\nhello");
	SSEND("552 5.3.4 Too much mail data\r\n");
	EXPECT(&cli, "552 5.3.4 Too much mail data\r\n");
	CSEND("world");
	expect_quiet(&cli, 20);
	CSEND("RSET\r\n");
	EXPECT(&srv, "RSET\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "250 2.0.0 Ok\r\n");
}

/* BDAT message content is held to the same rules as DATA (bare LF refused by default). */
static void
test_bdat_chunking_bare_lf(void **state)
{
	start(NULL);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 7 LAST\r\na\n.\nb\r\n");
	EXPECT(&cli, "554 5.6.0 Message contains bare CR or LF");
	/* none of the chunk, and never LAST, reaches the destination */
	expect_partial_eof(&srv, "BDAT 7\r\n");
}

/*
 * Under bare-newline normalization the destination receives CRLF lines
 * only, whether smtpgw relays the BDAT or converts it to DATA.
 */
static void
test_bdat_chunking_normalize(void **state)
{
	uint64_t end;
	bool go = false;

	conf.smtp.bare_newline_normalize = true;
	start(NULL);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 7 LAST\r\na\n.\nb\r\n");
	end = now_ms() + WAIT_MS;
	while (!received(&srv, "BDAT 0 LAST\r\n") && !received(&srv, "\r\n.\r\n") &&
	    now_ms() < end) {
		pump(1);
		if (received(&srv, "DATA\r\n") && !go) {
			SSEND("354 go ahead\r\n");
			go = true;
		}
	}
	for (size_t i = srv.mark; i < srv.len; i++)
		if (srv.buf[i] == '\n' && (i == 0 || srv.buf[i - 1] != '\r'))
			fail_msg("bare LF relayed: \"%s\"", esc(srv.buf + srv.mark, srv.len - srv.mark));
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

static void
test_bdat_convert(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	/* a line starting with '.', and a CRLF.CRLF inside the chunk */
	CSEND("BDAT 23 LAST\r\n.hidden\r\na\r\n.\r\nMAIL x\r\n");
	EXPECT(&srv, "DATA\r\n");
	expect_quiet(&srv, 20); /* nothing before the 354 */
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, "..hidden\r\na\r\n..\r\nMAIL x\r\n.\r\n");
	expect_quiet(&cli, 20);
	SSEND("250 2.0.0 Ok: queued as 99\r\n");
	EXPECT(&cli, "250 2.0.0 Ok: queued as 99\r\n");
	assert_int_equal(ti.ended, 1);
	assert_memory_equal(ti.body, ".hidden\r\na\r\n.\r\nMAIL x\r\n", ti.bodylen);
}

/* The same when BDAT LAST is converted to DATA and the DATA gets a 2xx. */
static void
test_bdat_convert_data_answered_2xx(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 3 LAST\r\nx\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "451 ");
	assert_false(received(&cli, "250 2.0.0 Ok\r\n"));
	assert_false(received(&srv, "x\r\n"));
}

static void
test_bdat_convert_chunks(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	/* a line split across chunks, a last chunk without CRLF */
	CSEND("BDAT 5\r\nab\r\nc");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&cli, "250 2.0.0 5 octets received\r\n");
	EXPECT(&srv, "ab\r\n");
	CSEND("BDAT 4\r\nd\r\n.");
	EXPECT(&cli, "250 2.0.0 4 octets received\r\n");
	CSEND("BDAT 3 LAST\r\nend");
	EXPECT(&srv, "cd\r\n..end\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

static void
test_bdat_convert_zero_first(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 0\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&cli, "250 2.0.0 0 octets received\r\n");
	CSEND("BDAT 3 LAST\r\nabc");
	EXPECT(&srv, "abc\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

static void
test_bdat_convert_zero_last(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 0 LAST\r\n");
	EXPECT(&srv, "DATA\r\n");
	/* the dot waits for the 354 */
	expect_quiet(&srv, 20);
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, ".\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/*
 * Between the chunks of a converted BDAT the destination is in DATA mode:
 * a command forwarded now would become message content the inspector
 * never saw.  Nothing but the chunks may reach it.
 */
static void
test_bdat_convert_command_between_chunks(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 7\r\nhello\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&cli, "250 2.0.0 7 octets received\r\n");
	EXPECT(&srv, "hello\r\n");
	CSEND("RCPT TO:<carol@example.org>\r\n");
	EXPECT(&cli, "503 ");
	settle(10);
	cli.mark = cli.len;
	CSEND("HELP injected line\r\n");
	/* neither reached the destination's message */
	expect_quiet(&srv, 20);
	/* whatever the client was told, the message that goes on is the inspected one */
	if (!cli.eof && !srv.eof && !received(&cli, "421")) {
		cli.mark = cli.len;
		CSEND("BDAT 5 LAST\r\nbye\r\n");
		EXPECT(&srv, "bye\r\n.\r\n");
		assert_memory_equal(ti.body, "hello\r\nbye\r\n", ti.bodylen);
	}
}

/* RSET between converted chunks: the destination never sees it as content, nor a dot. */
static void
test_bdat_convert_rset_between_chunks(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 7\r\nhello\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&cli, "250 2.0.0 7 octets received\r\n");
	EXPECT(&srv, "hello\r\n");
	CSEND("RSET\r\n");
	EXPECT(&cli, "2");
	expect_partial_eof(&srv, "");
}

/*
 * A converted chunk refused by the framer (a NUL in a line still open at
 * the chunk's end): the destination, in DATA mode, must be dropped -- left
 * open it would take the client's next commands as message lines.
 */
static void
test_bdat_convert_refused_chunk(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 6\r\nok\r\nx\0");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&cli, "554 5.6.0 Message contains NUL characters\r\n");
	CSEND("RSET\r\n");
	settle(20);
	expect_partial_eof(&srv, "ok\r\n");
}

/* The destination refuses the DATA that stands for a BDAT: the client gets the refusal. */
static void
test_bdat_convert_data_refused(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 5 LAST\r\nhello");
	EXPECT(&srv, "DATA\r\n");
	SSEND("554 5.5.1 Error: no valid recipients\r\n");
	EXPECT(&cli, "554 5.5.1 Error: no valid recipients\r\n");
	expect_quiet(&cli, 20);
	CSEND("RSET\r\n");
	EXPECT(&srv, "RSET\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "250 2.0.0 Ok\r\n");
}

static void
test_bdat_convert_upstream_lost(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 5 LAST\r\nhello");
	EXPECT(&srv, "DATA\r\n");
	close(srv.fd);
	srv.fd = -1;
	EXPECT(&cli, "451 4.4.2 ");
}

static void
test_bdat_bad_size(void **state)
{
	start(NULL);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 12x\r\nhello world\r\n");
	EXPECT(&cli, "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
	expect_eof(&cli);
	assert_false(received(&srv, "BDAT"));
	assert_false(received(&srv, "hello"));
}

/* A BDAT refused by state: its chunk is skipped as data, never run as commands. */
static void
test_bdat_out_of_state(void **state)
{
	start(NULL);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	CSEND("BDAT 21\r\nRCPT TO:<x@evil.ex>\r\n");
	EXPECT(&cli, "503 5.5.1 Error: need RCPT command\r\n");
	CSEND("NOOP\r\n");
	EXPECT(&srv, "NOOP\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "250 2.0.0 Ok\r\n");
	assert_false(received(&srv, "RCPT"));
}

/*
 * A BDAT refused before the transaction had a recipient leaves nothing
 * behind: the same transaction then goes on with DATA, and the client's
 * end of data gets the destination's answer.  (The refusal used to mark
 * the transaction's BDAT as failed: the DATA message's end was then
 * taken for a failed chunk's, never answered, and the session sat with
 * no timer, pinned by any client.)
 */
static void
test_bdat_refused_then_data(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	start(&test_insp);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	CSEND("MAIL FROM:<alice@example.com>\r\n");
	EXPECT(&srv, "MAIL FROM:<alice@example.com>\r\n");
	SSEND("250 2.1.0 Ok\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n");
	CSEND("BDAT 5 LAST\r\nabc\r\n");
	EXPECT(&cli, "503 5.5.1 Error: need RCPT command\r\n");
	CSEND("RCPT TO:<bob@example.org>\r\n");
	EXPECT(&srv, "RCPT TO:<bob@example.org>\r\n");
	SSEND("250 2.1.5 Ok\r\n");
	EXPECT(&cli, "250 2.1.5 Ok\r\n");
	data_go();
	CSEND("hello\r\n.\r\n");
	EXPECT(&srv, "hello\r\n.\r\n");
	SSEND("250 2.0.0 Ok: queued as 1\r\n");
	EXPECT(&cli, "250 2.0.0 Ok: queued as 1\r\n");
	/* and the same for a held message */
	ti.hold = true;
	CSEND("MAIL FROM:<alice@example.com>\r\n");
	EXPECT(&srv, "MAIL FROM:<alice@example.com>\r\n");
	SSEND("250 2.1.0 Ok\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n");
	CSEND("BDAT 5 LAST\r\nabc\r\n");
	EXPECT(&cli, "503 5.5.1 Error: need RCPT command\r\n");
	CSEND("RCPT TO:<bob@example.org>\r\n");
	EXPECT(&srv, "RCPT TO:<bob@example.org>\r\n");
	SSEND("250 2.1.5 Ok\r\n");
	EXPECT(&cli, "250 2.1.5 Ok\r\n");
	CSEND("DATA\r\n");
	EXPECT(&srv, "NOOP\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "354 ");
	cli.mark = cli.len;
	CSEND("held\r\n.\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, "held\r\n.\r\n");
	SSEND("250 2.0.0 Ok: queued as 2\r\n");
	EXPECT(&cli, "250 2.0.0 Ok: queued as 2\r\n");
}

/* ------------------------------------------------------ local refusals */

static void
test_vrfy_refused(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	CSEND("VRFY postmaster\r\n");
	EXPECT(&cli, "502 5.5.1 Error: VRFY command is disabled\r\n");
	CSEND("EXPN staff\r\n");
	EXPECT(&cli, "502 5.5.1 Error: EXPN command is disabled\r\n");
	expect_quiet(&srv, 20);
}

static void
test_unknown_command(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	CSEND("FOO bar\r\n");
	EXPECT(&cli, "500 5.5.2 Error: command not recognized\r\n");
	CSEND("X-FOO bar\r\n");
	EXPECT(&cli, "500 5.5.2 Syntax error: command unrecognized\r\n");
	CSEND("STARTTLS\r\n");
	EXPECT(&cli, "502 5.5.1 Error: STARTTLS not available\r\n");
	CSEND("NOOP\n");
	EXPECT(&cli, "500 5.5.2 Error: bare LF in command line\r\n");
	expect_quiet(&srv, 20);
}

static void
test_out_of_sequence(void **state)
{
	start(NULL);
	greet();
	CSEND("MAIL FROM:<a@example.com>\r\n");
	EXPECT(&cli, "503 5.5.1 Error: send HELO/EHLO first\r\n");
	CSEND("EHLO client.example\r\n");
	EXPECT(&srv, "EHLO client.example\r\n");
	SSEND(EHLO_PLAIN);
	EXPECT(&cli, EHLO_PLAIN_SHOWN);
	CSEND("RCPT TO:<b@example.org>\r\n");
	EXPECT(&cli, "503 5.5.1 Error: need MAIL command\r\n");
	CSEND("DATA\r\n");
	EXPECT(&cli, "503 5.5.1 Error: need RCPT command\r\n");
	expect_quiet(&srv, 20);
}

static void
test_param_not_advertised(void **state)
{
	start(NULL);
	/* no SIZE, no DSN upstream */
	ehlo("250-mx.example.com\r\n250 8BITMIME\r\n", "250-mx.example.com\r\n250-8BITMIME\r\n"
	    "250 CHUNKING\r\n");
	CSEND("MAIL FROM:<a@example.com> SIZE=100\r\n");
	EXPECT(&cli, "555 5.5.4 Unsupported MAIL parameter\r\n");
	CSEND("MAIL FROM:<a@example.com> FOO=bar\r\n");
	EXPECT(&cli, "555 5.5.4 Unsupported MAIL parameter\r\n");
	CSEND("MAIL FROM:<a@example.com> BODY=8BITMIME\r\n");
	EXPECT(&srv, "MAIL FROM:<a@example.com> BODY=8BITMIME\r\n");
	SSEND("250 2.1.0 Ok\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n");
	CSEND("RCPT TO:<b@example.org> NOTIFY=NEVER\r\n");
	EXPECT(&cli, "555 5.5.4 Unsupported RCPT parameter\r\n");
	CSEND("RCPT TO:<j\xc3\xb6rg@example.org>\r\n");
	EXPECT(&cli, "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
	expect_quiet(&srv, 20);
}

static void
test_too_many_recipients(void **state)
{
	conf.smtp.max_recipients = 2;
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	CSEND("MAIL FROM:<a@example.com>\r\nRCPT TO:<r1@example.org>\r\n"
	      "RCPT TO:<r2@example.org>\r\nRCPT TO:<r3@example.org>\r\n");
	EXPECT(&srv, "MAIL FROM:<a@example.com>\r\nRCPT TO:<r1@example.org>\r\n"
	      "RCPT TO:<r2@example.org>\r\n");
	SSEND("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
	      "452 4.5.3 Error: too many recipients\r\n");
	expect_quiet(&srv, 20);
}

static void
test_http_probe(void **state)
{
	start(NULL);
	greet();
	CSEND("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
	EXPECT(&cli, "500 5.5.1 Error: this is an SMTP server, not HTTP\r\n");
	expect_eof(&cli);
	assert_false(received(&srv, "GET"));
}

/* Canonical re-emission: odd spacing and case never reach the destination. */
static void
test_canonical_commands(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	CSEND("mail from: <@relay.example:alice@example.com> body=8bitmime size=10\r\n");
	EXPECT(&srv, "MAIL FROM:<alice@example.com> BODY=8bitmime SIZE=10\r\n");
	SSEND("250 Ok\r\n");
	EXPECT(&cli, "250 Ok\r\n");
	CSEND("rcpt to:<bob@example.org>\r\n");
	EXPECT(&srv, "RCPT TO:<bob@example.org>\r\n");
	SSEND("250\r\n");
	EXPECT(&cli, "250\r\n");
}

/* AUTH: relayed to the destination that offers it, the exchange line by line. */
static void
test_auth_exchange(void **state)
{
	start(NULL);
	ehlo("250-mx.example.com\r\n250 AUTH PLAIN LOGIN\r\n",
	    "250-mx.example.com\r\n250-CHUNKING\r\n250 AUTH PLAIN LOGIN\r\n");
	CSEND("AUTH LOGIN\r\n");
	EXPECT(&srv, "AUTH LOGIN\r\n");
	SSEND("334 VXNlcm5hbWU6\r\n");
	EXPECT(&cli, "334 VXNlcm5hbWU6\r\n");
	CSEND("dXNlcg==\r\n");
	EXPECT(&srv, "dXNlcg==\r\n");
	SSEND("334 UGFzc3dvcmQ6\r\n");
	EXPECT(&cli, "334 UGFzc3dvcmQ6\r\n");
	/* not base64: the exchange is cancelled upstream, never relayed as is */
	CSEND("MAIL FROM:<x@y.example>\r\n");
	EXPECT(&srv, "*\r\n");
	SSEND("501 5.7.0 Authentication aborted\r\n");
	EXPECT(&cli, "501 5.7.0 Authentication aborted\r\n");
	CSEND("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n");
	EXPECT(&srv, "AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n");
	SSEND("235 2.7.0 Authentication successful\r\n");
	EXPECT(&cli, "235 2.7.0 Authentication successful\r\n");
	CSEND("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n");
	EXPECT(&cli, "503 5.5.1 Error: already authenticated\r\n");
	expect_quiet(&srv, 20);
}

/* AUTH not offered (allow-auth = no): refused locally. */
static void
test_auth_disabled(void **state)
{
	conf.smtp.allow_auth = false;
	start(NULL);
	ehlo("250-mx.example.com\r\n250 AUTH PLAIN LOGIN\r\n",
	    "250-mx.example.com\r\n250 CHUNKING\r\n");
	CSEND("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n");
	EXPECT(&cli, "503 5.5.1 Error: authentication not enabled\r\n");
	expect_quiet(&srv, 20);
}

/* A client that half-closes after ".\r\nQUIT" still gets every reply it is owed. */
static void
test_half_close_after_quit(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("hello\r\n.\r\nQUIT\r\n");
	shutdown(cli.fd, SHUT_WR);
	EXPECT(&srv, "hello\r\n.\r\nQUIT\r\n");
	settle(20);
	SSEND("250 2.0.0 Ok: queued as 5\r\n221 2.0.0 Bye\r\n");
	EXPECT(&cli, "250 2.0.0 Ok: queued as 5\r\n221 2.0.0 Bye\r\n");
	expect_eof(&cli);
}

/* The destination shutting down between commands: its 421 is passed on, then the end. */
static void
test_upstream_unsolicited_421(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	SSEND("421 4.3.2 Service shutting down\r\n");
	EXPECT(&cli, "421 4.3.2 Service shutting down\r\n");
	expect_eof(&cli);
	expect_eof(&srv);
}

/* A 421 answering a pipelined command is the last reply: nothing after it is invented. */
static void
test_upstream_421_pipelined(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	CSEND("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
	EXPECT(&srv, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
	SSEND("250 2.1.0 Ok\r\n421 4.3.2 Service shutting down\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n421 4.3.2 Service shutting down\r\n");
	expect_eof(&cli);
}

/* SIZE above the limit is refused before anything goes upstream. */
static void
test_size_param(void **state)
{
	conf.smtp.max_message_size = 50000;
	start(NULL);
	/* the destination offers 100000: the client is shown our smaller limit */
	ehlo(EHLO_PLAIN, "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 50000\r\n"
	    "250-8BITMIME\r\n250 CHUNKING\r\n");
	CSEND("MAIL FROM:<a@example.com> SIZE=50001\r\n");
	EXPECT(&cli, "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	CSEND("MAIL FROM:<a@example.com> SIZE=12x\r\n");
	EXPECT(&cli, "501 5.5.4 Syntax error in SIZE parameter\r\n");
	expect_quiet(&srv, 20);
	CSEND("MAIL FROM:<a@example.com> SIZE=50000\r\n");
	EXPECT(&srv, "MAIL FROM:<a@example.com> SIZE=50000\r\n");
}

/* A reply that is not well-formed SMTP ends the session; the client gets 421. */
static void
test_upstream_garbage(void **state)
{
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	CSEND("NOOP\r\n");
	EXPECT(&srv, "NOOP\r\n");
	SSEND("HTTP/1.1 200 OK\r\n");
	EXPECT(&cli, "421 4.4.2 Error: connection to destination lost, try again later\r\n");
	expect_eof(&cli);
}

/* ------------------------------------------------------- robustness */

/*
 * More locally answered commands than the pipelining depth in one write
 * (an unauthenticated client can do this right after the greeting): every
 * one is answered, in order, and the session goes on.  The engine once
 * froze at the pending-reply cap with nothing left to wake it.
 */
static void
test_pipelined_local_flood(void **state)
{
	char *flood, *want;
	size_t n = 300, one = strlen("RCPT TO:<x@example.org>\r\n");
	const char *r = "503 5.5.1 Error: need MAIL command\r\n";

	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	flood = malloc(n * one + 1);
	want = malloc(n * strlen(r) + 1);
	assert_non_null(flood);
	assert_non_null(want);
	for (size_t i = 0; i < n; i++) {
		memcpy(flood + i * one, "RCPT TO:<x@example.org>\r\n", one);
		memcpy(want + i * strlen(r), r, strlen(r));
	}
	send_all(&cli, flood, n * one);
	expect(&cli, want, n * strlen(r));
	free(flood);
	free(want);
	CSEND("QUIT\r\n");
	EXPECT(&srv, "QUIT\r\n");
	SSEND("221 2.0.0 Bye\r\n");
	EXPECT(&cli, "221 2.0.0 Bye\r\n");
	expect_eof(&cli);
}

/* The same flood, then the client closes: the session ends. */
static void
test_pipelined_local_flood_then_close(void **state)
{
	size_t n = 600, one = strlen("XYZZY\r\n");
	char *flood = malloc(n * one);

	start(NULL);
	greet();
	assert_non_null(flood);
	for (size_t i = 0; i < n; i++)
		memcpy(flood + i * one, "XYZZY\r\n", one);
	send_all(&cli, flood, n * one);
	free(flood);
	shutdown(cli.fd, SHUT_WR);
	expect_eof(&srv);
	assert_int_equal(session_count(), 0);
}

static void
long_b64(char *out, size_t n)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i++)
		out[i] = b64[(i * 7 + i / 64) % 64];
	out[n] = '\0';
}

/*
 * RFC 4954 4: an AUTH line with its initial response, and each SASL
 * response, may be up to 12288 octets (GSSAPI, OAuth tokens).  They are
 * relayed byte for byte; a longer one is refused as a long line.
 */
static void
test_auth_long_lines(void **state)
{
	static char tok[12288], line[12400];
	size_t n;

	start(NULL);
	ehlo("250-mx.example.com\r\n250-PIPELINING\r\n250 AUTH PLAIN XOAUTH2\r\n",
	    "250-mx.example.com\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 AUTH PLAIN XOAUTH2\r\n");
	/* "AUTH XOAUTH2 " + token + CRLF = 12288 octets */
	long_b64(tok, 12288 - 13 - 2);
	n = (size_t)snprintf(line, sizeof(line), "AUTH XOAUTH2 %s\r\n", tok);
	assert_int_equal(n, 12288);
	send_all(&cli, line, n);
	expect(&srv, line, n);
	SSEND("334 \r\n");
	EXPECT(&cli, "334\r\n"); /* re-emitted canonically */
	long_b64(tok, 12286);
	n = (size_t)snprintf(line, sizeof(line), "%s\r\n", tok);
	send_all(&cli, line, n);
	expect(&srv, line, n);
	SSEND("235 2.7.0 Authentication successful\r\n");
	EXPECT(&cli, "235 2.7.0 Authentication successful\r\n");
	/* other commands keep the general limit */
	memset(line, 'a', 3000);
	memcpy(line, "NOOP ", 5);
	memcpy(line + 3000, "\r\n", 2);
	send_all(&cli, line, 3002);
	EXPECT(&cli, "500 5.5.2 Error: line too long\r\n");
	expect_eof(&cli);
	expect_quiet(&srv, 10);
}

/* An AUTH line over 12288 octets is refused, never relayed. */
static void
test_auth_too_long(void **state)
{
	static char tok[13000], line[13100];
	size_t n;

	start(NULL);
	ehlo("250-mx.example.com\r\n250 AUTH PLAIN\r\n",
	    "250-mx.example.com\r\n250-CHUNKING\r\n250 AUTH PLAIN\r\n");
	long_b64(tok, 12288);
	n = (size_t)snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", tok);
	send_all(&cli, line, n);
	EXPECT(&cli, "500 5.5.2 Error: line too long\r\n");
	expect_eof(&cli);
	expect_quiet(&srv, 10);
	assert_false(received(&srv, "AUTH"));
}

/* ------------------------------------------------- asynchronous verdicts */

/*
 * The verdict comes 100 ms after the dot: the client's reply waits, and
 * so does the MAIL it pipelined behind its dot -- it reaches the
 * destination only after the dot it must follow.
 */
static void
test_async_allow(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.delay_ms = 100;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("Subject: a\r\n\r\nbody\r\n.\r\nMAIL FROM:<carol@example.com>\r\n");
	EXPECT(&srv, "Subject: a\r\n\r\nbody\r\n");
	expect_quiet(&srv, 50);
	expect_quiet(&cli, 0);
	assert_int_equal(ti.ended, 0);
	EXPECT(&srv, ".\r\nMAIL FROM:<carol@example.com>\r\n");
	assert_int_equal(ti.ended, 1);
	SSEND("250 2.0.0 queued\r\n250 2.1.0 Ok\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n250 2.1.0 Ok\r\n");
	assert_int_equal(ti.aborted, 0);
}

static void
test_async_deny(void **state)
{
	insp_reset(INSPECT_DENY, "554 5.7.1 denied by test");
	ti.delay_ms = 50;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("Subject: bad\r\n\r\nevil\r\n.\r\n");
	expect_quiet(&cli, 20);
	EXPECT(&cli, "554 5.7.1 denied by test\r\n");
	/* never the dot: the streamed message is discarded with its connection */
	expect_partial_eof(&srv, "Subject: bad\r\n\r\nevil\r\n");
	assert_int_equal(ti.ended, 1);
}

/*
 * The destination refuses a "BDAT n LAST" chunk while the verdict is
 * awaited: the client gets that one reply, and once the verdict comes
 * nothing more of the message goes upstream (no "BDAT 0 LAST").
 */
static void
test_async_bdat_refused_meanwhile(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.delay_ms = 100;
	start(&test_insp);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 5 LAST\r\nhello");
	EXPECT(&srv, "BDAT 5\r\nhello");
	SSEND("552 5.3.4 Too much mail data\r\n");
	EXPECT(&cli, "552 5.3.4 Too much mail data\r\n");
	settle(200);
	assert_int_equal(ti.ended, 1);
	expect_quiet(&srv, 10);
	expect_quiet(&cli, 10);
	CSEND("RSET\r\n");
	EXPECT(&srv, "RSET\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "250 2.0.0 Ok\r\n");
}

/* No verdict within inspect-timeout: tempfail (the default), the inspection cancelled. */
static void
test_async_timeout_tempfail(void **state)
{
	uint64_t t0;

	insp_reset(INSPECT_ALLOW, NULL);
	ti.delay_ms = -1;
	conf.smtp.t_inspect = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("x\r\n.\r\n");
	t0 = now_ms();
	EXPECT(&cli, "451 4.7.1 Message not delivered: content inspection did not complete, "
	    "try again later\r\n");
	assert_true(now_ms() - t0 >= 900);
	expect_partial_eof(&srv, "x\r\n");
	assert_int_equal(ti.aborted, 1);
	assert_int_equal(ti.ended, 0);
}

/* inspect-timeout-action = allow: delivered uninspected. */
static void
test_async_timeout_allow(void **state)
{
	insp_reset(INSPECT_DENY, "554 5.7.1 too late to matter");
	ti.delay_ms = -1;
	conf.smtp.t_inspect = 1;
	conf.smtp.on_inspect_timeout = INSPECT_TIMEOUT_ALLOW;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("x\r\n.\r\n");
	EXPECT(&srv, "x\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
	assert_int_equal(ti.aborted, 1);
}

/* The destination goes away while the verdict is outstanding: cancelled, the client told. */
static void
test_async_upstream_gone(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.delay_ms = 200;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("x\r\n.\r\n");
	EXPECT(&srv, "x\r\n");
	close(srv.fd);
	srv.fd = -1;
	EXPECT(&cli, "451 4.4.2 Error: transaction aborted\r\n"
	    "421 4.4.2 Error: connection to destination lost, try again later\r\n");
	expect_eof(&cli);
	assert_int_equal(ti.aborted, 1);
	settle(300); /* the verdict's timer was cancelled with the transaction */
	assert_int_equal(ti.ended, 0);
}

/*
 * The session is torn down (worker shutdown) with the verdict
 * outstanding: the engine is freed, the inspection was cancelled first,
 * and its timer never fires into freed memory (ASan would say so).
 */
static void
test_async_session_killed(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.delay_ms = 100;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("x\r\n.\r\n");
	EXPECT(&srv, "x\r\n");
	session_close_all("test");
	session_reap();
	assert_int_equal(session_count(), 0);
	assert_int_equal(ti.aborted, 1);
	assert_null(ti.live);
	settle(200);
	assert_int_equal(ti.ended, 0);
}

/*
 * The inspector asks for a pause mid-message for longer than
 * timeout-client-data: the client is not timed out for smtpgw's
 * slowness, and the message goes through once the inspector resumes.
 */
static void
test_body_busy_resume(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.busy_after = 10;
	ti.resume_ms = 1500;
	conf.smtp.t_client_data = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("Subject: slow scanner\r\n\r\nline 1\r\nline 2\r\n.\r\n");
	settle(1200);
	assert_int_equal(ti.busy, 1);
	assert_int_equal(ti.resumed, 0);
	assert_false(received(&cli, "421"));
	assert_false(received(&srv, ".\r\n"));
	EXPECT(&srv, "Subject: slow scanner\r\n\r\nline 1\r\nline 2\r\n.\r\n");
	assert_int_equal(ti.resumed, 1);
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/* A pause that never ends is bounded too: the rest is read, the end is tempfailed. */
static void
test_body_busy_timeout(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.busy_after = 1;
	ti.resume_ms = -1;
	conf.smtp.t_inspect = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("Subject: stuck\r\n\r\nbody\r\n.\r\n");
	EXPECT(&cli, "451 4.7.1 ");
	expect_partial_eof(&srv, "Subject: stuck\r\n\r\nbody\r\n");
	assert_int_equal(ti.aborted, 1);
}

/* ------------------------------------------------------- held messages */

#define R354 "354 End data with <CR><LF>.<CR><LF>\r\n"
#define R_TIMEOUT_LINE "421 4.4.2 Error: timeout exceeded, closing connection\r\n"

/* Held: a NOOP in DATA's place, nothing of the message before the verdict. */
static void
held_data_go(void)
{
	CSEND("DATA\r\n");
	EXPECT(&srv, "NOOP\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, R354);
}

static void
test_hold_allow(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	ti.delay_ms = 50;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("Subject: held\r\n\r\n..leading dot\r\nbody\r\n.\r\n");
	expect_quiet(&srv, 20);
	EXPECT(&srv, "DATA\r\n");
	expect_quiet(&cli, 10);
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, "Subject: held\r\n\r\n..leading dot\r\nbody\r\n.\r\n");
	expect_quiet(&cli, 10);
	SSEND("250 2.0.0 Ok: queued as H1\r\n");
	EXPECT(&cli, "250 2.0.0 Ok: queued as H1\r\n");
	assert_memory_equal(ti.body, "Subject: held\r\n\r\n.leading dot\r\nbody\r\n", ti.bodylen);
}

/*
 * A destination idle while we hold a message (a slow verdict) gets a
 * NOOP every fifth of timeout-server-command; the client sees none of it.
 */
static void
test_hold_keepalive(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	ti.delay_ms = 700;
	conf.smtp.t_server_command = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("x\r\n.\r\n");
	/* a NOOP every 200 ms until the verdict, each answered */
	int noops = 0;
	uint64_t end = now_ms() + WAIT_MS;
	while (!received(&srv, "DATA\r\n") && now_ms() < end) {
		pump(1);
		if (srv.len - srv.mark >= 6 && memcmp(srv.buf + srv.mark, "NOOP\r\n", 6) == 0) {
			srv.mark += 6;
			noops++;
			SSEND("250 2.0.0 Ok\r\n");
		}
	}
	assert_true(noops >= 2);
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, "x\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
	expect_quiet(&cli, 10);
}

/*
 * A client that half-closes right after the end of a held message (no
 * QUIT) while the verdict is still awaited: it still gets the
 * destination's answer, and then the session ends -- the close it sent
 * is not forgotten when the held copy's release moves the engine on.
 */
static void
test_hold_half_close_during_verdict(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	ti.delay_ms = 100;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("x\r\n.\r\n");
	shutdown(cli.fd, SHUT_WR);
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, "x\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
	expect_eof(&cli);
}

/* The same with a streamed message. */
static void
test_async_half_close_during_verdict(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.delay_ms = 100;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("x\r\n.\r\n");
	shutdown(cli.fd, SHUT_WR);
	EXPECT(&srv, "x\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
	expect_eof(&cli);
}

/*
 * The destination answers a keepalive NOOP with 421 (it is shutting
 * down) while the client is still sending the held message: the 421 was
 * the engine's own command's, dropped, and the session was closed under
 * the client in the middle of its message without a word.  Now the
 * upstream is lost like any other: the client finishes its message and
 * is told it was not delivered, then 421 to what follows.
 */
static void
test_hold_keepalive_421_mid_data(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	conf.smtp.t_server_command = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("Subject: slow\r\n\r\nfirst line\r\n");
	EXPECT(&srv, "NOOP\r\n");
	SSEND("421 4.3.2 Service shutting down\r\n");
	close(srv.fd);
	srv.fd = -1;
	settle(20);
	CSEND("last line\r\n.\r\n");
	EXPECT(&cli, "451 4.4.2 Error: connection to destination lost, message not delivered\r\n");
	CSEND("MAIL FROM:<alice@example.com>\r\n");
	EXPECT(&cli, "421 4.4.2 ");
	settle(20);
	cli.mark = cli.len;
	expect_eof(&cli);
	assert_int_equal(ti.aborted, 1);
}

/*
 * A destination that answers the DATA carrying a held message with a 2xx
 * instead of 354 never got the message: that 2xx must not become the
 * client's answer to its end of data (it was, and the client dropped a
 * message nobody had).
 */
static void
test_hold_data_answered_2xx(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("x\r\n.\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "451 ");
	assert_false(received(&cli, "250 2.0.0 Ok\r\n"));
	assert_false(received(&srv, "x\r\n"));
}

/*
 * The destination answers every keepalive NOOP; the client is the one
 * that went silent.  Each NOOP reply used to restart the client's timer
 * (smtp_process_client -> smtp_client_timer), so the keepalive kept a
 * silent client's session -- and the destination's connection -- alive
 * forever: inbound every message is held, so any client could.  Until
 * now the test answers NOOPs, and returns what the client got by then.
 */
static bool
answer_noops_until_client_got(const char *needle, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end && !received(&cli, needle)) {
		pump(1);
		if (srv.len - srv.mark >= 6 && memcmp(srv.buf + srv.mark, "NOOP\r\n", 6) == 0) {
			srv.mark += 6;
			/* the session may be closing meanwhile: no send_all() */
			(void)!send(srv.fd, "250 2.0.0 Ok\r\n", 14, MSG_NOSIGNAL);
		}
	}
	return received(&cli, needle);
}

/* ... in the middle of a held message (timeout-client-data). */
static void
test_hold_client_silent_mid_data(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	conf.smtp.t_server_command = 1; /* a NOOP every 200 ms */
	conf.smtp.t_client_data = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("Subject: and then nothing\r\n");
	assert_true(answer_noops_until_client_got(R_TIMEOUT_LINE, 2500));
	expect_partial_eof(&cli, R_TIMEOUT_LINE);
	assert_false(received(&srv, "DATA"));
}

/* ... between the chunks of a held BDAT message (timeout-client-command). */
static void
test_hold_client_silent_between_chunks(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	conf.smtp.t_server_command = 1;
	conf.smtp.t_client_command = 1;
	conf.smtp.t_client_data = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 5\r\nabc\r\n");
	EXPECT(&srv, "NOOP\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "250 2.0.0 5 octets received\r\n");
	assert_true(answer_noops_until_client_got(R_TIMEOUT_LINE, 2500));
	expect_partial_eof(&cli, R_TIMEOUT_LINE);
	assert_false(received(&srv, "DATA"));
}

/*
 * ... after a held DATA found no recipient (the NOOP's reply): that hold
 * is over, no keepalive runs on, and a silent client is cut off.
 */
static void
test_hold_refused_client_silent(void **state)
{
	conf.smtp.hold = HOLD_ALWAYS;
	conf.smtp.t_server_command = 1;
	conf.smtp.t_client_command = 1;
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	CSEND("MAIL FROM:<alice@example.com>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n");
	EXPECT(&srv, "MAIL FROM:<alice@example.com>\r\nRCPT TO:<nobody@example.org>\r\nNOOP\r\n");
	SSEND("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n250 2.0.0 Ok\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n"
	    "554 5.5.1 Error: no valid recipients\r\n");
	assert_true(answer_noops_until_client_got(R_TIMEOUT_LINE, 2500));
	expect_partial_eof(&cli, R_TIMEOUT_LINE);
	/* nothing held any more: no keepalive after the refusal */
	assert_false(received(&srv, "NOOP\r\nNOOP"));
}

/* hold = always holds without the inspector asking. */
static void
test_hold_always(void **state)
{
	conf.smtp.hold = HOLD_ALWAYS;
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("x\r\n.\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, "x\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/* The NOOP's reply comes after the RCPT replies: no recipient, no 354. */
static void
test_hold_no_recipient(void **state)
{
	conf.smtp.hold = HOLD_ALWAYS;
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	CSEND("MAIL FROM:<alice@example.com>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n");
	EXPECT(&srv, "MAIL FROM:<alice@example.com>\r\nRCPT TO:<nobody@example.org>\r\nNOOP\r\n");
	SSEND("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n250 2.0.0 Ok\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n"
	    "554 5.5.1 Error: no valid recipients\r\n");
	CSEND("RSET\r\n");
	EXPECT(&srv, "RSET\r\n");
}

/*
 * A held message denied: the destination never sees DATA, an RSET
 * discards its transaction, and the same connection carries the next one.
 */
static void
test_hold_deny_keeps_session(void **state)
{
	insp_reset(INSPECT_DENY, "554 5.7.1 denied by test");
	ti.hold = true;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("Subject: bad\r\n\r\nevil\r\n.\r\n");
	EXPECT(&cli, "554 5.7.1 denied by test\r\n");
	EXPECT(&srv, "RSET\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	expect_quiet(&cli, 20);
	assert_false(received(&srv, "evil"));
	/* the next transaction, same destination connection */
	ti.verdict = INSPECT_ALLOW;
	envelope();
	held_data_go();
	CSEND("Subject: good\r\n\r\nfine\r\n.\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, "Subject: good\r\n\r\nfine\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/* The message framer's refusals discard a held message the same way. */
static void
test_hold_refused_line(void **state)
{
	conf.smtp.hold = HOLD_ALWAYS;
	start(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("bare\nlf\r\n.\r\n");
	EXPECT(&cli, "554 5.6.0 ");
	EXPECT(&srv, "RSET\r\n");
	assert_false(received(&srv, "DATA"));
}

static char spool[] = "/tmp/test_session.XXXXXX";

static int
spool_entries(void)
{
	DIR *d = opendir(spool);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Descriptors of this process open on files in the spool directory (they have no name). */
static int
spool_open_files(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char link[300], target[PATH_MAX];
		ssize_t len;

		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (strncmp(target, spool, strlen(spool)) == 0 && target[strlen(spool)] == '/')
			n++;
	}
	closedir(d);
	return n;
}

/*
 * A message larger than hold-memory: spooled (an open file without a
 * name), delivered byte-exact and dot-stuffed, nothing left afterwards.
 */
static void
test_hold_spool_byte_exact(void **state)
{
	size_t cap = 300 * 1024, n = 0, sn = 0;
	char *msg = malloc(cap), *stuffed = malloc(cap * 2);

	assert_non_null(msg);
	assert_non_null(stuffed);
	if (spool[sizeof(spool) - 2] == 'X')
		assert_non_null(mkdtemp(spool));
	snprintf(conf.spool_dir, sizeof(conf.spool_dir), "%s", spool);
	conf.smtp.hold_memory = 4096;
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	ti.delay_ms = 200;
	for (int i = 0; n + 200 < cap; i++) {
		char line[120];
		int k = snprintf(line, sizeof(line), "%s%06d %.*s\r\n", i % 7 == 0 ? "." : "L", i,
		    i % 80, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		    "abcdefghijklmnopqrstuvwxyz");
		memcpy(msg + n, line, (size_t)k);
		n += (size_t)k;
	}
	/* on the wire both ways: dot-stuffed */
	for (size_t i = 0; i < n; i++) {
		if (msg[i] == '.' && (i == 0 || msg[i - 1] == '\n'))
			stuffed[sn++] = '.';
		stuffed[sn++] = msg[i];
	}
	memcpy(stuffed + sn, ".\r\n", 3);
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	send_all(&cli, stuffed, sn + 3);
	/* in, waiting for its verdict: in the spool, which shows no name */
	uint64_t end = now_ms() + WAIT_MS;
	while (ti.bodytotal < n && now_ms() < end)
		pump(1);
	assert_int_equal(ti.bodytotal, n);
	assert_int_equal(spool_open_files(), 1);
	assert_int_equal(spool_entries(), 0);
	assert_false(received(&srv, "DATA"));
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	expect(&srv, stuffed, sn + 3);
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
	assert_int_equal(spool_open_files(), 0);
	assert_int_equal(spool_entries(), 0);
	free(msg);
	free(stuffed);
}

/*
 * A client half-closes after the end of a held message larger than the
 * upstream's output buffer: the release pauses for room, and while it
 * did (no reply owed: our own DATA's 354 was answered silently), the
 * closing session was finished -- the upstream closed mid-message, the
 * client never got its answer.  It must get the destination's answer.
 */
static void
test_hold_half_close_during_large_release(void **state)
{
	size_t cap = 1024 * 1024, n = 0;
	char *msg = malloc(cap + 8);

	assert_non_null(msg);
	if (spool[sizeof(spool) - 2] == 'X')
		assert_non_null(mkdtemp(spool));
	snprintf(conf.spool_dir, sizeof(conf.spool_dir), "%s", spool);
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	ti.delay_ms = 100;
	while (n + 802 < cap) {
		memset(msg + n, 'a' + (int)(n / 802 % 26), 800);
		memcpy(msg + n + 800, "\r\n", 2);
		n += 802;
	}
	memcpy(msg + n, ".\r\n", 3);
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	send_all(&cli, msg, n + 3);
	shutdown(cli.fd, SHUT_WR);
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	expect(&srv, msg, n + 3);
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
	expect_eof(&cli);
	free(msg);
}

/* The inspector's edits, applied on the way out (and dot-stuffed). */
static void
test_hold_edits(void **state)
{
	const char *m = "From: a@example.com\r\nSubject: offer\r\n\r\nline 1\r\nline 2\r\n";
	size_t subj = strlen("From: a@example.com\r\n");

	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	ti.edits[0].off = 0, ti.edits[0].len = 0, ti.edits[0].text = "X-Scanned: test\r\n";
	ti.edits[1].off = subj, ti.edits[1].len = strlen("Subject: offer\r\n");
	ti.edits[1].text = "Subject: [tagged] offer\r\n";
	ti.edits[2].off = strstr(m, "line 2") - m, ti.edits[2].len = strlen("line 2\r\n");
	ti.edits[2].text = ".stripped\r\n";
	ti.nedits = 3;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	send_all(&cli, m, strlen(m));
	CSEND(".\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, "X-Scanned: test\r\nFrom: a@example.com\r\nSubject: [tagged] offer\r\n\r\n"
	    "line 1\r\n..stripped\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/* Edits that break the rules of inspect.h: never applied, a tempfail instead. */
static void
test_hold_bad_edits(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	ti.edits[0].off = 3, ti.edits[0].len = 0, ti.edits[0].text = "X: y\r\n";
	ti.nedits = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	CSEND("Subject: x\r\n\r\nbody\r\n.\r\n");
	EXPECT(&cli, "451 4.3.0 Error: content inspection failed, try again later\r\n");
	EXPECT(&srv, "RSET\r\n");
}

/* Edits of a message that was streamed (not held) cannot be applied: tempfail. */
static void
test_edits_not_held(void **state)
{
	insp_reset(INSPECT_ALLOW, NULL);
	ti.edits[0].off = 0, ti.edits[0].len = 0, ti.edits[0].text = "X: y\r\n";
	ti.nedits = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("Subject: x\r\n\r\nbody\r\n.\r\n");
	EXPECT(&cli, "451 4.3.0 Error: content inspection failed, try again later\r\n");
	expect_partial_eof(&srv, "Subject: x\r\n\r\nbody\r\n");
}

/* A DKIM-signed message (signed here with a key made here). */
static char *
dkim_signed(const char *msg)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	DKIM_LIB *lib = dkim_init(NULL, NULL);
	DKIM_STAT st;
	DKIM *d;
	unsigned char hdr[4096];
	char *pem, *p, *out;
	long n;

	assert_non_null(k);
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(b, &p);
	pem = strndup(p, (size_t)n);
	d = dkim_sign(lib, (const unsigned char *)"t", NULL, (unsigned char *)pem,
	    (const unsigned char *)"sel", (const unsigned char *)"example.com",
	    DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, DKIM_SIGN_RSASHA256, -1, &st);
	assert_non_null(d);
	assert_int_equal(dkim_chunk(d, (unsigned char *)(uintptr_t)msg, strlen(msg)), 0);
	assert_int_equal(dkim_chunk(d, NULL, 0), 0);
	assert_int_equal(dkim_eom(d, NULL), 0);
	assert_int_equal(dkim_getsighdr(d, hdr, sizeof(hdr), strlen("DKIM-Signature: ")), 0);
	assert_true(asprintf(&out, "DKIM-Signature: %s\r\n%s", (char *)hdr, msg) > 0);
	dkim_free(d);
	dkim_close(lib);
	free(pem);
	BIO_free(b);
	EVP_PKEY_free(k);
	return out;
}

#define SIGNED_MSG "From: a@example.com\r\nTo: b@example.org\r\nSubject: report\r\n\r\n" \
	"the report\r\nattachment\r\n"

/* One held, signed message with one edit; returns nothing, leaves the session after it. */
static void
dkim_case(const char *find, size_t len, const char *text, bool expect_delivery)
{
	char *m = dkim_signed(SIGNED_MSG);
	const char *at = strstr(m, find);

	assert_non_null(at);
	insp_reset(INSPECT_ALLOW, NULL);
	ti.hold = true;
	ti.edits[0].off = (uint64_t)(at - m), ti.edits[0].len = len, ti.edits[0].text = text;
	ti.nedits = 1;
	start(&test_insp);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	held_data_go();
	send_all(&cli, m, strlen(m));
	CSEND(".\r\n");
	if (expect_delivery) {
		EXPECT(&srv, "DATA\r\n");
		SSEND("354 go ahead\r\n");
		EXPECT(&srv, "DKIM-Signature: ");
		settle(50);
		assert_true(received(&srv, text));
		SSEND("250 2.0.0 queued\r\n");
		EXPECT(&cli, "250 2.0.0 queued\r\n");
	} else {
		EXPECT(&cli, "554 5.7.1 Message rejected: a content policy change would break its "
		    "DKIM signature\r\n");
		EXPECT(&srv, "RSET\r\n");
		assert_false(received(&srv, "DATA"));
	}
	free(m);
}

/* Stripping signed content: denied by default (dkim-protect = deny). */
static void
test_hold_dkim_deny(void **state)
{
	dkim_case("attachment\r\n", strlen("attachment\r\n"), "[removed]\r\n", false);
}

/* dkim-protect = change-anyway: changed and delivered. */
static void
test_hold_dkim_change_anyway(void **state)
{
	conf.smtp.dkim_protect = DKIM_PROTECT_CHANGE;
	dkim_case("attachment\r\n", strlen("attachment\r\n"), "[removed]\r\n", true);
}

/* A header the signature does not cover: delivered, signature intact. */
static void
test_hold_dkim_unsigned_header(void **state)
{
	dkim_case("From: ", 0, "X-Scanned: clean\r\n", true);
}

/* Held BDAT: a NOOP holds the first chunk's place, the message goes up as DATA. */
static void
test_hold_bdat(void **state)
{
	conf.smtp.hold = HOLD_ALWAYS;
	start(NULL);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 9\r\n.chunk1\r\n");
	EXPECT(&srv, "NOOP\r\n");
	SSEND("250 2.0.0 Ok\r\n");
	EXPECT(&cli, "250 2.0.0 9 octets received\r\n");
	CSEND("BDAT 6 LAST\r\nlast\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&srv, "..chunk1\r\nlast\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/* ----------------------------------------------- reconnect after a deny */

static void
reconnect_greet(const char *ehlo_reply)
{
	srv_accept();
	SSEND("220 mx2.example.com ESMTP\r\n");
	EXPECT(&srv, "EHLO client.example\r\n");
	send_all(&srv, ehlo_reply, strlen(ehlo_reply));
}

/*
 * A streamed message refused at its end (bare LF): 554, the upstream
 * closed without a dot, a new connection greeted and EHLOed with the
 * client's name -- and the MAIL the client pipelined behind its dot goes
 * to the new one.  The client sees none of it.
 */
static void
test_relink_after_refusal(void **state)
{
	start_tcp(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("Subject: x\r\n\r\nbare\nlf\r\n.\r\nMAIL FROM:<carol@example.com>\r\n");
	EXPECT(&cli, "554 5.6.0 ");
	cli.mark = cli.len;
	expect_partial_eof(&srv, "Subject: x\r\n\r\n");
	reconnect_greet(EHLO_PLAIN);
	EXPECT(&srv, "MAIL FROM:<carol@example.com>\r\n");
	expect_quiet(&cli, 10);
	SSEND("250 2.1.0 Ok\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n");
	CSEND("RCPT TO:<bob@example.org>\r\n");
	EXPECT(&srv, "RCPT TO:<bob@example.org>\r\n");
	SSEND("250 2.1.5 Ok\r\n");
	EXPECT(&cli, "250 2.1.5 Ok\r\n");
	data_go();
	CSEND("good\r\n.\r\n");
	EXPECT(&srv, "good\r\n.\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/* An inspector's deny (later, BDAT to a CHUNKING destination) does the same. */
static void
test_relink_after_bdat_deny(void **state)
{
	insp_reset(INSPECT_DENY, "554 5.7.1 denied by test");
	ti.delay_ms = 30;
	start_tcp(&test_insp);
	ehlo(EHLO_CHUNK, EHLO_CHUNK_SHOWN);
	envelope();
	CSEND("BDAT 6 LAST\r\nevil\r\n");
	EXPECT(&cli, "554 5.7.1 denied by test\r\n");
	expect_partial_eof(&srv, "BDAT 6\r\nevil\r\n");
	assert_false(received(&srv, "LAST"));
	reconnect_greet(EHLO_CHUNK);
	ti.verdict = INSPECT_ALLOW;
	envelope();
	CSEND("BDAT 6 LAST\r\ngood\r\n");
	EXPECT(&srv, "BDAT 6\r\ngood\r\n");
	SSEND("250 2.0.0 6 octets\r\n");
	EXPECT(&srv, "BDAT 0 LAST\r\n");
	SSEND("250 2.0.0 queued\r\n");
	EXPECT(&cli, "250 2.0.0 queued\r\n");
}

/* RSET between converted BDAT chunks: the destination in DATA mode is dropped, and replaced. */
static void
test_relink_after_rset_between_chunks(void **state)
{
	start_tcp(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	CSEND("BDAT 7\r\nhello\r\n");
	EXPECT(&srv, "DATA\r\n");
	SSEND("354 go ahead\r\n");
	EXPECT(&cli, "250 2.0.0 7 octets received\r\n");
	EXPECT(&srv, "hello\r\n");
	CSEND("RSET\r\nMAIL FROM:<alice@example.com>\r\n");
	EXPECT(&cli, "250 2.0.0 Ok\r\n");
	expect_partial_eof(&srv, "");
	reconnect_greet(EHLO_PLAIN);
	EXPECT(&srv, "MAIL FROM:<alice@example.com>\r\n");
	SSEND("250 2.1.0 Ok\r\n");
	EXPECT(&cli, "250 2.1.0 Ok\r\n");
}

/* The new connection offers less than the client was shown: MAIL waits (4xx). */
static void
test_relink_caps_changed(void **state)
{
	start_tcp(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("bare\nlf\r\n.\r\n");
	EXPECT(&cli, "554 5.6.0 ");
	cli.mark = cli.len;
	reconnect_greet("250-mx2.example.com\r\n250 PIPELINING\r\n");
	CSEND("MAIL FROM:<alice@example.com>\r\n");
	EXPECT(&cli, "451 4.3.0 Error: the destination's capabilities changed after a "
	    "reconnection, try again later\r\n");
	CSEND("QUIT\r\n");
	EXPECT(&srv, "QUIT\r\n");
	assert_false(received(&srv, "MAIL"));
}

/* The new connection fails: the session has no destination any more, 421. */
static void
test_relink_fails(void **state)
{
	start_tcp(NULL);
	ehlo(EHLO_PLAIN, EHLO_PLAIN_SHOWN);
	envelope();
	data_go();
	CSEND("bare\nlf\r\n.\r\n");
	EXPECT(&cli, "554 5.6.0 ");
	cli.mark = cli.len;
	srv_accept();
	SSEND("554 5.3.2 go away\r\n");
	CSEND("MAIL FROM:<alice@example.com>\r\n");
	EXPECT(&cli, "421 4.4.2 Error: connection to destination closed, try again later\r\n");
	expect_eof(&cli);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_greeting),
		T(test_pipelined_local_flood),
		T(test_pipelined_local_flood_then_close),
		T(test_auth_long_lines),
		T(test_auth_too_long),
		T(test_greeting_multiline),
		T(test_greeting_554),
		T(test_greeting_421),
		T(test_greeting_malformed),
		T(test_talk_before_greeting),
		T(test_ehlo_mediation),
		T(test_ehlo_refused_upstream),
		T(test_transaction),
		T(test_transaction_rejected_upstream),
		T(test_pipelined),
		T(test_data_before_354),
		T(test_inspector_deny),
		T(test_inspector_tempfail_bad_reply),
		T(test_inspector_abort),
		T(test_client_disconnect_mid_data),
		T(test_upstream_close_mid_data),
		T(test_long_line_998),
		T(test_long_line_999),
		T(test_long_line_1000),
		T(test_long_line_1001),
		T(test_long_line_5000),
		T(test_bdat_chunking),
		T(test_bdat_chunking_deny),
		T(test_bdat_zero_last),
		T(test_bdat_chunking_upstream_refuses),
		T(test_bdat_chunking_early_refusal),
		T(test_bdat_chunking_bare_lf),
		T(test_bdat_chunking_normalize),
		T(test_bdat_convert),
		T(test_bdat_convert_data_answered_2xx),
		T(test_bdat_convert_chunks),
		T(test_bdat_convert_zero_first),
		T(test_bdat_convert_zero_last),
		T(test_bdat_convert_command_between_chunks),
		T(test_bdat_convert_rset_between_chunks),
		T(test_bdat_convert_refused_chunk),
		T(test_bdat_convert_data_refused),
		T(test_bdat_convert_upstream_lost),
		T(test_bdat_bad_size),
		T(test_bdat_out_of_state),
		T(test_bdat_refused_then_data),
		T(test_vrfy_refused),
		T(test_unknown_command),
		T(test_out_of_sequence),
		T(test_param_not_advertised),
		T(test_too_many_recipients),
		T(test_http_probe),
		T(test_canonical_commands),
		T(test_auth_exchange),
		T(test_auth_disabled),
		T(test_half_close_after_quit),
		T(test_upstream_unsolicited_421),
		T(test_upstream_421_pipelined),
		T(test_size_param),
		T(test_upstream_garbage),
		T(test_async_allow),
		T(test_async_deny),
		T(test_async_bdat_refused_meanwhile),
		T(test_async_timeout_tempfail),
		T(test_async_timeout_allow),
		T(test_async_upstream_gone),
		T(test_async_session_killed),
		T(test_body_busy_resume),
		T(test_body_busy_timeout),
		T(test_hold_allow),
		T(test_hold_always),
		T(test_hold_keepalive),
		T(test_hold_client_silent_mid_data),
		T(test_hold_client_silent_between_chunks),
		T(test_hold_refused_client_silent),
		T(test_hold_data_answered_2xx),
		T(test_hold_keepalive_421_mid_data),
		T(test_hold_half_close_during_verdict),
		T(test_hold_half_close_during_large_release),
		T(test_async_half_close_during_verdict),
		T(test_hold_no_recipient),
		T(test_hold_deny_keeps_session),
		T(test_hold_refused_line),
		T(test_hold_spool_byte_exact),
		T(test_hold_edits),
		T(test_hold_bad_edits),
		T(test_edits_not_held),
		T(test_hold_dkim_deny),
		T(test_hold_dkim_change_anyway),
		T(test_hold_dkim_unsigned_header),
		T(test_hold_bdat),
		T(test_relink_after_refusal),
		T(test_relink_after_bdat_deny),
		T(test_relink_after_rset_between_chunks),
		T(test_relink_caps_changed),
		T(test_relink_fails),
	};

	/* TEST_FILTER=test_bdat_* runs a subset (cmocka's glob). */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	/* the spool directory of test_hold_spool_byte_exact: empty, as it must be */
	if (spool[sizeof(spool) - 2] != 'X' && rmdir(spool) < 0)
		rc = 1;
	return rc;
}
