/*
 * NAME
 *	sslmem - the heap an idle TLS connection holds in OpenSSL itself, for bench/run
 * SUMMARY
 *	sslmem [-n CONNECTIONS] [-v 12|13] [-r] [-R] [-b BYTES]
 * DESCRIPTION
 *	The floor under "RSS per idle inspected session": an inspected
 *	session is two TLS connections (smtpgw is the server of the client's
 *	and the client of the destination's), and whatever OpenSSL keeps for
 *	an established, idle connection is paid twice whatever the proxy
 *	does around it.  sslmem makes CONNECTIONS client/server pairs in one
 *	process, configured as smtpgw configures its contexts (tls.c:
 *	SSL_MODE_RELEASE_BUFFERS, read-ahead, no compression, one ticket),
 *	with an EC P-256 certificate made on the spot, completes every
 *	handshake over memory BIOs, exchanges one short line each way (so the
 *	server's ticket is sent and read, as in an SMTP session after EHLO),
 *	replaces the BIOs by empty ones and measures the heap in use
 *	(mallinfo2) and the resident set with all pairs held, then with only the server sides, then
 *	with none.  Prints bytes per idle connection for each side.
 *
 *	-r: every client but the first resumes the session of the one
 *	before it, as smtpgw's upstream legs mostly do (the server's
 *	certificate is then parsed once and shared, not held by every
 *	connection);
 *	-R: without read-ahead; -b: the read-ahead buffer's length (smtpgw's
 *	TLS_READ_BUFFER; 0, the default: OpenSSL's).
 *
 *	The BIOs left on each connection are empty memory BIOs: what a socket
 *	BIO costs instead (about the same, a few hundred octets) is not
 *	separated out.
 * SECURITY
 *	A benchmark tool: no network, keys made and dropped in memory.
 */
#ifndef _GNU_SOURCE /* meson passes it for the whole project */
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct pair {
	SSL *c, *s;
};

static void
die(const char *what)
{
	fprintf(stderr, "sslmem: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* A self-signed EC P-256 certificate for "sink.test". */
static void
make_cert(EVP_PKEY **key, X509 **cert)
{
	X509_NAME *n;

	*key = EVP_EC_gen("P-256");
	*cert = X509_new();
	if (*key == NULL || *cert == NULL)
		die("cannot make a key");
	ASN1_INTEGER_set(X509_get_serialNumber(*cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(*cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(*cert), 86400);
	n = X509_get_subject_name(*cert);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"sink.test", -1, -1,
	    0);
	X509_set_issuer_name(*cert, n);
	X509_set_pubkey(*cert, *key);
	if (X509_sign(*cert, *key, EVP_sha256()) == 0)
		die("cannot sign the certificate");
}

/* What tls.c's ctx_common and tls_profile_ctx set that bears on memory. */
static int read_ahead = 1;
static size_t read_buffer;
static SSL_SESSION *resume; /* -r: offered by every client */

static SSL_CTX *
make_ctx(const SSL_METHOD *m, int version)
{
	SSL_CTX *ctx = SSL_CTX_new(m);

	if (ctx == NULL)
		die("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	    SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_read_ahead(ctx, read_ahead);
	if (read_buffer)
		SSL_CTX_set_default_read_buffer_len(ctx, read_buffer);
	return ctx;
}

/* Move what one side wrote into the other side's read BIO. */
static void
shuttle(SSL *from, SSL *to)
{
	char buf[16384];
	int n;

	while ((n = BIO_read(SSL_get_wbio(from), buf, sizeof(buf))) > 0)
		if (BIO_write(SSL_get_rbio(to), buf, n) != n)
			die("BIO_write");
}

static void
connect_pair(struct pair *p, SSL_CTX *cctx, SSL_CTX *sctx)
{
	char line[64];
	int i;

	p->c = SSL_new(cctx);
	p->s = SSL_new(sctx);
	if (p->c == NULL || p->s == NULL)
		die("SSL_new");
	SSL_set_bio(p->c, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_bio(p->s, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_connect_state(p->c);
	SSL_set_accept_state(p->s);
	SSL_set_tlsext_host_name(p->c, "sink.test");
	if (resume != NULL)
		SSL_set_session(p->c, resume);
	for (i = 0; i < 20; i++) {
		int rc = SSL_do_handshake(p->c), rs = SSL_do_handshake(p->s);

		shuttle(p->c, p->s);
		shuttle(p->s, p->c);
		if (rc == 1 && rs == 1)
			break;
	}
	if (i == 20)
		die("the handshake did not complete");
	/* EHLO and its reply: the server's ticket travels and is read. */
	if (SSL_write(p->c, "EHLO client.test\r\n", 18) != 18)
		die("SSL_write (client)");
	shuttle(p->c, p->s);
	if (SSL_read(p->s, line, sizeof(line)) <= 0)
		die("SSL_read (server)");
	if (SSL_write(p->s, "250 sink.test\r\n", 15) != 15)
		die("SSL_write (server)");
	shuttle(p->s, p->c);
	if (SSL_read(p->c, line, sizeof(line)) <= 0)
		die("SSL_read (client)");
	/* Idle: fresh, empty BIOs (a mem BIO keeps the capacity it grew to). */
	SSL_set_bio(p->c, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_bio(p->s, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
}

/* Resident set, octets (what bench/run --tls reads for smtpgw's workers). */
static size_t
rss(void)
{
	unsigned long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL || fscanf(f, "%lu %lu", &size, &res) != 2)
		die("cannot read /proc/self/statm");
	fclose(f);
	return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t
heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

int
main(int argc, char **argv)
{
	int n = 1000, version = 13, opt;
	EVP_PKEY *key;
	X509 *cert;
	SSL_CTX *sctx, *cctx;
	struct pair *pairs;
	size_t h0, h1, h2, h3, r0, r1;

	bool resuming = false;

	while ((opt = getopt(argc, argv, "n:v:rRb:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'v': version = atoi(optarg); break;
		case 'r': resuming = true; break;
		case 'R': read_ahead = 0; break;
		case 'b': read_buffer = (size_t)atol(optarg); break;
		default: goto usage;
		}
	}
	if (n < 1 || n > 1000000 || (version != 12 && version != 13))
		goto usage;
	make_cert(&key, &cert);
	sctx = make_ctx(TLS_server_method(), version);
	cctx = make_ctx(TLS_client_method(), version);
	SSL_CTX_set_num_tickets(sctx, 1);
	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	if (SSL_CTX_use_certificate(sctx, cert) != 1 || SSL_CTX_use_PrivateKey(sctx, key) != 1)
		die("cannot use the certificate");
	pairs = calloc((size_t)n, sizeof(*pairs));
	if (pairs == NULL)
		die("out of memory");
	/* one pair first, so that what OpenSSL sets up once is not counted */
	connect_pair(&pairs[0], cctx, sctx);
	if (resuming && (resume = SSL_get1_session(pairs[0].c)) == NULL)
		die("no session to resume");
	h0 = heap_in_use();
	r0 = rss();
	for (int i = 1; i < n; i++) {
		connect_pair(&pairs[i], cctx, sctx);
		if (resuming) {
			/*
			 * A TLS 1.3 session is offered once (the client marks it used
			 * when a new ticket comes): the next one resumes this
			 * connection's ticket, as smtpgw's pool hands them out.
			 */
			SSL_SESSION_free(resume);
			if ((resume = SSL_get1_session(pairs[i].c)) == NULL)
				die("no session to resume");
		}
	}
	SSL_SESSION_free(resume);
	resume = NULL;
	h1 = heap_in_use();
	r1 = rss();
	if (resuming) {
		int reused = 0;

		for (int i = 1; i < n; i++)
			reused += SSL_session_reused(pairs[i].c);
		if (reused != n - 1) {
			fprintf(stderr, "sslmem: %d of %d connections resumed\n", reused, n - 1);
			exit(1);
		}
	}
	for (int i = 1; i < n; i++)
		SSL_free(pairs[i].c);
	h2 = heap_in_use();
	for (int i = 1; i < n; i++)
		SSL_free(pairs[i].s);
	h3 = heap_in_use();
	printf("sslmem: openssl=%s version=TLSv1.%d resumed=%s read_ahead=%d read_buffer=%zu connections=%d server_bytes=%.0f client_bytes=%.0f "
	    "pair_bytes=%.0f pair_rss_bytes=%.0f leaked_bytes=%.0f\n", OpenSSL_version(OPENSSL_VERSION_STRING),
	    version - 10, resuming ? "yes" : "no", read_ahead, read_buffer, n - 1, (double)(h2 - h3) / (n - 1), (double)(h1 - h2) / (n - 1),
	    (double)(h1 - h0) / (n - 1), (double)(r1 - r0) / (n - 1), h3 > h0 ? (double)(h3 - h0) / (n - 1) : 0.0);
	return 0;
usage:
	fprintf(stderr, "usage: sslmem [-n CONNECTIONS] [-v 12|13] [-r] [-R] [-b BYTES]\n");
	return 2;
}
