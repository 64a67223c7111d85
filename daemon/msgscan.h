/*
 * msgscan - the content scanners' part of inspecting one message: clamd
 * and rspamd asked about the held copy (hold.h) once the whole message
 * is in, and the worker's scanner pools they are asked through.
 *
 * Why from the held copy, at the end of data, rather than as the message
 * arrives: the scanners get it at the speed of the local disk and
 * network, never at the client's -- clamd's ReadTimeout (120 s) ends a
 * stream that pauses, and a pool's connection is held for seconds, not
 * for as long as a slow client takes; rspamd gets the size up front
 * (Content-Length); the part scans of "attachments" run a few at a time
 * from a parse of their own; and a copy is needed anyway, for the
 * quarantine and the changes (strip, spam headers).  The cost is
 * latency: a message is scanned after it arrived, not while.
 *
 * Per message (msgscan_start), concurrently:
 *  - antivirus = message: the whole message, one INSTREAM (clamd parses
 *    its MIME, archives, attached messages itself);
 *  - antivirus = attachments: each leaf part, decoded by the MIME parser
 *    (mime.h), its own INSTREAM -- at most MSGSCAN_PARTS_AT_ONCE at once,
 *    the parse waiting while that many are out (so the decoded data
 *    waiting for a scan stays below one read of the hold and the MIME
 *    parser's output buffer);
 *  - locate (message mode, av-on-virus = strip): when the whole message
 *    has a virus, the same part scans then find the parts to strip;
 *  - spam = on: the whole message to rspamd with the envelope.
 * When everything has answered, done() is called, from the event loop
 * (never from inside msgscan_start or msgscan_free); msgscan_free()
 * before that cancels every scan (no callback afterwards).
 *
 * A part's outcome counts like the message's: a virus in any part is the
 * message's; otherwise the worst failure (error, then too large, then
 * unavailable).  At most MSGSCAN_INFECTED_MAX infected parts are listed
 * (more: the message is not strippable).
 *
 * Per worker: msgscan_worker_init() makes the pools of [global]
 * clamd-servers / rspamd-servers (none: that engine is not configured,
 * and nothing is asked of it), publishes their status for the master
 * every STATS_SCAN_PUBLISH_MS (stats.h), and msgscan_worker_free() ends
 * them when the worker exits.
 */
#ifndef SMTPGW_MSGSCAN_H
#define SMTPGW_MSGSCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "action_rules.h"
#include "clamd.h"
#include "config.h"
#include "hold.h"
#include "rspamd.h"

#define MSGSCAN_PARTS_AT_ONCE 4
#define MSGSCAN_INFECTED_MAX 64
#define MSGSCAN_READ (16 * 1024) /* octets of the hold read per step of a parse */

void msgscan_worker_init(const struct config *c);
void msgscan_worker_free(void);
bool msgscan_has_clamd(void);
bool msgscan_has_rspamd(void);

struct msgscan_req {
	uint64_t sid;
	struct hold *hold;   /* sealed; valid until done() or msgscan_free() */
	enum av_mode av;     /* AV_OFF: no clamd */
	bool locate;         /* message mode: find the infected parts when there is a virus */
	bool spam;
	const struct rspamd_envelope *env; /* copied at start */
};

struct msgscan_part {
	unsigned index;       /* the MIME part (mime.h) */
	uint64_t off, end;    /* its byte range [off_start, off_end) */
	unsigned depth;
	char type[128];
	char name[256];
	char virus[CLAMD_VIRUS_MAX];
};

struct msgscan_result {
	/* clamd (when asked) */
	bool av_asked;
	enum clamd_status av;           /* the message's (parts merged) */
	char virus[CLAMD_VIRUS_MAX];    /* the first one found */
	char av_reason[SCANNER_ERROR_MAX];
	char av_server[CONF_SCAN_ADDR_MAX];
	unsigned parts_scanned;
	struct msgscan_part infected[MSGSCAN_INFECTED_MAX];
	unsigned ninfected;
	bool located;                   /* the infected parts are known (attachments, or
	                                 * locate found every one without a failure) */
	uint64_t av_ms;
	/* rspamd (when asked) */
	bool spam_asked;
	struct rspamd_result spam;
};

typedef void msgscan_done_fn(void *arg);

struct msgscan *msgscan_start(const struct msgscan_req *req, msgscan_done_fn *done, void *arg);
const struct msgscan_result *msgscan_result(const struct msgscan *m);
void msgscan_free(struct msgscan *m);

#endif
