/*
 * smtp_proxy - the SMTP engine (design and invariants in smtp_proxy.h).
 *
 * Sections: the reply FIFO; sending upstream; transaction state; the
 * command table and handlers; DATA and BDAT intake; upstream replies;
 * failures and timers; the entry points called by session.c.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include <openssl/ssl.h>

#include "certcache.h"
#include "io.h"
#include "log.h"
#include "session.h"
#include "smtp_proxy.h"
#include "tls.h"
#include "util.h"

/* ---------------------------------------------------------------- FIFO */

#define PF_EHLO 0x001u
#define PF_DATAEND 0x002u   /* the reply to the end of data */
#define PF_ABSORB_OK 0x004u /* a 2xx is dropped; a failure is relayed and drops the next */
#define PF_DROP 0x008u      /* the reply is dropped, whatever it is */
#define PF_CONV_DATA 0x010u /* DATA sent for a BDAT chunk (upstream lacks CHUNKING) */
#define PF_QUIT 0x020u
#define PF_AUTH 0x040u
#define PF_GROUP_END 0x080u /* the client may send nothing until this reply */
#define PF_STARTTLS 0x100u  /* STARTTLS sent upstream for the client */

struct pend {
	struct pend *next;
	enum smtp_verb verb;
	unsigned flags;
	bool upstream; /* waits for an upstream reply */
	bool ready;
	char *reply;   /* canonical reply with CRLFs; NULL when ready = dropped */
	size_t len;
	char *note;    /* PF_DATAEND: the ended transaction, for its log line */
};

static struct smtp_proxy *
PX(struct session *s)
{
	return &s->px;
}

static void process_client(struct session *s);
static void upstream_lost(struct session *s, const char *why);
static void upstream_abort(struct session *s, const char *why);
static void client_timer_update(struct session *s);

static struct pend *
pend_new(struct session *s, enum smtp_verb verb, bool upstream, unsigned flags)
{
	struct smtp_proxy *px = PX(s);
	struct pend *p = xcalloc(1, sizeof(*p));

	p->verb = verb;
	p->upstream = upstream;
	p->flags = flags;
	if (px->tail)
		px->tail->next = p;
	else
		px->head = p;
	px->tail = p;
	px->npend++;
	if (upstream && px->await == NULL)
		px->await = p;
	if (flags & PF_GROUP_END)
		px->group_wait = true;
	return p;
}

static void
pend_set(struct pend *p, const char *reply, size_t len)
{
	free(p->reply);
	p->reply = NULL;
	p->len = 0;
	if (reply) {
		p->reply = xstrndup(reply, len);
		p->len = len;
	}
	p->ready = true;
}

/* A locally generated one-line reply ("550 5.1.1 text", no CRLF). */
static void
pend_set_line(struct pend *p, const char *line)
{
	char buf[600];
	int n = snprintf(buf, sizeof(buf), "%s\r\n", line);

	if (n < 0 || (size_t)n >= sizeof(buf))
		fatal("local reply too long");
	pend_set(p, buf, (size_t)n);
}

static void
reply_local(struct session *s, enum smtp_verb verb, unsigned flags, const char *line)
{
	struct pend *p = pend_new(s, verb, false, flags);

	pend_set_line(p, line);
}

static struct pend *
next_await(struct pend *p)
{
	for (p = p ? p->next : NULL; p; p = p->next)
		if (p->upstream && !p->ready)
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

static void
session_close_engine(struct session *s, const char *why)
{
	struct smtp_proxy *px = PX(s);

	px->phase = CP_CLOSING;
	session_finish(s, why);
}

/* Send every ready reply at the head of the FIFO to the client, in order. */
static void
flush_replies(struct session *s)
{
	struct smtp_proxy *px = PX(s);

	while (px->head && px->head->ready && !s->dead) {
		struct pend *p = px->head;

		if (p->reply && io_write(&s->client.io, p->reply, p->len) < 0) {
			session_close(s, "client-not-reading");
			return;
		}
		if (p->flags & PF_GROUP_END)
			px->group_wait = false;
		/* Answered before its chunk was all in (an early refusal): no carrier left. */
		if (px->chunk_pend == p)
			px->chunk_pend = NULL;
		/* An entry still owed an upstream reply is never sent (nor freed). */
		FATAL_IF(p == px->await);
		px->head = p->next;
		if (px->head == NULL)
			px->tail = NULL;
		px->npend--;
		pend_free(p);
	}
	if (s->dead)
		return;
	if (px->npend == 0 && (px->phase == CP_CLOSING || px->close_reply)) {
		if (px->close_reply) {
			(void)io_printf(&s->client.io, "%s\r\n", px->close_reply);
			px->close_reply = NULL;
		}
		session_close_engine(s, px->violation ? "protocol-error" : "closed");
		return;
	}
	if (px->npend < SMTP_MAX_PENDING && px->phase != CP_CLOSING)
		io_resume(&s->client.io);
}

/* ------------------------------------------------------- upstream sends */

static void
server_timeout(struct session *s, unsigned seconds)
{
	if (!PX(s)->up_dead)
		io_set_timeout(&s->server.io, seconds * 1000u);
}

static int
up_send(struct session *s, const char *fmt, ...) PRINTF_LIKE(2, 3);

static int
up_send(struct session *s, const char *fmt, ...)
{
	char line[SMTP_CMDLINE_MAX + 64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		fatal("command too long for the upstream");
	line[n++] = '\r';
	line[n++] = '\n';
	n = io_write(&s->server.io, line, (size_t)n);
	OPENSSL_cleanse(line, sizeof(line)); /* may hold an AUTH payload */
	return n;
}

/* Forward a command: the client's reply comes from the upstream. */
static void
forward(struct session *s, enum smtp_verb verb, unsigned flags, unsigned timeout,
    const char *fmt, ...) PRINTF_LIKE(5, 6);

static void
forward(struct session *s, enum smtp_verb verb, unsigned flags, unsigned timeout,
    const char *fmt, ...)
{
	char line[SMTP_CMDLINE_MAX + 64];
	va_list ap;
	int n;

	if (PX(s)->up_dead) {
		/* Nothing to forward to: the client hears why, then the session ends. */
		reply_local(s, verb, 0, "421 4.4.2 Error: connection to destination closed");
		PX(s)->phase = CP_CLOSING;
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		fatal("command too long for the upstream");
	pend_new(s, verb, true, flags);
	if (up_send(s, "%s", line) < 0) {
		OPENSSL_cleanse(line, sizeof(line));
		upstream_lost(s, "write failed");
		return;
	}
	OPENSSL_cleanse(line, sizeof(line));
	server_timeout(s, timeout);
}

/* ---------------------------------------------------- transaction state */

static void
txn_reset(struct session *s)
{
	struct smtp_proxy *px = PX(s);

	if (px->itxn_open) {
		px->insp->abort(px->itxn);
		px->itxn_open = false;
		px->itxn = NULL;
	}
	free(px->mail_from);
	px->mail_from = NULL;
	for (unsigned i = 0; i < px->nrcpts; i++)
		free(px->rcpts[i]);
	free(px->rcpts);
	px->rcpts = NULL;
	px->nrcpts = 0;
	px->naccepted = 0;
	px->mail_sent = false;
	px->rcpt_sent = 0;
	px->smtputf8 = false;
	px->msg_bytes = 0;
	px->bdat_started = false;
	px->bdat_failed = false;
	px->conv_ready = false;
	px->chunk_pend = NULL;
	buf_reset(&px->conv);
}

static void
inspect_begin(struct session *s)
{
	struct smtp_proxy *px = PX(s);
	struct inspect_envelope env = {
		.session_id = s->id,
		.inbound = s->mf.inbound,
		.client = &s->client.peer,
		.server = &s->server.peer,
		.helo = px->helo,
		.mail_from = px->mail_from ? px->mail_from : "",
		.rcpts = (const char *const *)px->rcpts,
		.nrcpts = (int)px->nrcpts,
	};

	px->itxn = px->insp->begin(px->insp, &env);
	px->itxn_open = true;
}

static void
inspect_body(struct session *s, const char *p, size_t n)
{
	struct smtp_proxy *px = PX(s);

	if (px->itxn_open)
		px->insp->body(px->itxn, p, n);
}

/* The verdict; true means the end of data may go upstream. */
static bool
inspect_end(struct session *s, struct inspect_result *res)
{
	struct smtp_proxy *px = PX(s);

	memset(res, 0, sizeof(*res));
	res->verdict = INSPECT_ALLOW;
	if (px->itxn_open) {
		px->insp->end(px->itxn, res);
		px->itxn_open = false;
		px->itxn = NULL;
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

/* "from=<...> rcpts=N accepted=N size=N" of the current transaction. */
static void
txn_note(struct session *s, char *buf, size_t len)
{
	struct smtp_proxy *px = PX(s);
	char from[200];

	log_quote(from, sizeof(from), px->mail_from ? px->mail_from : "",
	    px->mail_from ? strlen(px->mail_from) : 0);
	snprintf(buf, len, "from=<%s> rcpts=%u accepted=%u size=%llu", from, px->nrcpts,
	    px->naccepted, (unsigned long long)px->framer.size + px->msg_bytes);
}

static void
log_message_note(struct session *s, const char *result, const char *note, const char *reply)
{
	char code[8];

	snprintf(code, sizeof(code), "%.3s", reply ? reply : "---");
	log_sid(LOG_LVL_INFO, s->id, "smtp message result=%s %s reply=%s", result, note, code);
}

static void
log_message(struct session *s, const char *result, const char *reply)
{
	char note[300];

	txn_note(s, note, sizeof(note));
	log_message_note(s, result, note, reply);
}

/* ------------------------------------------------------------------ TLS */

static const struct conf_action *
session_action(const struct session *s)
{
	return config_action_of(s->conf, s->mf.policy);
}

static int
session_profile(const struct session *s)
{
	const struct conf_action *a = session_action(s);

	return a ? a->profile : 0;
}

/*
 * STARTTLS shown to the client: with "inspect" smtpgw terminates it, so it
 * is ours to offer; with "allow" it is the destination's (relayed, then
 * spliced); with "drop" never.
 */
static bool
starttls_offered(const struct session *s)
{
	const struct conf_action *a = session_action(s);

	if (a == NULL || tls_global == NULL || s->px.client_tls || a->sender_enc == ENC_NONE)
		return false;
	if (a->tls_action == TLS_ACTION_ALLOW)
		return (s->px.upcaps.flags & CAP_STARTTLS) != 0;
	return a->tls_action == TLS_ACTION_INSPECT;
}

static void
log_tls(struct session *s, struct io *io, const char *side)
{
	char peer[450], sni[80];
	SSL *ssl = io->ssl;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	tls_describe_peer(ssl, peer, sizeof(peer));
	log_sid(LOG_LVL_INFO, s->id, "tls ready side=%s version=%s cipher=%s sni=%s resumed=%s %s",
	    side, SSL_get_version(ssl), SSL_get_cipher_name(ssl),
	    name ? log_quote(sni, sizeof(sni), name, strlen(name)) : "-",
	    SSL_session_reused(ssl) ? "yes" : "no", peer);
}

/* After TLS, everything learned before is forgotten (RFC 3207 4.2). */
static void
tls_forget(struct session *s)
{
	struct smtp_proxy *px = PX(s);

	txn_reset(s);
	px->helo_done = false;
	px->esmtp = false;
	px->auth_done = false;
	memset(&px->shown, 0, sizeof(px->shown));
	memset(&px->upcaps, 0, sizeof(px->upcaps));
	px->helo[0] = '\0';
}

static void
resume_key(const struct session *s, char *out, size_t len)
{
	char addr[ADDR_STRLEN];

	snprintf(out, len, "%s/%s/%d", addr_fmt(&s->server.peer, addr, sizeof(addr)), s->sni,
	    session_profile(s));
}

/* OpenSSL hands us each new upstream session (TLS 1.3: after the handshake). */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct session *s = SSL_get_app_data(ssl);
	char key[300];

	if (s == NULL)
		return 0;
	resume_key(s, key, sizeof(key));
	tls_resume_put(key, sess);
	return 1; /* we keep the reference */
}

static void
upstream_tls_begin(struct session *s, const char *sni)
{
	SSL *ssl = SSL_new(tls_global->client_ctx[session_profile(s)]);

	if (ssl == NULL) {
		upstream_lost(s, "cannot create a TLS session");
		return;
	}
	/* The client's SNI is mirrored upstream (and is the reference name). */
	if (sni && sni[0])
		SSL_set_tlsext_host_name(ssl, sni);
	if (s->conf->profiles[session_profile(s)].ocsp)
		SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp);
	/*
	 * Implicit TLS: the client's hello is known before the upstream's, so
	 * the destination leg is never offered less than the client will get
	 * (the most it offers, which is what we negotiate with it).
	 */
	if (s->implicit_tls && s->client_tls_max > SSL_get_min_proto_version(ssl))
		SSL_set_min_proto_version(ssl, s->client_tls_max);
	/* Resume this destination's last session where the server allows it. */
	char key[300];
	resume_key(s, key, sizeof(key));
	SSL_SESSION *sess = tls_resume_get(key);
	if (sess) {
		SSL_set_session(ssl, sess);
		SSL_SESSION_free(sess);
	}
	SSL_set_app_data(ssl, s);
	SSL_set_connect_state(ssl);
	io_start_tls(&s->server.io, ssl);
	server_timeout(s, s->lim->t_server_command);
}

/*
 * Give the client leg its certificate: outbound, a leaf forged for the
 * real server's names and signed by the Proxy Authority (or the untrusted
 * CA when the real certificate failed validation); inbound, the Proxy
 * Server certificate.
 */
static SSL *
client_ssl(struct session *s, bool trusted)
{
	const struct tls_material *m = tls_global;
	SSL *ssl = SSL_new(m->server_ctx[session_profile(s)]);
	X509 *peer = s->px.up_tls ? SSL_get0_peer_certificate(s->server.io.ssl) : NULL;

	if (ssl == NULL)
		return NULL;
	/*
	 * Never more TLS to the client than the destination leg has: the
	 * client would believe in a protection its mail does not get.
	 */
	if (s->px.up_tls)
		SSL_set_max_proto_version(ssl, SSL_version(s->server.io.ssl));
	if (!s->mf.inbound && peer) {
		X509 *leaf = certcache_get(peer, trusted);
		if (leaf == NULL || SSL_use_certificate(ssl, leaf) != 1 ||
		    SSL_use_PrivateKey(ssl, m->leaf_key) != 1 ||
		    SSL_add1_chain_cert(ssl, trusted ? m->pa_cert : m->ua_cert) != 1) {
			X509_free(leaf);
			SSL_free(ssl);
			return NULL;
		}
		X509_free(leaf);
	} else if (SSL_use_certificate(ssl, m->server_cert) != 1 ||
	    SSL_use_PrivateKey(ssl, m->server_key) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static void
client_tls_begin(struct session *s, bool trusted)
{
	struct smtp_proxy *px = PX(s);
	SSL *ssl = client_ssl(s, trusted);

	if (ssl == NULL) {
		log_sid(LOG_LVL_ERR, s->id, "tls error=\"cannot prepare the client certificate\"");
		pend_set_line(px->tls_pend, "454 4.7.0 TLS not available due to local problem");
		px->tls_pend = NULL;
		px->phase = CP_COMMAND;
		flush_replies(s);
		return;
	}
	tls_forget(s);
	pend_set_line(px->tls_pend, "220 2.0.0 Ready to start TLS");
	px->tls_pend = NULL;
	flush_replies(s);
	if (s->dead) {
		SSL_free(ssl);
		return;
	}
	/*
	 * The hard boundary: the 220 is the last plaintext byte; whatever
	 * plaintext the client sent after STARTTLS is discarded here and the
	 * handshake starts once the 220 has left.
	 */
	SSL_set_accept_state(ssl);
	SSL_set_app_data(ssl, s);
	io_start_tls(&s->client.io, ssl);
	io_set_timeout(&s->client.io, s->lim->t_client_command * 1000u);
}

/* The upstream TLS handshake completed: judge the certificate, go on with the client. */
static void
upstream_tls_ready(struct session *s)
{
	struct smtp_proxy *px = PX(s);
	const struct conf_tls_profile *prof = &s->conf->profiles[session_profile(s)];
	struct tls_verdict v;

	px->up_tls = true;
	log_tls(s, &s->server.io, "server");
	tls_judge(prof, s->server.io.ssl, s->sni, &v);
	log_sid(LOG_LVL_INFO, s->id, "tls verify side=server result=%s class=%s action=%s detail=\"%s\"",
	    v.ok ? "ok" : "failed", v.ok ? "-" : certfail_class_keys[v.cls] + 3,
	    certfail_action_name(v.action), v.detail);
	if (v.action == CERTFAIL_BLOCK) {
		/* Never present a trusted forgery for a destination we could not validate. */
		if (s->implicit_tls) {
			session_close(s, "tls-upstream-certificate-blocked");
			return;
		}
		if (px->tls_pend) {
			pend_set_line(px->tls_pend,
			    "421 4.7.5 Error: the destination's TLS certificate failed validation");
			px->tls_pend = NULL;
		}
		px->phase = CP_CLOSING;
		upstream_abort(s, "certificate blocked by the TLS profile");
		flush_replies(s);
		return;
	}
	bool trusted = v.ok || v.action == CERTFAIL_ALLOW;
	if (s->implicit_tls) {
		SSL *ssl = s->client.io.ssl;
		X509 *peer = SSL_get0_peer_certificate(s->server.io.ssl);
		const struct tls_material *m = tls_global;
		int ok;

		if (!s->mf.inbound && peer) {
			X509 *leaf = certcache_get(peer, trusted);
			ok = leaf && SSL_use_certificate(ssl, leaf) == 1 &&
			    SSL_use_PrivateKey(ssl, m->leaf_key) == 1 &&
			    SSL_add1_chain_cert(ssl, trusted ? m->pa_cert : m->ua_cert) == 1;
			X509_free(leaf);
		} else {
			ok = SSL_use_certificate(ssl, m->server_cert) == 1 &&
			    SSL_use_PrivateKey(ssl, m->server_key) == 1;
		}
		if (!ok) {
			log_sid(LOG_LVL_ERR, s->id, "tls error=\"cannot prepare the client certificate\"");
			session_close(s, "tls-local-error");
			return;
		}
		io_tls_resume(&s->client.io);
		return;
	}
	client_tls_begin(s, trusted);
}

/* The highest version a ClientHello offers (supported_versions, else legacy_version). */
static int
client_max_version(SSL *ssl)
{
	const unsigned char *p;
	size_t len;
	int best = 0;

	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &p, &len) == 1 &&
	    len >= 1 && (size_t)p[0] + 1 == len && (p[0] % 2) == 0) {
		for (size_t i = 1; i + 1 < len; i += 2) {
			int v = p[i] << 8 | p[i + 1];
			/* GREASE values (0x?a?a) and unknown ones are not versions we speak */
			if (v >= TLS1_VERSION && v <= TLS1_3_VERSION && v > best)
				best = v;
		}
		return best;
	}
	return (int)SSL_client_hello_get0_legacy_version(ssl);
}

/*
 * ClientHello callback (every client leg): note the SNI, refuse ALPN that
 * names only non-mail protocols, and on implicit TLS pause the handshake
 * until the upstream TLS is up, so the forged certificate is based on the
 * real one.
 */
static int
hello_cb(SSL *ssl, int *al, void *arg)
{
	struct session *s = SSL_get_app_data(ssl);
	const unsigned char *p;
	size_t len;

	(void)arg;
	if (s == NULL || s->hello_seen)
		return SSL_CLIENT_HELLO_SUCCESS;
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) == 1 &&
	    tls_parse_sni(p, len, s->sni, sizeof(s->sni)) < 0) {
		log_sid(LOG_LVL_WARN, s->id, "tls refused reason=malformed-sni");
		*al = SSL_AD_DECODE_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
	    &len) == 1) {
		bool smtp, any;
		if (tls_parse_alpn(p, len, &smtp, &any) < 0 || (any && !smtp)) {
			log_sid(LOG_LVL_WARN, s->id, "tls refused reason=alpn-not-smtp");
			*al = SSL_AD_NO_APPLICATION_PROTOCOL;
			return SSL_CLIENT_HELLO_ERROR;
		}
	}
	s->client_tls_max = client_max_version(ssl);
	s->hello_seen = true;
	return s->implicit_tls ? SSL_CLIENT_HELLO_RETRY : SSL_CLIENT_HELLO_SUCCESS;
}

/*
 * Implicit TLS and the destination failed before the client's handshake
 * finished: finish it with the Proxy Server certificate (never a forgery:
 * there is no real certificate to base one on) so the client can read
 * the 4xx that tells it to retry, instead of a silent close.
 */
void
smtp_tls_finish_for_reply(struct session *s)
{
	struct io *io = &s->client.io;

	if (io->ssl == NULL || !(io->flags & IO_F_HS_PAUSED))
		return;
	if (SSL_get_certificate(io->ssl) == NULL &&
	    (SSL_use_certificate(io->ssl, tls_global->server_cert) != 1 ||
	    SSL_use_PrivateKey(io->ssl, tls_global->server_key) != 1)) {
		session_close(s, "tls-local-error");
		return;
	}
	io_tls_resume(io);
}

void
smtp_tls_init(void)
{
	for (int i = 0; tls_global && i < CONF_MAX_PROFILES; i++) {
		if (tls_global->server_ctx[i])
			SSL_CTX_set_client_hello_cb(tls_global->server_ctx[i], hello_cb, NULL);
		if (tls_global->client_ctx[i])
			SSL_CTX_sess_set_new_cb(tls_global->client_ctx[i], new_session_cb);
	}
}

void
smtp_set_implicit_tls(struct session *s)
{
	SSL *ssl;

	s->implicit_tls = true;
	ssl = SSL_new(tls_global->server_ctx[session_profile(s)]);
	if (ssl == NULL) {
		session_close(s, "tls-local-error");
		return;
	}
	SSL_set_app_data(ssl, s);
	SSL_set_accept_state(ssl);
	io_start_tls(&s->client.io, ssl);
	io_set_timeout(&s->client.io, s->lim->t_client_command * 1000u);
}

/* ------------------------------------------------------- command table */

enum tstate {
	TS_INIT = 1,  /* no HELO/EHLO yet */
	TS_READY = 2, /* no transaction */
	TS_MAIL = 4,  /* MAIL sent, no RCPT */
	TS_RCPT = 8,  /* MAIL and at least one RCPT sent */
};
#define TS_ANY (TS_INIT | TS_READY | TS_MAIL | TS_RCPT)
#define TS_TXN (TS_MAIL | TS_RCPT)

static enum tstate
tstate(const struct smtp_proxy *px)
{
	if (!px->helo_done)
		return TS_INIT;
	if (!px->mail_sent)
		return TS_READY;
	return px->rcpt_sent ? TS_RCPT : TS_MAIL;
}

static void cmd_helo(struct session *, struct smtp_cmd *);
static void cmd_mail(struct session *, struct smtp_cmd *);
static void cmd_rcpt(struct session *, struct smtp_cmd *);
static void cmd_data(struct session *, struct smtp_cmd *);
static void cmd_bdat(struct session *, struct smtp_cmd *);
static void cmd_rset(struct session *, struct smtp_cmd *);
static void cmd_noop(struct session *, struct smtp_cmd *);
static void cmd_quit(struct session *, struct smtp_cmd *);
static void cmd_help(struct session *, struct smtp_cmd *);
static void cmd_vrfy(struct session *, struct smtp_cmd *);
static void cmd_auth(struct session *, struct smtp_cmd *);
static void cmd_starttls(struct session *, struct smtp_cmd *);

/*
 * One row per command: the transaction states it is allowed in, the reply
 * when it is not, and whether it must end a pipelined group (RFC 2920 3.1;
 * AUTH per RFC 4954 4).  Out-of-state commands are refused here, in one
 * place, before any handler runs.
 */
static const struct cmd_spec {
	enum smtp_verb verb;
	unsigned states;
	bool group_end;
	void (*fn)(struct session *, struct smtp_cmd *);
	const char *refuse_init;  /* before HELO/EHLO */
	const char *refuse_other; /* in another state */
} cmd_table[] = {
	{ SMTP_EHLO, TS_ANY, true, cmd_helo, NULL, NULL },
	{ SMTP_HELO, TS_ANY, true, cmd_helo, NULL, NULL },
	{ SMTP_MAIL, TS_READY, false, cmd_mail, "503 5.5.1 Error: send HELO/EHLO first",
	    "503 5.5.1 Error: nested MAIL command" },
	{ SMTP_RCPT, TS_TXN, false, cmd_rcpt, "503 5.5.1 Error: send HELO/EHLO first",
	    "503 5.5.1 Error: need MAIL command" },
	{ SMTP_DATA, TS_RCPT, true, cmd_data, "503 5.5.1 Error: send HELO/EHLO first",
	    "503 5.5.1 Error: need RCPT command" },
	{ SMTP_BDAT, TS_RCPT, false, cmd_bdat, "503 5.5.1 Error: send HELO/EHLO first",
	    "503 5.5.1 Error: need RCPT command" },
	{ SMTP_RSET, TS_ANY, false, cmd_rset, NULL, NULL },
	{ SMTP_NOOP, TS_ANY, true, cmd_noop, NULL, NULL },
	{ SMTP_QUIT, TS_ANY, true, cmd_quit, NULL, NULL },
	{ SMTP_HELP, TS_ANY, true, cmd_help, NULL, NULL },
	{ SMTP_VRFY, TS_ANY, true, cmd_vrfy, NULL, NULL },
	{ SMTP_EXPN, TS_ANY, true, cmd_vrfy, NULL, NULL },
	{ SMTP_AUTH, TS_READY, true, cmd_auth, "503 5.5.1 Error: send EHLO first",
	    "503 5.5.1 Error: AUTH not allowed during a mail transaction" },
	{ SMTP_STARTTLS, TS_ANY, true, cmd_starttls, NULL, NULL },
};

static void
refuse(struct session *s, struct smtp_cmd *cmd, const char *reply)
{
	char word[40];

	log_sid(LOG_LVL_INFO, s->id, "smtp refused command=%s reply=\"%.3s\"",
	    log_quote(word, sizeof(word), cmd->word, strlen(cmd->word)), reply);
	reply_local(s, cmd->verb, 0, reply);
}

static bool
shown(const struct session *s, unsigned cap)
{
	return s->px.esmtp && (s->px.shown.flags & cap) != 0;
}

static bool
all_digits(const char *v, size_t max)
{
	size_t n = strlen(v);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)v[i]))
			return false;
	return true;
}

static void
cmd_helo(struct session *s, struct smtp_cmd *cmd)
{
	struct smtp_proxy *px = PX(s);

	/* EHLO/HELO resets any transaction (RFC 5321 4.1.4) */
	txn_reset(s);
	snprintf(px->helo, sizeof(px->helo), "%s", cmd->arg);
	if (cmd->verb == SMTP_EHLO)
		forward(s, SMTP_EHLO, PF_EHLO | PF_GROUP_END, s->lim->t_server_command,
		    "EHLO %s", cmd->arg);
	else
		forward(s, SMTP_HELO, PF_GROUP_END, s->lim->t_server_command, "HELO %s",
		    cmd->arg);
}

static void
cmd_mail(struct session *s, struct smtp_cmd *cmd)
{
	struct smtp_proxy *px = PX(s);
	const struct smtp_limits *lim = s->lim;
	char params[SMTP_CMDLINE_MAX];
	bool utf8 = false;

	for (int i = 0; i < cmd->nparams; i++) {
		const char *k = cmd->params[i].key, *v = cmd->params[i].value;

		if (!strcmp(k, "SIZE") && shown(s, CAP_SIZE)) {
			if (v == NULL || !all_digits(v, 20)) {
				refuse(s, cmd, "501 5.5.4 Syntax error in SIZE parameter");
				return;
			}
			if (strtoull(v, NULL, 10) > lim->max_message_size) {
				refuse(s, cmd, "552 5.3.4 Message size exceeds fixed maximum message size");
				return;
			}
		} else if (!strcmp(k, "BODY") && shown(s, CAP_8BITMIME)) {
			if (v == NULL || (strcasecmp(v, "7BIT") && strcasecmp(v, "8BITMIME"))) {
				refuse(s, cmd, "501 5.5.4 Unsupported BODY parameter value");
				return;
			}
		} else if (!strcmp(k, "SMTPUTF8") && shown(s, CAP_SMTPUTF8)) {
			if (v != NULL) {
				refuse(s, cmd, "501 5.5.4 SMTPUTF8 takes no value");
				return;
			}
			utf8 = true;
		} else if (!strcmp(k, "RET") && shown(s, CAP_DSN)) {
			if (v == NULL || (strcasecmp(v, "FULL") && strcasecmp(v, "HDRS"))) {
				refuse(s, cmd, "501 5.5.4 Syntax error in RET parameter");
				return;
			}
		} else if (!strcmp(k, "ENVID") && shown(s, CAP_DSN)) {
			if (v == NULL || strlen(v) > 100 || !smtp_xtext_valid(v)) {
				refuse(s, cmd, "501 5.5.4 Syntax error in ENVID parameter");
				return;
			}
		} else if (!strcmp(k, "AUTH") && shown(s, CAP_AUTH)) {
			if (v == NULL || (strcmp(v, "<>") && !smtp_xtext_valid(v))) {
				refuse(s, cmd, "501 5.5.4 Syntax error in AUTH parameter");
				return;
			}
		} else {
			refuse(s, cmd, "555 5.5.4 Unsupported MAIL parameter");
			return;
		}
	}
	if (cmd->utf8 && !utf8) {
		refuse(s, cmd, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	}
	const struct conf_action *a = session_action(s);
	if (a && a->recipient_enc == ENC_REQUIRED && !px->up_tls) {
		/* The mail stays with the sender until the destination can take it encrypted. */
		refuse(s, cmd, "451 4.7.0 Error: TLS to the destination is required and not in place");
		return;
	}
	if (px->client_tls && !px->up_tls && !(a && a->allow_cleartext_relay)) {
		refuse(s, cmd, "451 4.7.0 Error: the destination leg is not encrypted");
		return;
	}
	if (smtp_params_render(cmd, params, sizeof(params)) < 0) {
		refuse(s, cmd, "501 5.5.4 Too many parameters");
		return;
	}
	txn_reset(s);
	px->mail_sent = true;
	px->smtputf8 = utf8;
	px->mail_from = xstrdup(cmd->path);
	forward(s, SMTP_MAIL, 0, s->lim->t_server_command, "MAIL FROM:<%s>%s", cmd->path,
	    params);
}

static bool
notify_valid(const char *v)
{
	char tmp[64];
	char *save = NULL;

	if (strcasecmp(v, "NEVER") == 0)
		return true;
	if (strlen(v) >= sizeof(tmp))
		return false;
	snprintf(tmp, sizeof(tmp), "%s", v);
	for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (strcasecmp(t, "SUCCESS") && strcasecmp(t, "FAILURE") && strcasecmp(t, "DELAY"))
			return false;
	return v[0] != ',' && v[strlen(v) - 1] != ',';
}

static void
cmd_rcpt(struct session *s, struct smtp_cmd *cmd)
{
	struct smtp_proxy *px = PX(s);
	char params[SMTP_CMDLINE_MAX];

	if (px->rcpt_sent >= s->lim->max_recipients) {
		refuse(s, cmd, "452 4.5.3 Error: too many recipients");
		return;
	}
	for (int i = 0; i < cmd->nparams; i++) {
		const char *k = cmd->params[i].key, *v = cmd->params[i].value;

		if (!strcmp(k, "NOTIFY") && shown(s, CAP_DSN)) {
			if (v == NULL || !notify_valid(v)) {
				refuse(s, cmd, "501 5.5.4 Syntax error in NOTIFY parameter");
				return;
			}
		} else if (!strcmp(k, "ORCPT") && shown(s, CAP_DSN)) {
			const char *semi = v ? strchr(v, ';') : NULL;
			if (semi == NULL || semi == v || strlen(v) > 500 || !smtp_xtext_valid(semi + 1)) {
				refuse(s, cmd, "501 5.5.4 Syntax error in ORCPT parameter");
				return;
			}
		} else {
			refuse(s, cmd, "555 5.5.4 Unsupported RCPT parameter");
			return;
		}
	}
	if (cmd->utf8 && !px->smtputf8) {
		refuse(s, cmd, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	}
	if (smtp_params_render(cmd, params, sizeof(params)) < 0) {
		refuse(s, cmd, "501 5.5.4 Too many parameters");
		return;
	}
	px->rcpts = xrealloc(px->rcpts, (px->nrcpts + 1) * sizeof(*px->rcpts));
	px->rcpts[px->nrcpts++] = xstrdup(cmd->path);
	px->rcpt_sent++;
	forward(s, SMTP_RCPT, 0, s->lim->t_server_command, "RCPT TO:<%s>%s", cmd->path,
	    params);
}

static void
cmd_data(struct session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	if (PX(s)->bdat_started) {
		refuse(s, cmd, "503 5.5.1 Error: DATA after BDAT in one transaction");
		return;
	}
	forward(s, SMTP_DATA, PF_GROUP_END, s->lim->t_server_data_init, "DATA");
}

static void
cmd_rset(struct session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	txn_reset(s);
	forward(s, SMTP_RSET, 0, s->lim->t_server_command, "RSET");
}

static void
cmd_noop(struct session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	forward(s, SMTP_NOOP, PF_GROUP_END, s->lim->t_server_command, "NOOP");
}

static void
cmd_quit(struct session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	forward(s, SMTP_QUIT, PF_QUIT | PF_GROUP_END, s->lim->t_server_command, "QUIT");
	/* Whatever the client sends after QUIT is ignored. */
	PX(s)->phase = CP_CLOSING;
}

static void
cmd_help(struct session *s, struct smtp_cmd *cmd)
{
	if (cmd->arg[0])
		forward(s, SMTP_HELP, PF_GROUP_END, s->lim->t_server_command, "HELP %s",
		    cmd->arg);
	else
		forward(s, SMTP_HELP, PF_GROUP_END, s->lim->t_server_command, "HELP");
}

static void
cmd_vrfy(struct session *s, struct smtp_cmd *cmd)
{
	bool vrfy = cmd->verb == SMTP_VRFY;

	if (vrfy ? !s->lim->allow_vrfy : !s->lim->allow_expn) {
		refuse(s, cmd, vrfy ? "502 5.5.1 Error: VRFY command is disabled"
		    : "502 5.5.1 Error: EXPN command is disabled");
		return;
	}
	forward(s, cmd->verb, PF_GROUP_END, s->lim->t_server_command, "%s %s",
	    vrfy ? "VRFY" : "EXPN", cmd->arg);
}

static void
cmd_auth(struct session *s, struct smtp_cmd *cmd)
{
	struct smtp_proxy *px = PX(s);

	if (!shown(s, CAP_AUTH)) {
		refuse(s, cmd, "503 5.5.1 Error: authentication not enabled");
		return;
	}
	if (px->auth_done) {
		refuse(s, cmd, "503 5.5.1 Error: already authenticated");
		return;
	}
	/* The payload is relayed, never logged. */
	log_sid(LOG_LVL_INFO, s->id, "smtp auth started");
	forward(s, SMTP_AUTH, PF_AUTH | PF_GROUP_END, s->lim->t_server_command, "AUTH %s",
	    cmd->arg);
}

static void
cmd_starttls(struct session *s, struct smtp_cmd *cmd)
{
	struct smtp_proxy *px = PX(s);
	const struct conf_action *a = session_action(s);

	if (px->client_tls) {
		refuse(s, cmd, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (!shown(s, CAP_STARTTLS) || a == NULL) {
		refuse(s, cmd, "502 5.5.1 Error: STARTTLS not available");
		return;
	}
	if (a->tls_action == TLS_ACTION_ALLOW) {
		/* Relayed as is; after the destination's 220 the legs are spliced. */
		forward(s, SMTP_STARTTLS, PF_STARTTLS | PF_GROUP_END, s->lim->t_server_command,
		    "STARTTLS");
		px->tls_pend = px->tail;
		px->phase = CP_TLS_WAIT;
		return;
	}
	/* Upstream first: the client's certificate is forged from the real one. */
	if ((px->upcaps.flags & CAP_STARTTLS) && !px->up_tls && a->recipient_enc != ENC_NONE) {
		forward(s, SMTP_STARTTLS, PF_STARTTLS | PF_GROUP_END, s->lim->t_server_command,
		    "STARTTLS");
		px->tls_pend = px->tail;
		px->phase = CP_TLS_WAIT;
		return;
	}
	if (a->allow_cleartext_relay) {
		/* Only because the action says so explicitly: TLS to the client, cleartext on. */
		log_sid(LOG_LVL_WARN, s->id,
		    "tls client-only reason=\"destination offers no TLS\" allow-cleartext-relay=yes");
		px->tls_pend = pend_new(s, SMTP_STARTTLS, false, PF_GROUP_END);
		px->phase = CP_TLS_WAIT;
		client_tls_begin(s, false);
		return;
	}
	/*
	 * Never a TLS session to the client while its mail goes on in
	 * cleartext: the client stays in cleartext on both legs, visibly.
	 */
	refuse(s, cmd, "454 4.7.0 TLS not available: the destination does not offer TLS");
}

/* The line after a 334: an AUTH response (base64 or "*"), relayed verbatim. */
static void
auth_response(struct session *s, char *line, size_t len)
{
	struct smtp_proxy *px = PX(s);
	bool ok = len > 0;

	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)line[i]) && line[i] != '+' && line[i] != '/' &&
		    line[i] != '=' && line[i] != '*')
			ok = false;
	px->phase = CP_COMMAND;
	/* A malformed response cancels the exchange upstream ("*"): the upstream's 501 answers it. */
	if (ok)
		forward(s, SMTP_AUTH, PF_AUTH | PF_GROUP_END, s->lim->t_server_command, "%.*s",
		    (int)len, line);
	else
		forward(s, SMTP_AUTH, PF_AUTH | PF_GROUP_END, s->lim->t_server_command, "*");
	OPENSSL_cleanse(line, len);
}

static void
dispatch(struct session *s, char *line, size_t len)
{
	struct smtp_proxy *px = PX(s);
	struct smtp_cmd cmd;
	const char *err = NULL;

	if (smtp_cmd_parse(line, len, &cmd, &err) < 0) {
		char word[40];
		log_sid(LOG_LVL_INFO, s->id, "smtp refused command=%s reply=\"%.3s\"",
		    log_quote(word, sizeof(word), line, len < 8 ? len : 8), err);
		reply_local(s, SMTP_UNKNOWN, 0, err);
		/* A BDAT we cannot size leaves us unable to find the next command. */
		if (len >= 4 && strncasecmp(line, "BDAT", 4) == 0) {
			px->close_reply = NULL;
			px->phase = CP_CLOSING;
			flush_replies(s);
		}
		return;
	}
	if (cmd.verb == SMTP_HTTP) {
		log_sid(LOG_LVL_WARN, s->id, "smtp refused command=%s reason=http", cmd.word);
		reply_local(s, SMTP_HTTP, 0, "500 5.5.1 Error: this is an SMTP server, not HTTP");
		px->phase = CP_CLOSING;
		return;
	}
	if (cmd.verb == SMTP_UNKNOWN) {
		refuse(s, &cmd, "500 5.5.2 Error: command not recognized");
		return;
	}
	/*
	 * A BDAT transaction converted to DATA has the destination reading
	 * message lines: a command forwarded now would become content the
	 * inspector never saw.  Until BDAT LAST only chunks go on; RSET and
	 * QUIT end the message the one way DATA allows, without a dot.
	 */
	if (px->bdat_started && px->bdat_convert && !px->bdat_failed && !px->up_dead &&
	    cmd.verb != SMTP_BDAT) {
		if (cmd.verb == SMTP_RSET || cmd.verb == SMTP_QUIT) {
			upstream_abort(s, "message abandoned between BDAT chunks");
			txn_reset(s);
			reply_local(s, cmd.verb, 0, cmd.verb == SMTP_QUIT ? "221 2.0.0 Bye" :
			    "250 2.0.0 Ok");
			px->phase = cmd.verb == SMTP_QUIT ? CP_CLOSING : CP_NOUP;
			return;
		}
		refuse(s, &cmd, "503 5.5.1 Error: only BDAT, RSET or QUIT may follow BDAT");
		return;
	}
	const struct conf_action *act = session_action(s);
	if (act && act->sender_enc == ENC_REQUIRED && !px->client_tls && cmd.verb != SMTP_EHLO &&
	    cmd.verb != SMTP_NOOP && cmd.verb != SMTP_STARTTLS && cmd.verb != SMTP_QUIT) {
		refuse(s, &cmd, "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(cmd_table); i++) {
		const struct cmd_spec *c = &cmd_table[i];
		enum tstate ts = tstate(px);

		if (c->verb != cmd.verb)
			continue;
		if (!(c->states & ts)) {
			refuse(s, &cmd, ts == TS_INIT ? c->refuse_init : c->refuse_other);
			/* A refused BDAT's chunk is data, never commands: skip it. */
			if (cmd.verb == SMTP_BDAT) {
				px->chunk_left = cmd.chunk_size;
				px->chunk_last = cmd.last;
				px->chunk_pend = NULL;
				px->bdat_failed = true;
				px->phase = CP_BDAT;
			}
			return;
		}
		c->fn(s, &cmd);
		if (c->group_end && px->tail && !(px->tail->flags & PF_GROUP_END) && !px->tail->ready)
			px->tail->flags |= PF_GROUP_END, px->group_wait = true;
		else if (c->group_end && px->tail && px->tail->ready) {
			/* answered locally: the group ends with this reply */
			px->tail->flags |= PF_GROUP_END;
			px->group_wait = true;
		}
		return;
	}
	refuse(s, &cmd, "502 5.5.1 Error: command not implemented");
}

/* ------------------------------------------------------ DATA and BDAT */

static void
data_start(struct session *s)
{
	struct smtp_proxy *px = PX(s);
	const struct smtp_limits *lim = s->lim;

	px->phase = CP_DATA;
	data_init(&px->framer, lim->bare_newline_normalize ? DATA_BARE_NORMALIZE : DATA_BARE_REJECT,
	    false, lim->max_line_length, lim->max_message_size);
	px->msg_bytes = 0;
	inspect_begin(s);
	server_timeout(s, lim->t_server_data_block);
}

/* One message line to the upstream, re-stuffed, and to the inspector. */
static void
emit_line(struct session *s, const char *line, size_t len)
{
	struct buf *out = &s->server.io.out;

	if (len > 0 && line[0] == '.')
		(void)buf_append(out, ".", 1);
	(void)buf_append(out, line, len);
	(void)buf_append(out, "\r\n", 2);
	inspect_body(s, line, len);
	inspect_body(s, "\r\n", 2);
}

/*
 * Room for one more line upstream (a line is at most max_line + 3 octets).
 * Sends what is queued first; when there is still no room the buffer is
 * well above its low-water mark, so IO_LOWAT will resume the client.
 */
static bool
upstream_has_room(struct session *s)
{
	size_t need = s->lim->max_line_length + 8;

	if (PX(s)->up_dead || buf_room(&s->server.io.out) >= need)
		return true;
	io_kick(&s->server.io);
	return buf_room(&s->server.io.out) >= need;
}

/*
 * The end of a message (DATA's dot or the last BDAT chunk): ask the
 * inspector, then send the end of data upstream -- or refuse it.
 * reply_to is the client's entry to answer (BDAT) or NULL (DATA).
 */
static void
message_end(struct session *s, struct pend *carrier, const char *enddata)
{
	struct smtp_proxy *px = PX(s);
	struct inspect_result res;
	const char *reply = NULL;

	if (data_refused(&px->framer)) {
		reply = data_refusal_reply(&px->framer);
		upstream_abort(s, "message refused");
		if (px->itxn_open) {
			px->insp->abort(px->itxn);
			px->itxn_open = false;
		}
	} else if (px->up_dead) {
		reply = "451 4.4.2 Error: connection to destination lost, message not delivered";
		if (px->itxn_open) {
			px->insp->abort(px->itxn);
			px->itxn_open = false;
		}
	} else if (!inspect_end(s, &res)) {
		log_sid(LOG_LVL_INFO, s->id, "smtp inspect verdict=%s inspector=%s reason=%s",
		    res.verdict == INSPECT_DENY ? "deny" : "tempfail", px->insp->name,
		    res.reason[0] ? res.reason : "-");
		upstream_abort(s, "inspection verdict");
		if (carrier) {
			pend_set_line(carrier, res.reply);
		} else {
			reply_local(s, SMTP_DATA, 0, res.reply);
		}
		log_message(s, "refused", res.reply);
		txn_reset(s);
		return;
	}
	if (reply) {
		if (carrier)
			pend_set_line(carrier, reply);
		else
			reply_local(s, SMTP_DATA, 0, reply);
		log_message(s, "refused", reply);
		txn_reset(s);
		return;
	}
	/* Allowed: now, and only now, the end of data goes upstream. */
	if (carrier)
		pend_set(carrier, NULL, 0); /* answered by the entry below */
	forward(s, SMTP_DATA, PF_DATAEND, s->lim->t_server_data_end, "%s", enddata);
	/*
	 * For the client the transaction is over: it may pipeline the next
	 * MAIL right behind the end of data (RFC 2920).  What the log line
	 * needs rides on the entry that waits for the upstream's verdict.
	 */
	if (px->tail && (px->tail->flags & PF_DATAEND)) {
		char note[300];

		txn_note(s, note, sizeof(note));
		px->tail->note = xstrdup(note);
	}
	txn_reset(s);
}

static void
data_input(struct session *s)
{
	struct smtp_proxy *px = PX(s);
	struct buf *in = &s->client.io.in;

	while (px->phase == CP_DATA && !s->dead) {
		const char *line;
		size_t consumed, len;
		enum data_status st;

		if (!upstream_has_room(s)) {
			io_pause(&s->client.io); /* resumed when the upstream drains */
			break;
		}
		st = data_next(&px->framer, buf_head(in), buf_len(in), &consumed, &line, &len);
		if (st == DATA_NEED_MORE) {
			buf_consume(in, consumed);
			break;
		}
		if (st == DATA_LINE) {
			if (data_refused(&px->framer)) {
				/* Stop forwarding at once; no dot will ever follow. */
				if (!px->up_dead)
					upstream_abort(s, "message refused");
			} else if (!px->up_dead) {
				emit_line(s, line, len);
			}
		}
		buf_consume(in, consumed);
		if (st == DATA_END) {
			px->phase = CP_COMMAND;
			message_end(s, NULL, ".");
			if (px->up_dead && px->phase == CP_COMMAND)
				px->phase = CP_NOUP;
		}
	}
	if (!px->up_dead)
		io_kick(&s->server.io);
}

static void
bdat_begin(struct session *s, struct smtp_cmd *cmd, struct pend *carrier)
{
	struct smtp_proxy *px = PX(s);

	px->phase = CP_BDAT;
	px->chunk_left = cmd->chunk_size;
	px->chunk_size = cmd->chunk_size;
	px->chunk_last = cmd->last;
	px->chunk_pend = carrier;
}

static void
cmd_bdat(struct session *s, struct smtp_cmd *cmd)
{
	struct smtp_proxy *px = PX(s);
	const struct smtp_limits *lim = s->lim;

	if (!shown(s, CAP_CHUNKING)) {
		refuse(s, cmd, "503 5.5.1 Error: CHUNKING not offered");
		bdat_begin(s, cmd, NULL);
		px->bdat_failed = true;
		return;
	}
	if (px->bdat_failed) {
		refuse(s, cmd, "503 5.5.1 Error: an earlier BDAT of this transaction failed, send RSET");
		bdat_begin(s, cmd, NULL);
		return;
	}
	if (!px->bdat_started) {
		px->bdat_started = true;
		/*
		 * Forwarded as BDAT only when the destination has CHUNKING and
		 * bare newlines are refused anyway: normalising them needs the
		 * conversion to DATA, which re-frames every line.
		 */
		px->bdat_convert = !(px->upcaps.flags & CAP_CHUNKING) || lim->bare_newline_normalize;
		data_init(&px->framer,
		    lim->bare_newline_normalize ? DATA_BARE_NORMALIZE : DATA_BARE_REJECT, true,
		    lim->max_line_length, lim->max_message_size);
		px->msg_bytes = 0;
		inspect_begin(s);
		if (px->bdat_convert) {
			/* The chunk waits in the client buffer until the upstream's 354. */
			px->conv_ready = false;
			forward(s, SMTP_BDAT, PF_CONV_DATA, lim->t_server_data_init, "DATA");
			bdat_begin(s, cmd, px->tail);
			return;
		}
	}
	if (px->bdat_convert) {
		/* Later chunks of a converted transaction are answered by us. */
		struct pend *p = pend_new(s, SMTP_BDAT, false, 0);
		bdat_begin(s, cmd, p);
		return;
	}
	if (px->framer.size + cmd->chunk_size > lim->max_message_size) {
		/* Never forward a chunk we would refuse; its bytes are discarded. */
		px->framer.flags |= DATA_F_TOO_BIG;
		struct pend *p = pend_new(s, SMTP_BDAT, false, 0);
		bdat_begin(s, cmd, p);
		upstream_abort(s, "message too large");
		return;
	}
	if (cmd->last) {
		/*
		 * BDAT n LAST goes up as "BDAT n" now and "BDAT 0 LAST" after the
		 * verdict, so the upstream never sees LAST for data we refuse.
		 */
		struct pend *p;
		if (cmd->chunk_size > 0) {
			forward(s, SMTP_BDAT, PF_ABSORB_OK, lim->t_server_data_block, "BDAT %llu",
			    (unsigned long long)cmd->chunk_size);
			p = pend_new(s, SMTP_BDAT, false, 0);
		} else {
			p = pend_new(s, SMTP_BDAT, false, 0);
		}
		bdat_begin(s, cmd, p);
		return;
	}
	forward(s, SMTP_BDAT, 0, lim->t_server_data_block, "BDAT %llu",
	    (unsigned long long)cmd->chunk_size);
	bdat_begin(s, cmd, px->tail);
}

/* Conversion: frame what the conv buffer holds into stuffed DATA lines. */
static bool
conv_drain(struct session *s, bool final)
{
	struct smtp_proxy *px = PX(s);

	for (;;) {
		const char *line;
		size_t consumed, len;
		enum data_status st;

		/* An empty last chunk: nothing to frame (conv may not even be allocated). */
		if (buf_len(&px->conv) == 0)
			return true;
		if (!upstream_has_room(s))
			return false;
		if (final && buf_len(&px->conv) > 0 && !memchr(buf_head(&px->conv), '\n',
		    buf_len(&px->conv)))
			st = data_finish_raw(&px->framer, buf_head(&px->conv), buf_len(&px->conv),
			    &consumed, &line, &len);
		else
			st = data_next(&px->framer, buf_head(&px->conv), buf_len(&px->conv), &consumed,
			    &line, &len);
		if (st == DATA_NEED_MORE && !final) {
			buf_consume(&px->conv, consumed);
			return true;
		}
		if (st == DATA_NEED_MORE && final) {
			/* a trailing lone CR */
			buf_consume(&px->conv, consumed);
			st = data_finish_raw(&px->framer, buf_head(&px->conv), buf_len(&px->conv),
			    &consumed, &line, &len);
		}
		if (st == DATA_LINE) {
			if (data_refused(&px->framer)) {
				if (!px->up_dead)
					upstream_abort(s, "message refused");
			} else if (!px->up_dead) {
				emit_line(s, line, len);
			}
		}
		buf_consume(&px->conv, consumed);
		if (buf_len(&px->conv) == 0)
			return true;
	}
}

static void
chunk_done(struct session *s)
{
	struct smtp_proxy *px = PX(s);
	struct pend *p = px->chunk_pend;
	char line[80];

	px->phase = CP_COMMAND;
	px->chunk_pend = NULL;
	if (px->chunk_last && !px->bdat_convert)
		data_scan_end(&px->framer); /* a chunk may end in a CR the next one never had */
	if (p == NULL || px->bdat_failed) {
		/* refused command or failed transaction: the reply is set already */
		if (p && !p->ready && !p->upstream)
			pend_set_line(p, "503 5.5.1 Error: an earlier BDAT of this transaction failed");
	} else if (data_refused(&px->framer)) {
		if (!p->ready)
			pend_set_line(p, data_refusal_reply(&px->framer));
		log_message(s, "refused", data_refusal_reply(&px->framer));
		px->bdat_failed = true;
		/* Converted, the destination is in DATA mode: it can only be left without a dot. */
		if (px->bdat_convert)
			upstream_abort(s, "message refused");
	} else if (px->chunk_last) {
		FATAL_IF(px->bdat_convert && buf_len(&px->conv) > 0);
		message_end(s, p, px->bdat_convert ? "." : "BDAT 0 LAST");
	} else if (px->bdat_convert) {
		snprintf(line, sizeof(line), "250 2.0.0 %llu octets received",
		    (unsigned long long)px->chunk_size);
		pend_set_line(p, line);
	}
	if (px->up_dead && px->phase == CP_COMMAND)
		px->phase = CP_NOUP;
	flush_replies(s);
}

static void
bdat_input(struct session *s)
{
	struct smtp_proxy *px = PX(s);
	struct buf *in = &s->client.io.in;

	while (px->phase == CP_BDAT && !s->dead) {
		size_t n = buf_len(in);

		if (px->chunk_left == 0) {
			/*
			 * A converted chunk is answered only after the upstream's 354
			 * (or its refusal): until then its entry awaits the upstream,
			 * and nothing may follow the DATA we sent -- above all no dot.
			 */
			if (px->bdat_convert && !px->bdat_failed && px->chunk_pend &&
			    px->chunk_pend->upstream)
				return;
			/* The last converted chunk: its lines must all be upstream before the dot. */
			if (px->bdat_convert && !px->bdat_failed && px->chunk_pend &&
			    !data_refused(&px->framer) && px->chunk_last && !conv_drain(s, true)) {
				io_pause(&s->client.io);
				io_kick(&s->server.io);
				return;
			}
			chunk_done(s);
			return;
		}
		if (n == 0)
			return;
		if (n > px->chunk_left)
			n = (size_t)px->chunk_left;

		if (px->bdat_failed || px->chunk_pend == NULL || data_refused(&px->framer)) {
			buf_consume(in, n); /* discarded, never executed */
			px->chunk_left -= n;
			continue;
		}
		if (!px->bdat_convert) {
			size_t room = px->up_dead ? n : buf_room(&s->server.io.out);
			if (room == 0) {
				io_kick(&s->server.io);
				room = buf_room(&s->server.io.out);
			}
			if (room == 0) {
				io_pause(&s->client.io);
				return;
			}
			if (n > room)
				n = room;
			/* Checked before it goes on: what is refused never reaches the destination. */
			data_scan(&px->framer, buf_head(in), n);
			if (px->chunk_left == n && px->chunk_last)
				data_scan_end(&px->framer);
			if (data_refused(&px->framer)) {
				upstream_abort(s, "message refused");
			} else if (!px->up_dead) {
				(void)buf_append(&s->server.io.out, buf_head(in), n);
				inspect_body(s, buf_head(in), n);
			}
			buf_consume(in, n);
			px->chunk_left -= n;
			io_kick(&s->server.io);
			continue;
		}
		/* conversion */
		if (!px->conv_ready)
			return; /* the upstream's 354 resumes us */
		size_t room = buf_room(&px->conv);
		if (room == 0) {
			if (!conv_drain(s, false)) {
				io_pause(&s->client.io);
				io_kick(&s->server.io);
				return;
			}
			room = buf_room(&px->conv);
			if (room == 0)
				fatal("conversion buffer stuck");
		}
		if (n > room)
			n = room;
		(void)buf_append(&px->conv, buf_head(in), n);
		buf_consume(in, n);
		px->chunk_left -= n;
		if (!conv_drain(s, false)) {
			io_pause(&s->client.io);
			io_kick(&s->server.io);
			return;
		}
		io_kick(&s->server.io);
	}
}

/* -------------------------------------------------------- client input */

static void
violation(struct session *s, const char *what)
{
	struct smtp_proxy *px = PX(s);

	log_sid(LOG_LVL_WARN, s->id, "smtp protocol-error reason=%s pending=%u", what, px->npend);
	px->violation = true;
	px->phase = CP_CLOSING;
	/* The replies owed so far still go out first: nothing lost, nothing twice. */
	px->close_reply = "421 4.5.0 Error: protocol violation (improper command pipelining), "
	    "closing connection";
	buf_reset(&s->client.io.in);
	flush_replies(s);
}

static void
command_input(struct session *s)
{
	struct smtp_proxy *px = PX(s);
	struct buf *in = &s->client.io.in;
	char line[SMTP_CMDLINE_MAX + 1];

	while ((px->phase == CP_COMMAND || px->phase == CP_AUTH || px->phase == CP_NOUP) &&
	    !s->dead && buf_len(in) > 0) {
		size_t len, consumed;
		enum smtp_line st;

		/* Bytes after a group-ending command, before its reply: never executed. */
		if (px->group_wait) {
			violation(s, "pipelining");
			return;
		}
		if (px->npend >= SMTP_MAX_PENDING) {
			io_pause(&s->client.io);
			return;
		}
		st = smtp_line_split(buf_head(in), buf_len(in), SMTP_CMDLINE_MAX, &len, &consumed);
		if (st == SMTP_LINE_PARTIAL)
			return;
		if (st == SMTP_LINE_TOOLONG) {
			log_sid(LOG_LVL_INFO, s->id, "smtp refused reason=line-too-long");
			reply_local(s, SMTP_UNKNOWN, 0, "500 5.5.2 Error: line too long");
			px->phase = CP_CLOSING;
			buf_reset(in);
			break;
		}
		memcpy(line, buf_head(in), len);
		buf_consume(in, consumed);
		/* A new command arrived complete: the wait for the next one starts over. */
		ev_timer_cancel(&px->ctimer);
		if (st == SMTP_LINE_BARE_LF) {
			log_sid(LOG_LVL_INFO, s->id, "smtp refused reason=bare-lf");
			reply_local(s, SMTP_UNKNOWN, 0, "500 5.5.2 Error: bare LF in command line");
			continue;
		}
		if (px->phase == CP_AUTH) {
			auth_response(s, line, len);
		} else if (px->phase == CP_NOUP) {
			if (len == 4 && strncasecmp(line, "QUIT", 4) == 0) {
				reply_local(s, SMTP_QUIT, 0, "221 2.0.0 Bye");
			} else {
				reply_local(s, SMTP_UNKNOWN, 0,
				    "421 4.4.2 Error: connection to destination closed, try again later");
			}
			px->phase = CP_CLOSING;
		} else {
			dispatch(s, line, len);
		}
		OPENSSL_cleanse(line, len);
		if (px->phase == CP_TLS_WAIT) {
			/* Plaintext pipelined after STARTTLS is never read as a command inside TLS. */
			if (buf_len(in) > 0)
				log_sid(LOG_LVL_WARN, s->id,
				    "smtp starttls plaintext-discarded bytes=%zu (command injection?)",
				    buf_len(in));
			buf_reset(in);
			io_pause(&s->client.io);
			break;
		}
	}
	flush_replies(s);
}

static void
process_client(struct session *s)
{
	struct smtp_proxy *px = PX(s);

	while (!s->dead) {
		enum smtp_cphase before = px->phase;

		switch (px->phase) {
		case CP_GREETING:
			return; /* kept in the buffer: checked when the greeting is out */
		case CP_TLS_WAIT:
			return;
		case CP_CLOSING:
			buf_reset(&s->client.io.in);
			client_timer_update(s);
			return;
		case CP_COMMAND:
		case CP_AUTH:
		case CP_NOUP:
			command_input(s);
			break;
		case CP_DATA:
			data_input(s);
			break;
		case CP_BDAT:
			bdat_input(s);
			break;
		}
		if (px->phase == before)
			break;
	}
	/* Consuming input may have made room: let the io read again. */
	if (!s->dead)
		io_kick(&s->client.io);
	client_timer_update(s);
}

/* ----------------------------------------------------- upstream replies */

static void
reply_lines(const char *reply, size_t len, const char **lines, size_t *lens, int *n, int max)
{
	const char *p = reply, *end = reply + len;

	*n = 0;
	while (p < end && *n < max) {
		const char *crlf = memchr(p, '\r', (size_t)(end - p));
		if (crlf == NULL)
			break;
		/* text after "ddd-" / "ddd " (or nothing for a bare "ddd") */
		lines[*n] = crlf - p > 3 ? p + 4 : crlf;
		lens[*n] = crlf - p > 3 ? (size_t)(crlf - p - 4) : 0;
		(*n)++;
		p = crlf + 2;
	}
}

static void
on_greeting(struct session *s, int code)
{
	struct smtp_proxy *px = PX(s);
	struct buf *r = &px->reply;

	px->greeted = true;
	if (code != 220 && code != 421 && code != 554) {
		upstream_lost(s, "unexpected greeting");
		return;
	}
	if (io_write(&s->client.io, buf_head(r), buf_len(r)) < 0) {
		session_close(s, "client-not-reading");
		return;
	}
	log_sid(LOG_LVL_INFO, s->id, "smtp greeting code=%d", code);
	if (code == 421) {
		px->phase = CP_CLOSING;
		session_close_engine(s, "server-421");
		return;
	}
	server_timeout(s, 0);
	px->phase = CP_COMMAND;
	px->group_wait = false;
	/* A client that spoke before the greeting is not an SMTP client. */
	if (buf_len(&s->client.io.in) > 0) {
		violation(s, "talked-before-greeting");
		return;
	}
	io_resume(&s->client.io);
	process_client(s);
}

static void
on_reply(struct session *s, int code)
{
	struct smtp_proxy *px = PX(s);
	struct buf *r = &px->reply;
	struct pend *p = px->await;

	if (!px->greeted) {
		on_greeting(s, code);
		return;
	}
	if (p == NULL) {
		/* Unsolicited: a 421 (server shutting down) is passed on, anything else is an error. */
		if (code == 421 && px->npend == 0) {
			(void)io_write(&s->client.io, buf_head(r), buf_len(r));
			session_close_engine(s, "server-421");
			return;
		}
		upstream_lost(s, "unsolicited reply");
		return;
	}
	px->await = next_await(p);
	p->upstream = false;
	pend_set(p, buf_head(r), buf_len(r));

	if (p->flags & PF_DROP) {
		pend_set(p, NULL, 0);
	} else if (p->flags & PF_ABSORB_OK) {
		if (code / 100 == 2) {
			pend_set(p, NULL, 0);
		} else {
			/*
			 * This failure answers the client's BDAT LAST.  The entries
			 * behind it that would also answer it -- the local carrier
			 * and the "BDAT 0 LAST" sent after the verdict -- go silent,
			 * so the client gets exactly one reply.
			 */
			struct pend *c = p->next;

			px->bdat_failed = true;
			if (c && !c->upstream) {
				if (!c->ready || c->reply == NULL)
					pend_set(c, NULL, 0);
				c = c->next;
			}
			if (c && c->upstream && (c->flags & PF_DATAEND))
				c->flags |= PF_DROP;
		}
	} else if (p->flags & PF_EHLO) {
		if (code == 250) {
			const char *lines[SMTP_REPLY_MAX_LINES];
			size_t lens[SMTP_REPLY_MAX_LINES];
			int n;
			struct buf out;

			reply_lines(buf_head(r), buf_len(r), lines, lens, &n, SMTP_REPLY_MAX_LINES);
			caps_parse(&px->upcaps, lines, lens, n);
			buf_init(&out, SMTP_REPLY_MAX);
			if (n < 1 || caps_render(&px->upcaps, s->lim, lines[0], lens[0], &out,
			    &px->shown, starttls_offered(s)) < 0) {
				buf_free(&out);
				upstream_lost(s, "bad EHLO reply");
				return;
			}
			pend_set(p, buf_head(&out), buf_len(&out));
			buf_free(&out);
			px->helo_done = true;
			px->esmtp = true;
			log_sid(LOG_LVL_INFO, s->id, "smtp ehlo upstream=0x%x shown=0x%x", px->upcaps.flags,
			    px->shown.flags);
		}
	} else if (p->verb == SMTP_HELO) {
		if (code == 250) {
			px->helo_done = true;
			px->esmtp = false;
			memset(&px->shown, 0, sizeof(px->shown));
			memset(&px->upcaps, 0, sizeof(px->upcaps));
		}
	} else if (p->flags & PF_STARTTLS) {
		if (code == 220) {
			/* The other hard boundary: nothing may follow the upstream's 220. */
			if (buf_len(&s->server.io.in) > 0) {
				/* Nor is that 220 passed on: the client gets the 421 in its place. */
				p->ready = false;
				upstream_lost(s, "data after the STARTTLS reply (response injection)");
				return;
			}
			const struct conf_action *a = session_action(s);
			if (a && a->tls_action == TLS_ACTION_ALLOW) {
				px->tls_pend = NULL;
				flush_replies(s);
				if (!s->dead)
					session_splice(s);
				return;
			}
			p->ready = false;
			free(p->reply);
			p->reply = NULL;
			upstream_tls_begin(s, NULL);
		} else {
			/* Relayed: the client goes on in cleartext on both legs. */
			px->tls_pend = NULL;
			px->phase = CP_COMMAND;
		}
	} else if (p->flags & PF_DATAEND) {
		log_message_note(s, code / 100 == 2 ? "accepted" : "rejected", p->note ? p->note : "",
		    buf_head(r));
	} else if (p->flags & PF_CONV_DATA) {
		if (code == 354) {
			/* The client's reply to this BDAT comes when its chunk is in. */
			p->ready = false;
			free(p->reply);
			p->reply = NULL;
			px->conv_ready = true;
			server_timeout(s, s->lim->t_server_data_block);
		} else {
			px->bdat_failed = true;
		}
	} else {
		switch (p->verb) {
		case SMTP_MAIL:
			if (code / 100 != 2)
				px->mail_sent = false;
			break;
		case SMTP_RCPT:
			if (code / 100 == 2)
				px->naccepted++;
			break;
		case SMTP_DATA:
			if (code == 354 && px->phase == CP_COMMAND && !px->violation)
				data_start(s);
			break;
		case SMTP_AUTH:
			if (code == 334)
				px->phase = CP_AUTH;
			else if (code == 235)
				px->auth_done = true;
			break;
		default:
			break;
		}
	}
	if (code == 421 && !(p->flags & PF_QUIT)) {
		/* The upstream is closing: this is the last reply the client gets. */
		struct pend *q = p->next;
		while (q) {
			struct pend *n = q->next;
			if (px->chunk_pend == q)
				px->chunk_pend = NULL;
			pend_free(q);
			px->npend--;
			q = n;
		}
		p->next = NULL;
		px->tail = p;
		px->await = NULL;
		px->phase = CP_CLOSING;
	}
	if (px->await == NULL && px->phase != CP_DATA && px->phase != CP_BDAT)
		server_timeout(s, 0);
	flush_replies(s);
	if (!s->dead)
		process_client(s);
}

static void
server_input(struct session *s)
{
	struct smtp_proxy *px = PX(s);
	struct buf *in = &s->server.io.in;

	while (!px->up_dead && !s->dead && buf_len(in) > 0) {
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
			upstream_lost(s, st == SMTP_LINE_TOOLONG ? "reply line too long" : "bare LF in reply");
			return;
		}
		if (smtp_reply_line(buf_head(in), len, &code, &more, &text, &textlen) < 0) {
			upstream_lost(s, "malformed reply");
			return;
		}
		if (px->reply_lines > 0 && code != px->reply_code) {
			upstream_lost(s, "inconsistent multi-line reply");
			return;
		}
		if (px->reply_lines >= SMTP_REPLY_MAX_LINES) {
			upstream_lost(s, "reply has too many lines");
			return;
		}
		int n = snprintf(out, sizeof(out), "%03d%s%.*s\r\n", code,
		    more ? "-" : (textlen ? " " : ""), (int)textlen, text);
		if (n < 0 || buf_append(&px->reply, out, (size_t)n) < 0) {
			upstream_lost(s, "reply too long");
			return;
		}
		px->reply_code = code;
		px->reply_lines++;
		buf_consume(in, consumed);
		if (!more) {
			on_reply(s, code);
			buf_reset(&px->reply);
			px->reply_lines = 0;
		}
	}
}

/* ------------------------------------------------- failures and timers */

/* Resolve what still waits for the upstream after it is gone. */
static void
resolve_waiting(struct session *s, const char *line)
{
	struct smtp_proxy *px = PX(s);

	for (struct pend *p = px->head; p; p = p->next) {
		if (!p->upstream || p->ready)
			continue;
		p->upstream = false;
		if (p->flags & (PF_ABSORB_OK | PF_DROP))
			pend_set(p, NULL, 0);
		else if (p->flags & PF_CONV_DATA)
			pend_set_line(p, line), px->bdat_failed = true;
		else
			pend_set_line(p, line);
	}
	px->await = NULL;
}

/*
 * Deliberately end the upstream connection (refused or denied message):
 * no end of data is sent, so the destination discards the partial message.
 */
static void
upstream_abort(struct session *s, const char *why)
{
	struct smtp_proxy *px = PX(s);

	if (px->up_dead)
		return;
	log_sid(LOG_LVL_INFO, s->id, "smtp upstream abort reason=\"%s\"", why);
	px->up_dead = true;
	io_close(&s->server.io);
	resolve_waiting(s, "451 4.4.2 Error: transaction aborted");
}

/* The upstream failed (closed, reset, timed out, spoke nonsense). */
static void
upstream_lost(struct session *s, const char *why)
{
	struct smtp_proxy *px = PX(s);

	if (px->up_dead)
		return;
	log_sid(LOG_LVL_INFO, s->id, "smtp upstream lost reason=\"%s\" phase=%d pending=%u", why,
	    px->phase, px->npend);
	px->up_dead = true;
	io_close(&s->server.io);
	if (px->itxn_open && px->phase != CP_DATA && px->phase != CP_BDAT) {
		px->insp->abort(px->itxn);
		px->itxn_open = false;
	}
	if (px->phase == CP_DATA || px->phase == CP_BDAT) {
		/* The client is sending a message: let it finish, then answer 451. */
		resolve_waiting(s, "451 4.4.2 Error: connection to destination lost");
		io_resume(&s->client.io); /* it may have been paused for a full upstream */
		process_client(s);
		return;
	}
	/* Earlier replies go out; the first one we cannot give becomes a 421. */
	struct pend *p = px->head, *prev = NULL;
	while (p && p->ready) {
		prev = p;
		p = p->next;
	}
	while (p) {
		struct pend *n = p->next;
		if (px->chunk_pend == p)
			px->chunk_pend = NULL;
		pend_free(p);
		px->npend--;
		p = n;
	}
	if (prev)
		prev->next = NULL;
	else
		px->head = NULL;
	px->tail = prev;
	px->await = NULL;
	px->tls_pend = NULL; /* never ready while set: freed above */
	reply_local(s, SMTP_UNKNOWN, 0,
	    "421 4.4.2 Error: connection to destination lost, try again later");
	px->phase = CP_CLOSING;
	flush_replies(s);
}

static void
client_timeout(struct ev_timer *t)
{
	struct smtp_proxy *px = container_of(t, struct smtp_proxy, ctimer);
	struct session *s = container_of(px, struct session, px);

	if (s->dead)
		return;
	log_sid(LOG_LVL_INFO, s->id, "smtp client timeout phase=%d", px->phase);
	/* A message cut off by the timeout never gets its end of data upstream. */
	if (px->phase == CP_DATA || px->phase == CP_BDAT)
		upstream_abort(s, "client timeout");
	(void)io_printf(&s->client.io, "421 4.4.2 Error: timeout exceeded, closing connection\r\n");
	px->phase = CP_CLOSING;
	session_close_engine(s, "client-timeout");
}

/*
 * The client timer measures how long we wait for the client, not for the
 * upstream: a command must arrive whole within t_client_command of the
 * moment we started waiting (dribbling bytes does not extend it), and a
 * message must not stall longer than t_client_data between reads.
 */
static void
client_timer_update(struct session *s)
{
	struct smtp_proxy *px = PX(s);
	const struct smtp_limits *lim = s->lim;

	switch (px->phase) {
	case CP_COMMAND:
	case CP_AUTH:
	case CP_NOUP:
		if (px->npend > 0)
			ev_timer_cancel(&px->ctimer);
		else if (!ev_timer_armed(&px->ctimer))
			ev_timer_arm(&px->ctimer, lim->t_client_command * 1000ull, client_timeout);
		break;
	case CP_DATA:
	case CP_BDAT:
		ev_timer_arm(&px->ctimer, lim->t_client_data * 1000ull, client_timeout);
		break;
	case CP_GREETING:
	case CP_CLOSING:
	case CP_TLS_WAIT:
		ev_timer_cancel(&px->ctimer);
		break;
	}
}

/* --------------------------------------------------------- entry points */

void
smtp_init(struct session *s, const struct inspector *insp)
{
	struct smtp_proxy *px = PX(s);

	memset(px, 0, sizeof(*px));
	px->phase = CP_GREETING;
	px->group_wait = true;
	px->insp = insp ? insp : &inspect_allow;
	buf_init(&px->reply, SMTP_REPLY_MAX);
	buf_init(&px->conv, SMTP_CONV_MAX);
}

void
smtp_free(struct session *s)
{
	struct smtp_proxy *px = PX(s);

	ev_timer_cancel(&px->ctimer);
	txn_reset(s);
	while (px->head) {
		struct pend *n = px->head->next;
		pend_free(px->head);
		px->head = n;
	}
	px->tail = NULL;
	px->npend = 0;
	buf_free(&px->reply);
	buf_free(&px->conv);
}

void
smtp_upstream_connected(struct session *s)
{
	/* Read the client meanwhile, to catch clients that talk first. */
	io_resume(&s->client.io);
	server_timeout(s, s->lim->t_server_greeting);
	if (s->implicit_tls && s->hello_seen)
		upstream_tls_begin(s, s->sni);
}

void
smtp_client_event(struct session *s, int ev)
{
	struct smtp_proxy *px = PX(s);

	switch (ev) {
	case IO_DATAIN:
		if (px->phase == CP_DATA || px->phase == CP_BDAT)
			client_timer_update(s);
		process_client(s);
		break;
	case IO_LOWAT:
		break;
	case IO_TLS_HELLO:
		/* Implicit TLS: the client's hello waits until the upstream TLS is up. */
		s->hello_seen = true;
		if (!px->up_dead && s->state == SESSION_SMTP && s->server.io.ssl == NULL)
			upstream_tls_begin(s, s->sni);
		break;
	case IO_TLS_READY:
		px->client_tls = true;
		io_set_timeout(&s->client.io, 0);
		log_tls(s, &s->client.io, "client");
		if (px->phase == CP_TLS_WAIT) {
			px->phase = CP_COMMAND;
			px->group_wait = false;
		}
		io_resume(&s->client.io);
		process_client(s);
		break;
	case IO_EOF:
		/* Gone mid-message: the upstream never sees an end of data. */
		if (px->phase == CP_DATA || px->phase == CP_BDAT) {
			upstream_abort(s, "client disconnected mid-message");
			session_close(s, "client-disconnect-mid-message");
			break;
		}
		/*
		 * A client that half-closes after ".\r\nQUIT" still reads: the
		 * replies it is owed -- above all the destination's answer to its
		 * message -- go out before we close, or it would send the
		 * message again.
		 */
		if (px->npend > 0 && !px->up_dead) {
			px->phase = CP_CLOSING;
			client_timer_update(s);
			break;
		}
		session_close(s, px->phase == CP_CLOSING ? "client-quit" : "client-disconnect");
		break;
	case IO_ERROR:
	case IO_TIMEOUT:
	default:
		if (px->phase == CP_DATA || px->phase == CP_BDAT)
			upstream_abort(s, "client error mid-message");
		session_close(s, "client-error");
		break;
	}
}

void
smtp_server_event(struct session *s, int ev)
{
	struct smtp_proxy *px = PX(s);

	switch (ev) {
	case IO_DATAIN:
		server_input(s);
		break;
	case IO_LOWAT:
		/* The upstream drained: the client may send more message data. */
		if (px->phase == CP_DATA || px->phase == CP_BDAT) {
			io_resume(&s->client.io);
			process_client(s);
		}
		break;
	case IO_TIMEOUT:
		upstream_lost(s, "timeout");
		break;
	case IO_TLS_READY:
		upstream_tls_ready(s);
		break;
	case IO_EOF:
		upstream_lost(s, "connection closed");
		break;
	default:
		upstream_lost(s, s->server.io.error ? s->server.io.error : "error");
		break;
	}
}
