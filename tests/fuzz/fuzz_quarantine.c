/*
 * fuzz_quarantine - quarantine_parse_head on arbitrary record files (what
 * smtpgw -Q reads from the quarantine directory, which a compromised
 * worker can write).
 *
 * Checks, besides memory errors:
 *  - a parsed head lies inside the input, ends with a blank line and is at
 *    most QUARANTINE_HEAD_MAX octets;
 *  - its ID is well-formed, it has recipients (at most
 *    QUARANTINE_RCPTS_MAX), every value is at most QUARANTINE_VALUE_MAX
 *    octets, and what a release sends (destination, sender, recipients)
 *    has no control octet and the addresses no '<' or '>';
 *  - formatted again and parsed again, it gives the same record.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quarantine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static void
value_ok(const char *v, bool wire)
{
	CHECK(v != NULL);
	CHECK(strlen(v) <= QUARANTINE_VALUE_MAX);
	for (const char *p = v; wire && *p; p++)
		CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static void
same(const struct qrec *a, const struct qrec *b)
{
	CHECK(!strcmp(a->id, b->id) && a->time == b->time && a->session == b->session);
	CHECK(!strcmp(a->action, b->action) && a->inbound == b->inbound);
	CHECK(!strcmp(a->client, b->client) && !strcmp(a->server, b->server));
	CHECK(!strcmp(a->server_name, b->server_name) && a->server_tls == b->server_tls);
	CHECK(!strcmp(a->helo, b->helo) && !strcmp(a->mail_from, b->mail_from));
	CHECK(a->nrcpts == b->nrcpts);
	for (unsigned i = 0; i < a->nrcpts; i++)
		CHECK(!strcmp(a->rcpts[i], b->rcpts[i]));
	CHECK(a->verdict == b->verdict && !strcmp(a->reason, b->reason));
	CHECK(!strcmp(a->virus, b->virus) && !strcmp(a->spam_score, b->spam_score));
	CHECK(!strcmp(a->reply, b->reply) && a->size == b->size);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qhead h, h2;
	char why[256], *text;
	size_t len;

	if (quarantine_parse_head((const char *)data, size, &h, why, sizeof(why)) < 0) {
		CHECK(why[0] != '\0');
		CHECK(h.text == NULL);
		return 0;
	}
	CHECK(h.head_len >= 2 && h.head_len <= size && h.head_len <= QUARANTINE_HEAD_MAX);
	CHECK(data[h.head_len - 1] == '\n' && data[h.head_len - 2] == '\n');
	CHECK(quarantine_valid_id(h.rec.id));
	CHECK(h.rec.nrcpts > 0 && h.rec.nrcpts <= QUARANTINE_RCPTS_MAX);
	value_ok(h.rec.action, false);
	value_ok(h.rec.client, false);
	value_ok(h.rec.server, true);
	value_ok(h.rec.server_name, true);
	value_ok(h.rec.helo, false);
	value_ok(h.rec.mail_from, true);
	CHECK(strpbrk(h.rec.mail_from, "<>") == NULL);
	value_ok(h.rec.reason, false);
	value_ok(h.rec.reply, false);
	for (unsigned i = 0; i < h.rec.nrcpts; i++) {
		value_ok(h.rec.rcpts[i], true);
		CHECK(strpbrk(h.rec.rcpts[i], "<>") == NULL);
	}
	if (h.rec.time >= 0 && quarantine_format_head(&h.rec, &text, &len) == 0) {
		CHECK(quarantine_parse_head(text, len, &h2, why, sizeof(why)) == 0);
		CHECK(h2.head_len == len);
		same(&h.rec, &h2.rec);
		quarantine_head_free(&h2);
		free(text);
	}
	quarantine_head_free(&h);
	return 0;
}
