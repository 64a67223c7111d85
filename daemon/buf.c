/*
 * buf - bounded byte buffer (invariants in buf.h).
 */
#include <string.h>
#include <stdlib.h>

#include <openssl/crypto.h>

#include "buf.h"
#include "util.h"

char buf_nothing[1]; /* buf_head() of a buffer without storage */

#define BUF_MIN_ALLOC 4096

void
buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->rpos = b->wpos = b->size = b->used = 0;
}

void
buf_free_secure(struct buf *b)
{
	/* Only what was ever written: wiping untouched capacity costs without protecting. */
	if (b->data)
		OPENSSL_cleanse(b->data, b->used < b->size ? b->used : b->size);
	buf_free(b);
}

void
buf_release(struct buf *b)
{
	if (b->data != NULL && buf_len(b) == 0)
		buf_free_secure(b);
}

void
buf_reset(struct buf *b)
{
	b->rpos = b->wpos = 0;
}

char *
buf_reserve(struct buf *b, size_t want, size_t *got)
{
	size_t len = buf_len(b);

	FATAL_IF(b->rpos > b->wpos || b->wpos > b->size);
	if (len >= b->max)
		return NULL;
	if (want > b->max - len)
		want = b->max - len;
	if (b->size - b->wpos < want) {
		/* Reclaim consumed space first; grow only if that is not enough. */
		if (b->rpos > 0) {
			/* bytes beyond the new wpos stay behind: keep them in the wipe range */
			memmove(b->data, b->data + b->rpos, len);
			b->rpos = 0;
			b->wpos = len;
		}
		if (b->size - b->wpos < want) {
			size_t nsize = b->size ? b->size : BUF_MIN_ALLOC;

			while (nsize - len < want)
				nsize *= 2;
			if (nsize > b->max)
				nsize = b->max;
			/* realloc may move: wipe and free the old block rather than leave copies */
			char *nd = xmalloc(nsize);
			if (b->data) {
				memcpy(nd, b->data, b->wpos);
				OPENSSL_cleanse(b->data, b->used < b->size ? b->used : b->size);
				free(b->data);
			}
			b->data = nd;
			b->used = b->wpos;
			b->size = nsize;
		}
	}
	*got = b->size - b->wpos;
	return b->data + b->wpos;
}

void
buf_commit(struct buf *b, size_t n)
{
	FATAL_IF(b->wpos + n > b->size);
	b->wpos += n;
	if (b->wpos > b->used)
		b->used = b->wpos;
}

void
buf_consume(struct buf *b, size_t n)
{
	FATAL_IF(n > buf_len(b));
	b->rpos += n;
	if (b->rpos == b->wpos)
		b->rpos = b->wpos = 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	size_t got;
	char *w;

	if (n == 0)
		return 0;
	if (n > buf_room(b))
		return -1;
	w = buf_reserve(b, n, &got);
	FATAL_IF(w == NULL || got < n);
	memcpy(w, p, n);
	buf_commit(b, n);
	return 0;
}
