/*
 * certcache - the worker's forged leaves: a bounded LRU cache, and the
 * requests to the signer (signer.h) for the leaves it does not have.
 *
 * Cache: keyed by a SHA-256 of the upstream certificate (DER) and the CA
 * that signed the forgery.  Size: cert-cache-size entries.  Lookups scan
 * the entries (a few microseconds at the default 1000), far cheaper than
 * the signature a miss costs.  A leaf is used only well inside its
 * validity.
 *
 * Requests: a worker never blocks its event loop on the signer.
 * certcache_request() queues a request (the upstream's chain as it sent
 * it, the reference name, the profile, the stapled OCSP response, and the
 * CA the worker's own verdict asks for) on the worker's channel to the
 * signer, driven by the worker's event loop (ev.h), and returns at once
 * with a handle; the callback runs later from the loop, exactly once,
 * unless the handle is cancelled first:
 *   - with the leaf and the CA that signed it: the signer judges the
 *     chain itself and may sign with the untrusted CA when the worker
 *     asked for the Proxy Authority (the caller must send the certificate
 *     of that CA in its chain, never the one it asked for);
 *   - with NULL and the reason: the signer refused (its verdict blocks
 *     the chain, rate limit), or did not answer within the timeout.
 * Identical requests in flight are sent once and answer every waiter.
 * At most max-pending requests wait per worker; beyond that
 * certcache_request() fails at once (NULL, *why set, no callback).  A
 * session that dies while it waits cancels its handle: the callback is
 * never called, and a reply that comes later only fills the cache.  When
 * the signer dies, the requests not answered are sent again over a new
 * channel to its respawned successor (each keeps its original deadline).
 *
 * Invariants: a callback never runs inside certcache_request() or
 * certcache_cancel(); a handle is freed just before its callback runs
 * (cancelling it from inside the callback, or afterwards, is a bug); the
 * callback owns the leaf's reference.
 */
#ifndef SMTPGW_CERTCACHE_H
#define SMTPGW_CERTCACHE_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "config.h"

#define CERTCACHE_MAX_PENDING 64   /* requests waiting for the signer, per worker */
#define CERTCACHE_TIMEOUT_MS 5000  /* then the request fails */

void certcache_init(unsigned size);
/* The queue's bounds (defaults above; unit tests lower them). */
void certcache_set_limits(unsigned max_pending, unsigned timeout_ms);

/* Cache only, never blocks: a new reference for the caller, or NULL. */
X509 *certcache_lookup(X509 *upstream, bool trusted);

struct certcache_query {
	STACK_OF(X509) *chain;     /* the upstream's chain as sent, leaf first */
	const char *refname;       /* the reference name (SNI); NULL or "": none */
	int profile;               /* index of the TLS profile in the configuration */
	const unsigned char *ocsp; /* the stapled OCSP response, or NULL */
	size_t ocsp_len;
	bool trusted;              /* the worker's verdict: Proxy Authority (else untrusted CA) */
};

/* leaf: a new reference (or NULL, then why says why); trusted: the CA that signed it. */
typedef void certcache_cb(void *arg, X509 *leaf, bool trusted, const char *why);
struct certcache_req;

struct certcache_req *certcache_request(const struct certcache_query *q, certcache_cb *cb,
    void *arg, const char **why);
void certcache_cancel(struct certcache_req *r);
/* Requests waiting now (handles not yet answered or cancelled). */
unsigned certcache_pending(void);

void certcache_stats(unsigned long *hits, unsigned long *misses);

#endif
