/*
 * smtp_int - the SMTP engine's private types, shared by its files
 * (smtp_proxy.c, smtp_cmd.c, smtp_reply.c, smtp_msg.c, tls_intercept.c)
 * and by nothing else.  The design and invariants are in smtp_proxy.h.
 *
 * State: the engine's state is one explicit phase (enum smtp_phase),
 * changed only by smtp_enter(), plus two documented flag words: EF_* for
 * the session (what each leg has said and done), TF_* for the current
 * mail transaction.  A pending reply's state is one enum (pend_state).
 *
 * Function prefixes name their file: smtp_ (smtp_proxy.c), cmd_
 * (smtp_cmd.c), reply_ (smtp_reply.c), msg_ (smtp_msg.c), up_
 * (smtp_upstream.c), tlsi_ (tls_intercept.c).
 */
#ifndef SMTPGW_SMTP_INT_H
#define SMTPGW_SMTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "dkimsig.h"
#include "ev.h"
#include "hold.h"
#include "inspect.h"
#include "io.h"
#include "log.h"
#include "smtp_caps.h"
#include "smtp_data.h"
#include "smtp_parse.h"
#include "smtp_proxy.h"
#include "tls.h"

/* How many commands may wait for replies (pipelining depth) before we stop reading. */
#define SMTP_MAX_PENDING 256
/* Octets of BDAT data converted to DATA held at once (a partial line). */
#define SMTP_CONV_MAX (70 * 1024)
/*
 * The inspector is fed in batches: the framed lines of one read (CRLF
 * included) are collected here and handed over in one body() call, at
 * most about this much at a time (one more line may take it over).  A
 * call per line cost the MIME parser ~0.7 ms per MiB (daemon/INSPECT.md).
 */
#define SMTP_STAGE_MAX (64 * 1024)
/* Message octets gathered for the destination while more input waits (msg_data_input). */
#define SMTP_FLUSH_BATCH (64 * 1024)

/* Reply texts used in more than one place. */
#define R_HELO_FIRST "503 5.5.1 Error: send HELO/EHLO first"
#define R_NEED_RCPT "503 5.5.1 Error: need RCPT command"
#define R_BYE "221 2.0.0 Bye"
#define R_OK "250 2.0.0 Ok"
#define R_UP_CLOSED "421 4.4.2 Error: connection to destination closed"
#define R_UP_CLOSED_RETRY "421 4.4.2 Error: connection to destination closed, try again later"
#define R_UP_LOST "451 4.4.2 Error: connection to destination lost"
#define R_UP_LOST_RETRY "421 4.4.2 Error: connection to destination lost, try again later"
#define R_UP_LOST_MSG "451 4.4.2 Error: connection to destination lost, message not delivered"
#define R_TXN_ABORTED "451 4.4.2 Error: transaction aborted"
#define R_BDAT_FAILED "503 5.5.1 Error: an earlier BDAT of this transaction failed"
#define R_TLS_LOCAL "454 4.7.0 TLS not available due to local problem"
#define R_TIMEOUT "421 4.4.2 Error: timeout exceeded, closing connection"
#define R_PIPELINING "421 4.5.0 Error: protocol violation (improper command pipelining), " \
	"closing connection"
#define R_NO_RCPT "554 5.5.1 Error: no valid recipients"
/* A DATA (ours, for a held or converted message) answered with neither 354 nor 4xx/5xx. */
#define R_DATA_NOT_TAKEN "451 4.4.2 Error: the destination did not take the message, " \
	"try again later"

/* What the engine is doing with the client's input. */
enum smtp_phase {
	SP_GREETING, /* waiting for the upstream greeting */
	SP_COMMAND,  /* reading commands */
	SP_DATA,     /* reading a DATA message */
	SP_BDAT,     /* reading a BDAT chunk */
	SP_AUTH,     /* the next line is an AUTH response */
	SP_NOUP,     /* the upstream is gone: 421 to whatever comes */
	SP_TLS_WAIT, /* STARTTLS: handshakes in progress, no client input */
	SP_CLOSING,  /* flushing the last replies, then close */
	/*
	 * The message is in: its verdict, the DKIM check and, for a held
	 * message, its release upstream (smtp_msg.c).  The client's next
	 * commands wait in its input buffer: nothing may reach the
	 * destination before the end of this message.
	 */
	SP_VERDICT,
	/* A new upstream connection replaces one closed to discard a message (smtp_upstream.c). */
	SP_RELINK,
};

/* Session flags (e->flags): what each leg has said and done. */
#define EF_HELO 0x0001u         /* the upstream accepted HELO/EHLO */
#define EF_ESMTP 0x0002u        /* ... and it was EHLO */
#define EF_AUTH 0x0004u         /* AUTH succeeded */
#define EF_CLIENT_TLS 0x0008u   /* the client leg is TLS */
#define EF_UP_TLS 0x0010u       /* the upstream leg is TLS */
#define EF_GREETED 0x0020u      /* the upstream's greeting arrived */
#define EF_UP_DEAD 0x0040u      /* the upstream leg is closed */
#define EF_VIOLATION 0x0080u    /* improper pipelining: close once replies are out */
#define EF_GROUP_WAIT 0x0100u   /* a group-ending command awaits its reply */
#define EF_IMPLICIT_TLS 0x0200u /* port 465: TLS from the first byte on both legs */
#define EF_HELLO_SEEN 0x0400u   /* the client's ClientHello arrived */
#define EF_STOPPED 0x0800u      /* the session closed: deliver nothing more */
/* The legs' TLS on their own (tls_intercept.c). */
#define EF_RELINK 0x1000u       /* the upstream was closed to discard a message: reconnect */
#define EF_UP_CHANGED 0x2000u   /* the reconnected upstream offers less than the client saw */
/* The legs' TLS on their own (tls_intercept.c). */
#define EF_UP_OWN 0x10000u      /* the engine's own STARTTLS on the recipient leg is running */
#define EF_UP_TRIED 0x20000u    /* ... was tried (done or refused): never again */
#define EF_CLIENT_ONLY 0x40000u /* client TLS without upstream TLS (allow-cleartext-relay) */

/* Transaction flags (e->tflags): the mail transaction in progress. */
#define TF_MAIL 0x0001u         /* MAIL sent upstream (and not refused) */
#define TF_SMTPUTF8 0x0002u     /* MAIL carried SMTPUTF8 */
#define TF_INSPECTING 0x0004u   /* an inspector transaction is open */
#define TF_BDAT 0x0008u         /* this transaction already sent BDAT/DATA upstream */
#define TF_BDAT_FAILED 0x0010u  /* a BDAT of this transaction failed: discard the rest */
#define TF_CONV_READY 0x0020u   /* conversion: the upstream's 354 arrived */
/* These two describe the BDAT chunk being read and outlive a reset. */
#define TF_BDAT_CONVERT 0x0040u /* upstream lacks CHUNKING: BDAT becomes DATA */
#define TF_CHUNK_LAST 0x0080u   /* the chunk being read is the LAST one */
#define TF_RESET_KEEP (TF_BDAT_CONVERT | TF_CHUNK_LAST)
/* Content inspection (smtp_msg.c). */
#define TF_HELD 0x0100u         /* the message is held until its verdict (hold.h) */
#define TF_VERDICT 0x0200u      /* the end of data waits: verdict, DKIM check, release */
#define TF_INSP_BUSY 0x0400u    /* the inspector asked for a pause: the client waits */
#define TF_INSP_FAILED 0x0800u  /* the inspector timed out before the end */
#define TF_RELEASING 0x1000u    /* the held copy is streaming upstream */

/* A pending reply's state. */
enum pend_state {
	PEND_AWAIT,  /* waits for the upstream's reply */
	PEND_HELD,   /* answered later by the engine (a BDAT chunk's carrier, STARTTLS) */
	PEND_READY,  /* reply set: goes out when it reaches the head */
	PEND_SILENT, /* answered with nothing (absorbed, dropped) */
};

/* What kind of command an entry answers: selects its reply handler (smtp_reply.c). */
enum pend_kind {
	PK_OTHER,      /* the reply is relayed, nothing to learn from it */
	PK_EHLO,
	PK_HELO,
	PK_MAIL,
	PK_RCPT,
	PK_DATA,       /* the DATA command (354 starts the message) */
	PK_DATAEND,    /* the reply to the end of data */
	PK_BDAT,       /* a BDAT chunk forwarded as BDAT */
	PK_BDAT_PART,  /* "BDAT n" of a BDAT n LAST: a 2xx is absorbed, a failure answers */
	PK_CONV_DATA,  /* DATA sent for a BDAT chunk (upstream lacks CHUNKING) */
	PK_STARTTLS,   /* STARTTLS sent upstream for the client */
	PK_OWN_STARTTLS, /* STARTTLS the engine sent for the recipient leg: never relayed */
	PK_OWN_EHLO,   /* EHLO the engine sent for the recipient leg: never relayed */
	PK_AUTH,
	PK_QUIT,
	PK_LOCAL,      /* answered by smtpgw itself */
	PK_HOLD_START, /* NOOP sent in place of DATA/BDAT for a held message (smtp_msg.c) */
	PK_HOLD_DATA,  /* DATA sent after the verdict of a held message (smtp_msg.c) */
};

#define PF_GROUP_END 0x1u /* the client may send nothing until this reply */
#define PF_DROP 0x2u      /* the reply is dropped, whatever it is */

struct pend {
	struct pend *next;
	enum pend_kind kind;
	enum pend_state state;
	unsigned flags;
	char *reply; /* canonical reply with CRLFs, PEND_READY only */
	size_t len;
	char *note;  /* PK_DATAEND: the ended transaction, for its log line */
};

/* The mail transaction (reset by msg_txn_reset). */
struct smtp_txn {
	char *mail_from;
	char **rcpts;      /* sent upstream */
	unsigned nrcpts;
	unsigned naccepted;
	unsigned rcpt_sent;
	struct data_framer framer;
	void *itxn;        /* the inspector's transaction */
	uint64_t msg_bytes;
	/* BDAT */
	uint64_t chunk_left;
	uint64_t chunk_size;
	struct pend *chunk_pend; /* the entry answering the chunk being read */
	struct buf conv;         /* conversion to DATA: a partial line */
	struct buf stage;        /* lines not yet shown to the inspector (SMTP_STAGE_MAX) */
	/* inspection: the verdict and what follows it (smtp_msg.c) */
	struct inspect_hooks hooks; /* handed to the inspector; ctx is the engine */
	struct ev_timer itimer;     /* bounds every wait for the inspector (inspect-timeout) */
	uint64_t verdict_ms;        /* when the verdict was asked */
	struct pend *verdict_pend;  /* the client's end-of-data entry, while TF_VERDICT */
	const char *enddata;        /* what ends the message upstream ("." or "BDAT 0 LAST") */
	struct inspect_result res;  /* the verdict being applied (its edits) */
	/* a held message */
	struct hold hold;
	struct hold_cursor cur;     /* its release upstream */
	bool cur_bol;               /* the release is at a line start (dot-stuffing) */
	struct dkimsig *dkim;       /* the DKIM check of its edits */
	int dkim_pass;              /* 0: the original, 1: the changed copy */
	struct ev_timer work;       /* the DKIM check runs in slices between events */
	struct ev_timer keepalive;  /* NOOPs to an upstream idle while we hold */
};

struct smtp_engine {
	uint64_t id;
	const struct config *conf;
	const struct smtp_limits *lim;
	int policy;
	bool inbound;
	const union sockaddr_any *client_addr, *server_addr;
	struct io *cio, *sio; /* sio is NULL until the upstream connected */
	const struct smtp_ops *ops;
	void *owner;

	enum smtp_phase phase;
	unsigned flags;  /* EF_* */
	unsigned tflags; /* TF_* */

	/* the reply FIFO */
	struct pend *head, *tail;
	unsigned npend;
	struct pend *await;      /* oldest entry waiting for an upstream reply */
	struct pend *tls_pend;   /* the client's STARTTLS entry, answered after the upstream TLS */
	const char *close_reply; /* sent when the FIFO drains, then close */

	/* upstream */
	struct caps upcaps, shown;
	struct buf reply;        /* the upstream reply being assembled (canonical) */
	int reply_code, reply_lines;

	char helo[SMTP_DOMAIN_MAX + 1];
	struct smtp_txn txn;
	const struct inspector *insp;
	struct ev_timer ctimer;  /* how long we wait for the client */
	struct log_limit loglim; /* lines a client can provoke at will are rate-limited */

	/* TLS interception */
	char sni[256];      /* the client's SNI, mirrored upstream */
	char upref[256];    /* the name sent upstream as SNI ("" none): what it is judged on */
	bool up_offered;    /* a cached session was offered upstream ... */
	unsigned char up_offered_cert[32]; /* ... holding this certificate (SHA-256) */
	int client_tls_max; /* highest TLS version the client offered */
	/* the client leg's session binding (tls.h), once its certificate is chosen */
	unsigned char binding[32]; /* TLS_BINDING_LEN */
	bool bound;
	/* a forged leaf asked of the signer (the client's handshake waits, paused) */
	struct certcache_req *cert_req;
	struct tls_verdict verdict; /* the upstream's, for the leaf and the binding */

	/* a reconnection in progress (smtp_upstream.c) */
	struct {
		int step;
		bool tls;          /* the first upstream leg had TLS: so must this one */
		uint64_t start_ms;
		struct caps caps;
	} relink;
};

/* Answered, with a reply or with nothing: may leave the FIFO. */
static inline bool
pend_answered(const struct pend *p)
{
	return p->state == PEND_READY || p->state == PEND_SILENT;
}

static inline bool
smtp_stopped(const struct smtp_engine *e)
{
	return (e->flags & EF_STOPPED) != 0;
}

/* smtp_proxy.c */
void smtp_enter(struct smtp_engine *e, enum smtp_phase phase);
const char *smtp_phase_name(enum smtp_phase phase);
void smtp_finish(struct smtp_engine *e, const char *why);
void smtp_close(struct smtp_engine *e, const char *why);
void smtp_process_client(struct smtp_engine *e);
void smtp_client_timer(struct smtp_engine *e);
void smtp_block_client(struct smtp_engine *e, const char *token, const char *reason);
const struct conf_action *smtp_action(const struct smtp_engine *e);
int smtp_profile(const struct smtp_engine *e);

/* smtp_reply.c */
struct pend *reply_new(struct smtp_engine *e, enum pend_kind kind, bool upstream,
    unsigned flags);
void reply_set(struct pend *p, const char *reply, size_t len);
void reply_set_line(struct pend *p, const char *line);
void reply_hold(struct pend *p);
void reply_local(struct smtp_engine *e, unsigned flags, const char *line);
void reply_flush(struct smtp_engine *e);
void reply_forward(struct smtp_engine *e, enum pend_kind kind, unsigned flags,
    unsigned timeout, const char *fmt, ...) PRINTF_LIKE(5, 6);
void reply_server_timeout(struct smtp_engine *e, unsigned seconds);
void reply_server_timer(struct smtp_engine *e);
void reply_input(struct smtp_engine *e);
void reply_upstream_abort(struct smtp_engine *e, const char *why);
void reply_upstream_lost(struct smtp_engine *e, const char *why);

/* smtp_cmd.c */
void cmd_input(struct smtp_engine *e);
void cmd_violation(struct smtp_engine *e, const char *what);
void cmd_refuse(struct smtp_engine *e, const struct smtp_cmd *cmd, const char *reply);

/* smtp_msg.c */
void msg_init(struct smtp_engine *e);
/* The session is closing: the inspection is cancelled, no timer of the message runs on. */
void msg_stop(struct smtp_engine *e);
void msg_free(struct smtp_engine *e);
/* The DATA command: the inspection begins (it decides whether the message is held). */
void msg_data_cmd(struct smtp_engine *e);
/* The client must not be timed out: smtpgw is the one waiting (the inspector). */
bool msg_client_waits(const struct smtp_engine *e);
/* The upstream is receiving a held message: its timer runs, IO_LOWAT goes to msg_release(). */
bool msg_upstream_busy(const struct smtp_engine *e);
void msg_release(struct smtp_engine *e);
/* Reply handlers (reply_table) for PK_HOLD_START and PK_HOLD_DATA. */
bool msg_on_hold_start(struct smtp_engine *e, struct pend *p, int code);
bool msg_on_hold_data(struct smtp_engine *e, struct pend *p, int code);
/* The inspection is cancelled (the transaction or the upstream is gone). */
void msg_inspect_cancel(struct smtp_engine *e);
void msg_txn_reset(struct smtp_engine *e);
void msg_data_start(struct smtp_engine *e);
void msg_data_input(struct smtp_engine *e);
void msg_bdat(struct smtp_engine *e, struct smtp_cmd *cmd);
void msg_bdat_skip(struct smtp_engine *e, const struct smtp_cmd *cmd);
void msg_bdat_input(struct smtp_engine *e);
void msg_log_result(struct smtp_engine *e, const char *result, const char *note,
    const char *reply);

/* smtp_upstream.c */
/* The upstream was closed to discard a message: replace it, or go to SP_NOUP. */
void up_relink(struct smtp_engine *e);
/* The new upstream's events while SP_RELINK. */
void up_event(struct smtp_engine *e, enum io_event ev);
/* Why MAIL must wait (a reconnected upstream offers less than the client saw), or NULL. */
const char *up_mail_refusal(const struct smtp_engine *e);

/* tls_intercept.c */
/* Start the upstream TLS handshake (SNI sni, or none). */
void tlsi_upstream_begin(struct smtp_engine *e);
bool tlsi_offered(const struct smtp_engine *e);
void tlsi_starttls(struct smtp_engine *e, struct smtp_cmd *cmd);
/* The upstream answered our STARTTLS; false when the engine must stop handling this reply. */
bool tlsi_upstream_reply(struct smtp_engine *e, struct pend *p, int code);
/* ... the STARTTLS / EHLO the engine sent on its own for the recipient leg (same contract). */
bool tlsi_own_starttls_reply(struct smtp_engine *e, struct pend *p, int code);
bool tlsi_own_ehlo_reply(struct smtp_engine *e, struct pend *p, int code);
/*
 * Before the client's command line (len octets, not yet consumed) is
 * read: true when it must wait in the buffer because the recipient leg
 * goes TLS first (started now, or running).
 */
bool tlsi_recipient_tls(struct smtp_engine *e, const char *line, size_t len);
/* Why MAIL must be refused for the legs' encryption, or NULL. */
const char *tlsi_mail_refusal(const struct smtp_engine *e);
void tlsi_upstream_ready(struct smtp_engine *e);
void tlsi_client_hello(struct smtp_engine *e);
void tlsi_client_ready(struct smtp_engine *e);
void tlsi_upstream_connected(struct smtp_engine *e);

#endif
