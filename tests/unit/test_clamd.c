/*
 * test_clamd - INSTREAM framing and clamd's replies: what goes on the
 * wire octet by octet, and every kind of answer (clean, found, the size
 * limit, errors, session ids, malformed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "clamd.h"

static void
test_frame_begin_end(void **state)
{
	struct buf b;

	buf_init(&b, 64);
	assert_int_equal(clamd_frame_begin(&b), 0);
	assert_int_equal(buf_len(&b), 10);
	assert_memory_equal(buf_head(&b), "zINSTREAM\0", 10);
	buf_reset(&b);
	assert_int_equal(clamd_frame_end(&b), 0);
	assert_int_equal(buf_len(&b), 4);
	assert_memory_equal(buf_head(&b), "\0\0\0\0", 4);
	buf_free(&b);
}

static void
test_frame_small_chunk(void **state)
{
	struct buf b;

	buf_init(&b, 64);
	assert_int_equal(clamd_frame_chunk(&b, "hello", 5), 0);
	assert_int_equal(buf_len(&b), 9);
	assert_memory_equal(buf_head(&b), "\0\0\0\x05hello", 9);
	/* nothing for nothing: a zero length would end the stream */
	assert_int_equal(clamd_frame_chunk(&b, "", 0), 0);
	assert_int_equal(buf_len(&b), 9);
	buf_free(&b);
}

static void
test_frame_large_chunk_split(void **state)
{
	size_t n = 2 * CLAMD_CHUNK_MAX + 1000;
	char *data = malloc(n);
	struct buf b;
	const unsigned char *p;

	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 7);
	buf_init(&b, n + 64);
	assert_int_equal(clamd_frame_chunk(&b, data, n), 0);
	assert_int_equal(buf_len(&b), n + 12);
	p = (const unsigned char *)buf_head(&b);
	/* 65536, 65536, 1000 - big-endian lengths, data between */
	assert_memory_equal(p, "\x00\x01\x00\x00", 4);
	assert_memory_equal(p + 4, data, CLAMD_CHUNK_MAX);
	p += 4 + CLAMD_CHUNK_MAX;
	assert_memory_equal(p, "\x00\x01\x00\x00", 4);
	assert_memory_equal(p + 4, data + CLAMD_CHUNK_MAX, CLAMD_CHUNK_MAX);
	p += 4 + CLAMD_CHUNK_MAX;
	assert_memory_equal(p, "\x00\x00\x03\xe8", 4);
	assert_memory_equal(p + 4, data + 2 * CLAMD_CHUNK_MAX, 1000);
	buf_free(&b);
	free(data);
}

static void
test_frame_no_room_appends_nothing(void **state)
{
	struct buf b;

	buf_init(&b, 8);
	assert_int_equal(clamd_frame_chunk(&b, "hello", 5), -1); /* 9 > 8 */
	assert_int_equal(buf_len(&b), 0);
	assert_int_equal(clamd_frame_begin(&b), -1);
	assert_int_equal(buf_len(&b), 0);
	buf_free(&b);
}

static int
parse(const char *reply, size_t len, unsigned seq, struct clamd_result *r, size_t *used,
    char *why)
{
	memset(r, 0, sizeof(*r));
	*used = 0;
	why[0] = '\0';
	return clamd_reply_parse(reply, len, seq, r, used, why, 160);
}

#define S(lit) lit, sizeof(lit) - 1

static void
test_reply_clean_and_found(void **state)
{
	struct clamd_result r;
	size_t used;
	char why[160];

	assert_int_equal(parse(S("stream: OK\0"), 0, &r, &used, why), SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_CLEAN);
	assert_int_equal(used, 11);
	assert_int_equal(parse(S("stream: Smtpgw.Test.EICAR.UNOFFICIAL FOUND\0"), 0, &r, &used, why),
	    SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_INFECTED);
	assert_string_equal(r.virus, "Smtpgw.Test.EICAR.UNOFFICIAL");
	/* a second reply behind the first is left alone */
	assert_int_equal(parse(S("stream: OK\0stream: OK\0"), 0, &r, &used, why),
	    SCANNER_PARSE_DONE);
	assert_int_equal(used, 11);
}

static void
test_reply_session_ids(void **state)
{
	struct clamd_result r;
	size_t used;
	char why[160];

	assert_int_equal(parse(S("3: stream: Win.Test.EICAR_HDB-1 FOUND\0"), 3, &r, &used, why),
	    SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_INFECTED);
	assert_string_equal(r.virus, "Win.Test.EICAR_HDB-1");
	assert_int_equal(parse(S("12: stream: OK\0"), 12, &r, &used, why), SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_CLEAN);
	/* the answer to another command, or none at all: malformed */
	assert_int_equal(parse(S("2: stream: OK\0"), 3, &r, &used, why), SCANNER_PARSE_BAD);
	assert_string_equal(why, "reply for command 2, expected 3");
	assert_int_equal(parse(S("stream: OK\0"), 1, &r, &used, why), SCANNER_PARSE_BAD);
	assert_int_equal(parse(S("1:stream: OK\0"), 1, &r, &used, why), SCANNER_PARSE_BAD);
	assert_int_equal(parse(S("99999999999: stream: OK\0"), 1, &r, &used, why),
	    SCANNER_PARSE_BAD);
}

static void
test_reply_size_limit_and_errors(void **state)
{
	struct clamd_result r;
	size_t used;
	char why[160];

	assert_int_equal(parse(S("INSTREAM size limit exceeded. ERROR\0"), 0, &r, &used, why),
	    SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_TOO_LARGE);
	assert_non_null(strstr(r.reason, "StreamMaxLength"));
	assert_int_equal(parse(S("1: INSTREAM size limit exceeded. ERROR\0"), 1, &r, &used, why),
	    SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_TOO_LARGE);
	assert_int_equal(parse(S("stream: Can't allocate memory ERROR\0"), 0, &r, &used, why),
	    SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_ERROR);
	assert_string_equal(r.reason, "clamd: stream: Can't allocate memory ERROR");
	assert_int_equal(parse(S("UNKNOWN COMMAND\0"), 0, &r, &used, why), SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_ERROR);
	/* what clamd said, as one printable line */
	assert_int_equal(parse(S("bad\r\nthing\x7f\0"), 0, &r, &used, why), SCANNER_PARSE_DONE);
	assert_string_equal(r.reason, "clamd: bad??thing?");
	/* no name between "stream: " and " FOUND": not a detection */
	assert_int_equal(parse(S("stream:  FOUND\0"), 0, &r, &used, why), SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_ERROR);
}

static void
test_reply_incomplete_and_too_long(void **state)
{
	struct clamd_result r;
	size_t used;
	char why[160];
	char *big = malloc(CLAMD_REPLY_MAX + 10);

	assert_int_equal(parse(S("stream: O"), 0, &r, &used, why), SCANNER_PARSE_MORE);
	assert_int_equal(parse("", 0, 0, &r, &used, why), SCANNER_PARSE_MORE);
	assert_non_null(big);
	memset(big, 'a', CLAMD_REPLY_MAX + 10);
	assert_int_equal(parse(big, CLAMD_REPLY_MAX - 1, 0, &r, &used, why), SCANNER_PARSE_MORE);
	assert_int_equal(parse(big, CLAMD_REPLY_MAX, 0, &r, &used, why), SCANNER_PARSE_BAD);
	/* a NUL past the limit does not count */
	big[CLAMD_REPLY_MAX + 5] = '\0';
	assert_int_equal(parse(big, CLAMD_REPLY_MAX + 10, 0, &r, &used, why), SCANNER_PARSE_BAD);
	free(big);
}

static void
test_virus_name_sanitized(void **state)
{
	struct clamd_result r;
	size_t used;
	char why[160], reply[400];
	int n;

	assert_int_equal(parse(S("stream: Evil\r\n250 ok\"=x<y> FOUND\0"), 0, &r, &used, why),
	    SCANNER_PARSE_DONE);
	assert_int_equal(r.status, CLAMD_INFECTED);
	assert_string_equal(r.virus, "Evil__250_ok__x_y_");
	/* bounded: cut to CLAMD_VIRUS_MAX - 1 */
	n = snprintf(reply, sizeof(reply), "stream: %0300d FOUND", 7);
	assert_int_equal(parse(reply, (size_t)n + 1, 0, &r, &used, why), SCANNER_PARSE_DONE);
	assert_int_equal(strlen(r.virus), CLAMD_VIRUS_MAX - 1);
	assert_int_equal(r.virus[0], '0');
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_begin_end),
		cmocka_unit_test(test_frame_small_chunk),
		cmocka_unit_test(test_frame_large_chunk_split),
		cmocka_unit_test(test_frame_no_room_appends_nothing),
		cmocka_unit_test(test_reply_clean_and_found),
		cmocka_unit_test(test_reply_session_ids),
		cmocka_unit_test(test_reply_size_limit_and_errors),
		cmocka_unit_test(test_reply_incomplete_and_too_long),
		cmocka_unit_test(test_virus_name_sanitized),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
