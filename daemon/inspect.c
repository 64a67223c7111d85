/*
 * inspect - the allow-everything inspector (the engine's default until
 * rulesets are configured) and the helpers for inspection results.
 */
#include <stdlib.h>
#include <string.h>

#include "inspect.h"
#include "util.h"

static void *
allow_begin(const struct inspector *in, const struct inspect_envelope *env,
    const struct inspect_hooks *hooks, unsigned *flags)
{
	(void)in;
	(void)env;
	(void)hooks;
	(void)flags;
	return NULL;
}

static int
allow_body(void *txn, const char *data, size_t len)
{
	(void)txn;
	(void)data;
	(void)len;
	return INSPECT_OK;
}

static int
allow_end(void *txn, struct inspect_result *res)
{
	(void)txn;
	inspect_result_clear(res);
	return INSPECT_DONE;
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

int
inspect_result_edit(struct inspect_result *res, uint64_t off, uint64_t len, const char *text,
    size_t textlen)
{
	struct inspect_edit *e;

	if (res->nedits >= INSPECT_MAX_EDITS || textlen > INSPECT_EDIT_TEXT_MAX - res->edit_text)
		return -1;
	res->edits = xrealloc(res->edits, (res->nedits + 1) * sizeof(*res->edits));
	e = &res->edits[res->nedits++];
	e->off = off;
	e->len = len;
	e->text = xmalloc(textlen + 1);
	if (textlen)
		memcpy(e->text, text, textlen);
	e->text[textlen] = '\0';
	e->textlen = textlen;
	res->edit_text += textlen;
	return 0;
}

void
inspect_result_clear(struct inspect_result *res)
{
	for (unsigned i = 0; i < res->nedits; i++)
		free(res->edits[i].text);
	free(res->edits);
	memset(res, 0, sizeof(*res));
	res->verdict = INSPECT_ALLOW;
}

void
inspect_result_move(struct inspect_result *dst, struct inspect_result *src)
{
	inspect_result_clear(dst);
	*dst = *src;
	memset(src, 0, sizeof(*src));
	src->verdict = INSPECT_ALLOW;
}
