/*
 * inspect - the allow-everything inspector (until content inspection lands).
 */
#include <string.h>

#include "inspect.h"

static void *
allow_begin(const struct inspector *in, const struct inspect_envelope *env)
{
	(void)in;
	(void)env;
	return NULL;
}

static void
allow_body(void *txn, const char *data, size_t len)
{
	(void)txn;
	(void)data;
	(void)len;
}

static void
allow_end(void *txn, struct inspect_result *res)
{
	(void)txn;
	memset(res, 0, sizeof(*res));
	res->verdict = INSPECT_ALLOW;
}

static void
allow_abort(void *txn)
{
	(void)txn;
}

const struct inspector inspect_allow = {
	.name = "allow",
	.begin = allow_begin,
	.body = allow_body,
	.end = allow_end,
	.abort = allow_abort,
};
