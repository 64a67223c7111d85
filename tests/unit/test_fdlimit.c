/*
 * test_fdlimit - how many descriptors max-sessions needs per worker, and
 * what RLIMIT_NOFILE becomes (or why the configuration is refused), from
 * the current limits, fs.nr_open and whether the hard limit may move.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fdlimit.h"

static void
test_need(void **state)
{
	(void)state;
	/* 2 per session, a 1/16 margin on them, and the base */
	assert_int_equal(fdlimit_need(0), FDLIMIT_BASE);
	assert_int_equal(fdlimit_need(1), FDLIMIT_BASE + 2);
	assert_int_equal(fdlimit_need(8), FDLIMIT_BASE + 16 + 1);
	assert_int_equal(fdlimit_need(2000), FDLIMIT_BASE + 4000 + 250);
	/* the default max-sessions does not fit the usual soft limit of 1024 */
	assert_true(fdlimit_need(2000) > 1024);
	/* the parser's largest value does not overflow */
	assert_int_equal(fdlimit_need(1000000), FDLIMIT_BASE + 2000000 + 125000);
}

static void
test_sessions_for_inverts_need(void **state)
{
	(void)state;
	assert_int_equal(fdlimit_sessions_for(0), 0);
	assert_int_equal(fdlimit_sessions_for(FDLIMIT_BASE + 1), 0);
	assert_int_equal(fdlimit_sessions_for(FDLIMIT_BASE + 2), 1);
	for (rlim_t lim = 100; lim < 200000; lim = lim * 3 / 2) {
		unsigned n = fdlimit_sessions_for(lim);
		assert_true(fdlimit_need(n) <= lim);
		assert_true(fdlimit_need(n + 1) > lim);
	}
	assert_int_equal(fdlimit_sessions_for(1024), 452);
}

static void
test_plan_table(void **state)
{
	const rlim_t inf = RLIM_INFINITY;
	const struct {
		unsigned sessions;
		rlim_t soft, hard, nr_open;
		bool may_raise;
		int rc;
		rlim_t want_soft, want_hard;
		const char *msg; /* part of the error */
	} cases[] = {
		/* enough already: never lowered */
		{ 100, 65536, 65536, 1048576, false, 0, 65536, 65536, NULL },
		{ 100, inf, inf, 1048576, false, 0, inf, inf, NULL },
		/* the soft limit rises to the need, the hard one stays */
		{ 2000, 1024, 524288, 1048576, false, 0, 4314, 524288, NULL },
		{ 2000, 1024, inf, 1048576, false, 0, 4314, inf, NULL },
		/* the hard limit too, when allowed, up to fs.nr_open */
		{ 2000, 1024, 4096, 1048576, true, 0, 4314, 4314, NULL },
		/* not allowed to raise the hard limit: refused, saying what fits */
		{ 2000, 1024, 4096, 1048576, false, -1, 1024, 4096, "set max-sessions to 1897 or less" },
		/* beyond fs.nr_open even for root */
		{ 1000000, 1024, 4096, 1048576, true, -1, 1024, 4096, "fs.nr_open" },
		{ 1000000, 1024, 4096, 4194304, true, 0, 2125064, 2125064, NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rlimit out;
		char err[512] = "";
		int rc = fdlimit_plan(cases[i].sessions, cases[i].soft, cases[i].hard,
		    cases[i].nr_open, cases[i].may_raise, &out, err, sizeof(err));

		if (rc != cases[i].rc)
			fail_msg("case %zu: rc %d, expected %d (%s)", i, rc, cases[i].rc, err);
		assert_int_equal(out.rlim_cur, cases[i].want_soft);
		assert_int_equal(out.rlim_max, cases[i].want_hard);
		if (cases[i].msg && strstr(err, cases[i].msg) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].msg);
		if (rc == 0)
			assert_true(out.rlim_cur == inf || out.rlim_cur >= fdlimit_need(cases[i].sessions));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_need),
		cmocka_unit_test(test_sessions_for_inverts_need),
		cmocka_unit_test(test_plan_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
