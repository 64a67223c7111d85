/*
 * test_scanner - the scanner pool (scanner.c, through the clamd client)
 * against scripted fake clamd servers on Unix sockets, served by the
 * same event loop: answers and reuse, a reused connection closed under
 * us (retried), a wrong session id, a server that closes mid-request
 * (failover), silence (timeout), no server, the queue, back-pressure,
 * the size limit, and cancellation in every state.  The real scanners
 * are in tests/e2e/test_scanner_*.py; these are the paths they cannot
 * reach on demand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clamd.h"
#include "ev.h"
#include "log.h"
#include "scanner.h"
#include "util.h"

/* ------------------------------------------------------- fake servers */

enum script {
	SC_OK,             /* "stream: OK" */
	SC_FOUND,          /* "stream: Test.Virus FOUND" */
	SC_SILENT,         /* never answers anything (pings neither) */
	SC_CLOSE_ON_DATA,  /* closes when message octets arrive */
	SC_WRONG_ID,       /* answers with another command's id */
	SC_STALE_SECOND,   /* closes a connection when its second command starts */
	SC_EARLY_OK,       /* says "stream: OK" at the first message octets */
};

struct fake {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct ev_fd ev;
	enum script script;
	bool hold;           /* do not read (back-pressure) until released */
	unsigned accepted, requests, pings;
	uint64_t octets;     /* message octets received in all */
	struct fconn *conns;
};

enum { F_CMD, F_LEN, F_DATA };

struct fconn {
	struct fake *f;
	struct ev_fd ev;
	struct fconn *next;
	int state;
	char cmd[64];
	size_t cmdlen;
	unsigned char len[4];
	size_t lenlen;
	uint32_t left;
	bool session, closed, answered;
	unsigned seq, commands;
};

static void
fconn_close(struct fconn *c)
{
	if (c->closed)
		return;
	ev_fd_del(&c->ev);
	close(c->ev.fd);
	c->closed = true;
}

static void
fconn_reply(struct fconn *c, unsigned id, const char *text)
{
	char out[256];
	int n = c->session ? snprintf(out, sizeof(out), "%u: %s", id, text)
	    : snprintf(out, sizeof(out), "%s", text);

	(void)!write(c->ev.fd, out, (size_t)n + 1); /* with the NUL */
}

static void
fconn_request_done(struct fconn *c)
{
	struct fake *f = c->f;

	f->requests++;
	switch (f->script) {
	case SC_OK:
	case SC_STALE_SECOND:
		fconn_reply(c, c->seq, "stream: OK");
		break;
	case SC_FOUND:
		fconn_reply(c, c->seq, "stream: Test.Virus FOUND");
		break;
	case SC_WRONG_ID:
		fconn_reply(c, c->seq + 5, "stream: OK");
		break;
	case SC_SILENT:
	case SC_CLOSE_ON_DATA:
	case SC_EARLY_OK:
		break;
	}
}

/* One command (NUL-terminated, without its 'z'). */
static void
fconn_command(struct fconn *c)
{
	struct fake *f = c->f;

	if (c->session || strcmp(c->cmd, "zIDSESSION") != 0)
		c->seq++;
	if (!strcmp(c->cmd, "zIDSESSION")) {
		c->session = true;
	} else if (!strcmp(c->cmd, "zPING")) {
		f->pings++;
		if (f->script != SC_SILENT)
			fconn_reply(c, c->seq, "PONG");
	} else if (!strcmp(c->cmd, "zINSTREAM")) {
		c->state = F_LEN;
		c->lenlen = 0;
	} else {
		fconn_close(c);
	}
}

static void
fconn_cb(struct ev_fd *e, uint32_t revents)
{
	struct fconn *c = container_of(e, struct fconn, ev);
	struct fake *f = c->f;
	unsigned char buf[65536];
	ssize_t n = read(e->fd, buf, sizeof(buf));

	if (n <= 0) {
		if (n < 0 && errno == EAGAIN)
			return;
		fconn_close(c);
		return;
	}
	for (ssize_t i = 0; i < n && !c->closed; i++) {
		switch (c->state) {
		case F_CMD:
			if (c->cmdlen == 0 && c->commands == 1 && f->script == SC_STALE_SECOND) {
				/* gone just as the connection is reused */
				fconn_close(c);
				return;
			}
			if (c->cmdlen + 1 >= sizeof(c->cmd)) {
				fconn_close(c);
				return;
			}
			c->cmd[c->cmdlen++] = (char)buf[i];
			if (buf[i] == '\0') {
				c->cmdlen = 0;
				fconn_command(c);
				if (strcmp(c->cmd, "zIDSESSION") != 0 && strcmp(c->cmd, "zPING") != 0)
					c->commands++;
			}
			break;
		case F_LEN:
			c->len[c->lenlen++] = buf[i];
			if (c->lenlen < 4)
				break;
			c->lenlen = 0;
			c->left = (uint32_t)c->len[0] << 24 | (uint32_t)c->len[1] << 16 |
			    (uint32_t)c->len[2] << 8 | c->len[3];
			if (c->left == 0) {
				c->state = F_CMD;
				fconn_request_done(c);
			} else {
				c->state = F_DATA;
			}
			break;
		case F_DATA: {
			size_t k = (size_t)(n - i) < c->left ? (size_t)(n - i) : c->left;

			if (f->script == SC_CLOSE_ON_DATA) {
				fconn_close(c);
				return;
			}
			if (f->script == SC_EARLY_OK && !c->answered) {
				c->answered = true;
				fconn_reply(c, c->seq, "stream: OK");
			}
			f->octets += k;
			c->left -= (uint32_t)k;
			i += (ssize_t)k - 1;
			if (c->left == 0)
				c->state = F_LEN;
			break;
		}
		}
	}
}

static void
fake_accept(struct ev_fd *e, uint32_t revents)
{
	struct fake *f = container_of(e, struct fake, ev);
	int fd = accept4(e->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct fconn *c;

	if (fd < 0)
		return;
	f->accepted++;
	c = xcalloc(1, sizeof(*c));
	c->f = f;
	c->next = f->conns;
	f->conns = c;
	ev_fd_add(&c->ev, fd, f->hold ? 0 : EPOLLIN, fconn_cb);
}

static struct fake *
fake_new(enum script script)
{
	static unsigned serial;
	struct fake *f = xcalloc(1, sizeof(*f));
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	f->script = script;
	snprintf(f->path, sizeof(f->path), "/tmp/smtpgw-test-scanner-%d-%u.sock", (int)getpid(),
	    serial++);
	unlink(f->path);
	memcpy(sun.sun_path, f->path, strlen(f->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 16), 0);
	ev_fd_add(&f->ev, fd, EPOLLIN, fake_accept);
	return f;
}

/* Start reading on every connection held so far (and later ones). */
static void
fake_release(struct fake *f)
{
	f->hold = false;
	for (struct fconn *c = f->conns; c; c = c->next)
		if (!c->closed)
			ev_fd_mod(&c->ev, EPOLLIN);
}

static void
fake_free(struct fake *f)
{
	while (f->conns) {
		struct fconn *c = f->conns;

		f->conns = c->next;
		fconn_close(c);
		free(c);
	}
	ev_fd_del(&f->ev);
	close(f->ev.fd);
	unlink(f->path);
	free(f);
}

/* ------------------------------------------------------------ helpers */

#define MAX_RESULTS 8

struct rec {
	unsigned n, resumes;
	struct clamd_result r[MAX_RESULTS];
	char reason[MAX_RESULTS][SCANNER_ERROR_MAX];
	char virus[MAX_RESULTS][CLAMD_VIRUS_MAX];
};

static void
on_done(void *arg, const struct clamd_result *res)
{
	struct rec *rec = arg;

	assert_true(rec->n < MAX_RESULTS);
	rec->r[rec->n] = *res;
	snprintf(rec->reason[rec->n], SCANNER_ERROR_MAX, "%s", res->reason);
	snprintf(rec->virus[rec->n], CLAMD_VIRUS_MAX, "%s", res->virus);
	rec->n++;
}

static void
on_resume(void *arg)
{
	((struct rec *)arg)->resumes++;
}

static struct rec *wait_rec;
static unsigned wait_for;
static bool wait_expired;
static struct ev_timer wait_timer;

static void
wait_hook(void)
{
	if (wait_expired || (wait_rec != NULL && wait_rec->n >= wait_for))
		ev_break();
}

static void
wait_timeout(struct ev_timer *t)
{
	wait_expired = true;
}

/* Run the loop until rec has n results, or ms passed; true if it has. */
static bool
run_until(struct rec *rec, unsigned n, unsigned ms)
{
	wait_rec = rec;
	wait_for = n;
	wait_expired = false;
	ev_set_idle_hook(wait_hook);
	ev_timer_arm(&wait_timer, ms, wait_timeout);
	ev_loop();
	ev_timer_cancel(&wait_timer);
	return rec == NULL || rec->n >= n;
}

static void
servers(struct conf_scanners *sc, struct fake **f, int n)
{
	memset(sc, 0, sizeof(*sc));
	for (int i = 0; i < n; i++) {
		char path[sizeof(f[i]->path) + 8], why[160];

		snprintf(path, sizeof(path), "unix:%s", f[i]->path);
		assert_int_equal(config_scan_server_parse(path, &sc->servers[i], why, sizeof(why)), 0);
	}
	sc->n_servers = n;
}

static const struct scanner_opts default_opts = {
	.timeout_ms = 2000, .connections = 4, .queue = 16, .max_size = 10 * 1024 * 1024,
	.idle_ms = 5000,
};

static void
scan_text(struct clamd_pool *p, struct rec *rec, const char *text)
{
	struct clamd_scan *s = clamd_scan_start(p, 1, on_done, on_resume, rec);

	/* DONE when the outcome is already decided (no server, queue full) */
	assert_int_not_equal(clamd_scan_feed(s, text, strlen(text)), SCANNER_FEED_BUSY);
	clamd_scan_end(s);
}

/* A value of the pool's status ("clamd.1.connects"), as a number. */
static long
status_of(struct clamd_pool *p, const char *key)
{
	char *text = NULL, *line;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	long v = -1;

	assert_non_null(f);
	clamd_pool_status(p, f);
	fclose(f);
	for (line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == '=')
			v = strtol(line + strlen(key) + 1, NULL, 10);
	free(text);
	return v;
}

static const char *
health_of(struct clamd_pool *p, int n)
{
	static char h[16];
	char key[32], *text = NULL, *line;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	clamd_pool_status(p, f);
	fclose(f);
	snprintf(key, sizeof(key), "clamd.%d.health=", n);
	h[0] = '\0';
	for (line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		if (!strncmp(line, key, strlen(key)))
			snprintf(h, sizeof(h), "%s", line + strlen(key));
	free(text);
	return h;
}

static int
setup(void **state)
{
	log_init(LOG_TO_STDERR, "test_scanner", 0);
	ev_init();
	return 0;
}

/* -------------------------------------------------------------- tests */

static void
test_answers_and_reuse(void **state)
{
	struct fake *a = fake_new(SC_OK), *b = fake_new(SC_FOUND);
	struct conf_scanners sc;
	struct clamd_pool *pa, *pb;
	struct rec rec = { 0 };

	servers(&sc, &a, 1);
	pa = clamd_pool_new_opts(&sc, &default_opts);
	servers(&sc, &b, 1);
	pb = clamd_pool_new_opts(&sc, &default_opts);
	for (int i = 0; i < 3; i++) {
		scan_text(pa, &rec, "hello");
		assert_true(run_until(&rec, (unsigned)i + 1, 2000));
		assert_int_equal(rec.r[i].status, CLAMD_CLEAN);
	}
	scan_text(pb, &rec, "hello");
	assert_true(run_until(&rec, 4, 2000));
	assert_int_equal(rec.r[3].status, CLAMD_INFECTED);
	assert_string_equal(rec.virus[3], "Test.Virus");
	/* three scans one after the other, one connection (IDSESSION) */
	assert_int_equal(status_of(pa, "clamd.1.requests"), 3);
	assert_int_equal(status_of(pa, "clamd.1.connects"), 1);
	assert_int_equal(status_of(pa, "clamd.1.clean"), 3);
	assert_int_equal(status_of(pb, "clamd.1.infected"), 1);
	assert_int_equal(a->octets, 15);
	clamd_pool_free(pa);
	clamd_pool_free(pb);
	fake_free(a);
	fake_free(b);
}

static void
test_stale_connection_retried(void **state)
{
	struct fake *a = fake_new(SC_STALE_SECOND);
	struct conf_scanners sc;
	struct clamd_pool *p;
	struct rec rec = { 0 };

	servers(&sc, &a, 1);
	p = clamd_pool_new_opts(&sc, &default_opts);
	scan_text(p, &rec, "first");
	assert_true(run_until(&rec, 1, 2000));
	scan_text(p, &rec, "second");
	assert_true(run_until(&rec, 2, 2000));
	assert_int_equal(rec.r[0].status, CLAMD_CLEAN);
	assert_int_equal(rec.r[1].status, CLAMD_CLEAN);
	/* retried on a fresh connection; the server is not down for it */
	assert_int_equal(status_of(p, "clamd.1.connects"), 2);
	assert_string_not_equal(health_of(p, 1), "down");
	assert_int_equal(a->requests, 2);
	clamd_pool_free(p);
	fake_free(a);
}

static void
test_wrong_session_id(void **state)
{
	struct fake *a = fake_new(SC_WRONG_ID);
	struct conf_scanners sc;
	struct clamd_pool *p;
	struct rec rec = { 0 };

	servers(&sc, &a, 1);
	p = clamd_pool_new_opts(&sc, &default_opts);
	scan_text(p, &rec, "x");
	assert_true(run_until(&rec, 1, 2000));
	assert_int_equal(rec.r[0].status, CLAMD_ERROR);
	assert_string_equal(rec.reason[0], "reply for command 6, expected 1");
	/* it answered: an error for this request, not a server down */
	assert_string_not_equal(health_of(p, 1), "down");
	assert_int_equal(status_of(p, "clamd.1.idle"), 0);
	clamd_pool_free(p);
	fake_free(a);
}

static void
test_early_verdict_refused(void **state)
{
	struct fake *a = fake_new(SC_EARLY_OK);
	struct conf_scanners sc;
	struct clamd_pool *p;
	struct rec rec = { 0 };
	struct clamd_scan *s;

	servers(&sc, &a, 1);
	p = clamd_pool_new_opts(&sc, &default_opts);
	s = clamd_scan_start(p, 1, on_done, on_resume, &rec);
	assert_int_equal(clamd_scan_feed(s, "first half", 10), SCANNER_FEED_OK);
	/* the end is never sent: "clean" for half a message must not pass */
	assert_true(run_until(&rec, 1, 2000));
	assert_int_equal(rec.r[0].status, CLAMD_ERROR);
	assert_string_equal(rec.reason[0], "verdict before the whole message was sent");
	clamd_pool_free(p);
	fake_free(a);
}

static void
test_close_midway_fails_over(void **state)
{
	struct fake *f[2] = { fake_new(SC_CLOSE_ON_DATA), fake_new(SC_FOUND) };
	struct conf_scanners sc;
	struct clamd_pool *p;
	struct rec rec = { 0 };

	servers(&sc, f, 2);
	p = clamd_pool_new_opts(&sc, &default_opts);
	scan_text(p, &rec, "payload");
	assert_true(run_until(&rec, 1, 3000));
	assert_int_equal(rec.r[0].status, CLAMD_INFECTED);
	assert_string_equal(rec.r[0].server + 5, f[1]->path);
	assert_string_equal(health_of(p, 1), "down");
	assert_int_equal(status_of(p, "clamd.1.errors"), 1);
	clamd_pool_free(p);
	fake_free(f[0]);
	fake_free(f[1]);
}

static void
test_silence_times_out(void **state)
{
	struct fake *a = fake_new(SC_SILENT);
	struct conf_scanners sc;
	struct scanner_opts o = default_opts;
	struct clamd_pool *p;
	struct rec rec = { 0 };

	o.timeout_ms = 300;
	servers(&sc, &a, 1);
	p = clamd_pool_new_opts(&sc, &o);
	scan_text(p, &rec, "x");
	assert_true(run_until(&rec, 1, 3000));
	/* it took the message: an error, never "unavailable" */
	assert_int_equal(rec.r[0].status, CLAMD_ERROR);
	assert_non_null(strstr(rec.reason[0], "timeout"));
	assert_true(rec.r[0].elapsed_ms >= 290);
	assert_string_equal(health_of(p, 1), "down");
	clamd_pool_free(p);
	fake_free(a);
}

static void
test_unavailable(void **state)
{
	struct conf_scanners sc;
	struct clamd_pool *p;
	struct rec rec = { 0 };
	char why[160];

	memset(&sc, 0, sizeof(sc));
	p = clamd_pool_new_opts(&sc, &default_opts);
	scan_text(p, &rec, "x");
	assert_true(run_until(&rec, 1, 1000));
	assert_int_equal(rec.r[0].status, CLAMD_UNAVAILABLE);
	assert_string_equal(rec.reason[0], "no scanner configured");
	assert_null(rec.r[0].server);
	clamd_pool_free(p);

	assert_int_equal(config_scan_server_parse("unix:/nonexistent/smtpgw-test.sock",
	    &sc.servers[0], why, sizeof(why)), 0);
	sc.n_servers = 1;
	p = clamd_pool_new_opts(&sc, &default_opts);
	scan_text(p, &rec, "x");
	assert_true(run_until(&rec, 2, 1000));
	assert_int_equal(rec.r[1].status, CLAMD_UNAVAILABLE);
	assert_string_equal(rec.reason[1], "connect: No such file or directory");
	/* the next one is refused at once: the server is known down */
	scan_text(p, &rec, "x");
	assert_true(run_until(&rec, 3, 1000));
	assert_int_equal(rec.r[2].status, CLAMD_UNAVAILABLE);
	assert_string_equal(rec.reason[2], "no scanner server up");
	assert_int_equal(status_of(p, "clamd.unavailable"), 2);
	clamd_pool_free(p);
}

static void
test_queue(void **state)
{
	struct fake *a = fake_new(SC_SILENT);
	struct conf_scanners sc;
	struct scanner_opts o = default_opts;
	struct clamd_pool *p;
	struct rec rec = { 0 };

	o.connections = 1;
	o.queue = 1;
	o.timeout_ms = 400;
	servers(&sc, &a, 1);
	p = clamd_pool_new_opts(&sc, &o);
	scan_text(p, &rec, "first");  /* on the connection */
	scan_text(p, &rec, "second"); /* queued */
	scan_text(p, &rec, "third");  /* no room */
	assert_true(run_until(&rec, 1, 100));
	assert_int_equal(rec.r[0].status, CLAMD_UNAVAILABLE);
	assert_string_equal(rec.reason[0], "queue full");
	assert_int_equal(status_of(p, "clamd.queued"), 1);
	assert_true(run_until(&rec, 3, 3000));
	/* the first timed out; the queued one had nowhere to go then */
	for (int i = 1; i < 3; i++)
		assert_true(rec.r[i].status == CLAMD_ERROR || rec.r[i].status == CLAMD_UNAVAILABLE);
	assert_true(rec.r[1].status != rec.r[2].status);
	assert_int_equal(status_of(p, "clamd.queued"), 0);
	clamd_pool_free(p);
	fake_free(a);
}

static void
test_backpressure(void **state)
{
	struct fake *a = fake_new(SC_OK);
	struct conf_scanners sc;
	struct clamd_pool *p;
	struct rec rec = { 0 };
	struct clamd_scan *s;
	static char chunk[65536];
	uint64_t fed = 0;
	int rc = SCANNER_FEED_OK;

	memset(chunk, 'm', sizeof(chunk));
	a->hold = true;
	servers(&sc, &a, 1);
	p = clamd_pool_new_opts(&sc, &default_opts);
	s = clamd_scan_start(p, 1, on_done, on_resume, &rec);
	/* the server reads nothing: BUSY comes, bounded */
	for (int i = 0; i < 200 && rc == SCANNER_FEED_OK; i++) {
		rc = clamd_scan_feed(s, chunk, sizeof(chunk));
		fed += sizeof(chunk);
		if (i % 4 == 0)
			run_until(NULL, 0, 5);
	}
	assert_int_equal(rc, SCANNER_FEED_BUSY);
	assert_true(fed < 200 * sizeof(chunk));
	assert_int_equal(rec.resumes, 0);
	fake_release(a);
	/* resume when the backlog drains; feed the rest as a feeder would */
	for (int round = 0; round < 100 && fed < 40 * sizeof(chunk); round++) {
		unsigned before = rec.resumes;

		while (rec.resumes == before && !run_until(NULL, 0, 20))
			;
		if (rec.resumes == before)
			continue;
		do {
			rc = clamd_scan_feed(s, chunk, sizeof(chunk));
			fed += sizeof(chunk);
		} while (rc == SCANNER_FEED_OK && fed < 40 * sizeof(chunk));
	}
	assert_true(rec.resumes > 0);
	clamd_scan_end(s);
	assert_true(run_until(&rec, 1, 5000));
	assert_int_equal(rec.r[0].status, CLAMD_CLEAN);
	assert_int_equal(rec.r[0].size, fed);
	assert_int_equal(a->octets, fed);
	clamd_pool_free(p);
	fake_free(a);
}

static void
test_ignored_backpressure_is_an_error(void **state)
{
	struct fake *a = fake_new(SC_OK);
	struct conf_scanners sc;
	struct clamd_pool *p;
	struct rec rec = { 0 };
	struct clamd_scan *s;
	static char chunk[65536];
	int rc = SCANNER_FEED_OK;

	a->hold = true;
	servers(&sc, &a, 1);
	p = clamd_pool_new_opts(&sc, &default_opts);
	s = clamd_scan_start(p, 1, on_done, on_resume, &rec);
	run_until(NULL, 0, 20);
	for (int i = 0; i < 200 && rc != SCANNER_FEED_DONE; i++)
		rc = clamd_scan_feed(s, chunk, sizeof(chunk));
	assert_int_equal(rc, SCANNER_FEED_DONE);
	assert_true(run_until(&rec, 1, 1000));
	assert_int_equal(rec.r[0].status, CLAMD_ERROR);
	assert_string_equal(rec.reason[0], "fed past the back-pressure limit");
	clamd_pool_free(p);
	fake_free(a);
}

static void
test_too_large(void **state)
{
	struct fake *a = fake_new(SC_OK);
	struct conf_scanners sc;
	struct scanner_opts o = default_opts;
	struct clamd_pool *p;
	struct rec rec = { 0 };
	struct clamd_scan *s;
	char data[600];

	memset(data, 'd', sizeof(data));
	o.max_size = 1000;
	servers(&sc, &a, 1);
	p = clamd_pool_new_opts(&sc, &o);
	s = clamd_scan_start(p, 1, on_done, on_resume, &rec);
	assert_int_equal(clamd_scan_feed(s, data, sizeof(data)), SCANNER_FEED_OK);
	assert_int_equal(clamd_scan_feed(s, data, sizeof(data)), SCANNER_FEED_DONE);
	/* nothing more is taken, the end changes nothing */
	assert_int_equal(clamd_scan_feed(s, data, 1), SCANNER_FEED_DONE);
	clamd_scan_end(s);
	assert_int_equal(rec.n, 0); /* never from inside a call */
	assert_true(run_until(&rec, 1, 1000));
	assert_int_equal(rec.r[0].status, CLAMD_TOO_LARGE);
	assert_string_equal(rec.reason[0], "message larger than 1000 octets");
	assert_int_equal(rec.r[0].size, 600);
	run_until(NULL, 0, 50);
	assert_int_equal(a->requests, 0);
	assert_int_equal(status_of(p, "clamd.too-large"), 1);
	clamd_pool_free(p);
	fake_free(a);
}

static void
test_cancel_everywhere(void **state)
{
	struct fake *a = fake_new(SC_SILENT);
	struct conf_scanners sc;
	struct scanner_opts o = default_opts;
	struct clamd_pool *p;
	struct rec rec = { 0 };
	struct clamd_scan *on_conn, *queued, *decided, *fresh;
	char data[600];

	memset(data, 'd', sizeof(data));
	o.connections = 1;
	o.max_size = 1000;
	servers(&sc, &a, 1);
	p = clamd_pool_new_opts(&sc, &o);
	on_conn = clamd_scan_start(p, 1, on_done, on_resume, &rec);
	queued = clamd_scan_start(p, 2, on_done, on_resume, &rec);
	assert_int_equal(clamd_scan_feed(queued, data, sizeof(data)), SCANNER_FEED_OK);
	decided = clamd_scan_start(p, 3, on_done, on_resume, &rec);
	(void)clamd_scan_feed(decided, data, sizeof(data));
	assert_int_equal(clamd_scan_feed(decided, data, sizeof(data)), SCANNER_FEED_DONE);
	fresh = clamd_scan_start(p, 4, on_done, on_resume, &rec);
	run_until(NULL, 0, 50);
	assert_int_equal(clamd_scan_feed(on_conn, data, 100), SCANNER_FEED_OK);
	/* the decided one delivered its outcome already; cancel the rest */
	assert_int_equal(rec.n, 1);
	assert_int_equal(rec.r[0].status, CLAMD_TOO_LARGE);
	clamd_scan_cancel(queued);
	clamd_scan_cancel(on_conn);
	clamd_scan_cancel(fresh);
	run_until(NULL, 0, 300);
	assert_int_equal(rec.n, 1); /* no call back after a cancel */
	assert_int_equal(status_of(p, "clamd.1.active"), 0);
	assert_int_equal(status_of(p, "clamd.queued"), 0);
	clamd_pool_free(p); /* fatal if anything were outstanding */
	fake_free(a);
}

static void
test_cancel_before_delivery(void **state)
{
	struct conf_scanners sc;
	struct clamd_pool *p;
	struct rec rec = { 0 };
	struct clamd_scan *s;

	/* decided (no server) but not delivered yet: cancel wins, silently */
	memset(&sc, 0, sizeof(sc));
	p = clamd_pool_new_opts(&sc, &default_opts);
	s = clamd_scan_start(p, 1, on_done, on_resume, &rec);
	clamd_scan_cancel(s);
	run_until(NULL, 0, 50);
	assert_int_equal(rec.n, 0);
	clamd_pool_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers_and_reuse),
		cmocka_unit_test(test_stale_connection_retried),
		cmocka_unit_test(test_wrong_session_id),
		cmocka_unit_test(test_early_verdict_refused),
		cmocka_unit_test(test_close_midway_fails_over),
		cmocka_unit_test(test_silence_times_out),
		cmocka_unit_test(test_unavailable),
		cmocka_unit_test(test_queue),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_ignored_backpressure_is_an_error),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_cancel_everywhere),
		cmocka_unit_test(test_cancel_before_delivery),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
