/*
 * rule - ordered pattern rulesets (exact, wildcard, PCRE2).  See rule.h.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rule.h"
#include "util.h"

static const char *const action_names[] = {
	[RULE_ALLOW] = "allow",
	[RULE_DENY] = "deny",
	[RULE_DROP] = "drop",
	[RULE_BLOCK] = "block",
	[RULE_STRIP] = "strip",
};

static const char *const kind_names[] = {
	[RULE_EXACT] = "exact",
	[RULE_WILDCARD] = "pattern",
	[RULE_REGEX] = "regex",
};

const char *
rule_action_name(enum rule_action a)
{
	return (unsigned)a < ARRAY_SIZE(action_names) ? action_names[a] : "?";
}

const char *
rule_kind_name(enum rule_kind k)
{
	return (unsigned)k < ARRAY_SIZE(kind_names) ? kind_names[k] : "?";
}

int
rule_action_parse(const char *s, size_t n, enum rule_action *a)
{
	for (unsigned i = 0; i < ARRAY_SIZE(action_names); i++) {
		if (strlen(action_names[i]) == n && strncasecmp(s, action_names[i], n) == 0) {
			*a = (enum rule_action)i;
			return 0;
		}
	}
	return -1;
}

static int
kind_parse(const char *s, size_t n, enum rule_kind *k)
{
	for (unsigned i = 0; i < ARRAY_SIZE(kind_names); i++) {
		if (strlen(kind_names[i]) == n && strncasecmp(s, kind_names[i], n) == 0) {
			*k = (enum rule_kind)i;
			return 0;
		}
	}
	return -1;
}

void
ruleset_init(struct ruleset *rs, const char *name, enum rule_action dflt, unsigned dflt_flags)
{
	pcre2_match_context *mctx;

	memset(rs, 0, sizeof(*rs));
	if (name)
		(void)strlcpy_checked(rs->name, name, sizeof(rs->name));
	rs->dflt = dflt;
	rs->dflt_flags = dflt_flags;
	rs->err_action = RULE_DENY;
	/* created once: matching itself never allocates */
	rs->mdata = pcre2_match_data_create(1, NULL);
	mctx = pcre2_match_context_create(NULL);
	if (rs->mdata == NULL || mctx == NULL)
		fatal("out of memory");
	pcre2_set_match_limit(mctx, RULE_MATCH_LIMIT);
	pcre2_set_depth_limit(mctx, RULE_DEPTH_LIMIT);
	pcre2_set_heap_limit(mctx, RULE_HEAP_LIMIT);
	rs->mctx = mctx;
}

void
ruleset_free(struct ruleset *rs)
{
	for (unsigned i = 0; i < rs->nrules; i++) {
		free(rs->rules[i].pattern);
		pcre2_code_free(rs->rules[i].re);
	}
	free(rs->rules);
	pcre2_match_data_free(rs->mdata);
	pcre2_match_context_free(rs->mctx);
	memset(rs, 0, sizeof(*rs));
}

static pcre2_code *
regex_compile(const char *pat, size_t len, char *err, size_t errsz)
{
	pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
	pcre2_code *re;
	PCRE2_UCHAR msg[160];
	PCRE2_SIZE erroff;
	int code;

	if (cc == NULL)
		fatal("out of memory");
	pcre2_set_parens_nest_limit(cc, RULE_NEST_LIMIT);
	pcre2_set_max_pattern_length(cc, RULE_PATTERN_MAX);
	/* \C could split a UTF-8 character and fail in odd ways: refused */
	re = pcre2_compile((PCRE2_SPTR)pat, len,
	    PCRE2_CASELESS | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C, &code,
	    &erroff, cc);
	pcre2_compile_context_free(cc);
	if (re == NULL) {
		if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", code);
		snprintf(err, errsz, "regex: %s at offset %zu", (const char *)msg, (size_t)erroff);
		return NULL;
	}
	/* JIT when the platform has it; the interpreter is the fallback */
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	return re;
}

int
ruleset_add(struct ruleset *rs, enum rule_kind kind, const char *pattern, size_t len,
    enum rule_action action, unsigned flags, unsigned line, char *err, size_t errsz)
{
	struct rule *r;
	pcre2_code *re = NULL;

	if (rs->nrules >= RULESET_RULES_MAX) {
		snprintf(err, errsz, "too many rules in %s (at most %d)",
		    rs->name[0] ? rs->name : "ruleset", RULESET_RULES_MAX);
		return -1;
	}
	if ((unsigned)kind > RULE_REGEX || (unsigned)action > RULE_STRIP ||
	    (flags & ~(RULE_F_LOG | RULE_F_ALARM))) {
		snprintf(err, errsz, "invalid rule");
		return -1;
	}
	if (len == 0) {
		snprintf(err, errsz, "empty pattern");
		return -1;
	}
	if (len > RULE_PATTERN_MAX) {
		snprintf(err, errsz, "pattern longer than %d octets", RULE_PATTERN_MAX);
		return -1;
	}
	if (memchr(pattern, '\0', len)) {
		snprintf(err, errsz, "pattern holds a NUL");
		return -1;
	}
	if (kind == RULE_REGEX && (re = regex_compile(pattern, len, err, errsz)) == NULL)
		return -1;
	if (rs->nrules == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 8;
		rs->rules = xrealloc(rs->rules, rs->cap * sizeof(*rs->rules));
	}
	r = &rs->rules[rs->nrules++];
	r->kind = kind;
	r->action = action;
	r->flags = flags;
	r->line = line;
	r->pattern = xstrndup(pattern, len);
	r->len = len;
	r->re = re;
	return 0;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Next whitespace-separated word of line[*i..n). */
static bool
next_word(const char *line, size_t n, size_t *i, const char **w, size_t *wn)
{
	while (*i < n && is_space(line[*i]))
		(*i)++;
	if (*i >= n)
		return false;
	*w = line + *i;
	while (*i < n && !is_space(line[*i]))
		(*i)++;
	*wn = (size_t)(line + *i - *w);
	return true;
}

int
ruleset_add_line(struct ruleset *rs, const char *line, unsigned lineno, char *err,
    size_t errsz)
{
	size_t n = strlen(line), i = 0, wn;
	const char *w;
	enum rule_action action;
	enum rule_kind kind;
	unsigned flags = 0;

	while (n > 0 && (is_space(line[n - 1]) || line[n - 1] == '\r' || line[n - 1] == '\n'))
		n--;
	if (!next_word(line, n, &i, &w, &wn)) {
		snprintf(err, errsz, "empty rule (ACTION [log] [alarm] KIND PATTERN)");
		return -1;
	}
	if (rule_action_parse(w, wn, &action) < 0) {
		snprintf(err, errsz, "unknown action '%.*s' (allow, deny, drop, block, strip)",
		    (int)(wn > 40 ? 40 : wn), w);
		return -1;
	}
	for (;;) {
		if (!next_word(line, n, &i, &w, &wn)) {
			snprintf(err, errsz, "missing pattern kind (exact, pattern, regex)");
			return -1;
		}
		if (wn == 3 && strncasecmp(w, "log", 3) == 0) {
			flags |= RULE_F_LOG;
		} else if (wn == 5 && strncasecmp(w, "alarm", 5) == 0) {
			flags |= RULE_F_ALARM;
		} else if (kind_parse(w, wn, &kind) == 0) {
			break;
		} else {
			snprintf(err, errsz,
			    "unknown word '%.*s' (log, alarm, or a kind: exact, pattern, regex)",
			    (int)(wn > 40 ? 40 : wn), w);
			return -1;
		}
	}
	while (i < n && is_space(line[i]))
		i++;
	if (i >= n) {
		snprintf(err, errsz, "missing pattern after '%s'", rule_kind_name(kind));
		return -1;
	}
	return ruleset_add(rs, kind, line + i, n - i, action, flags, lineno, err, errsz);
}

size_t
rule_format(const struct rule *r, char *buf, size_t sz)
{
	int n = snprintf(buf, sz, "%s%s%s %s %s", rule_action_name(r->action),
	    r->flags & RULE_F_LOG ? " log" : "", r->flags & RULE_F_ALARM ? " alarm" : "",
	    rule_kind_name(r->kind), r->pattern);

	return n < 0 ? 0 : (size_t)n;
}

static unsigned char
lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Octets of the UTF-8 character at s (1 for anything that is not one). */
static size_t
u8len(const unsigned char *s, size_t n)
{
	size_t k = 1;

	if (s[0] >= 0xc0 && s[0] < 0xe0)
		k = 2;
	else if (s[0] >= 0xe0 && s[0] < 0xf0)
		k = 3;
	else if (s[0] >= 0xf0 && s[0] < 0xf8)
		k = 4;
	if (k > n)
		return 1;
	for (size_t i = 1; i < k; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 1;
	return k;
}

/* Whether any octet of p[0..n) is not ASCII. */
static bool
has_high(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] >= 0x80)
			return true;
	return false;
}

/*
 * The definition itself, for a pattern and an item that both hold
 * non-ASCII octets: reach[j] says whether the pattern read so far can
 * match item[0..j).  O(plen * n) steps, 2 * (RULE_SUBJECT_MAX + 1) octets
 * of state (a worker matches one item at a time).
 */
static bool
wildcard_reach(const unsigned char *p, size_t plen, const unsigned char *s, size_t n)
{
	static unsigned char a[RULE_SUBJECT_MAX + 1], b[RULE_SUBJECT_MAX + 1];
	unsigned char *cur = a, *nxt = b, *t;

	if (n > RULE_SUBJECT_MAX)
		return false;
	memset(cur, 0, n + 1);
	cur[0] = 1;
	for (size_t i = 0; i < plen; i++) {
		bool any = false;

		memset(nxt, 0, n + 1);
		for (size_t j = 0; j <= n; j++) {
			if (!cur[j])
				continue;
			if (p[i] == '*') {
				/* this position and every character boundary after it */
				for (size_t k = j; k <= n; k += k < n ? u8len(s + k, n - k) : 1)
					nxt[k] = 1;
			} else if (j < n && p[i] == '?') {
				nxt[j + u8len(s + j, n - j)] = 1;
			} else if (j < n && lower(p[i]) == lower(s[j])) {
				nxt[j + 1] = 1;
			}
		}
		for (size_t j = 0; j <= n && !any; j++)
			any = nxt[j] != 0;
		if (!any)
			return false;
		t = cur;
		cur = nxt;
		nxt = t;
	}
	return cur[n] != 0;
}

/*
 * '*' grows by whole characters, as '?' takes them: a '*' that could stop
 * inside a UTF-8 sequence would let '?' count its continuation octets as
 * characters ("*??" matching the one character U+20A9).  With an ASCII
 * pattern every position the walk reaches is a character boundary, and
 * the iterative walk with one backtrack point (the last '*': a later '*'
 * makes earlier ones irrelevant) is exact, O(plen * n) without a stack.
 * A pattern with non-ASCII octets can stop inside a character of the item
 * (a literal lead octet without its continuation), where that argument
 * fails: such a pattern against a non-ASCII item takes wildcard_reach.
 */
bool
rule_wildcard(const char *pat, size_t plen, const char *str, size_t n)
{
	const unsigned char *p = (const unsigned char *)pat, *s = (const unsigned char *)str;
	size_t pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0;

	if (has_high(p, plen) && has_high(s, n))
		return wildcard_reach(p, plen, s, n);

	while (si < n) {
		if (pi < plen && p[pi] == '*') {
			star_p = ++pi;
			star_s = si;
		} else if (pi < plen && p[pi] == '?') {
			pi++;
			si += u8len(s + si, n - si);
		} else if (pi < plen && lower(p[pi]) == lower(s[si])) {
			pi++;
			si++;
		} else if (star_p != SIZE_MAX) {
			pi = star_p;
			star_s += u8len(s + star_s, n - star_s);
			si = star_s;
		} else {
			return false;
		}
	}
	while (pi < plen && p[pi] == '*')
		pi++;
	return pi == plen;
}

struct rule_result
ruleset_match(const struct ruleset *rs, const char *item, size_t len)
{
	struct rule_result res = { NULL, rs->dflt, rs->dflt_flags, false };

	if (len > RULE_SUBJECT_MAX) {
		res.action = rs->err_action;
		res.flags = RULE_F_LOG;
		res.error = true;
		return res;
	}
	for (unsigned i = 0; i < rs->nrules; i++) {
		const struct rule *r = &rs->rules[i];
		bool hit = false;
		int rc;

		switch (r->kind) {
		case RULE_EXACT:
			hit = r->len == len && strncasecmp(r->pattern, item, len) == 0 &&
			    memchr(item, '\0', len) == NULL;
			break;
		case RULE_WILDCARD:
			hit = rule_wildcard(r->pattern, r->len, item, len);
			break;
		case RULE_REGEX:
			rc = pcre2_match(r->re, (PCRE2_SPTR)(len ? item : ""), len, 0, 0, rs->mdata,
			    rs->mctx);
			if (rc >= 0) {
				hit = true;
			} else if (rc != PCRE2_ERROR_NOMATCH) {
				/* a limit (or worse): never a silent pass */
				res.rule = r;
				res.action = rs->err_action;
				res.flags = r->flags | RULE_F_LOG;
				res.error = true;
				return res;
			}
			break;
		}
		if (hit) {
			res.rule = r;
			res.action = r->action;
			res.flags = r->flags;
			return res;
		}
	}
	return res;
}
