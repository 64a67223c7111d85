/*
 * scanpolicy - the scanners' answers under an action's settings (see
 * scanpolicy.h).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "scanpolicy.h"
#include "util.h"

#define LINE_MAX_OCTETS 998 /* RFC 5322, without CRLF */

static const char *const action_names[] = {
	[SP_PASS] = "pass", [SP_MARK] = "mark", [SP_STRIP] = "strip", [SP_TEMPFAIL] = "tempfail",
	[SP_DENY] = "deny", [SP_DROP] = "drop", [SP_BLOCK] = "block",
};

const char *
sp_action_name(enum sp_action a)
{
	return (unsigned)a < ARRAY_SIZE(action_names) ? action_names[a] : "?";
}

enum sp_action
scanpolicy_worse(enum sp_action a, enum sp_action b)
{
	return a > b ? a : b;
}

static enum sp_action
fail_action(enum scan_fail f)
{
	switch (f) {
	case SCAN_FAIL_ALLOW: return SP_PASS;
	case SCAN_FAIL_DENY: return SP_DENY;
	case SCAN_FAIL_TEMPFAIL: return SP_TEMPFAIL;
	}
	return SP_TEMPFAIL;
}

/* clamd's alerts about what it could not look into, not about what it found. */
static bool
unscannable_alert(const char *virus)
{
	return !strncasecmp(virus, "Heuristics.Encrypted.", 21) ||
	    !strncasecmp(virus, "Heuristics.Limits.", 18);
}

void
scanpolicy_av(const struct action_rules *r, enum clamd_status st, const char *virus,
    struct sp_av *out)
{
	memset(out, 0, sizeof(*out));
	switch (st) {
	case CLAMD_CLEAN:
		out->action = SP_PASS;
		out->why = "clean";
		return;
	case CLAMD_INFECTED:
		if (virus && unscannable_alert(virus)) {
			out->action = fail_action(r->av_on_error);
			out->why = "unscannable";
			break;
		}
		out->virus = true;
		out->why = "virus";
		switch (r->av_on_virus) {
		case RULE_STRIP: out->action = SP_STRIP; break;
		case RULE_DROP: out->action = SP_DROP; break;
		case RULE_BLOCK: out->action = SP_BLOCK; break;
		default: out->action = SP_DENY; break;
		}
		return;
	case CLAMD_TOO_LARGE:
		out->action = fail_action(r->av_on_error);
		out->why = "too-large";
		break;
	case CLAMD_ERROR:
		out->action = fail_action(r->av_on_error);
		out->why = "scan-error";
		break;
	case CLAMD_UNAVAILABLE:
		out->action = fail_action(r->av_on_unavailable);
		out->why = "unavailable";
		break;
	}
	out->unscanned = out->action == SP_PASS;
}

/* rspamd's action as ours, before any threshold override. */
static enum sp_action
spam_base(enum rspamd_action a, bool *subject, const char **level)
{
	*subject = false;
	switch (a) {
	case RSPAMD_NO_ACTION:
		*level = "no action";
		return SP_PASS;
	case RSPAMD_GREYLIST:
		*level = "greylist";
		return SP_TEMPFAIL;
	case RSPAMD_SOFT_REJECT:
		*level = "soft reject";
		return SP_TEMPFAIL;
	case RSPAMD_ADD_HEADER:
		*level = "add header";
		return SP_MARK;
	case RSPAMD_REWRITE_SUBJECT:
		*level = "rewrite subject";
		*subject = true;
		return SP_MARK;
	case RSPAMD_REJECT:
		*level = "reject";
		return SP_DENY;
	case RSPAMD_DISCARD:
		*level = "discard";
		return SP_DENY;
	case RSPAMD_QUARANTINE:
		*level = "quarantine";
		return SP_DENY;
	}
	*level = "reject";
	return SP_DENY;
}

void
scanpolicy_spam(const struct action_rules *r, const struct rspamd_result *res,
    struct sp_spam *out)
{
	enum sp_action a;
	bool subject;

	memset(out, 0, sizeof(*out));
	switch (res->status) {
	case RSPAMD_CHECKED:
		break;
	case RSPAMD_TOO_LARGE:
		/* rspamd itself leaves messages this large unchecked */
		out->action = SP_PASS;
		out->unscanned = true;
		out->level = "too large";
		return;
	case RSPAMD_ERROR:
	case RSPAMD_UNAVAILABLE:
		out->action = fail_action(r->spam_on_unavailable);
		out->unscanned = out->action == SP_PASS;
		out->level = res->status == RSPAMD_ERROR ? "error" : "unavailable";
		return;
	}
	a = spam_base(res->action, &subject, &out->level);
	if (!res->skipped) {
		double s = res->score;

		if (r->spam_reject_score >= 0) {
			if (s >= r->spam_reject_score && a != SP_DENY) {
				a = SP_DENY;
				subject = false;
				out->level = "reject";
				out->overridden = true;
			} else if (s < r->spam_reject_score && a == SP_DENY) {
				a = SP_MARK;
				out->level = "add header";
				out->overridden = true;
			}
		}
		if (r->spam_header_score >= 0 && a != SP_DENY && a != SP_TEMPFAIL) {
			if (s >= r->spam_header_score && a == SP_PASS) {
				a = SP_MARK;
				out->level = "add header";
				out->overridden = true;
			} else if (s < r->spam_header_score && a == SP_MARK) {
				a = SP_PASS;
				subject = false;
				out->level = "no action";
				out->overridden = true;
			}
		}
	}
	out->action = a;
	out->subject = a == SP_MARK && subject && res->has_subject;
}

/* ------------------------------------------------------------ texts */

struct out {
	char *p;
	size_t sz, len;
	bool full;
};

static void
put(struct out *o, const char *s, size_t n)
{
	if (o->full || o->len + n >= o->sz) {
		o->full = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void
puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* One "Name: value" line, the value cut so the line fits. */
static void
header_line(struct out *o, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	if (nl + 2 >= LINE_MAX_OCTETS)
		return;
	if (nl + 2 + vl > LINE_MAX_OCTETS)
		vl = LINE_MAX_OCTETS - nl - 2;
	put(o, name, nl);
	put(o, ": ", 2);
	put(o, value, vl);
	put(o, "\r\n", 2);
}

size_t
scanpolicy_spam_headers(const struct rspamd_result *res, const char *level, char *out,
    size_t outsz)
{
	struct out o = { out, outsz, 0, false };
	char v[LINE_MAX_OCTETS + 1];
	size_t n = 0;

	if (outsz == 0)
		return 0;
	out[0] = '\0';
	header_line(&o, "X-Spam-Flag", "YES");
	if (o.full)
		return 0;
	snprintf(v, sizeof(v), "%.2f / %.2f", res->score, res->required_score);
	header_line(&o, "X-Spam-Score", v);
	header_line(&o, "X-Spam-Action", level);
	v[0] = '\0';
	for (unsigned i = 0; i < res->nsymbols; i++) {
		char one[RSPAMD_NAME_MAX + 40];
		int m = snprintf(one, sizeof(one), "%s%s(%.2f)", n ? ", " : "", res->symbols[i].name,
		    res->symbols[i].score);

		/* "X-Spam-Symbols: " is 16 octets */
		if (m < 0 || n + (size_t)m > LINE_MAX_OCTETS - 16)
			break;
		memcpy(v + n, one, (size_t)m + 1);
		n += (size_t)m;
	}
	if (n)
		header_line(&o, "X-Spam-Symbols", v);
	for (unsigned i = 0; i < res->nadd; i++)
		/* ours are written above, once */
		if (!scanpolicy_replaced_header(NULL, res->add[i].name, strlen(res->add[i].name)))
			header_line(&o, res->add[i].name, res->add[i].value);
	if (o.full) {
		out[0] = '\0';
		return 0;
	}
	return o.len;
}

static const char *const own_headers[] = {
	"X-Spam-Flag", "X-Spam-Score", "X-Spam-Action", "X-Spam-Symbols",
};

static bool
name_is(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

bool
scanpolicy_replaced_header(const struct rspamd_result *res, const char *name, size_t namelen)
{
	for (size_t i = 0; i < ARRAY_SIZE(own_headers); i++)
		if (name_is(name, namelen, own_headers[i]))
			return true;
	if (res == NULL)
		return false;
	for (unsigned i = 0; i < res->nremove; i++)
		if (name_is(name, namelen, res->remove[i]))
			return true;
	for (unsigned i = 0; i < res->nadd; i++)
		if (name_is(name, namelen, res->add[i].name))
			return true;
	return false;
}

/* Octets of the UTF-8 character starting at s (1 for anything that is not a lead octet). */
static size_t
utf8_len(const unsigned char *s, size_t left)
{
	size_t n = *s < 0x80 ? 1 : (*s & 0xe0) == 0xc0 ? 2 : (*s & 0xf0) == 0xe0 ? 3 :
	    (*s & 0xf8) == 0xf0 ? 4 : 1;

	if (n > left)
		return 1;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 1;
	return n;
}

static void
b64(struct out *o, const unsigned char *s, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
		    (i + 2 < n ? s[i + 2] : 0);
		char q[4] = { tab[v >> 18 & 63], tab[v >> 12 & 63],
		    i + 1 < n ? tab[v >> 6 & 63] : '=', i + 2 < n ? tab[v & 63] : '=' };

		put(o, q, 4);
	}
}

size_t
scanpolicy_subject_field(const char *subject, char *out, size_t outsz)
{
	struct out o = { out, outsz, 0, false };
	const unsigned char *s = (const unsigned char *)subject;
	size_t len = strlen(subject);
	bool plain = len + 9 <= LINE_MAX_OCTETS;

	if (outsz == 0)
		return 0;
	out[0] = '\0';
	for (size_t i = 0; i < len && plain; i++)
		if (s[i] < 32 || s[i] > 126)
			plain = false;
	puts_(&o, "Subject:");
	if (plain) {
		put(&o, " ", 1);
		put(&o, subject, len);
	} else {
		/*
		 * Encoded words of at most 42 octets of text (56 of base64, 68
		 * with the "=?UTF-8?B?" "?=" frame: under RFC 2047's 75, and the
		 * first line, "Subject: " included, under RFC 5322's 78), each
		 * on a line of its own, never splitting a character.
		 */
		size_t i = 0;

		while (i < len) {
			size_t n = 0;

			while (i + n < len) {
				size_t c = utf8_len(s + i + n, len - i - n);
				if (n + c > 42)
					break;
				n += c;
			}
			put(&o, i ? "\r\n " : " ", i ? 3 : 1);
			puts_(&o, "=?UTF-8?B?");
			b64(&o, s + i, n);
			puts_(&o, "?=");
			i += n;
		}
	}
	put(&o, "\r\n", 2);
	if (o.full) {
		out[0] = '\0';
		return 0;
	}
	return o.len;
}
