/*
 * tls - TLS contexts, certificate material and upstream validation.
 *
 * Material and who holds it:
 *   Proxy Server cert + key   master loads, workers use (inbound client legs)
 *   Proxy Authority cert      public only here; its key lives in the signer
 *   untrusted CA cert         public only here; its key lives in the signer
 *                             (the master never reads either key)
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
#include <stdint.h>

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

/* PEM files: NULL if missing or unreadable; an encrypted key is refused (never prompts). */
X509 *tls_load_cert(const char *path);
EVP_PKEY *tls_load_key(const char *path);

/* Paths of the files in tls-dir. */
void tls_path(const struct config *c, const char *name, char *out, size_t len);

/* Master, as root: create tls-dir and what is missing in it (CA files included). */
int tls_prepare_files(const struct config *c, char *err, size_t errlen);

/*
 * Load one generation's material: the Proxy Server pair, the CA
 * certificates (never their keys: only the signer reads those), and the
 * contexts of every TLS profile.  leaf: the forged-certificate key to keep
 * (a reload keeps the running one), NULL to make one.  On error nothing
 * is left allocated and err says what, with FILE:LINE for a profile.
 */
int tls_load(const struct config *c, struct tls_material *m, EVP_PKEY *leaf, char *err,
    size_t errlen);
void tls_material_free(struct tls_material *m);

/*
 * The two contexts of profile i (server: the client leg; client: the
 * upstream leg), built exactly as tls_load builds them.  warn gets a
 * non-fatal finding (trust store unreadable) or "".
 */
int tls_profile_ctx(const struct config *c, int i, SSL_CTX **server, SSL_CTX **client, char *err,
    size_t errlen, char *warn, size_t warnlen);

/*
 * smtpgw -t: everything a start or a reload would load - each tls-dir
 * pair that exists (certificate, key, match; CA certificates must be CAs,
 * CA keys included, as the signer will load them), every profile's
 * ciphers, ciphersuites, ca-file and trust store - built and thrown away,
 * nothing created.  A pair that is missing is made at start (warn says so).
 */
int tls_check(const struct config *c, char *err, size_t errlen, char *warn, size_t warnlen);

/*
 * Upstream TLS session resumption, per destination and what it is judged
 * against (address, port, the reference name sent as SNI, the profile):
 * a small worker-local cache holding up to TLS_RESUME_PER_DEST sessions
 * per destination.  get takes one out (the newest; the caller owns the
 * reference) or returns NULL; put adds one (every ticket the server
 * sends: TLS 1.3 servers send one or two per handshake, so the pool
 * refills as it is used).  A session is offered once, as RFC 8446 C.4
 * asks of clients, and concurrent handshakes to one destination each get
 * their own: with one shared session, every connection that ended
 * without close_notify marked it not resumable for all (OpenSSL's
 * ssl_clear_bad_session), and resumption fell to 40-75 % at 10-20
 * concurrent clients.  Not shared between workers: a worker pays one
 * full handshake per destination before its pool fills.
 *
 * A cached session never carries a verdict: every handshake, resumed or
 * not, is judged again on the certificate the session holds, against the
 * trust store and the clock of now (tls_judge).  A full handshake that
 * shows another certificate than the cached session's drops that entry
 * (tls_resume_check), and no session older than TLS_RESUME_MAX_AGE is
 * offered.  Not yet bounded: a TLS 1.3 ticket received on a resumed
 * connection is a new session (fresh time) holding the first handshake's
 * certificate, so a server that keeps issuing tickets can be judged on an
 * old certificate for longer -- on chain and expiry at every resumption,
 * on revocation (OCSP) only at a full handshake.  The fix: give such a
 * session the time of the session it resumed (new_session_cb).
 */
#define TLS_RESUME_SLOTS 256
#define TLS_RESUME_PER_DEST 16
#define TLS_RESUME_KEY_MAX 400
#define TLS_RESUME_MAX_AGE 600 /* seconds */
SSL_SESSION *tls_resume_get(const char *key);
void tls_resume_put(const char *key, SSL_SESSION *sess); /* takes the reference */
/* After a full handshake showing peer: drop the cached sessions of another certificate (true). */
bool tls_resume_check(const char *key, X509 *peer);
/* The SHA-256 of a certificate (false: none, or no digest). */
bool tls_cert_digest(X509 *x, unsigned char out[32]);

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
	bool no_reference;       /* judged without a reference name (reference=none) */
	bool noref_failed;       /* ... and the profile's on-no-reference-name failed it */
	enum certfail_class cls; /* when !ok && !noref_failed */
	enum certfail_action action;
	char reference[256];     /* the name checked (an SNI fits whole); "" when none */
	char detail[128];
};

/*
 * What a judgement is made of: the upstream's chain as it sent it (leaf
 * first), the result of validating it against the profile's trust store,
 * a stapled OCSP response if any, and that store.  The workers take it
 * from their handshake; the signer rebuilds it from a worker's request
 * (tls_verify_chain on the same profile's context), so both judge with
 * one function.
 */
struct tls_peer {
	X509 *leaf;
	STACK_OF(X509) *chain;
	long verify_result;
	const unsigned char *ocsp;
	long ocsp_len;
	X509_STORE *store;
};
void tls_judge_peer(const struct conf_tls_profile *p, const struct tls_peer *pe,
    const char *refname, struct tls_verdict *v);
/*
 * Validate chain (leaf first) the way OpenSSL's client validated it in the
 * handshake with ctx (purpose, parameters, security level); the X509_V_*
 * result.
 */
long tls_verify_chain(SSL_CTX *ctx, STACK_OF(X509) *chain);

/*
 * Judge the peer certificate of ssl (a finished client-side handshake)
 * under profile p.  refname: the reference name (the client's SNI); NULL
 * or "": none, and the profile's on-no-reference-name decides.  Name
 * matching follows RFC 9525: DNS subjectAltNames only (the subject CN
 * only with allow-cn-fallback), wildcards only as a whole left-most
 * label.  A resumed session is verified again now (its stored result is
 * from the handshake that made it).
 */
void tls_judge(const struct conf_tls_profile *p, SSL *ssl, const char *refname,
    struct tls_verdict *v);
/* The verdict's class for logs: "-", "expired", ..., "no-reference-name". */
const char *tls_verdict_class(const struct tls_verdict *v);

/*
 * What a client-leg TLS session is bound to: resuming it is only right
 * while all of this is the same, since a resumed handshake shows the
 * client no certificate at all.  The binding becomes the SSL's session
 * id context (SSL_set_session_id_context), which OpenSSL compares on
 * every resumption -- TLS 1.3 tickets, TLS 1.2 tickets and session IDs --
 * and falls back to a full handshake on mismatch.
 */
#define TLS_BINDING_LEN 32 /* == SSL_MAX_SID_CTX_LENGTH: a SHA-256 */
struct tls_binding {
	bool inbound;
	const char *destination;           /* "address:port" of the real server */
	const char *profile;               /* the TLS profile's name */
	X509 *upstream;                    /* the real certificate; NULL: no upstream TLS */
	const struct tls_verdict *verdict; /* its judgement (NULL without upstream) */
	X509 *shown_issuer;                /* the CA that signed the client's certificate, or
					    * the Proxy Server certificate itself */
};
int tls_binding_context(const struct tls_binding *b, unsigned char out[TLS_BINDING_LEN]);

/* "subject=... issuer=..." of the peer certificate, printable, for logs. */
void tls_describe_peer(SSL *ssl, char *out, size_t len);

/* Add an X509v3 extension from OpenSSL's config syntax (our own constant values only). */
int tls_add_ext(X509 *cert, X509 *issuer, int nid, const char *value);

/* Generate a fresh self-signed or CA certificate (used for first start and tests). */
int tls_make_ca(const char *cn, X509 **cert, EVP_PKEY **key);

#endif
