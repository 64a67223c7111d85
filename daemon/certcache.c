/*
 * certcache - LRU of forged leaves (see certcache.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "certcache.h"
#include "signer.h"
#include "util.h"

struct entry {
	unsigned char key[32];
	X509 *leaf;
	unsigned long used;
};

static struct entry *entries;
static unsigned n_entries, cap;
static unsigned long tick, hits, misses;

void
certcache_init(unsigned size)
{
	cap = size ? size : 1;
	entries = xcalloc(cap, sizeof(*entries));
	n_entries = 0;
}

static int
make_key(X509 *up, bool trusted, unsigned char key[32])
{
	unsigned char *der = NULL;
	int len = i2d_X509(up, &der);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char which = trusted ? 0 : 1;
	unsigned int outlen = 0;
	int ok = len > 0 && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, der, (size_t)len) == 1 && EVP_DigestUpdate(md, &which, 1) == 1 &&
	    EVP_DigestFinal_ex(md, key, &outlen) == 1;

	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	return ok ? 0 : -1;
}

X509 *
certcache_get(X509 *up, bool trusted)
{
	unsigned char key[32];
	unsigned victim = 0;
	X509 *leaf;

	if (entries == NULL)
		certcache_init(1000);
	if (make_key(up, trusted, key) < 0)
		return NULL;
	for (unsigned i = 0; i < n_entries; i++) {
		if (memcmp(entries[i].key, key, sizeof(key)) == 0) {
			/* a forged leaf expires; keep using it only well inside its validity */
			if (X509_cmp_time(X509_get0_notAfter(entries[i].leaf), NULL) > 0 &&
			    X509_cmp_timeframe(NULL, X509_get0_notBefore(entries[i].leaf),
			        X509_get0_notAfter(entries[i].leaf)) == 0) {
				entries[i].used = ++tick;
				hits++;
				X509_up_ref(entries[i].leaf);
				return entries[i].leaf;
			}
			X509_free(entries[i].leaf);
			entries[i] = entries[--n_entries];
			break;
		}
	}
	misses++;
	leaf = signer_forge(up, trusted);
	if (leaf == NULL)
		return NULL;
	if (n_entries < cap) {
		victim = n_entries++;
	} else {
		for (unsigned i = 1; i < n_entries; i++)
			if (entries[i].used < entries[victim].used)
				victim = i;
		X509_free(entries[victim].leaf);
	}
	memcpy(entries[victim].key, key, sizeof(key));
	entries[victim].leaf = leaf;
	entries[victim].used = ++tick;
	X509_up_ref(leaf);
	return leaf;
}

void
certcache_stats(unsigned long *h, unsigned long *m)
{
	*h = hits;
	*m = misses;
}
