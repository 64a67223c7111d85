/*
 * NAME
 *	tlssink - discarding SMTP server with STARTTLS and implicit TLS, for bench/run
 * SUMMARY
 *	tlssink -c CERT -k KEY [-p PORT] [-s PORT] [-u USER] [-n]
 * DESCRIPTION
 *	What smtp-sink is for plain SMTP, with TLS: listens on every address
 *	of its network namespace, on PORT (default 25, STARTTLS offered) and
 *	on the -s PORT (default 465, implicit TLS), accepts every command and
 *	every message and throws the message away.  One thread per
 *	connection (so it holds thousands of idle sessions as easily as it
 *	serves short ones); EHLO offers PIPELINING, 8BITMIME and, before TLS
 *	on the STARTTLS port, STARTTLS.  Replies are sent as soon as a
 *	command is read; the end of data is found with a scan that skips
 *	from CR to CR.
 *
 *	TLS: OpenSSL's defaults for a server (TLS 1.2-1.3, its default
 *	groups and suites), CERT (the chain, leaf first) and KEY.  Like
 *	Postfix, it issues session tickets, so a client that keeps them can
 *	resume; -n turns tickets and the session cache off (every handshake
 *	full).
 *
 *	After binding, it switches to USER (default nobody) when started as
 *	root.  SIGTERM ends it.  Counts of sessions and messages go to stderr
 *	at exit.
 * SECURITY
 *	A benchmark tool for the testbed's private namespaces.  Bounded line
 *	length (1000) and read timeouts (300 s); no other limits.
 */
#ifndef _GNU_SOURCE /* meson passes it for the whole project */
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define LINE_MAX_LEN 1000
#define IO_TIMEOUT_S 300
#define HOSTNAME "sink.ext.test"

struct conn {
	int fd;
	bool implicit; /* accepted on the implicit-TLS port */
	SSL *ssl;
	size_t off, len;
	char buf[16384];
};

static SSL_CTX *ctx;
static atomic_long n_sessions, n_messages, n_tls_failed;

static ssize_t
c_read(struct conn *c)
{
	if (c->off == c->len)
		c->off = c->len = 0;
	if (c->len == sizeof(c->buf)) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
		if (c->len == sizeof(c->buf))
			return -1; /* a line longer than the buffer */
	}
	if (c->ssl) {
		int r = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - c->len));
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
		return r;
	}
	for (;;) {
		ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
		return r;
	}
}

static int
c_write(struct conn *c, const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		ssize_t r;
		if (c->ssl) {
			int w = SSL_write(c->ssl, s, (int)n);
			r = w > 0 ? w : -1;
		} else {
			r = send(c->fd, s, n, MSG_NOSIGNAL);
			if (r < 0 && errno == EINTR)
				continue;
		}
		if (r <= 0)
			return -1;
		s += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Next command line into line (CRLF stripped); -1 on EOF, error or overlong line. */
static int
read_line(struct conn *c, char *line)
{
	for (;;) {
		char *p = c->buf + c->off;
		char *nl = memchr(p, '\n', c->len - c->off);

		if (nl) {
			size_t n = (size_t)(nl - p);
			if (n > 0 && p[n - 1] == '\r')
				n--;
			if (n >= LINE_MAX_LEN)
				return -1;
			memcpy(line, p, n);
			line[n] = '\0';
			c->off = (size_t)(nl + 1 - c->buf);
			return 0;
		}
		if (c->len - c->off >= LINE_MAX_LEN)
			return -1;
		if (c_read(c) < 0)
			return -1;
	}
}

/*
 * Skip message content up to and including CRLF.CRLF.  *st counts how
 * much of "\r\n.\r\n" was matched (2 at the start: DATA's own CRLF).
 * Returns true once the end was found.
 */
static bool
scan_end(struct conn *c, int *st)
{
	static const char pat[] = "\r\n.\r\n";
	const char *p = c->buf + c->off, *e = c->buf + c->len;

	while (p < e) {
		if (*st == 0) {
			p = memchr(p, '\r', (size_t)(e - p));
			if (p == NULL) {
				p = e;
				break;
			}
		}
		if (*p == pat[*st]) {
			if (++*st == 5) {
				c->off = (size_t)(p + 1 - c->buf);
				return true;
			}
		} else {
			*st = *p == '\r' ? 1 : 0;
		}
		p++;
	}
	c->off = c->len;
	return false;
}

static int
start_tls(struct conn *c)
{
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_accept(c->ssl) != 1) {
		atomic_fetch_add(&n_tls_failed, 1);
		return -1;
	}
	return 0;
}

static void
serve(struct conn *c)
{
	char line[LINE_MAX_LEN];

	if (c->implicit && start_tls(c) < 0)
		return;
	if (c_write(c, "220 " HOSTNAME " ESMTP tlssink\r\n") < 0)
		return;
	while (read_line(c, line) == 0) {
		const char *r = "250 2.0.0 Ok\r\n";

		if (!strncasecmp(line, "EHLO", 4)) {
			r = (c->ssl || c->implicit) ?
			    "250-" HOSTNAME "\r\n250-PIPELINING\r\n250 8BITMIME\r\n" :
			    "250-" HOSTNAME "\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 STARTTLS\r\n";
		} else if (!strncasecmp(line, "HELO", 4)) {
			r = "250 " HOSTNAME "\r\n";
		} else if (!strncasecmp(line, "STARTTLS", 8)) {
			if (c->ssl || c->implicit) {
				r = "503 5.5.1 TLS already active\r\n";
			} else {
				if (c_write(c, "220 2.0.0 Ready to start TLS\r\n") < 0)
					return;
				/* At this point there must not be any pending plaintext. */
				if (c->off != c->len)
					return;
				c->off = c->len = 0;
				if (start_tls(c) < 0)
					return;
				continue;
			}
		} else if (!strncasecmp(line, "DATA", 4)) {
			int st = 2;
			if (c_write(c, "354 End data with <CR><LF>.<CR><LF>\r\n") < 0)
				return;
			while (!scan_end(c, &st))
				if (c_read(c) < 0)
					return;
			atomic_fetch_add(&n_messages, 1);
			r = "250 2.0.0 Ok: discarded\r\n";
		} else if (!strncasecmp(line, "QUIT", 4)) {
			(void)c_write(c, "221 2.0.0 Bye\r\n");
			return;
		} else if (strncasecmp(line, "MAIL", 4) && strncasecmp(line, "RCPT", 4) &&
		    strncasecmp(line, "RSET", 4) && strncasecmp(line, "NOOP", 4)) {
			r = "502 5.5.2 Command not recognized\r\n";
		}
		if (c_write(c, r) < 0)
			return;
	}
}

static void *
conn_thread(void *arg)
{
	struct conn *c = arg;

	atomic_fetch_add(&n_sessions, 1);
	serve(c);
	if (c->ssl) {
		SSL_set_quiet_shutdown(c->ssl, 1);
		SSL_free(c->ssl);
	}
	close(c->fd);
	free(c);
	return NULL;
}

struct listener {
	int fd;
	bool implicit;
};

static void *
accept_thread(void *arg)
{
	const struct listener *l = arg;
	pthread_attr_t attr;
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	int one = 1;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		struct conn *c;
		pthread_t t;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
			    errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				if (errno != EINTR && errno != ECONNABORTED)
					usleep(10000);
				continue;
			}
			perror("tlssink: accept");
			exit(1);
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->implicit = l->implicit;
		if (pthread_create(&t, &attr, conn_thread, c) != 0) {
			close(fd);
			free(c);
		}
	}
	return NULL;
}

static int
listen_on(int port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
		.sin6_addr = IN6ADDR_ANY_INIT };
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, zero = 0;

	if (fd < 0)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *user = "nobody";
	int port = 25, sport = 465, opt, sig;
	bool no_tickets = false;
	struct listener l[2];
	pthread_t t;
	sigset_t set;

	while ((opt = getopt(argc, argv, "c:k:p:s:u:n")) != -1) {
		switch (opt) {
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 's': sport = atoi(optarg); break;
		case 'u': user = optarg; break;
		case 'n': no_tickets = true; break;
		default: goto usage;
		}
	}
	if (cert == NULL || key == NULL)
		goto usage;
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(stderr, "tlssink: cannot load %s / %s\n", cert, key);
		ERR_print_errors_fp(stderr);
		return 1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
	if (no_tickets) {
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	} else {
		SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"tlssink", 7);
	}
	l[0].fd = listen_on(port);
	l[0].implicit = false;
	l[1].fd = listen_on(sport);
	l[1].implicit = true;
	if (l[0].fd < 0 || l[1].fd < 0) {
		perror("tlssink: listen");
		return 1;
	}
	if (getuid() == 0) {
		struct passwd *pw = getpwnam(user);
		if (pw == NULL || setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 ||
		    setuid(pw->pw_uid) < 0) {
			fprintf(stderr, "tlssink: cannot switch to user %s\n", user);
			return 1;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread */
	for (int i = 0; i < 2; i++)
		if (pthread_create(&t, NULL, accept_thread, &l[i]) != 0) {
			fprintf(stderr, "tlssink: cannot start a thread\n");
			return 1;
		}
	fprintf(stderr, "tlssink: ready ports=%d,%d(implicit) tickets=%s\n", port, sport,
	    no_tickets ? "off" : "on");
	sigwait(&set, &sig);
	fprintf(stderr, "tlssink: exit sessions=%ld messages=%ld tls_failed=%ld\n",
	    atomic_load(&n_sessions), atomic_load(&n_messages), atomic_load(&n_tls_failed));
	return 0;
usage:
	fprintf(stderr, "usage: tlssink -c CERT -k KEY [-p PORT] [-s PORT] [-u USER] [-n]\n");
	return 2;
}
