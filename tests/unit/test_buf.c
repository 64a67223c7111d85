/*
 * test_buf - the bounded buffer: it grows on demand, never beyond max, and
 * reclaims consumed space before growing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"

/* The invariants documented in buf.h. */
static void
check(const struct buf *b)
{
	assert_true(b->rpos <= b->wpos);
	assert_true(b->wpos <= b->size);
	assert_true(b->size <= b->max);
	assert_int_equal(buf_room(b), b->max - buf_len(b));
}

static void
test_empty(void **state)
{
	struct buf b;

	buf_init(&b, 100);
	assert_null(b.data); /* nothing allocated until needed */
	assert_int_equal(buf_len(&b), 0);
	assert_int_equal(buf_room(&b), 100);
	assert_int_equal(buf_append(&b, "", 0), 0);
	assert_null(b.data);
	buf_free(&b);
	check(&b);
}

static void
test_append_bounded(void **state)
{
	struct buf b;

	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "hello", 5), 0);
	assert_int_equal(buf_append(&b, "world!", 6), -1); /* 11 > 10: nothing appended */
	assert_int_equal(buf_len(&b), 5);
	assert_memory_equal(buf_head(&b), "hello", 5);
	assert_int_equal(buf_append(&b, "world", 5), 0); /* exactly max */
	assert_int_equal(buf_room(&b), 0);
	assert_int_equal(buf_append(&b, "!", 1), -1);
	assert_memory_equal(buf_head(&b), "helloworld", 10);
	assert_true(b.size <= 10); /* a small max caps even the first allocation */
	check(&b);
	buf_free(&b);
	assert_null(b.data);
}

/* Appending in small steps never allocates beyond max. */
static void
test_growth(void **state)
{
	static const size_t maxes[] = {1, 100, 4096, 4097, 10000, 65536};
	char chunk[333];

	memset(chunk, 'x', sizeof(chunk));
	for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
		struct buf b;
		size_t total = 0;

		buf_init(&b, maxes[m]);
		for (;;) {
			size_t n = sizeof(chunk) < buf_room(&b) ? sizeof(chunk) : buf_room(&b);

			if (n == 0)
				break;
			assert_int_equal(buf_append(&b, chunk, n), 0);
			total += n;
			check(&b);
		}
		assert_int_equal(total, maxes[m]);
		assert_int_equal(buf_len(&b), maxes[m]);
		assert_int_equal(buf_append(&b, chunk, 1), -1);
		buf_free(&b);
	}
}

static void
test_consume_reset(void **state)
{
	struct buf b;

	buf_init(&b, 64);
	assert_int_equal(buf_append(&b, "EHLO x\r\nQUIT\r\n", 14), 0);
	buf_consume(&b, 8);
	assert_int_equal(buf_len(&b), 6);
	assert_memory_equal(buf_head(&b), "QUIT\r\n", 6);
	assert_int_equal(b.rpos, 8);
	check(&b);

	/* Empty again: positions go back to the start. */
	buf_consume(&b, 6);
	assert_int_equal(buf_len(&b), 0);
	assert_int_equal(b.rpos, 0);
	assert_int_equal(b.wpos, 0);

	buf_consume(&b, 0);
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	buf_reset(&b);
	assert_int_equal(buf_len(&b), 0);
	assert_int_equal(buf_room(&b), 64);
	assert_non_null(b.data); /* reset keeps the allocation */
	check(&b);
	buf_free(&b);
}

static void
test_reserve_commit(void **state)
{
	struct buf b;
	size_t got;
	char *w;

	buf_init(&b, 8192);
	w = buf_reserve(&b, 100, &got);
	assert_non_null(w);
	assert_true(got >= 100);
	assert_true(got <= buf_room(&b));
	memcpy(w, "250 OK\r\n", 8);
	buf_commit(&b, 8);
	assert_int_equal(buf_len(&b), 8);
	assert_memory_equal(buf_head(&b), "250 OK\r\n", 8);

	/* A request beyond max is granted only up to max. */
	w = buf_reserve(&b, 100000, &got);
	assert_non_null(w);
	assert_int_equal(got, 8192 - 8);
	buf_commit(&b, got);
	assert_int_equal(buf_len(&b), 8192);
	check(&b);

	/* Full: nothing to reserve. */
	assert_null(buf_reserve(&b, 1, &got));
	buf_free(&b);
}

/* Consumed space is reclaimed by moving the pending bytes down. */
static void
test_compaction(void **state)
{
	struct buf b;
	size_t got;
	char *w;

	buf_init(&b, 16);
	assert_int_equal(buf_append(&b, "0123456789abcdef", 16), 0);
	buf_consume(&b, 10);
	assert_int_equal(buf_room(&b), 10);
	assert_int_equal(buf_append(&b, "ghijklmnop", 10), 0);
	assert_int_equal(b.rpos, 0);
	assert_int_equal(buf_len(&b), 16);
	assert_memory_equal(buf_head(&b), "abcdefghijklmnop", 16);
	assert_int_equal(b.size, 16);
	check(&b);

	/* Same through reserve. */
	buf_consume(&b, 4);
	w = buf_reserve(&b, 4, &got);
	assert_non_null(w);
	assert_int_equal(got, 4);
	memcpy(w, "qrst", 4);
	buf_commit(&b, 4);
	assert_memory_equal(buf_head(&b), "efghijklmnopqrst", 16);
	check(&b);
	buf_free(&b);
}

static void
test_free_secure(void **state)
{
	struct buf b;

	buf_init(&b, 64);
	assert_int_equal(buf_append(&b, "AUTH PLAIN AGZvbwBiYXI=", 23), 0);
	buf_free_secure(&b);
	assert_null(b.data);
	assert_int_equal(buf_len(&b), 0);
	buf_free_secure(&b); /* twice is harmless */

	/* Reusable after free. */
	assert_int_equal(buf_append(&b, "x", 1), 0);
	assert_int_equal(buf_len(&b), 1);
	buf_free(&b);
}

static void
test_zero_max(void **state)
{
	struct buf b;
	size_t got;

	buf_init(&b, 0);
	assert_int_equal(buf_append(&b, "x", 1), -1);
	assert_null(buf_reserve(&b, 1, &got));
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_append_bounded),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_consume_reset),
		cmocka_unit_test(test_reserve_commit),
		cmocka_unit_test(test_compaction),
		cmocka_unit_test(test_free_secure),
		cmocka_unit_test(test_zero_max),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
