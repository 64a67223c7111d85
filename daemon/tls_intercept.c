/*
 * tls_intercept - TLS interception in the SMTP engine: STARTTLS on each
 * leg, implicit TLS on 465, the judgement of the real certificate
 * (tls.c) and the certificate the client is shown: outbound a leaf
 * forged for the real server's names (certcache.c, signed by the Proxy
 * Authority -- or the untrusted CA when the real one failed validation),
 * inbound the Proxy Server certificate.
 *
 * The client's handshake always pauses at its ClientHello until the
 * upstream verdict is known, on 465 and after STARTTLS alike:
 *
 *   STARTTLS (25)   client STARTTLS -> STARTTLS upstream -> its 220 (so
 *                   the client is never promised TLS the destination
 *                   cannot give) -> 220 to the client -> its ClientHello
 *                   (paused: SNI noted) -> upstream handshake with that
 *                   SNI -> verdict, the SNI as reference name -> the
 *                   client's certificate and session binding -> resume.
 *   implicit (465)  the client's ClientHello first (paused), then the
 *                   same from "upstream handshake" on.
 *
 * The two legs' encryption stands on its own (sender-encryption,
 * recipient-encryption): a client that does not ask for TLS still gets
 * its mail sent over TLS when the recipient leg wants it and the
 * destination offers STARTTLS -- the engine runs STARTTLS upstream itself
 * before the client's first MAIL or AUTH (tlsi_recipient_tls).
 *
 * Every client-leg TLS session is bound (tls.h, struct tls_binding) to
 * what the client was shown and why; a session offered for resumption
 * under another binding gets a full handshake.
 *
 * The TLS record layer itself lives in io.c; this file decides when each
 * handshake starts and with which SSL object.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/ssl.h>

#include "certcache.h"
#include "log.h"
#include "smtp_int.h"
#include "tls.h"
#include "util.h"

_Static_assert(TLS_BINDING_LEN == sizeof(((struct smtp_engine *)0)->binding),
    "the engine keeps one session binding");

#define R_STARTTLS_GO "220 2.0.0 Ready to start TLS"
#define R_CERT_FAILED "421 4.7.5 Error: the destination's TLS certificate failed validation"

static const struct conf_tls_profile *
profile_of(const struct smtp_engine *e)
{
	return &e->conf->profiles[smtp_profile(e)];
}

/*
 * STARTTLS shown to the client: with "inspect" smtpgw terminates it, so it
 * is ours to offer; with "allow" it is the destination's (relayed, then
 * spliced); with "drop" never.
 */
bool
tlsi_offered(const struct smtp_engine *e)
{
	const struct conf_action *a = smtp_action(e);

	if (a == NULL || tls_global == NULL || (e->flags & EF_CLIENT_TLS) ||
	    a->sender_enc == ENC_NONE)
		return false;
	if (a->tls_action == TLS_ACTION_ALLOW)
		return (e->upcaps.flags & CAP_STARTTLS) != 0;
	return a->tls_action == TLS_ACTION_INSPECT;
}

static void
log_tls(struct smtp_engine *e, struct io *io, const char *side)
{
	char peer[450], sni[80];
	SSL *ssl = io_ssl(io);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	tls_describe_peer(ssl, peer, sizeof(peer));
	log_sid(LOG_LVL_INFO, e->id, "tls ready side=%s version=%s cipher=%s sni=%s resumed=%s %s",
	    side, SSL_get_version(ssl), SSL_get_cipher_name(ssl),
	    name ? log_quote(sni, sizeof(sni), name, strlen(name)) : "-",
	    SSL_session_reused(ssl) ? "yes" : "no", peer);
}

/* After TLS, everything learned before is forgotten (RFC 3207 4.2). */
static void
forget(struct smtp_engine *e)
{
	msg_txn_reset(e);
	e->flags &= ~(EF_HELO | EF_ESMTP | EF_AUTH);
	memset(&e->shown, 0, sizeof(e->shown));
	memset(&e->upcaps, 0, sizeof(e->upcaps));
	e->helo[0] = '\0';
}

/* ----------------------------------------------------- the upstream leg */

/* The upstream session cache's key: the destination and what it is judged against. */
static void
resume_key(const struct smtp_engine *e, char *out, size_t len)
{
	char addr[ADDR_STRLEN];

	snprintf(out, len, "%s/%s/%d", addr_fmt(e->server_addr, addr, sizeof(addr)), e->upref,
	    smtp_profile(e));
}

/* OpenSSL hands us each new upstream session (TLS 1.3: after the handshake). */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct smtp_engine *e = SSL_get_app_data(ssl);
	char key[TLS_RESUME_KEY_MAX];

	if (e == NULL)
		return 0;
	resume_key(e, key, sizeof(key));
	tls_resume_put(key, sess);
	return 1; /* the reference is the cache's (or freed by it) */
}

/*
 * The upstream's handshake.  The name sent as SNI is the reference name
 * the certificate is judged against: the client's SNI, else the profile's
 * fixed name (on-no-reference-name = name:HOST), else none.
 */
void
tlsi_upstream_begin(struct smtp_engine *e)
{
	const struct conf_tls_profile *prof = profile_of(e);
	SSL *ssl = SSL_new(tls_global->client_ctx[smtp_profile(e)]);
	char key[TLS_RESUME_KEY_MAX];

	if (ssl == NULL) {
		reply_upstream_lost(e, "cannot create a TLS session");
		return;
	}
	if (e->sni[0])
		snprintf(e->upref, sizeof(e->upref), "%s", e->sni);
	else if (prof->no_ref == NOREF_NAME)
		snprintf(e->upref, sizeof(e->upref), "%s", prof->no_ref_name);
	else
		e->upref[0] = '\0';
	if (e->upref[0])
		SSL_set_tlsext_host_name(ssl, e->upref);
	if (prof->ocsp)
		SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp);
	/*
	 * Implicit TLS: the destination leg is never offered less than the
	 * client will get (the most it offers, which is what we negotiate
	 * with it).  STARTTLS caps the client at the upstream's version
	 * instead (client_proceed), as it always has.
	 */
	if ((e->flags & EF_IMPLICIT_TLS) && e->client_tls_max > SSL_get_min_proto_version(ssl))
		SSL_set_min_proto_version(ssl, e->client_tls_max);
	/* Resume this destination's last session where the server allows it. */
	resume_key(e, key, sizeof(key));
	SSL_SESSION *sess = tls_resume_get(key);
	e->up_offered = false;
	if (sess) {
		log_sid(LOG_LVL_INFO, e->id, "tls resume side=server offered=yes age=%lld",
		    (long long)(time(NULL) - (time_t)SSL_SESSION_get_time(sess)));
		/* taken out of the cache: what it held is remembered for tlsi_upstream_ready */
		e->up_offered = tls_cert_digest(SSL_SESSION_get0_peer(sess), e->up_offered_cert);
		SSL_set_session(ssl, sess);
		SSL_SESSION_free(sess);
	}
	SSL_set_app_data(ssl, e);
	SSL_set_connect_state(ssl);
	io_start_tls(e->sio, ssl);
	reply_server_timeout(e, e->lim->t_server_command);
}

/* The upstream's certificate, judged; the verdict is logged.  refname: the client's SNI. */
static void
judge(struct smtp_engine *e, const char *refname, struct tls_verdict *v)
{
	char ref[120];

	tls_judge(profile_of(e), io_ssl(e->sio), refname, v);
	log_sid(LOG_LVL_INFO, e->id,
	    "tls verify side=server result=%s class=%s action=%s reference=%s detail=\"%s\"",
	    v->ok ? "ok" : "failed", tls_verdict_class(v), certfail_action_name(v->action),
	    v->no_reference ? "none" : log_quote(ref, sizeof(ref), v->reference,
	    strlen(v->reference)), v->detail);
}

/* ------------------------------------------------------- the client leg */

/*
 * The client leg's certificate: outbound, a leaf forged for the real
 * server's names and signed by the Proxy Authority (or the untrusted CA
 * when the real certificate failed validation); inbound, or without
 * upstream TLS, the Proxy Server certificate.
 */
static int
use_server_certificate(SSL *ssl)
{
	const struct tls_material *m = tls_global;

	return SSL_use_certificate(ssl, m->server_cert) == 1 &&
	    SSL_use_PrivateKey(ssl, m->server_key) == 1 ? 0 : -1;
}

/* A forged leaf, with the certificate of the CA that really signed it in the chain. */
static int
use_leaf(SSL *ssl, X509 *leaf, bool trusted)
{
	const struct tls_material *m = tls_global;

	return SSL_use_certificate(ssl, leaf) == 1 && SSL_use_PrivateKey(ssl, m->leaf_key) == 1 &&
	    SSL_add1_chain_cert(ssl, trusted ? m->pa_cert : m->ua_cert) == 1 ? 0 : -1;
}

/* A forged leaf is needed: outbound with a real certificate to base it on. */
static X509 *
forge_basis(const struct smtp_engine *e)
{
	if (e->inbound || !(e->flags & EF_UP_TLS))
		return NULL;
	return SSL_get0_peer_certificate(io_ssl(e->sio));
}

/*
 * Bind the client's session to what it is shown and why (tls.h): a
 * session offered for resumption under another binding -- another
 * destination, name, certificate, verdict or CA -- gets a full handshake
 * and so the certificate this verdict calls for.  v is NULL without
 * upstream TLS.
 */
static int
bind_session(struct smtp_engine *e, SSL *ssl, const struct tls_verdict *v, bool trusted)
{
	const struct tls_material *m = tls_global;
	X509 *peer = (e->flags & EF_UP_TLS) ? SSL_get0_peer_certificate(io_ssl(e->sio)) : NULL;
	char dest[ADDR_STRLEN];
	struct tls_binding b = {
		.inbound = e->inbound,
		.destination = addr_fmt(e->server_addr, dest, sizeof(dest)),
		.profile = profile_of(e)->name,
		.upstream = peer,
		.verdict = peer ? v : NULL,
		.shown_issuer = (!e->inbound && peer) ? (trusted ? m->pa_cert : m->ua_cert)
		    : m->server_cert,
	};

	if (tls_binding_context(&b, e->binding) < 0 ||
	    SSL_set_session_id_context(ssl, e->binding, sizeof(e->binding)) != 1)
		return -1;
	e->bound = true;
	return 0;
}

/*
 * A ticket the client offers: used only under the binding it was issued
 * for (OpenSSL checks the session id context as well; this is where the
 * refusal is logged).
 */
static SSL_TICKET_RETURN
ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *keyname, size_t keyname_len,
    SSL_TICKET_STATUS status, void *arg)
{
	struct smtp_engine *e = SSL_get_app_data(ssl);
	const unsigned char *ctx;
	unsigned int len = 0;

	(void)keyname;
	(void)keyname_len;
	(void)arg;
	switch (status) {
	case SSL_TICKET_SUCCESS:
	case SSL_TICKET_SUCCESS_RENEW:
		break;
	case SSL_TICKET_EMPTY:
	case SSL_TICKET_NO_DECRYPT:
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	default:
		return SSL_TICKET_RETURN_ABORT;
	}
	ctx = SSL_SESSION_get0_id_context(sess, &len);
	if (e == NULL || !e->bound || len != sizeof(e->binding) ||
	    memcmp(ctx, e->binding, sizeof(e->binding)) != 0) {
		if (e)
			log_sid(LOG_LVL_INFO, e->id, "tls resumption refused side=client "
			    "reason=binding-mismatch (full handshake)");
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	}
	return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

/*
 * The client's handshake starts: after the 220, paused at its ClientHello
 * (hello_cb) until the upstream verdict -- except client-only TLS
 * (allow-cleartext-relay), which has no verdict to wait for.
 */
static int
client_start(struct smtp_engine *e)
{
	SSL *ssl = SSL_new(tls_global->server_ctx[smtp_profile(e)]);

	if (ssl == NULL || ((e->flags & EF_CLIENT_ONLY) &&
	    (use_server_certificate(ssl) < 0 || bind_session(e, ssl, NULL, false) < 0))) {
		SSL_free(ssl);
		log_sid(LOG_LVL_ERR, e->id, "tls error=\"cannot prepare the client's TLS\"");
		reply_set_line(e->tls_pend, R_TLS_LOCAL);
		e->tls_pend = NULL;
		e->flags &= ~EF_CLIENT_ONLY;
		smtp_enter(e, SP_COMMAND);
		return -1;
	}
	forget(e);
	reply_set_line(e->tls_pend, R_STARTTLS_GO);
	e->tls_pend = NULL;
	reply_flush(e);
	if (smtp_stopped(e)) {
		SSL_free(ssl);
		return 0;
	}
	/*
	 * The hard boundary: the 220 is the last plaintext byte; whatever
	 * plaintext the client sent after STARTTLS is discarded here and the
	 * handshake starts once the 220 has left.
	 */
	SSL_set_accept_state(ssl);
	SSL_set_app_data(ssl, e);
	io_start_tls(e->cio, ssl);
	io_set_timeout(e->cio, e->lim->t_client_command * 1000u);
	return 0;
}

/*
 * Both the client's hello and the upstream's TLS are in: judge the real
 * certificate against the client's SNI, give the paused client handshake
 * its certificate and binding, and let it finish.
 */
/* The paused client handshake gets its certificate and binding, and goes on. */
static void
client_finish(struct smtp_engine *e, X509 *leaf, bool trusted)
{
	SSL *cssl = io_ssl(e->cio);
	int rc = leaf ? use_leaf(cssl, leaf, trusted) : use_server_certificate(cssl);

	if (rc < 0 || bind_session(e, cssl, &e->verdict, trusted) < 0) {
		log_sid(LOG_LVL_ERR, e->id, "tls error=\"cannot prepare the client certificate\"");
		smtp_close(e, "tls-local-error");
		return;
	}
	io_tls_resume(e->cio);
}

/*
 * The signer's answer.  It judged the chain itself and may have signed
 * with the untrusted CA where we asked for the Proxy Authority: the
 * chain and the binding follow what it did, never what we asked.
 */
static void
leaf_ready(void *arg, X509 *leaf, bool trusted, const char *why)
{
	struct smtp_engine *e = arg;

	e->cert_req = NULL;
	if (smtp_stopped(e)) {
		X509_free(leaf);
		return;
	}
	if (leaf == NULL) {
		log_sid(LOG_LVL_ERR, e->id, "tls error=\"no forged certificate\" reason=\"%s\"",
		    why ? why : "-");
		smtp_close(e, "tls-signer-refused");
		return;
	}
	client_finish(e, leaf, trusted);
	X509_free(leaf);
}

/* Ask the cache, else the signer (asynchronously: the client's handshake stays paused). */
static void
request_leaf(struct smtp_engine *e, X509 *peer, bool trusted)
{
	SSL *ussl = io_ssl(e->sio);
	const unsigned char *staple = NULL;
	long slen = SSL_get_tlsext_status_ocsp_resp(ussl, &staple);
	struct certcache_query q = {
		.chain = SSL_get_peer_cert_chain(ussl),
		.refname = e->sni,
		.profile = smtp_profile(e),
		.ocsp = slen > 0 ? staple : NULL,
		.ocsp_len = slen > 0 ? (size_t)slen : 0,
		.trusted = trusted,
	};
	const char *why = NULL;
	X509 *leaf = certcache_lookup(peer, trusted);

	if (leaf) {
		client_finish(e, leaf, trusted);
		X509_free(leaf);
		return;
	}
	e->cert_req = certcache_request(&q, leaf_ready, e, &why);
	if (e->cert_req == NULL) {
		log_sid(LOG_LVL_ERR, e->id, "tls error=\"no forged certificate\" reason=\"%s\"",
		    why ? why : "-");
		smtp_close(e, "tls-signer-busy");
	}
}

static void
client_proceed(struct smtp_engine *e)
{
	SSL *cssl = io_ssl(e->cio);
	struct tls_verdict *v = &e->verdict;
	X509 *peer;

	judge(e, e->sni, v);
	if (v->action == CERTFAIL_BLOCK) {
		/* Never a certificate for a destination we could not validate: the handshake fails. */
		smtp_close(e, "tls-upstream-certificate-blocked");
		return;
	}
	bool trusted = v->ok || v->action == CERTFAIL_ALLOW;
	/*
	 * STARTTLS: never more TLS to the client than the destination leg
	 * has -- the client would believe in a protection its mail does not
	 * get.  (The version is chosen after the hello callback: this holds.)
	 */
	if (!(e->flags & EF_IMPLICIT_TLS) &&
	    SSL_set_max_proto_version(cssl, SSL_version(io_ssl(e->sio))) != 1) {
		log_sid(LOG_LVL_ERR, e->id, "tls error=\"cannot prepare the client certificate\"");
		smtp_close(e, "tls-local-error");
		return;
	}
	peer = forge_basis(e);
	if (peer)
		request_leaf(e, peer, trusted);
	else
		client_finish(e, NULL, trusted);
}

/* The client's STARTTLS command. */
void
tlsi_starttls(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	const struct conf_action *a = smtp_action(e);

	if (e->flags & EF_CLIENT_TLS) {
		cmd_refuse(e, cmd, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (!(e->flags & EF_ESMTP) || !(e->shown.flags & CAP_STARTTLS) || a == NULL ||
	    tls_global == NULL) {
		cmd_refuse(e, cmd, "502 5.5.1 Error: STARTTLS not available");
		return;
	}
	if (a->tls_action == TLS_ACTION_ALLOW) {
		/* The recipient leg went TLS on its own: there is no TLS left to relay. */
		if (e->flags & EF_UP_TLS) {
			cmd_refuse(e, cmd, "454 4.7.0 TLS not available: the destination leg is "
			    "already encrypted");
			return;
		}
		/* Relayed as is; after the destination's 220 the legs are spliced. */
		reply_forward(e, PK_STARTTLS, PF_GROUP_END, e->lim->t_server_command, "STARTTLS");
		e->tls_pend = e->tail;
		smtp_enter(e, SP_TLS_WAIT);
		return;
	}
	/*
	 * The recipient leg is TLS already (the engine's own STARTTLS): only
	 * the client's handshake is left; its SNI is judged against the
	 * certificate that leg has (it can no longer be sent upstream).
	 */
	if (e->flags & EF_UP_TLS) {
		e->tls_pend = reply_new(e, PK_LOCAL, false, PF_GROUP_END);
		smtp_enter(e, SP_TLS_WAIT);
		(void)client_start(e); /* on failure its 454 goes out with the others */
		return;
	}
	/* Upstream first: the client is promised TLS only once the destination agreed. */
	if ((e->upcaps.flags & CAP_STARTTLS) && a->recipient_enc != ENC_NONE) {
		reply_forward(e, PK_STARTTLS, PF_GROUP_END, e->lim->t_server_command, "STARTTLS");
		e->tls_pend = e->tail;
		smtp_enter(e, SP_TLS_WAIT);
		return;
	}
	if (a->allow_cleartext_relay) {
		/* Only because the action says so explicitly: TLS to the client, cleartext on. */
		log_sid(LOG_LVL_WARN, e->id,
		    "tls client-only reason=\"%s\" allow-cleartext-relay=yes",
		    a->recipient_enc == ENC_NONE ? "recipient-encryption none" :
		    "destination offers no TLS");
		e->tls_pend = reply_new(e, PK_LOCAL, false, PF_GROUP_END);
		e->flags |= EF_CLIENT_ONLY;
		smtp_enter(e, SP_TLS_WAIT);
		(void)client_start(e); /* on failure its 454 goes out with the others */
		return;
	}
	/*
	 * Never a TLS session to the client while its mail goes on in
	 * cleartext: the client stays in cleartext on both legs, visibly
	 * (RFC 3207 4: 454, and an opportunistic client goes on without).
	 */
	cmd_refuse(e, cmd, a->recipient_enc == ENC_NONE ?
	    "454 4.7.0 TLS not available: recipient-encryption is none" :
	    "454 4.7.0 TLS not available: the destination does not offer TLS");
}

/* The upstream's reply to the STARTTLS we sent for the client. */
bool
tlsi_upstream_reply(struct smtp_engine *e, struct pend *p, int code)
{
	if (code != 220) {
		/* Relayed: the client goes on in cleartext on both legs. */
		e->tls_pend = NULL;
		smtp_enter(e, SP_COMMAND);
		return true;
	}
	/* The other hard boundary: nothing may follow the upstream's 220. */
	if (buf_len(io_in(e->sio)) > 0) {
		/* Nor is that 220 passed on: the client gets the 421 in its place. */
		reply_hold(p);
		reply_upstream_lost(e, "data after the STARTTLS reply (response injection)");
		return false;
	}
	const struct conf_action *a = smtp_action(e);
	if (a && a->tls_action == TLS_ACTION_ALLOW) {
		e->tls_pend = NULL;
		reply_flush(e);
		if (!smtp_stopped(e)) {
			ev_timer_cancel(&e->ctimer);
			e->ops->splice(e->owner);
		}
		return false;
	}
	/* The destination agreed: the client gets its 220, the upstream waits for its hello. */
	log_sid(LOG_LVL_INFO, e->id, "tls starttls side=server code=220 waiting=client-hello");
	if (client_start(e) < 0) {
		/* The destination now expects a handshake nobody will start. */
		reply_upstream_lost(e, "cannot start the client's TLS");
		return false;
	}
	return !smtp_stopped(e);
}

/* ------------------------------------------- the recipient leg on its own */

static bool
trigger_verb(const char *line, size_t len)
{
	/* What carries the client's mail or credentials upstream. */
	static const char *const verbs[] = { "MAIL", "AUTH" };

	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (len >= 4 && strncasecmp(line, verbs[i], 4) == 0 && (len == 4 || line[4] == ' '))
			return true;
	return false;
}

/*
 * Before the client's command line is read.  Why at the first MAIL (or
 * AUTH) and not right after the client's EHLO: only then is it known
 * that the client did not ask for TLS itself (STARTTLS comes after EHLO,
 * if at all), and a client that does ask must find the upstream still in
 * cleartext, so that its SNI goes upstream and names the certificate it
 * is judged against.  Nothing of the client's mail or credentials has
 * gone upstream before MAIL/AUTH; the EHLO/HELO name, NOOP, RSET or HELP
 * may have, as they may before any STARTTLS.
 */
bool
tlsi_recipient_tls(struct smtp_engine *e, const char *line, size_t len)
{
	const struct conf_action *a = smtp_action(e);

	if (e->flags & EF_UP_OWN)
		return true; /* running: the line waits */
	if (a == NULL || tls_global == NULL || a->recipient_enc == ENC_NONE ||
	    a->tls_action == TLS_ACTION_DROP || e->phase != SP_COMMAND || e->sio == NULL ||
	    (e->flags & (EF_UP_TLS | EF_UP_TRIED | EF_UP_DEAD | EF_CLIENT_TLS)) ||
	    !(e->flags & EF_HELO) || !trigger_verb(line, len))
		return false;
	/* A client that must use TLS first is refused (530) whatever the upstream: leave it. */
	if (a->sender_enc == ENC_REQUIRED)
		return false;
	/* After EHLO the destination's offer is known; after HELO it is asked for below. */
	if ((e->flags & EF_ESMTP) && !(e->upcaps.flags & CAP_STARTTLS))
		return false;
	/* The replies owed first: the line is read again when they are in. */
	if (e->npend > 0)
		return true;
	log_sid(LOG_LVL_INFO, e->id, "tls recipient-leg start recipient-encryption=%s "
	    "client-tls=no", encryption_name(a->recipient_enc));
	e->flags |= EF_UP_OWN;
	if (e->flags & EF_ESMTP)
		reply_forward(e, PK_OWN_STARTTLS, 0, e->lim->t_server_command, "STARTTLS");
	else
		reply_forward(e, PK_OWN_EHLO, 0, e->lim->t_server_command, "EHLO %s", e->helo);
	return true;
}

/* The recipient leg stays as it is: the waiting line is read now. */
static void
own_done(struct smtp_engine *e, const char *why)
{
	if (why)
		log_sid(LOG_LVL_INFO, e->id, "tls recipient-leg cleartext reason=\"%s\"", why);
	e->flags &= ~EF_UP_OWN;
	e->flags |= EF_UP_TRIED;
}

/* The capability set of the upstream reply being handled (e->reply, a 250 to EHLO). */
static void
parse_caps(struct smtp_engine *e, struct caps *out)
{
	const char *lines[SMTP_REPLY_MAX_LINES];
	size_t lens[SMTP_REPLY_MAX_LINES];
	const char *p = buf_head(&e->reply), *end = p + buf_len(&e->reply);
	int n = 0;

	while (p < end && n < SMTP_REPLY_MAX_LINES) {
		const char *crlf = memchr(p, '\r', (size_t)(end - p));
		if (crlf == NULL)
			break;
		lines[n] = crlf - p > 3 ? p + 4 : crlf;
		lens[n] = crlf - p > 3 ? (size_t)(crlf - p - 4) : 0;
		n++;
		p = crlf + 2;
	}
	caps_parse(out, lines, lens, n);
}

bool
tlsi_own_starttls_reply(struct smtp_engine *e, struct pend *p, int code)
{
	/* A 421 is the destination closing: it answers the client's waiting command. */
	if (code == 421)
		return true;
	reply_set(p, NULL, 0);
	if (code != 220) {
		char why[64];
		snprintf(why, sizeof(why), "the destination answered STARTTLS with %d", code);
		own_done(e, why);
		return true;
	}
	if (buf_len(io_in(e->sio)) > 0) {
		reply_upstream_lost(e, "data after the STARTTLS reply (response injection)");
		return false;
	}
	/*
	 * No client hello, so no SNI: the profile's on-no-reference-name
	 * decides.  The upstream is in its handshake from here (with its
	 * timeout): nothing more to do for this reply.
	 */
	reply_flush(e);
	if (!smtp_stopped(e))
		tlsi_upstream_begin(e);
	return false;
}

/*
 * The recipient leg's TLS is up: judge it (no reference name but the
 * profile's), then greet the destination again inside TLS.  A client in
 * cleartext is shown no certificate, so untrusted-sign and allow both go
 * on (the verdict is logged); block refuses.
 */
static void
own_upstream_ready(struct smtp_engine *e)
{
	struct tls_verdict v;

	judge(e, NULL, &v);
	if (v.action == CERTFAIL_BLOCK) {
		e->flags &= ~EF_UP_OWN;
		reply_local(e, 0, R_CERT_FAILED);
		smtp_enter(e, SP_CLOSING);
		reply_upstream_abort(e, "certificate blocked by the TLS profile");
		reply_flush(e);
		return;
	}
	reply_forward(e, PK_OWN_EHLO, 0, e->lim->t_server_command, "EHLO %s", e->helo);
}

bool
tlsi_own_ehlo_reply(struct smtp_engine *e, struct pend *p, int code)
{
	struct caps up;
	char a[120], b[120];

	if (code == 421)
		return true;
	reply_set(p, NULL, 0);
	if (!(e->flags & EF_UP_TLS)) {
		/* HELO client: was the destination's offer, asked for with our EHLO. */
		if (code != 250) {
			own_done(e, "the destination refused EHLO");
			return true;
		}
		parse_caps(e, &up);
		if (!(up.flags & CAP_STARTTLS)) {
			own_done(e, "the destination offers no STARTTLS");
			return true;
		}
		reply_forward(e, PK_OWN_STARTTLS, 0, e->lim->t_server_command, "STARTTLS");
		return true;
	}
	if (code != 250) {
		reply_upstream_lost(e, "EHLO refused after STARTTLS");
		return false;
	}
	/*
	 * What the client was shown stays what it may use: keywords the
	 * destination no longer offers inside TLS are withdrawn (the client
	 * hears a refusal from smtpgw, never sends the destination something
	 * it did not announce); CHUNKING is smtpgw's own (BDAT becomes DATA
	 * when the destination lacks it), STARTTLS the client's leg's.
	 */
	parse_caps(e, &e->upcaps);
	unsigned lost = e->shown.flags & ~(e->upcaps.flags | CAP_CHUNKING | CAP_STARTTLS);
	if (e->flags & EF_ESMTP) {
		e->shown.flags &= ~lost;
		if ((e->shown.flags & CAP_SIZE) && e->upcaps.size && e->upcaps.size < e->shown.size)
			e->shown.size = e->upcaps.size;
	}
	log_sid(LOG_LVL_INFO, e->id, "tls recipient-leg ready upstream=%s withdrawn=%s",
	    caps_names(e->upcaps.flags, a, sizeof(a)), caps_names(lost, b, sizeof(b)));
	own_done(e, NULL);
	return true;
}

const char *
tlsi_mail_refusal(const struct smtp_engine *e)
{
	const struct conf_action *a = smtp_action(e);

	/*
	 * Temporary, as Postfix does for "encrypt" towards a server without
	 * STARTTLS: the sender keeps the mail and tries again (RFC 3463 X.7.4,
	 * security features not supported).
	 */
	if (a && a->recipient_enc == ENC_REQUIRED && !(e->flags & EF_UP_TLS))
		return "451 4.7.4 Error: TLS to the destination is required but not available";
	if ((e->flags & EF_CLIENT_TLS) && !(e->flags & EF_UP_TLS) &&
	    !(a && a->allow_cleartext_relay))
		return "451 4.7.0 Error: the destination leg is not encrypted";
	return NULL;
}

/* ------------------------------------------------------------- events */

/* The upstream TLS handshake completed. */
void
tlsi_upstream_ready(struct smtp_engine *e)
{
	SSL *ssl = io_ssl(e->sio);
	char key[TLS_RESUME_KEY_MAX];

	e->flags |= EF_UP_TLS;
	log_tls(e, e->sio, "server");
	/*
	 * A full handshake that shows another certificate: the cached
	 * sessions go, and so did the one offered (refused by the server).
	 */
	resume_key(e, key, sizeof(key));
	if (!SSL_session_reused(ssl)) {
		X509 *peer = SSL_get0_peer_certificate(ssl);
		unsigned char now[32];
		bool changed = tls_resume_check(key, peer);

		if (e->up_offered && (!tls_cert_digest(peer, now) ||
		    memcmp(now, e->up_offered_cert, sizeof(now)) != 0))
			changed = true;
		if (changed)
			log_sid(LOG_LVL_INFO, e->id,
			    "tls resume side=server dropped reason=certificate-changed");
	}
	if (e->flags & EF_UP_OWN)
		own_upstream_ready(e);
	else
		client_proceed(e);
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
 * names only non-mail protocols, and pause the handshake until the
 * upstream verdict is known (client-only TLS has none to wait for).
 */
static int
hello_cb(SSL *ssl, int *al, void *arg)
{
	struct smtp_engine *e = SSL_get_app_data(ssl);
	const unsigned char *p;
	size_t len;

	(void)arg;
	if (e == NULL || (e->flags & EF_HELLO_SEEN))
		return SSL_CLIENT_HELLO_SUCCESS;
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) == 1 &&
	    tls_parse_sni(p, len, e->sni, sizeof(e->sni)) < 0) {
		log_sid(LOG_LVL_WARN, e->id, "tls refused reason=malformed-sni");
		*al = SSL_AD_DECODE_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
	    &len) == 1) {
		bool smtp, any;
		if (tls_parse_alpn(p, len, &smtp, &any) < 0 || (any && !smtp)) {
			log_sid(LOG_LVL_WARN, e->id, "tls refused reason=alpn-not-smtp");
			*al = SSL_AD_NO_APPLICATION_PROTOCOL;
			return SSL_CLIENT_HELLO_ERROR;
		}
	}
	e->client_tls_max = client_max_version(ssl);
	e->flags |= EF_HELLO_SEEN;
	return (e->flags & EF_CLIENT_ONLY) ? SSL_CLIENT_HELLO_SUCCESS : SSL_CLIENT_HELLO_RETRY;
}

/* The client's hello arrived (paused): the upstream's handshake, or its verdict, next. */
void
tlsi_client_hello(struct smtp_engine *e)
{
	e->flags |= EF_HELLO_SEEN;
	if (e->flags & EF_UP_DEAD)
		return;
	if (e->flags & EF_UP_TLS)
		client_proceed(e); /* the recipient leg went TLS on its own earlier */
	else if (e->sio && io_ssl(e->sio) == NULL && (e->flags & (EF_IMPLICIT_TLS | EF_GREETED)))
		tlsi_upstream_begin(e);
}

/* The client's handshake completed: SMTP goes on inside TLS. */
void
tlsi_client_ready(struct smtp_engine *e)
{
	e->flags |= EF_CLIENT_TLS;
	io_set_timeout(e->cio, 0);
	log_tls(e, e->cio, "client");
	if (io_discarded(e->cio) > 0)
		log_sid(LOG_LVL_WARN, e->id,
		    "smtp starttls plaintext-discarded bytes=%llu (command injection?)",
		    (unsigned long long)io_discarded(e->cio));
	if (e->phase == SP_TLS_WAIT) {
		smtp_enter(e, SP_COMMAND);
		e->flags &= ~EF_GROUP_WAIT;
	}
	io_resume(e->cio);
	smtp_process_client(e);
}

/* The upstream connection is up: on 465 its handshake starts once the client's hello is in. */
void
tlsi_upstream_connected(struct smtp_engine *e)
{
	if ((e->flags & EF_IMPLICIT_TLS) && (e->flags & EF_HELLO_SEEN))
		tlsi_upstream_begin(e);
}

/*
 * The destination failed (or the session is refusing) while the client's
 * handshake is paused at its hello: finish it with the Proxy Server
 * certificate (never a forgery: there is no verdict to base one on) so
 * the client can read the 4xx that tells it to retry, instead of a
 * silent close.  Such a session resumes into nothing but another one.
 */
int
tlsi_finish_for_reply(struct smtp_engine *e)
{
	static const unsigned char refusal[] = "smtpgw refusal";
	SSL *ssl = io_ssl(e->cio);

	if (ssl == NULL || !io_hs_paused(e->cio))
		return 0;
	if (SSL_get_certificate(ssl) == NULL &&
	    (SSL_use_certificate(ssl, tls_global->server_cert) != 1 ||
	    SSL_use_PrivateKey(ssl, tls_global->server_key) != 1))
		return -1;
	e->bound = false;
	if (SSL_set_session_id_context(ssl, refusal, sizeof(refusal) - 1) != 1)
		return -1;
	io_tls_resume(e->cio);
	return 0;
}

void
tlsi_init(void)
{
	for (int i = 0; tls_global && i < CONF_MAX_PROFILES; i++) {
		if (tls_global->server_ctx[i]) {
			SSL_CTX_set_client_hello_cb(tls_global->server_ctx[i], hello_cb, NULL);
			SSL_CTX_set_session_ticket_cb(tls_global->server_ctx[i], NULL, ticket_dec_cb,
			    NULL);
		}
		if (tls_global->client_ctx[i])
			SSL_CTX_sess_set_new_cb(tls_global->client_ctx[i], new_session_cb);
	}
}

void
tlsi_implicit_start(struct smtp_engine *e)
{
	SSL *ssl;

	e->flags |= EF_IMPLICIT_TLS;
	ssl = SSL_new(tls_global->server_ctx[smtp_profile(e)]);
	if (ssl == NULL) {
		smtp_close(e, "tls-local-error");
		return;
	}
	SSL_set_app_data(ssl, e);
	SSL_set_accept_state(ssl);
	io_start_tls(e->cio, ssl);
	io_set_timeout(e->cio, e->lim->t_client_command * 1000u);
}
