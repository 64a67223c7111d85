/*
 * fuzz_tlsext - the ClientHello extension parsers smtpgw runs itself:
 * server_name (tls_parse_sni) and ALPN (tls_parse_alpn), on arbitrary
 * extension bodies.  The first input byte picks the parser.
 * Checks, besides memory errors: an accepted SNI is NUL-terminated,
 * printable, without spaces and fits the buffer; ALPN's "smtp" implies
 * "any".
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char sni[256];
	bool smtp, any;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		/* a small output buffer too: the parser must never write past it */
		size_t outlen = (data[0] >> 1) & 1 ? sizeof(sni) : 8;
		if (tls_parse_sni(data + 1, size - 1, sni, outlen) == 0) {
			size_t n = strnlen(sni, outlen);
			CHECK(n < outlen);
			for (size_t i = 0; i < n; i++)
				CHECK(sni[i] > 0x20 && sni[i] < 0x7f);
		}
	} else if (tls_parse_alpn(data + 1, size - 1, &smtp, &any) == 0) {
		CHECK(!smtp || any);
	}
	return 0;
}
