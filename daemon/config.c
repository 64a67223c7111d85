/*
 * config - parse and validate smtpgw.conf (format in config.h).
 *
 * The parser never trusts the input: it is also fed by a fuzzer.  Every
 * copy is bounded, every number range-checked, and the first problem stops
 * the parse with "file:line: message".
 *
 * Why one file of this size: one ini grammar with every section's keys
 * and the policy model's validation rules, so that every error names
 * file and line the same way; the proxy actions' ruleset keys are in
 * action_rules.c.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "mark.h"
#include "util.h"

enum section {
	SEC_NONE,
	SEC_GLOBAL,
	SEC_ZONE,
	SEC_POLICY,
	SEC_ACTION,
	SEC_PROFILE,
};

#define PREDEFINED_PROFILE "TLS-SMTP.Standard"
#define PREDEFINED_INCOMING "SMTP-Incoming.Standard"
static const char *const predefined_actions[] = {
	PREDEFINED_INCOMING,
	"SMTP-Outgoing.Standard",
};

const char *const certfail_class_keys[CF_COUNT] = {
	[CF_EXPIRED] = "on-expired",
	[CF_NOT_YET_VALID] = "on-not-yet-valid",
	[CF_UNTRUSTED_ISSUER] = "on-untrusted-issuer",
	[CF_NAME_MISMATCH] = "on-name-mismatch",
	[CF_REVOKED] = "on-revoked",
	[CF_INVALID] = "on-invalid",
};

#define SEEN_KEYS_MAX 128

struct parser {
	struct config *c;
	const char *name;
	int line;
	enum section sec;
	char *err;
	size_t errlen;
	bool zone_external_set[CONF_MAX_ZONES];
	bool seen_action; /* [global] must come before actions */
	bool tls_dir_set;
	bool warned_clamd, warned_rspamd; /* scan_warnings(): once per engine */
	/*
	 * The single-valued keys set so far in the current section ([global]
	 * keeps its own: it may come back), for the warning about a key set
	 * twice.  Bounded: a section has fewer distinct keys than this.
	 */
	struct seen_key {
		char key[48];
		int line;
	} seen[2][SEEN_KEYS_MAX];
	int n_seen[2]; /* [0] the current section, [1] [global] */
};

static int PRINTF_LIKE(3, 4)
perr(struct parser *p, int line, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(p->err, p->errlen, "%s:%d: %s", p->name, line, msg);
	else
		snprintf(p->err, p->errlen, "%s: %s", p->name, msg);
	return -1;
}

static void PRINTF_LIKE(3, 4)
pwarn(struct parser *p, int line, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	if (p->c->n_warnings >= CONF_MAX_WARNINGS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->c->warnings[p->c->n_warnings++], sizeof(p->c->warnings[0]),
	    "%s:%d: warning: %s", p->name, line, msg);
}

/*
 * A key that may be given once per section, given again: the last one
 * applies (as it always has), and a warning says so -- two lines that
 * disagree are a mistake an admin should see.  Lists (a zone's
 * interfaces, rules, rewrites) are meant to repeat.
 */
static void
note_key(struct parser *p, const char *k)
{
	size_t kl = strlen(k);
	int w = p->sec == SEC_GLOBAL ? 1 : 0;

	if ((p->sec == SEC_ZONE && !strcmp(k, "interfaces")) ||
	    (p->sec == SEC_ACTION && ((kl > 5 && !strcmp(k + kl - 5, "-rule")) ||
	    (kl > 8 && !strcmp(k + kl - 8, "-rewrite")))))
		return;
	for (int i = 0; i < p->n_seen[w]; i++) {
		if (strcmp(p->seen[w][i].key, k) != 0)
			continue;
		pwarn(p, p->line, "%.48s is set again (first at line %d): the last one applies", k,
		    p->seen[w][i].line);
		p->seen[w][i].line = p->line;
		return;
	}
	if (p->n_seen[w] < SEEN_KEYS_MAX && kl < sizeof(p->seen[w][0].key)) {
		snprintf(p->seen[w][p->n_seen[w]].key, sizeof(p->seen[w][0].key), "%s", k);
		p->seen[w][p->n_seen[w]++].line = p->line;
	}
}

void
config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->listen_port = 10025;
	c->queue = 0;
	c->workers = 0; /* one per online CPU */
	snprintf(c->user, sizeof(c->user), "nobody");
	snprintf(c->signer_user, sizeof(c->signer_user), "%s", CONF_DEFAULT_SIGNER_USER);
	snprintf(c->classifier_user, sizeof(c->classifier_user), "%s",
	    CONF_DEFAULT_CLASSIFIER_USER);
	c->signer_rate_limit = CONF_DEFAULT_SIGNER_RATE;
	c->worker_uid_base = CONF_DEFAULT_WORKER_UID_BASE;
	c->spoof_source = true;
	c->connect_timeout = 30;
	c->max_sessions = 2000;
	c->max_sessions_per_client = 100;
	c->log = LOG_TO_STDERR;
	c->smtp.max_message_size = 50ull * 1024 * 1024;
	c->smtp.max_recipients = 1000;
	c->smtp.max_line_length = 998;
	c->smtp.bare_newline_normalize = false;
	c->smtp.allow_vrfy = false;
	c->smtp.allow_expn = false;
	c->smtp.allow_auth = true;
	c->smtp.allow_chunking = true;
	c->smtp.t_client_command = 300;
	c->smtp.t_client_data = 180;
	c->smtp.t_server_greeting = 300;
	c->smtp.t_server_command = 300;
	c->smtp.t_server_data_init = 120;
	c->smtp.t_server_data_block = 180;
	c->smtp.t_server_data_end = 600;
	/*
	 * A verdict within 2 minutes: well inside the 10 minutes a client
	 * waits for its end-of-data reply (RFC 5321 4.5.3.2.6) and the 5 a
	 * destination waits for more data.
	 */
	c->smtp.t_inspect = 120;
	c->smtp.on_inspect_timeout = INSPECT_TIMEOUT_TEMPFAIL;
	c->smtp.hold = HOLD_WHEN_NEEDED;
	c->smtp.hold_memory = 256 * 1024;
	c->smtp.dkim_protect = DKIM_PROTECT_DENY;
	snprintf(c->spool_dir, sizeof(c->spool_dir), "/var/spool/smtpgw");
	/* the appliance's data partition is mounted on /var/lib/smtpgw */
	snprintf(c->quarantine_dir, sizeof(c->quarantine_dir), "/var/lib/smtpgw/quarantine");
	c->quarantine_max_size = 1024ull * 1024 * 1024;
	c->quarantine_max_age = 30 * 86400;
	snprintf(c->tls_dir, sizeof(c->tls_dir), "/etc/smtpgw/tls");
	snprintf(c->trust_store, sizeof(c->trust_store), "/etc/ssl/certs/ca-certificates.crt");
	c->cert_cache_size = 1000;
	/* WatchGuard's default for auto-blocked sites: 20 minutes */
	c->blocked_timeout = 1200;
	c->blocked_max = 10000;
	c->blocked_rate = 20;

	/*
	 * Scanners: none until configured.  clamd-max-size is clamd's own
	 * default StreamMaxLength (25 MiB), rspamd-max-size rspamd's default
	 * max_message (50 MiB): a larger message would only earn an error
	 * from the scanner, so it is "too large" here without being sent.
	 * Idle clamd connections are kept 10 s, well below clamd's default
	 * IdleTimeout (30 s), so clamd rarely closes one under us.
	 */
	c->clamd.timeout = 30;
	c->clamd.connections = 8;
	c->clamd.queue = 256;
	c->clamd.max_size = 25ull * 1024 * 1024;
	c->clamd.idle_timeout = 10;
	c->rspamd.timeout = 30;
	c->rspamd.connections = 8;
	c->rspamd.queue = 256;
	c->rspamd.max_size = 50ull * 1024 * 1024;
	c->rspamd.idle_timeout = 0; /* rspamd closes after every reply */

	/*
	 * The predefined TLS profile: TLS 1.2+, forward secrecy only, upstream
	 * certificates validated, and failures signed by the untrusted CA so
	 * opportunistic port-25 mail keeps flowing without ever claiming a
	 * validation that did not happen.
	 */
	struct conf_tls_profile *tp = &c->profiles[c->n_profiles++];
	snprintf(tp->name, sizeof(tp->name), "%s", PREDEFINED_PROFILE);
	tp->predefined = true;
	tp->min_version = 12;
	snprintf(tp->ciphers, sizeof(tp->ciphers), "%s",
	    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:DHE+AES:"
	    "!aNULL:!eNULL:!EXPORT:!DES:!RC4:!3DES:!MD5:!PSK:!SRP:!DSS:!CAMELLIA:!ARIA");
	snprintf(tp->ciphersuites, sizeof(tp->ciphersuites), "%s",
	    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256");
	tp->ocsp = true;
	for (int i = 0; i < CF_COUNT; i++)
		tp->on_fail[i] = CERTFAIL_UNTRUSTED_SIGN;

	for (size_t i = 0; i < ARRAY_SIZE(predefined_actions); i++) {
		struct conf_action *a = &c->actions[c->n_actions++];
		snprintf(a->name, sizeof(a->name), "%s", predefined_actions[i]);
		a->predefined = true;
		a->tls_action = TLS_ACTION_INSPECT;
		snprintf(a->profile_name, sizeof(a->profile_name), "%s", PREDEFINED_PROFILE);
		a->profile = 0;
		a->sender_enc = ENC_PREFERRED;
		a->recipient_enc = ENC_PREFERRED;
		a->allow_cleartext_relay = false;
		a->smtp = c->smtp;
	}
}

const char *
tls_action_name(enum tls_action a)
{
	switch (a) {
	case TLS_ACTION_INSPECT: return "inspect";
	case TLS_ACTION_ALLOW: return "allow";
	case TLS_ACTION_DROP: return "drop";
	}
	return "invalid";
}

const char *
encryption_name(enum tls_encryption e)
{
	switch (e) {
	case ENC_NONE: return "none";
	case ENC_PREFERRED: return "preferred";
	case ENC_REQUIRED: return "required";
	}
	return "invalid";
}

const char *
certfail_action_name(enum certfail_action a)
{
	switch (a) {
	case CERTFAIL_ALLOW: return "allow";
	case CERTFAIL_UNTRUSTED_SIGN: return "untrusted-sign";
	case CERTFAIL_BLOCK: return "block";
	}
	return "invalid";
}

const char *
noref_rule_name(const struct conf_tls_profile *p, char *buf, size_t len)
{
	switch (p->no_ref) {
	case NOREF_CHAIN_ONLY: snprintf(buf, len, "chain-only"); break;
	case NOREF_UNTRUSTED_SIGN: snprintf(buf, len, "untrusted-sign"); break;
	case NOREF_BLOCK: snprintf(buf, len, "block"); break;
	case NOREF_NAME: snprintf(buf, len, "name:%s", p->no_ref_name); break;
	}
	return buf;
}

bool
config_valid_hostname(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > CONF_HOSTNAME_MAX || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '.') {
			/* no empty label, none ending in '-' */
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!isalnum(ch) && !(ch == '-' && label > 0))
			return false;
		if (++label > 63)
			return false;
	}
	return s[n - 1] != '-';
}

int
config_action_index(const struct config *c, const char *name)
{
	for (int i = 0; i < c->n_actions; i++)
		if (!strcmp(c->actions[i].name, name))
			return i;
	return -1;
}

int
config_profile_index(const struct config *c, const char *name)
{
	for (int i = 0; i < c->n_profiles; i++)
		if (!strcmp(c->profiles[i].name, name))
			return i;
	return -1;
}

const struct conf_action *
config_action_of(const struct config *c, int policy)
{
	if (policy < 0 || policy >= c->n_policies || c->policies[policy].action_index < 0)
		return NULL;
	return &c->actions[c->policies[policy].action_index];
}

const struct smtp_limits *
config_limits(const struct config *c, int policy)
{
	const struct conf_action *a = config_action_of(c, policy);

	return a ? &a->smtp : &c->smtp;
}

const struct action_rules *
config_rules(const struct conf_action *a)
{
	static struct action_rules *none;

	if (a->rules)
		return a->rules;
	if (a->predefined)
		return arules_predefined(!strcmp(a->name, PREDEFINED_INCOMING));
	/* no settings at all: nothing matched, everything allowed (built once) */
	if (none == NULL) {
		none = arules_new();
		arules_resolve(none, NULL);
	}
	return none;
}

void
config_free(struct config *c)
{
	for (int i = 0; i < c->n_actions; i++) {
		arules_free(c->actions[i].rules);
		c->actions[i].rules = NULL;
	}
}

const char *
tls_support_name(enum tls_support t)
{
	switch (t) {
	case TLS_SUPPORT_DISABLED: return "disabled";
	case TLS_SUPPORT_ENABLED: return "enabled";
	case TLS_SUPPORT_REQUIRED: return "required";
	}
	return "invalid";
}

/* Names: letters, digits and "._-", starting with a letter or digit. */
static bool
valid_name(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n >= max || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-')
			return false;
	}
	return true;
}

static bool
valid_ifname(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= IFNAMSIZ || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= ' ' || ch >= 0x7f || ch == '/' || ch == ':')
			return false;
	}
	return true;
}

static int
parse_uint(struct parser *p, const char *key, const char *v, unsigned long min,
    unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long n;

	if (!isdigit((unsigned char)v[0]))
		return perr(p, p->line, "%s: \"%s\" is not a number", key, v);
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end != '\0')
		return perr(p, p->line, "%s: \"%s\" is not a number", key, v);
	if (n < min || n > max)
		return perr(p, p->line, "%s: %lu is out of range (%lu..%lu)", key, n, min, max);
	*out = n;
	return 0;
}

static int
parse_bool(struct parser *p, const char *key, const char *v, bool *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off")) {
		*out = false;
		return 0;
	}
	return perr(p, p->line, "%s: expected yes or no, got \"%s\"", key, v);
}

/*
 * Split a value into whitespace-separated words in place.  Returns the
 * count, or -1 if there are more than max.
 */
static int
split_words(char *v, char **words, int max)
{
	int n = 0;

	while (*v) {
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v == '\0')
			break;
		if (n == max)
			return -1;
		words[n++] = v;
		while (*v && *v != ' ' && *v != '\t')
			v++;
		if (*v)
			*v++ = '\0';
	}
	return n;
}

static const struct {
	const char *key;
	size_t off;
} smtp_timeouts[] = {
	{ "timeout-client-command", offsetof(struct smtp_limits, t_client_command) },
	{ "timeout-client-data", offsetof(struct smtp_limits, t_client_data) },
	{ "timeout-server-greeting", offsetof(struct smtp_limits, t_server_greeting) },
	{ "timeout-server-command", offsetof(struct smtp_limits, t_server_command) },
	{ "timeout-server-data-init", offsetof(struct smtp_limits, t_server_data_init) },
	{ "timeout-server-data-block", offsetof(struct smtp_limits, t_server_data_block) },
	{ "timeout-server-data-end", offsetof(struct smtp_limits, t_server_data_end) },
	{ "inspect-timeout", offsetof(struct smtp_limits, t_inspect) },
};

static const struct {
	const char *key;
	size_t off;
} smtp_bools[] = {
	{ "allow-vrfy", offsetof(struct smtp_limits, allow_vrfy) },
	{ "allow-expn", offsetof(struct smtp_limits, allow_expn) },
	{ "allow-auth", offsetof(struct smtp_limits, allow_auth) },
	{ "allow-chunking", offsetof(struct smtp_limits, allow_chunking) },
};

/* SMTP limits: [global] today; proxy actions will carry their own. */
static int
smtp_kv(struct parser *p, struct smtp_limits *l, const char *k, char *v, bool *handled)
{
	unsigned long n;

	*handled = true;
	for (size_t i = 0; i < ARRAY_SIZE(smtp_timeouts); i++) {
		if (strcmp(k, smtp_timeouts[i].key) != 0)
			continue;
		if (parse_uint(p, k, v, 1, 3600, &n) < 0)
			return -1;
		*(unsigned *)(void *)((char *)l + smtp_timeouts[i].off) = (unsigned)n;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(smtp_bools); i++)
		if (!strcmp(k, smtp_bools[i].key))
			return parse_bool(p, k, v, (bool *)(void *)((char *)l + smtp_bools[i].off));
	if (!strcmp(k, "max-message-size")) {
		/* 1 KiB .. 2 GiB: SIZE is advertised with this value */
		if (parse_uint(p, k, v, 1024, 2147483647ul, &n) < 0)
			return -1;
		l->max_message_size = n;
	} else if (!strcmp(k, "max-recipients")) {
		if (parse_uint(p, k, v, 1, 100000, &n) < 0)
			return -1;
		l->max_recipients = (unsigned)n;
	} else if (!strcmp(k, "max-line-length")) {
		/* RFC 5321 allows 998; longer only where the admin says so */
		if (parse_uint(p, k, v, 78, 65536, &n) < 0)
			return -1;
		l->max_line_length = (unsigned)n;
	} else if (!strcmp(k, "bare-newline")) {
		if (!strcmp(v, "reject"))
			l->bare_newline_normalize = false;
		else if (!strcmp(v, "normalize"))
			l->bare_newline_normalize = true;
		else
			return perr(p, p->line, "bare-newline: expected reject or normalize, got \"%s\"", v);
	} else if (!strcmp(k, "inspect-timeout-action")) {
		if (!strcmp(v, "tempfail"))
			l->on_inspect_timeout = INSPECT_TIMEOUT_TEMPFAIL;
		else if (!strcmp(v, "deny"))
			l->on_inspect_timeout = INSPECT_TIMEOUT_DENY;
		else if (!strcmp(v, "allow"))
			l->on_inspect_timeout = INSPECT_TIMEOUT_ALLOW;
		else
			return perr(p, p->line,
			    "inspect-timeout-action: expected tempfail, deny or allow, got \"%s\"", v);
	} else if (!strcmp(k, "hold")) {
		if (!strcmp(v, "when-needed"))
			l->hold = HOLD_WHEN_NEEDED;
		else if (!strcmp(v, "always"))
			l->hold = HOLD_ALWAYS;
		else
			return perr(p, p->line, "hold: expected when-needed or always, got \"%s\"", v);
	} else if (!strcmp(k, "hold-memory")) {
		/* 4 KiB .. 1 GiB per held message; the rest goes to spool-dir */
		if (parse_uint(p, k, v, 4096, 1073741824ul, &n) < 0)
			return -1;
		l->hold_memory = n;
	} else if (!strcmp(k, "dkim-protect")) {
		if (!strcmp(v, "deny"))
			l->dkim_protect = DKIM_PROTECT_DENY;
		else if (!strcmp(v, "change-anyway"))
			l->dkim_protect = DKIM_PROTECT_CHANGE;
		else
			return perr(p, p->line, "dkim-protect: expected deny or change-anyway, got \"%s\"",
			    v);
	} else {
		*handled = false;
	}
	return 0;
}

/* blocked-sites-exceptions: prefixes, or "none". */
static int
exception_list(struct parser *p, const char *k, char *v)
{
	struct config *c = p->c;
	char *w[CONF_MAX_BLOCK_EXCEPTIONS];
	int n = split_words(v, w, CONF_MAX_BLOCK_EXCEPTIONS);

	if (n < 0)
		return perr(p, p->line, "%s: more than %d prefixes", k, CONF_MAX_BLOCK_EXCEPTIONS);
	c->n_blocked_exceptions = 0;
	if (n == 1 && !strcmp(w[0], "none"))
		return 0;
	for (int i = 0; i < n; i++)
		if (prefix_parse(w[i], &c->blocked_exceptions[i]) < 0)
			return perr(p, p->line,
			    "%s: \"%s\" is not an address or prefix (host bits must be zero), "
			    "or \"none\"", k, w[i]);
	c->n_blocked_exceptions = n;
	return 0;
}

int
config_scan_server_parse(const char *s, struct conf_scan_server *out, char *why, size_t whylen)
{
	size_t len = strlen(s);

	memset(out, 0, sizeof(*out));
	if (len >= sizeof(out->text)) {
		snprintf(why, whylen, "address too long");
		return -1;
	}
	memcpy(out->text, s, len + 1);
	if (!strncmp(s, "unix:", 5)) {
		const char *path = s + 5;

		if (path[0] != '/') {
			snprintf(why, whylen, "unix: needs an absolute path");
			return -1;
		}
		if (strlen(path) >= sizeof(out->addr.un.sun_path)) {
			snprintf(why, whylen, "socket path longer than %zu bytes",
			    sizeof(out->addr.un.sun_path) - 1);
			return -1;
		}
		out->addr.un.sun_family = AF_UNIX;
		memcpy(out->addr.un.sun_path, path, strlen(path) + 1);
		out->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
		return 0;
	}
	if (!strncmp(s, "tcp:", 4)) {
		char host[INET6_ADDRSTRLEN + 1];
		const char *h = s + 4, *port;
		size_t hlen;
		unsigned long n;
		char *end;

		if (h[0] == '[') {
			const char *close = strchr(h, ']');

			if (close == NULL || close[1] != ':') {
				snprintf(why, whylen, "expected tcp:[IPv6]:PORT");
				return -1;
			}
			hlen = (size_t)(close - h - 1);
			h++;
			port = close + 2;
		} else {
			const char *colon = strrchr(h, ':');

			if (colon == NULL) {
				snprintf(why, whylen, "expected tcp:ADDRESS:PORT");
				return -1;
			}
			hlen = (size_t)(colon - h);
			port = colon + 1;
		}
		if (hlen == 0 || hlen >= sizeof(host)) {
			snprintf(why, whylen, "not an IP address");
			return -1;
		}
		memcpy(host, h, hlen);
		host[hlen] = '\0';
		errno = 0;
		n = isdigit((unsigned char)port[0]) ? strtoul(port, &end, 10) : 0;
		if (errno || n == 0 || n > 65535 || *end != '\0') {
			snprintf(why, whylen, "port must be 1..65535");
			return -1;
		}
		if (s[4] != '[' && inet_pton(AF_INET, host, &out->addr.sin.sin_addr) == 1) {
			out->addr.sin.sin_family = AF_INET;
			out->addr.sin.sin_port = htons((uint16_t)n);
			out->addrlen = sizeof(out->addr.sin);
			return 0;
		}
		if (s[4] == '[' && inet_pton(AF_INET6, host, &out->addr.sin6.sin6_addr) == 1) {
			out->addr.sin6.sin6_family = AF_INET6;
			out->addr.sin6.sin6_port = htons((uint16_t)n);
			out->addrlen = sizeof(out->addr.sin6);
			return 0;
		}
		snprintf(why, whylen, "\"%s\" is not an IP address (names are never resolved; "
		    "IPv6 in brackets)", host);
		return -1;
	}
	snprintf(why, whylen, "expected unix:/PATH or tcp:ADDRESS:PORT");
	return -1;
}

/* clamd-* and rspamd-* keys of [global]; *handled is false for others. */
static int
scanner_kv(struct parser *p, const char *k, char *v, bool *handled)
{
	struct conf_scanners *sc;
	unsigned long n;
	const char *item;

	*handled = true;
	if (!strncmp(k, "clamd-", 6)) {
		sc = &p->c->clamd;
		item = k + 6;
	} else if (!strncmp(k, "rspamd-", 7)) {
		sc = &p->c->rspamd;
		item = k + 7;
	} else {
		*handled = false;
		return 0;
	}
	if (!strcmp(item, "servers")) {
		char *w[CONF_MAX_SCAN_SERVERS];
		int nw = split_words(v, w, CONF_MAX_SCAN_SERVERS);
		char why[160];

		if (nw < 0)
			return perr(p, p->line, "%s: more than %d servers", k, CONF_MAX_SCAN_SERVERS);
		sc->n_servers = 0;
		if (nw == 1 && !strcmp(w[0], "none"))
			return 0;
		for (int i = 0; i < nw; i++) {
			if (config_scan_server_parse(w[i], &sc->servers[i], why, sizeof(why)) < 0)
				return perr(p, p->line, "%s: \"%s\": %s", k, w[i], why);
			for (int j = 0; j < i; j++)
				if (!strcmp(sc->servers[j].text, w[i]))
					return perr(p, p->line, "%s: \"%s\" listed twice", k, w[i]);
		}
		sc->n_servers = nw;
	} else if (!strcmp(item, "timeout")) {
		if (parse_uint(p, k, v, 1, 3600, &n) < 0)
			return -1;
		sc->timeout = (unsigned)n;
	} else if (!strcmp(item, "connections")) {
		if (parse_uint(p, k, v, 1, 1024, &n) < 0)
			return -1;
		sc->connections = (unsigned)n;
	} else if (!strcmp(item, "queue")) {
		if (parse_uint(p, k, v, 0, 100000, &n) < 0)
			return -1;
		sc->queue = (unsigned)n;
	} else if (!strcmp(item, "max-size")) {
		/* 1 KiB .. 4 GiB - 1: clamd's INSTREAM lengths are 32-bit */
		if (parse_uint(p, k, v, 1024, 4294967295ul, &n) < 0)
			return -1;
		sc->max_size = n;
	} else if (!strcmp(item, "idle-timeout") && sc == &p->c->clamd) {
		if (parse_uint(p, k, v, 0, 3600, &n) < 0)
			return -1;
		sc->idle_timeout = (unsigned)n;
	} else {
		*handled = false;
	}
	return 0;
}

static int
global_kv(struct parser *p, const char *k, char *v)
{
	struct config *c = p->c;
	unsigned long n;
	bool handled;

	if (smtp_kv(p, &c->smtp, k, v, &handled) < 0)
		return -1;
	if (handled)
		return 0;
	if (scanner_kv(p, k, v, &handled) < 0)
		return -1;
	if (handled)
		return 0;

	if (!strcmp(k, "listen-port")) {
		if (parse_uint(p, k, v, 1, 65535, &n) < 0)
			return -1;
		c->listen_port = (uint16_t)n;
	} else if (!strcmp(k, "queue")) {
		if (parse_uint(p, k, v, 0, 65535, &n) < 0)
			return -1;
		c->queue = (unsigned)n;
	} else if (!strcmp(k, "workers")) {
		if (parse_uint(p, k, v, 0, 64, &n) < 0)
			return -1;
		c->workers = (unsigned)n;
	} else if (!strcmp(k, "user") || !strcmp(k, "signer-user") ||
	    !strcmp(k, "classifier-user")) {
		char *dst = !strcmp(k, "user") ? c->user
		    : !strcmp(k, "signer-user") ? c->signer_user : c->classifier_user;
		/* system users may start with '_' (_smtpgw) */
		if (!valid_name(v[0] == '_' ? v + 1 : v, CONF_NAME_MAX - 1))
			return perr(p, p->line, "%s: \"%s\" is not a valid user name", k, v);
		snprintf(dst, CONF_NAME_MAX, "%s", v);
		if (dst == c->signer_user)
			c->signer_user_set = true;
		else if (dst == c->classifier_user)
			c->classifier_user_set = true;
	} else if (!strcmp(k, "worker-uid-base")) {
		if (parse_uint(p, k, v, 0, 4000000000ul, &n) < 0)
			return -1;
		if (n != 0 && n < 1000)
			return perr(p, p->line, "%s: %lu is a system account's range (0 to turn "
			    "separate worker uids off, or 1000 and above)", k, n);
		c->worker_uid_base = (unsigned)n;
	} else if (!strcmp(k, "signer-rate-limit")) {
		if (parse_uint(p, k, v, 0, 1000000, &n) < 0)
			return -1;
		c->signer_rate_limit = (unsigned)n;
	} else if (!strcmp(k, "spoof-source")) {
		return parse_bool(p, k, v, &c->spoof_source);
	} else if (!strcmp(k, "connect-timeout")) {
		if (parse_uint(p, k, v, 1, 600, &n) < 0)
			return -1;
		c->connect_timeout = (unsigned)n;
	} else if (!strcmp(k, "max-sessions")) {
		if (parse_uint(p, k, v, 1, 1000000, &n) < 0)
			return -1;
		c->max_sessions = (unsigned)n;
	} else if (!strcmp(k, "max-sessions-per-client")) {
		if (parse_uint(p, k, v, 1, 1000000, &n) < 0)
			return -1;
		c->max_sessions_per_client = (unsigned)n;
	} else if (!strcmp(k, "tls-dir") || !strcmp(k, "trust-store")) {
		char *dst = !strcmp(k, "tls-dir") ? c->tls_dir : c->trust_store;
		if (dst == c->tls_dir)
			p->tls_dir_set = true;
		if (v[0] != '/' || strlen(v) >= CONF_PATH_MAX)
			return perr(p, p->line, "%s: expected an absolute path", k);
		snprintf(dst, CONF_PATH_MAX, "%s", v);
	} else if (!strcmp(k, "spool-dir")) {
		if (v[0] != '/' || strlen(v) >= CONF_PATH_MAX)
			return perr(p, p->line, "%s: expected an absolute path", k);
		snprintf(c->spool_dir, sizeof(c->spool_dir), "%s", v);
	} else if (!strcmp(k, "quarantine-dir")) {
		if (v[0] != '/' || strlen(v) >= CONF_PATH_MAX - 64)
			return perr(p, p->line, "%s: expected an absolute path (at most %d octets)", k,
			    CONF_PATH_MAX - 65);
		snprintf(c->quarantine_dir, sizeof(c->quarantine_dir), "%s", v);
	} else if (!strcmp(k, "quarantine-max-size")) {
		/* 1 MiB .. 1 TiB */
		if (parse_uint(p, k, v, 1048576ul, 1099511627776ull, &n) < 0)
			return -1;
		c->quarantine_max_size = n;
	} else if (!strcmp(k, "quarantine-max-age")) {
		/* an hour .. ten years */
		if (parse_uint(p, k, v, 3600, 315360000ul, &n) < 0)
			return -1;
		c->quarantine_max_age = (unsigned)n;
	} else if (!strcmp(k, "cert-cache-size")) {
		if (parse_uint(p, k, v, 1, 100000, &n) < 0)
			return -1;
		c->cert_cache_size = (unsigned)n;
	} else if (!strcmp(k, "blocked-sites-timeout")) {
		if (parse_uint(p, k, v, 1, CONF_BLOCKED_TIMEOUT_MAX, &n) < 0)
			return -1;
		c->blocked_timeout = (unsigned)n;
	} else if (!strcmp(k, "blocked-sites-max")) {
		if (parse_uint(p, k, v, 1, 1000000, &n) < 0)
			return -1;
		c->blocked_max = (unsigned)n;
	} else if (!strcmp(k, "blocked-sites-rate")) {
		if (parse_uint(p, k, v, 1, 10000, &n) < 0)
			return -1;
		c->blocked_rate = (unsigned)n;
	} else if (!strcmp(k, "blocked-sites-exceptions")) {
		return exception_list(p, k, v);
	} else if (!strcmp(k, "log")) {
		if (!strcmp(v, "stderr"))
			c->log = LOG_TO_STDERR;
		else if (!strcmp(v, "syslog"))
			c->log = LOG_TO_SYSLOG;
		else
			return perr(p, p->line, "log: expected stderr or syslog, got \"%s\"", v);
	} else {
		return perr(p, p->line, "unknown key \"%s\" in [global]", k);
	}
	return 0;
}

static int
zone_kv(struct parser *p, const char *k, char *v)
{
	struct conf_zone *z = &p->c->zones[p->c->n_zones - 1];

	if (!strcmp(k, "interfaces")) {
		char *w[CONF_MAX_IFACES];
		int n = split_words(v, w, CONF_MAX_IFACES);

		if (n < 0)
			return perr(p, p->line, "interfaces: more than %d interfaces in one zone",
			    CONF_MAX_IFACES);
		for (int i = 0; i < n; i++) {
			if (!valid_ifname(w[i]))
				return perr(p, p->line, "interfaces: \"%s\" is not a valid interface name",
				    w[i]);
			if (z->n_ifaces == CONF_MAX_IFACES)
				return perr(p, p->line, "interfaces: more than %d interfaces in one zone",
				    CONF_MAX_IFACES);
			snprintf(z->ifaces[z->n_ifaces++], IFNAMSIZ, "%s", w[i]);
		}
	} else if (!strcmp(k, "external")) {
		p->zone_external_set[p->c->n_zones - 1] = true;
		return parse_bool(p, k, v, &z->external);
	} else {
		return perr(p, p->line, "unknown key \"%s\" in [zone %s]", k, z->name);
	}
	return 0;
}

static int
zone_list(struct parser *p, const char *k, char *v, char names[][CONF_NAME_MAX], int *count)
{
	char *w[CONF_MAX_ZONEREFS];
	int n = split_words(v, w, CONF_MAX_ZONEREFS);

	if (n < 0)
		return perr(p, p->line, "%s: more than %d zones", k, CONF_MAX_ZONEREFS);
	if (n == 0)
		return perr(p, p->line, "%s: empty (name zones, or \"any\")", k);
	*count = 0;
	if (n == 1 && !strcmp(w[0], "any"))
		return 0;
	for (int i = 0; i < n; i++) {
		if (!valid_name(w[i], CONF_NAME_MAX))
			return perr(p, p->line, "%s: \"%s\" is not a valid zone name", k, w[i]);
		snprintf(names[i], CONF_NAME_MAX, "%s", w[i]);
	}
	*count = n;
	return 0;
}

static int
prefix_list(struct parser *p, const char *k, char *v, struct prefix *out, int *count)
{
	char *w[CONF_MAX_PREFIXES];
	int n = split_words(v, w, CONF_MAX_PREFIXES);

	if (n < 0)
		return perr(p, p->line, "%s: more than %d prefixes", k, CONF_MAX_PREFIXES);
	if (n == 0)
		return perr(p, p->line, "%s: empty (name prefixes, or \"any\")", k);
	*count = 0;
	if (n == 1 && !strcmp(w[0], "any"))
		return 0;
	for (int i = 0; i < n; i++)
		if (prefix_parse(w[i], &out[i]) < 0)
			return perr(p, p->line,
			    "%s: \"%s\" is not an address or prefix (host bits must be zero)", k, w[i]);
	*count = n;
	return 0;
}

static int
policy_kv(struct parser *p, const char *k, char *v)
{
	struct conf_policy *pol = &p->c->policies[p->c->n_policies - 1];

	if (!strcmp(k, "from"))
		return zone_list(p, k, v, pol->from_names, &pol->n_from);
	if (!strcmp(k, "to"))
		return zone_list(p, k, v, pol->to_names, &pol->n_to);
	if (!strcmp(k, "src"))
		return prefix_list(p, k, v, pol->src, &pol->n_src);
	if (!strcmp(k, "dst"))
		return prefix_list(p, k, v, pol->dst, &pol->n_dst);
	if (!strcmp(k, "enabled"))
		return parse_bool(p, k, v, &pol->enabled);
	if (!strcmp(k, "action")) {
		if (!valid_name(v, sizeof(pol->action)))
			return perr(p, p->line, "action: \"%s\" is not a valid proxy action name", v);
		snprintf(pol->action, sizeof(pol->action), "%s", v);
		return 0;
	}
	if (!strcmp(k, "tls-support")) {
		if (!strcmp(v, "disabled"))
			pol->tls_support = TLS_SUPPORT_DISABLED;
		else if (!strcmp(v, "enabled"))
			pol->tls_support = TLS_SUPPORT_ENABLED;
		else if (!strcmp(v, "required"))
			pol->tls_support = TLS_SUPPORT_REQUIRED;
		else
			return perr(p, p->line,
			    "tls-support: expected disabled, enabled or required, got \"%s\"", v);
		return 0;
	}
	if (!strcmp(k, "type")) {
		if (!strcmp(v, "proxy"))
			pol->type = POLICY_PROXY;
		else if (!strcmp(v, "packet-filter"))
			pol->type = POLICY_PACKET_FILTER;
		else
			return perr(p, p->line, "type: expected proxy or packet-filter, got \"%s\"", v);
		return 0;
	}
	return perr(p, p->line, "unknown key \"%s\" in [policy %s]", k, pol->name);
}

static int
parse_encryption(struct parser *p, const char *k, const char *v, enum tls_encryption *out)
{
	if (!strcmp(v, "none"))
		*out = ENC_NONE;
	else if (!strcmp(v, "preferred"))
		*out = ENC_PREFERRED;
	else if (!strcmp(v, "required"))
		*out = ENC_REQUIRED;
	else
		return perr(p, p->line, "%s: expected required, preferred or none, got \"%s\"", k, v);
	return 0;
}

static int
action_kv(struct parser *p, const char *k, char *v)
{
	struct conf_action *a = &p->c->actions[p->c->n_actions - 1];
	bool handled;

	if (smtp_kv(p, &a->smtp, k, v, &handled) < 0)
		return -1;
	if (handled)
		return 0;
	if (!strcmp(k, "tls-action")) {
		if (!strcmp(v, "inspect"))
			a->tls_action = TLS_ACTION_INSPECT;
		else if (!strcmp(v, "allow"))
			a->tls_action = TLS_ACTION_ALLOW;
		else if (!strcmp(v, "drop"))
			a->tls_action = TLS_ACTION_DROP;
		else
			return perr(p, p->line, "tls-action: expected inspect, allow or drop, got \"%s\"", v);
		return 0;
	}
	if (!strcmp(k, "tls-profile")) {
		if (!valid_name(v, sizeof(a->profile_name)))
			return perr(p, p->line, "tls-profile: \"%s\" is not a valid profile name", v);
		snprintf(a->profile_name, sizeof(a->profile_name), "%s", v);
		return 0;
	}
	if (!strcmp(k, "sender-encryption"))
		return parse_encryption(p, k, v, &a->sender_enc);
	if (!strcmp(k, "recipient-encryption"))
		return parse_encryption(p, k, v, &a->recipient_enc);
	if (!strcmp(k, "allow-cleartext-relay"))
		return parse_bool(p, k, v, &a->allow_cleartext_relay);
	/* The content-inspection settings (rulesets and the rest). */
	char err[400];
	bool fresh = a->rules == NULL;
	if (fresh)
		a->rules = arules_new();
	int rc = arules_kv(a->rules, k, v, (unsigned)p->line, err, sizeof(err));
	if (rc > 0)
		return 0;
	if (fresh) {
		arules_free(a->rules);
		a->rules = NULL;
	}
	if (rc < 0)
		return perr(p, p->line, "[action %s] %s", a->name, err);
	return perr(p, p->line, "unknown key \"%s\" in [action %s]", k, a->name);
}

/* OpenSSL cipher-string characters only: the string itself is checked by OpenSSL at start. */
static bool
valid_cipher_string(const char *v)
{
	for (; *v; v++)
		if (!isalnum((unsigned char)*v) && !strchr(":+-!@=_.,", *v))
			return false;
	return true;
}

static int
profile_kv(struct parser *p, const char *k, char *v)
{
	struct conf_tls_profile *t = &p->c->profiles[p->c->n_profiles - 1];

	for (int i = 0; i < CF_COUNT; i++) {
		if (strcmp(k, certfail_class_keys[i]) != 0)
			continue;
		if (!strcmp(v, "allow"))
			t->on_fail[i] = CERTFAIL_ALLOW;
		else if (!strcmp(v, "untrusted-sign"))
			t->on_fail[i] = CERTFAIL_UNTRUSTED_SIGN;
		else if (!strcmp(v, "block"))
			t->on_fail[i] = CERTFAIL_BLOCK;
		else
			return perr(p, p->line, "%s: expected allow, untrusted-sign or block, got \"%s\"",
			    k, v);
		return 0;
	}
	if (!strcmp(k, "min-version")) {
		if (!strcmp(v, "1.0"))
			t->min_version = 10;
		else if (!strcmp(v, "1.1"))
			t->min_version = 11;
		else if (!strcmp(v, "1.2"))
			t->min_version = 12;
		else if (!strcmp(v, "1.3"))
			t->min_version = 13;
		else
			return perr(p, p->line, "min-version: expected 1.0, 1.1, 1.2 or 1.3, got \"%s\"", v);
		return 0;
	}
	if (!strcmp(k, "ciphers") || !strcmp(k, "ciphersuites")) {
		char *dst = !strcmp(k, "ciphers") ? t->ciphers : t->ciphersuites;
		if (!valid_cipher_string(v) || strlen(v) >= sizeof(t->ciphers))
			return perr(p, p->line, "%s: \"%s\" is not an OpenSSL cipher string", k, v);
		snprintf(dst, sizeof(t->ciphers), "%s", v);
		return 0;
	}
	if (!strcmp(k, "ca-file")) {
		if (v[0] != '/' || strlen(v) >= sizeof(t->ca_file))
			return perr(p, p->line, "ca-file: expected an absolute path");
		snprintf(t->ca_file, sizeof(t->ca_file), "%s", v);
		return 0;
	}
	if (!strcmp(k, "ocsp"))
		return parse_bool(p, k, v, &t->ocsp);
	if (!strcmp(k, "on-no-reference-name")) {
		t->no_ref_name[0] = '\0';
		if (!strcmp(v, "chain-only")) {
			t->no_ref = NOREF_CHAIN_ONLY;
		} else if (!strcmp(v, "untrusted-sign")) {
			t->no_ref = NOREF_UNTRUSTED_SIGN;
		} else if (!strcmp(v, "block")) {
			t->no_ref = NOREF_BLOCK;
		} else if (!strncmp(v, "name:", 5) && config_valid_hostname(v + 5)) {
			t->no_ref = NOREF_NAME;
			snprintf(t->no_ref_name, sizeof(t->no_ref_name), "%s", v + 5);
		} else {
			return perr(p, p->line, "on-no-reference-name: expected chain-only, "
			    "untrusted-sign, block or name:HOST, got \"%.100s\"", v);
		}
		return 0;
	}
	if (!strcmp(k, "allow-cn-fallback"))
		return parse_bool(p, k, v, &t->cn_fallback);
	return perr(p, p->line, "unknown key \"%s\" in [tls-profile %s]", k, t->name);
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int
section_line(struct parser *p, char *s)
{
	struct config *c = p->c;
	char *end = strchr(s, ']'), *kind, *name;

	if (end == NULL || trim(end + 1)[0] != '\0')
		return perr(p, p->line, "malformed section header (expected [kind name])");
	*end = '\0';
	kind = trim(s + 1);
	name = kind;
	while (*name && *name != ' ' && *name != '\t')
		name++;
	if (*name)
		*name++ = '\0';
	name = trim(name);

	if (!strcmp(kind, "global")) {
		if (*name)
			return perr(p, p->line, "[global] takes no name");
		if (p->seen_action)
			return perr(p, p->line,
			    "[global] must come before the [action] sections (they start from its limits)");
		p->sec = SEC_GLOBAL;
		return 0;
	}
	if (!strcmp(kind, "zone")) {
		if (!valid_name(name, CONF_NAME_MAX))
			return perr(p, p->line, "[zone NAME]: \"%s\" is not a valid name", name);
		if (!strcmp(name, "any"))
			return perr(p, p->line, "[zone any]: \"any\" is reserved (it means every zone)");
		if (config_zone_index(c, name) >= 0)
			return perr(p, p->line, "zone \"%s\" is defined twice", name);
		if (c->n_zones == CONF_MAX_ZONES)
			return perr(p, p->line, "more than %d zones", CONF_MAX_ZONES);
		struct conf_zone *z = &c->zones[c->n_zones++];
		memset(z, 0, sizeof(*z));
		snprintf(z->name, sizeof(z->name), "%s", name);
		z->line = p->line;
		p->sec = SEC_ZONE;
		return 0;
	}
	if (!strcmp(kind, "policy")) {
		if (!valid_name(name, CONF_NAME_MAX))
			return perr(p, p->line, "[policy NAME]: \"%s\" is not a valid name", name);
		for (int i = 0; i < c->n_policies; i++)
			if (!strcmp(c->policies[i].name, name))
				return perr(p, p->line, "policy \"%s\" is defined twice", name);
		if (c->n_policies == CONF_MAX_POLICIES)
			return perr(p, p->line, "more than %d policies", CONF_MAX_POLICIES);
		struct conf_policy *pol = &c->policies[c->n_policies++];
		memset(pol, 0, sizeof(*pol));
		snprintf(pol->name, sizeof(pol->name), "%s", name);
		pol->tls_support = TLS_SUPPORT_ENABLED;
		pol->type = POLICY_PROXY;
		pol->enabled = true;
		pol->line = p->line;
		pol->n_from = -1; /* required: "any" must be said explicitly */
		pol->n_to = -1;
		p->sec = SEC_POLICY;
		return 0;
	}
	if (!strcmp(kind, "action")) {
		if (!valid_name(name, CONF_NAME_MAX))
			return perr(p, p->line, "[action NAME]: \"%s\" is not a valid name", name);
		int i = config_action_index(c, name);
		if (i >= 0 && c->actions[i].predefined)
			return perr(p, p->line,
			    "action \"%s\" is predefined and read-only (clone it under a new name)", name);
		if (i >= 0)
			return perr(p, p->line, "action \"%s\" is defined twice", name);
		if (c->n_actions == CONF_MAX_ACTIONS)
			return perr(p, p->line, "more than %d proxy actions", CONF_MAX_ACTIONS);
		struct conf_action *a = &c->actions[c->n_actions++];
		memset(a, 0, sizeof(*a));
		snprintf(a->name, sizeof(a->name), "%s", name);
		a->tls_action = TLS_ACTION_INSPECT;
		snprintf(a->profile_name, sizeof(a->profile_name), "%s", PREDEFINED_PROFILE);
		a->sender_enc = ENC_PREFERRED;
		a->recipient_enc = ENC_PREFERRED;
		a->smtp = c->smtp;
		a->line = p->line;
		p->seen_action = true;
		p->sec = SEC_ACTION;
		return 0;
	}
	if (!strcmp(kind, "tls-profile")) {
		if (!valid_name(name, CONF_NAME_MAX))
			return perr(p, p->line, "[tls-profile NAME]: \"%s\" is not a valid name", name);
		int i = config_profile_index(c, name);
		if (i >= 0 && c->profiles[i].predefined)
			return perr(p, p->line,
			    "TLS profile \"%s\" is predefined and read-only (clone it under a new name)",
			    name);
		if (i >= 0)
			return perr(p, p->line, "TLS profile \"%s\" is defined twice", name);
		if (c->n_profiles == CONF_MAX_PROFILES)
			return perr(p, p->line, "more than %d TLS profiles", CONF_MAX_PROFILES);
		struct conf_tls_profile *t = &c->profiles[c->n_profiles++];
		*t = c->profiles[0]; /* start from the predefined profile */
		snprintf(t->name, sizeof(t->name), "%s", name);
		t->predefined = false;
		t->line = p->line;
		p->sec = SEC_PROFILE;
		return 0;
	}
	return perr(p, p->line,
	    "unknown section [%s] (expected global, zone, policy, action or tls-profile)", kind);
}

static int
parse_line(struct parser *p, char *s)
{
	char *eq, *k, *v;

	s = trim(s);
	if (*s == '\0' || *s == '#' || *s == ';')
		return 0;
	if (*s == '[') {
		p->n_seen[0] = 0;
		return section_line(p, s);
	}
	eq = strchr(s, '=');
	if (eq == NULL)
		return perr(p, p->line, "expected \"key = value\" or [section]");
	*eq = '\0';
	k = trim(s);
	v = eq + 1;
	/* A '#' preceded by white space starts a trailing comment. */
	for (char *h = v; (h = strchr(h, '#')) != NULL; h++) {
		if (h == v || h[-1] == ' ' || h[-1] == '\t') {
			*h = '\0';
			break;
		}
	}
	v = trim(v);
	if (*k == '\0')
		return perr(p, p->line, "missing key before '='");
	if (*v == '\0')
		return perr(p, p->line, "%s: missing value", k);

	if (p->sec != SEC_NONE)
		note_key(p, k);
	switch (p->sec) {
	case SEC_NONE:
		return perr(p, p->line, "\"%s\" outside any section", k);
	case SEC_GLOBAL:
		return global_kv(p, k, v);
	case SEC_ZONE:
		return zone_kv(p, k, v);
	case SEC_POLICY:
		return policy_kv(p, k, v);
	case SEC_ACTION:
		return action_kv(p, k, v);
	case SEC_PROFILE:
		return profile_kv(p, k, v);
	}
	return perr(p, p->line, "internal: bad section state");
}

static int
resolve_zones(struct parser *p, int line, const char *what, char names[][CONF_NAME_MAX],
    int n, int *out)
{
	for (int i = 0; i < n; i++) {
		out[i] = config_zone_index(p->c, names[i]);
		if (out[i] < 0)
			return perr(p, line, "%s: zone \"%s\" is not defined", what, names[i]);
	}
	return 0;
}

/*
 * rules-from: an action takes every inspection setting it does not set
 * itself from the named action (which may take its own from another).
 * Resolved once here, in dependency order; a loop is an error.
 */
static int
resolve_one(struct parser *p, int i, unsigned char *state)
{
	struct config *c = p->c;
	struct conf_action *a = &c->actions[i];
	const struct action_rules *from = NULL;

	if (state[i] == 2 || a->rules == NULL)
		return 0;
	if (state[i] == 1)
		return perr(p, a->line, "action %s: rules-from makes a loop", a->name);
	state[i] = 1;
	if (a->rules->rules_from[0]) {
		int j = config_action_index(c, a->rules->rules_from);
		if (j < 0)
			return perr(p, a->line, "action %s: rules-from names \"%s\", which is not a "
			    "proxy action", a->name, a->rules->rules_from);
		if (resolve_one(p, j, state) < 0)
			return -1;
		from = config_rules(&c->actions[j]);
	}
	arules_resolve(a->rules, from);
	state[i] = 2;
	return 0;
}

static int
resolve_rules(struct parser *p)
{
	unsigned char state[CONF_MAX_ACTIONS] = { 0 };

	for (int i = 0; i < p->c->n_actions; i++)
		if (resolve_one(p, i, state) < 0)
			return -1;
	return 0;
}

/*
 * An action a policy uses that asks for a scanner [global] does not name:
 * its messages are not scanned by that engine (one warning per engine).
 */
static void
scan_warnings(struct parser *p, const struct conf_policy *pol, const struct conf_action *a)
{
	struct config *c = p->c;
	const struct action_rules *r = config_rules(a);
	bool av = r->antivirus != AV_OFF && c->clamd.n_servers == 0;
	bool spam = r->spam && c->rspamd.n_servers == 0;

	for (int i = 0; i < 2; i++) {
		char w[sizeof(c->warnings[0])];
		bool *done = i == 0 ? &p->warned_clamd : &p->warned_rspamd;

		if (!(i == 0 ? av : spam) || *done || c->n_warnings >= CONF_MAX_WARNINGS)
			continue;
		*done = true;
		snprintf(w, sizeof(w), "%s:%d: warning: policy %s uses action %s, which asks %s, "
		    "but [global] names no %s-servers: its messages are not scanned by %s",
		    p->name, pol->line, pol->name, a->name,
		    i == 0 ? "clamd for viruses" : "rspamd about spam", i == 0 ? "clamd" : "rspamd",
		    i == 0 ? "clamd" : "rspamd");
		memcpy(c->warnings[c->n_warnings++], w, sizeof(w));
	}
}

static int
validate(struct parser *p)
{
	struct config *c = p->c;

	for (int i = 0; i < c->n_zones; i++) {
		struct conf_zone *z = &c->zones[i];

		/* The zone called "external" is the Internet side unless said otherwise. */
		if (!p->zone_external_set[i])
			z->external = strcmp(z->name, "external") == 0;
		for (int j = 0; j < z->n_ifaces; j++) {
			for (int k = j + 1; k < z->n_ifaces; k++)
				if (!strcmp(z->ifaces[j], z->ifaces[k]))
					return perr(p, z->line, "zone %s: interface %s listed twice",
					    z->name, z->ifaces[j]);
			for (int o = i + 1; o < c->n_zones; o++)
				for (int k = 0; k < c->zones[o].n_ifaces; k++)
					if (!strcmp(z->ifaces[j], c->zones[o].ifaces[k]))
						return perr(p, c->zones[o].line,
						    "interface %s is in zone %s and zone %s", z->ifaces[j],
						    z->name, c->zones[o].name);
		}
	}
	for (int i = 0; i < c->n_policies; i++) {
		struct conf_policy *pol = &c->policies[i];

		if (pol->n_from < 0)
			return perr(p, pol->line, "policy %s: missing \"from\" (zones or any)",
			    pol->name);
		if (pol->n_to < 0)
			return perr(p, pol->line, "policy %s: missing \"to\" (zones or any)", pol->name);
		if (pol->type == POLICY_PROXY && pol->action[0] == '\0')
			return perr(p, pol->line, "policy %s: missing \"action\" (a proxy action name)",
			    pol->name);
		if (resolve_zones(p, pol->line, "from", pol->from_names, pol->n_from, pol->from) < 0 ||
		    resolve_zones(p, pol->line, "to", pol->to_names, pol->n_to, pol->to) < 0)
			return -1;
	}
	/* TLS material lives next to the configuration unless tls-dir says otherwise. */
	if (!p->tls_dir_set) {
		const char *slash = strrchr(p->name, '/');
		int dirlen = slash ? (int)(slash - p->name) : 1;
		snprintf(c->tls_dir, sizeof(c->tls_dir), "%.*s/tls", dirlen, slash ? p->name : ".");
	}
	/* Predefined actions follow [global]'s limits; they cannot be edited. */
	for (int i = 0; i < c->n_actions; i++)
		if (c->actions[i].predefined)
			c->actions[i].smtp = c->smtp;
	if (resolve_rules(p) < 0)
		return -1;
	for (int i = 0; i < c->n_actions; i++) {
		struct conf_action *a = &c->actions[i];

		a->profile = config_profile_index(c, a->profile_name);
		if (a->profile < 0)
			return perr(p, a->line, "action %s: TLS profile \"%s\" is not defined", a->name,
			    a->profile_name);
		/* Settings no session could ever satisfy (see smtpgw.conf(5), ENCRYPTION). */
		if (a->tls_action == TLS_ACTION_DROP &&
		    (a->sender_enc == ENC_REQUIRED || a->recipient_enc == ENC_REQUIRED))
			return perr(p, a->line, "action %s: tls-action drop refuses TLS on both legs, "
			    "so %s-encryption = required can never be met", a->name,
			    a->sender_enc == ENC_REQUIRED ? "sender" : "recipient");
		if (a->tls_action == TLS_ACTION_INSPECT && a->sender_enc == ENC_REQUIRED &&
		    a->recipient_enc == ENC_NONE && !a->allow_cleartext_relay)
			return perr(p, a->line, "action %s: sender-encryption = required with "
			    "recipient-encryption = none needs allow-cleartext-relay = yes (TLS to the "
			    "client, cleartext on)", a->name);
	}
	for (int i = 0; i < c->n_policies; i++) {
		struct conf_policy *pol = &c->policies[i];
		const struct conf_action *a;

		pol->action_index = -1;
		if (pol->type != POLICY_PROXY)
			continue;
		pol->action_index = config_action_index(c, pol->action);
		if (pol->action_index < 0)
			return perr(p, pol->line, "policy %s: proxy action \"%s\" is not defined",
			    pol->name, pol->action);
		a = &c->actions[pol->action_index];
		/* The manual's rule: implicit TLS can only be handled by inspecting it. */
		if (pol->tls_support != TLS_SUPPORT_DISABLED && a->tls_action != TLS_ACTION_INSPECT)
			return perr(p, pol->line,
			    "policy %s: TLS Support %s needs content inspection, but action %s has "
			    "tls-action %s (set tls-action = inspect, or tls-support = disabled)",
			    pol->name, tls_support_name(pol->tls_support), a->name,
			    tls_action_name(a->tls_action));
		if (pol->tls_support == TLS_SUPPORT_DISABLED && a->tls_action == TLS_ACTION_INSPECT &&
		    c->n_warnings < CONF_MAX_WARNINGS) {
			char w[sizeof(c->warnings[0])];

			snprintf(w, sizeof(w),
			    "%s:%d: warning: policy %s has TLS Support disabled but action %s inspects "
			    "TLS: implicit TLS (port 465) is never inspected under this policy",
			    p->name, pol->line, pol->name, a->name);
			memcpy(c->warnings[c->n_warnings++], w, sizeof(w));
		}
		scan_warnings(p, pol, a);
	}
	return 0;
}

static int parse_text(struct config *c, const char *name, const char *text, size_t len,
    char *err, size_t errlen);

int
config_parse(struct config *c, const char *name, const char *text, size_t len, char *err,
    size_t errlen)
{
	int rc = parse_text(c, name, text, len, err, errlen);

	/* A refused file leaves nothing allocated behind. */
	if (rc < 0)
		config_free(c);
	return rc;
}

static int
parse_text(struct config *c, const char *name, const char *text, size_t len, char *err,
    size_t errlen)
{
	struct parser p = {
		.c = c, .name = name, .line = 0, .sec = SEC_NONE, .err = err, .errlen = errlen,
	};
	char line[CONF_LINE_MAX + 1];
	size_t pos = 0;

	config_defaults(c);
	snprintf(c->path, sizeof(c->path), "%s", name);
	if (errlen)
		err[0] = '\0';
	if (len > CONF_FILE_MAX)
		return perr(&p, 0, "file is larger than %d bytes", CONF_FILE_MAX);
	/* What some Windows editors put first: said as such, not as a mystery line 1. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		return perr(&p, 1, "the file starts with a UTF-8 byte order mark: save it "
		    "without one (plain ASCII or UTF-8)");

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

		p.line++;
		if (n > CONF_LINE_MAX)
			return perr(&p, p.line, "line longer than %d bytes", CONF_LINE_MAX);
		if (memchr(text + pos, '\0', n) != NULL)
			return perr(&p, p.line, "NUL byte in line");
		memcpy(line, text + pos, n);
		line[n] = '\0';
		if (parse_line(&p, line) < 0)
			return -1;
		pos += n + (nl ? 1 : 0);
	}
	return validate(&p);
}

int
config_load(struct config *c, const char *path, char *err, size_t errlen)
{
	struct stat st;
	char *text;
	ssize_t r;
	size_t got = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_size > CONF_FILE_MAX) {
		snprintf(err, errlen, "%s: file is larger than %d bytes", path, CONF_FILE_MAX);
		close(fd);
		return -1;
	}
	text = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		r = read(fd, text + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	rc = config_parse(c, path, text, got, err, errlen);
	free(text);
	return rc;
}

int
config_zone_index(const struct config *c, const char *name)
{
	for (int i = 0; i < c->n_zones; i++)
		if (!strcmp(c->zones[i].name, name))
			return i;
	return -1;
}

int
config_zone_of_iface(const struct config *c, const char *ifname)
{
	for (int i = 0; i < c->n_zones; i++)
		for (int j = 0; j < c->zones[i].n_ifaces; j++)
			if (!strcmp(c->zones[i].ifaces[j], ifname))
				return i;
	return -1;
}

bool
policy_covers_port(const struct conf_policy *p, uint16_t port)
{
	switch (p->tls_support) {
	case TLS_SUPPORT_DISABLED: return port == MARK_PORT_SMTP;
	case TLS_SUPPORT_ENABLED: return port == MARK_PORT_SMTP || port == MARK_PORT_SMTPS;
	case TLS_SUPPORT_REQUIRED: return port == MARK_PORT_SMTPS;
	}
	return false;
}

static void
dump_limits(FILE *f, const struct smtp_limits *l)
{
	fprintf(f, "max-message-size = %llu\n", (unsigned long long)l->max_message_size);
	fprintf(f, "max-recipients = %u\n", l->max_recipients);
	fprintf(f, "max-line-length = %u\n", l->max_line_length);
	fprintf(f, "bare-newline = %s\n", l->bare_newline_normalize ? "normalize" : "reject");
	fprintf(f, "inspect-timeout-action = %s\n",
	    l->on_inspect_timeout == INSPECT_TIMEOUT_DENY ? "deny" :
	    l->on_inspect_timeout == INSPECT_TIMEOUT_ALLOW ? "allow" : "tempfail");
	fprintf(f, "hold = %s\n", l->hold == HOLD_ALWAYS ? "always" : "when-needed");
	fprintf(f, "hold-memory = %llu\n", (unsigned long long)l->hold_memory);
	fprintf(f, "dkim-protect = %s\n",
	    l->dkim_protect == DKIM_PROTECT_CHANGE ? "change-anyway" : "deny");
	for (size_t i = 0; i < ARRAY_SIZE(smtp_bools); i++)
		fprintf(f, "%s = %s\n", smtp_bools[i].key,
		    *(const bool *)(const void *)((const char *)l + smtp_bools[i].off) ? "yes" : "no");
	for (size_t i = 0; i < ARRAY_SIZE(smtp_timeouts); i++)
		fprintf(f, "%s = %u\n", smtp_timeouts[i].key,
		    *(const unsigned *)(const void *)((const char *)l + smtp_timeouts[i].off));
}

static void
dump_scanners(FILE *f, const char *engine, const struct conf_scanners *sc)
{
	fprintf(f, "%s-servers =", engine);
	if (sc->n_servers == 0)
		fprintf(f, " none");
	for (int i = 0; i < sc->n_servers; i++)
		fprintf(f, " %s", sc->servers[i].text);
	fprintf(f, "\n%s-timeout = %u\n%s-connections = %u\n%s-queue = %u\n", engine, sc->timeout,
	    engine, sc->connections, engine, sc->queue);
	fprintf(f, "%s-max-size = %llu\n", engine, (unsigned long long)sc->max_size);
	if (!strcmp(engine, "clamd"))
		fprintf(f, "%s-idle-timeout = %u\n", engine, sc->idle_timeout);
}

static void
dump_list(FILE *f, const char *key, const char (*names)[CONF_NAME_MAX], int n)
{
	fprintf(f, "%s =", key);
	if (n == 0)
		fprintf(f, " any");
	for (int i = 0; i < n; i++)
		fprintf(f, " %s", names[i]);
	fprintf(f, "\n");
}

static void
dump_prefixes(FILE *f, const char *key, const struct prefix *p, int n)
{
	char buf[INET6_ADDRSTRLEN];

	if (n == 0)
		return;
	fprintf(f, "%s =", key);
	for (int i = 0; i < n; i++) {
		inet_ntop(p[i].family, p[i].bytes, buf, sizeof(buf));
		fprintf(f, " %s/%u", buf, p[i].len);
	}
	fprintf(f, "\n");
}

void
config_dump(const struct config *c, FILE *f)
{
	static const char *const versions[] = { [10] = "1.0", [11] = "1.1", [12] = "1.2",
		[13] = "1.3" };

	fprintf(f, "# effective configuration of %s (predefined sections included)\n\n", c->path);
	fprintf(f, "[global]\n");
	fprintf(f, "listen-port = %u\nqueue = %u\nworkers = %u\nuser = %s\n", c->listen_port,
	    c->queue, c->workers, c->user);
	fprintf(f, "worker-uid-base = %u\n", c->worker_uid_base);
	fprintf(f, "signer-user = %s\nclassifier-user = %s\nsigner-rate-limit = %u\n",
	    c->signer_user, c->classifier_user, c->signer_rate_limit);
	fprintf(f, "spoof-source = %s\nconnect-timeout = %u\n", c->spoof_source ? "yes" : "no",
	    c->connect_timeout);
	fprintf(f, "max-sessions = %u\nmax-sessions-per-client = %u\n", c->max_sessions,
	    c->max_sessions_per_client);
	fprintf(f, "log = %s\n", c->log == LOG_TO_SYSLOG ? "syslog" : "stderr");
	fprintf(f, "tls-dir = %s\ntrust-store = %s\ncert-cache-size = %u\n", c->tls_dir,
	    c->trust_store, c->cert_cache_size);
	fprintf(f, "blocked-sites-timeout = %u\nblocked-sites-max = %u\nblocked-sites-rate = %u\n",
	    c->blocked_timeout, c->blocked_max, c->blocked_rate);
	if (c->n_blocked_exceptions)
		dump_prefixes(f, "blocked-sites-exceptions", c->blocked_exceptions,
		    c->n_blocked_exceptions);
	else
		fprintf(f, "blocked-sites-exceptions = none\n");
	fprintf(f, "spool-dir = %s\n", c->spool_dir);
	fprintf(f, "quarantine-dir = %s\nquarantine-max-size = %llu\nquarantine-max-age = %u\n",
	    c->quarantine_dir, (unsigned long long)c->quarantine_max_size, c->quarantine_max_age);
	dump_limits(f, &c->smtp);
	dump_scanners(f, "clamd", &c->clamd);
	dump_scanners(f, "rspamd", &c->rspamd);

	for (int i = 0; i < c->n_zones; i++) {
		const struct conf_zone *z = &c->zones[i];
		fprintf(f, "\n[zone %s]\n", z->name);
		/* no interfaces: no line (an empty value would not parse back) */
		if (z->n_ifaces) {
			fprintf(f, "interfaces =");
			for (int j = 0; j < z->n_ifaces; j++)
				fprintf(f, " %s", z->ifaces[j]);
			fprintf(f, "\n");
		}
		fprintf(f, "external = %s\n", z->external ? "yes" : "no");
	}
	for (int i = 0; i < c->n_profiles; i++) {
		const struct conf_tls_profile *t = &c->profiles[i];
		fprintf(f, "\n[tls-profile %s]\n", t->name);
		if (t->predefined)
			fprintf(f, "# predefined, read-only\n");
		fprintf(f, "min-version = %s\nciphers = %s\nciphersuites = %s\n",
		    versions[t->min_version], t->ciphers, t->ciphersuites);
		if (t->ca_file[0])
			fprintf(f, "ca-file = %s\n", t->ca_file);
		fprintf(f, "ocsp = %s\n", t->ocsp ? "yes" : "no");
		for (int k = 0; k < CF_COUNT; k++)
			fprintf(f, "%s = %s\n", certfail_class_keys[k], certfail_action_name(t->on_fail[k]));
		char rule[CONF_HOSTNAME_MAX + 8];
		fprintf(f, "on-no-reference-name = %s\nallow-cn-fallback = %s\n",
		    noref_rule_name(t, rule, sizeof(rule)), t->cn_fallback ? "yes" : "no");
	}
	for (int i = 0; i < c->n_actions; i++) {
		const struct conf_action *a = &c->actions[i];
		fprintf(f, "\n[action %s]\n", a->name);
		if (a->predefined)
			fprintf(f, "# predefined, read-only\n");
		fprintf(f, "tls-action = %s\ntls-profile = %s\n", tls_action_name(a->tls_action),
		    a->profile_name);
		fprintf(f, "sender-encryption = %s\nrecipient-encryption = %s\n",
		    encryption_name(a->sender_enc), encryption_name(a->recipient_enc));
		fprintf(f, "allow-cleartext-relay = %s\n", a->allow_cleartext_relay ? "yes" : "no");
		dump_limits(f, &a->smtp);
		if (a->predefined || a->rules)
			arules_dump(config_rules(a), f);
	}
	for (int i = 0; i < c->n_policies; i++) {
		const struct conf_policy *p = &c->policies[i];
		fprintf(f, "\n[policy %s]\n", p->name);
		dump_list(f, "from", p->from_names, p->n_from);
		dump_list(f, "to", p->to_names, p->n_to);
		dump_prefixes(f, "src", p->src, p->n_src);
		dump_prefixes(f, "dst", p->dst, p->n_dst);
		fprintf(f, "type = %s\n", p->type == POLICY_PROXY ? "proxy" : "packet-filter");
		if (p->action[0])
			fprintf(f, "action = %s\n", p->action);
		fprintf(f, "tls-support = %s\nenabled = %s\n", tls_support_name(p->tls_support),
		    p->enabled ? "yes" : "no");
	}
}
