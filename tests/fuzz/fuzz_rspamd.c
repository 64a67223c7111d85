/*
 * fuzz_rspamd - what an rspamd server sends back: the HTTP response
 * reader (rspamd_http_parse), fed in pieces whose sizes come from the
 * input, then the JSON mapping (rspamd_json_result) of the body; with the
 * first byte's low bit set, the input is JSON for the mapping alone.
 * Checks, besides memory errors: the body never exceeds
 * RSPAMD_REPLY_MAX, a parse never grows the input it consumed, a BAD
 * carries a printable reason; a mapped result keeps its bounds, its
 * symbols highest score first, every string terminated and one line
 * (no CR, LF or NUL inside), header names valid field names, the SMTP
 * message ASCII.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rspamd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static void
check_text(const char *s, size_t max, bool ascii)
{
	size_t n = strnlen(s, max);

	CHECK(n < max);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		CHECK(ch >= 0x20 || ch == '\t');
		CHECK(ch != 0x7f);
		if (ascii)
			CHECK(ch < 0x80);
	}
}

static void
check_result(const struct rspamd_result *r)
{
	CHECK(r->status == RSPAMD_CHECKED);
	CHECK(r->action <= RSPAMD_QUARANTINE);
	CHECK(r->nsymbols <= RSPAMD_SYMBOLS_MAX && r->nsymbols <= r->symbols_total);
	for (unsigned i = 0; i < r->nsymbols; i++) {
		check_text(r->symbols[i].name, sizeof(r->symbols[i].name), true);
		if (i > 0)
			CHECK(r->symbols[i - 1].score >= r->symbols[i].score);
	}
	CHECK(r->nadd <= RSPAMD_HEADERS_MAX && r->nremove <= RSPAMD_HEADERS_MAX);
	for (unsigned i = 0; i < r->nadd; i++) {
		size_t n = strnlen(r->add[i].name, sizeof(r->add[i].name));

		CHECK(n > 0 && n < sizeof(r->add[i].name));
		for (size_t k = 0; k < n; k++)
			CHECK(r->add[i].name[k] > ' ' && r->add[i].name[k] < 0x7f &&
			    r->add[i].name[k] != ':');
		check_text(r->add[i].value, sizeof(r->add[i].value), false);
	}
	for (unsigned i = 0; i < r->nremove; i++)
		check_text(r->remove[i], sizeof(r->remove[i]), true);
	if (r->has_subject)
		check_text(r->subject, sizeof(r->subject), false);
	check_text(r->smtp_message, sizeof(r->smtp_message), true);
}

static void
map_json(const char *json, size_t len)
{
	struct rspamd_result *r = calloc(1, sizeof(*r));
	char why[SCANNER_ERROR_MAX] = "";

	CHECK(r != NULL);
	if (rspamd_json_result(json, len, r, why, sizeof(why)) == 0)
		check_result(r);
	else
		check_text(why, sizeof(why), false);
	free(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rspamd_http h;
	struct buf in;
	size_t off, step;
	int rc = SCANNER_PARSE_MORE;
	char why[SCANNER_ERROR_MAX] = "";

	if (size < 2)
		return 0;
	if (data[0] & 1) {
		map_json((const char *)data + 1, size - 1);
		return 0;
	}
	step = (size_t)(data[1] % 64) + 1;
	rspamd_http_init(&h);
	buf_init(&in, 1 << 20);
	for (off = 2; off < size && rc == SCANNER_PARSE_MORE;) {
		size_t n = size - off < step ? size - off : step;
		size_t before;

		CHECK(buf_append(&in, data + off, n) == 0);
		off += n;
		before = buf_len(&in);
		rc = rspamd_http_parse(&h, &in, false, why, sizeof(why));
		CHECK(buf_len(&in) <= before);
		CHECK(buf_len(&h.body) <= RSPAMD_REPLY_MAX);
	}
	if (rc == SCANNER_PARSE_MORE && (data[0] & 2))
		rc = rspamd_http_parse(&h, &in, true, why, sizeof(why));
	if (rc == SCANNER_PARSE_BAD)
		check_text(why, sizeof(why), false);
	if (rc == SCANNER_PARSE_DONE) {
		CHECK(h.status >= 100 && h.status <= 999);
		map_json(scanner_head(&h.body), buf_len(&h.body));
	}
	buf_free(&in);
	rspamd_http_free(&h);
	return 0;
}
