/*
 * scanpolicy - what the content scanners' answers mean for a message,
 * under a proxy action's settings (action_rules.h): clamd's verdict or
 * failure through antivirus / av-on-*, rspamd's action and score through
 * spam / spam-* (with the threshold overrides), and the texts that carry
 * the outcome: replies, the spam headers, a rewritten Subject field.
 * Pure: no I/O, no clock; content.c applies the result.
 *
 * Outcomes are ordered by severity (enum sp_action); a message's outcome
 * is the most severe of its rules', its virus scans' and its spam
 * check's: a refusal beats a tempfail (it is certain), a tempfail beats
 * a change (the message cannot go now).
 *
 * rspamd's action to ours (spam = on):
 *   reject                      SP_DENY with spam-reject-code
 *   soft reject, greylist       SP_TEMPFAIL (451)
 *   rewrite subject             SP_MARK: the spam headers and rspamd's subject
 *   add header                  SP_MARK: the spam headers
 *   no action                   SP_PASS
 *   discard, quarantine         SP_DENY: smtpgw never accepts a message only
 *                               to destroy it; it is refused (and quarantined)
 * Threshold overrides, for an action rspamd computed from the score (not
 * one it forced: GTUBE, a settings rule, a passthrough, reported as
 * "skipped" -- those are taken as they are):
 *   spam-reject-score S   reject exactly when score >= S: rspamd's reject
 *                         below S becomes "add header"; any score >= S is
 *                         refused, whatever rspamd's action.
 *   spam-header-score H   (applied after S) a message not refused is
 *                         marked exactly when score >= H: rspamd's add
 *                         header / rewrite subject below H becomes no
 *                         action; no action at >= H becomes add header.
 * The greylist and soft reject actions are never score-driven here (they
 * come from rspamd's modules).
 *
 * clamd's answer (antivirus != off):
 *   clean                         SP_PASS
 *   a virus                       av-on-virus: SP_DENY / SP_STRIP / SP_DROP / SP_BLOCK
 *   "Heuristics.Encrypted.*",     unscannable: av-on-error (clamd reports an
 *   "Heuristics.Limits.*" found   encrypted archive or one over its limits
 *                                 as a finding when told to alert on them)
 *   too large, scan error         av-on-error: SP_PASS (unscanned) / SP_DENY / SP_TEMPFAIL
 *   unavailable                   av-on-unavailable: SP_PASS (unscanned) / SP_TEMPFAIL
 */
#ifndef SMTPGW_SCANPOLICY_H
#define SMTPGW_SCANPOLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "action_rules.h"
#include "clamd.h"
#include "rspamd.h"

enum sp_action {
	SP_PASS,     /* delivered as it is */
	SP_MARK,     /* delivered with the spam headers (and a new subject) */
	SP_STRIP,    /* delivered without the infected parts */
	SP_TEMPFAIL, /* 451: the sender keeps it and retries */
	SP_DENY,     /* 5xx */
	SP_DROP,     /* 5xx, then the session closes */
	SP_BLOCK,    /* ... and the client goes on the blocked sites list */
};

/* What clamd's answer means. */
struct sp_av {
	enum sp_action action;
	bool virus;       /* a real finding (not an unscannable alert) */
	bool unscanned;   /* passed without a verdict (av-on-error / -unavailable allow) */
	const char *why;  /* for the log and the reply: "virus", "unscannable", "too-large",
	                   * "scan-error", "unavailable", "clean" (static) */
};

/* What rspamd's answer means. */
struct sp_spam {
	enum sp_action action;   /* SP_PASS, SP_MARK, SP_TEMPFAIL or SP_DENY */
	bool subject;            /* SP_MARK: rewrite the subject too */
	bool unscanned;          /* passed without a verdict (spam-on-unavailable allow, too large) */
	bool overridden;         /* a threshold override changed rspamd's action */
	const char *level;       /* our name of it: "reject", "tempfail", "rewrite subject",
	                          * "add header", "no action", "unavailable", ... (static) */
};

void scanpolicy_av(const struct action_rules *r, enum clamd_status st, const char *virus,
    struct sp_av *out);
void scanpolicy_spam(const struct action_rules *r, const struct rspamd_result *res,
    struct sp_spam *out);
/* The more severe of two outcomes. */
enum sp_action scanpolicy_worse(enum sp_action a, enum sp_action b);
const char *sp_action_name(enum sp_action a);

/*
 * The spam headers a marked message gets, as CRLF lines into out:
 * X-Spam-Flag, X-Spam-Score ("7.50 / 15.00"), X-Spam-Action, X-Spam-Symbols
 * (the highest-scoring symbols that fit one line), then rspamd's own
 * milter.add_headers.  Every line is at most 998 octets.  Returns the
 * length (0 when out is too small for even the first line).
 */
size_t scanpolicy_spam_headers(const struct rspamd_result *res, const char *level, char *out,
    size_t outsz);
/*
 * Is a header field of this name one the spam headers replace (ours, or
 * one rspamd asks to add or remove)?  Existing fields of those names are
 * removed from a marked message, so no sender can plant "X-Spam-Flag: NO".
 */
bool scanpolicy_replaced_header(const struct rspamd_result *res, const char *name,
    size_t namelen);
/*
 * "Subject: ..." CRLF for subject: as it is when it is printable ASCII and
 * the line fits 998 octets, otherwise RFC 2047 encoded words (UTF-8, B),
 * folded; NUL-terminated.  Returns the length, 0 when out is too small.
 */
size_t scanpolicy_subject_field(const char *subject, char *out, size_t outsz);

#endif
