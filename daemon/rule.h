/*
 * rule - the rulesets of a proxy action: ordered patterns with an action.
 *
 * A rule is a pattern and what to do when an item matches it:
 *   exact    the whole item, ASCII case-insensitive
 *   pattern  a wildcard over the whole item: '*' any run of characters
 *            (also empty), '?' one character (one UTF-8 sequence; an
 *            octet that begins none is one); ASCII case-insensitive
 *   regex    PCRE2, searched anywhere in the item (anchor with ^ $),
 *            case-insensitive ((?-i) turns that off), UTF-8 with invalid
 *            sequences tolerated in the item
 * Actions: allow, deny (refuse the item with a reply, keep the session),
 * drop (close the session), block (drop and list the client as blocked),
 * strip (remove the attachment / header, deliver the rest).  Flags: log,
 * alarm.  The first matching rule wins; no match gives the ruleset's
 * default.  Pure: no I/O; the engine maps the result to what it does.
 *
 * Bounds (a hostile item must not make matching run away): patterns up to
 * RULE_PATTERN_MAX octets, RULESET_RULES_MAX rules, items up to
 * RULE_SUBJECT_MAX octets (callers pass bounded items anyway), regexes
 * compiled with a parenthesis nesting limit and matched under PCRE2's
 * match, depth and heap limits (JIT when available: its stack is bounded
 * too).  A regex that hits a limit is a match *error*: the result is the
 * ruleset's error action (deny unless set), flagged, never a silent pass.
 */
#ifndef SMTPGW_RULE_H
#define SMTPGW_RULE_H

#include <stdbool.h>
#include <stddef.h>

#define RULE_PATTERN_MAX 1024
#define RULESET_RULES_MAX 1024
#define RULESET_NAME_MAX 64
#define RULE_SUBJECT_MAX 65536
#define RULE_MATCH_LIMIT 200000 /* backtracking steps per match */
#define RULE_DEPTH_LIMIT 2000   /* backtracking depth */
#define RULE_HEAP_LIMIT 2048    /* KiB of heap per match (interpreter) */
#define RULE_NEST_LIMIT 64      /* parentheses nesting in a regex */

enum rule_kind {
	RULE_EXACT,
	RULE_WILDCARD,
	RULE_REGEX,
};

enum rule_action {
	RULE_ALLOW,
	RULE_DENY,
	RULE_DROP,
	RULE_BLOCK,
	RULE_STRIP,
};

#define RULE_F_LOG 0x1u
#define RULE_F_ALARM 0x2u

struct rule {
	enum rule_kind kind;
	enum rule_action action;
	unsigned flags;   /* RULE_F_* */
	unsigned line;    /* where it was configured (0: not from a file) */
	char *pattern;    /* NUL-terminated copy */
	size_t len;
	void *re;         /* pcre2_code for RULE_REGEX */
};

struct ruleset {
	char name[RULESET_NAME_MAX];
	struct rule *rules;
	unsigned nrules, cap;
	enum rule_action dflt;   /* no rule matched */
	unsigned dflt_flags;
	enum rule_action err_action; /* a regex hit its limits: RULE_DENY by default */
	void *mdata, *mctx;      /* PCRE2 match data and context, shared by the rules */
};

struct rule_result {
	const struct rule *rule; /* the rule that matched (or failed: error); NULL: default */
	enum rule_action action;
	unsigned flags;
	bool error;              /* a match limit was hit (or the item was too long) */
};

void ruleset_init(struct ruleset *rs, const char *name, enum rule_action dflt,
    unsigned dflt_flags);
void ruleset_free(struct ruleset *rs);

/*
 * Append a rule.  Returns 0, or -1 with a reason in err ("regex: missing
 * closing parenthesis at offset 4") for the caller to prefix with
 * "file:line: ".
 */
int ruleset_add(struct ruleset *rs, enum rule_kind kind, const char *pattern, size_t len,
    enum rule_action action, unsigned flags, unsigned line, char *err, size_t errsz);

/*
 * Append a rule written as one line of text:
 *
 *   ACTION [log] [alarm] KIND PATTERN
 *
 * e.g. "strip log pattern *.exe", "deny log alarm regex ^.{200,}$".  The
 * pattern is the rest of the line after KIND and its whitespace, trailing
 * whitespace removed (use a regex for leading or trailing spaces).
 */
int ruleset_add_line(struct ruleset *rs, const char *line, unsigned lineno, char *err,
    size_t errsz);

/* The rule as ruleset_add_line reads it (round trip). Returns the length. */
size_t rule_format(const struct rule *r, char *buf, size_t sz);

struct rule_result ruleset_match(const struct ruleset *rs, const char *item, size_t len);

const char *rule_action_name(enum rule_action a);
int rule_action_parse(const char *s, size_t n, enum rule_action *a);
const char *rule_kind_name(enum rule_kind k);

/* The wildcard matcher on its own (bounded: O(len(pattern) * len(item))). */
bool rule_wildcard(const char *pat, size_t plen, const char *s, size_t n);

#endif
