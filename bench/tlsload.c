/*
 * NAME
 *	tlsload - SMTP-over-TLS load client for bench/run
 * SUMMARY
 *	tlsload -a ADDR -p PORT -m starttls|smtps|connect [-c WORKERS] [-n SESSIONS]
 *	        [-t SECONDS] [-l BYTES] [-F FILE] [-C CAFILE] [-N NAME] [-S FILE] [-H]
 * DESCRIPTION
 *	One TCP connection per message, every TLS handshake a full one (no
 *	session is ever offered for resumption):
 *
 *	  starttls  connect, greeting, EHLO, STARTTLS, handshake, EHLO, MAIL,
 *	            RCPT, DATA, the message, QUIT
 *	  smtps     connect, handshake, greeting, EHLO, MAIL, ...
 *	  connect   connect and close at once: a connection flood (no
 *	            SMTP, no TLS; a session counts when connect() succeeded)
 *
 *	WORKERS processes (fork) share one session counter; a run ends when
 *	SESSIONS sessions were started or SECONDS have passed, whichever
 *	comes first (a session under way is finished).  Sockets have
 *	TCP_NODELAY, and every read and write is bounded (30 s).  The message
 *	is BYTES of 78-character lines plus a few header lines, or the
 *	contents of FILE (-F: a whole message, header and body, lines ending
 *	in LF or CRLF, sent with CRLF and dot-stuffed).  With -C the
 *	server certificate must validate against CAFILE and match NAME (the
 *	SNI sent; default sink.ext.test).  -S appends the serial number of
 *	every certificate the server presented to FILE, one per line.
 *
 *	Prints "sessions=N failed=F lost=L seconds=S cpu=C bytes=B": N counts
 *	the messages the server accepted (its 250 to the end of data), L
 *	those of them whose session then lost the reply to QUIT (a proxy that
 *	closes before relaying the server's last reply), F the sessions that
 *	failed before that; S is the wall time from the first connect to the
 *	last worker's exit, C the CPU time (user + system, seconds) the
 *	workers used, B the message size in octets as sent.  Exit 0 when
 *	nothing failed or was lost.
 *
 *	-H (hold): every worker opens its share of SESSIONS sessions up to
 *	the EHLO after TLS and keeps them open; "held=N seconds=S" is printed
 *	once all are open, then tlsload waits for SIGTERM or SIGINT.
 * SECURITY
 *	A benchmark tool for the testbed: it trusts what it is told to trust.
 */
#ifndef _GNU_SOURCE /* meson passes it for the whole project */
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define IO_TIMEOUT_S 30
#define MAX_WORKERS 256
#define LINE_MAX_LEN 1000

struct shared {
	atomic_long next;   /* sessions started */
	atomic_long done;   /* sessions completed */
	atomic_long failed;
	atomic_long lost;   /* message accepted, QUIT's reply lost */
	atomic_long held;   /* -H: sessions open */
	atomic_int errors_shown;
};

struct conn {
	int fd;
	SSL *ssl;
	size_t off, len;
	char buf[16384];
};

static struct shared *sh;
static struct sockaddr_in dst;
static bool implicit_tls;
static bool connect_only; /* -m connect: a connection flood */
static const char *sni = "sink.ext.test";
static SSL_CTX *ctx;
static char *message;
static size_t message_len;
static int serial_fd = -1;
static double deadline;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The first few failures are worth reading; the rest only count. */
static void __attribute__((format(printf, 1, 2)))
fail(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&sh->errors_shown, 1) >= 5)
		return;
	fprintf(stderr, "tlsload: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ERR_print_errors_fp(stderr);
}

static ssize_t
c_read(struct conn *c, void *p, size_t n)
{
	if (c->ssl) {
		int r = SSL_read(c->ssl, p, (int)n);
		return r > 0 ? r : -1;
	}
	for (;;) {
		ssize_t r = recv(c->fd, p, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		return r > 0 ? r : -1;
	}
}

static int
c_write(struct conn *c, const void *p, size_t n)
{
	const char *s = p;

	while (n > 0) {
		ssize_t r;
		if (c->ssl) {
			int w = SSL_write(c->ssl, s, (int)(n > 65536 ? 65536 : n));
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

/* One reply (all its lines); returns its code, or -1. */
static int
reply(struct conn *c)
{
	for (;;) {
		char *line = c->buf + c->off, *nl;

		while ((nl = memchr(line, '\n', c->len - (size_t)(line - c->buf))) != NULL) {
			size_t ll = (size_t)(nl - line) + 1;
			int code = (ll >= 4 && line[0] >= '2' && line[0] <= '5') ?
			    (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0') : -1;
			bool last = ll >= 4 && line[3] != '-';

			c->off = (size_t)(nl + 1 - c->buf);
			if (code < 0)
				return -1;
			if (last)
				return code;
			line = c->buf + c->off;
		}
		/* keep the partial line, read more */
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
		if (c->len >= sizeof(c->buf) - 1)
			return -1;
		ssize_t r = c_read(c, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

static int
command(struct conn *c, const char *cmd, int want)
{
	char line[LINE_MAX_LEN];
	int n = snprintf(line, sizeof(line), "%s\r\n", cmd);
	int code;

	if (c_write(c, line, (size_t)n) < 0) {
		fail("%s: write failed", cmd);
		return -1;
	}
	code = reply(c);
	if (code != want) {
		fail("%s: reply %d, expected %d", cmd, code, want);
		return -1;
	}
	return 0;
}

static void
record_serial(SSL *ssl)
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	BIGNUM *bn = x ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL) : NULL;
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	char line[200];
	int n;

	if (hex) {
		n = snprintf(line, sizeof(line), "%s\n", hex);
		/* O_APPEND and one short write: lines of concurrent workers never mix */
		if (n > 0 && (size_t)n < sizeof(line))
			(void)!write(serial_fd, line, (size_t)n);
	}
	OPENSSL_free(hex);
	BN_free(bn);
}

static int
handshake(struct conn *c)
{
	/* "At this point there must not be any pending plaintext." */
	if (c->off != c->len) {
		fail("server sent data before the TLS handshake");
		return -1;
	}
	c->off = c->len = 0;
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    SSL_set_tlsext_host_name(c->ssl, sni) != 1 || SSL_set1_host(c->ssl, sni) != 1) {
		fail("cannot set up the TLS session");
		return -1;
	}
	if (SSL_connect(c->ssl) != 1) {
		fail("TLS handshake failed (verify result %ld)", SSL_get_verify_result(c->ssl));
		return -1;
	}
	if (serial_fd >= 0)
		record_serial(c->ssl);
	return 0;
}

static void
c_close(struct conn *c)
{
	if (c->ssl) {
		SSL_set_quiet_shutdown(c->ssl, 1);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Connect and get as far as the EHLO after TLS. */
static int
open_session(struct conn *c)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	int one = 1;

	c->ssl = NULL;
	c->off = c->len = 0;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fail("socket: %s", strerror(errno));
		return -1;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
		fail("connect: %s", strerror(errno));
		return -1;
	}
	if (implicit_tls) {
		if (handshake(c) < 0)
			return -1;
		if (reply(c) != 220) {
			fail("no greeting after the handshake");
			return -1;
		}
	} else {
		if (reply(c) != 220) {
			fail("no greeting");
			return -1;
		}
		if (command(c, "EHLO load.int.test", 250) < 0 || command(c, "STARTTLS", 220) < 0 ||
		    handshake(c) < 0)
			return -1;
	}
	return command(c, "EHLO load.int.test", 250);
}

/* -m connect: connect, then close; 0 when connect() succeeded. */
static int
flood_session(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	if (fd < 0) {
		fail("socket: %s", strerror(errno));
		return -1;
	}
	rc = connect(fd, (struct sockaddr *)&dst, sizeof(dst));
	if (rc < 0)
		fail("connect: %s", strerror(errno));
	close(fd);
	return rc < 0 ? -1 : 0;
}

/* One message: 0 done, 1 delivered but QUIT's reply lost, -1 failed. */
static int
session(void)
{
	struct conn *c = malloc(sizeof(*c));
	int rc = -1;

	if (c == NULL)
		return -1;
	c->fd = -1;
	if (open_session(c) < 0 || command(c, "MAIL FROM:<load@int.test>", 250) < 0 ||
	    command(c, "RCPT TO:<sink@ext.test>", 250) < 0 || command(c, "DATA", 354) < 0)
		goto out;
	if (c_write(c, message, message_len) < 0) {
		fail("message: write failed");
		goto out;
	}
	if (reply(c) != 250) {
		fail("end of data not accepted");
		goto out;
	}
	/* delivered: from here on a failure is a lost reply, not a lost message */
	rc = 1;
	if (command(c, "QUIT", 221) < 0)
		goto out;
	if (c->ssl)
		SSL_shutdown(c->ssl); /* our close_notify; the server's is not awaited */
	rc = 0;
out:
	c_close(c);
	free(c);
	return rc;
}

static void
make_message(size_t len)
{
	const char *hdr = "From: <load@int.test>\r\nTo: <sink@ext.test>\r\n"
	    "Subject: tlsload\r\nMessage-ID: <tlsload@int.test>\r\n\r\n";
	size_t h = strlen(hdr), i;

	message = malloc(h + len + 82 + 5);
	if (message == NULL)
		exit(2);
	memcpy(message, hdr, h);
	/* 78 characters and CRLF per line; no line starts with a dot */
	for (i = 0; i < len; i++)
		message[h + i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' :
		    (char)('a' + (i % 80) % 26);
	message_len = h + len;
	if (len % 80 == 79) { /* ends with a CR: complete the line */
		message[message_len++] = '\n';
	} else if (len % 80 != 0) {
		memcpy(message + message_len, "\r\n", 2);
		message_len += 2;
	}
	memcpy(message + message_len, ".\r\n", 3);
	message_len += 3;
}

/* -F: a whole message from a file, CRLF line ends, dot-stuffed, the final dot. */
static void
load_message(const char *path)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 1 << 20, n = 0;
	char line[LINE_MAX_LEN + 2];

	if (f == NULL) {
		fprintf(stderr, "tlsload: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	message = malloc(cap);
	while (message && fgets(line, sizeof(line), f)) {
		size_t l = strlen(line);

		if (l == 0 || line[l - 1] != '\n') {
			fprintf(stderr, "tlsload: %s: a line longer than %d octets\n", path,
			    LINE_MAX_LEN);
			exit(2);
		}
		l--;
		if (l > 0 && line[l - 1] == '\r')
			l--;
		if (n + l + 4 > cap) {
			cap *= 2;
			message = realloc(message, cap);
			if (message == NULL)
				break;
		}
		if (line[0] == '.')
			message[n++] = '.';
		memcpy(message + n, line, l);
		n += l;
		message[n++] = '\r';
		message[n++] = '\n';
	}
	fclose(f);
	if (message == NULL || n + 3 > cap) {
		fprintf(stderr, "tlsload: out of memory\n");
		exit(2);
	}
	memcpy(message + n, ".\r\n", 3);
	message_len = n + 3;
}

static void
worker_run(long total)
{
	for (;;) {
		long i = atomic_fetch_add(&sh->next, 1);
		if (i >= total || now() >= deadline)
			break;
		int rc = connect_only ? flood_session() : session();

		if (rc >= 0)
			atomic_fetch_add(&sh->done, 1);
		if (rc > 0)
			atomic_fetch_add(&sh->lost, 1);
		if (rc < 0)
			atomic_fetch_add(&sh->failed, 1);
	}
}

static void
worker_hold(long share)
{
	struct conn *cs = calloc((size_t)share, sizeof(*cs));

	if (cs == NULL)
		exit(2);
	for (long i = 0; i < share; i++) {
		if (open_session(&cs[i]) < 0) {
			atomic_fetch_add(&sh->failed, 1);
			c_close(&cs[i]);
			continue;
		}
		atomic_fetch_add(&sh->held, 1);
	}
	for (;;)
		pause(); /* until SIGTERM: the kernel closes the sockets */
}

static void
usage(void)
{
	fprintf(stderr, "usage: tlsload -a ADDR -p PORT -m starttls|smtps|connect [-c WORKERS]\n"
	    "               [-n SESSIONS] [-t SECONDS] [-l BYTES] [-F FILE] [-C CAFILE] [-N NAME]\n"
	    "               [-S FILE] [-H]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *addr = NULL, *mode = NULL, *cafile = NULL, *serials = NULL, *msgfile = NULL;
	long sessions = 1, workers = 1, port = 0;
	double seconds = 60;
	size_t len = 2048;
	bool hold = false;
	pid_t pids[MAX_WORKERS];
	int opt;

	while ((opt = getopt(argc, argv, "a:p:m:c:n:t:l:F:C:N:S:H")) != -1) {
		switch (opt) {
		case 'a': addr = optarg; break;
		case 'p': port = atol(optarg); break;
		case 'm': mode = optarg; break;
		case 'c': workers = atol(optarg); break;
		case 'n': sessions = atol(optarg); break;
		case 't': seconds = atof(optarg); break;
		case 'l': len = (size_t)atol(optarg); break;
		case 'F': msgfile = optarg; break;
		case 'C': cafile = optarg; break;
		case 'N': sni = optarg; break;
		case 'S': serials = optarg; break;
		case 'H': hold = true; break;
		default: usage();
		}
	}
	if (addr == NULL || mode == NULL || port <= 0 || port > 65535 || workers < 1 ||
	    workers > MAX_WORKERS || sessions < 1 || seconds <= 0)
		usage();
	if (strcmp(mode, "smtps") == 0)
		implicit_tls = true;
	else if (strcmp(mode, "connect") == 0)
		connect_only = true;
	else if (strcmp(mode, "starttls") != 0)
		usage();
	if (connect_only && hold)
		usage();
	dst.sin_family = AF_INET;
	dst.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &dst.sin_addr) != 1)
		usage();
	if (workers > sessions)
		workers = sessions;

	/* -H holds many sockets: take what the hard limit allows. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return 2;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Never resume: every handshake is a full one. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
	if (cafile) {
		if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
			fprintf(stderr, "tlsload: cannot load %s\n", cafile);
			return 2;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (serials) {
		serial_fd = open(serials, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (serial_fd < 0) {
			fprintf(stderr, "tlsload: %s: %s\n", serials, strerror(errno));
			return 2;
		}
	}
	if (msgfile)
		load_message(msgfile);
	else
		make_message(len);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 2;
	memset(sh, 0, sizeof(*sh));
	signal(SIGPIPE, SIG_IGN);

	/* The parent waits for SIGTERM/SIGINT with sigwait; children keep the default. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);

	double t0 = now();
	deadline = t0 + seconds;
	for (long w = 0; w < workers; w++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("tlsload: fork");
			for (long k = 0; k < w; k++)
				kill(pids[k], SIGTERM);
			return 2;
		}
		if (pid == 0) {
			if (hold)
				worker_hold(sessions / workers + (w < sessions % workers));
			worker_run(sessions);
			_exit(0);
		}
		pids[w] = pid;
	}
	if (hold) {
		sigprocmask(SIG_BLOCK, &set, NULL);
		while (atomic_load(&sh->held) + atomic_load(&sh->failed) < sessions &&
		    now() < deadline)
			usleep(20000);
		printf("held=%ld failed=%ld seconds=%.3f\n", atomic_load(&sh->held),
		    atomic_load(&sh->failed), now() - t0);
		fflush(stdout);
		int sig;
		sigwait(&set, &sig);
		for (long w = 0; w < workers; w++)
			kill(pids[w], SIGTERM);
	}
	for (long w = 0; w < workers; w++)
		waitpid(pids[w], NULL, 0);
	double t1 = now();
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	if (!hold)
		printf("sessions=%ld failed=%ld lost=%ld seconds=%.3f cpu=%.3f bytes=%zu\n",
		    atomic_load(&sh->done), atomic_load(&sh->failed), atomic_load(&sh->lost),
		    t1 - t0,
		    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
		    connect_only ? (size_t)0 : message_len);
	return atomic_load(&sh->failed) || atomic_load(&sh->lost) ? 1 : 0;
}
