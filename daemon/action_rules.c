/*
 * action_rules - a proxy action's content-inspection settings (see
 * action_rules.h): parsing, rules-from resolution, the predefined
 * defaults, address rewrites and the dump in file syntax.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "action_rules.h"
#include "smtp_caps.h"
#include "template.h"
#include "util.h"

static const char *const kind_keys[AR_COUNT] = {
	[AR_GREETING] = "greeting",
	[AR_MAIL_FROM] = "mail-from",
	[AR_RCPT_TO] = "rcpt-to",
	[AR_HEADER] = "header",
	[AR_CONTENT_TYPE] = "content-type",
	[AR_FILENAME] = "filename",
};

static const char *const setting_keys[AS_COUNT] = {
	[AS_HIDE_BANNER] = "hide-banner",
	[AS_BANNER] = "banner",
	[AS_ESMTP] = "esmtp",
	[AS_AUTH_MECHS] = "auth-mechanisms",
	[AS_UNKNOWN_CMDS] = "unknown-commands",
	[AS_SOURCE_ROUTED] = "source-routed",
	[AS_LOCAL_8BIT] = "local-part-8bit",
	[AS_ENVELOPE_HEADERS] = "envelope-headers",
	[AS_ON_AMBIGUOUS] = "on-ambiguous",
	[AS_ON_UNOPENABLE] = "on-archive-unopenable",
	[AS_DENY_MESSAGE] = "deny-message",
	[AS_ANTIVIRUS] = "antivirus",
	[AS_AV_ON_VIRUS] = "av-on-virus",
	[AS_AV_ON_ERROR] = "av-on-error",
	[AS_AV_ON_UNAVAILABLE] = "av-on-unavailable",
	[AS_SPAM] = "spam",
	[AS_SPAM_REJECT_CODE] = "spam-reject-code",
	[AS_SPAM_ON_UNAVAILABLE] = "spam-on-unavailable",
	[AS_SPAM_REJECT_SCORE] = "spam-reject-score",
	[AS_SPAM_HEADER_SCORE] = "spam-header-score",
	[AS_QUARANTINE] = "quarantine",
};

static const char *const av_modes[] = { "off", "message", "attachments" };
static const char *const scan_fails[] = { "allow", "deny", "tempfail" };

const char *
av_mode_name(enum av_mode m)
{
	return (unsigned)m < ARRAY_SIZE(av_modes) ? av_modes[m] : "?";
}

const char *
scan_fail_name(enum scan_fail f)
{
	return (unsigned)f < ARRAY_SIZE(scan_fails) ? scan_fails[f] : "?";
}

/* The extensions an action may allow (STARTTLS is the TLS settings' business). */
static const struct {
	const char *kw;
	unsigned cap;
} esmtp_names[] = {
	{ "PIPELINING", CAP_PIPELINING },
	{ "SIZE", CAP_SIZE },
	{ "8BITMIME", CAP_8BITMIME },
	{ "SMTPUTF8", CAP_SMTPUTF8 },
	{ "ENHANCEDSTATUSCODES", CAP_ENHANCEDSTATUSCODES },
	{ "DSN", CAP_DSN },
	{ "CHUNKING", CAP_CHUNKING },
	{ "AUTH", CAP_AUTH },
};
#define ESMTP_ALL (CAP_PIPELINING | CAP_SIZE | CAP_8BITMIME | CAP_SMTPUTF8 | \
	CAP_ENHANCEDSTATUSCODES | CAP_DSN | CAP_CHUNKING | CAP_AUTH)

const char *
arules_kind_key(enum arules_kind k)
{
	return (unsigned)k < AR_COUNT ? kind_keys[k] : "?";
}

/* Settings an action starts with when nothing (not even rules-from) sets them. */
static void
scalar_defaults(struct action_rules *r)
{
	r->hide_banner = false;
	r->banner[0] = '\0';
	r->esmtp = ESMTP_ALL;
	r->auth_mechs[0] = '\0';
	r->unknown_allow = false;
	r->source_routed_allow = false;
	r->local_8bit_allow = true;
	r->envelope_headers = false;
	r->on_ambiguous = RULE_DENY;
	r->on_ambiguous_flags = RULE_F_LOG;
	r->on_unopenable = RULE_ALLOW;
	r->on_unopenable_flags = RULE_F_LOG;
	r->deny_message[0] = '\0';
	/* an action that sets nothing scans nothing (the predefined ones do) */
	r->antivirus = AV_OFF;
	r->av_on_virus = RULE_DENY;
	r->av_on_error = SCAN_FAIL_ALLOW;
	r->av_on_unavailable = SCAN_FAIL_TEMPFAIL;
	r->spam = false;
	snprintf(r->spam_reject_code, sizeof(r->spam_reject_code), "554 5.7.1");
	r->spam_on_unavailable = SCAN_FAIL_ALLOW;
	r->spam_reject_score = ARULES_SCORE_RSPAMD;
	r->spam_header_score = ARULES_SCORE_RSPAMD;
	r->quarantine = true;
}

struct action_rules *
arules_new(void)
{
	struct action_rules *r = xcalloc(1, sizeof(*r));

	for (int k = 0; k < AR_COUNT; k++)
		ruleset_init(&r->own[k], kind_keys[k], RULE_ALLOW, 0);
	scalar_defaults(r);
	return r;
}

static void
rewrite_free(struct arules_rewrite *w)
{
	free(w->pattern);
	free(w->replacement);
	free(w->subst);
	pcre2_code_free(w->re);
	memset(w, 0, sizeof(*w));
}

void
arules_free(struct action_rules *r)
{
	if (r == NULL)
		return;
	for (int k = 0; k < AR_COUNT; k++)
		ruleset_free(&r->own[k]);
	for (int i = 0; i < 2; i++)
		for (unsigned j = 0; j < r->nrewrites[i]; j++)
			rewrite_free(&r->rewrites[i][j]);
	free(r);
}

/* "ACTION [log] [alarm]" */
static int
parse_action_flags(const char *v, enum rule_action *a, unsigned *flags, bool allow_strip,
    char *err, size_t errsz)
{
	char buf[128];
	char *save = NULL, *w;
	int n = 0;

	if (strlen(v) >= sizeof(buf)) {
		snprintf(err, errsz, "expected ACTION [log] [alarm]");
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", v);
	*flags = 0;
	for (w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save), n++) {
		if (n == 0) {
			if (rule_action_parse(w, strlen(w), a) < 0) {
				snprintf(err, errsz,
				    "unknown action \"%.40s\" (allow, deny, drop, block%s)", w,
				    allow_strip ? ", strip" : "");
				return -1;
			}
			if (*a == RULE_STRIP && !allow_strip) {
				snprintf(err, errsz, "strip is not possible here (allow, deny, drop, block)");
				return -1;
			}
		} else if (!strcasecmp(w, "log")) {
			*flags |= RULE_F_LOG;
		} else if (!strcasecmp(w, "alarm")) {
			*flags |= RULE_F_ALARM;
		} else {
			snprintf(err, errsz, "unknown word \"%.40s\" (expected log or alarm)", w);
			return -1;
		}
	}
	if (n == 0) {
		snprintf(err, errsz, "expected ACTION [log] [alarm]");
		return -1;
	}
	return 0;
}

/* Which actions make sense for a kind: strip only where something can be removed. */
static bool
kind_strippable(enum arules_kind k)
{
	return k == AR_HEADER || k == AR_CONTENT_TYPE || k == AR_FILENAME;
}

static int
parse_bool_word(const char *v, bool *out, const char *yes, const char *no, char *err,
    size_t errsz)
{
	if (!strcmp(v, yes)) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, no)) {
		*out = false;
		return 0;
	}
	snprintf(err, errsz, "expected %s or %s, got \"%.40s\"", yes, no, v);
	return -1;
}

static bool
printable_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 32 || (unsigned char)*s > 126)
			return false;
	return true;
}

/* A wildcard as an anchored regex, each '*' / '?' a capture group. */
static int
wildcard_regex(const char *pat, char *out, size_t outsz)
{
	size_t o = 0;

#define PUT(s) do { size_t _l = strlen(s); if (o + _l >= outsz) return -1; \
	memcpy(out + o, s, _l); o += _l; } while (0)
	PUT("^");
	for (const char *p = pat; *p; p++) {
		char one[3] = { '\\', *p, '\0' };
		if (*p == '*')
			PUT("(.*)");
		else if (*p == '?')
			PUT("(.)");
		else if (strchr("\\^$.|()[]{}+", *p))
			PUT(one);
		else
			PUT(one + 1);
	}
	PUT("$");
#undef PUT
	out[o] = '\0';
	return 0;
}

/* The replacement of a wildcard rewrite: the n-th '*' or '?' is capture n. */
static int
wildcard_subst(const char *rep, char *out, size_t outsz)
{
	size_t o = 0;
	int n = 0;

	for (const char *p = rep; *p; p++) {
		char tmp[16];
		const char *s = tmp;

		if (*p == '*' || *p == '?')
			snprintf(tmp, sizeof(tmp), "${%d}", ++n);
		else if (*p == '$')
			s = "$$";
		else
			tmp[0] = *p, tmp[1] = '\0';
		size_t l = strlen(s);
		if (o + l >= outsz)
			return -1;
		memcpy(out + o, s, l);
		o += l;
	}
	out[o] = '\0';
	return 0;
}

/* "KIND PATTERN => REPLACEMENT" */
static int
parse_rewrite(struct action_rules *r, int which, const char *v, unsigned line, char *err,
    size_t errsz)
{
	const char *sp = strpbrk(v, " \t"), *arrow = strstr(v, " => ");
	struct arules_rewrite *w;
	char kindw[16], pat[RULE_PATTERN_MAX + 1], rep[RULE_PATTERN_MAX + 1];
	char re[2 * RULE_PATTERN_MAX + 8], sub[4 * RULE_PATTERN_MAX + 8];
	enum rule_kind kind;

	if (sp == NULL || arrow == NULL || arrow < sp || (size_t)(sp - v) >= sizeof(kindw)) {
		snprintf(err, errsz, "expected KIND PATTERN => REPLACEMENT");
		return -1;
	}
	snprintf(kindw, sizeof(kindw), "%.*s", (int)(sp - v), v);
	if (!strcasecmp(kindw, "exact"))
		kind = RULE_EXACT;
	else if (!strcasecmp(kindw, "pattern"))
		kind = RULE_WILDCARD;
	else if (!strcasecmp(kindw, "regex"))
		kind = RULE_REGEX;
	else {
		snprintf(err, errsz, "unknown kind \"%.20s\" (exact, pattern, regex)", kindw);
		return -1;
	}
	while (*sp == ' ' || *sp == '\t')
		sp++;
	if (arrow <= sp || (size_t)(arrow - sp) > RULE_PATTERN_MAX ||
	    strlen(arrow + 4) > RULE_PATTERN_MAX) {
		snprintf(err, errsz, "expected KIND PATTERN => REPLACEMENT (each at most %d octets)",
		    RULE_PATTERN_MAX);
		return -1;
	}
	snprintf(pat, sizeof(pat), "%.*s", (int)(arrow - sp), sp);
	snprintf(rep, sizeof(rep), "%s", arrow + 4);
	if (!printable_ascii(rep) || strpbrk(rep, "<> ") || rep[0] == '\0') {
		snprintf(err, errsz, "replacement must be a non-empty address without spaces or <>");
		return -1;
	}
	r->rewrites_set[which] = true;
	if (r->nrewrites[which] == ARULES_REWRITES_MAX) {
		snprintf(err, errsz, "more than %d rewrites", ARULES_REWRITES_MAX);
		return -1;
	}
	switch (kind) {
	case RULE_EXACT: {
		/* the whole address, every character literal; the replacement too */
		size_t o = 0;
		re[o++] = '^';
		for (const char *p = pat; *p; p++) {
			if (o + 4 >= sizeof(re))
				goto toolong;
			if (strchr("\\^$.|()[]{}+*?", *p))
				re[o++] = '\\';
			re[o++] = *p;
		}
		re[o++] = '$';
		re[o] = '\0';
		snprintf(sub, sizeof(sub), "%s", rep);
		break;
	}
	case RULE_WILDCARD:
		if (wildcard_regex(pat, re, sizeof(re)) < 0 || wildcard_subst(rep, sub, sizeof(sub)) < 0)
			goto toolong;
		break;
	case RULE_REGEX:
		snprintf(re, sizeof(re), "%s", pat);
		snprintf(sub, sizeof(sub), "%s", rep);
		break;
	}
	int code;
	PCRE2_SIZE erroff;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
	    PCRE2_CASELESS | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C, &code,
	    &erroff, NULL);
	if (c == NULL) {
		PCRE2_UCHAR msg[160];
		if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", code);
		snprintf(err, errsz, "regex: %s at offset %zu", (const char *)msg, (size_t)erroff);
		return -1;
	}
	w = &r->rewrites[which][r->nrewrites[which]++];
	w->kind = kind;
	w->pattern = xstrdup(pat);
	w->replacement = xstrdup(rep);
	w->re = c;
	w->subst = xstrdup(sub);
	w->line = line;
	return 0;
toolong:
	snprintf(err, errsz, "rewrite too long");
	return -1;
}

static int
parse_esmtp(struct action_rules *r, const char *v, char *err, size_t errsz)
{
	char buf[512];
	char *save = NULL;
	unsigned caps = 0;

	if (strlen(v) >= sizeof(buf)) {
		snprintf(err, errsz, "too long");
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", v);
	if (strcmp(buf, "none") != 0) {
		for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
			size_t i;
			for (i = 0; i < ARRAY_SIZE(esmtp_names); i++)
				if (!strcasecmp(w, esmtp_names[i].kw))
					break;
			if (i == ARRAY_SIZE(esmtp_names)) {
				snprintf(err, errsz,
				    "unknown ESMTP extension \"%.30s\" (PIPELINING SIZE 8BITMIME SMTPUTF8 "
				    "ENHANCEDSTATUSCODES DSN CHUNKING AUTH, or none)", w);
				return -1;
			}
			caps |= esmtp_names[i].cap;
		}
	}
	r->esmtp = caps;
	return 0;
}

static int
parse_auth_mechs(struct action_rules *r, const char *v, char *err, size_t errsz)
{
	size_t o = 0;

	if (!strcmp(v, "any")) {
		r->auth_mechs[0] = '\0';
		return 0;
	}
	for (const char *p = v; *p; p++) {
		char c = *p;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == ' ')) {
			snprintf(err, errsz, "mechanism names are letters, digits, - and _ (or any)");
			return -1;
		}
		if (o + 1 >= sizeof(r->auth_mechs)) {
			snprintf(err, errsz, "too long");
			return -1;
		}
		r->auth_mechs[o++] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
	}
	r->auth_mechs[o] = '\0';
	if (o == 0) {
		snprintf(err, errsz, "expected mechanism names or any");
		return -1;
	}
	return 0;
}

/* One word of a fixed list (words[i] is value i); first n of them allowed. */
static int
parse_word(const char *v, const char *const *words, size_t n, int *out, char *err,
    size_t errsz)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (!strcmp(v, words[i])) {
			*out = (int)i;
			return 0;
		}
	}
	o += (size_t)snprintf(err, errsz, "expected ");
	for (size_t i = 0; i < n && o < errsz; i++)
		o += (size_t)snprintf(err + o, errsz - o, "%s%s", words[i],
		    i + 2 < n ? ", " : i + 1 < n ? " or " : "");
	if (o < errsz)
		snprintf(err + o, errsz - o, ", got \"%.40s\"", v);
	return -1;
}

/* av-on-error: allow, deny, tempfail; av-on-unavailable and spam-on-unavailable: allow, tempfail. */
static int
parse_scan_fail(const char *v, bool deny_ok, enum scan_fail *out, char *err, size_t errsz)
{
	static const char *const two[] = { "allow", "tempfail" };
	int i = 0;

	if (deny_ok) {
		if (parse_word(v, scan_fails, ARRAY_SIZE(scan_fails), &i, err, errsz) < 0)
			return -1;
		*out = (enum scan_fail)i;
		return 0;
	}
	if (parse_word(v, two, ARRAY_SIZE(two), &i, err, errsz) < 0)
		return -1;
	*out = i == 0 ? SCAN_FAIL_ALLOW : SCAN_FAIL_TEMPFAIL;
	return 0;
}

/*
 * spam-reject-code: a permanent reply code, optionally with its enhanced
 * status code ("550", "554 5.7.1"): 5xx, and 5.x.y with x, y of 1..3 digits.
 */
static int
parse_reply_code(struct action_rules *r, const char *v, char *err, size_t errsz)
{
	const char *p = v;
	int dots = 0, digits = 0;

	if (!(p[0] == '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9'))
		goto bad;
	p += 3;
	if (*p == ' ') {
		if (p[1] != '5' || p[2] != '.')
			goto bad;
		dots = 1; /* "5." */
		for (p += 3; *p; p++) {
			if (*p == '.') {
				if (digits == 0 || ++dots > 2)
					goto bad;
				digits = 0;
			} else if (*p >= '0' && *p <= '9' && ++digits <= 3) {
				continue;
			} else {
				goto bad;
			}
		}
		if (dots != 2 || digits == 0)
			goto bad;
	} else if (*p != '\0') {
		goto bad;
	}
	snprintf(r->spam_reject_code, sizeof(r->spam_reject_code), "%s", v);
	return 0;
bad:
	snprintf(err, errsz, "expected a 5xx reply code, optionally with its enhanced code "
	    "(554 or 554 5.7.1), got \"%.40s\"", v);
	return -1;
}

/* A spam score threshold: "rspamd" (its own action decides) or a number 0..10000. */
static int
parse_score(const char *v, double *out, char *err, size_t errsz)
{
	char *end;
	double d;

	if (!strcmp(v, "rspamd")) {
		*out = ARULES_SCORE_RSPAMD;
		return 0;
	}
	if (!((v[0] >= '0' && v[0] <= '9') || v[0] == '.'))
		goto bad;
	d = strtod(v, &end);
	if (*end != '\0' || !(d >= 0.0 && d <= ARULES_SCORE_MAX))
		goto bad;
	*out = d;
	return 0;
bad:
	snprintf(err, errsz, "expected rspamd or a score of 0 to %.0f, got \"%.40s\"",
	    ARULES_SCORE_MAX, v);
	return -1;
}

/* deny-message: one line in the file; "\n" starts a new line, "\\" is a backslash. */
static int
parse_deny_message(struct action_rules *r, const char *v, char *err, size_t errsz)
{
	size_t o = 0;

	for (const char *p = v; *p; p++) {
		char c = *p;
		if (c == '\\' && p[1] == 'n')
			c = '\n', p++;
		else if (c == '\\' && p[1] == '\\')
			p++;
		if (o + 1 >= sizeof(r->deny_message)) {
			snprintf(err, errsz, "longer than %d octets", ARULES_DENY_MAX - 1);
			return -1;
		}
		r->deny_message[o++] = c;
	}
	r->deny_message[o] = '\0';
	return tpl_check(r->deny_message, o, err, errsz);
}

int
arules_kv(struct action_rules *r, const char *key, const char *v, unsigned line, char *err,
    size_t errsz)
{
	for (int k = 0; k < AR_COUNT; k++) {
		size_t kl = strlen(kind_keys[k]);

		if (strncmp(key, kind_keys[k], kl) != 0)
			continue;
		if (!strcmp(key + kl, "-rule")) {
			char e[300];
			r->defined[k] = true;
			if (ruleset_add_line(&r->own[k], v, line, e, sizeof(e)) < 0) {
				snprintf(err, errsz, "%s: %s", key, e);
				return -1;
			}
			if (r->own[k].rules[r->own[k].nrules - 1].action == RULE_STRIP &&
			    !kind_strippable((enum arules_kind)k)) {
				snprintf(err, errsz, "%s: strip is only possible for headers and "
				    "attachments", key);
				return -1;
			}
			return 1;
		}
		if (!strcmp(key + kl, "-default")) {
			char e[200];
			enum rule_action a;
			unsigned flags;
			if (parse_action_flags(v, &a, &flags, kind_strippable((enum arules_kind)k), e,
			    sizeof(e)) < 0) {
				snprintf(err, errsz, "%s: %s", key, e);
				return -1;
			}
			r->defined[k] = true;
			r->own[k].dflt = a;
			r->own[k].dflt_flags = flags;
			return 1;
		}
		if (!strcmp(key + kl, "-rewrite") && (k == AR_MAIL_FROM || k == AR_RCPT_TO)) {
			char e[300];
			if (parse_rewrite(r, k == AR_MAIL_FROM ? 0 : 1, v, line, e, sizeof(e)) < 0) {
				snprintf(err, errsz, "%s: %s", key, e);
				return -1;
			}
			return 1;
		}
	}
	if (!strcmp(key, "rules-from")) {
		if (strlen(v) >= sizeof(r->rules_from) || v[0] == '\0') {
			snprintf(err, errsz, "rules-from: expected a proxy action name");
			return -1;
		}
		snprintf(r->rules_from, sizeof(r->rules_from), "%s", v);
		return 1;
	}
	for (int s = 0; s < AS_COUNT; s++) {
		char e[300];
		int rc = 0;

		if (strcmp(key, setting_keys[s]) != 0)
			continue;
		e[0] = '\0';
		switch ((enum arules_setting)s) {
		case AS_HIDE_BANNER:
			rc = parse_bool_word(v, &r->hide_banner, "yes", "no", e, sizeof(e));
			break;
		case AS_BANNER:
			if (strlen(v) >= sizeof(r->banner) || !printable_ascii(v)) {
				snprintf(e, sizeof(e), "printable ASCII, at most %d octets",
				    ARULES_BANNER_MAX - 1);
				rc = -1;
			} else {
				snprintf(r->banner, sizeof(r->banner), "%s", v);
			}
			break;
		case AS_ESMTP:
			rc = parse_esmtp(r, v, e, sizeof(e));
			break;
		case AS_AUTH_MECHS:
			rc = parse_auth_mechs(r, v, e, sizeof(e));
			break;
		case AS_UNKNOWN_CMDS:
			rc = parse_bool_word(v, &r->unknown_allow, "allow", "deny", e, sizeof(e));
			break;
		case AS_SOURCE_ROUTED:
			rc = parse_bool_word(v, &r->source_routed_allow, "allow", "deny", e, sizeof(e));
			break;
		case AS_LOCAL_8BIT:
			rc = parse_bool_word(v, &r->local_8bit_allow, "allow", "deny", e, sizeof(e));
			break;
		case AS_ENVELOPE_HEADERS:
			rc = parse_bool_word(v, &r->envelope_headers, "yes", "no", e, sizeof(e));
			break;
		case AS_ON_AMBIGUOUS:
			rc = parse_action_flags(v, &r->on_ambiguous, &r->on_ambiguous_flags, false, e,
			    sizeof(e));
			break;
		case AS_ON_UNOPENABLE:
			rc = parse_action_flags(v, &r->on_unopenable, &r->on_unopenable_flags, true, e,
			    sizeof(e));
			break;
		case AS_DENY_MESSAGE:
			rc = parse_deny_message(r, v, e, sizeof(e));
			break;
		case AS_ANTIVIRUS: {
			int m = 0;
			rc = parse_word(v, av_modes, ARRAY_SIZE(av_modes), &m, e, sizeof(e));
			if (rc == 0)
				r->antivirus = (enum av_mode)m;
			break;
		}
		case AS_AV_ON_VIRUS: {
			static const char *const acts[] = { "deny", "strip", "drop", "block" };
			static const enum rule_action map[] = { RULE_DENY, RULE_STRIP, RULE_DROP,
			    RULE_BLOCK };
			int m = 0;
			rc = parse_word(v, acts, ARRAY_SIZE(acts), &m, e, sizeof(e));
			if (rc == 0)
				r->av_on_virus = map[m];
			break;
		}
		case AS_AV_ON_ERROR:
			rc = parse_scan_fail(v, true, &r->av_on_error, e, sizeof(e));
			break;
		case AS_AV_ON_UNAVAILABLE:
			rc = parse_scan_fail(v, false, &r->av_on_unavailable, e, sizeof(e));
			break;
		case AS_SPAM:
			rc = parse_bool_word(v, &r->spam, "on", "off", e, sizeof(e));
			break;
		case AS_SPAM_REJECT_CODE:
			rc = parse_reply_code(r, v, e, sizeof(e));
			break;
		case AS_SPAM_ON_UNAVAILABLE:
			rc = parse_scan_fail(v, false, &r->spam_on_unavailable, e, sizeof(e));
			break;
		case AS_SPAM_REJECT_SCORE:
			rc = parse_score(v, &r->spam_reject_score, e, sizeof(e));
			break;
		case AS_SPAM_HEADER_SCORE:
			rc = parse_score(v, &r->spam_header_score, e, sizeof(e));
			break;
		case AS_QUARANTINE:
			rc = parse_bool_word(v, &r->quarantine, "yes", "no", e, sizeof(e));
			break;
		case AS_COUNT:
			break;
		}
		if (rc < 0) {
			snprintf(err, errsz, "%s: %s", key, e);
			return -1;
		}
		r->set_mask |= 1u << s;
		return 1;
	}
	return 0;
}

static void
copy_setting(struct action_rules *r, const struct action_rules *f, enum arules_setting s)
{
	switch (s) {
	case AS_HIDE_BANNER: r->hide_banner = f->hide_banner; break;
	case AS_BANNER: memcpy(r->banner, f->banner, sizeof(r->banner)); break;
	case AS_ESMTP: r->esmtp = f->esmtp; break;
	case AS_AUTH_MECHS: memcpy(r->auth_mechs, f->auth_mechs, sizeof(r->auth_mechs)); break;
	case AS_UNKNOWN_CMDS: r->unknown_allow = f->unknown_allow; break;
	case AS_SOURCE_ROUTED: r->source_routed_allow = f->source_routed_allow; break;
	case AS_LOCAL_8BIT: r->local_8bit_allow = f->local_8bit_allow; break;
	case AS_ENVELOPE_HEADERS: r->envelope_headers = f->envelope_headers; break;
	case AS_ON_AMBIGUOUS:
		r->on_ambiguous = f->on_ambiguous;
		r->on_ambiguous_flags = f->on_ambiguous_flags;
		break;
	case AS_ON_UNOPENABLE:
		r->on_unopenable = f->on_unopenable;
		r->on_unopenable_flags = f->on_unopenable_flags;
		break;
	case AS_DENY_MESSAGE:
		memcpy(r->deny_message, f->deny_message, sizeof(r->deny_message));
		break;
	case AS_ANTIVIRUS: r->antivirus = f->antivirus; break;
	case AS_AV_ON_VIRUS: r->av_on_virus = f->av_on_virus; break;
	case AS_AV_ON_ERROR: r->av_on_error = f->av_on_error; break;
	case AS_AV_ON_UNAVAILABLE: r->av_on_unavailable = f->av_on_unavailable; break;
	case AS_SPAM: r->spam = f->spam; break;
	case AS_SPAM_REJECT_CODE:
		memcpy(r->spam_reject_code, f->spam_reject_code, sizeof(r->spam_reject_code));
		break;
	case AS_SPAM_ON_UNAVAILABLE: r->spam_on_unavailable = f->spam_on_unavailable; break;
	case AS_SPAM_REJECT_SCORE: r->spam_reject_score = f->spam_reject_score; break;
	case AS_SPAM_HEADER_SCORE: r->spam_header_score = f->spam_header_score; break;
	case AS_QUARANTINE: r->quarantine = f->quarantine; break;
	case AS_COUNT:
		break;
	}
}

static void
dump_score(FILE *f, double d)
{
	if (d < 0)
		fputs("rspamd", f);
	else
		fprintf(f, "%g", d);
}

void
arules_resolve(struct action_rules *r, const struct action_rules *from)
{
	for (int k = 0; k < AR_COUNT; k++)
		r->rs[k] = r->defined[k] || from == NULL ? &r->own[k] : from->rs[k];
	for (int i = 0; i < 2; i++) {
		if (r->rewrites_set[i] || from == NULL) {
			r->rw[i] = r->rewrites[i];
			r->nrw[i] = r->nrewrites[i];
		} else {
			r->rw[i] = from->rw[i];
			r->nrw[i] = from->nrw[i];
		}
	}
	if (from)
		for (int s = 0; s < AS_COUNT; s++)
			if (!(r->set_mask & (1u << s)))
				copy_setting(r, from, (enum arules_setting)s);
}

const struct ruleset *
arules_rs(const struct action_rules *r, enum arules_kind k)
{
	return r->rs[k] ? r->rs[k] : &r->own[k];
}

int
arules_rewrite(const struct action_rules *r, int which, const char *addr, char *out,
    size_t outsz, unsigned *line)
{
	for (unsigned i = 0; i < r->nrw[which]; i++) {
		const struct arules_rewrite *w = &r->rw[which][i];
		pcre2_match_data *md = pcre2_match_data_create_from_pattern(w->re, NULL);
		PCRE2_SIZE olen = outsz;
		int rc;

		if (md == NULL)
			fatal("out of memory");
		rc = pcre2_match(w->re, (PCRE2_SPTR)addr, strlen(addr), 0, 0, md, NULL);
		if (rc < 0) {
			pcre2_match_data_free(md);
			continue;
		}
		rc = pcre2_substitute(w->re, (PCRE2_SPTR)addr, strlen(addr), 0,
		    PCRE2_SUBSTITUTE_MATCHED | (w->kind == RULE_EXACT ? PCRE2_SUBSTITUTE_LITERAL : 0),
		    md, NULL, (PCRE2_SPTR)w->subst, PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)out,
		    &olen);
		pcre2_match_data_free(md);
		if (rc < 0)
			return -1;
		if (line)
			*line = w->line;
		return 1;
	}
	return 0;
}

bool
arules_source_routed(const char *path, bool had_route)
{
	const char *at = strrchr(path, '@');

	if (had_route)
		return true;
	if (at == NULL)
		return false;
	/* the local part only: a quoted local part may hold anything, it still routes */
	for (const char *p = path; p < at; p++)
		if (*p == '%' || *p == '!')
			return true;
	return false;
}

bool
arules_local_8bit(const char *path)
{
	const char *at = strrchr(path, '@');

	for (const char *p = path; *p && (at == NULL || p < at); p++)
		if ((unsigned char)*p >= 0x80)
			return true;
	return false;
}

/* ------------------------------------------------------------ dump */

static void
dump_flags(FILE *f, unsigned flags)
{
	if (flags & RULE_F_LOG)
		fputs(" log", f);
	if (flags & RULE_F_ALARM)
		fputs(" alarm", f);
}

void
arules_dump(const struct action_rules *r, void *file)
{
	FILE *f = file;

	if (r->rules_from[0])
		fprintf(f, "rules-from = %s\n", r->rules_from);
	for (int s = 0; s < AS_COUNT; s++) {
		if (!(r->set_mask & (1u << s)))
			continue;
		/*
		 * An empty text is the default and cannot be written ("key =" with
		 * no value is an error): leave it out, so that what is dumped --
		 * and what smtpgwctl clones from it -- always reads back.
		 */
		if ((s == AS_BANNER && r->banner[0] == '\0') ||
		    (s == AS_DENY_MESSAGE && r->deny_message[0] == '\0'))
			continue;
		fprintf(f, "%s = ", setting_keys[s]);
		switch ((enum arules_setting)s) {
		case AS_HIDE_BANNER: fputs(r->hide_banner ? "yes" : "no", f); break;
		case AS_BANNER: fputs(r->banner, f); break;
		case AS_ESMTP: {
			int n = 0;
			for (size_t i = 0; i < ARRAY_SIZE(esmtp_names); i++)
				if (r->esmtp & esmtp_names[i].cap)
					fprintf(f, "%s%s", n++ ? " " : "", esmtp_names[i].kw);
			if (n == 0)
				fputs("none", f);
			break;
		}
		case AS_AUTH_MECHS: fputs(r->auth_mechs[0] ? r->auth_mechs : "any", f); break;
		case AS_UNKNOWN_CMDS: fputs(r->unknown_allow ? "allow" : "deny", f); break;
		case AS_SOURCE_ROUTED: fputs(r->source_routed_allow ? "allow" : "deny", f); break;
		case AS_LOCAL_8BIT: fputs(r->local_8bit_allow ? "allow" : "deny", f); break;
		case AS_ENVELOPE_HEADERS: fputs(r->envelope_headers ? "yes" : "no", f); break;
		case AS_ON_AMBIGUOUS:
			fputs(rule_action_name(r->on_ambiguous), f);
			dump_flags(f, r->on_ambiguous_flags);
			break;
		case AS_ON_UNOPENABLE:
			fputs(rule_action_name(r->on_unopenable), f);
			dump_flags(f, r->on_unopenable_flags);
			break;
		case AS_DENY_MESSAGE:
			for (const char *p = r->deny_message; *p; p++) {
				if (*p == '\n')
					fputs("\\n", f);
				else if (*p == '\\')
					fputs("\\\\", f);
				else
					fputc(*p, f);
			}
			break;
		case AS_ANTIVIRUS: fputs(av_mode_name(r->antivirus), f); break;
		case AS_AV_ON_VIRUS: fputs(rule_action_name(r->av_on_virus), f); break;
		case AS_AV_ON_ERROR: fputs(scan_fail_name(r->av_on_error), f); break;
		case AS_AV_ON_UNAVAILABLE: fputs(scan_fail_name(r->av_on_unavailable), f); break;
		case AS_SPAM: fputs(r->spam ? "on" : "off", f); break;
		case AS_SPAM_REJECT_CODE: fputs(r->spam_reject_code, f); break;
		case AS_SPAM_ON_UNAVAILABLE: fputs(scan_fail_name(r->spam_on_unavailable), f); break;
		case AS_SPAM_REJECT_SCORE: dump_score(f, r->spam_reject_score); break;
		case AS_SPAM_HEADER_SCORE: dump_score(f, r->spam_header_score); break;
		case AS_QUARANTINE: fputs(r->quarantine ? "yes" : "no", f); break;
		case AS_COUNT:
			break;
		}
		fputc('\n', f);
	}
	for (int k = 0; k < AR_COUNT; k++) {
		const struct ruleset *rs = &r->own[k];
		char line[RULE_PATTERN_MAX + 64];

		if (!r->defined[k])
			continue;
		fprintf(f, "%s-default = %s", kind_keys[k], rule_action_name(rs->dflt));
		dump_flags(f, rs->dflt_flags);
		fputc('\n', f);
		for (unsigned i = 0; i < rs->nrules; i++) {
			rule_format(&rs->rules[i], line, sizeof(line));
			fprintf(f, "%s-rule = %s\n", kind_keys[k], line);
		}
	}
	for (int i = 0; i < 2; i++)
		for (unsigned j = 0; j < r->nrewrites[i]; j++)
			fprintf(f, "%s-rewrite = %s %s => %s\n", i == 0 ? "mail-from" : "rcpt-to",
			    rule_kind_name(r->rewrites[i][j].kind), r->rewrites[i][j].pattern,
			    r->rewrites[i][j].replacement);
}

/* ------------------------------------------------------ predefined */

/*
 * What an experienced admin expects out of the box.  Inbound: mail from
 * anyone on the Internet to the internal server -- executables are
 * stripped by name and by content, source routes refused, ambiguous MIME
 * refused (it is how filters are bypassed), unopenable archives refused
 * (nothing inside can be checked), and the internal server's banner is
 * hidden.  Outbound: the organisation's own users -- source routes are
 * refused (never legitimate), the rest is logged rather than stripped.
 * Both directions: every message goes to clamd whole (clamd's own MIME
 * and archive parsers, the widest net), a virus is refused with the deny
 * message, a scanner that is down makes the sender retry (451), one that
 * cannot scan a message (too large, encrypted) lets it pass with a log
 * line.  Inbound only: rspamd's spam verdict (outbound, the users' own
 * mail would be judged by inbound thresholds and heuristics: an admin
 * turns it on knowingly).
 */
static const char *const exec_names[] = {
	"*.exe", "*.com", "*.scr", "*.pif", "*.bat", "*.cmd", "*.vbs", "*.vbe", "*.js", "*.jse",
	"*.wsf", "*.wsh", "*.wsc", "*.hta", "*.msi", "*.msp", "*.lnk", "*.cpl", "*.jar",
	"*.ps1", "*.psm1", "*.reg", "*.scf", "*.inf", "*.application", "*.gadget", "*.dll",
};
static const char *const exec_types[] = {
	"application/x-dosexec", "application/x-msdownload", "application/x-ms-dos-executable",
	"application/vnd.microsoft.portable-executable", "application/x-executable",
	"application/x-msi", "application/x-ms-installer", "application/x-ms-shortcut",
	"application/hta", "application/x-bat", "text/x-msdos-batch", "application/java-archive",
};

static void
add_or_die(struct action_rules *r, enum arules_kind k, const char *line)
{
	char err[300];

	r->defined[k] = true;
	if (ruleset_add_line(&r->own[k], line, 0, err, sizeof(err)) < 0)
		fatal("predefined rule \"%s\": %s", line, err);
}

static struct action_rules *
build_predefined(bool inbound)
{
	struct action_rules *r = arules_new();
	char line[200];

	for (int k = 0; k < AR_COUNT; k++)
		r->defined[k] = true;
	for (size_t i = 0; i < ARRAY_SIZE(exec_names); i++) {
		snprintf(line, sizeof(line), "%s pattern %s", inbound ? "strip log" : "allow log",
		    exec_names[i]);
		add_or_die(r, AR_FILENAME, line);
	}
	for (size_t i = 0; i < ARRAY_SIZE(exec_types); i++) {
		snprintf(line, sizeof(line), "%s exact %s", inbound ? "strip log" : "allow log",
		    exec_types[i]);
		add_or_die(r, AR_CONTENT_TYPE, line);
	}
	r->source_routed_allow = false;
	r->local_8bit_allow = true;
	r->hide_banner = inbound;
	r->on_ambiguous = inbound ? RULE_DENY : RULE_ALLOW;
	r->on_ambiguous_flags = RULE_F_LOG;
	r->on_unopenable = inbound ? RULE_DENY : RULE_ALLOW;
	r->on_unopenable_flags = RULE_F_LOG;
	r->antivirus = AV_MESSAGE;
	r->av_on_virus = RULE_DENY;
	r->av_on_error = SCAN_FAIL_ALLOW;
	r->av_on_unavailable = SCAN_FAIL_TEMPFAIL;
	r->spam = inbound;
	r->spam_on_unavailable = SCAN_FAIL_ALLOW;
	r->quarantine = true;
	r->set_mask = (1u << AS_COUNT) - 1;
	arules_resolve(r, NULL);
	return r;
}

const struct action_rules *
arules_predefined(bool inbound)
{
	static struct action_rules *in, *out;

	if (inbound) {
		if (in == NULL)
			in = build_predefined(true);
		return in;
	}
	if (out == NULL)
		out = build_predefined(false);
	return out;
}
