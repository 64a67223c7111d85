/*
 * fuzz_decode - the content decoders on arbitrary input.
 *
 * Input: byte 0 picks the decoder (mod 5: base64, quoted-printable,
 * charset, RFC 2047, structured field), byte 1 seeds the split points;
 * for the charset decoder the text starts after the first NUL (what comes
 * before is the charset name).
 *
 * Checks, besides memory errors:
 *  - base64 / quoted-printable: each call stays within DECODE_*_OUT of its
 *    input, and decoding in pieces (one octet at a time, or random pieces)
 *    gives the same octets and flags as in one call; base64 of clean input
 *    (alphabet only, length % 4 == 0) raises no flag;
 *  - charsets and RFC 2047: output NUL-terminated, shorter than the buffer,
 *    valid UTF-8, NUL only when flagged; every output size works;
 *  - fields: every parameter value lies in the store, is NUL-terminated at
 *    its length (or holds a flagged NUL), valid UTF-8; names are lowercase
 *    and bounded; no more than DECODE_PARAMS_MAX.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static unsigned
next(unsigned *seed, size_t max)
{
	*seed = *seed * 1103515245u + 12345u;
	return 1 + (unsigned)((*seed >> 16) % max);
}

static void
fuzz_b64(const char *in, size_t len, unsigned seed)
{
	static unsigned char o1[DECODE_B64_OUT(65536)], o2[DECODE_B64_OUT(65536)];
	struct decode_b64 a, b;
	size_t n1, n2 = 0, fed = 0;
	bool clean = len % 4 == 0;

	decode_b64_init(&a);
	n1 = decode_b64(&a, in, len, o1);
	CHECK(n1 <= DECODE_B64_OUT(len));
	n1 += decode_b64_finish(&a, o1 + n1);
	decode_b64_init(&b);
	while (fed < len) {
		size_t k = next(&seed, 9), got;

		if (k > len - fed)
			k = len - fed;
		got = decode_b64(&b, in + fed, k, o2 + n2);
		CHECK(got <= DECODE_B64_OUT(k));
		n2 += got;
		fed += k;
	}
	n2 += decode_b64_finish(&b, o2 + n2);
	CHECK(n1 == n2 && memcmp(o1, o2, n1) == 0 && a.flags == b.flags);
	for (size_t i = 0; i < len && clean; i++) {
		char c = in[i];

		clean = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '+' || c == '/';
	}
	if (clean) {
		CHECK(a.flags == 0);
		CHECK(n1 == len / 4 * 3);
	}
}

static void
fuzz_qp(const char *in, size_t len, unsigned seed)
{
	static unsigned char o1[DECODE_QP_OUT(65536)], o2[DECODE_QP_OUT(65536)];
	struct decode_qp a, b;
	size_t n1, n2 = 0, fed = 0;

	decode_qp_init(&a);
	n1 = decode_qp(&a, in, len, o1);
	CHECK(n1 <= DECODE_QP_OUT(len));
	n1 += decode_qp_finish(&a, o1 + n1);
	CHECK(n1 <= len); /* every output octet stands for at least one input octet */
	decode_qp_init(&b);
	while (fed < len) {
		size_t k = next(&seed, 9), got;

		if (k > len - fed)
			k = len - fed;
		got = decode_qp(&b, in + fed, k, o2 + n2);
		CHECK(got <= DECODE_QP_OUT(k));
		n2 += got;
		fed += k;
	}
	n2 += decode_qp_finish(&b, o2 + n2);
	CHECK(n1 == n2 && memcmp(o1, o2, n1) == 0 && a.flags == b.flags);
}

static void
check_text(const char *out, size_t n, size_t outsz, unsigned flags)
{
	CHECK(n < outsz);
	CHECK(out[n] == '\0');
	CHECK(decode_utf8_valid(out, n));
	if (!(flags & DECODE_F_NUL))
		CHECK(strlen(out) == n);
}

static void
fuzz_charset(const char *in, size_t len)
{
	const char *nul = memchr(in, '\0', len);
	char cs[64], out[1024];
	size_t csl, n;
	unsigned fl = 0;

	if (nul == NULL)
		return;
	csl = (size_t)(nul - in);
	if (csl >= sizeof(cs))
		return;
	memcpy(cs, in, csl);
	cs[csl] = '\0';
	in = nul + 1;
	len -= csl + 1;
	n = decode_charset(cs, (const unsigned char *)in, len, out, sizeof(out), &fl);
	check_text(out, n, sizeof(out), fl);
	for (size_t sz = 1; sz < 12; sz++) {
		fl = 0;
		n = decode_charset(cs, (const unsigned char *)in, len, out, sz, &fl);
		check_text(out, n, sz, fl);
	}
}

static void
fuzz_2047(const char *in, size_t len)
{
	static char out[4096];
	size_t n;
	unsigned fl = 0;

	n = decode_2047(in, len, out, sizeof(out), &fl);
	check_text(out, n, sizeof(out), fl);
	for (size_t sz = 1; sz < 20; sz += 3) {
		fl = 0;
		n = decode_2047(in, len, out, sz, &fl);
		check_text(out, n, sz, fl);
	}
}

static void
fuzz_field(const char *in, size_t len, unsigned seed)
{
	static char store[DECODE_STORE_SIZE(65536)];
	struct decode_field f;
	size_t sz = (seed & 1) ? DECODE_STORE_SIZE(len) : (seed % 97) + 1;

	decode_field(in, len, &f, store, sz);
	CHECK(f.nparams <= DECODE_PARAMS_MAX);
	CHECK(strnlen(f.value, DECODE_VALUE_MAX) < DECODE_VALUE_MAX);
	for (unsigned i = 0; i < f.nparams; i++) {
		const struct decode_param *p = &f.params[i];
		size_t nl = strnlen(p->name, DECODE_PNAME_MAX);

		CHECK(nl < DECODE_PNAME_MAX);
		for (size_t k = 0; k < nl; k++)
			CHECK(!(p->name[k] >= 'A' && p->name[k] <= 'Z'));
		if (p->len || p->value[0]) {
			CHECK(p->value >= store && p->value + p->len < store + sz);
		}
		CHECK(p->value[p->len] == '\0');
		CHECK(decode_utf8_valid(p->value, p->len));
		if (!(p->flags & DECODE_P_NUL))
			CHECK(strlen(p->value) == p->len);
		CHECK((f.flags & p->flags) == p->flags);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + 2;
	size_t len;

	if (size < 2 || size > 65536 + 2)
		return 0;
	len = size - 2;
	switch (data[0] % 5) {
	case 0:
		fuzz_b64(in, len, data[1]);
		break;
	case 1:
		fuzz_qp(in, len, data[1]);
		break;
	case 2:
		fuzz_charset(in, len);
		break;
	case 3:
		fuzz_2047(in, len);
		break;
	case 4:
		fuzz_field(in, len, data[1]);
		break;
	}
	return 0;
}
