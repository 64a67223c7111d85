/*
 * qadmin - list, show, delete and release quarantined messages (see
 * qadmin.h).  Blocking I/O: this is a command, not the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config.h"
#include "qadmin.h"
#include "quarantine.h"
#include "smtp_parse.h"
#include "tls.h"
#include "util.h"

#define LINE_MAX_ 2048   /* a reply line we read */
#define REPLY_MAX 100    /* lines of one reply */

static const struct config *conf;
static char who[256];

static void
set_who(void)
{
	const char *a = getenv("SMTPGW_ADMIN"), *ssh = getenv("SSH_CLIENT");
	struct passwd *pw;
	char name[128], from[64] = "";

	if (a && *a)
		snprintf(name, sizeof(name), "%s", a);
	else if ((pw = getpwuid(getuid())) != NULL)
		snprintf(name, sizeof(name), "%s", pw->pw_name);
	else
		snprintf(name, sizeof(name), "uid%u", (unsigned)getuid());
	if (ssh && *ssh)
		snprintf(from, sizeof(from), "%.*s", (int)strcspn(ssh, " "), ssh);
	/* one token: no spaces or controls in a log field */
	snprintf(who, sizeof(who), "%s%s%s", name, from[0] ? "@" : "", from);
	for (char *p = who; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '"')
			*p = '_';
}

/* An audit line, and syslog when the daemon logs there. */
static void PRINTF_LIKE(1, 2)
audit(const char *fmt, ...)
{
	char line[1500];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	quarantine_audit(conf->quarantine_dir, "%s", line);
	if (conf->log == LOG_TO_SYSLOG) {
		openlog("smtpgw", LOG_PID, LOG_MAIL);
		syslog(LOG_NOTICE, "quarantine %s", line);
		closelog();
	}
}

static void
fmt_time(int64_t t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/* ------------------------------------------------------------ list, show */

/*
 * A value of a record for the admin's terminal: control octets become '?'
 * (a record is written by a worker; no escape sequence reaches the
 * screen).  One of NSAFE rotating buffers.
 */
#define NSAFE 8
static const char *
safe(const char *v)
{
	static char bufs[NSAFE][QUARANTINE_VALUE_MAX + 1];
	static unsigned next;
	char *b = bufs[next++ % NSAFE];
	size_t i;

	for (i = 0; v[i] && i < QUARANTINE_VALUE_MAX; i++)
		b[i] = (unsigned char)v[i] < 0x20 || v[i] == 0x7f ? '?' : v[i];
	b[i] = '\0';
	return b;
}

static int
by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
cmd_list(void)
{
	DIR *d = opendir(conf->quarantine_dir);
	char **ids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;

	if (d == NULL) {
		if (errno == ENOENT)
			return 0; /* nothing was ever kept */
		fprintf(stderr, "smtpgw: quarantine-dir %s: %s\n", conf->quarantine_dir,
		    strerror(errno));
		return 1;
	}
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l != 32 || strcmp(de->d_name + 28, ".msg") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			ids = xrealloc(ids, cap * sizeof(*ids));
		}
		ids[n++] = xstrndup(de->d_name, 28);
	}
	closedir(d);
	if (n)
		qsort(ids, n, sizeof(*ids), by_str);
	for (size_t i = 0; i < n; i++) {
		struct qhead h;
		char why[200], t[32], state[512];
		int fd = quarantine_open(conf->quarantine_dir, ids[i], &h, why, sizeof(why));

		if (fd < 0) {
			printf("%s\t-\t-\t-\tdamaged\t-\t-\t-\t%s\n", ids[i], why);
			free(ids[i]);
			continue;
		}
		close(fd);
		fmt_time(h.rec.time, t, sizeof(t));
		quarantine_state(conf->quarantine_dir, ids[i], state, sizeof(state));
		printf("%s\t%s\t%s\t%s\t%s\t%" PRIu64 "\t<%s>\t%u\t%s\n", h.rec.id, t,
		    h.rec.inbound ? "inbound" : "outbound", quarantine_verdict_name(h.rec.verdict),
		    !strncmp(state, "state=released", 14) ? "released" : state[0] ? "releasing" :
		    "held", h.rec.size, h.rec.mail_from, h.rec.nrcpts, safe(h.rec.reason));
		quarantine_head_free(&h);
		free(ids[i]);
	}
	free(ids);
	return 0;
}

static int
cmd_show(const char *id, bool raw)
{
	struct qhead h;
	char why[200], t[32], state[512];
	char buf[65536];
	uint64_t off, left;
	int fd = quarantine_open(conf->quarantine_dir, id, &h, why, sizeof(why));
	bool bol = true;

	if (fd < 0) {
		fprintf(stderr, "smtpgw: %s\n", why);
		return 1;
	}
	off = h.head_len;
	left = h.rec.size;
	if (!raw) {
		const struct qrec *r = &h.rec;
		fmt_time(r->time, t, sizeof(t));
		quarantine_state(conf->quarantine_dir, id, state, sizeof(state));
		printf("id:            %s\nkept:          %s UTC\nsession:       %012" PRIx64 "\n",
		    r->id, t, r->session);
		printf("action:        %s (%s)\nclient:        %s (HELO %s, TLS %s)\n", safe(r->action),
		    r->inbound ? "inbound" : "outbound", safe(r->client), safe(r->helo),
		    safe(r->client_tls));
		printf("destination:   %s%s%s (TLS %s)\n", r->server, r->server_name[0] ? " name " : "",
		    r->server_name, r->server_tls ? "yes" : "no");
		printf("sender:        <%s>\n", r->mail_from);
		for (unsigned i = 0; i < r->nrcpts; i++)
			printf("recipient:     <%s>\n", r->rcpts[i]);
		printf("verdict:       %s\nreason:        %s\n", quarantine_verdict_name(r->verdict),
		    safe(r->reason));
		if (r->virus[0])
			printf("virus:         %s\n", safe(r->virus));
		if (r->spam_score[0])
			printf("spam score:    %s\n", safe(r->spam_score));
		if (r->reply[0])
			printf("reply:         %s\n", safe(r->reply));
		printf("size:          %" PRIu64 " octets\nstate:         %s\n", r->size,
		    state[0] ? state : "held (not released)");
		printf("\n");
	}
	/* raw: everything; show: the header section only */
	while (left > 0) {
		ssize_t n = pread(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf),
		    (off_t)off);
		size_t use;

		if (n <= 0) {
			fprintf(stderr, "smtpgw: %s: read error\n", id);
			quarantine_head_free(&h);
			close(fd);
			return 1;
		}
		use = (size_t)n;
		if (!raw) {
			/* up to the blank line that ends the header section */
			for (size_t i = 0; i < (size_t)n; i++) {
				if (buf[i] == '\n') {
					if (bol) {
						use = i + 1;
						left = (uint64_t)n; /* stop after this write */
						break;
					}
					bol = true;
				} else if (buf[i] != '\r') {
					bol = false;
				}
			}
		}
		if (fwrite(buf, 1, use, stdout) != use)
			break;
		off += (uint64_t)n;
		left -= (uint64_t)n;
	}
	quarantine_head_free(&h);
	close(fd);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int
cmd_delete(const char *id)
{
	struct qhead h;
	char why[200], path[CONF_PATH_MAX + 64];
	int fd = quarantine_open(conf->quarantine_dir, id, &h, why, sizeof(why));

	if (fd < 0) {
		fprintf(stderr, "smtpgw: %s\n", why);
		return 1;
	}
	close(fd);
	snprintf(path, sizeof(path), "%s/%s.msg", conf->quarantine_dir, id);
	if (unlink(path) < 0) {
		fprintf(stderr, "smtpgw: %s: %s\n", path, strerror(errno));
		quarantine_head_free(&h);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/%s.released", conf->quarantine_dir, id);
	(void)unlink(path);
	audit("delete id=%s by=%s from=<%s> rcpts=%u size=%" PRIu64, id, who, h.rec.mail_from,
	    h.rec.nrcpts, h.rec.size);
	printf("deleted %s\n", id);
	quarantine_head_free(&h);
	return 0;
}

/* ------------------------------------------------------------ SMTP client */

struct conn {
	int fd;
	SSL *ssl;
	char in[LINE_MAX_ * 2];
	size_t inlen;
	char err[1400];
	char last[600];  /* the last reply, one line (for messages) */
};

static int
conn_wait(struct conn *c, short ev, unsigned timeout_s)
{
	struct pollfd p = { .fd = c->fd, .events = ev };
	int r;

	do
		r = poll(&p, 1, (int)timeout_s * 1000);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		snprintf(c->err, sizeof(c->err), "timeout after %u s", timeout_s);
		return -1;
	}
	return r < 0 ? -1 : 0;
}

static int
conn_write(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;

		if (c->ssl) {
			int r = SSL_write(c->ssl, p, (int)(n > 65536 ? 65536 : n));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if ((e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) &&
				    conn_wait(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
				    QADMIN_TIMEOUT_S) == 0)
					continue;
				snprintf(c->err, sizeof(c->err), "TLS write error");
				return -1;
			}
			w = r;
		} else {
			w = send(c->fd, p, n, MSG_NOSIGNAL);
			if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
				if (conn_wait(c, POLLOUT, QADMIN_TIMEOUT_S) < 0)
					return -1;
				continue;
			}
			if (w <= 0) {
				snprintf(c->err, sizeof(c->err), "write error: %s", strerror(errno));
				return -1;
			}
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
conn_fill(struct conn *c, unsigned timeout_s)
{
	for (;;) {
		ssize_t r;

		if (c->inlen == sizeof(c->in)) {
			snprintf(c->err, sizeof(c->err), "reply line too long");
			return -1;
		}
		if (c->ssl) {
			int n = SSL_read(c->ssl, c->in + c->inlen, (int)(sizeof(c->in) - c->inlen));
			if (n <= 0) {
				int e = SSL_get_error(c->ssl, n);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
					if (conn_wait(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
					    timeout_s) < 0)
						return -1;
					continue;
				}
				snprintf(c->err, sizeof(c->err), "connection closed");
				return -1;
			}
			r = n;
		} else {
			if (conn_wait(c, POLLIN, timeout_s) < 0)
				return -1;
			r = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				snprintf(c->err, sizeof(c->err), "connection closed");
				return -1;
			}
		}
		c->inlen += (size_t)r;
		return 0;
	}
}

/*
 * One reply: its code, and each line's text handed to cb (EHLO's
 * keywords).  -1 on a malformed reply or a lost connection.
 */
static int
conn_reply(struct conn *c, unsigned timeout_s, void (*cb)(void *, const char *, size_t),
    void *arg)
{
	int code = 0, lines = 0;

	c->last[0] = '\0';
	for (;;) {
		char *nl = memchr(c->in, '\n', c->inlen);
		const char *text;
		size_t len, tlen;
		int lc;
		bool more;

		if (nl == NULL) {
			if (conn_fill(c, timeout_s) < 0)
				return -1;
			continue;
		}
		len = (size_t)(nl - c->in);
		if (len > 0 && c->in[len - 1] == '\r')
			len--;
		if (smtp_reply_line(c->in, len, &lc, &more, &text, &tlen) < 0 ||
		    (code && lc != code) || ++lines > REPLY_MAX) {
			snprintf(c->err, sizeof(c->err), "malformed reply \"%.80s\"", c->in);
			return -1;
		}
		code = lc;
		if (cb)
			cb(arg, text, tlen);
		if (!more)
			snprintf(c->last, sizeof(c->last), "%.*s", (int)(len > 500 ? 500 : len), c->in);
		memmove(c->in, nl + 1, c->inlen - (size_t)(nl + 1 - c->in));
		c->inlen -= (size_t)(nl + 1 - c->in);
		if (!more)
			break;
	}
	for (char *p = c->last; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	return code;
}

static int PRINTF_LIKE(3, 4)
command(struct conn *c, unsigned timeout_s, const char *fmt, ...)
{
	char line[1100];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		snprintf(c->err, sizeof(c->err), "command too long");
		return -1;
	}
	line[n++] = '\r';
	line[n++] = '\n';
	if (conn_write(c, line, (size_t)n) < 0)
		return -1;
	return conn_reply(c, timeout_s, NULL, NULL);
}

struct ehlo {
	bool starttls, eightbit, smtputf8;
};

static void
ehlo_kw(void *arg, const char *t, size_t n)
{
	struct ehlo *e = arg;
	size_t kw = strcspn(t, " ");

	if (kw > n)
		kw = n;
	if (kw == 8 && !strncasecmp(t, "STARTTLS", 8))
		e->starttls = true;
	else if (kw == 8 && !strncasecmp(t, "8BITMIME", 8))
		e->eightbit = true;
	else if (kw == 8 && !strncasecmp(t, "SMTPUTF8", 8))
		e->smtputf8 = true;
}

static int
do_ehlo(struct conn *c, const char *name, struct ehlo *e)
{
	char line[300];
	int code;

	memset(e, 0, sizeof(*e));
	snprintf(line, sizeof(line), "EHLO %s\r\n", name);
	if (conn_write(c, line, strlen(line)) < 0)
		return -1;
	code = conn_reply(c, QADMIN_TIMEOUT_S, ehlo_kw, e);
	if (code == 250)
		return 0;
	if (code > 0) {
		/* an old server: HELO, no extensions */
		memset(e, 0, sizeof(*e));
		if (command(c, QADMIN_TIMEOUT_S, "HELO %s", name) == 250)
			return 0;
		snprintf(c->err, sizeof(c->err), "HELO refused: %s", c->last);
	}
	return -1;
}

/* TLS on the connection, judged with the action's profile; -1 to stop. */
static int
start_tls(struct conn *c, int profile, const char *refname)
{
	const struct conf_tls_profile *p = &conf->profiles[profile];
	SSL_CTX *sctx = NULL, *cctx = NULL;
	char err[400], warn[400];
	struct tls_verdict v;
	int r;

	if (tls_profile_ctx(conf, profile, &sctx, &cctx, err, sizeof(err), warn,
	    sizeof(warn)) < 0) {
		snprintf(c->err, sizeof(c->err), "TLS profile %s: %s", p->name, err);
		return -1;
	}
	SSL_CTX_free(sctx);
	c->ssl = SSL_new(cctx);
	SSL_CTX_free(cctx); /* the SSL keeps its reference */
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		snprintf(c->err, sizeof(c->err), "TLS setup failed");
		return -1;
	}
	if (refname[0] && config_valid_hostname(refname))
		SSL_set_tlsext_host_name(c->ssl, refname);
	while ((r = SSL_connect(c->ssl)) != 1) {
		int e = SSL_get_error(c->ssl, r);
		if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
		    conn_wait(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
		    QADMIN_TIMEOUT_S) == 0)
			continue;
		unsigned long ee = ERR_get_error();
		snprintf(c->err, sizeof(c->err), "TLS handshake failed: %s",
		    ee ? ERR_reason_error_string(ee) : "connection closed");
		return -1;
	}
	tls_judge(p, c->ssl, refname[0] ? refname : NULL, &v);
	if (!v.ok) {
		bool block = v.noref_failed || v.action == CERTFAIL_BLOCK;
		fprintf(stderr, "smtpgw: release: the destination's certificate fails "
		    "validation (%s%s%s): %s\n", tls_verdict_class(&v), v.detail[0] ? ", " : "",
		    v.detail, block ? "the profile blocks it" : "the profile lets it pass");
		if (block) {
			snprintf(c->err, sizeof(c->err), "certificate refused by TLS profile %s (%s)",
			    p->name, tls_verdict_class(&v));
			return -1;
		}
	}
	return 0;
}

static int
connect_to(const char *server, struct conn *c)
{
	struct conf_scan_server a;
	char spec[CONF_SCAN_ADDR_MAX + 8], why[200];
	int one = 1;

	snprintf(spec, sizeof(spec), "tcp:%s", server);
	if (config_scan_server_parse(spec, &a, why, sizeof(why)) < 0) {
		snprintf(c->err, sizeof(c->err), "destination \"%s\": %s", server, why);
		return -1;
	}
	c->fd = socket(a.addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(c->err, sizeof(c->err), "socket: %s", strerror(errno));
		return -1;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, &a.addr.sa, a.addrlen) < 0 && errno != EINPROGRESS) {
		snprintf(c->err, sizeof(c->err), "connect to %s: %s", server, strerror(errno));
		return -1;
	}
	if (conn_wait(c, POLLOUT, QADMIN_TIMEOUT_S) < 0) {
		snprintf(c->err, sizeof(c->err), "connect to %s: timeout", server);
		return -1;
	}
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
		snprintf(c->err, sizeof(c->err), "connect to %s: %s", server, strerror(soerr));
		return -1;
	}
	return 0;
}

static bool
has_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* The message, dot-stuffed, then the final dot; eightbit set when any octet is. */
static int
send_message(struct conn *c, int fd, uint64_t off, uint64_t size)
{
	char in[65536], out[2 * sizeof(in) + 8];
	bool bol = true, crlf_end = true;

	while (size > 0) {
		ssize_t n = pread(fd, in, size < sizeof(in) ? (size_t)size : sizeof(in), (off_t)off);
		size_t o = 0;

		if (n <= 0) {
			snprintf(c->err, sizeof(c->err), "reading the record failed");
			return -1;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (bol && in[i] == '.')
				out[o++] = '.';
			out[o++] = in[i];
			bol = in[i] == '\n';
		}
		crlf_end = n >= 2 ? (in[n - 2] == '\r' && in[n - 1] == '\n') :
		    (in[n - 1] == '\n' && crlf_end);
		if (conn_write(c, out, o) < 0)
			return -1;
		off += (uint64_t)n;
		size -= (uint64_t)n;
	}
	/* a held message is CRLF lines; anything else gets its line ended */
	if (!crlf_end && conn_write(c, "\r\n", 2) < 0)
		return -1;
	return conn_write(c, ".\r\n", 3);
}

static bool
message_8bit(int fd, uint64_t off, uint64_t size)
{
	char buf[65536];

	while (size > 0) {
		ssize_t n = pread(fd, buf, size < sizeof(buf) ? (size_t)size : sizeof(buf), (off_t)off);
		if (n <= 0)
			return false;
		for (ssize_t i = 0; i < n; i++)
			if ((unsigned char)buf[i] >= 0x80)
				return true;
		off += (uint64_t)n;
		size -= (uint64_t)n;
	}
	return false;
}

/* Port of "ADDR:PORT" / "[ADDR]:PORT". */
static unsigned
port_of(const char *server)
{
	const char *colon = strrchr(server, ':');

	return colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 25;
}

static int
cmd_release(const char *id)
{
	char why[300], mark[CONF_PATH_MAX + 64], helo[256], note[2400], refused[700] = "";
	struct qhead h;
	struct conn c;
	struct ehlo e;
	const struct qrec *r;
	const struct conf_action *act = NULL;
	int fd, mfd, code, profile = 0, accepted = 0;
	bool tls_want, tls_must, implicit, eight;
	size_t rl = 0;

	memset(&c, 0, sizeof(c));
	c.fd = -1;
	fd = quarantine_open(conf->quarantine_dir, id, &h, why, sizeof(why));
	if (fd < 0) {
		fprintf(stderr, "smtpgw: %s\n", why);
		return 1;
	}
	r = &h.rec;
	/* once: the mark first, exclusively */
	snprintf(mark, sizeof(mark), "%s/%s.released", conf->quarantine_dir, id);
	mfd = open(mark, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (mfd < 0) {
		char state[512];
		quarantine_state(conf->quarantine_dir, id, state, sizeof(state));
		fprintf(stderr, "smtpgw: %s was %s: refused (a message is released once)\n", id,
		    errno == EEXIST ? (strncmp(state, "state=released", 14) ? "being released "
		    "(or a release was interrupted: check the destination, then delete the "
		    ".released mark by hand to try again)" : state) : strerror(errno));
		audit("release id=%s by=%s result=refused reason=already-%s", id, who,
		    strncmp(state, "state=released", 14) ? "releasing" : "released");
		quarantine_head_free(&h);
		close(fd);
		return 1;
	}
	dprintf(mfd, "state=releasing by=%s time=%lld\n", who, (long long)time(NULL));

	for (int i = 0; i < conf->n_actions; i++)
		if (!strcmp(conf->actions[i].name, r->action))
			act = &conf->actions[i];
	if (act) {
		profile = act->profile >= 0 ? act->profile : 0;
	}
	implicit = port_of(r->server) == 465;
	tls_want = r->server_tls || (act && act->recipient_enc != ENC_NONE);
	tls_must = r->server_tls || (act && act->recipient_enc == ENC_REQUIRED);
	if (gethostname(helo, sizeof(helo)) < 0 || !config_valid_hostname(helo))
		snprintf(helo, sizeof(helo), "smtpgw.invalid");

	if (connect_to(r->server, &c) < 0)
		goto fail;
	if (implicit && start_tls(&c, profile, r->server_name) < 0)
		goto fail;
	code = conn_reply(&c, QADMIN_TIMEOUT_S, NULL, NULL);
	if (code != 220) {
		if (code > 0)
			snprintf(c.err, sizeof(c.err), "greeting: %s", c.last);
		goto fail;
	}
	if (do_ehlo(&c, helo, &e) < 0)
		goto fail;
	if (!implicit && tls_want) {
		if (e.starttls && command(&c, QADMIN_TIMEOUT_S, "STARTTLS") == 220) {
			if (c.inlen) {
				/* anything before the handshake could be injected in the clear */
				snprintf(c.err, sizeof(c.err), "the destination sent data after its 220 "
				    "to STARTTLS");
				goto fail;
			}
			if (start_tls(&c, profile, r->server_name) < 0 || do_ehlo(&c, helo, &e) < 0)
				goto fail;
		} else if (tls_must) {
			snprintf(c.err, sizeof(c.err), "TLS is required (%s) but the destination does "
			    "not offer STARTTLS%s%s", r->server_tls ? "the original was encrypted" :
			    "recipient-encryption", c.last[0] ? ": " : "", c.last);
			goto fail;
		}
	}
	eight = message_8bit(fd, h.head_len, r->size);
	code = command(&c, QADMIN_TIMEOUT_S, "MAIL FROM:<%s>%s%s", r->mail_from,
	    eight && e.eightbit ? " BODY=8BITMIME" : "",
	    e.smtputf8 && has_8bit(r->mail_from) ? " SMTPUTF8" : "");
	if (code != 250) {
		if (code > 0)
			snprintf(c.err, sizeof(c.err), "MAIL FROM refused: %s", c.last);
		goto fail;
	}
	for (unsigned i = 0; i < r->nrcpts; i++) {
		code = command(&c, QADMIN_TIMEOUT_S, "RCPT TO:<%s>", r->rcpts[i]);
		if (code < 0)
			goto fail;
		if (code / 100 == 2) {
			accepted++;
		} else {
			int m = snprintf(refused + rl, sizeof(refused) - rl, "%s<%s> %d", rl ? ", " : "",
			    r->rcpts[i], code);
			if (m > 0 && (size_t)m < sizeof(refused) - rl)
				rl += (size_t)m;
			fprintf(stderr, "smtpgw: release: <%s> refused: %s\n", r->rcpts[i], c.last);
		}
	}
	if (accepted == 0) {
		snprintf(c.err, sizeof(c.err), "every recipient was refused (%s)", refused);
		goto fail;
	}
	code = command(&c, QADMIN_TIMEOUT_S, "DATA");
	if (code != 354) {
		if (code > 0)
			snprintf(c.err, sizeof(c.err), "DATA refused: %s", c.last);
		goto fail;
	}
	if (send_message(&c, fd, h.head_len, r->size) < 0)
		goto fail;
	code = conn_reply(&c, QADMIN_DATA_TIMEOUT_S, NULL, NULL);
	if (code != 250) {
		if (code > 0)
			snprintf(c.err, sizeof(c.err), "the message was refused: %s", c.last);
		goto fail;
	}
	/* Delivered: from here on it stays released, whatever follows. */
	snprintf(note, sizeof(note), "state=released by=%s time=%lld destination=%s tls=%s "
	    "accepted=%d refused=%s reply=%s\n", who, (long long)time(NULL), r->server,
	    c.ssl ? "yes" : "no", accepted, refused[0] ? refused : "none", c.last);
	if (ftruncate(mfd, 0) < 0 || pwrite(mfd, note, strlen(note), 0) < 0)
		fprintf(stderr, "smtpgw: release: writing %s: %s\n", mark, strerror(errno));
	(void)command(&c, QADMIN_TIMEOUT_S, "QUIT");
	audit("release id=%s by=%s result=delivered destination=%s tls=%s from=<%s> "
	    "accepted=%d refused=%s reply=\"%s\"", id, who, r->server, c.ssl ? "yes" : "no",
	    r->mail_from, accepted, refused[0] ? refused : "none", c.last);
	printf("released %s to %s (%d of %u recipients): %s\n", id, r->server, accepted,
	    r->nrcpts, c.last);
	close(mfd);
	if (c.ssl)
		SSL_free(c.ssl);
	close(c.fd);
	close(fd);
	quarantine_head_free(&h);
	return 0;
fail:
	/* nothing was delivered: the mark goes, a later release may try again */
	close(mfd);
	unlink(mark);
	if (c.err[0] == '\0')
		snprintf(c.err, sizeof(c.err), "%s", c.last[0] ? c.last : "failed");
	audit("release id=%s by=%s result=failed destination=%s error=\"%s\"", id, who,
	    r->server, c.err);
	fprintf(stderr, "smtpgw: release %s to %s failed: %s (not released; it can be tried "
	    "again)\n", id, r->server, c.err);
	if (c.ssl)
		SSL_free(c.ssl);
	if (c.fd >= 0)
		close(c.fd);
	close(fd);
	quarantine_head_free(&h);
	return 1;
}

int
qadmin_main(const struct config *c, int argc, char **argv)
{
	const char *verb = argc > 0 ? argv[0] : "";

	conf = c;
	set_who();
	if (!strcmp(verb, "list") && argc == 1)
		return cmd_list();
	if (argc != 2) {
		fprintf(stderr, "usage: smtpgw [-c FILE] -Q list | show ID | raw ID | delete ID | "
		    "release ID\n");
		return 2;
	}
	if (!quarantine_valid_id(argv[1])) {
		fprintf(stderr, "smtpgw: \"%s\" is not a quarantine ID (like "
		    "1764936000-4f2a91c0e1d3-0001; smtpgwctl quarantine list)\n", argv[1]);
		return 2;
	}
	if (!strcmp(verb, "show"))
		return cmd_show(argv[1], false);
	if (!strcmp(verb, "raw"))
		return cmd_show(argv[1], true);
	if (!strcmp(verb, "delete"))
		return cmd_delete(argv[1]);
	if (!strcmp(verb, "release"))
		return cmd_release(argv[1]);
	fprintf(stderr, "smtpgw: -Q: unknown verb \"%s\" (list show raw delete release)\n", verb);
	return 2;
}
