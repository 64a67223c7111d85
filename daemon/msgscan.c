/*
 * msgscan - clamd and rspamd asked about one held message (see msgscan.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev.h"
#include "log.h"
#include "mime.h"
#include "msgscan.h"
#include "stats.h"
#include "util.h"

/* ------------------------------------------------------------ the worker's pools */

static struct clamd_pool *clamd_pool;
static struct rspamd_pool *rspamd_pool;
static struct ev_timer publish_timer;

static void
publish(struct ev_timer *t)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f != NULL) {
		if (clamd_pool)
			clamd_pool_status(clamd_pool, f);
		if (rspamd_pool)
			rspamd_pool_status(rspamd_pool, f);
		if (fclose(f) == 0)
			stats_scan_publish(text, len);
		free(text);
	}
	if (t)
		ev_timer_arm(t, STATS_SCAN_PUBLISH_MS, publish);
}

void
msgscan_worker_init(const struct config *c)
{
	if (c->clamd.n_servers > 0)
		clamd_pool = clamd_pool_new(&c->clamd);
	if (c->rspamd.n_servers > 0)
		rspamd_pool = rspamd_pool_new(&c->rspamd);
	if (clamd_pool || rspamd_pool) {
		publish(NULL);
		ev_timer_arm(&publish_timer, STATS_SCAN_PUBLISH_MS, publish);
	}
}

void
msgscan_worker_free(void)
{
	ev_timer_cancel(&publish_timer);
	stats_scan_publish("", 0);
	clamd_pool_free(clamd_pool);
	rspamd_pool_free(rspamd_pool);
	clamd_pool = NULL;
	rspamd_pool = NULL;
}

bool
msgscan_has_clamd(void)
{
	return clamd_pool != NULL;
}

bool
msgscan_has_rspamd(void)
{
	return rspamd_pool != NULL;
}

/* ------------------------------------------------------------ one message */

/* A part scan of "attachments" (or of locate). */
struct pjob {
	struct pjob *next;
	struct msgscan *m;
	struct clamd_scan *s;
	struct msgscan_part part;
	char *pending;        /* decoded octets that came before the scan could start */
	size_t plen, pcap;
	bool started, ended, busy, finished, fed_done;
};

struct msgscan {
	struct msgscan_req req;
	msgscan_done_fn *done;
	void *arg;
	struct msgscan_result res;
	struct ev_timer step;     /* pumps and the final report run from the loop */
	/* the whole message to clamd */
	struct clamd_scan *cs;
	uint64_t coff;
	bool cbusy, cended, cdone;
	/* to rspamd */
	struct rspamd_scan *rs;
	uint64_t soff;
	bool sbusy, sended, sdone;
	/* the part scans */
	bool parts_on, parts_done;
	struct mime_parser *mp;
	uint64_t aoff;
	bool afinished;           /* mime_finish() was called */
	struct pjob *jobs, **jtail; /* in part order: started ones, then waiting ones */
	struct pjob *cur;         /* the leaf being parsed (its BODY events go here) */
	unsigned active;          /* started and not finished */
	enum clamd_status parts_status;
	bool parts_failed;        /* a part had no verdict */
	uint64_t started_ms;
	bool reported;
};

static void pump(struct msgscan *m);
static void step(struct ev_timer *t);

/* Go on from the loop (callbacks never pump directly: no re-entrance). */
static void
kick(struct msgscan *m)
{
	if (!m->reported)
		ev_timer_arm(&m->step, 0, step);
}

/* Severity of a clamd outcome for merging parts: a virus first, then failures. */
static int
av_rank(enum clamd_status s)
{
	switch (s) {
	case CLAMD_INFECTED: return 4;
	case CLAMD_ERROR: return 3;
	case CLAMD_TOO_LARGE: return 2;
	case CLAMD_UNAVAILABLE: return 1;
	case CLAMD_CLEAN: return 0;
	}
	return 3;
}

/* ---- the whole message ---- */

static void
whole_done(void *arg, const struct clamd_result *r)
{
	struct msgscan *m = arg;

	m->cs = NULL;
	m->cdone = true;
	m->res.av = r->status;
	snprintf(m->res.virus, sizeof(m->res.virus), "%s", r->virus);
	snprintf(m->res.av_reason, sizeof(m->res.av_reason), "%s", r->reason);
	snprintf(m->res.av_server, sizeof(m->res.av_server), "%s", r->server ? r->server : "");
	m->res.av_ms = r->elapsed_ms;
	/* locate: which parts carry it (their scans start now) */
	if (r->status == CLAMD_INFECTED && m->req.locate)
		m->parts_on = true;
	kick(m);
}

static void
whole_resume(void *arg)
{
	struct msgscan *m = arg;

	m->cbusy = false;
	kick(m);
}

static void
spam_done(void *arg, const struct rspamd_result *r)
{
	struct msgscan *m = arg;

	m->rs = NULL;
	m->sdone = true;
	m->res.spam = *r;
	kick(m);
}

static void
spam_resume(void *arg)
{
	struct msgscan *m = arg;

	m->sbusy = false;
	kick(m);
}

/*
 * Feed one scan from the hold at *off until it is busy or all is in.
 * Returns -1 when the hold cannot be read (the scan fails then).
 */
static int
feed_from_hold(struct msgscan *m, uint64_t *off, bool *busy, bool *ended, bool clamd)
{
	while (!*busy && !*ended) {
		const char *p;
		ssize_t n = hold_read(m->req.hold, *off, HOLD_IO_BUF, &p);
		int rc;

		if (n < 0)
			return -1;
		if (n == 0) {
			*ended = true;
			if (clamd)
				clamd_scan_end(m->cs);
			else
				rspamd_scan_end(m->rs);
			return 0;
		}
		rc = clamd ? clamd_scan_feed(m->cs, p, (size_t)n) : rspamd_scan_feed(m->rs, p,
		    (size_t)n);
		*off += (uint64_t)n;
		if (rc == SCANNER_FEED_DONE)
			*ended = true; /* the outcome is on its way */
		else if (rc == SCANNER_FEED_BUSY)
			*busy = true;
	}
	return 0;
}

/* ---- part scans ---- */

static void job_start(struct pjob *j);

static void
job_free(struct pjob *j)
{
	if (j->s)
		clamd_scan_cancel(j->s);
	free(j->pending);
	free(j);
}

static void
part_done(void *arg, const struct clamd_result *r)
{
	struct pjob *j = arg;
	struct msgscan *m = j->m;

	j->s = NULL;
	j->finished = true;
	m->active--;
	m->res.parts_scanned++;
	if (r->status != CLAMD_CLEAN && r->status != CLAMD_INFECTED)
		m->parts_failed = true;
	if (av_rank(r->status) > av_rank(m->parts_status))
		m->parts_status = r->status;
	if (r->status == CLAMD_INFECTED) {
		log_sid(LOG_LVL_INFO, m->req.sid, "scan clamd part=%u virus=%s server=%s",
		    j->part.index, r->virus, r->server ? r->server : "-");
		if (m->res.ninfected < MSGSCAN_INFECTED_MAX) {
			struct msgscan_part *ip = &m->res.infected[m->res.ninfected++];
			*ip = j->part;
			snprintf(ip->virus, sizeof(ip->virus), "%s", r->virus);
		} else {
			m->parts_failed = true; /* too many to strip: not located */
		}
		if (m->res.virus[0] == '\0')
			snprintf(m->res.virus, sizeof(m->res.virus), "%s", r->virus);
	} else if (r->status != CLAMD_CLEAN) {
		if (m->res.av_reason[0] == '\0')
			snprintf(m->res.av_reason, sizeof(m->res.av_reason), "part %u: %.120s",
			    j->part.index, r->reason);
	}
	if (r->server && m->res.av_server[0] == '\0')
		snprintf(m->res.av_server, sizeof(m->res.av_server), "%s", r->server);
	kick(m);
}

static void
part_resume(void *arg)
{
	struct pjob *j = arg;

	j->busy = false;
	kick(j->m);
}

static void
job_feed(struct pjob *j, const unsigned char *p, size_t n)
{
	int rc;

	if (j->fed_done || j->finished || n == 0)
		return;
	rc = clamd_scan_feed(j->s, (const char *)p, n);
	if (rc == SCANNER_FEED_DONE)
		j->fed_done = true;
	else if (rc == SCANNER_FEED_BUSY)
		j->busy = true;
}

static void
job_start(struct pjob *j)
{
	j->started = true;
	j->m->active++;
	j->s = clamd_scan_start(clamd_pool, j->m->req.sid, part_done, part_resume, j);
	job_feed(j, (const unsigned char *)j->pending, j->plen);
	free(j->pending);
	j->pending = NULL;
	j->plen = j->pcap = 0;
	if (j->ended && !j->fed_done)
		clamd_scan_end(j->s);
}

static void
job_take(struct pjob *j, const unsigned char *p, size_t n)
{
	if (j->started) {
		job_feed(j, p, n);
		return;
	}
	if (j->plen + n > j->pcap) {
		size_t cap = j->pcap ? j->pcap : 4096;
		while (cap < j->plen + n)
			cap *= 2;
		j->pending = xrealloc(j->pending, cap);
		j->pcap = cap;
	}
	memcpy(j->pending + j->plen, p, n);
	j->plen += n;
}

static void
part_event(void *arg, const struct mime_event *ev)
{
	struct msgscan *m = arg;
	const struct mime_part *p = ev->part;
	struct pjob *j;

	switch (ev->kind) {
	case MIME_EV_PART_BEGIN:
		if (p->multipart || p->message)
			return;
		j = xcalloc(1, sizeof(*j));
		j->m = m;
		j->part.index = p->index;
		j->part.off = p->off_start;
		j->part.depth = p->depth;
		snprintf(j->part.type, sizeof(j->part.type), "%s", p->type);
		snprintf(j->part.name, sizeof(j->part.name), "%s", p->nnames ? p->names[0] : "");
		*m->jtail = j;
		m->jtail = &j->next;
		m->cur = j;
		if (m->active < MSGSCAN_PARTS_AT_ONCE) {
			/* nothing waits before it (the parse stops while a part waits) */
			job_start(j);
		}
		return;
	case MIME_EV_BODY:
		if (m->cur && m->cur->part.index == p->index)
			job_take(m->cur, ev->data, ev->len);
		return;
	case MIME_EV_PART_END:
		if (m->cur == NULL || m->cur->part.index != p->index)
			return;
		m->cur->part.end = p->off_end;
		m->cur->ended = true;
		if (m->cur->started && !m->cur->fed_done && !m->cur->finished)
			clamd_scan_end(m->cur->s);
		m->cur = NULL;
		return;
	case MIME_EV_HEADER:
	case MIME_EV_ANOMALY:
		return;
	}
}

/* Start waiting jobs while there is room; drop finished ones from the list. */
static void
jobs_advance(struct msgscan *m)
{
	struct pjob **pp = &m->jobs;

	while (*pp) {
		struct pjob *j = *pp;

		if (j->finished) {
			*pp = j->next;
			if (m->jtail == &j->next)
				m->jtail = pp;
			if (m->cur == j)
				m->cur = NULL; /* the rest of its body is not wanted */
			job_free(j);
			continue;
		}
		if (!j->started && m->active < MSGSCAN_PARTS_AT_ONCE)
			job_start(j);
		pp = &j->next;
	}
}

/* May the parse go on?  Not while a part waits to start or a started one is busy. */
static bool
parse_may_go(const struct msgscan *m)
{
	for (const struct pjob *j = m->jobs; j; j = j->next)
		if (!j->started || (j->busy && !j->finished))
			return false;
	return true;
}

static void
parts_pump(struct msgscan *m)
{
	if (m->mp == NULL) {
		m->mp = mime_new(&mime_default_limits, part_event, m);
		m->jtail = &m->jobs;
		m->parts_status = CLAMD_CLEAN;
	}
	jobs_advance(m);
	while (!m->afinished && parse_may_go(m)) {
		const char *p;
		ssize_t n = hold_read(m->req.hold, m->aoff, MSGSCAN_READ, &p);

		if (n < 0) {
			m->parts_failed = true;
			if (av_rank(CLAMD_ERROR) > av_rank(m->parts_status))
				m->parts_status = CLAMD_ERROR;
			snprintf(m->res.av_reason, sizeof(m->res.av_reason), "spool read error");
			n = 0;
		}
		if (n == 0) {
			mime_finish(m->mp);
			m->afinished = true;
			break;
		}
		mime_feed(m->mp, p, (size_t)n);
		m->aoff += (uint64_t)n;
		jobs_advance(m);
	}
	jobs_advance(m);
	if (m->afinished && m->jobs == NULL)
		m->parts_done = true;
}

/* ---- the whole thing ---- */

static bool
all_done(const struct msgscan *m)
{
	if (m->cs || (m->req.av == AV_MESSAGE && !m->cdone))
		return false;
	if (m->parts_on && !m->parts_done)
		return false;
	if (m->req.spam && !m->sdone)
		return false;
	return true;
}

static void
report(struct msgscan *m)
{
	struct msgscan_result *r = &m->res;

	if (m->parts_on) {
		if (m->req.av == AV_ATTACHMENTS) {
			r->av = m->parts_status;
			r->located = r->ninfected > 0 && !m->parts_failed;
		} else {
			/* locate after a whole-message finding: the message's verdict stands */
			r->located = r->ninfected > 0 && !m->parts_failed;
		}
	}
	/* the part scans' time is the whole run's (the message scan's is clamd's own) */
	if (r->av_asked && m->parts_on)
		r->av_ms = now_ms() - m->started_ms;
	m->reported = true;
	m->done(m->arg);
}

static void
pump(struct msgscan *m)
{
	if (m->reported)
		return;
	if (m->cs && !m->cended && feed_from_hold(m, &m->coff, &m->cbusy, &m->cended, true) < 0) {
		clamd_scan_cancel(m->cs);
		m->cs = NULL;
		m->cdone = true;
		m->res.av = CLAMD_ERROR;
		snprintf(m->res.av_reason, sizeof(m->res.av_reason), "spool read error");
	}
	if (m->rs && !m->sended && feed_from_hold(m, &m->soff, &m->sbusy, &m->sended, false) < 0) {
		rspamd_scan_cancel(m->rs);
		m->rs = NULL;
		m->sdone = true;
		m->res.spam.status = RSPAMD_ERROR;
		snprintf(m->res.spam.reason, sizeof(m->res.spam.reason), "spool read error");
	}
	if (m->parts_on && !m->parts_done)
		parts_pump(m);
	if (all_done(m))
		report(m);
}

static void
step(struct ev_timer *t)
{
	pump(container_of(t, struct msgscan, step));
}

struct msgscan *
msgscan_start(const struct msgscan_req *req, msgscan_done_fn *done, void *arg)
{
	struct msgscan *m = xcalloc(1, sizeof(*m));

	m->req = *req;
	m->req.env = NULL;
	m->done = done;
	m->arg = arg;
	m->started_ms = now_ms();
	if (req->av != AV_OFF && clamd_pool) {
		m->res.av_asked = true;
		m->res.av = CLAMD_CLEAN;
		if (req->av == AV_MESSAGE)
			m->cs = clamd_scan_start(clamd_pool, req->sid, whole_done, whole_resume, m);
		else
			m->parts_on = true;
	} else {
		m->req.av = AV_OFF;
	}
	if (req->spam && rspamd_pool) {
		m->res.spam_asked = true;
		m->rs = rspamd_scan_start(rspamd_pool, req->sid, req->env, req->hold->size, spam_done,
		    spam_resume, m);
	} else {
		m->req.spam = false;
	}
	/* the first feeding, like every later one, from the loop */
	ev_timer_arm(&m->step, 0, step);
	return m;
}

const struct msgscan_result *
msgscan_result(const struct msgscan *m)
{
	return &m->res;
}

void
msgscan_free(struct msgscan *m)
{
	if (m == NULL)
		return;
	ev_timer_cancel(&m->step);
	clamd_scan_cancel(m->cs);
	rspamd_scan_cancel(m->rs);
	while (m->jobs) {
		struct pjob *j = m->jobs;
		m->jobs = j->next;
		job_free(j);
	}
	mime_free(m->mp);
	free(m);
}
