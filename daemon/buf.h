/*
 * buf - a bounded byte buffer.
 *
 *   data: [ consumed | pending bytes | free space ]
 *         0        rpos           wpos          size
 *
 * Invariants: 0 <= rpos <= wpos <= size <= max.  Pending bytes are
 * [rpos, wpos).  The buffer grows on demand but never beyond max, so a peer
 * can never make a session hold more than max bytes here; an append that
 * would exceed max fails and the caller decides (pause reading, or refuse
 * the input with an SMTP error).  When empty, rpos and wpos go back to 0;
 * space before rpos is reclaimed by moving the pending bytes down.
 */
#ifndef SMTPGW_BUF_H
#define SMTPGW_BUF_H

#include <stddef.h>

struct buf {
	char *data;
	size_t rpos, wpos, size, max;
	size_t used; /* highest wpos ever: what buf_free_secure must wipe */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* Wipes the contents before freeing (key material, AUTH exchanges). */
void buf_free_secure(struct buf *b);

static inline size_t buf_len(const struct buf *b) { return b->wpos - b->rpos; }
/*
 * An idle buffer has no storage (data NULL: an idle leg keeps none); its
 * head is then an empty string, never NULL + 0, so callers may pass
 * (buf_head, buf_len) to memchr or memcpy whatever the state.
 */
extern char buf_nothing[1];
static inline char *buf_head(const struct buf *b)
{
	return b->data ? b->data + b->rpos : buf_nothing;
}
/* Bytes that can still be appended before the buffer reaches max. */
static inline size_t buf_room(const struct buf *b) { return b->max - buf_len(b); }

/*
 * Make at least want (>0) contiguous free bytes available after wpos (less
 * if max does not allow it).  Returns the write pointer and the space in
 * *got, or NULL if the buffer is full.
 */
char *buf_reserve(struct buf *b, size_t want, size_t *got);
void buf_commit(struct buf *b, size_t n);
void buf_consume(struct buf *b, size_t n);
/* Returns -1 (and appends nothing) if the bytes do not fit under max. */
int buf_append(struct buf *b, const void *p, size_t n);
void buf_reset(struct buf *b);
/*
 * An empty buffer gives its storage back (wiped, as buf_free_secure);
 * one with pending bytes is left alone.  The next reserve allocates
 * again: what an idle session holds is then its state, not its buffers.
 */
void buf_release(struct buf *b);

#endif
