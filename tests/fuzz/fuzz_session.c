/*
 * fuzz_session - the whole SMTP engine (session_attach: a socket pair for
 * the client, TCP on loopback for the destination, so the engine can
 * reconnect after discarding a message), a fuzzed client against a strict
 * model of the destination.
 *
 * Input:
 *   byte 0      configuration: bit 0 bare-newline normalize, bit 1
 *               allow-chunking, bit 2 max-line-length 16 (else 998), bit 3
 *               max-recipients 3, bits 4-5 the inspector (allow, deny,
 *               tempfail), bit 6 allow-vrfy, bit 7 allow-auth
 *   byte 1      n: how many decision bytes follow
 *   n bytes     the destination's decisions, one per reply: by value % 8
 *               5xx (0), 4xx (1) or success, 0xfc-0xff a fault (bare LF,
 *               garbage, 421 and close, close); the first picks the
 *               greeting, an EHLO takes two (class and capability bits),
 *               an AUTH step answers 334 on 7; each inspection takes one
 *               too (fi_begin: asynchronous verdict, held message, a
 *               pause, an edit), and so does a reconnection's greeting
 *               (554 on 0, else 220)
 *   the rest    what the client sends; 0xFE ends a write (the loop runs
 *               until idle before the next), 0xFF half-closes the client
 *               (neither byte occurs in UTF-8, so both are free to use)
 *
 * The destination model reads strictly: every command line must be the
 * canonical form smtp_proxy.c promises (it is re-parsed and re-rendered),
 * message lines must be CRLF lines without CR or NUL, dot-stuffed, at most
 * max-line-length octets, and BDAT chunks exactly their size.  Checks,
 * besides memory errors and leaks:
 *  - the end of data (".", BDAT LAST) reaches the destination only when
 *    the inspector allows (with a denying inspector never), and only after
 *    exactly the octets the inspector saw (with its edit, when it made
 *    one), whether the verdict came at once or later;
 *  - the client hears "queued as Q<k>" only for messages the destination
 *    accepted, each once, in order;
 *  - everything the client receives is canonical reply lines;
 *  - the session ends once both peers are gone.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "ev.h"
#include "inspect.h"
#include "session.h"
#include "smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "CHECK failed: %s (line %d)\n", \
	#cond, __LINE__); __builtin_trap(); } } while (0)

static struct config *conf;
static struct ev_timer tick;

/* ------------------------------------------------------------ inspector */

enum { INSP_ALLOW, INSP_DENY, INSP_TEMPFAIL };
static int insp_mode;

/* A message's octets as a length and an FNV-1a hash. */
struct digest {
	uint64_t n, h;
};

static void
digest_init(struct digest *d)
{
	d->n = 0;
	d->h = 1469598103934665603ull;
}

static void
digest_add(struct digest *d, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		d->h = (d->h ^ (unsigned char)p[i]) * 1099511628211ull;
	d->n += len;
}

/*
 * What the inspector saw of each message it allowed (as edited), oldest
 * first.  An allowed message may still never arrive (may_drop): an
 * edited one the engine's DKIM protection refuses (dkim-protect = deny:
 * a change it cannot prove harmless), and any one not yet delivered
 * when the destination refuses a DATA (a held message's DATA is sent
 * after the verdict) or goes away.  Every other allowed message must
 * arrive, in order, octet for octet.
 */
static struct {
	struct digest cur, cur_edited;
	struct digest allowed[64];
	bool may_drop[64];
	unsigned head, tail;
} seen;

/*
 * Each transaction draws one byte from the decisions (0 when there are
 * none left): bit 0 the verdict comes later (a 0 ms timer, as from a
 * socket), bit 1 hold the message, bit 2 ask for a pause once in body(),
 * bit 3 (held only) an edit: a header line inserted at the top.
 */
#define FI_EDIT "X-Fuzz: edited\r\n"

struct fi_txn {
	const struct inspect_hooks *hooks;
	struct ev_timer verdict_timer, resume_timer;
	bool async, busy, edit, busy_done;
};

static uint8_t insp_decide(void);

static void
fi_result(struct fi_txn *t, struct inspect_result *res)
{
	inspect_result_clear(res);
	if (insp_mode == INSP_DENY) {
		res->verdict = INSPECT_DENY;
		snprintf(res->reply, sizeof(res->reply), "554 5.7.1 denied by fuzz");
	} else if (insp_mode == INSP_TEMPFAIL) {
		res->verdict = INSPECT_TEMPFAIL;
		snprintf(res->reply, sizeof(res->reply), "250 not a tempfail\r\n");
	} else {
		res->verdict = INSPECT_ALLOW;
		if (t->edit)
			CHECK(inspect_result_edit(res, 0, 0, FI_EDIT, strlen(FI_EDIT)) == 0);
		if (seen.tail - seen.head < 64) {
			seen.may_drop[seen.tail % 64] = t->edit;
			seen.allowed[seen.tail++ % 64] = t->edit ? seen.cur_edited : seen.cur;
		}
	}
}

static void
fi_free(struct fi_txn *t)
{
	ev_timer_cancel(&t->verdict_timer);
	ev_timer_cancel(&t->resume_timer);
	free(t);
}

static void *
fi_begin(const struct inspector *in, const struct inspect_envelope *env,
    const struct inspect_hooks *hooks, unsigned *flags)
{
	struct fi_txn *t = calloc(1, sizeof(*t));
	uint8_t b = insp_decide();

	(void)in;
	CHECK(t != NULL);
	CHECK(env->mail_from != NULL && env->helo != NULL);
	for (int i = 0; i < env->nrcpts; i++)
		CHECK(env->rcpts[i] != NULL);
	t->hooks = hooks;
	t->async = b & 1;
	t->busy = b & 4;
	if (b & 2) {
		*flags |= INSPECT_F_HOLD;
		t->edit = b & 8;
	}
	digest_init(&seen.cur);
	digest_init(&seen.cur_edited);
	if (t->edit)
		digest_add(&seen.cur_edited, FI_EDIT, strlen(FI_EDIT));
	return t; /* leaks unless end() or abort() runs */
}

static void
fi_resume(struct ev_timer *tm)
{
	struct fi_txn *t = (struct fi_txn *)(void *)((char *)tm - offsetof(struct fi_txn,
	    resume_timer));

	t->hooks->resume(t->hooks->ctx);
}

static int
fi_body(void *txn, const char *data, size_t len)
{
	struct fi_txn *t = txn;

	CHECK(t != NULL && !ev_timer_armed(&t->verdict_timer));
	digest_add(&seen.cur, data, len);
	digest_add(&seen.cur_edited, data, len);
	if (t->busy && !t->busy_done) {
		t->busy_done = true;
		ev_timer_arm(&t->resume_timer, 0, fi_resume);
		return INSPECT_BUSY;
	}
	return INSPECT_OK;
}

static void
fi_verdict(struct ev_timer *tm)
{
	struct fi_txn *t = (struct fi_txn *)(void *)((char *)tm - offsetof(struct fi_txn,
	    verdict_timer));
	const struct inspect_hooks *h = t->hooks;
	struct inspect_result res;

	memset(&res, 0, sizeof(res));
	fi_result(t, &res);
	fi_free(t);
	h->verdict(h->ctx, &res);
	inspect_result_clear(&res);
}

static int
fi_end(void *txn, struct inspect_result *res)
{
	struct fi_txn *t = txn;

	ev_timer_cancel(&t->resume_timer);
	if (t->async) {
		ev_timer_arm(&t->verdict_timer, 0, fi_verdict);
		return INSPECT_PENDING;
	}
	fi_result(t, res);
	fi_free(t);
	return INSPECT_DONE;
}

static void
fi_abort(void *txn)
{
	fi_free(txn);
}

static const struct inspector fuzz_insp = {
	.name = "fuzz", .begin = fi_begin, .body = fi_body, .end = fi_end, .abort = fi_abort,
};

/* ---------------------------------------------------- destination model */

enum { SM_CMD, SM_DATA, SM_BDAT, SM_AUTH, SM_CLOSED };

static struct model {
	int fd;
	int st;
	size_t inlen;
	uint64_t bdat_left;
	bool bdat_last;
	const uint8_t *dec;
	size_t ndec, idec;
	unsigned accepted; /* messages accepted: "queued as Q<accepted>" */
	struct digest msg; /* the message being received, as delivered */
	bool activity;
	char in[1 << 17]; /* last: not cleared per input */
} m;

static uint8_t
decide(void)
{
	/* without decisions left: success */
	return m.idec < m.ndec ? m.dec[m.idec++] : 2;
}

static uint8_t
insp_decide(void)
{
	/* without decisions left: synchronous, streamed */
	return m.idec < m.ndec ? m.dec[m.idec++] : 0;
}

/* The allowed messages not delivered yet may now never be (see seen). */
static void
seen_pending_may_drop(void)
{
	for (unsigned i = seen.head; i != seen.tail; i++)
		seen.may_drop[i % 64] = true;
}

static void
model_close(void)
{
	seen_pending_may_drop();
	if (m.fd >= 0)
		close(m.fd);
	m.fd = -1;
	m.st = SM_CLOSED;
}

static void
model_send(const char *s)
{
	size_t n = strlen(s);

	m.activity = true;
	while (n > 0 && m.fd >= 0) {
		ssize_t w = send(m.fd, s, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the engine is gone or not reading: the reply is lost */
		s += w;
		n -= (size_t)w;
	}
}

enum { REP_FAIL, REP_TEMPFAIL, REP_OK, REP_FAULT, REP_CLOSED };

/* A reply of the class decided (or a fault); returns which. */
static int
model_reply(const char *ok, const char *tempfail, const char *fail)
{
	uint8_t d = decide();

	switch (d) {
	case 0xff:
		model_close();
		return REP_CLOSED;
	case 0xfe:
		model_send("421 4.3.2 Service shutting down\r\n");
		model_close();
		return REP_CLOSED;
	case 0xfd:
		model_send("garbage\r\n");
		return REP_FAULT;
	case 0xfc:
		model_send("250 bare lf\n");
		return REP_FAULT;
	default:
		break;
	}
	if (d % 8 == 0) {
		model_send(fail);
		return REP_FAIL;
	}
	if (d % 8 == 1) {
		model_send(tempfail);
		return REP_TEMPFAIL;
	}
	model_send(ok);
	return REP_OK;
}

static void
model_ehlo(void)
{
	static const char *const kw[] = {
		"PIPELINING", "SIZE 100000", "8BITMIME", "SMTPUTF8", "DSN", "CHUNKING",
		"AUTH PLAIN LOGIN", "ENHANCEDSTATUSCODES", "XCLIENT NAME ADDR", "STARTTLS",
	};
	uint8_t d = decide();
	uint16_t bits = (uint16_t)(d | (decide() << 8));
	char reply[1024];
	size_t o;

	if (d == 0xff) {
		model_close();
		return;
	}
	if (d % 8 == 0) {
		model_send("502 5.5.2 Error: command not recognized\r\n");
		return;
	}
	o = (size_t)snprintf(reply, sizeof(reply), "250-mx.fuzz.example\r\n");
	for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
		if (bits & (1u << i))
			o += (size_t)snprintf(reply + o, sizeof(reply) - o, "250-%s\r\n", kw[i]);
	snprintf(reply + o, sizeof(reply) - o, "250 HELP\r\n");
	model_send(reply);
}

/* smtp_proxy.c's rendering of the parameters: " KEY=VALUE" / " KEY". */
static void
render_params(const struct smtp_cmd *cmd, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < cmd->nparams; i++) {
		int n = snprintf(buf + o, len - o, cmd->params[i].value ? " %s=%s" : " %s",
		    cmd->params[i].key, cmd->params[i].value ? cmd->params[i].value : "");
		CHECK(n >= 0 && (size_t)n < len - o);
		o += (size_t)n;
	}
}

/* What a canonical command line for cmd looks like. */
static void
canonical(const struct smtp_cmd *cmd, char *out, size_t outsz)
{
	char params[SMTP_CMDLINE_MAX + 1];

	switch (cmd->verb) {
	case SMTP_MAIL:
		render_params(cmd, params, sizeof(params));
		snprintf(out, outsz, "MAIL FROM:<%s>%s", cmd->path, params);
		break;
	case SMTP_RCPT:
		render_params(cmd, params, sizeof(params));
		snprintf(out, outsz, "RCPT TO:<%s>%s", cmd->path, params);
		break;
	case SMTP_BDAT:
		snprintf(out, outsz, "BDAT %llu%s", (unsigned long long)cmd->chunk_size,
		    cmd->last ? " LAST" : "");
		break;
	case SMTP_HELO:
	case SMTP_EHLO:
	case SMTP_VRFY:
	case SMTP_EXPN:
	case SMTP_AUTH:
		snprintf(out, outsz, "%s %s", cmd->word, cmd->arg);
		break;
	case SMTP_HELP:
		snprintf(out, outsz, cmd->arg[0] ? "HELP %s" : "HELP%s", cmd->arg);
		break;
	default:
		snprintf(out, outsz, "%s", cmd->word);
		break;
	}
}

static void
end_of_message(void)
{
	char ok[80];

	/* the end of data only ever follows an allowing verdict ... */
	CHECK(insp_mode == INSP_ALLOW);
	/* ... on exactly the octets the destination received */
	CHECK(seen.head != seen.tail);
	/* edited messages the DKIM protection refused never came */
	while (seen.may_drop[seen.head % 64] && seen.tail - seen.head > 1 &&
	    (seen.allowed[seen.head % 64].n != m.msg.n || seen.allowed[seen.head % 64].h != m.msg.h))
		seen.head++;
	struct digest *d = &seen.allowed[seen.head++ % 64];
	if (d->n != m.msg.n || d->h != m.msg.h) {
		fprintf(stderr, "inspected %llu octets, delivered %llu (or different ones)\n",
		    (unsigned long long)d->n, (unsigned long long)m.msg.n);
		CHECK(0);
	}
	digest_init(&m.msg);
	snprintf(ok, sizeof(ok), "250 2.0.0 Ok: queued as Q%u\r\n", m.accepted + 1);
	if (model_reply(ok, "451 4.3.0 Error: queue file write error\r\n",
	    "554 5.7.1 Error: rejected\r\n") == REP_OK)
		m.accepted++;
}

/* AUTH and each response: a challenge (334) now and then, else the outcome. */
static void
model_auth(void)
{
	if (m.idec < m.ndec && m.dec[m.idec] < 0xfc && m.dec[m.idec] % 8 == 7) {
		m.idec++;
		model_send("334 VXNlcm5hbWU6\r\n");
		m.st = SM_AUTH;
		return;
	}
	m.st = SM_CMD;
	model_reply("235 2.7.0 Authentication successful\r\n", "454 4.7.0 try later\r\n",
	    "535 5.7.8 Error: authentication failed\r\n");
}

static void
model_command(char *line, size_t len)
{
	static char canon[2 * SMTP_CMDLINE_MAX];
	struct smtp_cmd cmd;
	const char *err = NULL;
	char copy[SMTP_CMDLINE_MAX + 1];

	memcpy(copy, line, len);
	copy[len] = '\0';
	if (smtp_cmd_parse(line, len, &cmd, &err) != 0) {
		fprintf(stderr, "destination got a malformed command \"%s\": %s\n", copy, err);
		CHECK(0);
	}
	if (cmd.verb == SMTP_UNKNOWN || cmd.verb == SMTP_HTTP) {
		fprintf(stderr, "destination got a command it was never meant to: \"%s\"\n", copy);
		CHECK(0);
	}
	canonical(&cmd, canon, sizeof(canon));
	if (strcmp(canon, copy) != 0) {
		fprintf(stderr, "destination got \"%s\", canonical \"%s\"\n", copy, canon);
		CHECK(0);
	}
	switch (cmd.verb) {
	case SMTP_EHLO:
		model_ehlo();
		break;
	case SMTP_DATA:
		digest_init(&m.msg);
		if (model_reply("354 End data with <CR><LF>.<CR><LF>\r\n", "451 4.3.0 not now\r\n",
		    "554 5.5.1 Error: no valid recipients\r\n") == REP_OK)
			m.st = SM_DATA;
		else
			seen_pending_may_drop(); /* a held message's DATA, after its verdict */
		break;
	case SMTP_BDAT:
		m.st = SM_BDAT;
		m.bdat_left = cmd.chunk_size;
		m.bdat_last = cmd.last;
		break;
	case SMTP_QUIT:
		model_send("221 2.0.0 Bye\r\n");
		model_close();
		break;
	case SMTP_AUTH:
		model_auth();
		break;
	case SMTP_STARTTLS:
		model_reply("454 4.7.0 TLS not available\r\n", "454 4.7.0 TLS not available\r\n",
		    "454 4.7.0 TLS not available\r\n");
		break;
	case SMTP_MAIL:
		digest_init(&m.msg);
		model_reply("250 2.1.0 Ok\r\n", "451 4.3.0 try later\r\n",
		    "550 5.7.1 Sender rejected\r\n");
		break;
	case SMTP_RCPT:
		model_reply("250 2.1.5 Ok\r\n", "450 4.2.0 greylisted\r\n",
		    "550 5.1.1 No such user\r\n");
		break;
	default:
		model_reply("250 2.0.0 Ok\r\n", "451 4.3.0 try later\r\n", "502 5.5.1 no\r\n");
		break;
	}
}

static void
model_process(void)
{
	size_t off = 0;

	while (off < m.inlen && m.st != SM_CLOSED) {
		char *p = m.in + off;
		size_t avail = m.inlen - off, linelen, consumed;

		if (m.st == SM_BDAT) {
			size_t n = avail < m.bdat_left ? avail : (size_t)m.bdat_left;

			digest_add(&m.msg, p, n);
			off += n;
			m.bdat_left -= n;
			if (m.bdat_left > 0)
				break;
			m.st = SM_CMD;
			if (m.bdat_last)
				end_of_message();
			else
				model_reply("250 2.0.0 chunk received\r\n", "451 4.3.0 try later\r\n",
				    "552 5.3.4 Message too big\r\n");
			continue;
		}
		size_t max = m.st == SM_DATA ? conf->smtp.max_line_length + 4 : SMTP_CMDLINE_MAX;
		enum smtp_line st = smtp_line_split(p, avail, max, &linelen, &consumed);
		if (st == SMTP_LINE_PARTIAL)
			break;
		if (st != SMTP_LINE_OK) {
			fprintf(stderr, "destination got a %s line in state %d: \"%.*s\"\n",
			    st == SMTP_LINE_TOOLONG ? "too long" : "bare LF", m.st,
			    (int)(avail < 80 ? avail : 80), p);
			CHECK(0);
		}
		off += consumed;
		if (m.st == SM_CMD) {
			model_command(p, linelen);
			continue;
		}
		if (m.st == SM_AUTH) {
			/* an AUTH response: base64 or "*", nothing else is relayed */
			CHECK(linelen > 0);
			for (size_t i = 0; i < linelen; i++)
				CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				    "0123456789+/=*", p[i]) != NULL && p[i] != '\0');
			model_auth();
			continue;
		}
		/* DATA: CRLF lines, dot-stuffed, no CR or NUL inside */
		CHECK(memchr(p, '\r', linelen) == NULL && memchr(p, '\0', linelen) == NULL);
		if (linelen == 1 && p[0] == '.') {
			m.st = SM_CMD;
			end_of_message();
			continue;
		}
		size_t content = linelen - (p[0] == '.');
		if (content > conf->smtp.max_line_length) {
			fprintf(stderr, "destination got a message line of %zu octets\n", content);
			CHECK(0);
		}
		digest_add(&m.msg, p + (p[0] == '.'), content);
		digest_add(&m.msg, "\r\n", 2);
	}
	memmove(m.in, m.in + off, m.inlen - off);
	m.inlen -= off;
}

/*
 * The destination is a TCP listener on loopback, so the engine can
 * reconnect after discarding a message: a new connection replaces the
 * model's (greeted with 554 when the next decision says 0 mod 8).
 */
static int lfd = -1;
static struct sockaddr_in laddr;

static void
model_accept(void)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (m.fd >= 0)
		close(m.fd);
	m.fd = fd;
	m.st = SM_CMD;
	m.inlen = 0;
	m.bdat_left = 0;
	digest_init(&m.msg);
	m.activity = true;
	model_send(decide() % 8 == 0 ? "554 5.3.2 No service\r\n" : "220 mx2.fuzz.example ESMTP\r\n");
}

static void
drain_listener(void)
{
	int fd;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(fd);
}

/* A connected TCP pair: the engine's end is returned, the model's is m.fd. */
static int
destination_pair(void)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	socklen_t len = sizeof(laddr);
	int s;

	if (lfd < 0) {
		laddr.sin_family = AF_INET;
		laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		CHECK(lfd >= 0);
		CHECK(bind(lfd, (struct sockaddr *)&laddr, sizeof(laddr)) == 0);
		CHECK(listen(lfd, 64) == 0);
		CHECK(getsockname(lfd, (struct sockaddr *)&laddr, &len) == 0);
	}
	drain_listener();
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0);
	/* closed with a reset: no TIME_WAIT piles up over millions of runs */
	CHECK(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
	CHECK(connect(s, (struct sockaddr *)&laddr, sizeof(laddr)) == 0);
	CHECK(fcntl(s, F_SETFL, O_NONBLOCK) == 0);
	for (int i = 0; i < 1000 && (m.fd = accept4(lfd, NULL, NULL,
	    SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0; i++)
		usleep(100);
	CHECK(m.fd >= 0);
	return s;
}

static void
model_read(void)
{
	for (;;) {
		while (m.fd >= 0) {
			if (m.inlen == sizeof(m.in)) {
				model_process();
				CHECK(m.inlen < sizeof(m.in));
			}
			ssize_t n = recv(m.fd, m.in + m.inlen, sizeof(m.in) - m.inlen, 0);
			if (n > 0) {
				m.inlen += (size_t)n;
				m.activity = true;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			/* the engine closed its side */
			model_process();
			model_close();
		}
		if (m.fd >= 0) {
			model_process();
			return;
		}
		/* closed: the engine may have reconnected */
		model_accept();
		if (m.fd < 0)
			return;
	}
}

/* -------------------------------------------------------------- client */

static struct {
	int fd;
	char buf[1 << 18];
	size_t len;
	bool eof;
} c;

static void
client_read(void)
{
	char sink[4096];

	while (c.fd >= 0 && !c.eof) {
		/* what does not fit is read and dropped: only the start is checked */
		bool full = c.len == sizeof(c.buf);
		ssize_t n = full ? recv(c.fd, sink, sizeof(sink), 0)
		    : recv(c.fd, c.buf + c.len, sizeof(c.buf) - c.len, 0);
		if (n > 0) {
			if (!full)
				c.len += (size_t)n;
			m.activity = true;
		} else if (n == 0) {
			c.eof = true;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else {
			c.eof = true;
		}
	}
}

/* Complete lines the client received: canonical replies; "queued as" only as accepted. */
static void
client_check(void)
{
	const char *p = c.buf, *end = c.buf + c.len;
	unsigned last_q = 0;
	int rcode = 0;
	bool in_reply = false;

	while (p < end) {
		size_t linelen, consumed, textlen;
		const char *text;
		int code;
		bool more;

		if (smtp_line_split(p, (size_t)(end - p), SMTP_REPLYLINE_MAX + 8, &linelen,
		    &consumed) != SMTP_LINE_OK)
			break; /* a reply cut off by a hard close */
		CHECK(smtp_reply_line(p, linelen, &code, &more, &text, &textlen) == 0);
		CHECK(!in_reply || code == rcode);
		rcode = code;
		in_reply = more;
		const char *q = memmem(text, textlen, "queued as Q", 11);
		if (q) {
			unsigned k = (unsigned)strtoul(q + 11, NULL, 10);
			CHECK(code / 100 == 2);
			CHECK(k > last_q && k <= m.accepted);
			last_q = k;
		}
		p += consumed;
	}
}

static void
tick_cb(struct ev_timer *t)
{
	(void)t;
	ev_break();
}

/* Run the loop, the model and the client until nothing moves. */
static void
pump(void)
{
	int idle = 0;

	for (int i = 0; i < 400 && idle < 2; i++) {
		m.activity = false;
		ev_timer_arm(&tick, 0, tick_cb);
		ev_loop();
		ev_timer_cancel(&tick);
		client_read();
		model_read();
		idle = m.activity ? 0 : idle + 1;
	}
}

static void
send_client(const uint8_t *s, size_t n)
{
	int tries = 0;

	while (n > 0 && c.fd >= 0 && tries < 50) {
		ssize_t w = send(c.fd, s, n, MSG_NOSIGNAL);
		if (w > 0) {
			s += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			pump();
			tries++;
			continue;
		}
		return; /* the engine closed the client leg */
	}
}

/*
 * After every event batch: reap, and check the liveness property -- every
 * live session has a running timer, so no peer can pin it by silence.
 */
static void
idle_check(void)
{
	session_reap();
	if (session_unwatched() != 0) {
		fprintf(stderr, "a live session has no running timer\n");
		CHECK(0);
	}
}

/* Held messages beyond 4 KiB go to a spool directory of our own (always empty). */
static char spool[] = "/tmp/fuzz_session.XXXXXX";

static void
spool_remove(void)
{
	(void)rmdir(spool);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int cp[2], sfd;

	if (conf == NULL) {
		conf = calloc(1, sizeof(*conf));
		CHECK(conf != NULL);
	}
	if (size < 2)
		return 0;
	uint8_t cfg = data[0];
	size_t ndec = data[1] < size - 2 ? data[1] : size - 2;
	const uint8_t *script = data + 2 + ndec;
	size_t slen = size - 2 - ndec;

	config_defaults(conf);
	if (spool[sizeof(spool) - 2] == 'X') {
		CHECK(mkdtemp(spool) != NULL);
		atexit(spool_remove);
	}
	snprintf(conf->spool_dir, sizeof(conf->spool_dir), "%s", spool);
	conf->smtp.hold_memory = 4096;
	conf->smtp.bare_newline_normalize = cfg & 1;
	conf->smtp.allow_chunking = cfg & 2;
	conf->smtp.max_line_length = cfg & 4 ? 16 : 998;
	conf->smtp.max_recipients = cfg & 8 ? 3 : 1000;
	insp_mode = ((cfg >> 4) & 3) % 3;
	conf->smtp.allow_vrfy = conf->smtp.allow_expn = cfg & 0x40;
	conf->smtp.allow_auth = cfg & 0x80;

	memset(&m, 0, offsetof(struct model, in));
	digest_init(&m.msg);
	memset(&seen, 0, sizeof(seen));
	m.dec = data + 2;
	m.ndec = ndec;
	c.len = 0;
	c.eof = false;

	ev_init();
	ev_set_idle_hook(idle_check);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, cp) == 0);
	c.fd = cp[0];
	sfd = destination_pair();
	m.st = SM_CMD;
	CHECK(session_attach(cp[1], sfd, conf, &fuzz_insp) != NULL);

	/* the greeting */
	switch (decide() % 8) {
	case 0:
		model_send("554 5.3.2 No service\r\n");
		break;
	case 1:
		model_send("421 4.3.2 Too busy\r\n");
		model_close();
		break;
	case 2:
		model_send("220-mx.fuzz.example\r\n220 ESMTP\r\n");
		break;
	default:
		model_send("220 mx.fuzz.example ESMTP\r\n");
		break;
	}
	pump();

	/* the client's writes */
	size_t start = 0;
	for (size_t i = 0; i <= slen; i++) {
		if (i < slen && script[i] != 0xfe && script[i] != 0xff)
			continue;
		send_client(script + start, i - start);
		if (i < slen && script[i] == 0xff && c.fd >= 0)
			shutdown(c.fd, SHUT_WR);
		pump();
		start = i + 1;
	}

	/* both peers go away: the session must end */
	close(c.fd);
	c.fd = -1;
	model_close();
	for (int i = 0; i < 100 && session_count() > 0; i++) {
		ev_timer_arm(&tick, 0, tick_cb);
		ev_loop();
		ev_timer_cancel(&tick);
		drain_listener(); /* a reconnection under way finds nobody */
	}
	if (session_count() != 0) {
		fprintf(stderr, "the session outlived both of its peers\n");
		CHECK(0);
	}
	session_reap();
	/* FUZZ_SESSION_TRACE=1: what the client received, when replaying an input */
	if (getenv("FUZZ_SESSION_TRACE"))
		fprintf(stderr, "client received:\n%.*s\naccepted %u\n", (int)c.len, c.buf,
		    m.accepted);
	client_check();
	return 0;
}
