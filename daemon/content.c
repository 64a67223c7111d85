/*
 * content - the content inspector: a proxy action's header, content-type
 * and file-name rulesets applied to every message, through the streaming
 * MIME parser (mime.c), content sniffing and archive walks (sniff.c), with
 * the deny message (template.c) in replies and in place of stripped parts.
 *
 * It implements struct inspector (inspect.h), the one the engine calls.
 * The rulesets run as the message streams in (body()); at end() the
 * content scanners are asked about the held copy (msgscan.h: clamd,
 * rspamd), and the verdict comes later, through hooks->verdict(), once
 * they answered and -- for what is refused or stripped -- the original
 * is in the quarantine (quarantine.h).  What it may change (strip a part
 * or a header, add envelope or spam headers, rewrite the subject) is
 * announced at begin() with INSPECT_F_HOLD so the engine holds the
 * message; the changes come back as whole-line edits of the octets
 * body() saw.  Every message is held when the action scans or keeps a
 * quarantine (the scanners and the quarantine read the held copy).
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
 * A message the rules refuse is not scanned.  Then the scanners' outcomes
 * (scanpolicy.h) are merged in by the same order of severity, a refusal
 * before a tempfail before a change: a virus (av-on-virus), a spam
 * verdict, a scanner that failed (av-on-error, av-on-unavailable,
 * spam-on-unavailable).  A virus stripped needs the infected parts
 * known (antivirus = attachments, or located afterwards in message
 * mode); otherwise it is refused.
 *
 * Quarantine (the action's quarantine = yes): a message refused for its
 * content (deny, drop, block) or delivered with parts stripped is kept
 * first, then the verdict goes.  A stripped message whose copy cannot be
 * kept is tempfailed instead -- the stripped part would be lost -- while
 * a refused one is refused anyway (its sender still has it).
 *
 * Memory per transaction: the MIME parser (about 60 KiB), the first
 * CONTENT_HEAD octets of the leaf being read (for libmagic), and -- only
 * while a leaf is taken for an archive -- that leaf's decoded octets up to
 * the sniff limits' max_entry_size (8 MiB).  Bounded counts of strips
 * and edits.  Time: the sniff limits' entries and uncompressed octets
 * bound all the archive walks of a message together (about a second of
 * CPU at most), a MIME part limit the libmagic calls on leaves.
 *
 * Why one file of this size: the rulesets, archive walks, the scanners'
 * outcomes and the quarantine hand-off share one transaction and one
 * order of severity; the scanners' own parts are in msgscan.c and
 * scanpolicy.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <inttypes.h>
#include <time.h>

#include "action_rules.h"
#include "addr.h"
#include "config.h"
#include "content.h"
#include "hold.h"
#include "log.h"
#include "mime.h"
#include "msgscan.h"
#include "quarantine.h"
#include "scanpolicy.h"
#include "sniff.h"
#include "stats.h"
#include "template.h"
#include "util.h"

#define CONTENT_HEAD 8192       /* octets of a leaf shown to libmagic */
#define CONTENT_STRIPS_MAX 64   /* parts stripped from one message */
#define CONTENT_HDRSTRIPS_MAX 64
#define CONTENT_ITEM_LOG 160    /* octets of an item in a log line */
#define CONTENT_FIELDS_MAX 512  /* header fields of the message remembered (spam edits) */
#define CONTENT_FIELD_NAME 64

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

/* A header field of the message (part 0): the spam edits remove or replace some. */
struct field {
	char name[CONTENT_FIELD_NAME];
	uint64_t off, end;
};

/* What the quarantine record and rspamd need of the envelope, copied at begin(). */
struct envcopy {
	char action[CONF_NAME_MAX];
	char client[ADDR_STRLEN], server[ADDR_STRLEN];
	union sockaddr_any client_sa;
	bool has_client;
	char *helo, *mail_from, *server_name;
	char **rcpts;
	unsigned nrcpts;
	char tls[160];           /* "VERSION CIPHER" or "" */
	char tls_version[32], tls_cipher[120];
	bool upstream_tls;
	char queue_id[16];
};

struct content_txn {
	const struct action_rules *r;
	const struct config *conf; /* quarantine-dir and its bounds */
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

	/* the scanners and the quarantine (after end()) */
	struct inspect_hooks hooks;
	struct envcopy env;
	bool scan, keep;          /* ask the scanners; quarantine what is refused / stripped */
	struct field *fields;     /* part 0's header fields, in order */
	unsigned nfields;
	struct msgscan *ms;
	struct qwrite *qw;
	struct inspect_result res;   /* the verdict, while the quarantine copy is written */
	bool strip_kept;             /* res has strips: its copy must be kept */
	char qreason[200], qvirus[CLAMD_VIRUS_MAX], qscore[32];
	enum quarantine_verdict qverdict;
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
		if (p->index == 0 && t->fields && t->nfields < CONTENT_FIELDS_MAX &&
		    ev->namelen < CONTENT_FIELD_NAME) {
			struct field *f = &t->fields[t->nfields++];
			snprintf(f->name, sizeof(f->name), "%.*s", (int)ev->namelen, ev->name);
			f->off = ev->off;
			f->end = ev->off_end;
		}
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

/* Could a rule of the message rulesets refuse or strip it (its copy then goes to quarantine)? */
static bool
may_refuse(const struct action_rules *r)
{
	if (r->on_ambiguous != RULE_ALLOW || r->on_unopenable != RULE_ALLOW)
		return true;
	for (int k = AR_HEADER; k <= AR_FILENAME; k++) {
		const struct ruleset *rs = arules_rs(r, (enum arules_kind)k);
		if (rs->dflt != RULE_ALLOW)
			return true;
		for (unsigned i = 0; i < rs->nrules; i++)
			if (rs->rules[i].action != RULE_ALLOW)
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

static void
env_copy(struct envcopy *c, const struct inspect_envelope *env)
{
	snprintf(c->action, sizeof(c->action), "%s", env->action ? env->action->name : "");
	if (env->client) {
		addr_fmt(env->client, c->client, sizeof(c->client));
		c->client_sa = *env->client;
		c->has_client = true;
	}
	if (env->server)
		addr_fmt(env->server, c->server, sizeof(c->server));
	c->helo = xstrdup(env->helo ? env->helo : "");
	c->mail_from = xstrdup(env->mail_from ? env->mail_from : "");
	c->server_name = xstrdup(env->server_name ? env->server_name : "");
	c->nrcpts = env->nrcpts > 0 ? (unsigned)env->nrcpts : 0;
	c->rcpts = xcalloc(c->nrcpts + 1, sizeof(*c->rcpts));
	for (unsigned i = 0; i < c->nrcpts; i++)
		c->rcpts[i] = xstrdup(env->rcpts[i]);
	if (env->tls_version) {
		snprintf(c->tls_version, sizeof(c->tls_version), "%s", env->tls_version);
		snprintf(c->tls_cipher, sizeof(c->tls_cipher), "%s",
		    env->tls_cipher ? env->tls_cipher : "");
		snprintf(c->tls, sizeof(c->tls), "%s %s", c->tls_version, c->tls_cipher);
	}
	c->upstream_tls = env->upstream_tls;
	snprintf(c->queue_id, sizeof(c->queue_id), "%012llx", (unsigned long long)env->session_id);
}

static void
env_free(struct envcopy *c)
{
	free(c->helo);
	free(c->mail_from);
	free(c->server_name);
	for (unsigned i = 0; i < c->nrcpts; i++)
		free(c->rcpts[i]);
	free(c->rcpts);
	memset(c, 0, sizeof(*c));
}

static void *
content_begin(const struct inspector *in, const struct inspect_envelope *env,
    const struct inspect_hooks *hooks, unsigned *flags)
{
	const struct action_rules *r;
	struct content_txn *t;
	bool av, spam;

	(void)in;
	if (env->action == NULL)
		return NULL;
	r = config_rules(env->action);
	av = r->antivirus != AV_OFF && msgscan_has_clamd();
	spam = r->spam && msgscan_has_rspamd();
	if (!inspects_content(r) && !av && !spam)
		return NULL;
	t = xcalloc(1, sizeof(*t));
	t->r = r;
	t->conf = env->conf;
	t->sid = env->session_id;
	t->inbound = env->inbound;
	t->worst = RULE_ALLOW;
	t->hooks = *hooks;
	t->scan = av || spam;
	t->keep = r->quarantine && (t->scan || may_refuse(r));
	if (spam)
		t->fields = xcalloc(CONTENT_FIELDS_MAX, sizeof(*t->fields));
	t->arch_entries_left = sniff_default_limits.max_entries;
	t->arch_bytes_left = sniff_default_limits.max_total;
	t->mp = mime_new(&mime_default_limits, mime_event, t);
	/* the scanners and the quarantine read the held copy; spam may add headers */
	t->hold = may_change(r) || t->scan || t->keep;
	if (t->hold)
		*flags |= INSPECT_F_HOLD;
	if (r->envelope_headers)
		envelope_headers(t, env);
	if (t->scan || t->keep)
		env_copy(&t->env, env);
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
	msgscan_free(t->ms);
	quarantine_write_cancel(t->qw);
	inspect_result_clear(&t->res);
	mime_free(t->mp);
	free(t->arch);
	free(t->env_headers);
	free(t->fields);
	env_free(&t->env);
	free(t);
}

/* ---------------------------------------------------------------- edits */

/* Edits collected in any order, then sorted and merged for the engine (inspect.h). */
struct pedit {
	uint64_t off, len;
	char *text;
	size_t textlen;
	unsigned seq; /* order of addition: the first of two edits of one range wins */
};

struct edits {
	struct pedit *e;
	unsigned n, cap;
	bool over;
};

static void
ed_add(struct edits *E, uint64_t off, uint64_t len, const char *text, size_t textlen)
{
	struct pedit *p;

	if (E->n >= 4 * INSPECT_MAX_EDITS) {
		E->over = true;
		return;
	}
	if (E->n == E->cap) {
		E->cap = E->cap ? E->cap * 2 : 16;
		E->e = xrealloc(E->e, E->cap * sizeof(*E->e));
	}
	p = &E->e[E->n];
	p->off = off;
	p->len = len;
	p->text = xmalloc(textlen + 1);
	memcpy(p->text, text, textlen);
	p->text[textlen] = '\0';
	p->textlen = textlen;
	p->seq = E->n++;
}

static void
ed_free(struct edits *E)
{
	for (unsigned i = 0; i < E->n; i++)
		free(E->e[i].text);
	free(E->e);
	memset(E, 0, sizeof(*E));
}

/* By offset; at one offset inserts (len 0) first; then in order of addition. */
static int
ed_cmp(const void *a, const void *b)
{
	const struct pedit *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	if ((x->len == 0) != (y->len == 0))
		return x->len == 0 ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Into res: inserts at one offset are joined (in order of addition) and
 * put in front of a replacement at that offset; of two edits of one
 * range (or overlapping ones) the first added stays.  -1 past the
 * engine's limits.
 */
static int
ed_finish(struct content_txn *t, struct edits *E, struct inspect_result *res)
{
	uint64_t prev_end = 0;
	char *pre = NULL;
	size_t prelen = 0;
	uint64_t preoff = 0;
	int rc = 0;

	if (E->over)
		return -1;
	if (E->n)
		qsort(E->e, E->n, sizeof(*E->e), ed_cmp);
	for (unsigned i = 0; i < E->n && rc == 0; i++) {
		struct pedit *p = &E->e[i];

		if (p->off < prev_end) {
			log_sid(LOG_LVL_DEBUG, t->sid, "inspect edit dropped off=%" PRIu64 " len=%" PRIu64
			    " (another change of the same octets)", p->off, p->len);
			continue;
		}
		if (p->len == 0) {
			/* gather the inserts at this offset */
			if (pre && preoff != p->off) {
				rc = inspect_result_edit(res, preoff, 0, pre, prelen);
				free(pre);
				pre = NULL;
				prelen = 0;
				if (rc < 0)
					break;
			}
			pre = xrealloc(pre, prelen + p->textlen + 1);
			memcpy(pre + prelen, p->text, p->textlen);
			prelen += p->textlen;
			preoff = p->off;
			continue;
		}
		if (pre && preoff == p->off) {
			char *both = xmalloc(prelen + p->textlen + 1);
			memcpy(both, pre, prelen);
			memcpy(both + prelen, p->text, p->textlen);
			rc = inspect_result_edit(res, p->off, p->len, both, prelen + p->textlen);
			free(both);
			free(pre);
			pre = NULL;
			prelen = 0;
		} else {
			if (pre) {
				rc = inspect_result_edit(res, preoff, 0, pre, prelen);
				free(pre);
				pre = NULL;
				prelen = 0;
				if (rc < 0)
					break;
			}
			rc = inspect_result_edit(res, p->off, p->len, p->text, p->textlen);
		}
		prev_end = p->off + p->len;
	}
	if (rc == 0 && pre)
		rc = inspect_result_edit(res, preoff, 0, pre, prelen);
	free(pre);
	return rc;
}

/* The text part that replaces a stripped one (whole CRLF lines). */
static size_t
deny_part(const struct content_txn *t, const struct strip *s, const char *virus,
    const char *recovery, char *out, size_t outsz)
{
	const char *tpl = t->r->deny_message[0] ? t->r->deny_message : tpl_default;
	struct tpl_vars v = {
		.reason = s->reason, .type = s->type, .filename = s->name, .virus = virus,
		.action = "stripped", .recovery = recovery,
	};
	char body[4096];
	size_t n = tpl_render(tpl, strlen(tpl), &v, TPL_BODY_ASCII, body, sizeof(body));
	int m = snprintf(out, outsz, "Content-Type: text/plain; charset=us-ascii\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n"
	    "Content-Disposition: inline\r\n\r\n%.*s\r\n", (int)n, body);

	return m > 0 && (size_t)m < outsz ? (size_t)m : 0;
}

/* Strips of the rules and of viruses, header strips, envelope headers. */
static int
rules_edits(struct content_txn *t, struct edits *E, const char *recovery,
    const struct msgscan_result *mr)
{
	uint64_t total = mime_offset(t->mp);

	/* a virus's replacement text first: of two strips of one part it is the one kept */
	for (unsigned i = 0; mr && i < t->nstrips; i++) {
		const struct strip *s = &t->strips[i];
		const char *virus = NULL;
		char text[6000];
		size_t n;

		for (unsigned k = 0; k < mr->ninfected; k++)
			if (mr->infected[k].off == s->off)
				virus = mr->infected[k].virus;
		if (virus == NULL)
			continue;
		n = deny_part(t, s, virus, recovery, text, sizeof(text));
		if (n == 0 || s->end < s->off)
			return -1;
		ed_add(E, s->off, (s->end + 2 <= total ? s->end + 2 : s->end) - s->off, text, n);
	}
	for (unsigned i = 0; i < t->nstrips; i++) {
		const struct strip *s = &t->strips[i];
		char text[6000];
		size_t n = deny_part(t, s, NULL, recovery, text, sizeof(text));

		/* [off_start, off_end) plus the CRLF before the next delimiter: whole lines */
		if (n == 0 || s->end < s->off)
			return -1;
		ed_add(E, s->off, (s->end + 2 <= total ? s->end + 2 : s->end) - s->off, text, n);
	}
	for (unsigned i = 0; i < t->nhdrstrips; i++)
		ed_add(E, t->hdrstrips[i].off, t->hdrstrips[i].end - t->hdrstrips[i].off, "", 0);
	if (t->env_headers && t->env_len)
		ed_add(E, 0, 0, t->env_headers, t->env_len);
	return 0;
}

/* A marked spam: its headers (ours and rspamd's), forged ones removed, the subject. */
static int
spam_edits(struct content_txn *t, struct edits *E, const struct rspamd_result *rr,
    const struct sp_spam *sp)
{
	char hdrs[8192], subj[4096];
	size_t n = scanpolicy_spam_headers(rr, sp->level, hdrs, sizeof(hdrs));
	bool subject_done = false;

	if (n == 0)
		return -1;
	for (unsigned i = 0; i < t->nfields; i++) {
		const struct field *f = &t->fields[i];

		if (scanpolicy_replaced_header(rr, f->name, strlen(f->name))) {
			ed_add(E, f->off, f->end - f->off, "", 0);
		} else if (sp->subject && !subject_done && !strcasecmp(f->name, "Subject")) {
			size_t m = scanpolicy_subject_field(rr->subject, subj, sizeof(subj));
			if (m == 0)
				return -1;
			ed_add(E, f->off, f->end - f->off, subj, m);
			subject_done = true;
		}
	}
	if (sp->subject && !subject_done) {
		size_t m = scanpolicy_subject_field(rr->subject, subj, sizeof(subj));
		if (m == 0)
			return -1;
		ed_add(E, 0, 0, subj, m);
	}
	ed_add(E, 0, 0, hdrs, n);
	return 0;
}

/* A strip for a part clamd found a virus in (from the part scans). */
static bool
add_virus_strip(struct content_txn *t, const struct msgscan_part *p)
{
	for (unsigned i = 0; i < t->nstrips; i++)
		if (t->strips[i].off == p->off)
			return true; /* the rules strip it already (the virus's text wins) */
	if (t->nstrips == CONTENT_STRIPS_MAX)
		return false;
	struct strip *s = &t->strips[t->nstrips++];
	s->off = p->off;
	s->end = p->end;
	snprintf(s->type, sizeof(s->type), "%s", p->type);
	snprintf(s->name, sizeof(s->name), "%s", p->name);
	snprintf(s->reason, sizeof(s->reason), "virus %.100s", p->virus);
	return true;
}

/* ------------------------------------------------------------ the verdict */

/* "CODE " + the deny message's first line (its reply form). */
static void
deny_reply(const struct content_txn *t, struct inspect_result *res, const char *code,
    const struct tpl_vars *v)
{
	const char *tpl = t->r->deny_message[0] ? t->r->deny_message : tpl_default;
	const char *nl = strchr(tpl, '\n');
	char text[sizeof(res->reply) - 24];

	tpl_render(tpl, nl ? (size_t)(nl - tpl) : strlen(tpl), v, TPL_REPLY, text, sizeof(text));
	snprintf(res->reply, sizeof(res->reply), "%s %.*s", code, (int)sizeof(text) - 1, text);
}

static void
refuse_as(struct inspect_result *res, enum sp_action a, const char *reason)
{
	res->verdict = INSPECT_DENY;
	res->close = a == SP_DROP || a == SP_BLOCK;
	res->block = a == SP_BLOCK;
	snprintf(res->reason, sizeof(res->reason), "%s", reason);
}

static enum quarantine_verdict
qverdict_of(enum sp_action a)
{
	return a == SP_BLOCK ? QV_BLOCK : a == SP_DROP ? QV_DROP : a == SP_STRIP ? QV_STRIP :
	    QV_DENY;
}

/* The rules refused: the reply, and what the quarantine records. */
static void
rules_refusal(struct content_txn *t, struct inspect_result *res)
{
	struct tpl_vars v = {
		.reason = t->reason, .type = t->vtype, .filename = t->vname,
		.action = t->worst == RULE_DENY ? "denied" : "dropped",
	};
	enum sp_action a = t->worst == RULE_BLOCK ? SP_BLOCK : t->worst == RULE_DROP ? SP_DROP :
	    SP_DENY;

	memset(res, 0, sizeof(*res));
	deny_reply(t, res, "554 5.7.1", &v);
	refuse_as(res, a, rule_action_name(t->worst));
	t->qverdict = qverdict_of(a);
	snprintf(t->qreason, sizeof(t->qreason), "%s", t->reason);
	stats_add(STAT_DENIED, 1);
}

/* The allowed message's changes into res; a failure is a tempfail. */
static void
allow_with_edits(struct content_txn *t, struct inspect_result *res,
    const struct msgscan_result *mr, const struct sp_spam *sp, const char *qid)
{
	struct edits E = { 0 };
	char recovery[200];
	int rc;

	memset(res, 0, sizeof(*res));
	res->verdict = INSPECT_ALLOW;
	if (t->keep && t->nstrips)
		snprintf(recovery, sizeof(recovery), "The original is kept in quarantine as %s: ask "
		    "your administrator to release it.", qid);
	else
		snprintf(recovery, sizeof(recovery), "Ask the sender to send the file another way.");
	rc = rules_edits(t, &E, recovery, mr);
	if (rc == 0 && sp && sp->action == SP_MARK && mr)
		rc = spam_edits(t, &E, &mr->spam, sp);
	if (rc == 0)
		rc = ed_finish(t, &E, res);
	ed_free(&E);
	if (rc < 0) {
		inspect_result_clear(res);
		res->verdict = INSPECT_TEMPFAIL;
		snprintf(res->reply, sizeof(res->reply),
		    "451 4.7.1 The message could not be changed as the policy requires");
		snprintf(res->reason, sizeof(res->reason), "edit-failed");
		return;
	}
	if (t->nstrips) {
		snprintf(res->reason, sizeof(res->reason), "stripped=%u", t->nstrips);
		t->qverdict = QV_STRIP;
		snprintf(t->qreason, sizeof(t->qreason), "%s", t->strips[0].reason);
		t->strip_kept = t->keep;
		stats_add(STAT_STRIPPED, 1);
	}
}

static void quarantine_done(void *arg, int err, const char *id);

/* The verdict to the engine; the transaction is over. */
static void
deliver(struct content_txn *t)
{
	struct inspect_hooks h = t->hooks;

	h.verdict(h.ctx, &t->res);
	txn_free(t);
}

/* Keep the original (res is the verdict that follows), or deliver at once. */
static void
keep_or_deliver(struct content_txn *t, const char *qid)
{
	struct hold *h = t->hooks.held ? t->hooks.held(t->hooks.ctx) : NULL;
	const struct config *c = t->conf;
	struct qrec rec;

	if (!t->keep || h == NULL || c == NULL) {
		if (t->keep)
			log_sid(LOG_LVL_ERR, t->sid, "quarantine error=\"the message was not held\"");
		if (t->strip_kept) {
			/* the stripped part would be lost */
			inspect_result_clear(&t->res);
			t->res.verdict = INSPECT_TEMPFAIL;
			snprintf(t->res.reply, sizeof(t->res.reply), "451 4.3.0 The message could not "
			    "be kept in quarantine, try again later");
			snprintf(t->res.reason, sizeof(t->res.reason), "quarantine-failed");
		}
		deliver(t);
		return;
	}
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.id, sizeof(rec.id), "%s", qid);
	rec.time = time(NULL);
	rec.session = t->sid;
	rec.action = t->env.action;
	rec.inbound = t->inbound;
	rec.client = t->env.client;
	rec.server = t->env.server;
	rec.server_name = t->env.server_name;
	rec.server_tls = t->env.upstream_tls;
	rec.client_tls = t->env.tls;
	rec.helo = t->env.helo;
	rec.mail_from = t->env.mail_from;
	rec.rcpts = (const char *const *)t->env.rcpts;
	rec.nrcpts = t->env.nrcpts;
	rec.verdict = t->qverdict;
	rec.reason = t->qreason;
	rec.virus = t->qvirus;
	rec.spam_score = t->qscore;
	rec.reply = t->res.verdict == INSPECT_ALLOW ? "" : t->res.reply;
	t->qw = quarantine_write(c->quarantine_dir, c->quarantine_max_size, &rec, h, t->strip_kept,
	    quarantine_done, t);
}

static void
quarantine_done(void *arg, int err, const char *id)
{
	struct content_txn *t = arg;

	t->qw = NULL;
	if (err) {
		stats_add(STAT_QUARANTINE_FAILED, 1);
		log_sid(LOG_LVL_ERR, t->sid, "quarantine error=\"%s\" id=%s verdict=%s%s",
		    strerror(err), id, quarantine_verdict_name(t->qverdict),
		    t->strip_kept ? " (tempfail: the stripped part would be lost)" :
		    " (refused anyway: the sender keeps it)");
		if (t->strip_kept) {
			inspect_result_clear(&t->res);
			t->res.verdict = INSPECT_TEMPFAIL;
			snprintf(t->res.reply, sizeof(t->res.reply), "451 4.3.0 The message could not "
			    "be kept in quarantine, try again later");
			snprintf(t->res.reason, sizeof(t->res.reason), "quarantine-failed");
		}
	} else {
		char q[LOG_QUOTE_SIZE(120)];

		stats_add(STAT_QUARANTINED, 1);
		log_sid(LOG_LVL_INFO, t->sid, "quarantine kept id=%s verdict=%s reason=%s", id,
		    quarantine_verdict_name(t->qverdict), log_quote_str(q, sizeof(q), t->qreason));
	}
	deliver(t);
}

static unsigned qseq; /* quarantine IDs of this worker */

static void
new_qid(const struct content_txn *t, char *out)
{
	quarantine_make_id(out, time(NULL), t->sid, ++qseq);
}

/* The scanners answered: merge their outcomes with the rules', then keep and deliver. */
static void
scan_done(void *arg)
{
	struct content_txn *t = arg;
	const struct msgscan_result *mr = msgscan_result(t->ms);
	struct sp_av av = { .action = SP_PASS, .why = "-" };
	struct sp_spam sp = { .action = SP_PASS, .level = "-" };
	enum sp_action rules = t->nstrips ? SP_STRIP : SP_PASS, final;
	char qid[QUARANTINE_ID_MAX], vq[LOG_QUOTE_SIZE(CLAMD_VIRUS_MAX)];
	char rq[LOG_QUOTE_SIZE(SCANNER_ERROR_MAX)], sq[LOG_QUOTE_SIZE(SCANNER_ERROR_MAX)];
	bool strip_failed = false;

	new_qid(t, qid);
	if (mr->av_asked)
		scanpolicy_av(t->r, mr->av, mr->virus, &av);
	if (mr->spam_asked)
		scanpolicy_spam(t->r, &mr->spam, &sp);
	if (av.action == SP_STRIP) {
		bool ok = mr->located;
		for (unsigned i = 0; ok && i < mr->ninfected; i++)
			ok = mr->infected[i].index != 0 && add_virus_strip(t, &mr->infected[i]);
		if (!ok) {
			/* where it is, is not known (or it is the message itself): refused */
			av.action = SP_DENY;
			strip_failed = true;
		}
	}
	log_sid(LOG_LVL_INFO, t->sid, "inspect scan av=%s%s%s%s av-server=%s av-ms=%" PRIu64
	    " parts=%u%s%s spam=%s spam-action=%s score=%.2f required=%.2f%s%s",
	    mr->av_asked ? av.why : "off", av.virus ? " virus=" : "",
	    av.virus ? log_quote_str(vq, sizeof(vq), mr->virus) : "",
	    strip_failed ? " strip=not-possible" : "", mr->av_server[0] ? mr->av_server : "-",
	    mr->av_ms, mr->parts_scanned, mr->av_reason[0] ? " av-reason=" : "",
	    mr->av_reason[0] ? log_quote_str(rq, sizeof(rq), mr->av_reason) : "",
	    mr->spam_asked ? sp.level : "off",
	    mr->spam_asked && mr->spam.status == RSPAMD_CHECKED ?
	    rspamd_action_name(mr->spam.action) : "-", mr->spam.score, mr->spam.required_score,
	    mr->spam.reason[0] ? " spam-reason=" : "",
	    mr->spam.reason[0] ? log_quote_str(sq, sizeof(sq), mr->spam.reason) : "");
	if (av.virus) {
		stats_add(STAT_VIRUSES, 1);
		stats_add(STAT_ALARMS, 1);
		log_alarm(t->sid, "virus=%s action=%s from=<%s> client=%s", vq,
		    sp_action_name(av.action), t->env.mail_from, t->env.client);
	}
	if (av.unscanned || sp.unscanned)
		stats_add(STAT_UNSCANNED, 1);
	if (mr->av_asked && mr->virus[0])
		snprintf(t->qvirus, sizeof(t->qvirus), "%s", mr->virus);
	if (mr->spam_asked && mr->spam.status == RSPAMD_CHECKED)
		snprintf(t->qscore, sizeof(t->qscore), "%.2f/%.2f", mr->spam.score,
		    mr->spam.required_score);

	final = scanpolicy_worse(scanpolicy_worse(rules, av.action), sp.action);
	memset(&t->res, 0, sizeof(t->res));
	switch (final) {
	case SP_DENY:
	case SP_DROP:
	case SP_BLOCK: {
		char reason[200], recovery[200];
		struct tpl_vars v = { .reason = reason, .recovery = recovery,
		    .action = final == SP_DENY ? "denied" : "dropped" };

		snprintf(recovery, sizeof(recovery), "Quarantine ID: %s", qid);
		if (av.action == final && av.virus) {
			snprintf(reason, sizeof(reason), "virus %s found", mr->virus);
			v.virus = mr->virus;
			deny_reply(t, &t->res, "554 5.7.1", &v);
			refuse_as(&t->res, final, "virus");
		} else if (av.action == final) {
			snprintf(t->res.reply, sizeof(t->res.reply), "554 5.7.1 Message rejected: it "
			    "could not be scanned for viruses (%s)", av.why);
			snprintf(reason, sizeof(reason), "not scanned for viruses: %s", av.why);
			refuse_as(&t->res, final, "av-error");
		} else {
			snprintf(reason, sizeof(reason), "spam (score %.2f, %s)", mr->spam.score,
			    sp.level);
			deny_reply(t, &t->res, t->r->spam_reject_code, &v);
			refuse_as(&t->res, final, "spam");
			stats_add(STAT_SPAM_REJECTED, 1);
		}
		snprintf(t->qreason, sizeof(t->qreason), "%s", reason);
		t->qverdict = qverdict_of(final);
		stats_add(STAT_DENIED, 1);
		break;
	}
	case SP_TEMPFAIL:
		t->res.verdict = INSPECT_TEMPFAIL;
		if (av.action == SP_TEMPFAIL) {
			snprintf(t->res.reply, sizeof(t->res.reply), "451 4.7.1 Message not delivered: "
			    "%s, try again later", !strcmp(av.why, "unavailable") ?
			    "the virus scanner is unavailable" : "it could not be scanned for viruses");
			snprintf(t->res.reason, sizeof(t->res.reason), "av-%s", av.why);
		} else {
			snprintf(t->res.reply, sizeof(t->res.reply), "451 4.7.1 Message not delivered: "
			    "%s, try again later", sp.unscanned || !strcmp(sp.level, "unavailable") ||
			    !strcmp(sp.level, "error") ? "the spam filter is unavailable" :
			    "deferred by the spam filter");
			snprintf(t->res.reason, sizeof(t->res.reason), "spam-%s", sp.level);
		}
		stats_add(STAT_SCAN_TEMPFAIL, 1);
		t->keep = false; /* the sender keeps it and retries */
		break;
	case SP_PASS:
	case SP_MARK:
	case SP_STRIP:
		allow_with_edits(t, &t->res, mr, &sp, qid);
		if (sp.action == SP_MARK && t->res.verdict == INSPECT_ALLOW)
			stats_add(STAT_SPAM_MARKED, 1);
		if (!t->nstrips)
			t->keep = false;
		break;
	}
	msgscan_free(t->ms);
	t->ms = NULL;
	keep_or_deliver(t, qid);
}

static int
content_end(void *txn, struct inspect_result *res)
{
	struct content_txn *t = txn;
	char qid[QUARANTINE_ID_MAX];

	memset(res, 0, sizeof(*res));
	res->verdict = INSPECT_ALLOW;
	if (t == NULL)
		return INSPECT_DONE;
	mime_finish(t->mp);
	if (t->worst == RULE_DENY || t->worst == RULE_DROP || t->worst == RULE_BLOCK) {
		/* refused by the rules: no scanner needs to see it */
		rules_refusal(t, &t->res);
		if (t->keep) {
			new_qid(t, qid);
			keep_or_deliver(t, qid); /* its done() comes from the loop */
			return INSPECT_PENDING;
		}
		inspect_result_move(res, &t->res);
		txn_free(t);
		return INSPECT_DONE;
	}
	if (t->scan) {
		struct hold *h = t->hooks.held ? t->hooks.held(t->hooks.ctx) : NULL;
		struct rspamd_envelope renv = {
			.client = t->env.has_client ? &t->env.client_sa : NULL,
			.helo = t->env.helo,
			.mail_from = t->env.mail_from,
			.rcpts = (const char *const *)t->env.rcpts,
			.nrcpts = (int)t->env.nrcpts,
			.queue_id = t->env.queue_id,
			.tls_version = t->env.tls_version[0] ? t->env.tls_version : NULL,
			.tls_cipher = t->env.tls_cipher[0] ? t->env.tls_cipher : NULL,
			.mta_name = "smtpgw",
		};
		struct msgscan_req req = {
			.sid = t->sid,
			.hold = h,
			.av = msgscan_has_clamd() ? t->r->antivirus : AV_OFF,
			.locate = t->r->antivirus == AV_MESSAGE && t->r->av_on_virus == RULE_STRIP,
			.spam = t->r->spam && msgscan_has_rspamd(),
			.env = &renv,
		};

		if (h == NULL) {
			log_sid(LOG_LVL_ERR, t->sid, "inspect error=\"the message was not held for "
			    "the scanners\"");
			res->verdict = INSPECT_TEMPFAIL;
			snprintf(res->reply, sizeof(res->reply),
			    "451 4.3.0 Error: content inspection failed, try again later");
			snprintf(res->reason, sizeof(res->reason), "not-held");
			txn_free(t);
			return INSPECT_DONE;
		}
		t->ms = msgscan_start(&req, scan_done, t);
		return INSPECT_PENDING;
	}
	new_qid(t, qid);
	allow_with_edits(t, &t->res, NULL, NULL, qid);
	if (t->nstrips && t->keep && t->res.verdict == INSPECT_ALLOW) {
		keep_or_deliver(t, qid);
		return INSPECT_PENDING;
	}
	inspect_result_move(res, &t->res);
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
