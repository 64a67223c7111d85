/*
 * fuzz_template - the deny message on arbitrary templates and values.
 *
 * Input: byte 0 picks the mode (mod 3) and, in its high bits, the output
 * buffer size; the rest is split at NULs: the template, then the values
 * reason, type, filename, virus, action, recovery (missing ones are NULL).
 *
 * Checks, besides memory errors:
 *  - tpl_check never crashes and explains a refusal;
 *  - the output is NUL-terminated, shorter than the buffer, and nothing is
 *    written past it;
 *  - TPL_REPLY: printable US-ASCII only (no CR, LF or controls), no
 *    trailing space;
 *  - TPL_BODY / TPL_BODY_ASCII: valid UTF-8 (ASCII only for the latter);
 *    CR only in CRLF, LF only after CR; lines at most TPL_LINE_MAX octets;
 *    no line starts with "--"; no final line end; no controls but TAB.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t sizes[] = { 1, 2, 7, 64, 512, 4096, 20000, 70000 };
	static char out[70000 + 16];
	const char *fields[7] = { NULL };
	size_t flen[7] = { 0 };
	const char *p, *end;
	char err[256];
	enum tpl_mode mode;
	struct tpl_vars v;
	size_t outsz, n;
	char *copies[7] = { NULL };

	if (size < 1 || size > 100000)
		return 0;
	mode = (enum tpl_mode)(data[0] % 3);
	outsz = sizes[(data[0] >> 3) & 7];
	p = (const char *)data + 1;
	end = (const char *)data + size;
	for (int i = 0; i < 7 && p <= end; i++) {
		const char *nul = memchr(p, '\0', (size_t)(end - p));

		if (nul == NULL)
			nul = end;
		/* NUL-terminated copies: values are C strings */
		copies[i] = malloc((size_t)(nul - p) + 1);
		memcpy(copies[i], p, (size_t)(nul - p));
		copies[i][nul - p] = '\0';
		fields[i] = copies[i];
		flen[i] = (size_t)(nul - p);
		p = nul + 1;
	}
	v.reason = fields[1];
	v.type = fields[2];
	v.filename = fields[3];
	v.virus = fields[4];
	v.action = fields[5];
	v.recovery = fields[6];

	err[0] = '\0';
	if (tpl_check(fields[0], flen[0], err, sizeof(err)) != 0)
		CHECK(err[0] != '\0');

	memset(out, 0x5a, outsz + 16);
	n = tpl_render(fields[0], flen[0], &v, mode, out, outsz);
	CHECK(n < outsz);
	CHECK(out[n] == '\0');
	for (size_t i = outsz; i < outsz + 16; i++)
		CHECK(out[i] == 0x5a);

	if (mode == TPL_REPLY) {
		for (size_t i = 0; i < n; i++)
			CHECK(out[i] >= 0x20 && out[i] < 0x7f);
		CHECK(n == 0 || out[n - 1] != ' ');
	} else {
		size_t col = 0;

		CHECK(decode_utf8_valid(out, n));
		CHECK(n < 2 || !(out[n - 2] == '\r' && out[n - 1] == '\n'));
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)out[i];

			if (mode == TPL_BODY_ASCII)
				CHECK(c < 0x80);
			if (c == '\r') {
				CHECK(i + 1 < n && out[i + 1] == '\n');
				CHECK(col <= TPL_LINE_MAX);
				col = 0;
				i++;
				continue;
			}
			CHECK(c != '\n');
			CHECK(c >= 0x20 || c == '\t');
			CHECK(c != 0x7f);
			if (col == 0 && c == '-')
				CHECK(!(i + 1 < n && out[i + 1] == '-'));
			col++;
		}
		CHECK(col <= TPL_LINE_MAX);
	}
	for (int i = 0; i < 7; i++)
		free(copies[i]);
	return 0;
}
