/*
 * tls - TLS contexts, certificate material and upstream validation.
 *
 * Material and who holds it:
 *   Proxy Server cert + key   master loads, workers use (inbound client legs)
 *   Proxy Authority cert      public only here; its key lives in the signer
 *   untrusted CA cert         public only here; its key lives in the signer
 *   leaf key (ECDSA P-256)    one key reused by every forged certificate
 *   trust store               Debian's CA bundle + each profile's ca-file
 *
 * Files under tls-dir: proxy-server.{crt,key}, proxy-authority.{crt,key},
 * untrusted-authority.{crt,key}; missing ones are generated at first start
 * (keys mode 0600, the directory 0700).
 */
#ifndef SMTPGW_TLS_H
#define SMTPGW_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config.h"

struct tls_material {
	X509 *server_cert;
	EVP_PKEY *server_key;
	X509 *pa_cert;
	X509 *ua_cert;
	EVP_PKEY *leaf_key;
	/* per TLS profile, index as in config */
	SSL_CTX *server_ctx[CONF_MAX_PROFILES]; /* we are the server (client leg) */
	SSL_CTX *client_ctx[CONF_MAX_PROFILES]; /* we are the client (upstream leg) */
};

/* The material loaded by the master before it forks (NULL until then). */
extern struct tls_material *tls_global;

/*
 * Parse the server_name extension body of a ClientHello (RFC 6066 3):
 * the first host_name, printable and at most outlen-1 octets.  Returns 0,
 * or -1 if malformed.  And the ALPN extension body (RFC 7301): true if
 * "smtp" is offered (*any set when the extension lists anything).
 */
int tls_parse_sni(const unsigned char *p, size_t len, char *out, size_t outlen);
int tls_parse_alpn(const unsigned char *p, size_t len, bool *smtp, bool *any);

/* PEM files: NULL if missing or unreadable. */
X509 *tls_load_cert(const char *path);
EVP_PKEY *tls_load_key(const char *path);

/* Paths of the files in tls-dir. */
void tls_path(const struct config *c, const char *name, char *out, size_t len);

/* Master, as root: create tls-dir and what is missing in it (CA files included). */
int tls_prepare_files(const struct config *c, char *err, size_t errlen);
/* Load the public material, the server key, make the leaf key and the contexts. */
int tls_load(const struct config *c, struct tls_material *m, char *err, size_t errlen);

/*
 * Reload: build the material for a new configuration (its profiles),
 * keeping the leaf key the signer already forges for; swaps tls_global.
 */
int tls_reload(const struct config *c, char *err, size_t errlen);

/*
 * Upstream TLS session resumption, per destination (address, port, SNI):
 * a small worker-local cache.  get returns a new reference or NULL.
 */
#define TLS_RESUME_SLOTS 256
SSL_SESSION *tls_resume_get(const char *key);
void tls_resume_put(const char *key, SSL_SESSION *sess); /* takes the reference */

/*
 * Client-leg session tickets: keys derived from a secret made at master
 * start and the current hour, so every worker encrypts and decrypts the
 * same tickets without talking to the others; a new key every
 * TLS_TICKET_ROTATE_S, the previous one still accepted (and renewed).
 */
#define TLS_TICKET_ROTATE_S 3600

/* Result of validating an upstream certificate against a profile. */
struct tls_verdict {
	bool ok;                 /* validated */
	enum certfail_class cls; /* when !ok */
	enum certfail_action action;
	char detail[128];
};
void tls_judge(const struct conf_tls_profile *p, SSL *ssl, const char *refname,
    struct tls_verdict *v);

/* "subject=... issuer=..." of the peer certificate, printable, for logs. */
void tls_describe_peer(SSL *ssl, char *out, size_t len);

/* Add an X509v3 extension from OpenSSL's config syntax (our own constant values only). */
int tls_add_ext(X509 *cert, X509 *issuer, int nid, const char *value);

/* Generate a fresh self-signed or CA certificate (used for first start and tests). */
int tls_make_ca(const char *cn, X509 **cert, EVP_PKEY **key);

#endif
