/*
 * test_dkimsig - which changes break a DKIM signature, decided by
 * libopendkim on real signed messages.
 *
 * Each run makes its own RSA key with OpenSSL and signs its messages
 * with libopendkim's signing API (no key is ever committed).  The check
 * under test never sees the key: it only compares what libopendkim
 * computes over the original and the changed copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <dkim.h>

#include "dkimsig.h"

static char *key_pem;
static DKIM_LIB *signer;

static int
setup(void **state)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;

	(void)state;
	assert_non_null(k);
	assert_non_null(b);
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(b, &p);
	key_pem = strndup(p, (size_t)n);
	BIO_free(b);
	EVP_PKEY_free(k);
	signer = dkim_init(NULL, NULL);
	assert_non_null(signer);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	dkim_close(signer);
	free(key_pem);
	return 0;
}

/* msg signed (canonicalization hc/bc, body length limit len or -1): a new string. */
static char *
sign(const char *msg, dkim_canon_t hc, dkim_canon_t bc, ssize_t len, const char *domain)
{
	DKIM_STAT st;
	DKIM *d = dkim_sign(signer, (const unsigned char *)"test", NULL,
	    (unsigned char *)key_pem, (const unsigned char *)"sel",
	    (const unsigned char *)domain, hc, bc, DKIM_SIGN_RSASHA256, len, &st);
	unsigned char hdr[4096];
	char *out;

	assert_non_null(d);
	assert_int_equal(dkim_chunk(d, (unsigned char *)(uintptr_t)msg, strlen(msg)),
	    DKIM_STAT_OK);
	assert_int_equal(dkim_chunk(d, NULL, 0), DKIM_STAT_OK);
	assert_int_equal(dkim_eom(d, NULL), DKIM_STAT_OK);
	assert_int_equal(dkim_getsighdr(d, hdr, sizeof(hdr), strlen("DKIM-Signature: ")),
	    DKIM_STAT_OK);
	dkim_free(d);
	assert_true(asprintf(&out, "DKIM-Signature: %s\r\n%s", (char *)hdr, msg) > 0);
	return out;
}

/* The check over original and changed, each fed in pieces of step octets. */
static void
check(const char *orig, const char *changed, size_t step, struct dkimsig_result *r)
{
	struct dkimsig *d = dkimsig_new(1);

	for (size_t o = 0; o < strlen(orig); o += step)
		dkimsig_feed(d, DKIMSIG_ORIGINAL, orig + o,
		    strlen(orig) - o < step ? strlen(orig) - o : step);
	for (size_t o = 0; o < strlen(changed); o += step)
		dkimsig_feed(d, DKIMSIG_CHANGED, changed + o,
		    strlen(changed) - o < step ? strlen(changed) - o : step);
	dkimsig_compare(d, r);
	dkimsig_free(d);
}

/* s with the first occurrence of from replaced by to (a new string). */
static char *
replace(const char *s, const char *from, const char *to)
{
	const char *p = strstr(s, from);
	char *out;

	assert_non_null(p);
	assert_true(asprintf(&out, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from)) > 0);
	return out;
}

#define HDRS "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: invoice\r\n" \
	"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n"
#define BODY "Please find the invoice attached.\r\n\r\n--b\r\nattachment  \r\n--b--\r\n"
#define MSG HDRS "\r\n" BODY

static const size_t steps[] = { 1, 7, 100000 };

static void
test_unsigned(void **state)
{
	struct dkimsig_result r;
	char *ch = replace(MSG, "attachment", "[removed]");

	(void)state;
	check(MSG, ch, 13, &r);
	assert_int_equal(r.nsigs, 0);
	struct dkimsig *d = dkimsig_new(1);
	dkimsig_feed(d, DKIMSIG_ORIGINAL, MSG, strlen(HDRS));
	assert_false(dkimsig_unsigned(d)); /* the header block has not ended yet */
	dkimsig_feed(d, DKIMSIG_ORIGINAL, MSG + strlen(HDRS), 2);
	assert_true(dkimsig_unsigned(d));
	dkimsig_compare(d, &r);
	assert_int_equal(r.nsigs, 0);
	assert_int_equal(r.nbroken, 0);
	dkimsig_free(d);
	assert_int_equal(r.nbroken, 0);
	assert_false(r.unknown);
	free(ch);
}

static void
test_unchanged(void **state)
{
	struct dkimsig_result r;
	char *m = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE, -1, "example.com");

	(void)state;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		check(m, m, steps[i], &r);
		assert_int_equal(r.nsigs, 1);
		assert_int_equal(r.nprotected, 1);
		assert_int_equal(r.nbroken, 0);
	}
	free(m);
}

/* Stripping an attachment changes the body hash. */
static void
test_body_change_breaks(void **state)
{
	struct dkimsig_result r;
	char *m = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE, -1, "example.com");
	char *ch = replace(m, "attachment  \r\n", "[attachment removed by policy]\r\n");

	(void)state;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		check(m, ch, steps[i], &r);
		assert_int_equal(r.nbroken, 1);
		assert_string_equal(r.detail, "d=example.com s=sel what=body");
	}
	free(ch);
	free(m);
}

/* Rewriting a signed header (a subject tag) changes the header hash. */
static void
test_signed_header_change_breaks(void **state)
{
	struct dkimsig_result r;
	char *m = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE, -1, "example.com");
	char *ch = replace(m, "Subject: invoice", "Subject: [SPAM] invoice");

	(void)state;
	check(m, ch, 7, &r);
	assert_int_equal(r.nbroken, 1);
	assert_string_equal(r.detail, "d=example.com s=sel what=headers");
	free(ch);
	free(m);
}

/* A header the signature does not name: nothing it covers changes. */
static void
test_unsigned_header_added(void **state)
{
	struct dkimsig_result r;
	char *m = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE, -1, "example.com");
	char *top, *bottom;

	(void)state;
	assert_true(asprintf(&top, "X-Spam-Status: No, score=1.2\r\n%s", m) > 0);
	bottom = replace(m, "\r\n\r\n", "\r\nX-Spam-Status: No\r\n\r\n");
	check(m, top, 7, &r);
	assert_int_equal(r.nbroken, 0);
	assert_int_equal(r.nprotected, 1);
	check(m, bottom, 7, &r);
	assert_int_equal(r.nbroken, 0);
	free(top);
	free(bottom);
	free(m);
}

/*
 * A second Subject below the signed one: verifiers take header fields
 * from the bottom up, so the signature now covers the new field.
 */
static void
test_signed_name_added_below_breaks(void **state)
{
	struct dkimsig_result r;
	char *m = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE, -1, "example.com");
	char *ch = replace(m, "\r\n\r\n", "\r\nSubject: added\r\n\r\n");

	(void)state;
	check(m, ch, 7, &r);
	assert_int_equal(r.nbroken, 1);
	assert_string_equal(r.detail, "d=example.com s=sel what=headers");
	free(ch);
	free(m);
}

/* l=: what follows the signed length is not covered; what precedes it is. */
static void
test_length_limit(void **state)
{
	struct dkimsig_result r;
	size_t l = strlen("Please find the invoice attached.\r\n");
	char *m = sign(MSG, DKIM_CANON_SIMPLE, DKIM_CANON_SIMPLE, (ssize_t)l, "example.com");
	char *after = replace(m, "attachment  \r\n", "[removed]\r\n");
	char *before = replace(m, "Please find", "Please ignore");

	(void)state;
	assert_non_null(strstr(m, "l=35"));
	check(m, after, 7, &r);
	assert_int_equal(r.nbroken, 0);
	check(m, before, 7, &r);
	assert_int_equal(r.nbroken, 1);
	free(after);
	free(before);
	free(m);
}

/* Canonicalization: trailing white space is not covered by relaxed, it is by simple. */
static void
test_canonicalization(void **state)
{
	struct dkimsig_result r;
	char *relaxed = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, -1, "example.com");
	char *simple = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE, -1, "example.com");
	char *r2 = replace(relaxed, "attachment  \r\n", "attachment\r\n");
	char *s2 = replace(simple, "attachment  \r\n", "attachment\r\n");

	(void)state;
	check(relaxed, r2, 7, &r);
	assert_int_equal(r.nbroken, 0);
	check(simple, s2, 7, &r);
	assert_int_equal(r.nbroken, 1);
	free(relaxed);
	free(simple);
	free(r2);
	free(s2);
}

/* Removing the signature field itself breaks it. */
static void
test_signature_removed(void **state)
{
	struct dkimsig_result r;
	char *m = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE, -1, "example.com");

	(void)state;
	check(m, MSG, 7, &r);
	assert_int_equal(r.nbroken, 1);
	assert_string_equal(r.detail, "d=example.com s=sel what=signature");
	free(m);
}

/* A signature whose body hash is already wrong is not protected. */
static void
test_already_broken(void **state)
{
	struct dkimsig_result r;
	char *m = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE, -1, "example.com");
	char *tampered = replace(m, "Please find", "Please wire");
	char *ch = replace(tampered, "attachment  \r\n", "[removed]\r\n");

	(void)state;
	check(tampered, ch, 7, &r);
	assert_int_equal(r.nsigs, 1);
	assert_int_equal(r.nprotected, 0);
	assert_int_equal(r.nbroken, 0);
	free(ch);
	free(tampered);
	free(m);
}

/* Two signatures (a mailing list re-signed): a header change breaks both. */
static void
test_two_signatures(void **state)
{
	struct dkimsig_result r;
	char *one = sign(MSG, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, -1, "example.com");
	char *two = sign(one, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, -1, "lists.example.net");
	char *ch = replace(two, "Subject: invoice", "Subject: [list] invoice");

	(void)state;
	check(two, ch, 100000, &r);
	assert_int_equal(r.nsigs, 2);
	assert_int_equal(r.nprotected, 2);
	assert_int_equal(r.nbroken, 2);
	free(ch);
	free(two);
	free(one);
}

/* A header block beyond the bound: the answer is unknown. */
static void
test_header_limit(void **state)
{
	struct dkimsig_result r;
	size_t n = DKIMSIG_HEADER_MAX + 1000;
	char *m = malloc(n + 100), *o = m;

	(void)state;
	assert_non_null(m);
	while ((size_t)(o - m) < n)
		o += sprintf(o, "X-Filler: %s\r\n", "0123456789012345678901234567890123456789");
	o += sprintf(o, "\r\nbody\r\n");
	check(m, m, 4096, &r);
	assert_true(r.unknown);
	free(m);
}

/*
 * libopendkim refuses a header without From: nothing to protect when it
 * has no DKIM-Signature field, "unknown" when it has one.
 */
static void
test_refused_header(void **state)
{
	struct dkimsig_result r;
	const char *nofrom = "Subject: x\r\n\r\nbody\r\n";
	const char *nofrom_signed = "Subject: x\r\nDKIM-Signature: v=1; a=rsa-sha256; d=example.com; "
	    "s=sel; h=subject; bh=AAAA; b=AAAA\r\n\r\nbody\r\n";
	const char *noheader = ".a\r\nend.1\r\n";

	(void)state;
	check(nofrom, "Subject: y\r\n\r\nbody\r\n", 3, &r);
	assert_false(r.unknown);
	assert_int_equal(r.nbroken, 0);
	check(noheader, noheader, 3, &r);
	assert_false(r.unknown);
	check(nofrom_signed, nofrom, 3, &r);
	assert_true(r.unknown);
}

/* Garbage in a DKIM-Signature: never a crash, never a protected signature. */
static void
test_malformed_signature(void **state)
{
	struct dkimsig_result r;
	const char *m = "DKIM-Signature: v=1; a=rsa-sha256; bh=!!!; b=\r\n" MSG;
	const char *m2 = "DKIM-Signature: garbage\r\n" MSG;

	(void)state;
	check(m, MSG, 7, &r);
	assert_int_equal(r.nprotected, 0);
	assert_int_equal(r.nbroken, 0);
	check(m2, m2, 7, &r);
	assert_int_equal(r.nprotected, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unsigned),
		cmocka_unit_test(test_unchanged),
		cmocka_unit_test(test_body_change_breaks),
		cmocka_unit_test(test_signed_header_change_breaks),
		cmocka_unit_test(test_unsigned_header_added),
		cmocka_unit_test(test_signed_name_added_below_breaks),
		cmocka_unit_test(test_length_limit),
		cmocka_unit_test(test_canonicalization),
		cmocka_unit_test(test_signature_removed),
		cmocka_unit_test(test_already_broken),
		cmocka_unit_test(test_two_signatures),
		cmocka_unit_test(test_header_limit),
		cmocka_unit_test(test_refused_header),
		cmocka_unit_test(test_malformed_signature),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
