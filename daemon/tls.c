/*
 * tls - contexts, material and upstream certificate validation.
 */
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"
#include "util.h"

struct tls_material *tls_global;

static unsigned char ticket_secret[32];

/* name (16) | AES-256 key (32) | HMAC key (32) for one rotation epoch */
static int
ticket_keys(uint64_t epoch, unsigned char out[80])
{
	unsigned char msg[12], part[32];
	unsigned int len;

	memcpy(msg, "tkt", 3);
	for (int i = 0; i < 8; i++)
		msg[3 + i] = (unsigned char)(epoch >> (8 * i));
	for (int k = 0; k < 3; k++) {
		msg[11] = (unsigned char)k;
		if (HMAC(EVP_sha256(), ticket_secret, sizeof(ticket_secret), msg, sizeof(msg), part,
		    &len) == NULL)
			return -1;
		memcpy(out + (k == 0 ? 0 : 16 + 32 * (k - 1)), part, k == 0 ? 16 : 32);
	}
	OPENSSL_cleanse(part, sizeof(part));
	return 0;
}

static int
ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
    EVP_MAC_CTX *hctx, int enc)
{
	uint64_t epoch = (uint64_t)time(NULL) / TLS_TICKET_ROTATE_S;
	unsigned char keys[80];
	OSSL_PARAM params[3];
	int rc = 0;

	(void)ssl;
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, keys + 48, 32);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (enc) {
		if (ticket_keys(epoch, keys) == 0 && RAND_bytes(iv, 16) == 1 &&
		    EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, keys + 16, iv) == 1 &&
		    EVP_MAC_CTX_set_params(hctx, params) == 1) {
			memcpy(name, keys, 16);
			rc = 1;
		} else {
			rc = -1;
		}
	} else {
		for (uint64_t e = epoch; e + 1 >= epoch && e <= epoch; e--) {
			if (ticket_keys(e, keys) < 0 || memcmp(name, keys, 16) != 0) {
				if (e == 0)
					break;
				continue;
			}
			if (EVP_MAC_CTX_set_params(hctx, params) == 1 &&
			    EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, keys + 16, iv) == 1)
				rc = e == epoch ? 1 : 2; /* 2: valid, but issue a fresh ticket */
			break;
		}
	}
	OPENSSL_cleanse(keys, sizeof(keys));
	return rc;
}

/* The upstream session cache: what each entry was judged on is its session's certificate. */
static struct {
	char key[TLS_RESUME_KEY_MAX];
	SSL_SESSION *sess;
	unsigned char cert[32]; /* SHA-256 of the session's peer certificate */
	unsigned long used;
} resume[TLS_RESUME_SLOTS];
static unsigned long resume_tick;

static void
resume_drop(int i)
{
	SSL_SESSION_free(resume[i].sess);
	resume[i].sess = NULL;
	resume[i].key[0] = '\0';
}

bool
tls_cert_digest(X509 *x, unsigned char out[32])
{
	unsigned int len = 0;

	return x && X509_digest(x, EVP_sha256(), out, &len) == 1 && len == 32;
}

/*
 * A destination's sessions are the slots with its key; a slot is free
 * when sess is NULL.  The newest is offered first.
 */
SSL_SESSION *
tls_resume_get(const char *key)
{
	uint64_t now = (uint64_t)time(NULL);
	int best = -1;

	for (int i = 0; i < TLS_RESUME_SLOTS; i++) {
		if (resume[i].sess == NULL || strcmp(resume[i].key, key) != 0)
			continue;
		if (!SSL_SESSION_is_resumable(resume[i].sess) ||
		    now > (uint64_t)SSL_SESSION_get_time(resume[i].sess) + TLS_RESUME_MAX_AGE) {
			resume_drop(i);
			continue;
		}
		if (best < 0 || resume[i].used > resume[best].used)
			best = i;
	}
	if (best < 0)
		return NULL;
	SSL_SESSION *sess = resume[best].sess;
	resume[best].sess = NULL; /* the caller's reference now: offered once */
	resume[best].key[0] = '\0';
	return sess;
}

void
tls_resume_put(const char *key, SSL_SESSION *sess)
{
	unsigned char cert[32];
	int free_slot = -1, lru = -1, mine = 0, oldest_mine = -1, slot;

	/* A session whose certificate we cannot name cannot be checked later: not kept. */
	if (strlen(key) >= sizeof(resume[0].key) ||
	    !tls_cert_digest(SSL_SESSION_get0_peer(sess), cert)) {
		SSL_SESSION_free(sess);
		return;
	}
	for (int i = 0; i < TLS_RESUME_SLOTS; i++) {
		if (resume[i].sess == NULL) {
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (lru < 0 || resume[i].used < resume[lru].used)
			lru = i;
		if (!strcmp(resume[i].key, key)) {
			mine++;
			if (oldest_mine < 0 || resume[i].used < resume[oldest_mine].used)
				oldest_mine = i;
		}
	}
	/*
	 * A full pool gives up its own oldest session; otherwise a free slot,
	 * else the least recently stored one of any destination.
	 */
	slot = mine >= TLS_RESUME_PER_DEST ? oldest_mine : free_slot >= 0 ? free_slot : lru;
	resume_drop(slot);
	snprintf(resume[slot].key, sizeof(resume[slot].key), "%s", key);
	resume[slot].sess = sess;
	memcpy(resume[slot].cert, cert, sizeof(cert));
	resume[slot].used = ++resume_tick;
}

bool
tls_resume_check(const char *key, X509 *peer)
{
	unsigned char cert[32];
	bool named = tls_cert_digest(peer, cert), dropped = false;

	for (int i = 0; i < TLS_RESUME_SLOTS; i++) {
		if (resume[i].sess == NULL || strcmp(resume[i].key, key) != 0)
			continue;
		if (named && memcmp(cert, resume[i].cert, sizeof(cert)) == 0)
			continue;
		resume_drop(i);
		dropped = true;
	}
	return dropped;
}

int
tls_parse_sni(const unsigned char *p, size_t len, char *out, size_t outlen)
{
	size_t list, off = 2;

	out[0] = '\0';
	if (len < 2)
		return -1;
	list = (size_t)p[0] << 8 | p[1];
	if (list + 2 != len)
		return -1;
	while (off + 3 <= len) {
		unsigned type = p[off];
		size_t n = (size_t)p[off + 1] << 8 | p[off + 2];

		off += 3;
		if (off + n > len)
			return -1;
		if (type == 0) { /* host_name */
			if (n == 0 || n >= outlen)
				return -1;
			for (size_t i = 0; i < n; i++)
				if (p[off + i] <= 0x20 || p[off + i] >= 0x7f)
					return -1;
			memcpy(out, p + off, n);
			out[n] = '\0';
			return 0;
		}
		off += n;
	}
	return off == len ? 0 : -1;
}

int
tls_parse_alpn(const unsigned char *p, size_t len, bool *smtp, bool *any)
{
	size_t list, off = 2;

	*smtp = *any = false;
	if (len < 2)
		return -1;
	list = (size_t)p[0] << 8 | p[1];
	if (list + 2 != len)
		return -1;
	while (off < len) {
		size_t n = p[off++];

		if (n == 0 || off + n > len)
			return -1;
		*any = true;
		if (n == 4 && memcmp(p + off, "smtp", 4) == 0)
			*smtp = true;
		off += n;
	}
	return 0;
}

void
tls_path(const struct config *c, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", c->tls_dir, name);
}

static EVP_PKEY *
make_ec_key(void)
{
	return EVP_EC_gen("P-256");
}

int
tls_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ex;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ex == NULL)
		return -1;
	X509_add_ext(cert, ex, -1);
	X509_EXTENSION_free(ex);
	return 0;
}

static int
random_serial(X509 *cert)
{
	unsigned char buf[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(buf, sizeof(buf)) != 1)
		return -1;
	buf[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(buf, sizeof(buf), NULL);
	ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
	BN_free(bn);
	return ok ? 0 : -1;
}

/* A version 3 certificate for key, self-issued, random serial, valid from an hour ago. */
static X509 *
new_cert(EVP_PKEY *key, const char *org, const char *cn, long days)
{
	X509 *cert = X509_new();
	X509_NAME *name;

	if (cert == NULL)
		return NULL;
	X509_set_version(cert, 2);
	if (random_serial(cert) < 0) {
		X509_free(cert);
		return NULL;
	}
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), days * 24 * 3600);
	X509_set_pubkey(cert, key);
	name = X509_get_subject_name(cert);
	if (org)
		X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)org, -1,
		    -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(cert, name);
	return cert;
}

int
tls_make_ca(const char *cn, X509 **certp, EVP_PKEY **keyp)
{
	EVP_PKEY *key = make_ec_key();
	X509 *cert = key ? new_cert(key, "smtpgw", cn, 10L * 365) : NULL;

	if (cert == NULL)
		goto fail;
	if (tls_add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
	    tls_add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    tls_add_ext(cert, cert, NID_subject_key_identifier, "hash") < 0)
		goto fail;
	if (X509_sign(cert, key, EVP_sha256()) == 0)
		goto fail;
	*certp = cert;
	*keyp = key;
	return 0;
fail:
	X509_free(cert);
	EVP_PKEY_free(key);
	return -1;
}

/* A self-signed Proxy Server certificate for this box's name. */
static int
make_server_cert(X509 **certp, EVP_PKEY **keyp)
{
	char host[256], san[300];
	EVP_PKEY *key = make_ec_key();
	X509 *cert;

	if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "smtpgw.invalid");
	host[sizeof(host) - 1] = '\0';
	cert = key ? new_cert(key, NULL, host, 2L * 365) : NULL;
	if (cert == NULL)
		goto fail;
	snprintf(san, sizeof(san), "DNS:%s", host);
	if (tls_add_ext(cert, cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    tls_add_ext(cert, cert, NID_key_usage, "critical,digitalSignature") < 0 ||
	    tls_add_ext(cert, cert, NID_ext_key_usage, "serverAuth") < 0 ||
	    tls_add_ext(cert, cert, NID_subject_alt_name, san) < 0 ||
	    tls_add_ext(cert, cert, NID_subject_key_identifier, "hash") < 0)
		goto fail;
	if (X509_sign(cert, key, EVP_sha256()) == 0)
		goto fail;
	*certp = cert;
	*keyp = key;
	return 0;
fail:
	X509_free(cert);
	EVP_PKEY_free(key);
	return -1;
}

/* Write a PEM file atomically with the given mode. */
static int
write_pem(const char *path, X509 *cert, EVP_PKEY *key, mode_t mode)
{
	char tmp[CONF_PATH_MAX + 16];
	FILE *f;
	int fd, ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	(void)fchmod(fd, mode);
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return -1;
	}
	ok = cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	if (fclose(f) != 0 || !ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int
ensure_pair(const struct config *c, const char *base, int kind, char *err, size_t errlen)
{
	char crt[CONF_PATH_MAX + 32], keyp[CONF_PATH_MAX + 32], name[64];
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	int rc;

	snprintf(name, sizeof(name), "%s.crt", base);
	tls_path(c, name, crt, sizeof(crt));
	snprintf(name, sizeof(name), "%s.key", base);
	tls_path(c, name, keyp, sizeof(keyp));
	if (access(crt, F_OK) == 0 && access(keyp, F_OK) == 0)
		return 0;
	if (kind == 0)
		rc = make_server_cert(&cert, &key);
	else
		rc = tls_make_ca(kind == 1 ? "smtpgw Proxy Authority"
		    : "smtpgw Untrusted Authority (certificate validation failed)", &cert, &key);
	if (rc < 0) {
		snprintf(err, errlen, "cannot generate %s", base);
		return -1;
	}
	if (write_pem(keyp, NULL, key, 0600) < 0 || write_pem(crt, cert, NULL, 0644) < 0) {
		snprintf(err, errlen, "%s: cannot write: %s", crt, strerror(errno));
		X509_free(cert);
		EVP_PKEY_free(key);
		return -1;
	}
	log_info("tls generated file=%s", crt);
	X509_free(cert);
	EVP_PKEY_free(key); /* OpenSSL wipes private key material on free */
	return 0;
}

int
tls_prepare_files(const struct config *c, char *err, size_t errlen)
{
	if (mkdir(c->tls_dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: cannot create: %s", c->tls_dir, strerror(errno));
		return -1;
	}
	if (ensure_pair(c, "proxy-server", 0, err, errlen) < 0 ||
	    ensure_pair(c, "proxy-authority", 1, err, errlen) < 0 ||
	    ensure_pair(c, "untrusted-authority", 2, err, errlen) < 0)
		return -1;
	return 0;
}

X509 *
tls_load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	if (f == NULL)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

/* Never ask for a passphrase: a daemon has no terminal, and -t must not hang on one. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

EVP_PKEY *
tls_load_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (f == NULL)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	ERR_clear_error();
	return k;
}

static int
proto_version(int v)
{
	switch (v) {
	case 10: return TLS1_VERSION;
	case 11: return TLS1_1_VERSION;
	case 13: return TLS1_3_VERSION;
	default: return TLS1_2_VERSION;
	}
}

static int
ctx_common(SSL_CTX *ctx, const struct config *c, const struct conf_tls_profile *p, char *err,
    size_t errlen)
{
	SSL_CTX_set_min_proto_version(ctx, proto_version(p->min_version));
	/* Below TLS 1.2 only when the profile asks: OpenSSL's level 1 allows it. */
	if (p->min_version < 12)
		SSL_CTX_set_security_level(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_SSLv3);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	    SSL_MODE_RELEASE_BUFFERS);
	/*
	 * Read-ahead: one read(2) takes what the socket holds instead of a
	 * record header and then its body (two reads per record, about 40
	 * per short session); io.c drains what is buffered (SSL_has_pending).
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (SSL_CTX_set_cipher_list(ctx, p->ciphers) != 1) {
		snprintf(err, errlen, "%s:%d: tls-profile %s: ciphers: OpenSSL accepts none of \"%s\"",
		    c->path, p->line, p->name, p->ciphers);
		ERR_clear_error();
		return -1;
	}
	if (SSL_CTX_set_ciphersuites(ctx, p->ciphersuites) != 1) {
		snprintf(err, errlen, "%s:%d: tls-profile %s: ciphersuites: OpenSSL accepts none of \"%s\"",
		    c->path, p->line, p->name, p->ciphersuites);
		ERR_clear_error();
		return -1;
	}
	return 0;
}

int
tls_profile_ctx(const struct config *c, int i, SSL_CTX **server, SSL_CTX **client, char *err,
    size_t errlen, char *warn, size_t warnlen)
{
	const struct conf_tls_profile *p = &c->profiles[i];
	SSL_CTX *s = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cl = SSL_CTX_new(TLS_client_method());

	err[0] = '\0';
	if (warn && warnlen)
		warn[0] = '\0';
	if (s == NULL || cl == NULL || ctx_common(s, c, p, err, errlen) < 0 ||
	    ctx_common(cl, c, p, err, errlen) < 0)
		goto fail;
	/* No 0-RTT: replayable early data has no place in SMTP. */
	SSL_CTX_set_max_early_data(s, 0);
	SSL_CTX_set_session_id_context(s, (const unsigned char *)"smtpgw", 6);
	SSL_CTX_set_tlsext_ticket_key_evp_cb(s, ticket_cb);
	/*
	 * One TLS 1.3 ticket per handshake, not OpenSSL's two: a sending MTA
	 * keeps one session per destination (Postfix's tlsmgr cache), and
	 * every ticket costs a session encoding, its encryption and a record.
	 */
	SSL_CTX_set_num_tickets(s, 1);
	/*
	 * Upstream validation: Debian's bundle plus the profile's extra CAs.
	 * A missing bundle leaves only the ca-file (every public server then
	 * fails validation): said, not fatal - the profile's actions decide.
	 */
	if (SSL_CTX_load_verify_locations(cl, c->trust_store, NULL) != 1 && warn && warnlen)
		snprintf(warn, warnlen, "%s: warning: trust-store %s cannot be loaded: upstream "
		    "certificates validate only against ca-file", c->path, c->trust_store);
	ERR_clear_error();
	if (p->ca_file[0] && SSL_CTX_load_verify_locations(cl, p->ca_file, NULL) != 1) {
		snprintf(err, errlen, "%s:%d: tls-profile %s: ca-file %s cannot be loaded (%s)",
		    c->path, p->line, p->name, p->ca_file,
		    access(p->ca_file, R_OK) < 0 ? strerror(errno) : "no PEM certificate in it");
		ERR_clear_error();
		goto fail;
	}
	/* We judge the result ourselves (tls_judge) so the handshake completes. */
	SSL_CTX_set_verify(cl, SSL_VERIFY_NONE, NULL);
	/* Sessions are kept per destination by the engine (tls_resume_*). */
	SSL_CTX_set_session_cache_mode(cl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	*server = s;
	*client = cl;
	return 0;
fail:
	if (!err[0])
		snprintf(err, errlen, "cannot create TLS contexts");
	SSL_CTX_free(s);
	SSL_CTX_free(cl);
	return -1;
}

void
tls_material_free(struct tls_material *m)
{
	if (m == NULL)
		return;
	X509_free(m->server_cert);
	EVP_PKEY_free(m->server_key);
	X509_free(m->pa_cert);
	X509_free(m->ua_cert);
	EVP_PKEY_free(m->leaf_key);
	for (int i = 0; i < CONF_MAX_PROFILES; i++) {
		SSL_CTX_free(m->server_ctx[i]);
		SSL_CTX_free(m->client_ctx[i]);
	}
	memset(m, 0, sizeof(*m));
}

/*
 * One certificate and key pair of tls-dir: both files there (loaded and
 * matching), or neither usable yet (*missing: generated at start).
 */
static int
check_pair(const struct config *c, const char *base, bool ca, bool *missing, char *err,
    size_t errlen)
{
	char crt[CONF_PATH_MAX + 32], key[CONF_PATH_MAX + 32], name[64];
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	int rc = -1;

	snprintf(name, sizeof(name), "%s.crt", base);
	tls_path(c, name, crt, sizeof(crt));
	snprintf(name, sizeof(name), "%s.key", base);
	tls_path(c, name, key, sizeof(key));
	*missing = access(crt, F_OK) < 0 || access(key, F_OK) < 0;
	if (*missing)
		return 0; /* tls_prepare_files makes the pair */
	if ((x = tls_load_cert(crt)) == NULL) {
		snprintf(err, errlen, "%s: cannot load the certificate (%s)", crt,
		    access(crt, R_OK) < 0 ? strerror(errno) : "not a PEM certificate");
		goto out;
	}
	if ((k = tls_load_key(key)) == NULL) {
		snprintf(err, errlen, "%s: cannot load the private key (%s)", key,
		    access(key, R_OK) < 0 ? strerror(errno) : "not a PEM key, or encrypted");
		goto out;
	}
	if (X509_check_private_key(x, k) != 1) {
		snprintf(err, errlen, "%s does not belong to %s", key, crt);
		goto out;
	}
	if (ca && X509_check_ca(x) == 0) {
		snprintf(err, errlen, "%s is not a CA certificate (basicConstraints CA:TRUE)", crt);
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	X509_free(x);
	EVP_PKEY_free(k);
	return rc;
}

int
tls_check(const struct config *c, char *err, size_t errlen, char *warn, size_t warnlen)
{
	static const struct {
		const char *base;
		bool ca;
	} pairs[] = {
		{ "proxy-server", false },
		{ "proxy-authority", true },
		{ "untrusted-authority", true },
	};
	char w[512];
	bool missing;

	err[0] = '\0';
	warn[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(pairs); i++) {
		if (check_pair(c, pairs[i].base, pairs[i].ca, &missing, err, errlen) < 0)
			return -1;
		if (missing && !warn[0])
			snprintf(warn, warnlen, "%s: note: %s/%s.{crt,key} missing: generated at start",
			    c->path, c->tls_dir, pairs[i].base);
	}
	for (int i = 0; i < c->n_profiles; i++) {
		SSL_CTX *s, *cl;

		if (tls_profile_ctx(c, i, &s, &cl, err, errlen, w, sizeof(w)) < 0)
			return -1;
		SSL_CTX_free(s);
		SSL_CTX_free(cl);
		if (w[0])
			snprintf(warn, warnlen, "%s", w);
	}
	return 0;
}

int
tls_load(const struct config *c, struct tls_material *m, EVP_PKEY *leaf, char *err,
    size_t errlen)
{
	char path[CONF_PATH_MAX + 32], warn[512];
	bool missing;

	memset(m, 0, sizeof(*m));
	err[0] = '\0';
	/*
	 * The same checks as -t, with the same words, except for the CA keys:
	 * the master never reads them (stdio buffers would leave their PEM in
	 * the heap every child is forked from); the signer checks them against
	 * these certificates when it starts (signer_new).
	 */
	if (check_pair(c, "proxy-server", false, &missing, err, errlen) < 0)
		return -1;
	tls_path(c, "proxy-server.crt", path, sizeof(path));
	m->server_cert = tls_load_cert(path);
	tls_path(c, "proxy-server.key", path, sizeof(path));
	m->server_key = tls_load_key(path);
	tls_path(c, "proxy-authority.crt", path, sizeof(path));
	m->pa_cert = tls_load_cert(path);
	tls_path(c, "untrusted-authority.crt", path, sizeof(path));
	m->ua_cert = tls_load_cert(path);
	if (!m->server_cert || !m->server_key || !m->pa_cert || !m->ua_cert) {
		snprintf(err, errlen, "%s: cannot load the Proxy Server certificate/key or the CA "
		    "certificates", c->tls_dir);
		goto fail;
	}
	if (X509_check_private_key(m->server_cert, m->server_key) != 1) {
		snprintf(err, errlen, "%s: proxy-server.key does not match proxy-server.crt",
		    c->tls_dir);
		goto fail;
	}
	if (X509_check_ca(m->pa_cert) == 0 || X509_check_ca(m->ua_cert) == 0) {
		snprintf(err, errlen, "%s: proxy-authority.crt and untrusted-authority.crt must be CA "
		    "certificates (basicConstraints CA:TRUE)", c->tls_dir);
		goto fail;
	}
	if (leaf)
		EVP_PKEY_up_ref(leaf);
	m->leaf_key = leaf ? leaf : make_ec_key();
	if (m->leaf_key == NULL) {
		snprintf(err, errlen, "cannot generate the forged-certificate key");
		goto fail;
	}
	/* Once per master: tickets stay valid across reloads. */
	static bool have_secret;
	if (!have_secret && RAND_bytes(ticket_secret, sizeof(ticket_secret)) != 1) {
		snprintf(err, errlen, "cannot make the session ticket secret");
		goto fail;
	}
	have_secret = true;
	for (int i = 0; i < c->n_profiles; i++) {
		if (tls_profile_ctx(c, i, &m->server_ctx[i], &m->client_ctx[i], err, errlen, warn,
		    sizeof(warn)) < 0)
			goto fail;
		if (warn[0] && i == 0)
			log_warn("tls error=\"%s\"", warn);
	}
	return 0;
fail:
	ERR_clear_error();
	tls_material_free(m);
	return -1;
}

static enum certfail_class
classify_error(long e)
{
	switch (e) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CRL_HAS_EXPIRED:
		return CF_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
	case X509_V_ERR_CRL_NOT_YET_VALID:
		return CF_NOT_YET_VALID;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return CF_UNTRUSTED_ISSUER;
	case X509_V_ERR_HOSTNAME_MISMATCH:
		return CF_NAME_MISMATCH;
	case X509_V_ERR_CERT_REVOKED:
		return CF_REVOKED;
	default:
		return CF_INVALID;
	}
}

/*
 * A stapled OCSP response, when the server sent one: it must verify against
 * the trust store and the chain; a revoked status or a bad response fails
 * the certificate.  No staple: nothing is claimed either way.
 */
static bool
ocsp_revoked(const struct tls_peer *pe, struct tls_verdict *v)
{
	const unsigned char *der = pe->ocsp;
	OCSP_RESPONSE *resp = NULL;
	OCSP_BASICRESP *bs = NULL;
	OCSP_CERTID *id = NULL;
	STACK_OF(X509) *chain = pe->chain;
	X509 *issuer = NULL;
	int status, reason;
	ASN1_GENERALIZEDTIME *rev, *thisupd, *nextupd;
	bool bad = false;

	if (pe->ocsp_len <= 0 || der == NULL)
		return false;
	resp = d2i_OCSP_RESPONSE(NULL, &der, pe->ocsp_len);
	if (resp == NULL || OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL ||
	    (bs = OCSP_response_get1_basic(resp)) == NULL) {
		snprintf(v->detail, sizeof(v->detail), "malformed OCSP staple");
		bad = true;
		goto out;
	}
	for (int i = 0; chain && i < sk_X509_num(chain); i++)
		if (X509_check_issued(sk_X509_value(chain, i), pe->leaf) == X509_V_OK)
			issuer = sk_X509_value(chain, i);
	if (issuer == NULL || OCSP_basic_verify(bs, chain, pe->store, 0) <= 0 ||
	    (id = OCSP_cert_to_id(NULL, pe->leaf, issuer)) == NULL ||
	    OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd, &nextupd) != 1 ||
	    OCSP_check_validity(thisupd, nextupd, 300, -1) != 1) {
		snprintf(v->detail, sizeof(v->detail), "OCSP staple does not verify");
		bad = true;
		goto out;
	}
	if (status == V_OCSP_CERTSTATUS_REVOKED) {
		v->cls = CF_REVOKED;
		snprintf(v->detail, sizeof(v->detail), "revoked (OCSP)");
		OCSP_CERTID_free(id);
		OCSP_BASICRESP_free(bs);
		OCSP_RESPONSE_free(resp);
		ERR_clear_error();
		return true;
	}
out:
	if (bad)
		v->cls = CF_INVALID;
	OCSP_CERTID_free(id);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
	ERR_clear_error();
	return bad;
}

/*
 * The chain of a resumed session, verified again now: its stored result
 * is from the handshake that made the session, against the trust store
 * and the clock of then.
 */
static long
verify_again(SSL *ssl, X509 *peer)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
	long e = X509_V_ERR_UNSPECIFIED;

	if (ctx && X509_STORE_CTX_init(ctx, SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), peer,
	    chain) == 1) {
		X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(ctx), SSL_get0_param(ssl));
		X509_STORE_CTX_set_default(ctx, "ssl_server");
		e = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
	}
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	return e;
}

/* RFC 9525 6.3: DNS names from the subjectAltName only, unless the profile allows the CN. */
static bool
name_matches(const struct conf_tls_profile *p, X509 *peer, const char *name)
{
	unsigned flags = X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS;

	if (!p->cn_fallback)
		flags |= X509_CHECK_FLAG_NEVER_CHECK_SUBJECT;
	return X509_check_host(peer, name, 0, flags, NULL) == 1;
}

void
tls_judge_peer(const struct conf_tls_profile *p, const struct tls_peer *pe, const char *refname,
    struct tls_verdict *v)
{
	X509 *peer = pe->leaf;
	long e = pe->verify_result;

	memset(v, 0, sizeof(*v));
	if (refname && refname[0])
		snprintf(v->reference, sizeof(v->reference), "%s", refname);
	else if (p->no_ref == NOREF_NAME)
		snprintf(v->reference, sizeof(v->reference), "%s", p->no_ref_name);
	v->no_reference = v->reference[0] == '\0';
	if (peer == NULL) {
		v->cls = CF_INVALID;
		snprintf(v->detail, sizeof(v->detail), "no certificate");
	} else if (e != X509_V_OK) {
		v->cls = classify_error(e);
		snprintf(v->detail, sizeof(v->detail), "%s", X509_verify_cert_error_string(e));
	} else if (p->ocsp && ocsp_revoked(pe, v)) {
		/* v filled by ocsp_revoked */
	} else if (!v->no_reference && !name_matches(p, peer, v->reference)) {
		v->cls = CF_NAME_MISMATCH;
		snprintf(v->detail, sizeof(v->detail), "name mismatch for %.80s", v->reference);
	} else if (v->no_reference && p->no_ref != NOREF_CHAIN_ONLY) {
		/* The chain is good, but there is no name it was meant for. */
		v->noref_failed = true;
		v->action = p->no_ref == NOREF_BLOCK ? CERTFAIL_BLOCK : CERTFAIL_UNTRUSTED_SIGN;
		snprintf(v->detail, sizeof(v->detail), "no reference name to check");
		return;
	} else {
		v->ok = true;
		v->action = CERTFAIL_ALLOW;
		snprintf(v->detail, sizeof(v->detail), v->no_reference ?
		    "ok (chain only: no reference name)" : "ok");
		return;
	}
	v->action = p->on_fail[v->cls];
}

const char *
tls_verdict_class(const struct tls_verdict *v)
{
	if (v->ok)
		return "-";
	if (v->noref_failed)
		return "no-reference-name";
	return certfail_class_keys[v->cls] + 3; /* "on-expired" -> "expired" */
}

/* Length-prefixed fields, so no two different bindings read alike. */
static int
bind_field(EVP_MD_CTX *md, const void *p, size_t len)
{
	unsigned char n[4] = { (unsigned char)(len >> 24), (unsigned char)(len >> 16),
		(unsigned char)(len >> 8), (unsigned char)len };

	return EVP_DigestUpdate(md, n, sizeof(n)) == 1 && EVP_DigestUpdate(md, p, len) == 1 ? 0 : -1;
}

static int
bind_str(EVP_MD_CTX *md, const char *s)
{
	return bind_field(md, s ? s : "", s ? strlen(s) : 0);
}

static int
bind_cert(EVP_MD_CTX *md, X509 *x)
{
	unsigned char h[32];

	if (x == NULL)
		return bind_field(md, "", 0);
	return tls_cert_digest(x, h) ? bind_field(md, h, sizeof(h)) : -1;
}

int
tls_binding_context(const struct tls_binding *b, unsigned char out[TLS_BINDING_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	const struct tls_verdict *v = b->verdict;
	char verdict[64];
	unsigned int len = 0;
	int rc = -1;

	if (v == NULL)
		snprintf(verdict, sizeof(verdict), "none");
	else
		snprintf(verdict, sizeof(verdict), "%s/%s/%s", v->ok ? "ok" : "failed",
		    tls_verdict_class(v), certfail_action_name(v->action));
	if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    bind_str(md, "smtpgw client session binding 1") == 0 &&
	    bind_str(md, b->inbound ? "inbound" : "outbound") == 0 &&
	    bind_str(md, b->destination) == 0 &&
	    bind_str(md, v ? v->reference : "") == 0 &&
	    bind_str(md, b->profile) == 0 &&
	    bind_cert(md, b->upstream) == 0 &&
	    bind_str(md, verdict) == 0 &&
	    bind_cert(md, b->shown_issuer) == 0 &&
	    EVP_DigestFinal_ex(md, out, &len) == 1 && len == TLS_BINDING_LEN)
		rc = 0;
	EVP_MD_CTX_free(md);
	return rc;
}

void
tls_judge(const struct conf_tls_profile *p, SSL *ssl, const char *refname, struct tls_verdict *v)
{
	struct tls_peer pe = {
		.leaf = SSL_get0_peer_certificate(ssl),
		.chain = SSL_get_peer_cert_chain(ssl),
		.verify_result = SSL_get_verify_result(ssl),
		.store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)),
	};
	unsigned char *staple = NULL;

	/* A resumed session's stored result is from the handshake that made it. */
	if (pe.leaf && SSL_session_reused(ssl))
		pe.verify_result = verify_again(ssl, pe.leaf);
	pe.ocsp_len = SSL_get_tlsext_status_ocsp_resp(ssl, &staple);
	pe.ocsp = staple;
	tls_judge_peer(p, &pe, refname, v);
}

long
tls_verify_chain(SSL_CTX *ctx, STACK_OF(X509) *chain)
{
	X509_STORE_CTX *sc = X509_STORE_CTX_new();
	X509_VERIFY_PARAM *param;
	long e = X509_V_ERR_UNSPECIFIED;

	if (sc == NULL || chain == NULL || sk_X509_num(chain) < 1)
		goto out;
	/* What OpenSSL's client does with the server's chain (ssl_verify_cert_chain). */
	if (X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(ctx), sk_X509_value(chain, 0),
	    chain) != 1)
		goto out;
	X509_STORE_CTX_set_default(sc, "ssl_server");
	param = X509_STORE_CTX_get0_param(sc);
	X509_VERIFY_PARAM_set1(param, SSL_CTX_get0_param(ctx));
	X509_VERIFY_PARAM_set_auth_level(param, SSL_CTX_get_security_level(ctx));
	(void)X509_verify_cert(sc);
	e = X509_STORE_CTX_get_error(sc);
out:
	X509_STORE_CTX_free(sc);
	ERR_clear_error();
	return e;
}

void
tls_describe_peer(SSL *ssl, char *out, size_t len)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);
	char subj[200], iss[200], qs[200], qi[200];

	if (peer == NULL) {
		snprintf(out, len, "subject=- issuer=-");
		return;
	}
	X509_NAME_oneline(X509_get_subject_name(peer), subj, sizeof(subj));
	X509_NAME_oneline(X509_get_issuer_name(peer), iss, sizeof(iss));
	snprintf(out, len, "subject=%s issuer=%s", log_quote(qs, sizeof(qs), subj, strlen(subj)),
	    log_quote(qi, sizeof(qi), iss, strlen(iss)));
}
