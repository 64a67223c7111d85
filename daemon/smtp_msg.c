/*
 * smtp_msg - the message side of the SMTP engine: the mail transaction,
 * DATA and BDAT framed line by line (smtp_data.c) into the inspector and
 * upstream, BDAT converted to DATA for destinations without CHUNKING, and
 * the end of data, which goes upstream only after the verdict (msg_end).
 *
 * Flow control: a message line is appended to the upstream's output only
 * when there is room for a whole line (upstream_has_room); otherwise the
 * client leg is paused and the upstream's IO_LOWAT resumes it.  Nothing
 * here buffers a message beyond the two legs' buffers and, for BDAT
 * conversion, one partial line (SMTP_CONV_MAX).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp_int.h"
#include "util.h"

void
msg_init(struct smtp_engine *e)
{
	buf_init(&e->txn.conv, SMTP_CONV_MAX);
}

void
msg_free(struct smtp_engine *e)
{
	msg_txn_reset(e);
	buf_free(&e->txn.conv);
}

/* Forget the transaction: a new MAIL, RSET, EHLO, TLS or its end. */
void
msg_txn_reset(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;

	if (e->tflags & TF_INSPECTING) {
		e->insp->abort(t->itxn);
		t->itxn = NULL;
	}
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

/* ---------------------------------------------------------- inspector */

static void
inspect_begin(struct smtp_engine *e)
{
	struct inspect_envelope env = {
		.session_id = e->id,
		.inbound = e->inbound,
		.client = e->client_addr,
		.server = e->server_addr,
		.helo = e->helo,
		.mail_from = e->txn.mail_from ? e->txn.mail_from : "",
		.rcpts = (const char *const *)e->txn.rcpts,
		.nrcpts = (int)e->txn.nrcpts,
	};

	e->txn.itxn = e->insp->begin(e->insp, &env);
	e->tflags |= TF_INSPECTING;
}

static void
inspect_body(struct smtp_engine *e, const char *p, size_t n)
{
	if (e->tflags & TF_INSPECTING)
		e->insp->body(e->txn.itxn, p, n);
}

static void
inspect_abort(struct smtp_engine *e)
{
	if (e->tflags & TF_INSPECTING) {
		e->insp->abort(e->txn.itxn);
		e->tflags &= ~TF_INSPECTING;
		e->txn.itxn = NULL;
	}
}

/* The verdict; true means the end of data may go upstream. */
static bool
inspect_end(struct smtp_engine *e, struct inspect_result *res)
{
	memset(res, 0, sizeof(*res));
	res->verdict = INSPECT_ALLOW;
	if (e->tflags & TF_INSPECTING) {
		e->insp->end(e->txn.itxn, res);
		e->tflags &= ~TF_INSPECTING;
		e->txn.itxn = NULL;
	}
	if (res->verdict == INSPECT_ALLOW)
		return true;
	/* An inspector's reply must be a well-formed 4xx/5xx of its class. */
	char want = res->verdict == INSPECT_DENY ? '5' : '4';
	if (res->reply[0] != want || !isdigit((unsigned char)res->reply[1]) ||
	    !isdigit((unsigned char)res->reply[2]) || res->reply[3] != ' ')
		snprintf(res->reply, sizeof(res->reply), "%s",
		    want == '5' ? "554 5.7.1 Message rejected by content policy"
		    : "451 4.7.1 Message temporarily rejected by content policy");
	for (char *c = res->reply; *c; c++)
		if ((unsigned char)*c < 32 || (unsigned char)*c == 127)
			*c = ' ';
	return false;
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
	snprintf(buf, len, "from=%s rcpts=%u accepted=%u size=%llu", from, t->nrcpts,
	    t->naccepted, (unsigned long long)t->framer.size + t->msg_bytes);
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

/* ----------------------------------------------------------- the end */

/* Answer the end of data locally: on the BDAT carrier, or a new entry for DATA. */
static void
answer_end(struct smtp_engine *e, struct pend *carrier, const char *reply)
{
	if (carrier)
		reply_set_line(carrier, reply);
	else
		reply_local(e, 0, reply);
	log_message(e, "refused", reply);
	msg_txn_reset(e);
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
	struct inspect_result res;

	if (data_refused(&t->framer)) {
		reply_upstream_abort(e, "message refused");
		inspect_abort(e);
		answer_end(e, carrier, data_refusal_reply(&t->framer));
		return;
	}
	if (e->flags & EF_UP_DEAD) {
		inspect_abort(e);
		answer_end(e, carrier, R_UP_LOST_MSG);
		return;
	}
	if (!inspect_end(e, &res)) {
		log_sid(LOG_LVL_INFO, e->id, "smtp inspect verdict=%s inspector=%s reason=%s",
		    res.verdict == INSPECT_DENY ? "deny" : "tempfail", e->insp->name,
		    res.reason[0] ? res.reason : "-");
		reply_upstream_abort(e, "inspection verdict");
		answer_end(e, carrier, res.reply);
		return;
	}
	/* Allowed: now, and only now, the end of data goes upstream. */
	if (carrier)
		reply_set(carrier, NULL, 0); /* answered by the entry below */
	reply_forward(e, PK_DATAEND, 0, e->lim->t_server_data_end, "%s", enddata);
	/*
	 * For the client the transaction is over: it may pipeline the next
	 * MAIL right behind the end of data (RFC 2920).  What the log line
	 * needs rides on the entry that waits for the upstream's verdict.
	 */
	if (e->tail && e->tail->kind == PK_DATAEND) {
		char note[TXN_NOTE_MAX];

		txn_note(e, note, sizeof(note));
		e->tail->note = xstrdup(note);
	}
	msg_txn_reset(e);
}

/* ---------------------------------------------------------------- DATA */

void
msg_data_start(struct smtp_engine *e)
{
	const struct smtp_limits *lim = e->lim;

	smtp_enter(e, SP_DATA);
	data_init(&e->txn.framer, lim->bare_newline_normalize ? DATA_BARE_NORMALIZE :
	    DATA_BARE_REJECT, false, lim->max_line_length, lim->max_message_size);
	e->txn.msg_bytes = 0;
	inspect_begin(e);
	reply_server_timeout(e, lim->t_server_data_block);
}

/* One message line to the upstream, re-stuffed, and to the inspector. */
static void
emit_line(struct smtp_engine *e, const char *line, size_t len)
{
	struct buf *out = io_out(e->sio);

	if (len > 0 && line[0] == '.')
		(void)buf_append(out, ".", 1);
	(void)buf_append(out, line, len);
	(void)buf_append(out, "\r\n", 2);
	inspect_body(e, line, len);
	inspect_body(e, "\r\n", 2);
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

	if ((e->flags & EF_UP_DEAD) || buf_room(io_out(e->sio)) >= need)
		return true;
	io_kick(e->sio);
	return buf_room(io_out(e->sio)) >= need;
}

/* A framed line: upstream, unless the message is refused (then nothing more goes). */
static void
take_line(struct smtp_engine *e, const char *line, size_t len)
{
	if (data_refused(&e->txn.framer)) {
		/* Stop forwarding at once; no dot will ever follow. */
		reply_upstream_abort(e, "message refused");
	} else if (!(e->flags & EF_UP_DEAD)) {
		emit_line(e, line, len);
	}
}

void
msg_data_input(struct smtp_engine *e)
{
	struct buf *in = io_in(e->cio);

	while (e->phase == SP_DATA && !smtp_stopped(e)) {
		const char *line;
		size_t consumed, len;
		enum data_status st;

		if (!upstream_has_room(e)) {
			io_pause(e->cio); /* resumed when the upstream drains */
			break;
		}
		st = data_next(&e->txn.framer, buf_head(in), buf_len(in), &consumed, &line, &len);
		if (st == DATA_NEED_MORE) {
			buf_consume(in, consumed);
			break;
		}
		if (st == DATA_LINE)
			take_line(e, line, len);
		buf_consume(in, consumed);
		if (st == DATA_END) {
			smtp_enter(e, SP_COMMAND);
			msg_end(e, NULL, ".");
			if ((e->flags & EF_UP_DEAD) && e->phase == SP_COMMAND)
				smtp_enter(e, SP_NOUP);
		}
	}
	if (!(e->flags & EF_UP_DEAD))
		io_kick(e->sio);
}

/* ---------------------------------------------------------------- BDAT */

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

/* A refused BDAT command: its chunk is data, never commands -- read and discard it. */
void
msg_bdat_skip(struct smtp_engine *e, const struct smtp_cmd *cmd)
{
	bdat_begin(e, cmd, NULL);
	e->tflags |= TF_BDAT_FAILED;
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
		/*
		 * Forwarded as BDAT only when the destination has CHUNKING and
		 * bare newlines are refused anyway: normalising them needs the
		 * conversion to DATA, which re-frames every line.
		 */
		if (!(e->upcaps.flags & CAP_CHUNKING) || lim->bare_newline_normalize)
			e->tflags |= TF_BDAT_CONVERT;
		else
			e->tflags &= ~TF_BDAT_CONVERT;
		data_init(&t->framer, lim->bare_newline_normalize ? DATA_BARE_NORMALIZE :
		    DATA_BARE_REJECT, true, lim->max_line_length, lim->max_message_size);
		t->msg_bytes = 0;
		inspect_begin(e);
		if (e->tflags & TF_BDAT_CONVERT) {
			/* The chunk waits in the client buffer until the upstream's 354. */
			e->tflags &= ~TF_CONV_READY;
			reply_forward(e, PK_CONV_DATA, 0, lim->t_server_data_init, "DATA");
			bdat_begin(e, cmd, e->tail);
			return;
		}
	}
	if (e->tflags & TF_BDAT_CONVERT) {
		/* Later chunks of a converted transaction are answered by us. */
		bdat_begin(e, cmd, reply_new(e, PK_LOCAL, false, 0));
		return;
	}
	if (t->framer.size + cmd->chunk_size > lim->max_message_size) {
		/* Never forward a chunk we would refuse; its bytes are discarded. */
		t->framer.flags |= DATA_F_TOO_BIG;
		bdat_begin(e, cmd, reply_new(e, PK_LOCAL, false, 0));
		reply_upstream_abort(e, "message too large");
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

/* Conversion: frame what the conv buffer holds into stuffed DATA lines. */
static bool
conv_drain(struct smtp_engine *e, bool final)
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

/* The chunk is all in: answer it, or end the message after the last one. */
static void
chunk_done(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;
	struct pend *p = t->chunk_pend;
	bool convert = (e->tflags & TF_BDAT_CONVERT) != 0;
	char line[80];

	smtp_enter(e, SP_COMMAND);
	t->chunk_pend = NULL;
	if ((e->tflags & TF_CHUNK_LAST) && !convert)
		data_scan_end(&t->framer); /* a chunk may end in a CR the next one never had */
	if (p == NULL || (e->tflags & TF_BDAT_FAILED)) {
		/* refused command or failed transaction: the reply is set already */
		if (p && p->state == PEND_HELD)
			reply_set_line(p, R_BDAT_FAILED);
	} else if (data_refused(&t->framer)) {
		if (!pend_answered(p))
			reply_set_line(p, data_refusal_reply(&t->framer));
		log_message(e, "refused", data_refusal_reply(&t->framer));
		e->tflags |= TF_BDAT_FAILED;
		/* Converted, the destination is in DATA mode: it can only be left without a dot. */
		if (convert)
			reply_upstream_abort(e, "message refused");
	} else if (e->tflags & TF_CHUNK_LAST) {
		FATAL_IF(convert && buf_len(&t->conv) > 0);
		msg_end(e, p, convert ? "." : "BDAT 0 LAST");
	} else if (convert) {
		snprintf(line, sizeof(line), "250 2.0.0 %llu octets received",
		    (unsigned long long)t->chunk_size);
		reply_set_line(p, line);
	}
	if ((e->flags & EF_UP_DEAD) && e->phase == SP_COMMAND)
		smtp_enter(e, SP_NOUP);
	reply_flush(e);
}

void
msg_bdat_input(struct smtp_engine *e)
{
	struct smtp_txn *t = &e->txn;
	struct buf *in = io_in(e->cio);

	while (e->phase == SP_BDAT && !smtp_stopped(e)) {
		bool convert = (e->tflags & TF_BDAT_CONVERT) != 0;
		bool failed = (e->tflags & TF_BDAT_FAILED) != 0;
		size_t n = buf_len(in);

		if (t->chunk_left == 0) {
			/*
			 * A converted chunk is answered only after the upstream's 354
			 * (or its refusal): until then its entry awaits the upstream,
			 * and nothing may follow the DATA we sent -- above all no dot.
			 */
			if (convert && !failed && t->chunk_pend &&
			    t->chunk_pend->state == PEND_AWAIT)
				return;
			/* The last converted chunk: its lines must all be upstream before the dot. */
			if (convert && !failed && t->chunk_pend && !data_refused(&t->framer) &&
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
		if (!convert) {
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
				reply_upstream_abort(e, "message refused");
			} else if (!up_dead) {
				(void)buf_append(io_out(e->sio), buf_head(in), n);
				inspect_body(e, buf_head(in), n);
			}
			buf_consume(in, n);
			t->chunk_left -= n;
			if (!(e->flags & EF_UP_DEAD))
				io_kick(e->sio);
			continue;
		}
		/* conversion */
		if (!(e->tflags & TF_CONV_READY))
			return; /* the upstream's 354 resumes us */
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
		io_kick(e->sio);
	}
}
