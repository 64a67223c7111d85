/*
 * test_signer - the signer's wire format (every field round-trips; every
 * malformed message is refused), its decision (the worker's wish against
 * the signer's own verdict) and its rate limiter (a token bucket of
 * signer-rate-limit per minute).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/x509.h>

#include "signer.h"
#include "tls.h"

static unsigned char buf[SIGNER_MAX_MSG + 16];

static void
sample(struct signer_req *r, const unsigned char *a, size_t alen, const unsigned char *b,
    size_t blen)
{
	memset(r, 0, sizeof(*r));
	r->id = 0x01020304;
	r->want = SIGNER_CA_AUTHORITY;
	r->profile = 3;
	snprintf(r->refname, sizeof(r->refname), "mx.example.test");
	r->n_certs = 2;
	r->cert[0] = a;
	r->cert_len[0] = alen;
	r->cert[1] = b;
	r->cert_len[1] = blen;
	r->ocsp = (const unsigned char *)"OCSP";
	r->ocsp_len = 4;
}

static void
test_request_round_trip(void **state)
{
	const unsigned char a[] = { 0x30, 1, 2, 3 }, b[] = { 0x30, 9 };
	struct signer_req r, p;
	int n;

	(void)state;
	sample(&r, a, sizeof(a), b, sizeof(b));
	n = signer_req_encode(&r, buf, sizeof(buf));
	assert_int_equal(n, 16 + 15 + 4 + 4 + 4 + 2 + 4);
	assert_int_equal(signer_req_parse(buf, (size_t)n, &p), 0);
	assert_int_equal(p.id, r.id);
	assert_int_equal(p.want, r.want);
	assert_int_equal(p.profile, 3);
	assert_string_equal(p.refname, "mx.example.test");
	assert_int_equal(p.n_certs, 2);
	assert_int_equal(p.cert_len[0], sizeof(a));
	assert_memory_equal(p.cert[0], a, sizeof(a));
	assert_memory_equal(p.cert[1], b, sizeof(b));
	assert_int_equal(p.ocsp_len, 4);
	assert_memory_equal(p.ocsp, "OCSP", 4);
	/* no reference name, no staple */
	r.refname[0] = '\0';
	r.ocsp = NULL;
	r.ocsp_len = 0;
	n = signer_req_encode(&r, buf, sizeof(buf));
	assert_int_equal(signer_req_parse(buf, (size_t)n, &p), 0);
	assert_string_equal(p.refname, "");
	assert_null(p.ocsp);
}

static void
test_request_refused(void **state)
{
	const unsigned char a[] = { 0x30, 1, 2, 3 }, b[] = { 0x30, 9 };
	struct signer_req r, p;
	int n;

	(void)state;
	sample(&r, a, sizeof(a), b, sizeof(b));
	n = signer_req_encode(&r, buf, sizeof(buf));
	/* every truncation, and one byte too many */
	for (int i = 0; i < n; i++)
		assert_int_equal(signer_req_parse(buf, (size_t)i, &p), -1);
	buf[n] = 0;
	assert_int_equal(signer_req_parse(buf, (size_t)n + 1, &p), -1);
	/* header fields */
	const struct { size_t off; unsigned char v; } bad[] = {
		{ 0, 2 },    /* op */
		{ 1, 2 },    /* want */
		{ 10, 0 },   /* no certificate */
		{ 10, 9 },   /* more than SIGNER_MAX_CHAIN */
		{ 11, 1 },   /* reserved */
		{ 16, ' ' }, /* a space in the reference name */
		{ 16, '\n' },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned char save = buf[bad[i].off];
		buf[bad[i].off] = bad[i].v;
		if (signer_req_parse(buf, (size_t)n, &p) == 0)
			fail_msg("bad field %zu accepted", i);
		buf[bad[i].off] = save;
	}
	assert_int_equal(signer_req_parse(buf, (size_t)n, &p), 0);
	/* the encoder refuses what the parser would */
	r.n_certs = 0;
	assert_int_equal(signer_req_encode(&r, buf, sizeof(buf)), -1);
	sample(&r, a, sizeof(a), b, sizeof(b));
	snprintf(r.refname, sizeof(r.refname), "a b");
	assert_int_equal(signer_req_encode(&r, buf, sizeof(buf)), -1);
	sample(&r, a, sizeof(a), b, sizeof(b));
	r.cert_len[1] = SIGNER_MAX_DER + 1;
	assert_int_equal(signer_req_encode(&r, buf, sizeof(buf)), -1);
	sample(&r, a, sizeof(a), b, sizeof(b));
	assert_int_equal(signer_req_encode(&r, buf, 20), -1); /* does not fit */
}

static void
test_reply_round_trip(void **state)
{
	struct signer_reply r = { .id = 77, .status = SIGNER_OK, .ca = SIGNER_CA_UNTRUSTED,
		.data = (const unsigned char *)"\x30\x03xyz", .len = 5 }, p;
	int n;

	(void)state;
	n = signer_reply_encode(&r, buf, sizeof(buf));
	assert_int_equal(n, 12 + 5);
	assert_int_equal(signer_reply_parse(buf, (size_t)n, &p), 0);
	assert_int_equal(p.id, 77);
	assert_int_equal(p.ca, SIGNER_CA_UNTRUSTED);
	assert_int_equal(p.len, 5);
	for (int i = 0; i < n; i++)
		assert_int_equal(signer_reply_parse(buf, (size_t)i, &p), -1);
	buf[1] = 9; /* status */
	assert_int_equal(signer_reply_parse(buf, (size_t)n, &p), -1);
	/* ok without a certificate is malformed */
	r.len = 0;
	n = signer_reply_encode(&r, buf, sizeof(buf));
	assert_int_equal(signer_reply_parse(buf, (size_t)n, &p), -1);
	r.status = SIGNER_REFUSED;
	n = signer_reply_encode(&r, buf, sizeof(buf));
	assert_int_equal(signer_reply_parse(buf, (size_t)n, &p), 0);
}

/* The decision table: the worker's wish, the signer's verdict, the profile's action. */
static void
test_decide(void **state)
{
	struct conf_tls_profile p;
	X509 *cert = X509_new();
	struct tls_verdict v;
	enum signer_ca ca;
	const struct {
		long verify;
		enum certfail_action action;
		enum signer_ca want;
		enum signer_status st;
		enum signer_ca ca;
	} cases[] = {
		{ X509_V_OK, CERTFAIL_BLOCK, SIGNER_CA_AUTHORITY, SIGNER_OK, SIGNER_CA_AUTHORITY },
		{ X509_V_OK, CERTFAIL_BLOCK, SIGNER_CA_UNTRUSTED, SIGNER_OK, SIGNER_CA_UNTRUSTED },
		/* a failed chain: the worker never gets the Proxy Authority for it ... */
		{ X509_V_ERR_CERT_HAS_EXPIRED, CERTFAIL_UNTRUSTED_SIGN, SIGNER_CA_AUTHORITY,
		    SIGNER_OK, SIGNER_CA_UNTRUSTED },
		{ X509_V_ERR_CERT_HAS_EXPIRED, CERTFAIL_BLOCK, SIGNER_CA_AUTHORITY, SIGNER_REFUSED,
		    SIGNER_CA_UNTRUSTED },
		/* ... unless the profile says allow for that class */
		{ X509_V_ERR_CERT_HAS_EXPIRED, CERTFAIL_ALLOW, SIGNER_CA_AUTHORITY, SIGNER_OK,
		    SIGNER_CA_AUTHORITY },
		/* and may always have the untrusted CA */
		{ X509_V_ERR_CERT_HAS_EXPIRED, CERTFAIL_BLOCK, SIGNER_CA_UNTRUSTED, SIGNER_OK,
		    SIGNER_CA_UNTRUSTED },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tls_peer pe = { .leaf = cert, .verify_result = cases[i].verify };
		enum signer_status st;

		memset(&p, 0, sizeof(p));
		for (int k = 0; k < CF_COUNT; k++)
			p.on_fail[k] = cases[i].action;
		ca = SIGNER_CA_UNTRUSTED;
		st = signer_decide(&p, &pe, NULL, cases[i].want, &ca, &v);
		if (st != cases[i].st || (st == SIGNER_OK && ca != cases[i].ca))
			fail_msg("case %zu: status %d ca %d", i, st, ca);
	}
	X509_free(cert);
}

static void
test_bucket(void **state)
{
	struct signer_bucket b;
	uint64_t t = 1000;
	int n = 0;

	(void)state;
	signer_bucket_init(&b, 60, t);
	/* a full minute's worth at once, then nothing */
	while (signer_bucket_take(&b, 60, t))
		n++;
	assert_int_equal(n, 60);
	assert_false(signer_bucket_take(&b, 60, t + 999));
	/* one a second comes back */
	assert_true(signer_bucket_take(&b, 60, t + 1000));
	assert_false(signer_bucket_take(&b, 60, t + 1500));
	/* never more than the capacity, however long the pause */
	t += 10 * 60 * 1000;
	n = 0;
	while (signer_bucket_take(&b, 60, t))
		n++;
	assert_int_equal(n, 60);
	/* 0: no limit */
	for (int i = 0; i < 1000; i++)
		assert_true(signer_bucket_take(&b, 0, t));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_round_trip),
		cmocka_unit_test(test_request_refused),
		cmocka_unit_test(test_reply_round_trip),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_bucket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
