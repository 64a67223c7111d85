/*
 * signer - certificate forging in a separate, privilege-separated process
 * (design in signer.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
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

#define OP_REQ 1
#define OP_REPLY 2
#define REQ_HDR 16
#define REPLY_HDR 12
/* More respawns than this within RESPAWN_WINDOW_S: the signer is left down. */
#define RESPAWN_LIMIT 5
#define RESPAWN_WINDOW_S 60
/* Per-worker buckets kept (a closed channel's bucket outlives it: no reset by reconnecting). */
#define MAX_BUCKETS 512
#define LOG_EVERY_MS 10000

struct signer {
	struct signer *next;
	unsigned gen;
	pid_t pid;
	int reg[2]; /* [0] the signer reads registrations, [1] workers send them */
	bool stopping;
	time_t window_start;
	int respawns;
	/* Copies: the configuration and material this was made from may be freed. */
	char tls_dir[CONF_PATH_MAX];
	char user[CONF_NAME_MAX];
	unsigned rate_limit;
	unsigned workers;
	enum log_target log; /* its generation's log setting */
	int n_profiles;
	struct conf_tls_profile profiles[CONF_MAX_PROFILES];
	SSL_CTX *verify_ctx[CONF_MAX_PROFILES]; /* the workers' upstream contexts (up-referenced) */
	X509 *ca_cert[2];
	EVP_PKEY *leaf_key;
	void (*in_child)(void);
};

static struct signer *signers; /* master: every live generation's signer */
static int my_reg = -1;        /* worker: its generation's registration socket */

/* ------------------------------------------------------------ codecs */

static void
put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static unsigned
get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A reference name as it may appear in SNI: printable, no space, no NUL. */
static bool
refname_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

int
signer_req_encode(const struct signer_req *r, unsigned char *buf, size_t cap)
{
	size_t rl = strnlen(r->refname, sizeof(r->refname)), off = REQ_HDR;

	/* Never more than the receiver takes. */
	if (cap > SIGNER_MAX_MSG)
		cap = SIGNER_MAX_MSG;
	if (r->n_certs < 1 || r->n_certs > SIGNER_MAX_CHAIN || rl > SIGNER_MAX_REFNAME ||
	    !refname_ok(r->refname, rl) || r->ocsp_len > SIGNER_MAX_OCSP || r->want > 1)
		return -1;
	if (cap < REQ_HDR + rl)
		return -1;
	buf[0] = OP_REQ;
	buf[1] = r->want;
	put16(buf + 2, r->profile);
	put32(buf + 4, r->id);
	put16(buf + 8, (unsigned)rl);
	buf[10] = (unsigned char)r->n_certs;
	buf[11] = 0;
	put32(buf + 12, (uint32_t)(r->ocsp ? r->ocsp_len : 0));
	memcpy(buf + off, r->refname, rl);
	off += rl;
	for (unsigned i = 0; i < r->n_certs; i++) {
		if (r->cert_len[i] < 1 || r->cert_len[i] > SIGNER_MAX_DER ||
		    cap - off < 4 + r->cert_len[i])
			return -1;
		put32(buf + off, (uint32_t)r->cert_len[i]);
		memcpy(buf + off + 4, r->cert[i], r->cert_len[i]);
		off += 4 + r->cert_len[i];
	}
	if (r->ocsp && r->ocsp_len) {
		if (cap - off < r->ocsp_len)
			return -1;
		memcpy(buf + off, r->ocsp, r->ocsp_len);
		off += r->ocsp_len;
	}
	return (int)off;
}

int
signer_req_parse(const unsigned char *buf, size_t len, struct signer_req *r)
{
	size_t off = REQ_HDR, rl, ol;

	memset(r, 0, sizeof(*r));
	if (len < REQ_HDR || len > SIGNER_MAX_MSG || buf[0] != OP_REQ || buf[1] > 1 || buf[11] != 0)
		return -1;
	r->want = buf[1];
	r->profile = (uint16_t)get16(buf + 2);
	r->id = get32(buf + 4);
	rl = get16(buf + 8);
	r->n_certs = buf[10];
	ol = get32(buf + 12);
	if (rl > SIGNER_MAX_REFNAME || r->n_certs < 1 || r->n_certs > SIGNER_MAX_CHAIN ||
	    ol > SIGNER_MAX_OCSP || len - off < rl || !refname_ok((const char *)buf + off, rl))
		return -1;
	memcpy(r->refname, buf + off, rl);
	r->refname[rl] = '\0';
	off += rl;
	for (unsigned i = 0; i < r->n_certs; i++) {
		size_t n;

		if (len - off < 4)
			return -1;
		n = get32(buf + off);
		off += 4;
		if (n < 1 || n > SIGNER_MAX_DER || len - off < n)
			return -1;
		r->cert[i] = buf + off;
		r->cert_len[i] = n;
		off += n;
	}
	if (len - off != ol)
		return -1;
	r->ocsp = ol ? buf + off : NULL;
	r->ocsp_len = ol;
	return 0;
}

int
signer_reply_encode(const struct signer_reply *r, unsigned char *buf, size_t cap)
{
	if (r->len > SIGNER_MAX_DER || cap < REPLY_HDR + r->len || r->ca > 1)
		return -1;
	buf[0] = OP_REPLY;
	buf[1] = r->status;
	buf[2] = r->ca;
	buf[3] = 0;
	put32(buf + 4, r->id);
	put32(buf + 8, (uint32_t)r->len);
	if (r->len)
		memcpy(buf + REPLY_HDR, r->data, r->len);
	return (int)(REPLY_HDR + r->len);
}

int
signer_reply_parse(const unsigned char *buf, size_t len, struct signer_reply *r)
{
	memset(r, 0, sizeof(*r));
	if (len < REPLY_HDR || buf[0] != OP_REPLY || buf[1] > SIGNER_ERROR || buf[2] > 1 ||
	    buf[3] != 0)
		return -1;
	r->status = buf[1];
	r->ca = buf[2];
	r->id = get32(buf + 4);
	r->len = get32(buf + 8);
	if (r->len > SIGNER_MAX_DER || len - REPLY_HDR != r->len)
		return -1;
	if (r->status == SIGNER_OK && r->len == 0)
		return -1;
	r->data = buf + REPLY_HDR;
	return 0;
}

/* ------------------------------------------------------------ decisions */

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

enum signer_status
signer_decide(const struct conf_tls_profile *p, const struct tls_peer *pe, const char *refname,
    enum signer_ca want, enum signer_ca *ca, struct tls_verdict *v)
{
	tls_judge_peer(p, pe, refname, v);
	/* The untrusted CA claims nothing: a worker may always have it. */
	if (want == SIGNER_CA_UNTRUSTED) {
		*ca = SIGNER_CA_UNTRUSTED;
		return SIGNER_OK;
	}
	if (v->ok || v->action == CERTFAIL_ALLOW) {
		*ca = SIGNER_CA_AUTHORITY;
		return SIGNER_OK;
	}
	if (v->action == CERTFAIL_BLOCK)
		return SIGNER_REFUSED;
	/* untrusted-sign: what the profile says this chain gets */
	*ca = SIGNER_CA_UNTRUSTED;
	return SIGNER_OK;
}

void
signer_bucket_init(struct signer_bucket *b, unsigned limit, uint64_t now)
{
	b->milli = (uint64_t)limit * 1000;
	b->last_ms = now;
}

bool
signer_bucket_take(struct signer_bucket *b, unsigned limit, uint64_t now)
{
	uint64_t cap = (uint64_t)limit * 1000;

	if (limit == 0)
		return true;
	if (now > b->last_ms) {
		/* limit per 60000 ms = limit/60 milli-tokens per ms */
		uint64_t add = (now - b->last_ms) * limit / 60;
		b->milli = b->milli + add > cap ? cap : b->milli + add;
		b->last_ms = now;
	}
	if (b->milli < 1000)
		return false;
	b->milli -= 1000;
	return true;
}

/* ------------------------------------------------------------ the signer */

struct chan {
	int fd;
	pid_t pid;
};

struct worker_bucket {
	pid_t pid;
	struct signer_bucket b;
	unsigned long refused;
	uint64_t logged_ms;
};

static struct {
	const struct signer *s;
	X509 *ca[2];
	EVP_PKEY *key[2];
	struct chan ch[SIGNER_MAX_CHANNELS];
	int n_ch;
	struct worker_bucket wb[MAX_BUCKETS];
	int n_wb;
	struct signer_bucket total;
	unsigned long total_refused;
	uint64_t total_logged_ms, drop_logged_ms;
	unsigned char msg[SIGNER_MAX_MSG];
	unsigned char out[REPLY_HDR + SIGNER_MAX_DER];
} sg;

static const char *const ca_names[2] = { "authority", "untrusted" };

/*
 * In a child of the master: close every signer's descriptors but self's
 * end that this child uses - the reading end for the signer itself
 * (self_reads), the registration end for a worker.  A worker holding
 * another generation's reading end could take other workers' channels.
 */
static void
close_others(const struct signer *self, bool self_reads)
{
	for (struct signer *s = signers; s; s = s->next) {
		for (int i = 0; i < 2; i++) {
			if (s->reg[i] < 0 || (s == self && i == (self_reads ? 0 : 1)))
				continue;
			close(s->reg[i]);
		}
	}
	/* This process's copy of the list names closed descriptors now. */
	signers = NULL;
}

static int
recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))], b;
	struct iovec iov = { .iov_base = &b, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
		.msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd = -1;

	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT) <= 0)
		return -1;
	for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	return fd;
}

/* The bucket of worker pid; a full bucket of another pid makes room (it owes nothing). */
static struct worker_bucket *
bucket_of(pid_t pid, uint64_t now)
{
	struct worker_bucket *wb;

	for (int i = 0; i < sg.n_wb; i++)
		if (sg.wb[i].pid == pid)
			return &sg.wb[i];
	if (sg.n_wb < MAX_BUCKETS) {
		wb = &sg.wb[sg.n_wb++];
	} else {
		wb = NULL;
		for (int i = 0; i < sg.n_wb && wb == NULL; i++) {
			struct signer_bucket probe = sg.wb[i].b;
			/* refilled to capacity: forgetting it loses nothing */
			(void)signer_bucket_take(&probe, sg.s->rate_limit, now);
			if (probe.milli + 1000 >= (uint64_t)sg.s->rate_limit * 1000)
				wb = &sg.wb[i];
		}
		if (wb == NULL)
			return NULL;
	}
	memset(wb, 0, sizeof(*wb));
	wb->pid = pid;
	signer_bucket_init(&wb->b, sg.s->rate_limit, now);
	return wb;
}

static void
add_channel(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int type = 0;
	socklen_t tlen = sizeof(type);

	/* Only a SOCK_SEQPACKET pair made by a worker: one request, one message. */
	if (sg.n_ch == SIGNER_MAX_CHANNELS ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 || type != SOCK_SEQPACKET ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.pid <= 0) {
		log_warn("signer channel refused channels=%d", sg.n_ch);
		close(fd);
		return;
	}
	/* Replies never block the signer: a worker that does not read loses them. */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	sg.ch[sg.n_ch].fd = fd;
	sg.ch[sg.n_ch].pid = cr.pid;
	sg.n_ch++;
}

static void
reply(const struct chan *c, uint32_t id, enum signer_status st, enum signer_ca ca,
    const unsigned char *data, size_t len)
{
	struct signer_reply r = { .id = id, .status = (uint8_t)st, .ca = (uint8_t)ca,
		.data = data, .len = len };
	int n = signer_reply_encode(&r, sg.out, sizeof(sg.out));

	if (n < 0)
		return;
	if (send(c->fd, sg.out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		uint64_t now = now_ms();
		if (now - sg.drop_logged_ms >= LOG_EVERY_MS) {
			sg.drop_logged_ms = now;
			log_warn("signer reply dropped worker=%d error=\"%s\"", (int)c->pid,
			    strerror(errno));
		}
	}
}

static void
reply_text(const struct chan *c, uint32_t id, enum signer_status st, const char *why)
{
	reply(c, id, st, SIGNER_CA_AUTHORITY, (const unsigned char *)why, strlen(why));
}

/* The upstream's DNS names (and IP addresses) for the issuance log line. */
static void
names_of(X509 *x, char *out, size_t len)
{
	GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	char raw[512];
	size_t o = 0;

	raw[0] = '\0';
	for (int i = 0; san && i < sk_GENERAL_NAME_num(san) && o < sizeof(raw) - 1; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
		char ip[64];
		const char *v = NULL;
		int n = 0;

		if (g->type == GEN_DNS) {
			v = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
			n = ASN1_STRING_length(g->d.dNSName);
		} else if (g->type == GEN_IPADD) {
			const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
			int al = ASN1_STRING_length(g->d.iPAddress);
			if ((al == 4 || al == 16) &&
			    inet_ntop(al == 4 ? AF_INET : AF_INET6, a, ip, sizeof(ip)) != NULL) {
				v = ip;
				n = (int)strlen(ip);
			}
		}
		if (v == NULL || n <= 0)
			continue;
		int w = snprintf(raw + o, sizeof(raw) - o, "%s%.*s", o ? "," : "", n, v);
		if (w < 0)
			break;
		o = (size_t)w < sizeof(raw) - o ? o + (size_t)w : sizeof(raw) - 1;
	}
	GENERAL_NAMES_free(san);
	log_quote(out, len, raw[0] ? raw : "-", raw[0] ? strlen(raw) : 1);
}

static void
serve(const struct chan *c)
{
	struct signer_req rq;
	struct tls_verdict v;
	STACK_OF(X509) *chain = NULL;
	X509 *leaf = NULL;
	unsigned char *der = NULL;
	enum signer_ca ca = SIGNER_CA_UNTRUSTED;
	enum signer_status st;
	uint64_t now = now_ms();
	struct worker_bucket *wb;
	ssize_t n = recv(c->fd, sg.msg, sizeof(sg.msg), MSG_DONTWAIT | MSG_TRUNC);
	int len;

	if (n <= 0)
		return;
	if ((size_t)n > sizeof(sg.msg) || signer_req_parse(sg.msg, (size_t)n, &rq) < 0) {
		log_warn("signer request refused worker=%d reason=malformed length=%zd", (int)c->pid, n);
		reply_text(c, 0, SIGNER_ERROR, "malformed request");
		return;
	}
	/* Every request costs a validation and maybe a signature: all are counted. */
	wb = bucket_of(c->pid, now);
	if (wb == NULL || !signer_bucket_take(&wb->b, sg.s->rate_limit, now)) {
		if (wb) {
			wb->refused++;
			if (now - wb->logged_ms >= LOG_EVERY_MS) {
				wb->logged_ms = now;
				log_warn("signer rate-limited worker=%d limit=%u/min refused=%lu",
				    (int)c->pid, sg.s->rate_limit, wb->refused);
			}
		}
		reply_text(c, rq.id, SIGNER_RATE_LIMITED, "signer-rate-limit reached");
		return;
	}
	if (!signer_bucket_take(&sg.total, sg.s->rate_limit * (sg.s->workers ? sg.s->workers : 1),
	    now)) {
		sg.total_refused++;
		if (now - sg.total_logged_ms >= LOG_EVERY_MS) {
			sg.total_logged_ms = now;
			log_warn("signer rate-limited worker=%d scope=all limit=%u/min refused=%lu",
			    (int)c->pid, sg.s->rate_limit * sg.s->workers, sg.total_refused);
		}
		reply_text(c, rq.id, SIGNER_RATE_LIMITED, "signer-rate-limit reached (all workers)");
		return;
	}
	if (rq.profile >= sg.s->n_profiles) {
		reply_text(c, rq.id, SIGNER_ERROR, "unknown TLS profile");
		return;
	}
	chain = sk_X509_new_null();
	for (unsigned i = 0; chain && i < rq.n_certs; i++) {
		const unsigned char *p = rq.cert[i];
		X509 *x = d2i_X509(NULL, &p, (long)rq.cert_len[i]);

		if (x == NULL || p != rq.cert[i] + rq.cert_len[i] || !sk_X509_push(chain, x)) {
			X509_free(x);
			reply_text(c, rq.id, SIGNER_ERROR, "a certificate does not parse");
			goto out;
		}
	}
	if (chain == NULL) {
		reply_text(c, rq.id, SIGNER_ERROR, "out of memory");
		goto out;
	}
	/* The verdict is ours, from the chain itself, with the workers' own context. */
	SSL_CTX *vctx = sg.s->verify_ctx[rq.profile];
	struct tls_peer pe = {
		.leaf = sk_X509_value(chain, 0),
		.chain = chain,
		.verify_result = tls_verify_chain(vctx, chain),
		.ocsp = rq.ocsp,
		.ocsp_len = (long)rq.ocsp_len,
		.store = SSL_CTX_get_cert_store(vctx),
	};
	const struct conf_tls_profile *prof = &sg.s->profiles[rq.profile];
	char ref[300], subj[256], qsubj[400], names[400], serial[80];

	log_quote(ref, sizeof(ref), rq.refname[0] ? rq.refname : "-",
	    rq.refname[0] ? strlen(rq.refname) : 1);
	st = signer_decide(prof, &pe, rq.refname, (enum signer_ca)rq.want, &ca, &v);
	if (st == SIGNER_REFUSED) {
		log_warn("signer refused worker=%d profile=%s reference=%s verdict=%s detail=\"%s\"",
		    (int)c->pid, prof->name, ref, certfail_class_keys[v.cls] + 3, v.detail);
		reply_text(c, rq.id, SIGNER_REFUSED, "the signer's verdict blocks this certificate");
		goto out;
	}
	if (rq.want == SIGNER_CA_AUTHORITY && ca != SIGNER_CA_AUTHORITY)
		log_warn("signer downgraded worker=%d profile=%s reference=%s verdict=%s "
		    "detail=\"%s\" (the worker asked for the Proxy Authority)", (int)c->pid,
		    prof->name, ref, certfail_class_keys[v.cls] + 3, v.detail);
	leaf = signer_make_leaf(pe.leaf, sg.ca[ca], sg.key[ca], sg.s->leaf_key);
	len = leaf ? i2d_X509(leaf, &der) : -1;
	if (len <= 0 || len > SIGNER_MAX_DER) {
		reply_text(c, rq.id, SIGNER_ERROR, "cannot make the certificate");
		goto out;
	}
	X509_NAME_oneline(X509_get_subject_name(pe.leaf), subj, sizeof(subj));
	names_of(pe.leaf, names, sizeof(names));
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	snprintf(serial, sizeof(serial), "%s", hex ? hex : "-");
	OPENSSL_free(hex);
	BN_free(bn);
	log_info("signer issued worker=%d ca=%s profile=%s verdict=%s reference=%s subject=%s "
	    "names=%s serial=%s", (int)c->pid, ca_names[ca], prof->name,
	    v.ok ? "ok" : certfail_class_keys[v.cls] + 3, ref,
	    log_quote(qsubj, sizeof(qsubj), subj, strlen(subj)), names, serial);
	reply(c, rq.id, SIGNER_OK, ca, der, (size_t)len);
out:
	OPENSSL_free(der);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	ERR_clear_error();
}

/* Report to the master through the ready pipe, then exit. */
static void NORETURN
signer_fail(int ready, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void NORETURN
signer_fail(int ready, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	msg[0] = 'E';
	va_start(ap, fmt);
	vsnprintf(msg + 1, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	log_err("signer error=\"%s\"", msg + 1);
	(void)!write(ready, msg, strlen(msg));
	_exit(1);
}

static void NORETURN
signer_main(const struct signer *s, int ready)
{
	static const char *const base[2] = { "proxy-authority", "untrusted-authority" };
	char path[CONF_PATH_MAX + 32], err[256];
	struct pollfd pfd[SIGNER_MAX_CHANNELS + 1];
	sigset_t none;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	log_init(s->log, "signer", log_debug_enabled());
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (s->in_child)
		s->in_child();
	close_others(s, true);
	memset(&sg, 0, sizeof(sg));
	sg.s = s;
	/*
	 * The keys must be the ones of the certificates this generation's
	 * workers send in their chains: files rotated since (and not yet
	 * applied) are not used for this generation.
	 */
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s.key", s->tls_dir, base[i]);
		sg.key[i] = tls_load_key(path);
		sg.ca[i] = s->ca_cert[i];
		if (sg.key[i] == NULL)
			signer_fail(ready, "%s: cannot load the private key (%s)", path,
			    access(path, R_OK) < 0 ? strerror(errno) : "not a PEM key, or encrypted");
		if (X509_check_private_key(sg.ca[i], sg.key[i]) != 1)
			signer_fail(ready, "%s does not belong to %s/%s.crt as loaded for this "
			    "configuration (changed since? apply again)", path, s->tls_dir, base[i]);
	}
	ERR_clear_error();
	/* The keys are in memory: nothing else is needed from the system. */
	if (priv_drop(s->user, NULL, 0, err, sizeof(err)) < 0)
		signer_fail(ready, "privileges: %s", err);
	signer_bucket_init(&sg.total, s->rate_limit * (s->workers ? s->workers : 1), now_ms());
	log_info("signer ready generation=%u user=%s rate-limit=%u/min", s->gen, s->user,
	    s->rate_limit);
	(void)!write(ready, "R", 1);
	close(ready);
	for (;;) {
		int n = 1;

		pfd[0].fd = s->reg[0];
		pfd[0].events = POLLIN;
		for (int i = 0; i < sg.n_ch; i++) {
			pfd[n].fd = sg.ch[i].fd;
			pfd[n].events = POLLIN;
			n++;
		}
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (pfd[0].revents & POLLIN) {
			int fd = recv_fd(s->reg[0]);
			if (fd >= 0)
				add_channel(fd);
		} else if (pfd[0].revents & (POLLHUP | POLLERR)) {
			_exit(0);
		}
		/* pfd[i + 1] is sg.ch[i] as it was before add_channel appended */
		for (int i = n - 2; i >= 0; i--) {
			if (pfd[i + 1].revents & POLLIN) {
				serve(&sg.ch[i]);
			} else if (pfd[i + 1].revents & (POLLHUP | POLLERR | POLLNVAL)) {
				close(sg.ch[i].fd);
				sg.ch[i] = sg.ch[--sg.n_ch];
			}
		}
	}
}

/* Fork the signer process and wait for its "ready" (or its reason). */
static int
spawn(struct signer *s, char *err, size_t errlen)
{
	int p[2];
	pid_t pid;
	uint64_t deadline = now_ms() + SIGNER_READY_MS;
	char msg[400];
	size_t got = 0;

	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "signer: pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "signer: fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		signer_main(s, p[1]);
	}
	close(p[1]);
	s->pid = pid;
	while (got < sizeof(msg) - 1) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		uint64_t now = now_ms();
		ssize_t n;

		if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) == 0) {
			snprintf(err, errlen, "the signer did not start within %d ms",
			    SIGNER_READY_MS);
			goto fail;
		}
		n = read(p[0], msg + got, sizeof(msg) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (msg[0] == 'R')
			break;
	}
	msg[got] = '\0';
	close(p[0]);
	if (got > 0 && msg[0] == 'R')
		return 0;
	snprintf(err, errlen, "%s", got > 1 ? msg + 1 : "the signer exited during start-up");
	p[0] = -1;
fail:
	if (p[0] >= 0)
		close(p[0]);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	s->pid = -1;
	return -1;
}

static void
release(struct signer *s)
{
	for (int i = 0; i < 2; i++)
		if (s->reg[i] >= 0)
			close(s->reg[i]);
	for (int i = 0; i < CONF_MAX_PROFILES; i++)
		SSL_CTX_free(s->verify_ctx[i]);
	X509_free(s->ca_cert[0]);
	X509_free(s->ca_cert[1]);
	EVP_PKEY_free(s->leaf_key);
	free(s);
}

struct signer *
signer_new(const struct config *c, const struct tls_material *m, unsigned gen, const char *user,
    unsigned workers, void (*in_child)(void), char *err, size_t errlen)
{
	struct signer *s = xcalloc(1, sizeof(*s));

	s->gen = gen;
	s->pid = -1;
	s->reg[0] = s->reg[1] = -1;
	snprintf(s->tls_dir, sizeof(s->tls_dir), "%s", c->tls_dir);
	snprintf(s->user, sizeof(s->user), "%s", user);
	s->rate_limit = c->signer_rate_limit;
	s->workers = workers;
	s->log = c->log;
	s->n_profiles = c->n_profiles;
	memcpy(s->profiles, c->profiles, sizeof(s->profiles));
	for (int i = 0; i < c->n_profiles; i++) {
		if (m->client_ctx[i] && SSL_CTX_up_ref(m->client_ctx[i]) == 1)
			s->verify_ctx[i] = m->client_ctx[i];
	}
	X509_up_ref(m->pa_cert);
	s->ca_cert[SIGNER_CA_AUTHORITY] = m->pa_cert;
	X509_up_ref(m->ua_cert);
	s->ca_cert[SIGNER_CA_UNTRUSTED] = m->ua_cert;
	EVP_PKEY_up_ref(m->leaf_key);
	s->leaf_key = m->leaf_key;
	s->in_child = in_child;
	s->window_start = time(NULL);
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, s->reg) < 0) {
		snprintf(err, errlen, "signer: socketpair: %s", strerror(errno));
		release(s);
		return NULL;
	}
	/* Listed first: the child closes the other generations' descriptors, not its own. */
	s->next = signers;
	signers = s;
	if (spawn(s, err, errlen) < 0) {
		signers = s->next;
		release(s);
		return NULL;
	}
	return s;
}

int
signer_reg_fd(const struct signer *s)
{
	return s->reg[1];
}

pid_t
signer_pid(const struct signer *s)
{
	return s ? s->pid : -1;
}

bool
signer_reaped(pid_t pid, int status)
{
	char err[400];
	struct signer *s;

	for (s = signers; s && s->pid != pid; s = s->next)
		;
	if (s == NULL || pid <= 0)
		return false;
	s->pid = -1;
	if (s->stopping)
		return true;
	log_err("signer exited generation=%u pid=%d status=%d signal=%d", s->gen, (int)pid,
	    WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	if (time(NULL) - s->window_start > RESPAWN_WINDOW_S) {
		s->window_start = time(NULL);
		s->respawns = 0;
	}
	if (++s->respawns > RESPAWN_LIMIT) {
		log_err("signer generation=%u left down: %d respawns in %d s; forged certificates "
		    "fail until the next reload", s->gen, s->respawns - 1, RESPAWN_WINDOW_S);
		return true;
	}
	/* Workers notice their channels closed and register again. */
	if (spawn(s, err, sizeof(err)) < 0)
		log_err("signer respawn generation=%u error=\"%s\"", s->gen, err);
	else
		log_info("signer respawned generation=%u pid=%d", s->gen, (int)s->pid);
	return true;
}

void
signer_free(struct signer *s)
{
	struct signer **pp;

	if (s == NULL)
		return;
	s->stopping = true;
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
		s->pid = -1;
	}
	for (pp = &signers; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	release(s);
}

void
signer_close_inherited(const struct signer *keep)
{
	close_others(keep, false);
}

/* -------------------------------------------------------- worker side */

void
signer_worker_attach(int reg_fd)
{
	my_reg = reg_fd;
}

static int
send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))], b = 'r';
	struct iovec iov = { .iov_base = &b, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
		.msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);

	memset(cbuf, 0, sizeof(cbuf));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(fd));
	return sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -1 : 0;
}

int
signer_channel_open(void)
{
	int sv[2];

	if (my_reg < 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if (send_fd(my_reg, sv[1]) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	close(sv[1]);
	return sv[0];
}
