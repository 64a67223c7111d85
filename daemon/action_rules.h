/*
 * action_rules - the content-inspection settings of a proxy action: its
 * rulesets (greeting, mail-from, rcpt-to, header, content-type,
 * filename), address rewrites, and the scalar settings around them
 * (banner hiding, the ESMTP allowlist, unknown commands, source-routed
 * and 8-bit addresses, envelope headers, what to do with ambiguous MIME
 * and unopenable archives, the deny message).
 *
 * Configuration (keys of an [action] section, smtpgw.conf(5)):
 *
 *   <kind>-rule    = ACTION [log] [alarm] KIND PATTERN   (repeatable, ordered)
 *   <kind>-default = ACTION [log] [alarm]
 *   mail-from-rewrite / rcpt-to-rewrite = KIND PATTERN => REPLACEMENT
 *   rules-from     = ACTION-NAME   every key not set here comes from there
 *   hide-banner, banner, esmtp, auth-mechanisms, unknown-commands,
 *   source-routed, local-part-8bit, envelope-headers, on-ambiguous,
 *   on-archive-unopenable, deny-message
 *   antivirus, av-on-virus, av-on-error, av-on-unavailable (clamd)
 *   spam, spam-reject-code, spam-on-unavailable, spam-reject-score,
 *   spam-header-score (rspamd), quarantine
 *
 * with ACTION allow | deny | drop | block | strip and KIND exact |
 * pattern | regex (rule.h).  The predefined actions SMTP-Incoming.Standard
 * and SMTP-Outgoing.Standard carry the defaults an admin expects
 * (arules_predefined): inbound strips executables by name and by
 * content, refuses source-routed addresses and ambiguous MIME and hides
 * the internal server's banner; outbound only refuses source routes and
 * logs what it would strip inbound.  Both scan for viruses (the whole
 * message, a virus is refused); only inbound asks rspamd about spam
 * (smtpgw.conf(5) says why).
 *
 * Pure: no I/O.  Lifetime: an action's rules belong to its config
 * (config_free); the predefined ones are built once per process and
 * shared.  Every lookup goes through arules_rs()/the resolved fields, so
 * rules-from never needs to be followed at run time.
 */
#ifndef SMTPGW_ACTION_RULES_H
#define SMTPGW_ACTION_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "rule.h"

enum arules_kind {
	AR_GREETING,     /* the HELO/EHLO argument */
	AR_MAIL_FROM,    /* the sender address (path, without <>) */
	AR_RCPT_TO,      /* each recipient address */
	AR_HEADER,       /* each header field, unfolded: "Name: value" */
	AR_CONTENT_TYPE, /* each part's declared and sniffed type, archive entries' types */
	AR_FILENAME,     /* each part's file names, archive entries' names */
	AR_COUNT,
};

#define ARULES_REWRITES_MAX 64
#define ARULES_BANNER_MAX 200
#define ARULES_AUTH_MAX 256
#define ARULES_DENY_MAX 2048

/* Scalar settings, each with a bit in set_mask once the action sets it. */
enum arules_setting {
	AS_HIDE_BANNER,
	AS_BANNER,
	AS_ESMTP,
	AS_AUTH_MECHS,
	AS_UNKNOWN_CMDS,
	AS_SOURCE_ROUTED,
	AS_LOCAL_8BIT,
	AS_ENVELOPE_HEADERS,
	AS_ON_AMBIGUOUS,
	AS_ON_UNOPENABLE,
	AS_DENY_MESSAGE,
	AS_ANTIVIRUS,
	AS_AV_ON_VIRUS,
	AS_AV_ON_ERROR,
	AS_AV_ON_UNAVAILABLE,
	AS_SPAM,
	AS_SPAM_REJECT_CODE,
	AS_SPAM_ON_UNAVAILABLE,
	AS_SPAM_REJECT_SCORE,
	AS_SPAM_HEADER_SCORE,
	AS_QUARANTINE,
	AS_COUNT,
};

/* antivirus: what clamd is given. */
enum av_mode {
	AV_OFF,
	AV_MESSAGE,     /* the whole message, one INSTREAM (clamd parses the MIME itself) */
	AV_ATTACHMENTS, /* each leaf part as the MIME parser decodes it, one INSTREAM each */
};

/* What a scanner that gave no verdict does to the message. */
enum scan_fail {
	SCAN_FAIL_ALLOW,    /* delivered unscanned (logged and counted) */
	SCAN_FAIL_DENY,     /* 554 */
	SCAN_FAIL_TEMPFAIL, /* 451: the sender keeps it and retries */
};

#define ARULES_CODE_MAX 24         /* spam-reject-code: "554 5.7.1" */
#define ARULES_SCORE_RSPAMD (-1.0) /* a threshold left to rspamd's own action */
#define ARULES_SCORE_MAX 10000.0

/* An address rewrite: the first that matches replaces the address. */
struct arules_rewrite {
	enum rule_kind kind;
	char *pattern, *replacement; /* as configured */
	void *re;                    /* pcre2_code (pattern: converted to a regex) */
	char *subst;                 /* the replacement in PCRE2 syntax */
	unsigned line;
};

struct action_rules {
	/* rulesets: own[k] when defined[k], else inherited (rs[k] resolves it) */
	struct ruleset own[AR_COUNT];
	bool defined[AR_COUNT];
	const struct ruleset *rs[AR_COUNT];
	struct arules_rewrite rewrites[2][ARULES_REWRITES_MAX]; /* [0] mail-from, [1] rcpt-to */
	unsigned nrewrites[2];
	bool rewrites_set[2];
	const struct arules_rewrite *rw[2]; /* resolved */
	unsigned nrw[2];

	char rules_from[64];  /* "" when none */
	unsigned set_mask;    /* 1 << AS_* */
	bool hide_banner;
	char banner[ARULES_BANNER_MAX]; /* shown instead of the server's; "" = "ESMTP" */
	unsigned esmtp;       /* CAP_* the client may be shown (smtp_caps.h) */
	char auth_mechs[ARULES_AUTH_MAX]; /* space-separated, upper case; "" = any */
	bool unknown_allow;   /* forward commands smtpgw does not know (re-framed) */
	bool source_routed_allow;
	bool local_8bit_allow;
	bool envelope_headers;
	enum rule_action on_ambiguous, on_unopenable;
	unsigned on_ambiguous_flags, on_unopenable_flags;
	char deny_message[ARULES_DENY_MAX]; /* template (template.h); "" = tpl_default */
	/* content scanners (scanpolicy.h decides with them) */
	enum av_mode antivirus;
	enum rule_action av_on_virus;        /* deny, strip, drop or block */
	enum scan_fail av_on_error;          /* scan error, too large, encrypted */
	enum scan_fail av_on_unavailable;    /* allow or tempfail */
	bool spam;
	char spam_reject_code[ARULES_CODE_MAX]; /* "5xx" or "5xx 5.x.y" */
	enum scan_fail spam_on_unavailable;  /* allow or tempfail */
	double spam_reject_score;            /* ARULES_SCORE_RSPAMD or 0..ARULES_SCORE_MAX */
	double spam_header_score;
	bool quarantine;                     /* keep what is refused or stripped for content */
};

const char *av_mode_name(enum av_mode m);
const char *scan_fail_name(enum scan_fail f);

/* New rules for a user-defined action: nothing set, nothing matched (allow). */
struct action_rules *arules_new(void);
void arules_free(struct action_rules *r);

/* The predefined actions' rules, built once and shared (never freed). */
const struct action_rules *arules_predefined(bool inbound);

/*
 * One "key = value" of an [action] section.  Returns 1 when the key is
 * one of ours and was taken, 0 when it is not ours, -1 with the reason in
 * err (the caller adds "file:line: ").  line is the file line (rules
 * remember it).
 */
int arules_kv(struct action_rules *r, const char *key, const char *value, unsigned line,
    char *err, size_t errsz);

/*
 * After the whole file: resolve rules-from (from is the named action's
 * rules, already resolved; NULL when the action has none) and the
 * defaults.  Returns -1 with err on a problem.
 */
void arules_resolve(struct action_rules *r, const struct action_rules *from);

/* The ruleset in effect for a kind (never NULL). */
const struct ruleset *arules_rs(const struct action_rules *r, enum arules_kind k);

/*
 * Rewrite an address (mail-from: which = 0, rcpt-to: 1) into out when a
 * rewrite matches.  Returns 1 rewritten, 0 no match, -1 the result does
 * not fit out.  The caller checks that the result is a valid path.
 */
int arules_rewrite(const struct action_rules *r, int which, const char *addr, char *out,
    size_t outsz, unsigned *line);

/* Print the action's own settings in file syntax (config_dump). */
void arules_dump(const struct action_rules *r, void *file);

const char *arules_kind_key(enum arules_kind k);

/*
 * Source-routed forms in an address: the RFC 5321 route ("@a,@b:" --
 * the parser reports it), and the percent hack / bang path in the local
 * part ("user%host@relay", "host!user@relay").
 */
bool arules_source_routed(const char *path, bool had_route);
/* 8-bit octets in the local part. */
bool arules_local_8bit(const char *path);

#endif
