/*
 * smtp_reply - the reply side of the SMTP engine: the FIFO of pending
 * replies, commands sent upstream, the upstream's replies (one handler per
 * command kind, reply_table), and the upstream's loss or deliberate abort.
 *
 * FIFO invariant: entries leave only from the head and only when their
 * state is PEND_READY or PEND_SILENT, so the client hears replies in
 * command order; e->await is always the oldest PEND_AWAIT entry, the one
 * the next upstream reply answers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "action_rules.h"
#include "log.h"
#include "smtp_int.h"
#include "util.h"

/* ---------------------------------------------------------------- FIFO */

struct pend *
reply_new(struct smtp_engine *e, enum pend_kind kind, bool upstream, unsigned flags)
{
	struct pend *p = xcalloc(1, sizeof(*p));

	p->kind = kind;
	p->state = upstream ? PEND_AWAIT : PEND_HELD;
	p->flags = flags;
	if (e->tail)
		e->tail->next = p;
	else
		e->head = p;
	e->tail = p;
	e->npend++;
	if (upstream && e->await == NULL)
		e->await = p;
	if (flags & PF_GROUP_END)
		e->flags |= EF_GROUP_WAIT;
	return p;
}

/* The entry's reply (with CRLFs); NULL answers it with nothing. */
void
reply_set(struct pend *p, const char *reply, size_t len)
{
	free(p->reply);
	p->reply = NULL;
	p->len = 0;
	if (reply) {
		p->reply = xstrndup(reply, len);
		p->len = len;
	}
	p->state = reply ? PEND_READY : PEND_SILENT;
}

/* A locally generated one-line reply ("550 5.1.1 text", no CRLF). */
void
reply_set_line(struct pend *p, const char *line)
{
	char buf[600];
	int n = snprintf(buf, sizeof(buf), "%s\r\n", line);

	if (n < 0 || (size_t)n >= sizeof(buf))
		fatal("local reply too long");
	reply_set(p, buf, (size_t)n);
}

/* The engine will answer this entry itself, later. */
void
reply_hold(struct pend *p)
{
	free(p->reply);
	p->reply = NULL;
	p->len = 0;
	p->state = PEND_HELD;
}

void
reply_local(struct smtp_engine *e, unsigned flags, const char *line)
{
	reply_set_line(reply_new(e, PK_LOCAL, false, flags), line);
}

static struct pend *
next_await(struct pend *p)
{
	for (p = p ? p->next : NULL; p; p = p->next)
		if (p->state == PEND_AWAIT)
			return p;
	return NULL;
}

static void
pend_free(struct pend *p)
{
	free(p->note);
	free(p->reply);
	free(p);
}

/* Drop every entry after prev (all of them when prev is NULL). */
static void
drop_after(struct smtp_engine *e, struct pend *prev)
{
	struct pend *p = prev ? prev->next : e->head;

	while (p) {
		struct pend *n = p->next;

		if (e->txn.chunk_pend == p)
			e->txn.chunk_pend = NULL;
		if (e->txn.verdict_pend == p)
			e->txn.verdict_pend = NULL;
		if (e->tls_pend == p)
			e->tls_pend = NULL;
		pend_free(p);
		e->npend--;
		p = n;
	}
	if (prev)
		prev->next = NULL;
	else
		e->head = NULL;
	e->tail = prev;
	e->await = NULL;
}

/* Send every answered entry at the head of the FIFO to the client, in order. */
void
reply_flush(struct smtp_engine *e)
{
	while (e->head && !smtp_stopped(e) && pend_answered(e->head)) {
		struct pend *p = e->head;

		if (p->state == PEND_READY && io_write(e->cio, p->reply, p->len) < 0) {
			smtp_close(e, "client-not-reading");
			return;
		}
		if (p->flags & PF_GROUP_END)
			e->flags &= ~EF_GROUP_WAIT;
		/* Answered before its chunk was all in (an early refusal): no carrier left. */
		if (e->txn.chunk_pend == p)
			e->txn.chunk_pend = NULL;
		if (e->txn.verdict_pend == p)
			e->txn.verdict_pend = NULL;
		/* An entry still owed an upstream reply is never sent (nor freed). */
		FATAL_IF(p == e->await);
		e->head = p->next;
		if (e->head == NULL)
			e->tail = NULL;
		e->npend--;
		pend_free(p);
	}
	if (smtp_stopped(e))
		return;
	/*
	 * Nothing owed and the client gone: the session is over -- unless a
	 * held message is still on its way up (its release pauses for room
	 * with no reply owed: our DATA's 354 was answered silently) or its
	 * verdict is awaited; the client's answer comes after them.
	 */
	if (e->npend == 0 && (e->phase == SP_CLOSING || e->close_reply) &&
	    !msg_upstream_busy(e) && !(e->tflags & TF_VERDICT)) {
		if (e->close_reply) {
			(void)io_printf(e->cio, "%s\r\n", e->close_reply);
			e->close_reply = NULL;
		}
		smtp_finish(e, (e->flags & EF_VIOLATION) ? "protocol-error" : "closed");
		return;
	}
	/* After STARTTLS nothing is read until the client's handshake (tlsi_client_ready). */
	if (e->npend < SMTP_MAX_PENDING && e->phase != SP_CLOSING && e->phase != SP_TLS_WAIT)
		io_resume(e->cio);
}

/* ------------------------------------------------------- upstream sends */

void
reply_server_timeout(struct smtp_engine *e, unsigned seconds)
{
	if (!(e->flags & EF_UP_DEAD))
		io_set_timeout(e->sio, seconds * 1000u);
}

/*
 * The upstream's timer runs exactly while we wait for the upstream: a
 * reply owed, its TLS handshake, or room for message data.
 */
void
reply_server_timer(struct smtp_engine *e)
{
	if (e->await == NULL && e->phase != SP_DATA && e->phase != SP_BDAT &&
	    !(e->sio && io_in_handshake(e->sio)) && !msg_upstream_busy(e))
		reply_server_timeout(e, 0);
}

/* Forward a command: the client's reply comes from the upstream. */
void
reply_forward(struct smtp_engine *e, enum pend_kind kind, unsigned flags, unsigned timeout,
    const char *fmt, ...)
{
	char line[SMTP_AUTHLINE_MAX + 64];
	va_list ap;
	int n;

	if (e->flags & EF_UP_DEAD) {
		/* Nothing to forward to: the client hears why, then the session ends. */
		reply_local(e, 0, R_UP_CLOSED);
		smtp_enter(e, SP_CLOSING);
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		fatal("command too long for the upstream");
	reply_new(e, kind, true, flags);
	line[n++] = '\r';
	line[n++] = '\n';
	int rc = io_write(e->sio, line, (size_t)n);
	OPENSSL_cleanse(line, sizeof(line)); /* may hold an AUTH payload */
	if (rc < 0) {
		reply_upstream_lost(e, "write failed");
		return;
	}
	reply_server_timeout(e, timeout);
}

/* ----------------------------------------------------- upstream replies */

/* The reply's lines as text (after "ddd-" / "ddd "), for the EHLO parser. */
static void
split_lines(const char *reply, size_t len, const char **lines, size_t *lens, int *n, int max)
{
	const char *p = reply, *end = reply + len;

	*n = 0;
	while (p < end && *n < max) {
		const char *crlf = memchr(p, '\r', (size_t)(end - p));
		if (crlf == NULL)
			break;
		lines[*n] = crlf - p > 3 ? p + 4 : crlf;
		lens[*n] = crlf - p > 3 ? (size_t)(crlf - p - 4) : 0;
		(*n)++;
		p = crlf + 2;
	}
}

/* The action's inspection settings, or NULL (no action: nothing hidden, nothing filtered). */
static const struct action_rules *
rules(const struct smtp_engine *e)
{
	const struct conf_action *a = smtp_action(e);

	return a ? config_rules(a) : NULL;
}

/*
 * Inbound with hide-banner: the internal server's name (in its greeting
 * and in the first line of its HELO/EHLO reply) never reaches the
 * Internet.  What stands in for it: the action's banner, else a word.
 */
static const char *
hidden_banner(const struct smtp_engine *e, const char *fallback)
{
	const struct action_rules *r = rules(e);

	if (r == NULL || !r->hide_banner || !e->inbound)
		return NULL;
	return r->banner[0] ? r->banner : fallback;
}

static void
on_greeting(struct smtp_engine *e, int code)
{
	struct buf *r = &e->reply;
	const char *banner = hidden_banner(e, "ESMTP");
	char line[ARULES_BANNER_MAX + 80];

	e->flags |= EF_GREETED;
	if (code != 220 && code != 421 && code != 554) {
		reply_upstream_lost(e, "unexpected greeting");
		return;
	}
	if (banner) {
		if (code == 220)
			snprintf(line, sizeof(line), "220 %s\r\n", banner);
		else if (code == 421)
			snprintf(line, sizeof(line), "421 4.3.2 Service not available, closing "
			    "transmission channel\r\n");
		else
			snprintf(line, sizeof(line), "554 5.3.2 No SMTP service here\r\n");
		buf_reset(r);
		(void)buf_append(r, line, strlen(line));
	}
	if (io_write(e->cio, buf_head(r), buf_len(r)) < 0) {
		smtp_close(e, "client-not-reading");
		return;
	}
	log_sid(LOG_LVL_INFO, e->id, "smtp greeting code=%d", code);
	if (code == 421) {
		smtp_enter(e, SP_CLOSING);
		smtp_finish(e, "server-421");
		return;
	}
	reply_server_timeout(e, 0);
	smtp_enter(e, SP_COMMAND);
	e->flags &= ~EF_GROUP_WAIT;
	/* A client that spoke before the greeting is not an SMTP client. */
	if (buf_len(io_in(e->cio)) > 0) {
		cmd_violation(e, "talked-before-greeting");
		return;
	}
	io_resume(e->cio);
	smtp_process_client(e);
}

/* Keep only the mechanisms in allowed (both space-separated, allowed upper case). */
static void
filter_mechs(char *mechs, size_t size, const char *allowed)
{
	char in[sizeof(((struct caps *)0)->auth)], *save = NULL;
	size_t o = 0;

	snprintf(in, sizeof(in), "%s", mechs);
	mechs[0] = '\0';
	for (char *m = strtok_r(in, " ", &save); m; m = strtok_r(NULL, " ", &save)) {
		size_t ml = strlen(m);
		bool ok = false;
		for (const char *a = allowed; *a;) {
			size_t al = strcspn(a, " ");
			if (al == ml && strncasecmp(a, m, ml) == 0)
				ok = true;
			a += al;
			while (*a == ' ')
				a++;
		}
		if (ok && o + ml + 2 < size) {
			if (o)
				mechs[o++] = ' ';
			memcpy(mechs + o, m, ml);
			o += ml;
			mechs[o] = '\0';
		}
	}
}

/*
 * Reply handlers, one per command kind: called with the entry already
 * answered with the upstream's reply (PEND_READY); they may change what
 * the client gets.  false: the engine must stop handling this reply (the
 * upstream or the session is gone, the legs were spliced, or the upstream
 * is in a TLS handshake the handler started).
 */
typedef bool (*reply_fn)(struct smtp_engine *, struct pend *, int code);

static bool
on_ehlo(struct smtp_engine *e, struct pend *p, int code)
{
	const char *lines[SMTP_REPLY_MAX_LINES] = { NULL };
	size_t lens[SMTP_REPLY_MAX_LINES] = { 0 };
	int n;
	struct buf out;
	char up[CAPS_NAMES_SIZE], shown[CAPS_NAMES_SIZE];

	if (code != 250)
		return true;
	split_lines(buf_head(&e->reply), buf_len(&e->reply), lines, lens, &n,
	    SMTP_REPLY_MAX_LINES);
	caps_parse(&e->upcaps, lines, lens, n);
	/*
	 * What the client may be shown: the upstream's extensions, narrowed by
	 * the action's allowlist (esmtp, auth-mechanisms).  upcaps keeps what
	 * the upstream really offers; shown is what the client may use.
	 */
	struct caps offer = e->upcaps;
	struct smtp_limits lim = *e->lim;
	const struct action_rules *r = rules(e);
	const char *banner = hidden_banner(e, "Hello");
	if (r) {
		offer.flags &= r->esmtp | CAP_STARTTLS;
		lim.allow_chunking = lim.allow_chunking && (r->esmtp & CAP_CHUNKING);
		lim.allow_auth = lim.allow_auth && (r->esmtp & CAP_AUTH);
		if (r->auth_mechs[0] && (offer.flags & CAP_AUTH)) {
			filter_mechs(offer.auth, sizeof(offer.auth), r->auth_mechs);
			if (offer.auth[0] == '\0')
				offer.flags &= ~CAP_AUTH;
		}
	}
	if (banner && n >= 1) {
		lines[0] = banner;
		lens[0] = strlen(banner);
	}
	buf_init(&out, SMTP_REPLY_MAX);
	if (n < 1 || caps_render(&offer, &lim, lines[0], lens[0], &out, &e->shown,
	    tlsi_offered(e)) < 0) {
		buf_free(&out);
		reply_upstream_lost(e, "bad EHLO reply");
		return false;
	}
	reply_set(p, buf_head(&out), buf_len(&out));
	buf_free(&out);
	e->flags |= EF_HELO | EF_ESMTP;
	log_sid(LOG_LVL_INFO, e->id, "smtp ehlo upstream=%s shown=%s",
	    caps_names(e->upcaps.flags, up, sizeof(up)),
	    caps_names(e->shown.flags, shown, sizeof(shown)));
	return true;
}

static bool
on_helo(struct smtp_engine *e, struct pend *p, int code)
{
	const char *banner = hidden_banner(e, "Hello");

	if (code == 250 && banner) {
		char line[ARULES_BANNER_MAX + 8];
		snprintf(line, sizeof(line), "250 %s", banner);
		reply_set_line(p, line);
	}
	if (code == 250) {
		e->flags |= EF_HELO;
		e->flags &= ~EF_ESMTP;
		memset(&e->shown, 0, sizeof(e->shown));
		memset(&e->upcaps, 0, sizeof(e->upcaps));
	}
	return true;
}

static bool
on_mail(struct smtp_engine *e, struct pend *p, int code)
{
	(void)p;
	if (code / 100 != 2)
		e->tflags &= ~TF_MAIL;
	return true;
}

static bool
on_rcpt(struct smtp_engine *e, struct pend *p, int code)
{
	(void)p;
	if (code / 100 == 2)
		e->txn.naccepted++;
	return true;
}

static bool
on_data(struct smtp_engine *e, struct pend *p, int code)
{
	(void)p;
	if (code == 354 && e->phase == SP_COMMAND && !(e->flags & EF_VIOLATION))
		msg_data_start(e);
	return true;
}

static bool
on_dataend(struct smtp_engine *e, struct pend *p, int code)
{
	msg_log_result(e, code / 100 == 2 ? "accepted" : "rejected", p->note ? p->note : "",
	    buf_head(&e->reply));
	return true;
}

/*
 * "BDAT n" of the client's BDAT n LAST: a 2xx is absorbed (the client's
 * answer comes with the end of data); a failure answers the client's BDAT
 * LAST itself.
 */
static bool
on_bdat_part(struct smtp_engine *e, struct pend *p, int code)
{
	if (code / 100 == 2) {
		reply_set(p, NULL, 0);
		return true;
	}
	/*
	 * The entries behind it that would also answer the client's BDAT LAST
	 * -- the local carrier and the "BDAT 0 LAST" sent after the verdict --
	 * go silent, so the client gets exactly one reply.
	 */
	struct pend *c = p->next;

	e->tflags |= TF_BDAT_FAILED;
	if (c && c->state != PEND_AWAIT) {
		if (c->state != PEND_READY)
			reply_set(c, NULL, 0);
		c = c->next;
	}
	if (c && c->state == PEND_AWAIT && c->kind == PK_DATAEND)
		c->flags |= PF_DROP;
	return true;
}

static bool
on_conv_data(struct smtp_engine *e, struct pend *p, int code)
{
	if (code == 354) {
		/* The client's reply to this BDAT comes when its chunk is in. */
		reply_hold(p);
		e->tflags |= TF_CONV_READY;
		reply_server_timeout(e, e->lim->t_server_data_block);
	} else {
		e->tflags |= TF_BDAT_FAILED;
		/*
		 * This reply answers the client's chunk -- for BDAT LAST, its
		 * message.  Only a refusal may: a 2xx to DATA is not the
		 * destination taking a message it never received.
		 */
		if (code / 100 != 4 && code / 100 != 5)
			reply_set_line(p, R_DATA_NOT_TAKEN);
	}
	return true;
}

static bool
on_auth(struct smtp_engine *e, struct pend *p, int code)
{
	(void)p;
	if (code == 334)
		smtp_enter(e, SP_AUTH);
	else if (code == 235)
		e->flags |= EF_AUTH;
	return true;
}

static const reply_fn reply_table[] = {
	[PK_OTHER] = NULL,
	[PK_EHLO] = on_ehlo,
	[PK_HELO] = on_helo,
	[PK_MAIL] = on_mail,
	[PK_RCPT] = on_rcpt,
	[PK_DATA] = on_data,
	[PK_DATAEND] = on_dataend,
	[PK_BDAT] = NULL,
	[PK_BDAT_PART] = on_bdat_part,
	[PK_CONV_DATA] = on_conv_data,
	[PK_STARTTLS] = tlsi_upstream_reply,
	[PK_OWN_STARTTLS] = tlsi_own_starttls_reply,
	[PK_OWN_EHLO] = tlsi_own_ehlo_reply,
	[PK_AUTH] = on_auth,
	[PK_QUIT] = NULL,
	[PK_LOCAL] = NULL,
	[PK_HOLD_START] = msg_on_hold_start,
	[PK_HOLD_DATA] = msg_on_hold_data,
};

static void
on_reply(struct smtp_engine *e, int code)
{
	struct buf *r = &e->reply;
	struct pend *p = e->await;

	if (!(e->flags & EF_GREETED)) {
		on_greeting(e, code);
		return;
	}
	if (p == NULL) {
		/* Unsolicited: a 421 (server shutting down) is passed on, anything else is an error. */
		if (code == 421 && e->npend == 0) {
			(void)io_write(e->cio, buf_head(r), buf_len(r));
			smtp_finish(e, "server-421");
			return;
		}
		reply_upstream_lost(e, "unsolicited reply");
		return;
	}
	e->await = next_await(p);
	reply_set(p, buf_head(r), buf_len(r));

	if (p->flags & PF_DROP) {
		reply_set(p, NULL, 0);
		/*
		 * A 421 to one of the engine's own commands (a held message's
		 * keepalive NOOP, an RSET): the destination is going away, and
		 * the client must hear of it like of any loss -- not find its
		 * connection closed, mid-message perhaps, without a word.
		 */
		if (code == 421) {
			reply_upstream_lost(e, "421 to the engine's own command");
			return;
		}
	} else {
		reply_fn fn = (size_t)p->kind < ARRAY_SIZE(reply_table) ? reply_table[p->kind] : NULL;

		if (fn && !fn(e, p, code))
			return;
	}
	if (code == 421 && p->kind != PK_QUIT) {
		/* The upstream is closing: this is the last reply the client gets. */
		drop_after(e, p);
		smtp_enter(e, SP_CLOSING);
	}
	reply_server_timer(e);
	reply_flush(e);
	if (!smtp_stopped(e))
		smtp_process_client(e);
}

/* The upstream's input: assemble each reply in canonical form, then handle it. */
void
reply_input(struct smtp_engine *e)
{
	struct buf *in = io_in(e->sio);

	while (!(e->flags & EF_UP_DEAD) && !smtp_stopped(e) && buf_len(in) > 0) {
		size_t len, consumed, textlen;
		const char *text;
		enum smtp_line st;
		bool more;
		int code;
		char out[SMTP_REPLYLINE_MAX + 8];

		st = smtp_line_split(buf_head(in), buf_len(in), SMTP_REPLYLINE_MAX, &len, &consumed);
		if (st == SMTP_LINE_PARTIAL)
			return;
		if (st != SMTP_LINE_OK) {
			reply_upstream_lost(e, st == SMTP_LINE_TOOLONG ? "reply line too long" :
			    "bare LF in reply");
			return;
		}
		if (smtp_reply_line(buf_head(in), len, &code, &more, &text, &textlen) < 0) {
			reply_upstream_lost(e, "malformed reply");
			return;
		}
		if (e->reply_lines > 0 && code != e->reply_code) {
			reply_upstream_lost(e, "inconsistent multi-line reply");
			return;
		}
		if (e->reply_lines >= SMTP_REPLY_MAX_LINES) {
			reply_upstream_lost(e, "reply has too many lines");
			return;
		}
		int n = snprintf(out, sizeof(out), "%03d%s%.*s\r\n", code,
		    more ? "-" : (textlen ? " " : ""), (int)textlen, text);
		if (n < 0 || buf_append(&e->reply, out, (size_t)n) < 0) {
			reply_upstream_lost(e, "reply too long");
			return;
		}
		e->reply_code = code;
		e->reply_lines++;
		buf_consume(in, consumed);
		if (!more) {
			on_reply(e, code);
			buf_reset(&e->reply);
			buf_release(&e->reply); /* between replies the engine keeps none */
			e->reply_lines = 0;
		}
	}
}

/* ------------------------------------------------- upstream failures */

/* Answer what still waits for the upstream after it is gone. */
static void
resolve_waiting(struct smtp_engine *e, const char *line)
{
	for (struct pend *p = e->head; p; p = p->next) {
		if (p->state != PEND_AWAIT)
			continue;
		if (p->kind == PK_BDAT_PART || (p->flags & PF_DROP)) {
			reply_set(p, NULL, 0);
		} else if (p->kind == PK_CONV_DATA) {
			reply_set_line(p, line);
			e->tflags |= TF_BDAT_FAILED;
		} else {
			reply_set_line(p, line);
		}
	}
	e->await = NULL;
}

/*
 * Deliberately end the upstream connection (refused or denied message):
 * no end of data is sent, so the destination discards the partial message.
 */
void
reply_upstream_abort(struct smtp_engine *e, const char *why)
{
	if (e->flags & EF_UP_DEAD)
		return;
	log_sid(LOG_LVL_INFO, e->id, "smtp upstream abort reason=\"%s\"", why);
	e->flags |= EF_UP_DEAD;
	io_close(e->sio);
	resolve_waiting(e, R_TXN_ABORTED);
}

/* The upstream failed (closed, reset, timed out, spoke nonsense). */
void
reply_upstream_lost(struct smtp_engine *e, const char *why)
{
	if (e->flags & EF_UP_DEAD)
		return;
	log_sid(LOG_LVL_INFO, e->id, "smtp upstream lost reason=\"%s\" phase=%s pending=%u", why,
	    smtp_phase_name(e->phase), e->npend);
	e->flags |= EF_UP_DEAD;
	io_close(e->sio);
	/* Between messages, or at one's end: the transaction is over (its owed end answered). */
	if (e->phase != SP_DATA && e->phase != SP_BDAT)
		msg_txn_reset(e);
	if (e->phase == SP_DATA || e->phase == SP_BDAT) {
		/* The client is sending a message: let it finish, then answer 451. */
		resolve_waiting(e, R_UP_LOST);
		io_resume(e->cio); /* it may have been paused for a full upstream */
		smtp_process_client(e);
		return;
	}
	/* Earlier replies go out; the first one we cannot give becomes a 421. */
	struct pend *p = e->head, *prev = NULL;
	while (p && pend_answered(p)) {
		prev = p;
		p = p->next;
	}
	drop_after(e, prev);
	reply_local(e, 0, R_UP_LOST_RETRY);
	smtp_enter(e, SP_CLOSING);
	reply_flush(e);
}
