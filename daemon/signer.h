/*
 * signer - the one process that holds the Proxy Authority's private key
 * (and the untrusted CA's).  Workers never do: they send it the upstream's
 * certificate chain as the upstream sent it, the reference name and the
 * TLS profile, and get back a leaf forged for the upstream's names.
 *
 * The signer does not take the worker's word for the verdict.  It
 * validates the chain itself, against the same trust store and the
 * profile's ca-file (the very contexts the workers use, tls_verify_chain),
 * judges it with the same function (tls_judge_peer) and signs with the
 * Proxy Authority only when its own verdict allows it; a worker may always
 * ask for the untrusted CA.  Every issuance is logged (worker pid, CA,
 * verdict, reference name, subject, names, serial); requests are
 * rate-limited per worker (signer-rate-limit per minute, a token bucket)
 * and in total (that times the workers of the generation).
 *
 * One signer per configuration generation, handed over like the workers:
 * a reload starts a new signer with the new material (it must start, load
 * the CA keys and find them matching the generation's CA certificates
 * before the reload touches anything), new workers talk to it, and the old
 * signer serves the old, draining workers until the last one is gone.  So
 * every session is signed by the key whose certificate its worker sends.
 * The signer owns copies of everything it needs (profiles, paths, user,
 * up-referenced certificates and contexts): the configuration it was made
 * from may be freed, and a respawn starts from those copies.  The master
 * never reads the CA keys; a signer respawned after the files were
 * rotated refuses to sign with a key that does not match its generation's
 * certificate.
 *
 * Channels: each worker makes a SOCK_SEQPACKET socketpair and passes one
 * end to the signer over the generation's registration socket
 * (SCM_RIGHTS); the signer identifies the worker by the kernel's
 * credentials of that pair (SO_PEERCRED), never by anything it says.  The
 * registration socket carries nothing else and workers never read it.
 *
 * Wire format (big endian), one message per request and per reply:
 *   request  op=1 u8, want u8 (0 authority, 1 untrusted), profile u16,
 *            id u32, refname length u16 (<= 255, printable, no space),
 *            certificates u8 (1..SIGNER_MAX_CHAIN), 0 u8, OCSP length u32,
 *            refname, then per certificate: length u32 + DER, then OCSP.
 *   reply    op=2 u8, status u8, ca u8, 0 u8, id u32, length u32, then the
 *            leaf's DER (status ok) or a printable reason.
 * A message is at most SIGNER_MAX_MSG octets; the parsers take only exact
 * lengths and are fuzzed (tests/fuzz/fuzz_signer.c).
 */
#ifndef SMTPGW_SIGNER_H
#define SMTPGW_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/x509.h>

#include "config.h"
#include "tls.h"

#define SIGNER_VALIDITY_DAYS 7
#define SIGNER_MAX_DER 32768   /* one certificate */
#define SIGNER_MAX_CHAIN 8     /* certificates in a request */
#define SIGNER_MAX_OCSP 16384  /* a stapled OCSP response */
#define SIGNER_MAX_REFNAME 255
#define SIGNER_MAX_MSG (4 * SIGNER_MAX_DER + SIGNER_MAX_OCSP + 512)
#define SIGNER_MAX_CHANNELS 256 /* open channels, all workers of a generation */
#define SIGNER_READY_MS 5000    /* a starting signer must load its keys within this */

enum signer_ca {
	SIGNER_CA_AUTHORITY = 0, /* the Proxy Authority: clients trust it */
	SIGNER_CA_UNTRUSTED = 1, /* the untrusted CA: the client sees the failure */
};

enum signer_status {
	SIGNER_OK = 0,
	SIGNER_REFUSED = 1,      /* the signer's own verdict blocks this chain */
	SIGNER_RATE_LIMITED = 2, /* signer-rate-limit reached */
	SIGNER_ERROR = 3,        /* malformed request, unknown profile, internal error */
};

struct signer_req {
	uint32_t id;
	uint8_t want;     /* enum signer_ca */
	uint16_t profile; /* index into the generation's TLS profiles */
	char refname[SIGNER_MAX_REFNAME + 1]; /* "" = none */
	unsigned n_certs;
	const unsigned char *cert[SIGNER_MAX_CHAIN]; /* DER, leaf first (into the message) */
	size_t cert_len[SIGNER_MAX_CHAIN];
	const unsigned char *ocsp; /* NULL when none */
	size_t ocsp_len;
};

struct signer_reply {
	uint32_t id;
	uint8_t status; /* enum signer_status */
	uint8_t ca;     /* enum signer_ca, which CA signed (status ok) */
	const unsigned char *data; /* leaf DER, or the reason (not NUL-terminated) */
	size_t len;
};

/* Pure codecs: length written / 0 on success, -1 if it does not fit or is malformed. */
int signer_req_encode(const struct signer_req *r, unsigned char *buf, size_t cap);
int signer_req_parse(const unsigned char *buf, size_t len, struct signer_req *r);
int signer_reply_encode(const struct signer_reply *r, unsigned char *buf, size_t cap);
int signer_reply_parse(const unsigned char *buf, size_t len, struct signer_reply *r);

/* ------------------------------------------------------------ master */

struct signer;

/*
 * Start the signer of generation gen with what it needs from c and m
 * (copied), running as user; wait until it has loaded and checked the CA
 * keys and dropped its privileges (SIGNER_READY_MS).  workers: how many
 * workers the generation runs (the total rate cap).  in_child: run first
 * in the signer process, to close what it must not keep (listeners, the
 * queue).  NULL with err set when it did not start.
 */
struct signer *signer_new(const struct config *c, const struct tls_material *m, unsigned gen,
    const char *user, unsigned workers, void (*in_child)(void), char *err, size_t errlen);
/* The descriptor the generation's workers inherit to register their channels. */
int signer_reg_fd(const struct signer *s);
pid_t signer_pid(const struct signer *s);
/* A child exited: true if it was a signer (respawned, within limits, unless stopped). */
bool signer_reaped(pid_t pid, int status);
/* Stop it (SIGTERM, reaped here) and free it. */
void signer_free(struct signer *s);
/*
 * In a freshly forked child of the master: close every signer's
 * descriptors except keep's registration end (keep may be NULL).
 */
void signer_close_inherited(const struct signer *keep);

/* ------------------------------------------------------------ worker */

/* Register channels over this descriptor (inherited from the master). */
void signer_worker_attach(int reg_fd);
/* A new channel to the signer, registered; the caller owns it.  -1 on failure. */
int signer_channel_open(void);

/* The forging itself (pure; unit-tested). */
X509 *signer_make_leaf(X509 *upstream, X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *leaf_key);

/*
 * The signer's decision for one request, given the chain it validated
 * (pe->verify_result from tls_verify_chain): which CA signs, or a
 * refusal.  Pure; v gets the verdict.  Returns SIGNER_OK with *ca set, or
 * SIGNER_REFUSED.
 */
enum signer_status signer_decide(const struct conf_tls_profile *p, const struct tls_peer *pe,
    const char *refname, enum signer_ca want, enum signer_ca *ca, struct tls_verdict *v);

/*
 * Rate limiting: a token bucket of limit per minute (capacity limit),
 * in milli-tokens so the refill is exact in integers.  limit 0: no limit.
 */
struct signer_bucket {
	uint64_t milli;  /* tokens * 1000 */
	uint64_t last_ms;
};
void signer_bucket_init(struct signer_bucket *b, unsigned limit, uint64_t now_ms);
bool signer_bucket_take(struct signer_bucket *b, unsigned limit, uint64_t now_ms);

#endif
