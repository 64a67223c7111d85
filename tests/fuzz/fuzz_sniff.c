/*
 * fuzz_sniff - the bounded archive walk (sniff_archive) and sniff_type on
 * arbitrary octets: libarchive and libmagic are not instrumented, but the
 * walk's own bounds and bookkeeping around them are, and the seeds are
 * real archives (zip, nested zip, tar.gz, 7z, encrypted zip) for the
 * mutations to start from.
 *
 * Input: byte 0 picks small limits (bits 0-1 max_depth 1..4, bits 2-3
 * max_entries 1/3/10/100, bits 4-5 max_total 1 KiB/64 KiB/1 MiB/8 MiB,
 * bit 6 max_entry_size 4 KiB or 1 MiB); the rest is the archive.
 *
 * Checks, besides memory errors:
 *  - every entry has a depth within max_depth, a NUL-terminated name
 *    shorter than SNIFF_NAME_MAX, a type; depth grows by one at most from
 *    one entry to the next (parents come before their contents), and
 *    "container" is empty exactly at depth 1;
 *  - no more than max_entries entries, and not OK when the walk stopped
 *    for that; at most one octet beyond max_total uncompressed, and not OK
 *    when the budget ran out;
 *  - the status is a known one, with a reason exactly when not OK.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sniff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static struct sniff *sn;

struct seen {
	const struct sniff_limits *lim;
	unsigned n, last_depth;
};

static void
cb(void *arg, const struct sniff_entry *e)
{
	struct seen *s = arg;

	CHECK(e->depth >= 1 && e->depth <= s->lim->max_depth);
	CHECK(e->depth <= s->last_depth + 1);
	if (e->depth == 1)
		CHECK(e->container[0] == '\0');
	CHECK(strnlen(e->name, SNIFF_NAME_MAX) < SNIFF_NAME_MAX);
	CHECK(strnlen(e->type, SNIFF_TYPE_MAX) < SNIFF_TYPE_MAX);
	CHECK(!(e->dir && e->type[0]));
	s->last_depth = e->depth;
	s->n++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned entries[] = { 1, 3, 10, 100 };
	static const uint64_t totals[] = { 1024, 65536, 1 << 20, 8 << 20 };
	struct sniff_limits lim = sniff_default_limits;
	struct sniff_result res;
	struct seen s = { &lim, 0, 0 };
	enum sniff_status st;
	char type[SNIFF_TYPE_MAX], err[256];

	if (sn == NULL) {
		sn = sniff_open(NULL, err, sizeof(err));
		if (sn == NULL) {
			fprintf(stderr, "sniff_open: %s\n", err);
			abort();
		}
	}
	if (size < 1 || size > 1 << 20)
		return 0;
	lim.max_depth = 1 + (data[0] & 3);
	lim.max_entries = entries[data[0] >> 2 & 3];
	lim.max_total = totals[data[0] >> 4 & 3];
	lim.max_entry_size = data[0] & 0x40 ? 1 << 20 : 4096;
	lim.sniff_bytes = 4096;

	sniff_type(sn, data + 1, size - 1, type, sizeof(type));
	CHECK(strnlen(type, sizeof(type)) < sizeof(type) && type[0] != '\0');

	st = sniff_archive(sn, data + 1, size - 1, &lim, cb, &s, &res);
	CHECK(st == res.status && (unsigned)st <= SNIFF_CORRUPT);
	CHECK((st == SNIFF_OK) == (res.reason[0] == '\0'));
	CHECK(strnlen(res.reason, sizeof(res.reason)) < sizeof(res.reason));
	CHECK(s.n <= lim.max_entries);
	CHECK(res.entries <= lim.max_entries + 1);
	if (res.entries > lim.max_entries)
		CHECK(st != SNIFF_OK);
	CHECK(res.bytes <= lim.max_total + 1);
	if (res.bytes > lim.max_total)
		CHECK(st != SNIFF_OK);
	return 0;
}
