/*
 * test_tls - certificate forging, upstream certificate judgement against
 * TLS profiles (names per RFC 9525, reference-name rules, resumed sessions),
 * client-session bindings, the upstream session cache, and the
 * ClientHello extension parsers.
 *
 * Real OpenSSL objects throughout: CAs and server certificates are made
 * here, handshakes run over a socketpair, and the forged leaf is checked
 * field by field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "signer.h"
#include "tls.h"

/* A CA-signed server certificate with the given names and validity. */
static X509 *
make_server(X509 *ca, EVP_PKEY *cakey, EVP_PKEY *key, const char *cn, const char *san,
    long not_before, long not_after)
{
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ex;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
	X509_gmtime_adj(X509_getm_notBefore(x), not_before);
	X509_gmtime_adj(X509_getm_notAfter(x), not_after);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(ca ? ca : x));
	if (san) {
		X509V3_set_ctx_nodb(&ctx);
		X509V3_set_ctx(&ctx, ca ? ca : x, x, NULL, NULL, 0);
		ex = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
		assert_non_null(ex);
		X509_add_ext(x, ex, -1);
		X509_EXTENSION_free(ex);
	}
	assert_true(X509_sign(x, cakey ? cakey : key, EVP_sha256()) > 0);
	return x;
}

/* A CA certificate, self-signed or issued by issuer (no path length limit). */
static void
make_ca(const char *cn, X509 *issuer, EVP_PKEY *issuer_key, X509 **certp, EVP_PKEY **keyp)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509V3_CTX ctx;
	const char *exts[][2] = {
		{ "basicConstraints", "critical,CA:TRUE" },
		{ "keyUsage", "critical,keyCertSign,cRLSign" },
		{ "subjectKeyIdentifier", "hash" },
	};

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400 * 30);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		X509_EXTENSION *ex = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
		assert_non_null(ex);
		X509_add_ext(x, ex, -1);
		X509_EXTENSION_free(ex);
	}
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	*certp = x;
	*keyp = key;
}

/* Add a subjectAltName of DNS names built as objects (no string parsing). */
static void
add_dns_sans(X509 *x, const char *const *names, int n)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();

	for (int i = 0; i < n; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
		ASN1_STRING_set(ia5, names[i], -1);
		GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
		sk_GENERAL_NAME_push(gens, g);
	}
	assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_REPLACE), 1);
	GENERAL_NAMES_free(gens);
}

/* ------------------------------------------------------------- forging */

static void
test_forge_copies_names_and_sets_extensions(void **state)
{
	X509 *ca, *upca, *up, *leaf;
	EVP_PKEY *cakey, *upcakey, *upkey = EVP_EC_gen("P-256"), *leafkey = EVP_EC_gen("P-256");

	(void)state;
	assert_int_equal(tls_make_ca("test PA", &ca, &cakey), 0);
	assert_int_equal(tls_make_ca("upstream CA", &upca, &upcakey), 0);
	/* A DNS name that looks like a list must stay one name (HAProxy's SAN injection). */
	up = make_server(upca, upcakey, upkey, "mx.example.test", NULL, -3600, 86400 * 90);
	const char *names[] = { "mx.example.test", "a,IP:10.0.0.1", "b\",DNS:evil.test" };
	add_dns_sans(up, names, 3);
	X509_sign(up, upcakey, EVP_sha256());
	leaf = signer_make_leaf(up, ca, cakey, leafkey);
	assert_non_null(leaf);

	/* subject and subjectAltName copied as objects */
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(leaf), X509_get_subject_name(up)), 0);
	GENERAL_NAMES *a = X509_get_ext_d2i(up, NID_subject_alt_name, NULL, NULL);
	GENERAL_NAMES *b = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	assert_int_equal(sk_GENERAL_NAME_num(a), sk_GENERAL_NAME_num(b));
	for (int i = 0; i < sk_GENERAL_NAME_num(a); i++)
		assert_int_equal(GENERAL_NAME_cmp(sk_GENERAL_NAME_value(a, i),
		    sk_GENERAL_NAME_value(b, i)), 0);
	GENERAL_NAMES_free(a);
	GENERAL_NAMES_free(b);
	/* issued by the PA, verifiable with its key; AKI = the PA's SKI; own SKI */
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(ca)), 0);
	assert_int_equal(X509_verify(leaf, cakey), 1);
	const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(leaf);
	const ASN1_OCTET_STRING *caski = X509_get0_subject_key_id(ca);
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(leaf);
	assert_non_null(aki);
	assert_non_null(ski);
	assert_int_equal(ASN1_OCTET_STRING_cmp(aki, caski), 0);
	assert_int_not_equal(ASN1_OCTET_STRING_cmp(ski, caski), 0);
	/* a leaf for TLS servers, with the key usage of an EC key */
	assert_int_equal(X509_check_ca(leaf), 0);
	assert_true(X509_get_extension_flags(leaf) & EXFLAG_KUSAGE);
	assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
	assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), leafkey), 1);
	/* short validity: at most SIGNER_VALIDITY_DAYS from now */
	time_t limit = time(NULL) + (SIGNER_VALIDITY_DAYS * 86400L) + 60;
	assert_true(X509_cmp_time(X509_get0_notAfter(leaf), &limit) < 0);
	/* random serials: two forgeries of the same certificate differ */
	X509 *again = signer_make_leaf(up, ca, cakey, leafkey);
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(leaf),
	    X509_get0_serialNumber(again)), 0);

	X509_free(again);
	X509_free(leaf);
	X509_free(up);
	X509_free(ca);
	X509_free(upca);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(upcakey);
	EVP_PKEY_free(upkey);
	EVP_PKEY_free(leafkey);
}

static void
test_forge_rsa_leaf_key_usage(void **state)
{
	X509 *ca, *up, *leaf;
	EVP_PKEY *cakey, *upkey = EVP_EC_gen("P-256"), *rsa = EVP_RSA_gen(2048);

	(void)state;
	assert_int_equal(tls_make_ca("test PA", &ca, &cakey), 0);
	up = make_server(NULL, NULL, upkey, "self.example.test", NULL, -60, 86400);
	leaf = signer_make_leaf(up, ca, cakey, rsa);
	assert_non_null(leaf);
	assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
	/* no SAN upstream: none invented */
	assert_null(X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL));
	X509_free(leaf);
	X509_free(up);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(upkey);
	EVP_PKEY_free(rsa);
}

/* ------------------------------------------------------------- judging */

struct pki {
	X509 *root, *inter;
	EVP_PKEY *rootkey, *interkey, *srvkey;
	char rootfile[64];
};

static struct pki pki;

static int
setup_pki(void **state)
{
	(void)state;
	make_ca("judge root", NULL, NULL, &pki.root, &pki.rootkey);
	make_ca("judge intermediate", pki.root, pki.rootkey, &pki.inter, &pki.interkey);
	pki.srvkey = EVP_EC_gen("P-256");
	snprintf(pki.rootfile, sizeof(pki.rootfile), "/tmp/smtpgw-test-root-%d.pem", (int)getpid());
	FILE *f = fopen(pki.rootfile, "w");
	PEM_write_X509(f, pki.root);
	fclose(f);
	return 0;
}

static int
teardown_pki(void **state)
{
	(void)state;
	unlink(pki.rootfile);
	X509_free(pki.root);
	X509_free(pki.inter);
	EVP_PKEY_free(pki.rootkey);
	EVP_PKEY_free(pki.interkey);
	EVP_PKEY_free(pki.srvkey);
	return 0;
}

/*
 * Handshake a client (trusting root only) with a server presenting cert
 * (and chain), then judge the result under profile p with refname.
 */
static void
judge(X509 *cert, X509 *chain, const struct conf_tls_profile *p, const char *refname,
    struct tls_verdict *v)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
	SSL *srv, *cli;
	int sv[2], done_c = 0, done_s = 0;

	/* non-blocking: both peers run in this one thread, taking turns */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	SSL_CTX_use_certificate(sctx, cert);
	SSL_CTX_use_PrivateKey(sctx, pki.srvkey);
	if (chain)
		SSL_CTX_add1_chain_cert(sctx, chain);
	SSL_CTX_load_verify_locations(cctx, pki.rootfile, NULL);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	SSL_set_fd(srv, sv[0]);
	SSL_set_fd(cli, sv[1]);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	for (int i = 0; i < 50 && !(done_c && done_s); i++) {
		if (!done_c) {
			int r = SSL_do_handshake(cli);
			done_c = r == 1;
			if (r != 1 && SSL_get_error(cli, r) != SSL_ERROR_WANT_READ &&
			    SSL_get_error(cli, r) != SSL_ERROR_WANT_WRITE)
				fail_msg("client handshake failed");
		}
		if (!done_s) {
			int r = SSL_do_handshake(srv);
			done_s = r == 1;
			if (r != 1 && SSL_get_error(srv, r) != SSL_ERROR_WANT_READ &&
			    SSL_get_error(srv, r) != SSL_ERROR_WANT_WRITE)
				fail_msg("server handshake failed");
		}
	}
	assert_true(done_c);
	/* the signer's re-validation of the chain gives the handshake's result */
	assert_int_equal(tls_verify_chain(cctx, SSL_get_peer_cert_chain(cli)),
	    SSL_get_verify_result(cli));
	tls_judge(p, cli, refname, v);
	SSL_free(srv);
	SSL_free(cli);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	close(sv[0]);
	close(sv[1]);
}

static struct conf_tls_profile
profile(enum certfail_action all)
{
	struct conf_tls_profile p;

	memset(&p, 0, sizeof(p));
	for (int i = 0; i < CF_COUNT; i++)
		p.on_fail[i] = all;
	return p;
}

static void
test_judge_classes_and_actions(void **state)
{
	struct conf_tls_profile p = profile(CERTFAIL_UNTRUSTED_SIGN);
	struct tls_verdict v;
	X509 *good, *expired, *future, *selfsigned, *leaf_of_inter;
	X509 *other;
	EVP_PKEY *otherkey;

	(void)state;
	good = make_server(pki.root, pki.rootkey, pki.srvkey, "mx.ext.test", "DNS:mx.ext.test",
	    -3600, 86400);
	expired = make_server(pki.root, pki.rootkey, pki.srvkey, "mx.ext.test", "DNS:mx.ext.test",
	    -86400 * 10, -86400);
	future = make_server(pki.root, pki.rootkey, pki.srvkey, "mx.ext.test", "DNS:mx.ext.test",
	    86400, 86400 * 10);
	selfsigned = make_server(NULL, NULL, pki.srvkey, "mx.ext.test", "DNS:mx.ext.test", -60,
	    86400);
	leaf_of_inter = make_server(pki.inter, pki.interkey, pki.srvkey, "mx.ext.test",
	    "DNS:mx.ext.test", -60, 86400);
	tls_make_ca("unknown CA", &other, &otherkey);
	X509 *unknown = make_server(other, otherkey, pki.srvkey, "mx.ext.test", "DNS:mx.ext.test",
	    -60, 86400);

	judge(good, NULL, &p, "mx.ext.test", &v);
	assert_true(v.ok);
	assert_int_equal(v.action, CERTFAIL_ALLOW);
	judge(good, NULL, &p, NULL, &v); /* no SNI: no name to check */
	assert_true(v.ok);

	struct {
		X509 *cert, *chain;
		const char *ref;
		enum certfail_class cls;
	} cases[] = {
		{ expired, NULL, "mx.ext.test", CF_EXPIRED },
		{ future, NULL, "mx.ext.test", CF_NOT_YET_VALID },
		{ selfsigned, NULL, "mx.ext.test", CF_UNTRUSTED_ISSUER },
		{ unknown, NULL, "mx.ext.test", CF_UNTRUSTED_ISSUER },
		{ leaf_of_inter, NULL, "mx.ext.test", CF_UNTRUSTED_ISSUER }, /* intermediate missing */
		{ good, NULL, "other.example.test", CF_NAME_MISMATCH },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		judge(cases[i].cert, cases[i].chain, &p, cases[i].ref, &v);
		if (v.ok || v.cls != cases[i].cls)
			fail_msg("case %zu: ok=%d class=%d, expected class %d (%s)", i, v.ok, v.cls,
			    cases[i].cls, v.detail);
		assert_int_equal(v.action, CERTFAIL_UNTRUSTED_SIGN);
	}
	/* with the intermediate sent, the chain validates */
	judge(leaf_of_inter, pki.inter, &p, "mx.ext.test", &v);
	assert_true(v.ok);
	/* the action comes from the profile, per class */
	p.on_fail[CF_EXPIRED] = CERTFAIL_BLOCK;
	p.on_fail[CF_NAME_MISMATCH] = CERTFAIL_ALLOW;
	judge(expired, NULL, &p, "mx.ext.test", &v);
	assert_int_equal(v.action, CERTFAIL_BLOCK);
	judge(good, NULL, &p, "wrong.example.test", &v);
	assert_int_equal(v.action, CERTFAIL_ALLOW);
	assert_false(v.ok); /* allowed, but never claimed as validated */

	X509_free(good);
	X509_free(expired);
	X509_free(future);
	X509_free(selfsigned);
	X509_free(leaf_of_inter);
	X509_free(unknown);
	X509_free(other);
	EVP_PKEY_free(otherkey);
}

/* ------------------------------------------- names and reference rules */

static void
test_name_rules(void **state)
{
	struct conf_tls_profile p = profile(CERTFAIL_UNTRUSTED_SIGN);
	struct tls_verdict v;
	X509 *cnonly, *wild, *good;

	(void)state;
	cnonly = make_server(pki.root, pki.rootkey, pki.srvkey, "legacy.ext.test", NULL, -60, 86400);
	wild = make_server(pki.root, pki.rootkey, pki.srvkey, "wild", "DNS:*.ext.test", -60, 86400);
	good = make_server(pki.root, pki.rootkey, pki.srvkey, "mx.ext.test", "DNS:mx.ext.test",
	    -60, 86400);

	/* RFC 9525: a name only in the subject CN is no match ... */
	judge(cnonly, NULL, &p, "legacy.ext.test", &v);
	assert_false(v.ok);
	assert_int_equal(v.cls, CF_NAME_MISMATCH);
	assert_string_equal(tls_verdict_class(&v), "name-mismatch");
	assert_string_equal(v.reference, "legacy.ext.test");
	/* ... unless the profile allows the old fallback */
	p.cn_fallback = true;
	judge(cnonly, NULL, &p, "legacy.ext.test", &v);
	assert_true(v.ok);
	p.cn_fallback = false;
	/* a SAN with DNS names: the CN is never looked at, fallback or not */
	p.cn_fallback = true;
	judge(wild, NULL, &p, "wild", &v);
	assert_false(v.ok);
	p.cn_fallback = false;
	/* wildcards: one whole left-most label */
	judge(wild, NULL, &p, "mx.ext.test", &v);
	assert_true(v.ok);
	judge(wild, NULL, &p, "a.b.ext.test", &v);
	assert_false(v.ok);
	judge(wild, NULL, &p, "ext.test", &v);
	assert_false(v.ok);

	/* no reference name: the profile's rule */
	judge(good, NULL, &p, NULL, &v);
	assert_true(v.ok && v.no_reference);
	assert_string_equal(v.reference, "");
	judge(good, NULL, &p, "", &v);
	assert_true(v.ok && v.no_reference);
	p.no_ref = NOREF_UNTRUSTED_SIGN;
	judge(good, NULL, &p, NULL, &v);
	assert_false(v.ok);
	assert_true(v.noref_failed && v.no_reference);
	assert_int_equal(v.action, CERTFAIL_UNTRUSTED_SIGN);
	assert_string_equal(tls_verdict_class(&v), "no-reference-name");
	p.no_ref = NOREF_BLOCK;
	judge(good, NULL, &p, NULL, &v);
	assert_int_equal(v.action, CERTFAIL_BLOCK);
	/* a chain failure is that failure, reference or not */
	X509 *selfsigned = make_server(NULL, NULL, pki.srvkey, "mx.ext.test", "DNS:mx.ext.test",
	    -60, 86400);
	judge(selfsigned, NULL, &p, NULL, &v);
	assert_false(v.noref_failed);
	assert_int_equal(v.cls, CF_UNTRUSTED_ISSUER);
	assert_int_equal(v.action, CERTFAIL_UNTRUSTED_SIGN);
	/* a client's name always wins over the rule */
	judge(good, NULL, &p, "mx.ext.test", &v);
	assert_true(v.ok && !v.no_reference);
	p.no_ref = NOREF_NAME;
	snprintf(p.no_ref_name, sizeof(p.no_ref_name), "mx.ext.test");
	judge(good, NULL, &p, NULL, &v);
	assert_true(v.ok && !v.no_reference);
	assert_string_equal(v.reference, "mx.ext.test");
	snprintf(p.no_ref_name, sizeof(p.no_ref_name), "other.ext.test");
	judge(good, NULL, &p, NULL, &v);
	assert_int_equal(v.cls, CF_NAME_MISMATCH);
	assert_string_equal(tls_verdict_class(&v), "name-mismatch");

	X509_free(cnonly);
	X509_free(wild);
	X509_free(good);
	X509_free(selfsigned);
}

/* ------------------------------------------------------------ bindings */

static void
test_binding_context(void **state)
{
	X509 *up1, *up2, *pa, *ua;
	EVP_PKEY *k1, *k2;
	struct tls_verdict ok = { .ok = true, .action = CERTFAIL_ALLOW, .reference = "mx.ext.test" };
	struct tls_verdict bad = { .cls = CF_UNTRUSTED_ISSUER, .action = CERTFAIL_UNTRUSTED_SIGN,
		.reference = "mx.ext.test" };
	struct tls_verdict other = ok;
	unsigned char base[TLS_BINDING_LEN], x[TLS_BINDING_LEN];

	(void)state;
	snprintf(other.reference, sizeof(other.reference), "mx2.ext.test");
	assert_int_equal(tls_make_ca("up 1", &up1, &k1), 0);
	assert_int_equal(tls_make_ca("up 2", &up2, &k2), 0);
	pa = up2; /* any two distinct certificates will do as "CAs" */
	ua = up1;
	struct tls_binding b = {
		.inbound = false, .destination = "198.51.100.25:25", .profile = "Testbed",
		.upstream = up1, .verdict = &ok, .shown_issuer = pa,
	};
	assert_int_equal(tls_binding_context(&b, base), 0);
	assert_int_equal(tls_binding_context(&b, x), 0);
	assert_memory_equal(base, x, sizeof(x)); /* deterministic: every worker agrees */

	/* each part of the binding changes it */
	struct tls_binding c;
#define DIFFERS(change) do { c = b; change; assert_int_equal(tls_binding_context(&c, x), 0); \
	assert_memory_not_equal(base, x, sizeof(x)); } while (0)
	DIFFERS(c.inbound = true);
	DIFFERS(c.destination = "198.51.100.25:465");
	DIFFERS(c.destination = "198.51.100.26:25");
	DIFFERS(c.profile = "Other");
	DIFFERS(c.upstream = up2);
	DIFFERS(c.upstream = NULL);
	DIFFERS(c.verdict = &bad);
	DIFFERS(c.verdict = &other);
	DIFFERS(c.verdict = NULL);
	DIFFERS(c.shown_issuer = ua);
#undef DIFFERS
	/* fields cannot slide into each other */
	struct tls_binding d = b, e = b;
	d.destination = "a";
	d.profile = "bc";
	e.destination = "ab";
	e.profile = "c";
	unsigned char dx[TLS_BINDING_LEN], ex[TLS_BINDING_LEN];
	assert_int_equal(tls_binding_context(&d, dx), 0);
	assert_int_equal(tls_binding_context(&e, ex), 0);
	assert_memory_not_equal(dx, ex, sizeof(dx));

	X509_free(up1);
	X509_free(up2);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
}

/* One handshake over a socketpair; the client offers sess (may be NULL). */
static bool
handshake_pair(SSL_CTX *sctx, SSL_CTX *cctx, const unsigned char *sid_ctx, SSL_SESSION *sess,
    SSL **clip, SSL **srvp)
{
	int sv[2], done_c = 0, done_s = 0;
	SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	SSL_set_fd(srv, sv[0]);
	SSL_set_fd(cli, sv[1]);
	if (sid_ctx)
		assert_int_equal(SSL_set_session_id_context(srv, sid_ctx, TLS_BINDING_LEN), 1);
	if (sess)
		assert_int_equal(SSL_set_session(cli, sess), 1);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	for (int i = 0; i < 50 && !(done_c && done_s); i++) {
		if (!done_c)
			done_c = SSL_do_handshake(cli) == 1;
		if (!done_s)
			done_s = SSL_do_handshake(srv) == 1;
	}
	/* TLS 1.3: the server's tickets arrive with the client's first read */
	char b;
	(void)SSL_read(cli, &b, 1);
	*clip = cli;
	*srvp = srv;
	return done_c && done_s;
}

static void
free_pair(SSL *cli, SSL *srv)
{
	/* a session freed without close_notify is dropped from the caches */
	(void)SSL_shutdown(cli);
	(void)SSL_shutdown(srv);
	close(SSL_get_fd(cli));
	close(SSL_get_fd(srv));
	SSL_free(cli);
	SSL_free(srv);
}

/*
 * What the client-leg binding relies on: a server SSL whose session id
 * context differs from the offered session's never resumes it -- TLS 1.3
 * tickets, TLS 1.2 tickets, TLS 1.2 session IDs.
 */
static void
test_resumption_needs_the_binding(void **state)
{
	static const struct { int maxv; bool tickets; } kinds[] = {
		{ TLS1_3_VERSION, true }, { TLS1_2_VERSION, true }, { TLS1_2_VERSION, false },
	};
	X509 *cert = make_server(pki.root, pki.rootkey, pki.srvkey, "mx.ext.test",
	    "DNS:mx.ext.test", -60, 86400);
	unsigned char a[TLS_BINDING_LEN], b[TLS_BINDING_LEN];

	(void)state;
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
		SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
		SSL *cli, *srv;

		SSL_CTX_use_certificate(sctx, cert);
		SSL_CTX_use_PrivateKey(sctx, pki.srvkey);
		SSL_CTX_set_session_id_context(sctx, (const unsigned char *)"smtpgw", 6);
		SSL_CTX_set_max_proto_version(cctx, kinds[k].maxv);
		if (!kinds[k].tickets)
			SSL_CTX_set_options(sctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);

		assert_true(handshake_pair(sctx, cctx, a, NULL, &cli, &srv));
		SSL_SESSION *sess = SSL_get1_session(cli);
		assert_non_null(sess);
		assert_int_equal(SSL_SESSION_has_ticket(sess), kinds[k].tickets);
		free_pair(cli, srv);

		/* the same binding: resumed */
		assert_true(handshake_pair(sctx, cctx, a, sess, &cli, &srv));
		if (!SSL_session_reused(srv))
			fail_msg("kind %zu: not resumed under its own binding", k);
		SSL_SESSION *again = SSL_get1_session(cli);
		free_pair(cli, srv);

		/* another binding: a full handshake, certificate and all */
		assert_true(handshake_pair(sctx, cctx, b, again, &cli, &srv));
		if (SSL_session_reused(srv) || SSL_session_reused(cli))
			fail_msg("kind %zu: resumed under another binding", k);
		assert_non_null(SSL_get0_peer_certificate(cli));
		free_pair(cli, srv);

		SSL_SESSION_free(sess);
		SSL_SESSION_free(again);
		SSL_CTX_free(sctx);
		SSL_CTX_free(cctx);
	}
	X509_free(cert);
}

/*
 * A resumed upstream session is judged on now's trust store, not on the
 * verification stored with it: here the root it chained to is no longer
 * trusted when the session is resumed.
 */
static void
test_resumed_session_judged_again(void **state)
{
	struct conf_tls_profile p = profile(CERTFAIL_UNTRUSTED_SIGN);
	X509 *cert = make_server(pki.root, pki.rootkey, pki.srvkey, "mx.ext.test",
	    "DNS:mx.ext.test", -60, 86400);
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *trusting = SSL_CTX_new(TLS_client_method());
	SSL_CTX *distrusting = SSL_CTX_new(TLS_client_method());
	SSL *cli, *srv;
	struct tls_verdict v;

	(void)state;
	SSL_CTX_use_certificate(sctx, cert);
	SSL_CTX_use_PrivateKey(sctx, pki.srvkey);
	SSL_CTX_set_session_id_context(sctx, (const unsigned char *)"smtpgw", 6);
	SSL_CTX_load_verify_locations(trusting, pki.rootfile, NULL);
	SSL_CTX_set_verify(trusting, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_verify(distrusting, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(trusting, SSL_SESS_CACHE_CLIENT);

	assert_true(handshake_pair(sctx, trusting, NULL, NULL, &cli, &srv));
	tls_judge(&p, cli, "mx.ext.test", &v);
	assert_true(v.ok);
	SSL_SESSION *sess = SSL_get1_session(cli);
	free_pair(cli, srv);

	assert_true(handshake_pair(sctx, distrusting, NULL, sess, &cli, &srv));
	assert_true(SSL_session_reused(cli));
	assert_int_equal(SSL_get_verify_result(cli), X509_V_OK); /* what the session remembers */
	tls_judge(&p, cli, "mx.ext.test", &v);
	assert_false(v.ok);
	assert_int_equal(v.cls, CF_UNTRUSTED_ISSUER);
	/* and the name is still checked on the session's certificate */
	free_pair(cli, srv);
	assert_true(handshake_pair(sctx, trusting, NULL, sess, &cli, &srv));
	assert_true(SSL_session_reused(cli));
	tls_judge(&p, cli, "other.ext.test", &v);
	assert_int_equal(v.cls, CF_NAME_MISMATCH);
	tls_judge(&p, cli, "mx.ext.test", &v);
	assert_true(v.ok);
	free_pair(cli, srv);

	SSL_SESSION_free(sess);
	SSL_CTX_free(sctx);
	SSL_CTX_free(trusting);
	SSL_CTX_free(distrusting);
	X509_free(cert);
}

/* The upstream cache: keyed by destination, dropped when the certificate changes. */
static void
test_resume_cache(void **state)
{
	X509 *c1 = make_server(pki.root, pki.rootkey, pki.srvkey, "mx.ext.test", "DNS:mx.ext.test",
	    -60, 86400);
	X509 *c2 = make_server(pki.root, pki.rootkey, pki.srvkey, "mx.ext.test", "DNS:mx.ext.test",
	    -120, 86400);
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *cli, *srv;

	(void)state;
	SSL_CTX_use_certificate(sctx, c1);
	SSL_CTX_use_PrivateKey(sctx, pki.srvkey);
	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);
	assert_true(handshake_pair(sctx, cctx, NULL, NULL, &cli, &srv));
	tls_resume_put("198.51.100.25:25/mx.ext.test/0", SSL_get1_session(cli));
	free_pair(cli, srv);

	assert_null(tls_resume_get("198.51.100.25:25//0"));
	SSL_SESSION *s = tls_resume_get("198.51.100.25:25/mx.ext.test/0");
	assert_non_null(s);
	/* offered once: taken out of the cache */
	assert_null(tls_resume_get("198.51.100.25:25/mx.ext.test/0"));
	tls_resume_put("198.51.100.25:25/mx.ext.test/0", s);
	/* the same certificate in a full handshake: kept */
	assert_false(tls_resume_check("198.51.100.25:25/mx.ext.test/0", c1));
	assert_false(tls_resume_check("nothing cached", c2));
	/* another certificate: gone */
	assert_true(tls_resume_check("198.51.100.25:25/mx.ext.test/0", c2));
	assert_null(tls_resume_get("198.51.100.25:25/mx.ext.test/0"));

	/*
	 * A pool per destination: concurrent handshakes each take their own
	 * session, newest first; at most TLS_RESUME_PER_DEST are kept (the
	 * oldest goes), and a certificate change drops them all.
	 */
	SSL_SESSION *pool[TLS_RESUME_PER_DEST + 2];
	for (int i = 0; i < TLS_RESUME_PER_DEST + 2; i++) {
		assert_true(handshake_pair(sctx, cctx, NULL, NULL, &cli, &srv));
		pool[i] = SSL_get1_session(cli);
		SSL_SESSION_up_ref(pool[i]);
		tls_resume_put("198.51.100.26:25/mx.ext.test/0", pool[i]);
		free_pair(cli, srv);
	}
	tls_resume_put("198.51.100.27:25/other/0", SSL_SESSION_dup(pool[0]));
	for (int i = TLS_RESUME_PER_DEST + 1; i >= 2; i--) {
		s = tls_resume_get("198.51.100.26:25/mx.ext.test/0");
		assert_ptr_equal(s, pool[i]);
		SSL_SESSION_free(s);
	}
	assert_null(tls_resume_get("198.51.100.26:25/mx.ext.test/0"));
	for (int i = 0; i < 4; i++) {
		SSL_SESSION_up_ref(pool[i]);
		tls_resume_put("198.51.100.26:25/mx.ext.test/0", pool[i]);
	}
	assert_true(tls_resume_check("198.51.100.26:25/mx.ext.test/0", c2));
	assert_null(tls_resume_get("198.51.100.26:25/mx.ext.test/0"));
	/* another destination's session is untouched */
	s = tls_resume_get("198.51.100.27:25/other/0");
	assert_non_null(s);
	SSL_SESSION_free(s);
	for (int i = 0; i < TLS_RESUME_PER_DEST + 2; i++)
		SSL_SESSION_free(pool[i]);

	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	X509_free(c1);
	X509_free(c2);
}

/* ------------------------------------------------------------- parsers */

static void
test_parse_sni(void **state)
{
	char out[256];
	/* list length 16, host_name (0), length 13, "mx.ext.test.x" */
	const unsigned char ok[] = { 0, 16, 0, 0, 13, 'm', 'x', '.', 'e', 'x', 't', '.', 't', 'e',
		's', 't', '.', 'x' };
	const unsigned char badlen[] = { 0, 9, 0, 0, 13, 'm', 'x' };
	const unsigned char ctl[] = { 0, 6, 0, 0, 3, 'a', '\n', 'b' };
	const unsigned char empty_name[] = { 0, 3, 0, 0, 0 };

	(void)state;
	assert_int_equal(tls_parse_sni(ok, sizeof(ok), out, sizeof(out)), 0);
	assert_string_equal(out, "mx.ext.test.x");
	assert_int_equal(tls_parse_sni(ok, sizeof(ok), out, 5), -1); /* does not fit */
	assert_int_equal(tls_parse_sni(badlen, sizeof(badlen), out, sizeof(out)), -1);
	assert_int_equal(tls_parse_sni(ctl, sizeof(ctl), out, sizeof(out)), -1);
	assert_int_equal(tls_parse_sni(empty_name, sizeof(empty_name), out, sizeof(out)), -1);
	assert_int_equal(tls_parse_sni(ok, 1, out, sizeof(out)), -1);
}

static void
test_parse_alpn(void **state)
{
	const unsigned char smtp[] = { 0, 8, 2, 'h', '2', 4, 's', 'm', 't', 'p' };
	const unsigned char http[] = { 0, 9, 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
	const unsigned char bad[] = { 0, 5, 9, 'x' };
	const unsigned char zero[] = { 0, 1, 0 };
	bool s, any;

	(void)state;
	assert_int_equal(tls_parse_alpn(smtp, sizeof(smtp), &s, &any), 0);
	assert_true(s && any);
	assert_int_equal(tls_parse_alpn(http, sizeof(http), &s, &any), 0);
	assert_true(!s && any);
	assert_int_equal(tls_parse_alpn(bad, sizeof(bad), &s, &any), -1);
	assert_int_equal(tls_parse_alpn(zero, sizeof(zero), &s, &any), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forge_copies_names_and_sets_extensions),
		cmocka_unit_test(test_forge_rsa_leaf_key_usage),
		cmocka_unit_test_setup_teardown(test_judge_classes_and_actions, setup_pki, teardown_pki),
		cmocka_unit_test_setup_teardown(test_name_rules, setup_pki, teardown_pki),
		cmocka_unit_test(test_binding_context),
		cmocka_unit_test_setup_teardown(test_resumption_needs_the_binding, setup_pki,
		    teardown_pki),
		cmocka_unit_test_setup_teardown(test_resumed_session_judged_again, setup_pki,
		    teardown_pki),
		cmocka_unit_test_setup_teardown(test_resume_cache, setup_pki, teardown_pki),
		cmocka_unit_test(test_parse_sni),
		cmocka_unit_test(test_parse_alpn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
