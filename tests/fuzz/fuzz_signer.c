/*
 * fuzz_signer - the signer's wire format, both ways: a request as a
 * (compromised) worker may send it to the signer (signer_req_parse), and a
 * reply as the worker reads it (signer_reply_parse).  The first input byte
 * picks the parser.
 * Checks, besides memory errors: everything a parsed request points to
 * lies inside the message, its lengths are within the documented bounds,
 * the reference name is printable without spaces, and encoding it again
 * gives back the very same bytes (the format has one spelling); a parsed
 * reply's data fits the message.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "signer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static unsigned char again[SIGNER_MAX_MSG];

static bool
inside(const unsigned char *p, size_t n, const uint8_t *buf, size_t size)
{
	return p >= buf && n <= size && p + n <= buf + size;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		struct signer_req r;
		const uint8_t *msg = data + 1;
		size_t len = size - 1;

		if (signer_req_parse(msg, len, &r) < 0)
			return 0;
		CHECK(r.n_certs >= 1 && r.n_certs <= SIGNER_MAX_CHAIN);
		CHECK(r.want <= 1);
		size_t rl = strnlen(r.refname, sizeof(r.refname));
		CHECK(rl <= SIGNER_MAX_REFNAME);
		for (size_t i = 0; i < rl; i++)
			CHECK(r.refname[i] > 0x20 && r.refname[i] < 0x7f);
		for (unsigned i = 0; i < r.n_certs; i++) {
			CHECK(r.cert_len[i] >= 1 && r.cert_len[i] <= SIGNER_MAX_DER);
			CHECK(inside(r.cert[i], r.cert_len[i], msg, len));
		}
		CHECK(r.ocsp_len <= SIGNER_MAX_OCSP);
		CHECK(r.ocsp == NULL || inside(r.ocsp, r.ocsp_len, msg, len));
		int n = signer_req_encode(&r, again, sizeof(again));
		CHECK(n > 0 && (size_t)n == len && memcmp(again, msg, len) == 0);
	} else {
		struct signer_reply r;

		if (signer_reply_parse(data + 1, size - 1, &r) < 0)
			return 0;
		CHECK(r.status <= SIGNER_ERROR && r.ca <= 1);
		CHECK(r.len <= SIGNER_MAX_DER && inside(r.data, r.len, data + 1, size - 1));
		CHECK(r.status != SIGNER_OK || r.len > 0);
	}
	return 0;
}
