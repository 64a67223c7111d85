/*
 * smtp_proxy - the SMTP engine: smtpgw speaks SMTP as a server to the
 * client and as a client to the real destination.  Every command, reply
 * and message line is parsed (smtp_parse, smtp_data) and re-emitted in
 * canonical form; no byte is spliced from one leg to the other.
 *
 * Replies reach the client in command order through one FIFO of pending
 * replies ("pend"): a command answered locally gets a ready entry, a
 * command forwarded upstream an entry that the upstream's reply fills.
 *
 * Invariants (each enforced in one place, see smtp_proxy.c):
 *  - nothing is sent upstream before the final line of its greeting;
 *  - DATA mode starts only after the upstream's 354;
 *  - the end of data (".", BDAT LAST) goes upstream only after the
 *    inspection verdict, and never for incomplete or refused data;
 *  - the client's end of data is answered with the upstream's own reply;
 *  - bytes after a group-ending command, before its reply, are a protocol
 *    error: never executed.
 */
#ifndef SMTPGW_SMTP_PROXY_H
#define SMTPGW_SMTP_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "ev.h"
#include "inspect.h"
#include "smtp_caps.h"
#include "smtp_data.h"
#include "smtp_parse.h"

struct session;

/* How many commands may wait for replies (pipelining depth) before we stop reading. */
#define SMTP_MAX_PENDING 256
/* Octets of BDAT data converted to DATA held at once (a partial line). */
#define SMTP_CONV_MAX (70 * 1024)

enum smtp_cphase {
	CP_GREETING, /* waiting for the upstream greeting */
	CP_COMMAND,  /* reading commands */
	CP_DATA,     /* reading a DATA message */
	CP_BDAT,     /* reading a BDAT chunk */
	CP_AUTH,     /* the next line is an AUTH response */
	CP_NOUP,     /* the upstream is gone: 421 to whatever comes */
	CP_TLS_WAIT, /* STARTTLS: handshakes in progress, no client input */
	CP_CLOSING,  /* flushing the last replies, then close */
};

struct pend;

struct smtp_proxy {
	enum smtp_cphase phase;
	/* client side, as claimed by the commands it sent */
	bool helo_done, esmtp;
	bool mail_sent;
	bool smtputf8;
	unsigned rcpt_sent;
	bool group_wait;   /* a group-ending command awaits its reply */
	bool violation;    /* improper pipelining seen: close once replies are out */
	bool auth_done;
	bool client_tls, up_tls; /* each leg's TLS state, independent */
	struct pend *tls_pend;   /* the client's STARTTLS entry, answered after the upstream TLS */
	const char *close_reply; /* sent when the FIFO drains, then close */
	/* the reply FIFO */
	struct pend *head, *tail;
	unsigned npend;
	struct pend *await; /* oldest entry waiting for an upstream reply */
	/* upstream */
	bool greeted;
	bool up_dead;
	struct caps upcaps, shown;
	struct buf reply;  /* the upstream reply being assembled (canonical) */
	int reply_code, reply_lines;
	/* transaction */
	char helo[SMTP_DOMAIN_MAX + 1];
	char *mail_from;
	char **rcpts;      /* sent upstream */
	unsigned nrcpts;
	unsigned naccepted;
	struct data_framer framer;
	const struct inspector *insp;
	void *itxn;
	bool itxn_open;
	uint64_t msg_bytes;
	/* BDAT */
	uint64_t chunk_left;
	bool chunk_last;
	bool bdat_started;  /* this transaction already sent BDAT/DATA upstream */
	bool bdat_convert;  /* upstream lacks CHUNKING: BDAT becomes DATA */
	bool bdat_failed;   /* a BDAT of this transaction failed: discard the rest */
	bool conv_ready;    /* conversion: the upstream's 354 arrived */
	struct pend *chunk_pend; /* the entry answering the chunk being read */
	struct buf conv;
	uint64_t chunk_size;
	struct ev_timer ctimer; /* how long we wait for the client */
};

void smtp_init(struct session *s, const struct inspector *insp);
void smtp_free(struct session *s);
/* The upstream connection is up: wait for its greeting. */
void smtp_upstream_connected(struct session *s);
void smtp_client_event(struct session *s, int ev);
void smtp_server_event(struct session *s, int ev);
/* Implicit TLS: let a paused client handshake finish so it can read a refusal. */
void smtp_tls_finish_for_reply(struct session *s);
/* Worker start: install the ClientHello callback on the client-leg contexts. */
void smtp_tls_init(void);
/* Implicit TLS (465): both legs are TLS before the SMTP dialogue starts. */
void smtp_set_implicit_tls(struct session *s);

#endif
