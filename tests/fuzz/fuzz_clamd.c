/*
 * fuzz_clamd - clamd's replies (clamd_reply_parse) as a stream from a
 * server: replies one after the other, the first input byte choosing
 * whether a session id is expected (and which).  Checks, besides memory
 * errors: the parser never consumes more than it was given, and a DONE
 * reply consumes through its NUL; a status is one of the five; a virus
 * name is non-empty, bounded and made of the documented characters; a
 * reason is one printable line within its buffer.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "clamd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static void
check_line(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	CHECK(n < max);
	for (size_t i = 0; i < n; i++)
		CHECK(s[i] >= 0x20 && s[i] < 0x7f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p;
	size_t left;
	unsigned seq;

	if (size < 1)
		return 0;
	seq = data[0] & 0x80 ? data[0] & 0x0f : 0;
	p = (const char *)data + 1;
	left = size - 1;
	for (int round = 0; round < 64; round++) {
		struct clamd_result r;
		char why[SCANNER_ERROR_MAX];
		size_t used = 0;
		int rc;

		memset(&r, 0x55, sizeof(r));
		why[0] = '\0';
		rc = clamd_reply_parse(p, left, seq, &r, &used, why, sizeof(why));
		if (rc == SCANNER_PARSE_BAD) {
			check_line(why, sizeof(why));
			break;
		}
		if (rc == SCANNER_PARSE_MORE) {
			CHECK(memchr(p, '\0', left < CLAMD_REPLY_MAX ? left : CLAMD_REPLY_MAX) == NULL);
			break;
		}
		CHECK(rc == SCANNER_PARSE_DONE);
		CHECK(used >= 1 && used <= left && used <= CLAMD_REPLY_MAX);
		CHECK(p[used - 1] == '\0');
		CHECK(r.status == CLAMD_CLEAN || r.status == CLAMD_INFECTED ||
		    r.status == CLAMD_TOO_LARGE || r.status == CLAMD_ERROR);
		if (r.status == CLAMD_INFECTED) {
			size_t n = strnlen(r.virus, sizeof(r.virus));

			CHECK(n > 0 && n < sizeof(r.virus));
			for (size_t i = 0; i < n; i++)
				CHECK((r.virus[i] >= '0' && r.virus[i] <= '9') ||
				    (r.virus[i] >= 'a' && r.virus[i] <= 'z') ||
				    (r.virus[i] >= 'A' && r.virus[i] <= 'Z') ||
				    strchr(".-_:/+()[]#@!~,", r.virus[i]) != NULL);
		} else {
			check_line(r.reason, sizeof(r.reason));
		}
		p += used;
		left -= used;
		if (seq > 0)
			seq++;
	}
	return 0;
}
