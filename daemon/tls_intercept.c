/*
 * tls_intercept - TLS interception in the SMTP engine: STARTTLS on each
 * leg (upstream first, then the client), implicit TLS on 465 (the
 * client's handshake paused at its ClientHello until the upstream's is
 * done), the judgement of the real certificate (tls.c) and the
 * certificate the client is shown: outbound a leaf forged for the real
 * server's names (certcache.c, signed by the Proxy Authority -- or the
 * untrusted CA when the real one failed validation), inbound the Proxy
 * Server certificate.
 *
 * The TLS record layer itself lives in io.c; this file decides when each
 * handshake starts and with which SSL object.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#include "certcache.h"
#include "log.h"
#include "smtp_int.h"
#include "tls.h"
#include "util.h"

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

static void
resume_key(const struct smtp_engine *e, char *out, size_t len)
{
	char addr[ADDR_STRLEN];

	snprintf(out, len, "%s/%s/%d", addr_fmt(e->server_addr, addr, sizeof(addr)), e->sni,
	    smtp_profile(e));
}

/* OpenSSL hands us each new upstream session (TLS 1.3: after the handshake). */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct smtp_engine *e = SSL_get_app_data(ssl);
	char key[300];

	if (e == NULL)
		return 0;
	resume_key(e, key, sizeof(key));
	tls_resume_put(key, sess);
	return 1; /* we keep the reference */
}

void
tlsi_upstream_begin(struct smtp_engine *e, const char *sni)
{
	SSL *ssl = SSL_new(tls_global->client_ctx[smtp_profile(e)]);

	if (ssl == NULL) {
		reply_upstream_lost(e, "cannot create a TLS session");
		return;
	}
	/* The client's SNI is mirrored upstream (and is the reference name). */
	if (sni && sni[0])
		SSL_set_tlsext_host_name(ssl, sni);
	if (e->conf->profiles[smtp_profile(e)].ocsp)
		SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp);
	/*
	 * Implicit TLS: the client's hello is known before the upstream's, so
	 * the destination leg is never offered less than the client will get
	 * (the most it offers, which is what we negotiate with it).
	 */
	if ((e->flags & EF_IMPLICIT_TLS) && e->client_tls_max > SSL_get_min_proto_version(ssl))
		SSL_set_min_proto_version(ssl, e->client_tls_max);
	/* Resume this destination's last session where the server allows it. */
	char key[300];
	resume_key(e, key, sizeof(key));
	SSL_SESSION *sess = tls_resume_get(key);
	if (sess) {
		SSL_set_session(ssl, sess);
		SSL_SESSION_free(sess);
	}
	SSL_set_app_data(ssl, e);
	SSL_set_connect_state(ssl);
	io_start_tls(e->sio, ssl);
	reply_server_timeout(e, e->lim->t_server_command);
}

/*
 * The client leg's certificate: outbound, a leaf forged for the real
 * server's names and signed by the Proxy Authority (or the untrusted CA
 * when the real certificate failed validation); inbound, the Proxy Server
 * certificate.
 */
static int
use_certificate(struct smtp_engine *e, SSL *ssl, bool trusted)
{
	const struct tls_material *m = tls_global;
	X509 *peer = (e->flags & EF_UP_TLS) ? SSL_get0_peer_certificate(io_ssl(e->sio)) : NULL;
	int ok;

	if (!e->inbound && peer) {
		X509 *leaf = certcache_get(peer, trusted);
		ok = leaf && SSL_use_certificate(ssl, leaf) == 1 &&
		    SSL_use_PrivateKey(ssl, m->leaf_key) == 1 &&
		    SSL_add1_chain_cert(ssl, trusted ? m->pa_cert : m->ua_cert) == 1;
		X509_free(leaf);
	} else {
		ok = SSL_use_certificate(ssl, m->server_cert) == 1 &&
		    SSL_use_PrivateKey(ssl, m->server_key) == 1;
	}
	return ok ? 0 : -1;
}

static SSL *
client_ssl(struct smtp_engine *e, bool trusted)
{
	SSL *ssl = SSL_new(tls_global->server_ctx[smtp_profile(e)]);

	if (ssl == NULL)
		return NULL;
	/*
	 * Never more TLS to the client than the destination leg has: the
	 * client would believe in a protection its mail does not get.
	 */
	if (e->flags & EF_UP_TLS)
		SSL_set_max_proto_version(ssl, SSL_version(io_ssl(e->sio)));
	if (use_certificate(e, ssl, trusted) < 0) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static void
client_begin(struct smtp_engine *e, bool trusted)
{
	SSL *ssl = client_ssl(e, trusted);

	if (ssl == NULL) {
		log_sid(LOG_LVL_ERR, e->id, "tls error=\"cannot prepare the client certificate\"");
		reply_set_line(e->tls_pend, R_TLS_LOCAL);
		e->tls_pend = NULL;
		smtp_enter(e, SP_COMMAND);
		reply_flush(e);
		return;
	}
	forget(e);
	reply_set_line(e->tls_pend, "220 2.0.0 Ready to start TLS");
	e->tls_pend = NULL;
	reply_flush(e);
	if (smtp_stopped(e)) {
		SSL_free(ssl);
		return;
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
	if (!(e->flags & EF_ESMTP) || !(e->shown.flags & CAP_STARTTLS) || a == NULL) {
		cmd_refuse(e, cmd, "502 5.5.1 Error: STARTTLS not available");
		return;
	}
	if (a->tls_action == TLS_ACTION_ALLOW) {
		/* Relayed as is; after the destination's 220 the legs are spliced. */
		reply_forward(e, PK_STARTTLS, PF_GROUP_END, e->lim->t_server_command, "STARTTLS");
		e->tls_pend = e->tail;
		smtp_enter(e, SP_TLS_WAIT);
		return;
	}
	/* Upstream first: the client's certificate is forged from the real one. */
	if ((e->upcaps.flags & CAP_STARTTLS) && !(e->flags & EF_UP_TLS) &&
	    a->recipient_enc != ENC_NONE) {
		reply_forward(e, PK_STARTTLS, PF_GROUP_END, e->lim->t_server_command, "STARTTLS");
		e->tls_pend = e->tail;
		smtp_enter(e, SP_TLS_WAIT);
		return;
	}
	if (a->allow_cleartext_relay) {
		/* Only because the action says so explicitly: TLS to the client, cleartext on. */
		log_sid(LOG_LVL_WARN, e->id,
		    "tls client-only reason=\"destination offers no TLS\" allow-cleartext-relay=yes");
		e->tls_pend = reply_new(e, PK_LOCAL, false, PF_GROUP_END);
		smtp_enter(e, SP_TLS_WAIT);
		client_begin(e, false);
		return;
	}
	/*
	 * Never a TLS session to the client while its mail goes on in
	 * cleartext: the client stays in cleartext on both legs, visibly.
	 */
	cmd_refuse(e, cmd, "454 4.7.0 TLS not available: the destination does not offer TLS");
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
	reply_hold(p);
	tlsi_upstream_begin(e, NULL);
	return true;
}

/* The upstream TLS handshake completed: judge the certificate, go on with the client. */
void
tlsi_upstream_ready(struct smtp_engine *e)
{
	const struct conf_tls_profile *prof = &e->conf->profiles[smtp_profile(e)];
	struct tls_verdict v;

	e->flags |= EF_UP_TLS;
	log_tls(e, e->sio, "server");
	tls_judge(prof, io_ssl(e->sio), e->sni, &v);
	log_sid(LOG_LVL_INFO, e->id,
	    "tls verify side=server result=%s class=%s action=%s detail=\"%s\"",
	    v.ok ? "ok" : "failed", v.ok ? "-" : certfail_class_keys[v.cls] + 3,
	    certfail_action_name(v.action), v.detail);
	if (v.action == CERTFAIL_BLOCK) {
		/* Never present a trusted forgery for a destination we could not validate. */
		if (e->flags & EF_IMPLICIT_TLS) {
			smtp_close(e, "tls-upstream-certificate-blocked");
			return;
		}
		if (e->tls_pend) {
			reply_set_line(e->tls_pend,
			    "421 4.7.5 Error: the destination's TLS certificate failed validation");
			e->tls_pend = NULL;
		}
		smtp_enter(e, SP_CLOSING);
		reply_upstream_abort(e, "certificate blocked by the TLS profile");
		reply_flush(e);
		return;
	}
	bool trusted = v.ok || v.action == CERTFAIL_ALLOW;
	if (e->flags & EF_IMPLICIT_TLS) {
		if (use_certificate(e, io_ssl(e->cio), trusted) < 0) {
			log_sid(LOG_LVL_ERR, e->id,
			    "tls error=\"cannot prepare the client certificate\"");
			smtp_close(e, "tls-local-error");
			return;
		}
		io_tls_resume(e->cio);
		return;
	}
	client_begin(e, trusted);
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
	return (e->flags & EF_IMPLICIT_TLS) ? SSL_CLIENT_HELLO_RETRY : SSL_CLIENT_HELLO_SUCCESS;
}

/* Implicit TLS: the client's hello arrived (paused); start the upstream's handshake. */
void
tlsi_client_hello(struct smtp_engine *e)
{
	e->flags |= EF_HELLO_SEEN;
	if (!(e->flags & EF_UP_DEAD) && e->sio && io_ssl(e->sio) == NULL)
		tlsi_upstream_begin(e, e->sni);
}

/* The client's handshake completed: SMTP goes on inside TLS. */
void
tlsi_client_ready(struct smtp_engine *e)
{
	e->flags |= EF_CLIENT_TLS;
	io_set_timeout(e->cio, 0);
	log_tls(e, e->cio, "client");
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
		tlsi_upstream_begin(e, e->sni);
}

/*
 * Implicit TLS and the destination failed before the client's handshake
 * finished: finish it with the Proxy Server certificate (never a forgery:
 * there is no real certificate to base one on) so the client can read
 * the 4xx that tells it to retry, instead of a silent close.
 */
int
tlsi_finish_for_reply(struct smtp_engine *e)
{
	SSL *ssl = io_ssl(e->cio);

	if (ssl == NULL || !io_hs_paused(e->cio))
		return 0;
	if (SSL_get_certificate(ssl) == NULL &&
	    (SSL_use_certificate(ssl, tls_global->server_cert) != 1 ||
	    SSL_use_PrivateKey(ssl, tls_global->server_key) != 1))
		return -1;
	io_tls_resume(e->cio);
	return 0;
}

void
tlsi_init(void)
{
	for (int i = 0; tls_global && i < CONF_MAX_PROFILES; i++) {
		if (tls_global->server_ctx[i])
			SSL_CTX_set_client_hello_cb(tls_global->server_ctx[i], hello_cb, NULL);
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
