/*
 * certcache - the worker's bounded LRU cache of forged leaves, keyed by a
 * SHA-256 of the upstream certificate (DER) and the settings that shape
 * the forgery (which CA signs).  Size: cert-cache-size entries.  Lookups
 * scan the entries (a few microseconds at the default 1000), which is far
 * cheaper than the signature a miss costs.
 */
#ifndef SMTPGW_CERTCACHE_H
#define SMTPGW_CERTCACHE_H

#include <stdbool.h>

#include <openssl/x509.h>

void certcache_init(unsigned size);
/* A forged leaf for upstream (new reference for the caller), from the cache or the signer. */
X509 *certcache_get(X509 *upstream, bool trusted);
void certcache_stats(unsigned long *hits, unsigned long *misses);

#endif
