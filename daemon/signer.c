/*
 * signer - certificate forging in a separate, privilege-separated process.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "priv.h"
#include "signer.h"
#include "tls.h"
#include "util.h"

#define SIGNER_MAX_WORKERS 256

struct msg_hdr {
	uint8_t op;    /* request: 1 forge; reply: 0 ok, 1 error */
	uint8_t which; /* 0 trusted Proxy Authority, 1 untrusted CA */
	uint16_t pad;
	uint32_t len;
};

static int reg_fds[2] = { -1, -1 }; /* [0] signer reads registrations, [1] workers write */
static pid_t signer_pid = -1;
static const struct config *sconf;
static EVP_PKEY *sleaf;
static int my_channel = -1;         /* worker: its private channel */

X509 *
signer_make_leaf(X509 *up, X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *leaf_key)
{
	X509 *x = X509_new();
	GENERAL_NAMES *san;
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	bool rsa = EVP_PKEY_get_base_id(leaf_key) == EVP_PKEY_RSA;

	if (x == NULL)
		return NULL;
	X509_set_version(x, 2);
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		goto fail;
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), (long)SIGNER_VALIDITY_DAYS * 24 * 3600);
	/* Names are copied as objects: nothing from the peer passes through a string parser. */
	if (X509_set_subject_name(x, X509_get_subject_name(up)) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
	    X509_set_pubkey(x, leaf_key) != 1)
		goto fail;
	san = X509_get_ext_d2i(up, NID_subject_alt_name, NULL, NULL);
	if (san) {
		int ok = X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT);
		GENERAL_NAMES_free(san);
		if (ok != 1)
			goto fail;
	}
	if (tls_add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    tls_add_ext(x, ca, NID_key_usage,
	        rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature") < 0 ||
	    tls_add_ext(x, ca, NID_ext_key_usage, "serverAuth") < 0 ||
	    tls_add_ext(x, ca, NID_subject_key_identifier, "hash") < 0 ||
	    tls_add_ext(x, ca, NID_authority_key_identifier, "keyid:always") < 0)
		goto fail;
	if (X509_sign(x, ca_key, EVP_sha256()) == 0)
		goto fail;
	BN_free(bn);
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

/* ------------------------------------------------------------ the signer */

static int
recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))], b;
	struct iovec iov = { .iov_base = &b, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
		.msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd = -1;

	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) <= 0)
		return -1;
	for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	return fd;
}

static void
serve(int fd, X509 *ca[2], EVP_PKEY *key[2])
{
	unsigned char *buf = xmalloc(sizeof(struct msg_hdr) + SIGNER_MAX_DER);
	struct msg_hdr h;
	ssize_t n = recv(fd, buf, sizeof(h) + SIGNER_MAX_DER, 0);
	const unsigned char *p;
	unsigned char *out = NULL;
	X509 *up = NULL, *leaf = NULL;
	int len = 0;

	memset(&h, 0, sizeof(h));
	if (n < (ssize_t)sizeof(h))
		goto reply;
	memcpy(&h, buf, sizeof(h));
	if (h.op != 1 || h.which > 1 || h.len != (uint32_t)(n - (ssize_t)sizeof(h)))
		goto reply;
	p = buf + sizeof(h);
	up = d2i_X509(NULL, &p, (long)h.len);
	if (up == NULL)
		goto reply;
	leaf = signer_make_leaf(up, ca[h.which], key[h.which], sleaf);
	if (leaf)
		len = i2d_X509(leaf, &out);
reply:
	memset(&h, 0, sizeof(h));
	h.op = len > 0 && len <= SIGNER_MAX_DER ? 0 : 1;
	h.len = h.op == 0 ? (uint32_t)len : 0;
	memcpy(buf, &h, sizeof(h));
	if (h.op == 0)
		memcpy(buf + sizeof(h), out, (size_t)len);
	(void)send(fd, buf, sizeof(h) + h.len, MSG_NOSIGNAL);
	OPENSSL_free(out);
	X509_free(up);
	X509_free(leaf);
	free(buf);
}

static void NORETURN
signer_main(void)
{
	char path[CONF_PATH_MAX + 32], err[256];
	X509 *ca[2];
	EVP_PKEY *key[2];
	struct pollfd pfd[SIGNER_MAX_WORKERS + 1];
	int n = 1;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	log_set_procname("signer");
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_IGN);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	close(reg_fds[1]);
	tls_path(sconf, "proxy-authority.crt", path, sizeof(path));
	ca[0] = tls_load_cert(path);
	tls_path(sconf, "proxy-authority.key", path, sizeof(path));
	key[0] = tls_load_key(path);
	tls_path(sconf, "untrusted-authority.crt", path, sizeof(path));
	ca[1] = tls_load_cert(path);
	tls_path(sconf, "untrusted-authority.key", path, sizeof(path));
	key[1] = tls_load_key(path);
	if (!ca[0] || !key[0] || !ca[1] || !key[1] || X509_check_private_key(ca[0], key[0]) != 1 ||
	    X509_check_private_key(ca[1], key[1]) != 1) {
		log_err("signer cannot load the CA certificates and keys from %s", sconf->tls_dir);
		_exit(1);
	}
	/* The keys are in memory: nothing else is needed from the system. */
	if (priv_drop(sconf->user, NULL, 0, err, sizeof(err)) < 0) {
		log_err("signer privileges error=\"%s\"", err);
		_exit(1);
	}
	log_info("signer ready");
	pfd[0].fd = reg_fds[0];
	pfd[0].events = POLLIN;
	for (;;) {
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (pfd[0].revents & POLLIN) {
			int fd = recv_fd(reg_fds[0]);
			if (fd >= 0 && n < SIGNER_MAX_WORKERS + 1) {
				pfd[n].fd = fd;
				pfd[n].events = POLLIN;
				pfd[n].revents = 0;
				n++;
			} else if (fd >= 0) {
				close(fd);
			}
		} else if (pfd[0].revents & (POLLHUP | POLLERR)) {
			_exit(0);
		}
		for (int i = 1; i < n; i++) {
			if (pfd[i].revents & POLLIN) {
				serve(pfd[i].fd, ca, key);
			} else if (pfd[i].revents & (POLLHUP | POLLERR)) {
				close(pfd[i].fd);
				pfd[i] = pfd[--n];
				i--;
			}
		}
	}
}

static int
spawn_signer(void)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0)
		signer_main();
	signer_pid = pid;
	return 0;
}

int
signer_start(const struct config *c, EVP_PKEY *leaf_key, char *err, size_t errlen)
{
	sconf = c;
	sleaf = leaf_key;
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, reg_fds) < 0 || spawn_signer() < 0) {
		snprintf(err, errlen, "signer: %s", strerror(errno));
		return -1;
	}
	return 0;
}

bool
signer_reaped(pid_t pid)
{
	if (pid != signer_pid)
		return false;
	log_err("signer exited pid=%d; starting it again", (int)pid);
	/* Workers notice their channel closed and register again. */
	if (spawn_signer() < 0)
		log_err("signer respawn error=\"%s\"", strerror(errno));
	return true;
}

void
signer_stop(void)
{
	if (signer_pid > 0) {
		kill(signer_pid, SIGTERM);
		waitpid(signer_pid, NULL, 0);
		signer_pid = -1;
	}
}

/* -------------------------------------------------------- worker side */

static int
send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))], b = 'r';
	struct iovec iov = { .iov_base = &b, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
		.msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(fd));
	return sendmsg(sock, &m, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

static int
channel(void)
{
	int sv[2];

	if (my_channel >= 0)
		return my_channel;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if (send_fd(reg_fds[1], sv[1]) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	close(sv[1]);
	my_channel = sv[0];
	return my_channel;
}

static X509 *
forge_once(X509 *upstream, bool trusted)
{
	unsigned char *buf = xmalloc(sizeof(struct msg_hdr) + SIGNER_MAX_DER);
	unsigned char *der = NULL;
	struct msg_hdr h;
	struct pollfd pfd;
	X509 *leaf = NULL;
	int fd = channel(), len;
	ssize_t n;

	if (fd < 0)
		goto out;
	len = i2d_X509(upstream, &der);
	if (len <= 0 || len > SIGNER_MAX_DER)
		goto out;
	memset(&h, 0, sizeof(h));
	h.op = 1;
	h.which = trusted ? 0 : 1;
	h.len = (uint32_t)len;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), der, (size_t)len);
	if (send(fd, buf, sizeof(h) + (size_t)len, MSG_NOSIGNAL) < 0)
		goto broken;
	/* Synchronous: an ECDSA signature takes tens of microseconds; bounded wait. */
	pfd.fd = fd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 2000) != 1)
		goto broken;
	n = recv(fd, buf, sizeof(h) + SIGNER_MAX_DER, 0);
	if (n < (ssize_t)sizeof(h))
		goto broken;
	memcpy(&h, buf, sizeof(h));
	if (h.op == 0 && h.len == (uint32_t)(n - (ssize_t)sizeof(h))) {
		const unsigned char *p = buf + sizeof(h);
		leaf = d2i_X509(NULL, &p, (long)h.len);
	}
	goto out;
broken:
	close(my_channel);
	my_channel = -1;
out:
	OPENSSL_free(der);
	free(buf);
	return leaf;
}

X509 *
signer_forge(X509 *upstream, bool trusted)
{
	X509 *leaf = forge_once(upstream, trusted);

	/* One retry over a fresh channel covers a restarted signer. */
	if (leaf == NULL && my_channel < 0)
		leaf = forge_once(upstream, trusted);
	return leaf;
}
