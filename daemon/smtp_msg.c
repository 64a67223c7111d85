/*
 * smtp_msg - the message side of the SMTP engine: the mail transaction,
 * DATA and BDAT framed line by line (smtp_data.c) into the inspector and
 * upstream, BDAT converted to DATA for destinations without CHUNKING, and
 * the end of data, which goes upstream only after the verdict (msg_end).
 *
 * Two ways a message travels (chosen when the inspection begins, at DATA
 * or the first BDAT):
 *  - streamed: each line goes upstream as it arrives; only the end of
 *    data waits for the verdict.  A refused or denied message is
 *    discarded by closing the upstream connection without its end (the
 *    one way to abort DATA); smtp_upstream.c then reconnects, so the
 *    session's next transaction is delivered.
 *  - held (the inspector may change it, or hold = always): the upstream
 *    gets a NOOP where DATA would go (its reply tells whether any
 *    recipient was accepted, in order with the RCPT replies) and nothing
 *    else; the message is kept (hold.h); after the verdict the held
 *    copy, with the inspector's edits, goes up as DATA -- or, denied, an
 *    RSET discards the destination's transaction.  An upstream idle
 *    meanwhile gets a NOOP now and then (keepalive_ms).
 *
 * The verdict may come later (inspect.h): the client's end-of-data entry
 * stays unanswered in the reply FIFO (SP_VERDICT) and the client's next
 * commands wait in its buffer, the client's timer stopped (smtpgw is the
 * one waiting); the wait is bounded by inspect-timeout, after which
 * inspect-timeout-action applies.  An inspector that asks for a pause
 * (INSPECT_BUSY) pauses the client the same way, under the same bound.
 *
 * The inspector sees the same octets in batches: the lines framed from
 * one read are staged (t->stage) and handed over in one body() call when
 * the read is done, when the stage is full, and before the end (msg_end);
 * a transaction that is cancelled drops what was staged.
 *
 * Flow control: a streamed line is appended to the upstream's output only
 * when there is room for a whole line (upstream_has_room); otherwise the
 * client leg is paused and the upstream's IO_LOWAT resumes it.  A held
 * message's release is paced by IO_LOWAT the same way.  Memory: the two
 * legs' buffers, for BDAT conversion one partial line (SMTP_CONV_MAX),
 * for a held message its hold (hold-memory plus one I/O buffer).
 *
 * Why one file of this size: the two ways a message travels (above)
 * share the framer, the verdict and the end of data.  The held path
 * (release, keepalive, DKIM check) is the next split (smtp_hold.c) when
 * it grows again.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp_int.h"
#include "util.h"

/*
 * A NOOP to a destination that waits while we hold a message: every
 * fifth of timeout-server-command (we assume it waits for us about as
 * long as we wait for it; RFC 5321's 5 minutes), at most every minute.
 */
static uint64_t
keepalive_ms(const struct smtp_engine *e)
{
	uint64_t ms = e->lim->t_server_command * 1000ull / 5;

	return ms > 60000 ? 60000 : ms;
}
/* Octets of a held message run through the DKIM check per event-loop turn. */
#define DKIM_SLICE (1024 * 1024)

#define R_HOLD_354 "354 End data with <CR><LF>.<CR><LF>"
#define R_STORAGE "452 4.3.1 Error: insufficient system storage, try again later"
#define R_INSPECT_FAILED "451 4.3.0 Error: content inspection failed, try again later"
#define R_NOT_READY "451 4.3.0 Error: the destination is not ready, try again later"

static void verdict_apply(struct smtp_engine *e, bool async);
static void timeout_result(struct smtp_engine *e, struct inspect_result *res);
static void on_verdict(void *ctx, struct inspect_result *res);
static void on_resume(void *ctx);
static struct hold *on_held(void *ctx);

void
msg_init(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;

	buf_init(&t->conv, SMTP_CONV_MAX);
	buf_init(&t->stage, SIZE_MAX);
	hold_init(&t->hold, (size_t)e->lim->hold_memory, e->conf->spool_dir);
	t->hooks.verdict = on_verdict;
	t->hooks.resume = on_resume;
	t->hooks.held = on_held;
	t->hooks.ctx = e;
}

void
msg_stop(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;

	msg_inspect_cancel(e);
	ev_timer_cancel(&t->work);
	ev_timer_cancel(&t->keepalive);
}

void
msg_free(struct smtp_engine *e)
{
	msg_txn_reset(e);
	msg_stop(e);
	buf_free(&e->txn.conv);
	buf_free_secure(&e->txn.stage);
}

/* ---------------------------------------------------------- inspector */

void
msg_inspect_cancel(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;

	if (e->tflags & TF_INSPECTING) {
		/* Once abort() returns, no hook of this transaction is ever called. */
		e->insp->abort(t->itxn);
		t->itxn = NULL;
		e->tflags &= ~TF_INSPECTING;
	}
	/* staged lines of a cancelled transaction are never shown */
	buf_free_secure(&t->stage);
	e->tflags &= ~TF_INSP_BUSY;
	ev_timer_cancel(&t->itimer);
}

/* Forget the transaction: a new MAIL, RSET, EHLO, TLS or its end. */
void
msg_txn_reset(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;

	msg_inspect_cancel(e);
	/* A verdict still owed to the client (never the case on a normal path): answer it. */
	if (t->verdict_pend && t->verdict_pend->state == PEND_HELD)
		reply_set_line(t->verdict_pend, R_TXN_ABORTED);
	t->verdict_pend = NULL;
	if (e->phase == SP_VERDICT)
		smtp_enter(e, SP_COMMAND);
	inspect_result_clear(&t->res);
	hold_free(&t->hold);
	dkimsig_free(t->dkim);
	t->dkim = NULL;
	ev_timer_cancel(&t->work);
	ev_timer_cancel(&t->keepalive);
	free(t->mail_from);
	t->mail_from = NULL;
	for (unsigned i = 0; i < t->nrcpts; i++)
		free(t->rcpts[i]);
	free(t->rcpts);
	t->rcpts = NULL;
	t->nrcpts = 0;
	t->naccepted = 0;
	t->rcpt_sent = 0;
	t->msg_bytes = 0;
	t->chunk_pend = NULL;
	buf_reset(&t->conv);
	e->tflags &= TF_RESET_KEEP;
}

static void keepalive(struct ev_timer *tm);

static void
inspect_begin(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;
	struct inspect_envelope env = {
		.session_id = e->id,
		.inbound = e->inbound,
		.conf = e->conf,
		.action = smtp_action(e),
		.client = e->client_addr,
		.server = e->server_addr,
		.helo = e->helo,
		.mail_from = t->mail_from ? t->mail_from : "",
		.rcpts = (const char *const *)t->rcpts,
		.nrcpts = (int)t->nrcpts,
		.upstream_tls = e->sio && io_is_tls(e->sio),
		.server_name = e->upref,
	};
	unsigned flags = 0;
	SSL *cssl = io_is_tls(e->cio) ? io_ssl(e->cio) : NULL;

	if (cssl) {
		env.tls_version = SSL_get_version(cssl);
		env.tls_cipher = SSL_get_cipher_name(cssl);
	}

	msg_inspect_cancel(e); /* a DATA tried again after a refusal */
	t->itxn = e->insp->begin(e->insp, &env, &t->hooks, &flags);
	e->tflags |= TF_INSPECTING;
	e->tflags &= ~(TF_HELD | TF_INSP_FAILED);
	if ((flags & INSPECT_F_HOLD) || e->lim->hold == HOLD_ALWAYS) {
		e->tflags |= TF_HELD;
		hold_free(&t->hold);
		hold_init(&t->hold, (size_t)e->lim->hold_memory, e->conf->spool_dir);
		ev_timer_arm(&t->keepalive, keepalive_ms(e), keepalive);
	}
}

/* The inspector has been slow: whatever it waited on, stop waiting. */
static void
inspect_timeout(struct ev_timer *tm)
{
	struct smtp_engine *e = container_of(tm, struct smtp_engine, txn.itimer);
	const struct smtp_limits *lim = e->lim;
	bool at_end = (e->tflags & TF_VERDICT) != 0;

	if (smtp_stopped(e))
		return;
	log_sid(LOG_LVL_WARN, e->id,
	    "smtp inspect timeout inspector=%s seconds=%u waiting=%s action=%s", e->insp->name,
	    lim->t_inspect, at_end ? "verdict" : "body",
	    lim->on_inspect_timeout == INSPECT_TIMEOUT_DENY ? "deny" :
	    lim->on_inspect_timeout == INSPECT_TIMEOUT_ALLOW ? "allow" : "tempfail");
	msg_inspect_cancel(e);
	if (at_end) {
		timeout_result(e, &e->txn.res);
		verdict_apply(e, true);
		return;
	}
	/* Paused in the middle: the rest is read uninspected; the end gets the timeout's verdict. */
	e->tflags |= TF_INSP_FAILED;
	io_resume(e->cio);
	smtp_process_client(e);
}

/* The verdict an expired inspect-timeout gives. */
static void
timeout_result(struct smtp_engine *e, struct inspect_result *res)
{
	inspect_result_clear(res);
	snprintf(res->reason, sizeof(res->reason), "inspect-timeout");
	switch (e->lim->on_inspect_timeout) {
	case INSPECT_TIMEOUT_ALLOW:
		res->verdict = INSPECT_ALLOW;
		break;
	case INSPECT_TIMEOUT_DENY:
		res->verdict = INSPECT_DENY;
		snprintf(res->reply, sizeof(res->reply),
		    "554 5.7.1 Message rejected: content inspection did not complete");
		break;
	case INSPECT_TIMEOUT_TEMPFAIL:
		res->verdict = INSPECT_TEMPFAIL;
		snprintf(res->reply, sizeof(res->reply),
		    "451 4.7.1 Message not delivered: content inspection did not complete, "
		    "try again later");
		break;
	}
}

static void
inspect_body(struct smtp_engine *e, const char *p, size_t n)
{
	if (!(e->tflags & TF_INSPECTING) || n == 0)
		return;
	if (e->insp->body(e->txn.itxn, p, n) == INSPECT_BUSY && !(e->tflags & TF_INSP_BUSY)) {
		/* Back-pressure: the client waits (paused by the input loops), bounded. */
		e->tflags |= TF_INSP_BUSY;
		ev_timer_arm(&e->txn.itimer, e->lim->t_inspect * 1000ull, inspect_timeout);
	}
}

/* The held copy, for the inspector to read between end() and the verdict. */
static struct hold *
on_held(void *ctx)
{
	struct smtp_engine *e = ctx;

	return (e->tflags & TF_HELD) && e->txn.hold.sealed && !e->txn.hold.error ? &e->txn.hold :
	    NULL;
}

/*
 * What was staged goes to the inspector now, in one call.  The buffer is
 * kept for the next batch (released with the transaction): it held
 * message octets, so it is wiped when released.
 */
static void
stage_flush(struct smtp_engine *e)
{
	struct buf *st = &e->txn.stage;

	if (buf_len(st) == 0)
		return;
	inspect_body(e, buf_head(st), buf_len(st));
	buf_reset(st);
}

/* One framed line (CRLF added) for the inspector, staged. */
static void
stage_line(struct smtp_engine *e, const char *line, size_t len)
{
	struct buf *st = &e->txn.stage;

	if (!(e->tflags & TF_INSPECTING))
		return;
	if (buf_len(st) > 0 && buf_len(st) + len + 2 > SMTP_STAGE_MAX)
		stage_flush(e);
	/* A line is at most max-line-length (65536) long: the append never fails. */
	if (buf_append(st, line, len) < 0 || buf_append(st, "\r\n", 2) < 0)
		fatal("stage_line: cannot stage %zu octets", len);
}

static void
on_resume(void *ctx)
{
	struct smtp_engine *e = ctx;

	if (smtp_stopped(e) || !(e->tflags & TF_INSP_BUSY))
		return;
	e->tflags &= ~TF_INSP_BUSY;
	ev_timer_cancel(&e->txn.itimer);
	io_resume(e->cio);
	smtp_process_client(e);
}

bool
msg_client_waits(const struct smtp_engine *e)
{
	return (e->tflags & TF_INSP_BUSY) != 0;
}

bool
msg_upstream_busy(const struct smtp_engine *e)
{
	return (e->tflags & TF_RELEASING) != 0;
}

/* An inspector's reply must be a well-formed 4xx/5xx of its class, on one line. */
static void
normalize_reply(struct inspect_result *res)
{
	char want = res->verdict == INSPECT_DENY ? '5' : '4';

	if (res->reply[0] != want || !isdigit((unsigned char)res->reply[1]) ||
	    !isdigit((unsigned char)res->reply[2]) || res->reply[3] != ' ')
		snprintf(res->reply, sizeof(res->reply), "%s",
		    want == '5' ? "554 5.7.1 Message rejected by content policy"
		    : "451 4.7.1 Message temporarily rejected by content policy");
	for (char *c = res->reply; *c; c++)
		if ((unsigned char)*c < 32 || (unsigned char)*c == 127)
			*c = ' ';
}

/* ---------------------------------------------------------------- logs */

/* Room for txn_note(): the quoted sender path and three numbers. */
#define TXN_NOTE_MAX (LOG_QUOTE_SIZE(SMTP_PATH_MAX + 2) + 100)

/* "from=<...> rcpts=N accepted=N size=N" of the current transaction. */
static void
txn_note(struct smtp_engine *e, char *buf, size_t len)
{
	const struct smtp_txn *t = &e->txn;
	char path[SMTP_PATH_MAX + 3], from[LOG_QUOTE_SIZE(SMTP_PATH_MAX + 2)];

	/* The whole <path> is one value: quoted as a whole when it must be. */
	snprintf(path, sizeof(path), "<%s>", t->mail_from ? t->mail_from : "");
	log_quote_str(from, sizeof(from), path);
	snprintf(buf, len, "from=%s rcpts=%u accepted=%u size=%llu%s", from, t->nrcpts,
	    t->naccepted, (unsigned long long)t->framer.size + t->msg_bytes,
	    (e->tflags & TF_HELD) ? " held=yes" : "");
}

void
msg_log_result(struct smtp_engine *e, const char *result, const char *note, const char *reply)
{
	char code[8];

	snprintf(code, sizeof(code), "%.3s", reply ? reply : "---");
	log_sid(LOG_LVL_INFO, e->id, "smtp message result=%s %s reply=%s", result, note, code);
}

static void
log_message(struct smtp_engine *e, const char *result, const char *reply)
{
	char note[TXN_NOTE_MAX];

	txn_note(e, note, sizeof(note));
	msg_log_result(e, result, note, reply);
}

/* What the entry that waits for the upstream's final reply logs. */
static void
note_tail(struct smtp_engine *e)
{
	if (e->tail && e->tail->kind == PK_DATAEND) {
		char note[TXN_NOTE_MAX];

		txn_note(e, note, sizeof(note));
		free(e->tail->note);
		e->tail->note = xstrdup(note);
	}
}

/* ----------------------------------------------------------- the end */

/*
 * Close the upstream to discard the message it is receiving; the
 * session reconnects before its next command (smtp_upstream.c).
 */
static void
abort_upstream(struct smtp_engine *e, const char *why)
{
	if (e->flags & EF_UP_DEAD)
		return;
	e->flags |= EF_RELINK;
	reply_upstream_abort(e, why);
}

/* After a transaction: an upstream we closed is replaced, one that failed is not. */
static void
upstream_check(struct smtp_engine *e)
{
	if (!(e->flags & EF_UP_DEAD) || e->phase != SP_COMMAND)
		return;
	if (e->flags & EF_RELINK)
		up_relink(e);
	else
		smtp_enter(e, SP_NOUP);
}

/* The message is over (answered, or its end sent upstream): the client may go on. */
static void
txn_done(struct smtp_engine *e, bool async)
{
	msg_txn_reset(e);
	upstream_check(e);
	if (async && !smtp_stopped(e)) {
		reply_flush(e);
		if (!smtp_stopped(e))
			smtp_process_client(e);
	}
}

/*
 * The message's end is still being worked on (DKIM check, release): the
 * client's next commands wait.  A client that closed meanwhile
 * (SP_CLOSING, smtp_client_event) stays closing: its close must not be
 * forgotten when the work is done (msg_txn_reset returns SP_VERDICT to
 * SP_COMMAND), or the session would outlive it.
 */
static void
enter_verdict(struct smtp_engine *e)
{
	if (e->phase != SP_CLOSING)
		smtp_enter(e, SP_VERDICT);
}

/*
 * Refuse the message at its end: the client's end-of-data entry gets
 * reply, and the destination loses the message -- a streamed one with
 * its connection (no end of data is ever sent), a held one with an RSET
 * (it never got DATA).
 */
static void
refuse(struct smtp_engine *e, const char *reply, const char *why, bool async)
{
	struct smtp_txn *t = &e->txn;

	if (!(e->tflags & TF_HELD))
		abort_upstream(e, why);
	else if (!(e->flags & EF_UP_DEAD))
		reply_forward(e, PK_OTHER, PF_DROP, e->lim->t_server_command, "RSET");
	if (t->verdict_pend)
		reply_set_line(t->verdict_pend, reply);
	t->verdict_pend = NULL;
	log_message(e, "refused", reply);
	txn_done(e, async);
}

/* The release upstream of a held message, or the end of a streamed one. */
static void
deliver(struct smtp_engine *e, bool async)
{
	struct smtp_txn *t = &e->txn;

	/* The client's answer comes from the destination's reply to what follows. */
	if (t->verdict_pend)
		reply_set(t->verdict_pend, NULL, 0);
	t->verdict_pend = NULL;
	if (e->tflags & TF_HELD) {
		/* DATA now; on its 354 the held copy follows (msg_on_hold_data). */
		ev_timer_cancel(&t->keepalive);
		enter_verdict(e);
		reply_forward(e, PK_HOLD_DATA, 0, e->lim->t_server_data_init, "DATA");
		if (async && !smtp_stopped(e))
			reply_flush(e);
		return;
	}
	/* Allowed: now, and only now, the end of data goes upstream. */
	reply_forward(e, PK_DATAEND, 0, e->lim->t_server_data_end, "%s", t->enddata);
	/*
	 * For the client the transaction is over: it may pipeline the next
	 * MAIL right behind the end of data (RFC 2920).  What the log line
	 * needs rides on the entry that waits for the upstream's verdict.
	 */
	note_tail(e);
	txn_done(e, async);
}

/* ---------------------------------------------------- the DKIM check */

static void dkim_step(struct ev_timer *tm);

/* Feed up to budget octets of the current pass; true when both passes are done. */
static bool
dkim_feed(struct smtp_engine *e, size_t budget)
{
	struct smtp_txn *t = &e->txn;

	while (budget > 0) {
		const char *p;
		ssize_t n = hold_cursor_next(&t->cur, &p, budget);

		if (n < 0)
			return true; /* a spool read error: the check says "unknown" */
		if (n == 0) {
			if (t->dkim_pass == 1)
				return true;
			t->dkim_pass = 1;
			hold_cursor_init(&t->cur, &t->hold, t->res.edits, t->res.nedits);
			continue;
		}
		dkimsig_feed(t->dkim, t->dkim_pass ? DKIMSIG_CHANGED : DKIMSIG_ORIGINAL, p,
		    (size_t)n);
		if (dkimsig_unsigned(t->dkim))
			return true; /* no signature to break: no need to read on */
		budget -= (size_t)n;
	}
	return false;
}

/* Both copies are through libopendkim: change the message, or refuse it. */
static void
dkim_decide(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;
	struct dkimsig_result r;
	bool deny = e->lim->dkim_protect == DKIM_PROTECT_DENY;

	if (t->hold.error) {
		log_sid(LOG_LVL_ERR, e->id, "smtp hold error=\"%s\" during=dkim-check",
		    strerror(t->hold.error));
		refuse(e, R_STORAGE, "spool read error", true);
		return;
	}
	dkimsig_compare(t->dkim, &r);
	dkimsig_free(t->dkim);
	t->dkim = NULL;
	if (r.nbroken == 0 && !r.unknown) {
		if (r.nsigs > 0)
			log_sid(LOG_LVL_INFO, e->id,
			    "smtp dkim signatures=%d valid-body=%d broken-by-change=0", r.nsigs,
			    r.nprotected);
		deliver(e, true);
		return;
	}
	log_sid(LOG_LVL_WARN, e->id,
	    "smtp dkim signatures=%d valid-body=%d broken-by-change=%d%s %s dkim-protect=%s "
	    "action=%s", r.nsigs, r.nprotected, r.nbroken, r.unknown ? " result=unknown" : "",
	    r.detail, deny ? "deny" : "change-anyway", deny ? "denied" : "changed");
	if (deny) {
		refuse(e, "554 5.7.1 Message rejected: a content policy change would break its "
		    "DKIM signature", "dkim protection", true);
		return;
	}
	deliver(e, true);
}

static void
dkim_step(struct ev_timer *tm)
{
	struct smtp_engine *e = container_of(tm, struct smtp_engine, txn.work);

	if (smtp_stopped(e) || e->txn.dkim == NULL)
		return;
	if (!dkim_feed(e, DKIM_SLICE)) {
		ev_timer_arm(&e->txn.work, 0, dkim_step);
		return;
	}
	dkim_decide(e);
}

/* ------------------------------------------------------- the verdict */

/* The verdict is known (at once, through the hook, or by the timeout): act on it. */
static void
verdict_apply(struct smtp_engine *e, bool async)
{
	struct smtp_txn *t = &e->txn;
	struct inspect_result *res = &t->res;
	const char *why;

	e->tflags &= ~TF_VERDICT;
	ev_timer_cancel(&t->itimer);
	if (e->tflags & TF_BDAT_FAILED) {
		/*
		 * The destination refused the last chunk while the verdict was
		 * awaited (on_bdat_part): the client has had its one answer, and
		 * nothing more of this message may go upstream.
		 */
		log_message(e, "rejected", NULL);
		/* Never a client left without its one answer (the FIFO would stall). */
		if (t->verdict_pend && !pend_answered(t->verdict_pend))
			reply_set_line(t->verdict_pend, R_BDAT_FAILED);
		t->verdict_pend = NULL;
		txn_done(e, async);
		return;
	}
	if (res->verdict != INSPECT_ALLOW) {
		normalize_reply(res);
		log_sid(LOG_LVL_INFO, e->id, "smtp inspect verdict=%s inspector=%s reason=%s%s",
		    res->verdict == INSPECT_DENY ? "deny" : "tempfail", e->insp->name,
		    res->reason[0] ? res->reason : "-",
		    res->verdict == INSPECT_DENY && res->close ? " close=yes" : "");
		if (res->verdict == INSPECT_DENY && res->close) {
			/* drop / block: the client hears why, then the session ends (no reconnect) */
			if (res->block)
				smtp_block_client(e, "content", res->reason);
			smtp_enter(e, SP_CLOSING);
			refuse(e, res->reply, "inspection verdict", async);
			if (!smtp_stopped(e))
				reply_flush(e);
			return;
		}
		refuse(e, res->reply, "inspection verdict", async);
		return;
	}
	if (res->nedits == 0) {
		deliver(e, async);
		return;
	}
	if (!(e->tflags & TF_HELD)) {
		log_sid(LOG_LVL_ERR, e->id,
		    "smtp inspect error=\"edits for a message that was not held\" inspector=%s",
		    e->insp->name);
		refuse(e, R_INSPECT_FAILED, "inspector error", async);
		return;
	}
	if (hold_edits_check(&t->hold, res->edits, res->nedits, e->lim->max_line_length,
	    &why) < 0) {
		log_sid(LOG_LVL_ERR, e->id, "smtp inspect error=\"%s\" inspector=%s edits=%u", why,
		    e->insp->name, res->nedits);
		refuse(e, t->hold.error ? R_STORAGE : R_INSPECT_FAILED, "inspector error", async);
		return;
	}
	/* A change: first ask libopendkim what it would break (in slices, between events). */
	t->dkim = dkimsig_new(e->id);
	t->dkim_pass = 0;
	hold_cursor_init(&t->cur, &t->hold, NULL, 0);
	enter_verdict(e);
	ev_timer_arm(&t->work, 0, dkim_step);
}

static void
on_verdict(void *ctx, struct inspect_result *res)
{
	struct smtp_engine *e = ctx;
	struct smtp_txn *t = &e->txn;

	/* A verdict nobody asked for is an inspector that broke its contract. */
	FATAL_IF(smtp_stopped(e) || !(e->tflags & TF_INSPECTING) || !(e->tflags & TF_VERDICT));
	e->tflags &= ~TF_INSPECTING;
	t->itxn = NULL;
	inspect_result_move(&t->res, res);
	log_sid(LOG_LVL_INFO, e->id, "smtp inspect wait inspector=%s ms=%llu", e->insp->name,
	    (unsigned long long)(now_ms() - t->verdict_ms));
	verdict_apply(e, true);
}

/*
 * The end of a message (DATA's dot or the last BDAT chunk): ask the
 * inspector, then send the end of data upstream -- or refuse it.
 * carrier is the client's entry to answer (BDAT) or NULL (DATA).
 */
static void
msg_end(struct smtp_engine *e, struct pend *carrier, const char *enddata)
{
	struct smtp_txn *t = &e->txn;

	/* every line before the end, shown before the end is asked for */
	stage_flush(e);
	t->verdict_pend = carrier ? carrier : reply_new(e, PK_LOCAL, false, 0);
	t->enddata = enddata;
	if (data_refused(&t->framer)) {
		msg_inspect_cancel(e);
		refuse(e, data_refusal_reply(&t->framer), "message refused", false);
		return;
	}
	if (e->flags & EF_UP_DEAD) {
		msg_inspect_cancel(e);
		reply_set_line(t->verdict_pend, R_UP_LOST_MSG);
		t->verdict_pend = NULL;
		log_message(e, "refused", R_UP_LOST_MSG);
		txn_done(e, false);
		return;
	}
	if ((e->tflags & TF_HELD) && hold_seal(&t->hold) < 0) {
		log_sid(LOG_LVL_ERR, e->id, "smtp hold error=\"%s\" spool-dir=%s reply=452",
		    strerror(t->hold.error), e->conf->spool_dir);
		msg_inspect_cancel(e);
		refuse(e, R_STORAGE, "spool error", false);
		return;
	}
	if (e->tflags & TF_INSP_FAILED) {
		timeout_result(e, &t->res);
		verdict_apply(e, false);
		return;
	}
	if (e->tflags & TF_INSPECTING) {
		ev_timer_cancel(&t->itimer); /* a pause still pending is moot now */
		e->tflags &= ~TF_INSP_BUSY;
		if (e->insp->end(t->itxn, &t->res) == INSPECT_PENDING) {
			/* Later: the client's entry waits; so do its next commands. */
			e->tflags |= TF_VERDICT;
			t->verdict_ms = now_ms();
			smtp_enter(e, SP_VERDICT);
			ev_timer_arm(&t->itimer, e->lim->t_inspect * 1000ull, inspect_timeout);
			/* A streamed message's destination waits for us, not the reverse. */
			if (!(e->tflags & TF_HELD))
				reply_server_timeout(e, 0);
			return;
		}
		e->tflags &= ~TF_INSPECTING;
		t->itxn = NULL;
	} else {
		inspect_result_clear(&t->res);
	}
	verdict_apply(e, false);
}

/* ------------------------------------------------------- held messages */

/* The destination waits while we hold: keep its connection alive. */
static void
keepalive(struct ev_timer *tm)
{
	struct smtp_engine *e = container_of(tm, struct smtp_engine, txn.keepalive);

	if (smtp_stopped(e) || !(e->tflags & TF_HELD) || (e->tflags & TF_RELEASING))
		return;
	if (!(e->flags & EF_UP_DEAD) && e->await == NULL)
		reply_forward(e, PK_OTHER, PF_DROP, e->lim->t_server_command, "NOOP");
	ev_timer_arm(tm, keepalive_ms(e), keepalive);
}

/*
 * The reply to the NOOP sent in place of DATA (or of a first BDAT) for a
 * held message: it comes after every RCPT reply, so naccepted is final.
 */
bool
msg_on_hold_start(struct smtp_engine *e, struct pend *p, int code)
{
	bool ok = code / 100 == 2 && e->txn.naccepted > 0 && !(e->flags & EF_VIOLATION);
	const char *no = e->txn.naccepted == 0 ? R_NO_RCPT : R_NOT_READY;

	if (code == 421)
		return true; /* relayed: the destination is closing */
	if (e->tflags & TF_BDAT) {
		/* like the 354 of a conversion: the chunk is read now (msg_bdat_input) */
		if (ok) {
			reply_hold(p);
			e->tflags |= TF_CONV_READY;
		} else {
			reply_set_line(p, no);
			e->tflags |= TF_BDAT_FAILED;
			/* nothing will be held: the destination needs no keepalive */
			ev_timer_cancel(&e->txn.keepalive);
		}
		return true;
	}
	if (ok && e->phase == SP_COMMAND) {
		reply_set_line(p, R_HOLD_354);
		msg_data_start(e);
	} else {
		reply_set_line(p, no);
		ev_timer_cancel(&e->txn.keepalive);
	}
	return true;
}

/* Append what the cursor gives, dot-stuffed, while the upstream has room. */
static void
release_more(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;
	struct buf *out = io_out(e->sio);

	while ((e->tflags & TF_RELEASING) && !smtp_stopped(e)) {
		size_t room = buf_room(out);
		const char *p;
		ssize_t n;

		if (room < 64) {
			io_kick(e->sio);
			room = buf_room(out);
			if (room < 64)
				return; /* IO_LOWAT calls msg_release() */
		}
		/* Stuffing at most doubles a piece (a "." line start per octet). */
		n = hold_cursor_next(&t->cur, &p, room / 2);
		if (n < 0) {
			log_sid(LOG_LVL_ERR, e->id, "smtp hold error=\"%s\" during=release",
			    strerror(t->hold.error ? t->hold.error : EIO));
			e->tflags &= ~(TF_RELEASING | TF_HELD);
			/*
			 * The destination has part of it: only closing discards that
			 * (TF_HELD off: refuse() aborts).  The client's end of data
			 * is owed an answer: a new entry, the FIFO's last.
			 */
			t->verdict_pend = reply_new(e, PK_LOCAL, false, 0);
			refuse(e, R_STORAGE, "spool read error", false);
			return;
		}
		if (n == 0) {
			e->tflags &= ~TF_RELEASING;
			log_sid(LOG_LVL_INFO, e->id,
			    "smtp hold released octets=%llu edits=%u spooled=%s",
			    (unsigned long long)t->cur.out, t->res.nedits,
			    hold_spooled(&t->hold) ? "yes" : "no");
			reply_forward(e, PK_DATAEND, 0, e->lim->t_server_data_end, ".");
			note_tail(e);
			txn_done(e, false);
			return;
		}
		for (ssize_t i = 0; i < n;) {
			ssize_t j = i;

			if (t->cur_bol && p[i] == '.')
				(void)buf_append(out, ".", 1);
			while (j < n && p[j] != '\n')
				j++;
			if (j < n)
				j++; /* the LF */
			(void)buf_append(out, p + i, (size_t)(j - i));
			t->cur_bol = p[j - 1] == '\n';
			i = j;
		}
	}
}

/* The upstream drained while a held message is released. */
void
msg_release(struct smtp_engine *e)
{
	release_more(e);
	if (!smtp_stopped(e) && !(e->flags & EF_UP_DEAD))
		io_kick(e->sio);
	if (!(e->tflags & TF_RELEASING) && !smtp_stopped(e)) {
		reply_flush(e);
		if (!smtp_stopped(e))
			smtp_process_client(e);
	}
}

/* The reply to the DATA that carries a held message after its verdict. */
bool
msg_on_hold_data(struct smtp_engine *e, struct pend *p, int code)
{
	struct smtp_txn *t = &e->txn;

	if (code == 354 && (e->tflags & TF_HELD)) {
		reply_set(p, NULL, 0); /* ours, not the client's */
		hold_cursor_init(&t->cur, &t->hold, t->res.edits, t->res.nedits);
		t->cur_bol = true;
		e->tflags |= TF_RELEASING;
		reply_server_timeout(e, e->lim->t_server_data_block);
		release_more(e);
		if (!(e->flags & EF_UP_DEAD))
			io_kick(e->sio);
		return true;
	}
	/*
	 * Refused: that is the client's answer to its end of data.  Only a
	 * refusal can be: a 2xx (or another 3xx) to DATA is no delivery.
	 */
	if (code / 100 != 4 && code / 100 != 5)
		reply_set_line(p, R_DATA_NOT_TAKEN);
	log_message(e, "rejected", p->reply);
	if (code != 421 && !(e->flags & EF_UP_DEAD))
		reply_forward(e, PK_OTHER, PF_DROP, e->lim->t_server_command, "RSET");
	txn_done(e, false);
	return true;
}

/* ---------------------------------------------------------------- DATA */

void
msg_data_cmd(struct smtp_engine *e)
{
	inspect_begin(e);
	if (e->tflags & TF_HELD) {
		/* Nothing of the message goes up before its verdict: a NOOP holds DATA's place. */
		reply_forward(e, PK_HOLD_START, PF_GROUP_END, e->lim->t_server_command, "NOOP");
		return;
	}
	reply_forward(e, PK_DATA, PF_GROUP_END, e->lim->t_server_data_init, "DATA");
}

void
msg_data_start(struct smtp_engine *e)
{
	const struct smtp_limits *lim = e->lim;

	smtp_enter(e, SP_DATA);
	/* the body is a stream: several TLS records per read until its end */
	io_tls_bulk(e->cio, true);
	data_init(&e->txn.framer, lim->bare_newline_normalize ? DATA_BARE_NORMALIZE :
	    DATA_BARE_REJECT, false, lim->max_line_length, lim->max_message_size);
	e->txn.msg_bytes = 0;
	/* A held message's destination idles meanwhile (kept alive by NOOPs). */
	reply_server_timeout(e, (e->tflags & TF_HELD) ? 0 : lim->t_server_data_block);
}

/* One message line: kept (held) or upstream, re-stuffed; and to the inspector. */
static void
emit_line(struct smtp_engine *e, const char *line, size_t len)
{
	struct smtp_txn *t = &e->txn;

	if (e->tflags & TF_HELD) {
		bool was = hold_spooled(&t->hold);

		if (hold_append(&t->hold, line, len) == 0)
			(void)hold_append(&t->hold, "\r\n", 2);
		if (!was && hold_spooled(&t->hold))
			log_sid(LOG_LVL_INFO, e->id, "smtp hold spooled memory=%zu spool-dir=%s",
			    t->hold.memmax, e->conf->spool_dir);
	} else {
		struct buf *out = io_out(e->sio);

		if (len > 0 && line[0] == '.')
			(void)buf_append(out, ".", 1);
		(void)buf_append(out, line, len);
		(void)buf_append(out, "\r\n", 2);
	}
	stage_line(e, line, len);
}

/*
 * Room for one more line upstream (a line is at most max_line + 3 octets).
 * Sends what is queued first; when there is still no room the buffer is
 * well above its low-water mark, so IO_LOWAT will resume the client.
 */
static bool
upstream_has_room(struct smtp_engine *e)
{
	size_t need = e->lim->max_line_length + 8;

	if ((e->tflags & TF_HELD) || (e->flags & EF_UP_DEAD) || buf_room(io_out(e->sio)) >= need)
		return true;
	io_kick(e->sio);
	return buf_room(io_out(e->sio)) >= need;
}

/* A framed line: on its way, unless the message is refused (then nothing more goes). */
static void
take_line(struct smtp_engine *e, const char *line, size_t len)
{
	if (data_refused(&e->txn.framer)) {
		/* Stop forwarding at once; no dot will ever follow. */
		if (!(e->tflags & TF_HELD))
			abort_upstream(e, "message refused");
	} else if ((e->tflags & TF_HELD) || !(e->flags & EF_UP_DEAD)) {
		emit_line(e, line, len);
	}
}

/*
 * A run of lines that need no framing decision (data_run) goes on as one
 * copy each way: upstream (or into the held copy) and to the inspector's
 * stage -- byte for byte what emit_line would have made of them one line
 * at a time, since none begins with a dot.  Bounded by the room upstream
 * and by the stage.  false: the next line goes through data_next.
 */
static bool
take_run(struct smtp_engine *e, struct buf *in)
{
	struct smtp_txn *t = &e->txn;
	struct buf *st = &t->stage;
	size_t max = SMTP_STAGE_MAX, n;
	const char *run;

	/* refusing, or the destination gone: take_line's cases, line by line */
	if (data_refused(&t->framer) || (!(e->tflags & TF_HELD) && (e->flags & EF_UP_DEAD)))
		return false;
	if (!(e->tflags & TF_HELD) && buf_room(io_out(e->sio)) < max)
		max = buf_room(io_out(e->sio));
	/*
	 * A run never flushes the stage (stage_line and the loop do): an
	 * inspector that turns busy in a flush is seen before more is taken.
	 * A line of max-line-length may have left the stage over its mark.
	 */
	if (e->tflags & TF_INSPECTING) {
		size_t left = buf_len(st) >= SMTP_STAGE_MAX ? 0 : SMTP_STAGE_MAX - buf_len(st);

		if (left < max)
			max = left;
	}
	run = buf_head(in);
	n = data_run(&t->framer, run, buf_len(in), max);
	if (n == 0)
		return false;
	if (e->tflags & TF_HELD) {
		bool was = hold_spooled(&t->hold);

		(void)hold_append(&t->hold, run, n);
		if (!was && hold_spooled(&t->hold))
			log_sid(LOG_LVL_INFO, e->id, "smtp hold spooled memory=%zu spool-dir=%s",
			    t->hold.memmax, e->conf->spool_dir);
	} else if (buf_append(io_out(e->sio), run, n) < 0) {
		fatal("take_run: %zu octets do not fit the room checked", n);
	}
	if ((e->tflags & TF_INSPECTING) && buf_append(st, run, n) < 0)
		fatal("take_run: cannot stage %zu octets", n);
	buf_consume(in, n);
	return true;
}

void
msg_data_input(struct smtp_engine *e)
{
	struct buf *in = io_in(e->cio);

	while (e->phase == SP_DATA && !smtp_stopped(e)) {
		const char *line;
		size_t consumed, len;
		enum data_status st;

		/*
		 * A line that begins with a dot may be the end: everything before
		 * it is shown first, and the end waits while the inspector is busy
		 * (inspect.h), exactly as if each line had been fed on its own.
		 */
		if (buf_len(in) > 0 && buf_head(in)[0] == '.' && buf_len(&e->txn.stage) > 0)
			stage_flush(e);
		if (!upstream_has_room(e) || (e->tflags & TF_INSP_BUSY)) {
			io_pause(e->cio); /* resumed when the upstream drains / the inspector resumes */
			break;
		}
		if (take_run(e, in))
			continue;
		st = data_next(&e->txn.framer, buf_head(in), buf_len(in), &consumed, &line, &len);
		if (st == DATA_NEED_MORE) {
			buf_consume(in, consumed);
			break;
		}
		if (st == DATA_LINE)
			take_line(e, line, len);
		buf_consume(in, consumed);
		if (st == DATA_END) {
			io_tls_bulk(e->cio, false);
			smtp_enter(e, SP_COMMAND);
			msg_end(e, NULL, ".");
		}
	}
	/* the lines of this read, to the inspector at once */
	if (!smtp_stopped(e))
		stage_flush(e);
	/*
	 * Upstream now -- or, when the client's next TLS records are already
	 * here and will be read in this same turn (io_has_more), once they
	 * are (io_kick_soon): the next leg then gets a batch of up to
	 * SMTP_FLUSH_BATCH, whole TLS records, rather than a write per record
	 * read.  The end of the message, a paused client and a full batch go
	 * at once; nothing waits beyond this turn of the loop.
	 */
	if (!(e->flags & EF_UP_DEAD) && !smtp_stopped(e)) {
		if (e->phase == SP_DATA && io_has_more(e->cio) &&
		    buf_len(io_out(e->sio)) < SMTP_FLUSH_BATCH)
			io_kick_soon(e->sio);
		else
			io_kick(e->sio);
	}
}

/* ---------------------------------------------------------------- BDAT */

/* Chunks framed into lines (converted to DATA, or held): the conv buffer. */
static bool
framed(const struct smtp_engine *e)
{
	return (e->tflags & (TF_BDAT_CONVERT | TF_HELD)) != 0;
}

static void
bdat_begin(struct smtp_engine *e, const struct smtp_cmd *cmd, struct pend *carrier)
{
	smtp_enter(e, SP_BDAT);
	e->txn.chunk_left = cmd->chunk_size;
	e->txn.chunk_size = cmd->chunk_size;
	if (cmd->last)
		e->tflags |= TF_CHUNK_LAST;
	else
		e->tflags &= ~TF_CHUNK_LAST;
	e->txn.chunk_pend = carrier;
}

/*
 * A refused BDAT command: its chunk is data, never commands -- read and
 * discard it (no carrier: msg_bdat_input drops it, chunk_done answers
 * nothing more).  The transaction itself is untouched: the refusal was
 * the command's, and a DATA may still follow.  TF_BDAT_FAILED here would
 * outlive the chunk and make that DATA's end look like a failed chunk's
 * (verdict_apply), which is never answered.
 */
void
msg_bdat_skip(struct smtp_engine *e, const struct smtp_cmd *cmd)
{
	bdat_begin(e, cmd, NULL);
}

/* The BDAT command (allowed in this state): how its chunk will travel. */
void
msg_bdat(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	const struct smtp_limits *lim = e->lim;
	struct smtp_txn *t = &e->txn;

	if (!(e->flags & EF_ESMTP) || !(e->shown.flags & CAP_CHUNKING)) {
		cmd_refuse(e, cmd, "503 5.5.1 Error: CHUNKING not offered");
		msg_bdat_skip(e, cmd);
		return;
	}
	if (e->tflags & TF_BDAT_FAILED) {
		cmd_refuse(e, cmd, "503 5.5.1 Error: an earlier BDAT of this transaction failed, "
		    "send RSET");
		bdat_begin(e, cmd, NULL);
		return;
	}
	if (!(e->tflags & TF_BDAT)) {
		e->tflags |= TF_BDAT;
		data_init(&t->framer, lim->bare_newline_normalize ? DATA_BARE_NORMALIZE :
		    DATA_BARE_REJECT, true, lim->max_line_length, lim->max_message_size);
		t->msg_bytes = 0;
		inspect_begin(e);
		/*
		 * Forwarded as BDAT only when the destination has CHUNKING and
		 * bare newlines are refused anyway: normalising them needs the
		 * conversion to DATA, which re-frames every line.  A held
		 * message is framed the same way, into the hold.
		 */
		if (!(e->tflags & TF_HELD) &&
		    (!(e->upcaps.flags & CAP_CHUNKING) || lim->bare_newline_normalize))
			e->tflags |= TF_BDAT_CONVERT;
		else
			e->tflags &= ~TF_BDAT_CONVERT;
		if (framed(e)) {
			/* The chunk waits in the client buffer until the 354 (or the NOOP's 250). */
			e->tflags &= ~TF_CONV_READY;
			if (e->tflags & TF_HELD)
				reply_forward(e, PK_HOLD_START, 0, lim->t_server_command, "NOOP");
			else
				reply_forward(e, PK_CONV_DATA, 0, lim->t_server_data_init, "DATA");
			bdat_begin(e, cmd, e->tail);
			return;
		}
	}
	if (framed(e)) {
		/* Later chunks of a converted or held transaction are answered by us. */
		bdat_begin(e, cmd, reply_new(e, PK_LOCAL, false, 0));
		return;
	}
	if (t->framer.size + cmd->chunk_size > lim->max_message_size) {
		/* Never forward a chunk we would refuse; its bytes are discarded. */
		t->framer.flags |= DATA_F_TOO_BIG;
		bdat_begin(e, cmd, reply_new(e, PK_LOCAL, false, 0));
		abort_upstream(e, "message too large");
		return;
	}
	if (cmd->last) {
		/*
		 * BDAT n LAST goes up as "BDAT n" now and "BDAT 0 LAST" after the
		 * verdict, so the upstream never sees LAST for data we refuse.
		 */
		if (cmd->chunk_size > 0)
			reply_forward(e, PK_BDAT_PART, 0, lim->t_server_data_block, "BDAT %llu",
			    (unsigned long long)cmd->chunk_size);
		bdat_begin(e, cmd, reply_new(e, PK_LOCAL, false, 0));
		return;
	}
	reply_forward(e, PK_BDAT, 0, lim->t_server_data_block, "BDAT %llu",
	    (unsigned long long)cmd->chunk_size);
	bdat_begin(e, cmd, e->tail);
}

/* Framing: turn what the conv buffer holds into lines (stuffed DATA lines, or held). */
static bool
conv_drain_lines(struct smtp_engine *e, bool final)
{
	struct smtp_txn *t = &e->txn;

	for (;;) {
		const char *line;
		size_t consumed, len;
		enum data_status st;

		/* An empty last chunk: nothing to frame (conv may not even be allocated). */
		if (buf_len(&t->conv) == 0)
			return true;
		if (!upstream_has_room(e))
			return false;
		if (final && !memchr(buf_head(&t->conv), '\n', buf_len(&t->conv)))
			st = data_finish_raw(&t->framer, buf_head(&t->conv), buf_len(&t->conv),
			    &consumed, &line, &len);
		else
			st = data_next(&t->framer, buf_head(&t->conv), buf_len(&t->conv), &consumed,
			    &line, &len);
		if (st == DATA_NEED_MORE && !final) {
			buf_consume(&t->conv, consumed);
			return true;
		}
		if (st == DATA_NEED_MORE && final) {
			/* a trailing lone CR */
			buf_consume(&t->conv, consumed);
			st = data_finish_raw(&t->framer, buf_head(&t->conv), buf_len(&t->conv),
			    &consumed, &line, &len);
		}
		if (st == DATA_LINE)
			take_line(e, line, len);
		buf_consume(&t->conv, consumed);
		if (buf_len(&t->conv) == 0)
			return true;
	}
}

/* ... and what those lines were, to the inspector at once. */
static bool
conv_drain(struct smtp_engine *e, bool final)
{
	bool done = conv_drain_lines(e, final);

	stage_flush(e);
	return done;
}

/* The chunk is all in: answer it, or end the message after the last one. */
static void
chunk_done(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;
	struct pend *p = t->chunk_pend;
	bool convert = (e->tflags & TF_BDAT_CONVERT) != 0;
	bool fr = framed(e);
	char line[80];

	smtp_enter(e, SP_COMMAND);
	t->chunk_pend = NULL;
	if ((e->tflags & TF_CHUNK_LAST) && !fr)
		data_scan_end(&t->framer); /* a chunk may end in a CR the next one never had */
	if (p == NULL || (e->tflags & TF_BDAT_FAILED)) {
		/* refused command or failed transaction: the reply is set already */
		if (p && p->state == PEND_HELD)
			reply_set_line(p, R_BDAT_FAILED);
	} else if (data_refused(&t->framer) && !(e->tflags & TF_CHUNK_LAST)) {
		if (!pend_answered(p))
			reply_set_line(p, data_refusal_reply(&t->framer));
		log_message(e, "refused", data_refusal_reply(&t->framer));
		e->tflags |= TF_BDAT_FAILED;
		msg_inspect_cancel(e);
		/* Converted, the destination is in DATA mode: it can only be left without a dot. */
		if (convert)
			abort_upstream(e, "message refused");
	} else if (e->tflags & TF_CHUNK_LAST) {
		if (data_refused(&t->framer))
			buf_reset(&t->conv); /* refused: what is left is never framed */
		FATAL_IF(fr && buf_len(&t->conv) > 0);
		if (pend_answered(p)) {
			/* refused early, before the chunk was all in (the too-large check) */
			log_message(e, "refused", p->reply);
			msg_inspect_cancel(e);
			e->tflags |= TF_BDAT_FAILED;
		} else {
			msg_end(e, p, fr ? "." : "BDAT 0 LAST");
		}
	} else if (fr) {
		snprintf(line, sizeof(line), "250 2.0.0 %llu octets received",
		    (unsigned long long)t->chunk_size);
		reply_set_line(p, line);
	}
	upstream_check(e);
	reply_flush(e);
}

void
msg_bdat_input(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;
	struct buf *in = io_in(e->cio);

	while (e->phase == SP_BDAT && !smtp_stopped(e)) {
		bool fr = framed(e);
		bool failed = (e->tflags & TF_BDAT_FAILED) != 0;
		size_t n = buf_len(in);

		if (t->chunk_left == 0) {
			/*
			 * A framed chunk is answered only after the upstream's 354 (or
			 * the NOOP's reply, or a refusal): until then its entry awaits
			 * the upstream, and nothing may follow -- above all no dot.
			 */
			if (fr && !failed && t->chunk_pend && t->chunk_pend->state == PEND_AWAIT)
				return;
			/* The last framed chunk: its lines must all be out before the end. */
			if (fr && !failed && t->chunk_pend && !data_refused(&t->framer) &&
			    (e->tflags & TF_CHUNK_LAST) && !conv_drain(e, true)) {
				io_pause(e->cio);
				io_kick(e->sio);
				return;
			}
			chunk_done(e);
			return;
		}
		if (n == 0)
			return;
		if (n > t->chunk_left)
			n = (size_t)t->chunk_left;

		if (failed || t->chunk_pend == NULL || data_refused(&t->framer)) {
			buf_consume(in, n); /* discarded, never executed */
			t->chunk_left -= n;
			continue;
		}
		if (e->tflags & TF_INSP_BUSY) {
			io_pause(e->cio); /* the inspector's resume (or its timeout) goes on */
			return;
		}
		if (!fr) {
			bool up_dead = (e->flags & EF_UP_DEAD) != 0;
			size_t room = up_dead ? n : buf_room(io_out(e->sio));
			if (room == 0) {
				io_kick(e->sio);
				room = buf_room(io_out(e->sio));
			}
			if (room == 0) {
				io_pause(e->cio);
				return;
			}
			if (n > room)
				n = room;
			/* Checked before it goes on: what is refused never reaches the destination. */
			data_scan(&t->framer, buf_head(in), n);
			if (t->chunk_left == n && (e->tflags & TF_CHUNK_LAST))
				data_scan_end(&t->framer);
			if (data_refused(&t->framer)) {
				abort_upstream(e, "message refused");
			} else if (!up_dead) {
				(void)buf_append(io_out(e->sio), buf_head(in), n);
				stage_flush(e); /* (nothing is staged when chunks are not framed) */
				inspect_body(e, buf_head(in), n);
			}
			buf_consume(in, n);
			t->chunk_left -= n;
			if (!(e->flags & EF_UP_DEAD))
				io_kick(e->sio);
			continue;
		}
		/* framing */
		if (!(e->tflags & TF_CONV_READY))
			return; /* the upstream's 354 (or the NOOP's 250) resumes us */
		size_t room = buf_room(&t->conv);
		if (room == 0) {
			if (!conv_drain(e, false)) {
				io_pause(e->cio);
				io_kick(e->sio);
				return;
			}
			room = buf_room(&t->conv);
			if (room == 0)
				fatal("conversion buffer stuck");
		}
		if (n > room)
			n = room;
		(void)buf_append(&t->conv, buf_head(in), n);
		buf_consume(in, n);
		t->chunk_left -= n;
		if (!conv_drain(e, false)) {
			io_pause(e->cio);
			io_kick(e->sio);
			return;
		}
		if (!(e->flags & EF_UP_DEAD))
			io_kick(e->sio);
	}
}
