/*
 * clamd - ClamAV's clamd as a scanner pool (scanner.h): the message goes
 * to clamd with INSTREAM, and clamd parses it as mail itself (MIME parts,
 * base64, archives, attached messages).
 *
 * Protocol (clamd(8)): "zINSTREAM\0", then chunks of a 4-octet big-endian
 * length and that many octets (at most CLAMD_CHUNK_MAX each here), then
 * a zero length; the reply ends with NUL: "stream: OK", "stream: NAME
 * FOUND", "... ERROR" ("INSTREAM size limit exceeded. ERROR" when the
 * stream passes clamd's StreamMaxLength).  Health check: "zPING\0" ->
 * "PONG\0".
 *
 * Connection reuse: each connection opens an IDSESSION ("zIDSESSION\0");
 * the replies of a session carry the command's number ("1: stream: OK"),
 * which is checked.  One command at a time per connection, so clamd's
 * rule that a client reads every reply before sending more holds by
 * construction.  Idle sessions close after clamd-idle-timeout (keep it
 * below clamd's IdleTimeout, default 30 s); clamd-idle-timeout = 0 turns
 * reuse off.
 *
 * Size: clamd-max-size must not exceed the servers' StreamMaxLength
 * (clamd's default 25 MiB is ours too).  A larger message is TOO_LARGE
 * without being sent; should a server's limit still be lower, its "size
 * limit exceeded" answer is TOO_LARGE as well (and the log says to lower
 * clamd-max-size).
 *
 * API: clamd_scan_start(), clamd_scan_feed() as the message arrives
 * (SCANNER_FEED_BUSY: wait for the resume callback), clamd_scan_end(),
 * then the done callback with a struct clamd_result, exactly once and
 * from the event loop; or clamd_scan_cancel() (no callback).  The handle
 * is invalid once done returns or cancel is called.  Works the same from
 * a held copy: feed it from the copy whenever not busy.
 *
 * Streaming as the message arrives holds a clamd connection while the
 * client sends: clamd's ReadTimeout (default 120 s) bounds the gap
 * between two chunks, so a client that pauses longer than that makes the
 * scan an error (clamd closes).  Scanning from a held copy (or starting
 * the scan at the end of data) avoids it, at the cost of the copy.
 */
#ifndef SMTPGW_CLAMD_H
#define SMTPGW_CLAMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "config.h"
#include "scanner.h"

#define CLAMD_VIRUS_MAX 128        /* signature name, terminator included */
#define CLAMD_REPLY_MAX 1024       /* a reply longer than this is malformed */
#define CLAMD_CHUNK_MAX 65536      /* INSTREAM chunk length we send */

enum clamd_status {
	CLAMD_CLEAN,
	CLAMD_INFECTED,    /* virus holds the signature name */
	CLAMD_TOO_LARGE,   /* above clamd-max-size, or clamd's StreamMaxLength */
	CLAMD_ERROR,       /* a server took it, no verdict (reason says why) */
	CLAMD_UNAVAILABLE, /* no server took it (reason says why) */
};

struct clamd_result {
	enum clamd_status status;
	/*
	 * INFECTED: the name clamd gave, cut to fit and reduced to
	 * letters, digits and ".-_:/+()[]#@!~," (others become '_'), so it
	 * is safe in a log field, an SMTP reply and a header.
	 */
	char virus[CLAMD_VIRUS_MAX];
	char reason[SCANNER_ERROR_MAX]; /* TOO_LARGE, ERROR, UNAVAILABLE; one printable line */
	/* address of the server that answered / failed last (NULL: none); valid while the pool is */
	const char *server;
	uint64_t size;       /* octets fed */
	uint64_t elapsed_ms;
};

struct clamd_pool;
struct clamd_scan;

typedef void clamd_done_fn(void *arg, const struct clamd_result *res);
typedef void clamd_resume_fn(void *arg);

/* A pool over sc's servers for this worker (after ev_init()). */
struct clamd_pool *clamd_pool_new(const struct conf_scanners *sc);
struct clamd_pool *clamd_pool_new_opts(const struct conf_scanners *sc,
    const struct scanner_opts *o);
/* Every scan must be done or cancelled; never from inside a callback. */
void clamd_pool_free(struct clamd_pool *p);
/* scanner_pool_status() with the prefix "clamd"; counters clean, infected, too-large, scan-errors. */
void clamd_pool_status(const struct clamd_pool *p, FILE *f);

struct clamd_scan *clamd_scan_start(struct clamd_pool *p, uint64_t sid, clamd_done_fn *done,
    clamd_resume_fn *resume, void *arg);
/* SCANNER_FEED_OK, _BUSY (taken; wait for resume) or _DONE (no more wanted). */
int clamd_scan_feed(struct clamd_scan *s, const char *data, size_t len);
void clamd_scan_end(struct clamd_scan *s);
void clamd_scan_cancel(struct clamd_scan *s);

const char *clamd_status_name(enum clamd_status st);

/* --- pure parts (no I/O): framing and reply parsing --- */

/* Append "zINSTREAM\0" / one chunk (framed per CLAMD_CHUNK_MAX) / the end; -1: no room (nothing appended). */
int clamd_frame_begin(struct buf *out);
int clamd_frame_chunk(struct buf *out, const char *p, size_t n);
int clamd_frame_end(struct buf *out);

/*
 * Read one reply from p[0..len): SCANNER_PARSE_MORE (no NUL yet, and
 * fewer than CLAMD_REPLY_MAX octets), SCANNER_PARSE_BAD (why filled:
 * too long, wrong session id), or SCANNER_PARSE_DONE with *used octets
 * (NUL included) and res->status / virus / reason set.  seq > 0: the
 * reply must carry that session id ("seq: ...").
 */
int clamd_reply_parse(const char *p, size_t len, unsigned seq, struct clamd_result *res,
    size_t *used, char *why, size_t whylen);

#endif
