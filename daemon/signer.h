/*
 * signer - the one process that holds the Proxy Authority's private key
 * (and the untrusted CA's).  Workers never do: they send it the upstream
 * certificate and get back a forged leaf for the upstream's names, signed
 * by the trusted or the untrusted CA, over a private SOCK_SEQPACKET
 * socketpair.  A worker registers its end of that pair by passing it over
 * a shared registration channel (SCM_RIGHTS); it never reads that channel,
 * so replies cannot go astray.
 *
 * Forged leaves copy the upstream's subject and subjectAltName as ASN.1
 * objects (never through strings), carry keyUsage for the leaf key's type,
 * extendedKeyUsage serverAuth, an SKI of their own and the AKI of the
 * signing CA, a random serial and a validity of SIGNER_VALIDITY_DAYS.
 */
#ifndef SMTPGW_SIGNER_H
#define SMTPGW_SIGNER_H

#include <stdbool.h>
#include <sys/types.h>

#include <openssl/x509.h>

#include "config.h"

#define SIGNER_VALIDITY_DAYS 7
#define SIGNER_MAX_DER 32768

/* Master: fork the signer.  leaf_key's public half goes into every forged leaf. */
int signer_start(const struct config *c, EVP_PKEY *leaf_key, char *err, size_t errlen);
/* Master: a child exited; true if it was the signer (it is started again). */
bool signer_reaped(pid_t pid);
void signer_stop(void);

/* Worker: a forged leaf for upstream (NULL on failure; the caller owns it). */
X509 *signer_forge(X509 *upstream, bool trusted);

/* The forging itself (pure; unit-tested). */
X509 *signer_make_leaf(X509 *upstream, X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *leaf_key);

#endif
