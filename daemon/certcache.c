/*
 * certcache - LRU of forged leaves and asynchronous signer requests (see
 * certcache.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "certcache.h"
#include "ev.h"
#include "log.h"
#include "signer.h"
#include "tls.h"
#include "util.h"

/* A channel that could not be opened is tried again after this. */
#define REOPEN_MS 200

struct entry {
	unsigned char key[32];
	X509 *leaf;
	unsigned long used;
};

/* One request on the wire; waiters are the handles it will answer. */
struct pending {
	struct pending *next, *prev;
	uint32_t id;
	unsigned char match[32]; /* identical requests share one pending */
	unsigned char leafhash[32];
	unsigned char *msg;      /* encoded, kept to send again to a respawned signer */
	size_t len;
	bool sent;               /* on the current channel */
	bool done;               /* answered or failed: being delivered */
	struct ev_timer timer;
	struct certcache_req *waiters;
};

struct certcache_req {
	struct certcache_req *next, *prev;
	struct pending *p;
	certcache_cb *cb;
	void *arg;
};

static struct entry *entries;
static unsigned n_entries, cap;
static unsigned long tick, hits, misses;

static unsigned max_pending = CERTCACHE_MAX_PENDING, timeout_ms = CERTCACHE_TIMEOUT_MS;
static struct pending *pendings; /* in order of creation */
static unsigned n_pendings, n_waiters;
static uint32_t next_id = 1;
static struct ev_fd chan = { .fd = -1 };
static struct ev_timer reopen_timer;
static unsigned char *msgbuf; /* SIGNER_MAX_MSG */

void
certcache_init(unsigned size)
{
	for (unsigned i = 0; entries && i < n_entries; i++)
		X509_free(entries[i].leaf);
	free(entries);
	cap = size ? size : 1;
	entries = xcalloc(cap, sizeof(*entries));
	n_entries = 0;
}

void
certcache_set_limits(unsigned maxp, unsigned tmo)
{
	max_pending = maxp ? maxp : 1;
	timeout_ms = tmo ? tmo : 1;
}

static void
buf_init(void)
{
	if (msgbuf == NULL)
		msgbuf = xmalloc(SIGNER_MAX_MSG);
	if (entries == NULL)
		certcache_init(1000);
}

static int
hash_parts(const void *a, size_t alen, const void *b, size_t blen, unsigned char out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int outlen = 0;
	int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, a, alen) == 1 && (blen == 0 || EVP_DigestUpdate(md, b, blen) == 1) &&
	    EVP_DigestFinal_ex(md, out, &outlen) == 1;

	EVP_MD_CTX_free(md);
	return ok ? 0 : -1;
}

static int
leaf_hash(X509 *up, unsigned char out[32])
{
	unsigned char *der = NULL;
	int len = i2d_X509(up, &der), rc;

	rc = len > 0 ? hash_parts(der, (size_t)len, NULL, 0, out) : -1;
	OPENSSL_free(der);
	return rc;
}

/* The cache key: the upstream certificate and which CA signs. */
static void
cache_key(const unsigned char leafhash[32], bool trusted, unsigned char key[32])
{
	unsigned char which = trusted ? 0 : 1;

	if (hash_parts(leafhash, 32, &which, 1, key) < 0)
		fatal("sha256 failed");
}

static X509 *
cache_find(const unsigned char key[32])
{
	for (unsigned i = 0; i < n_entries; i++) {
		if (memcmp(entries[i].key, key, 32) != 0)
			continue;
		/* a forged leaf expires; keep using it only well inside its validity */
		if (X509_cmp_time(X509_get0_notAfter(entries[i].leaf), NULL) > 0 &&
		    X509_cmp_timeframe(NULL, X509_get0_notBefore(entries[i].leaf),
		        X509_get0_notAfter(entries[i].leaf)) == 0) {
			entries[i].used = ++tick;
			X509_up_ref(entries[i].leaf);
			return entries[i].leaf;
		}
		X509_free(entries[i].leaf);
		entries[i] = entries[--n_entries];
		return NULL;
	}
	return NULL;
}

/* Keeps its own reference to leaf. */
static void
cache_put(const unsigned char key[32], X509 *leaf)
{
	unsigned victim = 0;

	for (unsigned i = 0; i < n_entries; i++) {
		if (memcmp(entries[i].key, key, 32) == 0) {
			X509_free(entries[i].leaf);
			victim = i;
			goto store;
		}
	}
	if (n_entries < cap) {
		victim = n_entries++;
	} else {
		for (unsigned i = 1; i < n_entries; i++)
			if (entries[i].used < entries[victim].used)
				victim = i;
		X509_free(entries[victim].leaf);
	}
store:
	memcpy(entries[victim].key, key, 32);
	X509_up_ref(leaf);
	entries[victim].leaf = leaf;
	entries[victim].used = ++tick;
}

X509 *
certcache_lookup(X509 *up, bool trusted)
{
	unsigned char lh[32], key[32];
	X509 *leaf;

	buf_init();
	if (leaf_hash(up, lh) < 0)
		return NULL;
	cache_key(lh, trusted, key);
	leaf = cache_find(key);
	if (leaf)
		hits++;
	return leaf;
}

/* Encode q as a request with id into msgbuf; its length or -1. */
static int
encode(const struct certcache_query *q, uint32_t id, unsigned char **ders)
{
	struct signer_req r;
	int n = q->chain ? sk_X509_num(q->chain) : 0;

	memset(&r, 0, sizeof(r));
	if (n < 1 || q->profile < 0 || q->profile > 65535 || q->ocsp_len > SIGNER_MAX_OCSP)
		return -1;
	/* Only what the signer takes: a longer chain is cut (the rest never validates anyway). */
	if (n > SIGNER_MAX_CHAIN)
		n = SIGNER_MAX_CHAIN;
	r.id = id;
	r.want = q->trusted ? SIGNER_CA_AUTHORITY : SIGNER_CA_UNTRUSTED;
	r.profile = (uint16_t)q->profile;
	if (q->refname && snprintf(r.refname, sizeof(r.refname), "%s", q->refname) >=
	    (int)sizeof(r.refname))
		return -1;
	r.n_certs = (unsigned)n;
	for (int i = 0; i < n; i++) {
		int len = i2d_X509(sk_X509_value(q->chain, i), &ders[i]);
		if (len <= 0)
			return -1;
		r.cert[i] = ders[i];
		r.cert_len[i] = (size_t)len;
	}
	r.ocsp = q->ocsp;
	r.ocsp_len = q->ocsp ? q->ocsp_len : 0;
	return signer_req_encode(&r, msgbuf, SIGNER_MAX_MSG);
}

static int
encode_query(const struct certcache_query *q, uint32_t id)
{
	unsigned char *ders[SIGNER_MAX_CHAIN] = { 0 };
	int n = encode(q, id, ders);

	for (int i = 0; i < SIGNER_MAX_CHAIN; i++)
		OPENSSL_free(ders[i]);
	return n;
}

/* ------------------------------------------------------- asynchronous */

static void chan_cb(struct ev_fd *e, uint32_t revents);

static void
pending_unlink(struct pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		pendings = p->next;
	if (p->next)
		p->next->prev = p->prev;
	p->next = p->prev = NULL;
	n_pendings--;
}

static void
pending_free(struct pending *p)
{
	ev_timer_cancel(&p->timer);
	free(p->msg);
	free(p);
}

static bool
any_unsent(void)
{
	for (struct pending *p = pendings; p; p = p->next)
		if (!p->sent)
			return true;
	return false;
}

static void
chan_close(void)
{
	if (chan.fd < 0)
		return;
	ev_fd_del(&chan);
	close(chan.fd);
	chan.fd = -1;
	for (struct pending *p = pendings; p; p = p->next)
		p->sent = false;
}

static void reopen_cb(struct ev_timer *t);

/* Open the channel if needed, and ask for EPOLLOUT while something waits to be sent. */
static void
chan_update(void)
{
	if (chan.fd < 0) {
		if (pendings == NULL || ev_timer_armed(&reopen_timer))
			return;
		int fd = signer_channel_open();
		if (fd < 0) {
			ev_timer_arm(&reopen_timer, REOPEN_MS, reopen_cb);
			return;
		}
		ev_fd_add(&chan, fd, EPOLLIN, chan_cb);
	}
	ev_fd_mod(&chan, EPOLLIN | (any_unsent() ? EPOLLOUT : 0));
}

static void
reopen_cb(struct ev_timer *t)
{
	(void)t;
	chan_update();
}

/* Answer every waiter of p (detached first: callbacks may queue or cancel). */
static void
deliver(struct pending *p, X509 *leaf, bool trusted, const char *why)
{
	p->done = true;
	pending_unlink(p);
	ev_timer_cancel(&p->timer);
	while (p->waiters) {
		struct certcache_req *w = p->waiters;
		certcache_cb *cb = w->cb;
		void *arg = w->arg;

		p->waiters = w->next;
		if (p->waiters)
			p->waiters->prev = NULL;
		free(w);
		n_waiters--;
		if (leaf)
			X509_up_ref(leaf);
		cb(arg, leaf, trusted, why);
	}
	pending_free(p);
}

static void
timeout_cb(struct ev_timer *t)
{
	struct pending *p = container_of(t, struct pending, timer);

	log_warn("certcache request timeout id=%u ms=%u", p->id, timeout_ms);
	deliver(p, NULL, false, "the signer did not answer in time");
	chan_update();
}

static void
handle_reply(const unsigned char *buf, size_t len)
{
	struct signer_reply r;
	struct pending *p;
	X509 *leaf = NULL;
	char why[160];

	if (signer_reply_parse(buf, len, &r) < 0) {
		log_warn("certcache reply malformed length=%zu", len);
		return;
	}
	for (p = pendings; p && p->id != r.id; p = p->next)
		;
	if (p == NULL)
		return; /* answered late: its request timed out or was never ours */
	if (r.status == SIGNER_OK) {
		const unsigned char *d = r.data;
		leaf = d2i_X509(NULL, &d, (long)r.len);
	}
	if (leaf) {
		unsigned char key[32];
		cache_key(p->leafhash, r.ca == SIGNER_CA_AUTHORITY, key);
		cache_put(key, leaf);
		deliver(p, leaf, r.ca == SIGNER_CA_AUTHORITY, NULL);
		X509_free(leaf);
		return;
	}
	if (r.status == SIGNER_OK) {
		snprintf(why, sizeof(why), "the signer's certificate does not parse");
	} else {
		char reason[120];
		snprintf(why, sizeof(why), "%s: %s",
		    r.status == SIGNER_RATE_LIMITED ? "signer rate limit"
		    : r.status == SIGNER_REFUSED ? "refused by the signer's verdict" : "signer error",
		    log_quote(reason, sizeof(reason), (const char *)r.data, r.len));
	}
	deliver(p, NULL, false, why);
}

static void
chan_cb(struct ev_fd *e, uint32_t revents)
{
	if (revents & EPOLLIN) {
		for (;;) {
			ssize_t n = recv(e->fd, msgbuf, SIGNER_MAX_MSG, MSG_DONTWAIT);
			if (n > 0) {
				handle_reply(msgbuf, (size_t)n);
				if (chan.fd < 0)
					return; /* closed from a callback */
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				break;
			/* EOF or error: the signer is gone; its successor gets everything again */
			log_warn("certcache signer channel closed pending=%u", n_pendings);
			chan_close();
			chan_update();
			return;
		}
	} else if (revents & (EPOLLHUP | EPOLLERR)) {
		chan_close();
		chan_update();
		return;
	}
	if (revents & EPOLLOUT) {
		for (struct pending *p = pendings; p; p = p->next) {
			if (p->sent)
				continue;
			if (send(e->fd, p->msg, p->len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
					break;
				chan_close();
				break;
			}
			p->sent = true;
		}
	}
	chan_update();
}

struct certcache_req *
certcache_request(const struct certcache_query *q, certcache_cb *cb, void *arg, const char **why)
{
	unsigned char match[32], lh[32];
	struct pending *p;
	struct certcache_req *w;
	int n;

	buf_init();
	*why = NULL;
	if (n_waiters >= max_pending || n_pendings >= max_pending) {
		*why = "too many requests waiting for the signer";
		return NULL;
	}
	if (q->chain == NULL || sk_X509_num(q->chain) < 1 ||
	    leaf_hash(sk_X509_value(q->chain, 0), lh) < 0 ||
	    (n = encode_query(q, 0)) < 0) {
		*why = "the request cannot be encoded";
		return NULL;
	}
	/* Identical requests (everything but the id) share one pending. */
	if (hash_parts(msgbuf + 8, (size_t)n - 8, msgbuf, 4, match) < 0) {
		*why = "internal error";
		return NULL;
	}
	for (p = pendings; p; p = p->next)
		if (memcmp(p->match, match, 32) == 0)
			break;
	if (p == NULL) {
		p = xcalloc(1, sizeof(*p));
		p->id = next_id++;
		if (next_id == 0)
			next_id = 1;
		memcpy(p->match, match, 32);
		memcpy(p->leafhash, lh, 32);
		msgbuf[4] = (unsigned char)(p->id >> 24);
		msgbuf[5] = (unsigned char)(p->id >> 16);
		msgbuf[6] = (unsigned char)(p->id >> 8);
		msgbuf[7] = (unsigned char)p->id;
		p->msg = xmalloc((size_t)n);
		memcpy(p->msg, msgbuf, (size_t)n);
		p->len = (size_t)n;
		/* appended: requests go out in the order they were made */
		struct pending **tail = &pendings, *prev = NULL;
		while (*tail) {
			prev = *tail;
			tail = &(*tail)->next;
		}
		p->prev = prev;
		*tail = p;
		n_pendings++;
		ev_timer_arm(&p->timer, timeout_ms, timeout_cb);
		misses++;
	}
	w = xcalloc(1, sizeof(*w));
	w->p = p;
	w->cb = cb;
	w->arg = arg;
	w->next = p->waiters;
	if (w->next)
		w->next->prev = w;
	p->waiters = w;
	n_waiters++;
	chan_update();
	return w;
}

void
certcache_cancel(struct certcache_req *w)
{
	struct pending *p;

	if (w == NULL)
		return;
	p = w->p;
	if (w->prev)
		w->prev->next = w->next;
	else
		p->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	free(w);
	n_waiters--;
	/*
	 * Nobody waits any more: a request not yet sent is dropped; one that
	 * was sent stays until its reply (which fills the cache) or timeout.
	 */
	if (p->waiters == NULL && !p->done && !p->sent) {
		pending_unlink(p);
		pending_free(p);
	}
}

unsigned
certcache_pending(void)
{
	return n_waiters;
}

void
certcache_stats(unsigned long *h, unsigned long *m)
{
	*h = hits;
	*m = misses;
}
