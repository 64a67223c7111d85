/*
 * hold - a held message: the octets of one message kept until its
 * verdict (the first hold-memory of them in memory, the rest in a spool
 * file), then read back with the inspector's edits applied.  No SMTP
 * here: what is held is the message as inspected (unstuffed CRLF lines);
 * the engine re-stuffs what the cursor gives it on the way upstream.
 *
 * Spool files live in spool-dir, mode 0600, created with O_TMPFILE: they
 * never have a name, so they disappear with their last descriptor --
 * when the transaction ends, however it ends, and when the worker dies
 * (the kernel closes its descriptors).  Where O_TMPFILE is not supported
 * the file gets a random name (O_EXCL, 0600) and is unlinked at once;
 * hold_sweep() removes what a crash between those two calls left, and
 * runs once per process before its first spool file.
 *
 * Memory: at most memmax octets of the message, plus one HOLD_IO_BUF
 * buffer for spool I/O (write-behind while the message comes in, read
 * buffer when it goes out), whatever the message's size.
 *
 * States: filling (hold_append), then sealed (hold_seal: the
 * write-behind is flushed; reads and cursors only).  A spool failure
 * (disk full, no spool-dir) is sticky: h->error keeps its errno and
 * nothing more is kept -- the engine refuses the message with a 4xx.
 */
#ifndef SMTPGW_HOLD_H
#define SMTPGW_HOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "inspect.h"

#define HOLD_IO_BUF (64 * 1024)

struct hold {
	char *mem;        /* the first memmax octets (grown on demand) */
	size_t memlen, memcap, memmax;
	int fd;           /* spool file: octets from memmax on; -1 until needed */
	char *io;         /* HOLD_IO_BUF: write-behind, then read buffer */
	size_t iolen;     /* write-behind octets not yet in the file */
	uint64_t size;    /* octets held in all */
	uint64_t filelen; /* octets written to the file */
	const char *dir;
	bool sealed;
	int error;        /* errno of the first spool failure; 0 if none */
};

void hold_init(struct hold *h, size_t memmax, const char *dir);
/* Keep n more octets; -1 (h->error set) when the spool fails. */
int hold_append(struct hold *h, const char *p, size_t n);
/* The message is all in: flush the write-behind.  -1 on a spool failure. */
int hold_seal(struct hold *h);
static inline bool hold_spooled(const struct hold *h) { return h->fd >= 0; }
/*
 * Up to len octets at off: *p points at them (in memory or the I/O
 * buffer, valid until the next call).  Returns the count, 0 at the end,
 * -1 on a read error.  Sealed holds only.
 */
ssize_t hold_read(struct hold *h, uint64_t off, size_t len, const char **p);
/* Forget the message: memory freed, spool file closed (it had no name). */
void hold_free(struct hold *h);

/*
 * The inspector's edits checked against the held message (the rules in
 * inspect.h); 0 when they may be applied, else -1 and *why.
 */
int hold_edits_check(struct hold *h, const struct inspect_edit *ed, unsigned n,
    size_t max_line, const char **why);

/* The held message with edits applied, read forward (one cursor at a time). */
struct hold_cursor {
	struct hold *h;
	const struct inspect_edit *ed;
	unsigned n, i;  /* edits, and the next one */
	uint64_t pos;   /* next octet of the original */
	size_t tpos;    /* next octet of ed[i].text, once pos reached ed[i].off */
	uint64_t out;   /* octets produced so far */
};

void hold_cursor_init(struct hold_cursor *c, struct hold *h, const struct inspect_edit *ed,
    unsigned n);
/* The next piece (at most max octets) in *p; returns its length, 0 at the end, -1 on error. */
ssize_t hold_cursor_next(struct hold_cursor *c, const char **p, size_t max);

/* Remove spool files a crashed process left in dir (named fallback files only). */
void hold_sweep(const char *dir);

#endif
