/*
 * content - the content inspector: a proxy action's header, content-type
 * and file-name rulesets applied to every message, through the streaming
 * MIME parser (mime.c), content sniffing and archive walks (sniff.c), with
 * the deny message (template.c) in replies and in place of stripped parts.
 *
 * It implements struct inspector (inspect.h) and is synchronous: the
 * verdict is known at end().  What it may change (strip a part or a
 * header, add envelope headers) is announced at begin() with
 * INSPECT_F_HOLD so the engine holds the message; the changes come back
 * as whole-line edits of the octets body() saw.
 *
 * Verdict: every match is noted; the most severe action wins (block >
 * drop > deny > strip > allow).  A strip of the message itself (a
 * message that is nothing but the attachment) is a deny: there is
 * nothing left to deliver.  Ambiguous MIME structure, and limits that
 * leave part of the message unparsed, take the action's on-ambiguous;
 * archives that cannot be opened take on-archive-unopenable.  A leaf is
 * walked as an archive when its first octets say so, or when its sender
 * declares it one (type or name: a zip need not start at its first
 * octet).  File names are checked as sent and as Windows would save them
 * (saved_name: last path component, trailing dots and spaces dropped).
 *
 * Memory per transaction: the MIME parser (about 60 KiB), the first
 * CONTENT_HEAD octets of the leaf being read (for libmagic), and -- only
 * while a leaf is taken for an archive -- that leaf's decoded octets up to
 * the sniff limits' max_entry_size (8 MiB).  Bounded counts of strips
 * and edits.  Time: the sniff limits' entries and uncompressed octets
 * bound all the archive walks of a message together (about a second of
 * CPU at most), a MIME part limit the libmagic calls on leaves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "action_rules.h"
#include "config.h"
#include "content.h"
#include "log.h"
#include "mime.h"
#include "sniff.h"
#include "stats.h"
#include "template.h"
#include "util.h"

#define CONTENT_HEAD 8192       /* octets of a leaf shown to libmagic */
#define CONTENT_STRIPS_MAX 64   /* parts stripped from one message */
#define CONTENT_HDRSTRIPS_MAX 64
#define CONTENT_ITEM_LOG 160    /* octets of an item in a log line */

static struct sniff *sniffer;

int
content_init(const char *magic_file, char *err, size_t errsz)
{
	if (sniffer)
		return 0;
	sniffer = sniff_open(magic_file, err, errsz);
	return sniffer ? 0 : -1;
}

struct strip {
	uint64_t off, end;      /* the part, [off_start, off_end) as mime.h has it */
	char type[MIME_TYPE_MAX];
	char name[MIME_NAME_MAX];
	char reason[120];
};

struct hdrstrip {
	uint64_t off, end;
};

struct content_txn {
	const struct action_rules *r;
	uint64_t sid;
	bool inbound;
	bool hold;
	const struct inspect_envelope *env_for_headers; /* valid at begin() only */
	char *env_headers;  /* "X-Envelope-From: ..." lines to insert, or NULL */
	size_t env_len;
	struct mime_parser *mp;

	/* the leaf being read */
	bool in_leaf;
	unsigned leaf;
	unsigned char head[CONTENT_HEAD];
	size_t headlen;
	bool head_sniffed;
	char sniffed[SNIFF_TYPE_MAX];
	unsigned char *arch;
	size_t archlen, archcap;
	bool arch_want, arch_over;
	bool leaf_stripped;
	/*
	 * What is left of the message's archive budget: the sniff limits'
	 * entries and uncompressed octets, for all its archives together.
	 * Each entry costs a libmagic call and the walk runs in the worker's
	 * event loop: per archive, a few MiB of small zips kept a worker busy
	 * for a minute.
	 */
	unsigned arch_entries_left;
	uint64_t arch_bytes_left;

	/* what was decided */
	enum rule_action worst;
	unsigned worst_flags;
	char reason[200], vtype[MIME_TYPE_MAX], vname[MIME_NAME_MAX];
	struct strip strips[CONTENT_STRIPS_MAX];
	unsigned nstrips;
	struct hdrstrip hdrstrips[CONTENT_HDRSTRIPS_MAX];
	unsigned nhdrstrips;
	bool too_many;
};

static unsigned
severity(enum rule_action a)
{
	switch (a) {
	case RULE_ALLOW: return 0;
	case RULE_STRIP: return 1;
	case RULE_DENY: return 2;
	case RULE_DROP: return 3;
	case RULE_BLOCK: return 4;
	}
	return 2;
}

static void
raise_to(struct content_txn *t, enum rule_action a, unsigned flags, const char *reason,
    const char *type, const char *name)
{
	if (severity(a) <= severity(t->worst) && t->worst != RULE_ALLOW)
		return;
	if (a == RULE_ALLOW)
		return;
	t->worst = a;
	t->worst_flags = flags;
	snprintf(t->reason, sizeof(t->reason), "%s", reason);
	snprintf(t->vtype, sizeof(t->vtype), "%s", type ? type : "");
	snprintf(t->vname, sizeof(t->vname), "%s", name ? name : "");
}

/* Log / alarm a decision that is not a plain allow-by-default. */
static void
report(struct content_txn *t, const char *ruleset, const char *item, size_t itemlen,
    const struct rule_result *res, unsigned part)
{
	char q[LOG_QUOTE_SIZE(CONTENT_ITEM_LOG)], rq[LOG_QUOTE_SIZE(RULE_PATTERN_MAX + 40)];
	char rule[RULE_PATTERN_MAX + 40];

	if (!(res->flags & (RULE_F_LOG | RULE_F_ALARM)) && !res->error)
		return;
	log_quote(q, sizeof(q), item, itemlen > CONTENT_ITEM_LOG ? CONTENT_ITEM_LOG : itemlen);
	if (res->rule)
		rule_format(res->rule, rule, sizeof(rule));
	else
		snprintf(rule, sizeof(rule), "default");
	log_quote_str(rq, sizeof(rq), rule);
	log_sid(LOG_LVL_INFO, t->sid,
	    "inspect rule ruleset=%s item=%s rule=%s action=%s part=%u%s", ruleset, q, rq,
	    rule_action_name(res->action), part, res->error ? " error=match-limit" : "");
	if (res->flags & RULE_F_ALARM) {
		log_alarm(t->sid, "ruleset=%s item=%s rule=%s action=%s", ruleset, q, rq,
		    rule_action_name(res->action));
		stats_add(STAT_ALARMS, 1);
	}
}

static void
add_strip(struct content_txn *t, const struct mime_part *p, const char *reason, const char *type,
    const char *name)
{
	if (t->leaf_stripped && t->leaf == p->index)
		return; /* one replacement per part */
	if (t->nstrips == CONTENT_STRIPS_MAX) {
		t->too_many = true;
		raise_to(t, RULE_DENY, RULE_F_LOG, "too many attachments to strip", type, name);
		return;
	}
	struct strip *s = &t->strips[t->nstrips++];
	s->off = p->off_start;
	s->end = p->off_end; /* filled at PART_END */
	snprintf(s->type, sizeof(s->type), "%s", type ? type : p->type);
	snprintf(s->name, sizeof(s->name), "%s", name ? name : (p->nnames ? p->names[0] : ""));
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	t->leaf_stripped = true;
}

/* Apply one ruleset to an item of a part (or of the message's headers). */
static void
check_as(struct content_txn *t, enum arules_kind kind, const char *item, size_t len,
    const struct mime_part *p, const struct mime_event *hdr, const char *shown);

static void
check(struct content_txn *t, enum arules_kind kind, const char *item, size_t len,
    const struct mime_part *p, const struct mime_event *hdr)
{
	check_as(t, kind, item, len, p, hdr, NULL);
}

/* shown: how the deny message names the item (an archive entry: "archive: entry"). */
static void
check_as(struct content_txn *t, enum arules_kind kind, const char *item, size_t len,
    const struct mime_part *p, const struct mime_event *hdr, const char *shown)
{
	const struct ruleset *rs = arules_rs(t->r, kind);
	struct rule_result res;
	char reason[200];

	if (rs->nrules == 0 && rs->dflt == RULE_ALLOW && !(rs->dflt_flags & RULE_F_LOG))
		return;
	res = ruleset_match(rs, item, len);
	report(t, arules_kind_key(kind), item, len, &res, p ? p->index : 0);
	if (res.action == RULE_ALLOW)
		return;
	snprintf(reason, sizeof(reason), "%s %.*s", arules_kind_key(kind),
	    (int)(len > 120 ? 120 : len), item);
	for (char *c = reason; *c; c++)
		if ((unsigned char)*c < 32)
			*c = ' ';
	if (res.action == RULE_STRIP) {
		if (hdr) {
			/* only the message's own header section is edited */
			if (t->nhdrstrips < CONTENT_HDRSTRIPS_MAX) {
				t->hdrstrips[t->nhdrstrips].off = hdr->off;
				t->hdrstrips[t->nhdrstrips].end = hdr->off_end;
				t->nhdrstrips++;
				raise_to(t, RULE_STRIP, res.flags, reason, NULL, NULL);
			} else {
				raise_to(t, RULE_DENY, res.flags, "too many headers to strip", NULL, NULL);
			}
			return;
		}
		if (p == NULL || p->index == 0) {
			/* the message is the attachment: nothing would be left */
			raise_to(t, RULE_DENY, res.flags, reason, p ? p->type : NULL,
			    p && p->nnames ? p->names[0] : NULL);
			return;
		}
		add_strip(t, p, reason, kind == AR_CONTENT_TYPE ? item : NULL,
		    shown ? shown : kind == AR_FILENAME ? item : NULL);
		raise_to(t, RULE_STRIP, res.flags, reason, p->type,
		    shown ? shown : p->nnames ? p->names[0] : NULL);
		return;
	}
	raise_to(t, res.action, res.flags, reason, p ? p->type : NULL,
	    shown ? shown : p && p->nnames ? p->names[0] : NULL);
}

/*
 * The name a Windows reader saves a file under: the last component of a
 * path, without the trailing dots and spaces that Win32 drops ("evil.exe."
 * and "evil.exe " are written as evil.exe).  A rule on "*.exe" must see
 * that name too, or the sender picks the spelling that passes.  Returns
 * its length in out, 0 when it is empty or the name itself.
 */
static size_t
saved_name(const char *name, size_t len, char *out, size_t outsz)
{
	size_t b = len, e = len;

	while (b > 0 && name[b - 1] != '/' && name[b - 1] != '\\')
		b--;
	while (e > b && (name[e - 1] == '.' || name[e - 1] == ' '))
		e--;
	if (e == b || (b == 0 && e == len) || e - b >= outsz)
		return 0;
	memcpy(out, name + b, e - b);
	out[e - b] = '\0';
	return e - b;
}

/* A file name (an attachment's or an archive entry's), as sent and as it would be saved. */
static void
check_name(struct content_txn *t, const char *name, size_t len, const struct mime_part *p,
    const char *shown)
{
	char saved[MIME_NAME_MAX];
	size_t n = saved_name(name, len, saved, sizeof(saved));

	check_as(t, AR_FILENAME, name, len, p, NULL, shown);
	if (n > 0)
		check_as(t, AR_FILENAME, saved, n, p, NULL, shown);
}

/* A setting's action (on-ambiguous, on-archive-unopenable) for a part. */
static void
apply_setting(struct content_txn *t, const char *what, enum rule_action a, unsigned flags,
    const char *why, const struct mime_part *p)
{
	char reason[200];

	snprintf(reason, sizeof(reason), "%s: %s", what, why);
	if (flags & RULE_F_LOG || a != RULE_ALLOW)
		log_sid(LOG_LVL_INFO, t->sid, "inspect %s part=%u action=%s reason=\"%s\"", what,
		    p ? p->index : 0, rule_action_name(a), why);
	if (flags & RULE_F_ALARM) {
		log_alarm(t->sid, "%s part=%u action=%s reason=\"%s\"", what, p ? p->index : 0,
		    rule_action_name(a), why);
		stats_add(STAT_ALARMS, 1);
	}
	if (a == RULE_STRIP) {
		if (p == NULL || p->index == 0)
			raise_to(t, RULE_DENY, flags, reason, NULL, NULL);
		else {
			add_strip(t, p, reason, p->type, p->nnames ? p->names[0] : NULL);
			raise_to(t, RULE_STRIP, flags, reason, p->type, p->nnames ? p->names[0] : NULL);
		}
		return;
	}
	raise_to(t, a, flags, reason, p ? p->type : NULL, p && p->nnames ? p->names[0] : NULL);
}

/* ---------------------------------------------------------- archives */

struct walk {
	struct content_txn *t;
	const struct mime_part *p;
};

static void
entry_cb(void *arg, const struct sniff_entry *en)
{
	struct walk *w = arg;

	char shown[MIME_NAME_MAX];

	if (en->dir)
		return;
	/* cut to fit (both come from the mail): never longer than a name */
	snprintf(shown, sizeof(shown), "%.120s: %.120s",
	    w->p->nnames ? w->p->names[0] : "archive", en->name ? en->name : "?");
	if (en->name && en->name[0]) {
		/* the entry's base name, as a file name rule sees an attachment's */
		const char *base = strrchr(en->name, '/');
		base = base ? base + 1 : en->name;
		check_name(w->t, base, strlen(base), w->p, shown);
	}
	if (en->type && en->type[0])
		check_as(w->t, AR_CONTENT_TYPE, en->type, strlen(en->type), w->p, NULL, shown);
}

static void
leaf_end(struct content_txn *t, const struct mime_part *p)
{
	if (!t->head_sniffed && sniffer && t->headlen > 0) {
		(void)sniff_type(sniffer, t->head, t->headlen, t->sniffed, sizeof(t->sniffed));
		t->head_sniffed = true;
	}
	if (t->head_sniffed && t->sniffed[0] && strcmp(t->sniffed, p->type) != 0 &&
	    strcmp(t->sniffed, "application/octet-stream") != 0)
		check(t, AR_CONTENT_TYPE, t->sniffed, strlen(t->sniffed), p, NULL);
	/* a small archive: all of it is in head already (no early sniff asked for more) */
	if (!t->arch_want && sniffer && t->head_sniffed && t->headlen < CONTENT_HEAD &&
	    sniff_is_archive(t->sniffed)) {
		t->arch_want = true;
		t->arch = xmalloc(t->headlen ? t->headlen : 1);
		memcpy(t->arch, t->head, t->headlen);
		t->archlen = t->archcap = t->headlen;
	}
	if (t->arch_want && sniffer) {
		struct sniff_result sr;
		struct walk w = { t, p };

		struct sniff_limits lim = sniff_default_limits;

		lim.max_entries = t->arch_entries_left;
		lim.max_total = t->arch_bytes_left;
		if (t->arch_over) {
			apply_setting(t, "archive-unopenable", t->r->on_unopenable,
			    t->r->on_unopenable_flags, "archive larger than the inspection limit", p);
		} else if (lim.max_entries == 0 || lim.max_total == 0) {
			apply_setting(t, "archive-unopenable", t->r->on_unopenable,
			    t->r->on_unopenable_flags, "the message's archive inspection budget is spent",
			    p);
		} else if (sniff_archive(sniffer, t->arch, t->archlen, &lim, entry_cb, &w, &sr) !=
		    SNIFF_OK && sr.status != SNIFF_NOT_ARCHIVE) {
			apply_setting(t, "archive-unopenable", t->r->on_unopenable,
			    t->r->on_unopenable_flags, sr.reason[0] ? sr.reason :
			    sniff_status_name(sr.status), p);
		}
		if (!t->arch_over && lim.max_entries > 0 && lim.max_total > 0) {
			t->arch_entries_left -= sr.entries < t->arch_entries_left ? sr.entries :
			    t->arch_entries_left;
			t->arch_bytes_left -= sr.bytes < t->arch_bytes_left ? sr.bytes :
			    t->arch_bytes_left;
		}
	}
	/* a strip decided for this leaf now knows where the leaf ends */
	if (t->leaf_stripped && t->nstrips > 0 && t->strips[t->nstrips - 1].off == p->off_start)
		t->strips[t->nstrips - 1].end = p->off_end;
	free(t->arch);
	t->arch = NULL;
	t->archlen = t->archcap = 0;
	t->arch_want = t->arch_over = false;
	t->in_leaf = false;
}

/* Keep the whole leaf (up to the limit) for the archive walk at its end. */
static void
arch_start(struct content_txn *t, size_t cap)
{
	t->arch_want = true;
	mime_want(t->mp, sniff_default_limits.max_entry_size + 1);
	t->archcap = cap;
	t->arch = xmalloc(cap);
	t->archlen = 0;
}

/*
 * A leaf its sender calls an archive, by type or by name.  libmagic
 * judges the first octets only, and archive readers do not need the
 * archive there: a zip behind a self-extractor's stub (or any prefix)
 * opens in unzip, 7-Zip and Explorer, an ISO image has its signature at
 * 32 KiB.  Such a leaf is walked whatever it looks like at its start.
 */
static bool
declared_archive(const struct mime_part *p)
{
	static const char *const ext[] = {
		".zip", ".jar", ".7z", ".rar", ".tar", ".tgz", ".gz", ".bz2", ".tbz2", ".xz",
		".txz", ".zst", ".lz", ".lz4", ".lzma", ".cab", ".iso", ".lzh", ".lha", ".cpio",
		".xar", ".z",
	};

	if (sniff_is_archive(p->type))
		return true;
	for (unsigned i = 0; i < p->nnames; i++) {
		char saved[MIME_NAME_MAX];
		const char *n = p->names[i];
		size_t len = saved_name(n, strlen(n), saved, sizeof(saved));

		if (len > 0)
			n = saved;
		else
			len = strlen(n);
		for (size_t k = 0; k < ARRAY_SIZE(ext); k++) {
			size_t el = strlen(ext[k]);
			if (len > el && strcasecmp(n + len - el, ext[k]) == 0)
				return true;
		}
	}
	return false;
}

static void
take_body(struct content_txn *t, const unsigned char *data, size_t len)
{
	const uint64_t archmax = sniff_default_limits.max_entry_size;

	if (t->headlen < CONTENT_HEAD) {
		size_t n = len < CONTENT_HEAD - t->headlen ? len : CONTENT_HEAD - t->headlen;
		memcpy(t->head + t->headlen, data, n);
		t->headlen += n;
		/* enough to tell an archive: ask for the whole leaf then */
		if (!t->head_sniffed && sniffer && (t->headlen >= 1024 || t->headlen == CONTENT_HEAD)) {
			(void)sniff_type(sniffer, t->head, t->headlen, t->sniffed, sizeof(t->sniffed));
			t->head_sniffed = true;
			if (!t->arch_want && sniff_is_archive(t->sniffed)) {
				/* what came before is in head */
				arch_start(t, t->headlen > 65536 ? t->headlen : 65536);
				memcpy(t->arch, t->head, t->headlen);
				t->archlen = t->headlen;
				data += n;
				len -= n;
			}
		}
	}
	if (!t->arch_want || t->arch_over || len == 0)
		return;
	if (t->archlen + len > archmax) {
		t->arch_over = true;
		free(t->arch);
		t->arch = NULL;
		t->archlen = t->archcap = 0;
		return;
	}
	if (t->archlen + len > t->archcap) {
		size_t cap = t->archcap;
		while (cap < t->archlen + len)
			cap *= 2;
		if (cap > archmax)
			cap = archmax;
		t->arch = xrealloc(t->arch, cap);
		t->archcap = cap;
	}
	memcpy(t->arch + t->archlen, data, len);
	t->archlen += len;
}

static bool
limit_hides_content(enum mime_anomaly a)
{
	return a == MIME_L_DEPTH || a == MIME_L_PARTS || a == MIME_L_BOUNDARY;
}

static void
mime_event(void *arg, const struct mime_event *ev)
{
	struct content_txn *t = arg;
	const struct mime_part *p = ev->part;

	switch (ev->kind) {
	case MIME_EV_HEADER:
		if (p->index == 0) {
			char item[8192 + 2];
			int n = snprintf(item, sizeof(item), "%.*s: %.*s", (int)ev->namelen, ev->name,
			    (int)ev->valuelen, ev->value);
			if (n > 0)
				check(t, AR_HEADER, item, (size_t)n < sizeof(item) ? (size_t)n :
				    sizeof(item) - 1, p, ev);
		}
		break;
	case MIME_EV_PART_BEGIN:
		if (p->multipart || p->message)
			break;
		t->in_leaf = true;
		t->leaf = p->index;
		t->headlen = 0;
		t->head_sniffed = false;
		t->sniffed[0] = '\0';
		t->leaf_stripped = false;
		mime_want(t->mp, CONTENT_HEAD);
		check(t, AR_CONTENT_TYPE, p->type, strlen(p->type), p, NULL);
		for (unsigned i = 0; i < p->nnames; i++)
			check_name(t, p->names[i], strlen(p->names[i]), p, NULL);
		/* declared an archive: opened whatever its first octets look like */
		if (sniffer && declared_archive(p))
			arch_start(t, 65536);
		break;
	case MIME_EV_BODY:
		if (t->in_leaf && p->index == t->leaf)
			take_body(t, ev->data, ev->len);
		break;
	case MIME_EV_PART_END:
		if (t->in_leaf && p->index == t->leaf)
			leaf_end(t, p);
		break;
	case MIME_EV_ANOMALY: {
		enum mime_class cls = mime_anomaly_class(ev->anomaly);
		if (cls == MIME_CLASS_AMBIGUOUS ||
		    (cls == MIME_CLASS_LIMIT && limit_hides_content(ev->anomaly))) {
			/* the whole message is in question: never a strip */
			enum rule_action a = t->r->on_ambiguous;
			apply_setting(t, "ambiguous", a == RULE_STRIP ? RULE_DENY : a,
			    t->r->on_ambiguous_flags, mime_anomaly_text(ev->anomaly), NULL);
		} else {
			log_sid(LOG_LVL_DEBUG, t->sid, "inspect mime anomaly=%s part=%u",
			    mime_anomaly_name(ev->anomaly), p->index);
		}
		break;
	}
	}
}

/* -------------------------------------------------- the inspector */

/* Does anything of this action change a message (so it must be held)? */
static bool
may_change(const struct action_rules *r)
{
	if (r->envelope_headers || r->on_unopenable == RULE_STRIP)
		return true;
	for (int k = AR_HEADER; k <= AR_FILENAME; k++) {
		const struct ruleset *rs = arules_rs(r, (enum arules_kind)k);
		if (rs->dflt == RULE_STRIP)
			return true;
		for (unsigned i = 0; i < rs->nrules; i++)
			if (rs->rules[i].action == RULE_STRIP)
				return true;
	}
	return false;
}

/* Only what the message rulesets look at needs a MIME parse at all. */
static bool
inspects_content(const struct action_rules *r)
{
	for (int k = AR_HEADER; k <= AR_FILENAME; k++) {
		const struct ruleset *rs = arules_rs(r, (enum arules_kind)k);
		if (rs->nrules > 0 || rs->dflt != RULE_ALLOW || rs->dflt_flags)
			return true;
	}
	return r->on_ambiguous != RULE_ALLOW || (r->on_ambiguous_flags & RULE_F_LOG) ||
	    r->envelope_headers;
}

static void
envelope_headers(struct content_txn *t, const struct inspect_envelope *env)
{
	size_t cap = 64 + strlen(env->mail_from) + 8;
	int n;

	for (int i = 0; i < env->nrcpts; i++)
		cap += strlen(env->rcpts[i]) + 24;
	t->env_headers = xmalloc(cap);
	n = snprintf(t->env_headers, cap, "X-Envelope-From: <%s>\r\n", env->mail_from);
	for (int i = 0; i < env->nrcpts && n > 0 && (size_t)n < cap; i++)
		n += snprintf(t->env_headers + n, cap - (size_t)n, "X-Envelope-To: <%s>\r\n",
		    env->rcpts[i]);
	t->env_len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void *
content_begin(const struct inspector *in, const struct inspect_envelope *env,
    const struct inspect_hooks *hooks, unsigned *flags)
{
	const struct action_rules *r;
	struct content_txn *t;

	(void)in;
	(void)hooks;
	if (env->action == NULL)
		return NULL;
	r = config_rules(env->action);
	if (!inspects_content(r))
		return NULL;
	t = xcalloc(1, sizeof(*t));
	t->r = r;
	t->sid = env->session_id;
	t->inbound = env->inbound;
	t->worst = RULE_ALLOW;
	t->arch_entries_left = sniff_default_limits.max_entries;
	t->arch_bytes_left = sniff_default_limits.max_total;
	t->mp = mime_new(&mime_default_limits, mime_event, t);
	t->hold = may_change(r);
	if (t->hold)
		*flags |= INSPECT_F_HOLD;
	if (r->envelope_headers)
		envelope_headers(t, env);
	stats_add(STAT_INSPECTED, 1);
	return t;
}

static int
content_body(void *txn, const char *data, size_t len)
{
	struct content_txn *t = txn;

	if (t)
		mime_feed(t->mp, data, len);
	return INSPECT_OK;
}

static void
txn_free(struct content_txn *t)
{
	if (t == NULL)
		return;
	mime_free(t->mp);
	free(t->arch);
	free(t->env_headers);
	free(t);
}

/* The text part that replaces a stripped one (whole CRLF lines). */
static size_t
deny_part(const struct content_txn *t, const struct strip *s, char *out, size_t outsz)
{
	const char *tpl = t->r->deny_message[0] ? t->r->deny_message : tpl_default;
	struct tpl_vars v = {
		.reason = s->reason, .type = s->type, .filename = s->name, .action = "stripped",
		.recovery = "Ask the sender to send the file another way, or your administrator "
		    "to release it.",
	};
	char body[4096];
	size_t n = tpl_render(tpl, strlen(tpl), &v, TPL_BODY_ASCII, body, sizeof(body));
	int m = snprintf(out, outsz, "Content-Type: text/plain; charset=us-ascii\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n"
	    "Content-Disposition: inline\r\n\r\n%.*s\r\n", (int)n, body);

	return m > 0 && (size_t)m < outsz ? (size_t)m : 0;
}

static int
add_edit(struct inspect_result *res, uint64_t off, uint64_t len, const char *pre, size_t prelen,
    const char *text, size_t textlen)
{
	char *buf;
	int rc;

	if (prelen == 0)
		return inspect_result_edit(res, off, len, text, textlen);
	buf = xmalloc(prelen + textlen + 1);
	memcpy(buf, pre, prelen);
	memcpy(buf + prelen, text, textlen);
	rc = inspect_result_edit(res, off, len, buf, prelen + textlen);
	free(buf);
	return rc;
}

/* The edits of an allowed, changed message, in message order. */
static int
build_edits(struct content_txn *t, struct inspect_result *res)
{
	const char *pre = t->env_headers;
	size_t prelen = t->env_len;
	unsigned hi = 0, si = 0;

	/* header strips (part 0's header section) come before any part strip */
	if (pre && prelen && (t->nhdrstrips == 0 || t->hdrstrips[0].off != 0)) {
		if (inspect_result_edit(res, 0, 0, pre, prelen) < 0)
			return -1;
		pre = NULL;
		prelen = 0;
	}
	for (; hi < t->nhdrstrips; hi++) {
		const struct hdrstrip *h = &t->hdrstrips[hi];
		if (add_edit(res, h->off, h->end - h->off, pre, prelen, "", 0) < 0)
			return -1;
		pre = NULL;
		prelen = 0;
	}
	for (; si < t->nstrips; si++) {
		const struct strip *s = &t->strips[si];
		uint64_t total = mime_offset(t->mp), end;
		char text[6000];
		size_t n = deny_part(t, s, text, sizeof(text));

		/* [off_start, off_end) plus the CRLF before the next delimiter: whole lines */
		if (n == 0 || s->end < s->off)
			return -1;
		end = s->end + 2 <= total ? s->end + 2 : s->end;
		if (add_edit(res, s->off, end - s->off, NULL, 0, text, n) < 0)
			return -1;
	}
	return 0;
}

static int
content_end(void *txn, struct inspect_result *res)
{
	struct content_txn *t = txn;

	memset(res, 0, sizeof(*res));
	res->verdict = INSPECT_ALLOW;
	if (t == NULL)
		return INSPECT_DONE;
	mime_finish(t->mp);
	if (t->worst == RULE_DENY || t->worst == RULE_DROP || t->worst == RULE_BLOCK) {
		const char *tpl = t->r->deny_message[0] ? t->r->deny_message : tpl_default;
		struct tpl_vars v = {
			.reason = t->reason, .type = t->vtype, .filename = t->vname,
			.action = t->worst == RULE_DENY ? "denied" : "dropped",
		};
		const char *nl = strchr(tpl, '\n');
		char text[sizeof(res->reply) - 10];

		/* a reply takes the template's first line (template.h: its reply form) */
		tpl_render(tpl, nl ? (size_t)(nl - tpl) : strlen(tpl), &v, TPL_REPLY, text,
		    sizeof(text));
		res->verdict = INSPECT_DENY;
		snprintf(res->reply, sizeof(res->reply), "554 5.7.1 %.*s", (int)sizeof(text) - 1,
		    text);
		snprintf(res->reason, sizeof(res->reason), "%s", rule_action_name(t->worst));
		res->close = t->worst != RULE_DENY;
		res->block = t->worst == RULE_BLOCK;
		stats_add(STAT_DENIED, 1);
	} else if (t->nstrips || t->nhdrstrips || t->env_len) {
		if (build_edits(t, res) < 0) {
			inspect_result_clear(res);
			res->verdict = INSPECT_TEMPFAIL;
			snprintf(res->reply, sizeof(res->reply),
			    "451 4.7.1 The message could not be changed as the policy requires");
			snprintf(res->reason, sizeof(res->reason), "edit-failed");
		} else if (t->nstrips) {
			snprintf(res->reason, sizeof(res->reason), "stripped=%u", t->nstrips);
			stats_add(STAT_STRIPPED, 1);
		}
	}
	txn_free(t);
	return INSPECT_DONE;
}

static void
content_abort(void *txn)
{
	txn_free(txn);
}

const struct inspector inspect_content = {
	.name = "content",
	.begin = content_begin,
	.body = content_body,
	.end = content_end,
	.abort = content_abort,
};
