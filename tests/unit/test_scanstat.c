/*
 * test_scanstat - the workers' scanner status merged for the status file:
 * counters summed per address (whatever number each worker gives it),
 * health agreed or "mixed", the latest error, engines apart, texts that
 * are empty, cut short or malformed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scanstat.h"

static char *
merge(const char *const *texts, size_t n)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	scanstat_merge(texts, n, f);
	fclose(f);
	return out;
}

static void
has(const char *out, const char *line)
{
	char want[300], *all = malloc(strlen(out) + 2);

	assert_non_null(all);
	snprintf(want, sizeof(want), "\n%s\n", line);
	all[0] = '\n';
	memcpy(all + 1, out, strlen(out) + 1);
	if (strstr(all, want) == NULL)
		fail_msg("no line \"%s\" in:\n%s", line, out);
	free(all);
}

static void
test_merge(void **state)
{
	const char *w1 =
	    "clamd.servers=2\nclamd.queued=1\nclamd.unavailable=2\nclamd.too-large=0\n"
	    "clamd.1.address=tcp:192.0.2.60:3310\nclamd.1.health=up\nclamd.1.since=100\n"
	    "clamd.1.requests=10\nclamd.1.infected=2\nclamd.1.last-error=old error\n"
	    "clamd.1.last-error-time=50\n"
	    "clamd.2.address=tcp:192.0.2.61:3310\nclamd.2.health=down\nclamd.2.since=200\n"
	    "clamd.2.requests=1\nclamd.2.last-error=connect refused\nclamd.2.last-error-time=190\n"
	    "rspamd.servers=1\nrspamd.queued=0\nrspamd.unavailable=0\nrspamd.too-large=0\n"
	    "rspamd.1.address=tcp:192.0.2.60:11333\nrspamd.1.health=up\nrspamd.1.since=5\n"
	    "rspamd.1.reject=4\nrspamd.1.last-error=\nrspamd.1.last-error-time=0\n";
	/* another worker numbers the servers the other way round */
	const char *w2 =
	    "clamd.servers=2\nclamd.queued=0\nclamd.unavailable=1\nclamd.too-large=3\n"
	    "clamd.1.address=tcp:192.0.2.61:3310\nclamd.1.health=down\nclamd.1.since=150\n"
	    "clamd.1.requests=4\nclamd.1.last-error=timeout\nclamd.1.last-error-time=300\n"
	    "clamd.2.address=tcp:192.0.2.60:3310\nclamd.2.health=down\nclamd.2.since=400\n"
	    "clamd.2.requests=5\nclamd.2.infected=1\nclamd.2.last-error=new error\n"
	    "clamd.2.last-error-time=60\n";
	const char *texts[] = { w1, "", NULL, w2 };
	char *out = merge(texts, 4);

	has(out, "clamd.servers=2");
	has(out, "clamd.workers=2");
	has(out, "clamd.queued=1");
	has(out, "clamd.unavailable=3");
	has(out, "clamd.too-large=3");
	has(out, "clamd.1.address=tcp:192.0.2.60:3310");
	has(out, "clamd.1.health=mixed");
	has(out, "clamd.1.since=400");
	has(out, "clamd.1.requests=15");
	has(out, "clamd.1.infected=3");
	has(out, "clamd.1.last-error=new error");
	has(out, "clamd.1.last-error-time=60");
	has(out, "clamd.2.address=tcp:192.0.2.61:3310");
	has(out, "clamd.2.health=down");
	has(out, "clamd.2.requests=5");
	has(out, "clamd.2.last-error=timeout");
	has(out, "clamd.2.last-error-time=300");
	has(out, "rspamd.workers=1");
	has(out, "rspamd.1.health=up");
	has(out, "rspamd.1.reject=4");
	has(out, "rspamd.1.last-error=");
	free(out);
}

static void
test_junk(void **state)
{
	const char *texts[] = {
		"no equals sign\nclamd.1.requests=5\n=x\n.=\nclamd.99.address=x\n"
		"clamd.1.address=a\nclamd.1.requests=7\nclamd.x.requests=1\nclamd.1.health=up",
		"clamd.1.address=a\nclamd.1.requests=notanumber\nclamd.1.health=weird\n",
	};
	char *out = merge(texts, 2);

	/* the line before its address is not counted; a cut last line is */
	has(out, "clamd.1.requests=7");
	has(out, "clamd.1.health=mixed");
	has(out, "clamd.servers=1");
	free(out);
	out = merge(NULL, 0);
	assert_string_equal(out, "");
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_junk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
