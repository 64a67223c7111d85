/*
 * quarantine - what smtpgw refuses or strips for its content is kept:
 * the original message, byte for byte as the client sent it (unstuffed),
 * with its envelope and the verdict, in [global] quarantine-dir, so a
 * false positive can be released to its recipients later (release.h).
 *
 * Layout: one file per message, "<ID>.msg", written by the worker that
 * refused it (its user owns the directory, mode 0700; files 0600) as
 * ".tmp-<ID>" and renamed into place once complete: a reader never sees
 * half a record.  A release leaves "<ID>.released" next to it (created
 * with O_EXCL: that is what makes a release happen once), and every
 * release and deletion is appended to "audit.log".
 *
 * ID: "<unix time>-<session id>-<n>" (10 digits, 12 hex digits, 4 hex
 * digits: the transaction's number in its worker), so names sort by age.
 *
 * Record: a head of "key=value" lines, a blank line, then exactly
 * size octets of message:
 *
 *   smtpgw-quarantine 1
 *   id=, time=, session=, action=, direction=inbound|outbound,
 *   client=ADDR:PORT, server=ADDR:PORT (the original destination),
 *   server-name= (the name its TLS was judged on; may be empty),
 *   server-tls=yes|no (the original upstream leg was encrypted),
 *   client-tls=none | VERSION CIPHER, helo=, mail-from= (empty: <>),
 *   rcpt= (one line per recipient), verdict=deny|drop|block|strip,
 *   reason=, virus= (may be empty), spam-score= (may be empty),
 *   reply= (what the client was told; empty for a strip), size=
 *
 * Values are one line: an octet below 0x20, 0x7f and '%' are written as
 * %XX and read back; server, server-name, mail-from and rcpt (what a
 * release puts on the wire) are refused with a control octet (and the
 * addresses with '<' or '>') -- the engine never admits them, so such a
 * record was not written by smtpgw.  Bounds: QUARANTINE_HEAD_MAX octets of head,
 * QUARANTINE_RCPTS_MAX recipients, QUARANTINE_VALUE_MAX per value.
 *
 * Bounds of the directory: quarantine-max-size octets and
 * quarantine-max-age seconds.  The total is a shared counter (stats.h):
 * a worker about to write a record that would pass the size sweeps
 * first, oldest first, down to 90 % of it (so sweeps are rare); the
 * master sweeps ages every QUARANTINE_SWEEP_S and at start (recounting
 * the total).  Every removal is logged with its ID and why.
 */
#ifndef SMTPGW_QUARANTINE_H
#define SMTPGW_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "hold.h"

#define QUARANTINE_ID_MAX 40          /* "1764936000-4f2a91c0e1d3-0001" + NUL, with room */
#define QUARANTINE_HEAD_MAX (512 * 1024)
#define QUARANTINE_RCPTS_MAX 1000
#define QUARANTINE_VALUE_MAX 1024
#define QUARANTINE_SWEEP_S 600
#define QUARANTINE_SLICE (1024 * 1024) /* octets copied per event-loop turn */

enum quarantine_verdict {
	QV_DENY,
	QV_DROP,
	QV_BLOCK,
	QV_STRIP,
};

/* One record's head (parsed: strings point into the parser's buffer). */
struct qrec {
	char id[QUARANTINE_ID_MAX];
	int64_t time;
	uint64_t session;
	const char *action;
	bool inbound;
	const char *client, *server, *server_name;
	bool server_tls;
	const char *client_tls;  /* "none" or "VERSION CIPHER" */
	const char *helo, *mail_from;
	const char *const *rcpts;
	unsigned nrcpts;
	enum quarantine_verdict verdict;
	const char *reason, *virus, *spam_score, *reply;
	uint64_t size;
};

const char *quarantine_verdict_name(enum quarantine_verdict v);

/* --- pure --- */

/* "<time>-<sid>-<n>" into out (QUARANTINE_ID_MAX). */
void quarantine_make_id(char *out, time_t t, uint64_t sid, unsigned n);
/* The shape of an ID (a file name, never a path). */
bool quarantine_valid_id(const char *id);
/*
 * The head of rec in file syntax, ending with the blank line, into a new
 * buffer (*out, *outlen; free it).  -1 when it would pass
 * QUARANTINE_HEAD_MAX or a limit above.
 */
int quarantine_format_head(const struct qrec *rec, char **out, size_t *outlen);

/* A parsed head: owns its text; rec's strings point into it. */
struct qhead {
	struct qrec rec;
	char *text;
	const char **rcpts;
	size_t head_len; /* octets of the head, blank line included: the message starts here */
};

/*
 * Parse the head at the start of data[0..len) (len may be more than the
 * head).  0, or -1 with why: not a record, a bad line, a missing key, over
 * a bound.  Free with quarantine_head_free().
 */
int quarantine_parse_head(const char *data, size_t len, struct qhead *h, char *why,
    size_t whylen);
void quarantine_head_free(struct qhead *h);

/* --- the worker's writer (inside its event loop) --- */

struct qwrite;
/* err: 0, or the errno of the failure; id: the record's (valid during the call). */
typedef void qwrite_done_fn(void *arg, int err, const char *id);

/*
 * Write rec with the held message (sealed; rec->size is set from it) to
 * dir, in slices between events; done() is called once, from the loop,
 * unless cancelled first.  sync: on disk (fdatasync) before the rename --
 * for a stripped message, whose only whole copy this is.
 */
struct qwrite *quarantine_write(const char *dir, uint64_t max_size, struct qrec *rec,
    struct hold *h, bool sync, qwrite_done_fn *done, void *arg);
/* Stop: the partial file is removed, done() is never called. */
void quarantine_write_cancel(struct qwrite *w);

/*
 * Remove records older than max_age seconds, then the oldest until the
 * total is at most target octets; leftover ".tmp-" files of crashed
 * writers older than an hour too.  Returns the total left (and sets the
 * shared counter), or -1 when the directory cannot be read.  sid for log
 * lines (0: none).
 */
int64_t quarantine_sweep(const char *dir, uint64_t target, unsigned max_age, time_t now);

/*
 * Master, as root, before the workers start: create dir (and its missing
 * parents, 0755) owned by uid:gid (root and the workers' group), mode 0770;
 * an existing one is given to uid:gid and 0770 (never through a symlink).
 * -1 with err.  spool-dir is prepared with it too (main.c).
 */
int quarantine_prepare(const char *dir, unsigned uid, unsigned gid, char *err, size_t errlen);

/*
 * What quarantine_prepare() would refuse of dir as it is now ("." or ".."
 * in the path, a shared directory, one that holds files and is not
 * already uid:gid 0770), changing nothing (smtpgw -t).  0 when missing.
 */
int quarantine_dir_check(const char *dir, unsigned uid, unsigned gid, char *err, size_t errlen);

/* --- the admin's side (smtpgw -Q, run by smtpgwctl quarantine) --- */

/*
 * Read the record id from dir: its head, and the message's offset.  The
 * message octets are the file's from h->head_len on, rec.size of them.
 * Returns the open file (close it) or -1 with why.
 */
int quarantine_open(const char *dir, const char *id, struct qhead *h, char *why, size_t whylen);
/* "released by WHO at TIME ..." from <id>.released, or "" when not released. */
void quarantine_state(const char *dir, const char *id, char *out, size_t outlen);
/* Append one line to the audit log (with the time); best effort. */
void quarantine_audit(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
