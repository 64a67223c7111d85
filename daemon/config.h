/*
 * config - the daemon's configuration file (smtpgw.conf).
 *
 * Format (documented for admins in daemon/README.md and smtpgw.conf(5)):
 * ini-style sections, one "key = value" per line, '#' comments, order of
 * [policy] sections is the match order.  Line oriented on purpose: it diffs
 * well and the busybox shell tool can edit it with awk.
 *
 *   [global]              listen-port, queue, workers, user, signer-user,
 *                         classifier-user, signer-rate-limit, spoof-source,
 *                         connect-timeout, max-sessions,
 *                         max-sessions-per-client, log, blocked-sites-*,
 *                         spool-dir, the SMTP limits, timeouts and
 *                         inspection settings (struct smtp_limits), and
 *                         the content scanners (struct conf_scanners):
 *                         clamd-servers, clamd-timeout, clamd-connections,
 *                         clamd-queue, clamd-max-size, clamd-idle-timeout,
 *                         rspamd-servers, rspamd-timeout,
 *                         rspamd-connections, rspamd-queue, rspamd-max-size;
 *                         quarantine-dir, quarantine-max-size,
 *                         quarantine-max-age (quarantine.h)
 *   [zone NAME]           interfaces, external
 *   [policy NAME]         from, to, src, dst, action, tls-support, type,
 *                         enabled
 *   [action NAME]         tls-action, tls-profile, sender-encryption,
 *                         recipient-encryption, allow-cleartext-relay, and
 *                         SMTP limits (inherited from [global])
 *   [tls-profile NAME]    min-version, ciphers, ciphersuites, ca-file, ocsp,
 *                         on-expired, on-not-yet-valid, on-untrusted-issuer,
 *                         on-name-mismatch, on-revoked, on-invalid,
 *                         on-no-reference-name, allow-cn-fallback
 *
 * Predefined proxy actions (SMTP-Incoming.Standard, SMTP-Outgoing.Standard)
 * and the TLS profile TLS-SMTP.Standard always exist and cannot be
 * redefined; clone them under a new name to change them.  [global] must
 * come before any [action] section (actions start from its limits).
 *
 * Limits: a line is at most CONF_LINE_MAX bytes, a file at most
 * CONF_FILE_MAX bytes; every list and name is bounded below.  Errors name
 * the file, the line and what is wrong.
 */
#ifndef SMTPGW_CONFIG_H
#define SMTPGW_CONFIG_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/un.h>

#include "action_rules.h"
#include "addr.h"
#include "log.h"

#define CONF_LINE_MAX 1024
#define CONF_FILE_MAX (1024 * 1024)
#define CONF_NAME_MAX 64
#define CONF_MAX_ZONES 64
#define CONF_MAX_POLICIES 200
#define CONF_MAX_IFACES 32  /* per zone */
#define CONF_MAX_ZONEREFS 16 /* zones named in one policy's from/to */
#define CONF_MAX_PREFIXES 32 /* per policy src / dst */
#define CONF_MAX_ACTIONS 64
#define CONF_MAX_PROFILES 32
#define CONF_PATH_MAX 256
#define CONF_DEFAULT_SIGNER_USER "smtpgw-signer"
#define CONF_DEFAULT_CLASSIFIER_USER "smtpgw-classify"
#define CONF_DEFAULT_SIGNER_RATE 600
#define CONF_DEFAULT_WORKER_UID_BASE 64000 /* Debian: 60000-64999 are not given out */
#define CONF_WORKER_UID_SPAN 256         /* uids a base reserves: one per child slot */
#define CONF_HOSTNAME_MAX 253 /* a DNS name in presentation form, without the root dot */
#define CONF_MAX_BLOCK_EXCEPTIONS 32 /* blocked-sites-exceptions prefixes */
/* Longest block: 32767 minutes (about 22 days), WatchGuard's bound too. */
#define CONF_BLOCKED_TIMEOUT_MAX 1966020

enum tls_support {
	TLS_SUPPORT_DISABLED, /* port 25 only */
	TLS_SUPPORT_ENABLED,  /* 25 and 465 (default) */
	TLS_SUPPORT_REQUIRED, /* 465 only */
};

enum policy_type {
	POLICY_PROXY,         /* intercepted by smtpgw */
	POLICY_PACKET_FILTER, /* forwarded untouched (bypass) */
};

struct conf_zone {
	char name[CONF_NAME_MAX];
	bool external; /* arriving here = inbound */
	int n_ifaces;
	char ifaces[CONF_MAX_IFACES][IFNAMSIZ];
	int line;
};

struct conf_policy {
	char name[CONF_NAME_MAX];
	int n_from, n_to;
	int from[CONF_MAX_ZONEREFS]; /* zone indices; n_from == 0: any */
	int to[CONF_MAX_ZONEREFS];
	int n_src, n_dst;
	struct prefix src[CONF_MAX_PREFIXES]; /* n_src == 0: any */
	struct prefix dst[CONF_MAX_PREFIXES];
	char action[CONF_NAME_MAX];
	int action_index; /* resolved after parsing; -1 for packet-filter */
	enum tls_support tls_support;
	enum policy_type type;
	bool enabled;
	int line;
	/* zone names as written, resolved after the whole file is read */
	char from_names[CONF_MAX_ZONEREFS][CONF_NAME_MAX];
	char to_names[CONF_MAX_ZONEREFS][CONF_NAME_MAX];
};

/*
 * SMTP engine limits and timeouts (RFC 5321 4.5.3).  Timeouts in seconds:
 * client-* is how long we wait for the client, server-* for the real
 * destination, per RFC 5321 4.5.3.2.
 */
/* What happens when a verdict does not come within inspect-timeout. */
enum inspect_timeout_action {
	INSPECT_TIMEOUT_TEMPFAIL, /* 451 4.7.1: the sender keeps the message and retries */
	INSPECT_TIMEOUT_DENY,     /* 554 5.7.1 */
	INSPECT_TIMEOUT_ALLOW,    /* delivered uninspected (logged) */
};

/* When a message is held until its verdict (instead of streaming upstream). */
enum hold_mode {
	HOLD_WHEN_NEEDED, /* when a rule may change it (the inspector says so) */
	HOLD_ALWAYS,      /* every message: nothing reaches the destination before its verdict */
};

/* A change that would break a DKIM signature of the message. */
enum dkim_protect {
	DKIM_PROTECT_DENY,   /* refuse the message instead of changing it */
	DKIM_PROTECT_CHANGE, /* change it anyway (logged) */
};

struct smtp_limits {
	uint64_t max_message_size;   /* octets as delivered */
	unsigned max_recipients;
	unsigned max_line_length;    /* message line, without CRLF */
	bool bare_newline_normalize; /* else reject */
	bool allow_vrfy, allow_expn, allow_auth, allow_chunking;
	unsigned t_client_command, t_client_data;
	unsigned t_server_greeting, t_server_command, t_server_data_init;
	unsigned t_server_data_block, t_server_data_end;
	/* content inspection (inspect.h) */
	unsigned t_inspect;          /* inspect-timeout: seconds a verdict may take */
	enum inspect_timeout_action on_inspect_timeout; /* inspect-timeout-action */
	enum hold_mode hold;         /* hold */
	uint64_t hold_memory;        /* hold-memory: octets of a held message kept in memory */
	enum dkim_protect dkim_protect; /* dkim-protect */
};

enum tls_action {
	TLS_ACTION_INSPECT, /* decrypt, inspect, re-encrypt */
	TLS_ACTION_ALLOW,   /* relay TLS untouched (no inspection) */
	TLS_ACTION_DROP,    /* refuse TLS */
};

enum tls_encryption {
	ENC_NONE,
	ENC_PREFERRED,
	ENC_REQUIRED,
};

/* What to do when the upstream certificate fails validation, per class. */
enum certfail_action {
	CERTFAIL_ALLOW,          /* forge with the trusted Proxy Authority anyway */
	CERTFAIL_UNTRUSTED_SIGN, /* forge with the untrusted CA: the client sees the failure */
	CERTFAIL_BLOCK,          /* refuse the session */
};

enum certfail_class {
	CF_EXPIRED,
	CF_NOT_YET_VALID,
	CF_UNTRUSTED_ISSUER,
	CF_NAME_MISMATCH,
	CF_REVOKED,
	CF_INVALID,
	CF_COUNT,
};

/*
 * What the judgement of an upstream certificate checks when there is no
 * reference name (no SNI from the client, or the engine's own STARTTLS
 * for a client that did not ask for TLS).
 */
enum noref_rule {
	NOREF_CHAIN_ONLY,     /* judge the chain only (the default) */
	NOREF_UNTRUSTED_SIGN, /* a failure the client can see: the untrusted CA signs */
	NOREF_BLOCK,          /* refuse the session */
	NOREF_NAME,           /* check this fixed name (a profile for one destination) */
};

struct conf_tls_profile {
	char name[CONF_NAME_MAX];
	bool predefined;
	int min_version;                /* 10, 11, 12, 13 */
	char ciphers[256];              /* TLS <= 1.2, OpenSSL syntax */
	char ciphersuites[256];         /* TLS 1.3 */
	char ca_file[CONF_PATH_MAX];    /* extra CAs trusted for upstream validation */
	bool ocsp;                      /* request and check stapled OCSP */
	enum certfail_action on_fail[CF_COUNT];
	enum noref_rule no_ref;
	char no_ref_name[CONF_HOSTNAME_MAX + 1]; /* NOREF_NAME only */
	/*
	 * RFC 9525 6.4.4: a name found only in the subject CN of a
	 * certificate without DNS names is no match.  yes: the old fallback,
	 * for legacy servers.
	 */
	bool cn_fallback;
	int line;
};

struct conf_action {
	char name[CONF_NAME_MAX];
	bool predefined;
	enum tls_action tls_action;
	char profile_name[CONF_NAME_MAX];
	int profile;                    /* index, resolved after parsing */
	enum tls_encryption sender_enc;    /* client leg */
	enum tls_encryption recipient_enc; /* upstream leg */
	bool allow_cleartext_relay;     /* TLS to the client, cleartext upstream */
	struct smtp_limits smtp;
	/*
	 * Content-inspection settings (action_rules.h): owned, NULL when the
	 * section sets none (predefined actions: NULL too, see config_rules()).
	 */
	struct action_rules *rules;
	int line;
};

/*
 * A content scanner's address, as written and parsed: "unix:/abs/path"
 * (a stream socket; the path fits sun_path), "tcp:192.0.2.60:3310" or
 * "tcp:[2001:db8::60]:3310".  Literal addresses only: the daemon never
 * resolves names.
 */
#define CONF_MAX_SCAN_SERVERS 8
#define CONF_SCAN_ADDR_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) + 8)

struct conf_scan_server {
	char text[CONF_SCAN_ADDR_MAX]; /* as written, for logs and status */
	union {
		struct sockaddr sa;
		struct sockaddr_un un;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
	} addr;
	socklen_t addrlen;
};

/*
 * One scanning engine's servers (clamd or rspamd), tried in this order
 * (daemon/scanner.h: least busy healthy server first, failover to the
 * next).  Timeouts in seconds; connections, queue and idle reuse are per
 * worker process.
 */
struct conf_scanners {
	int n_servers;                 /* 0: the engine is not configured */
	struct conf_scan_server servers[CONF_MAX_SCAN_SERVERS];
	unsigned timeout;              /* no progress on a request: it fails */
	unsigned connections;          /* requests at once per server */
	unsigned queue;                /* requests waiting for a connection */
	uint64_t max_size;             /* larger messages are "too large", never sent */
	unsigned idle_timeout;         /* keep a finished connection this long for reuse; 0: never */
};

#define CONF_MAX_WARNINGS 16

struct config {
	char path[256];
	uint16_t listen_port;
	unsigned queue;
	unsigned workers;
	char user[CONF_NAME_MAX];            /* workers */
	/*
	 * The signer's and the classifier's users: one uid per role, so no
	 * child can signal (or, with ptrace, read) a child of another role.
	 * When the key is not set and the default user does not exist, the
	 * role falls back to user (main.c says so, smtpgw -t warns).
	 */
	char signer_user[CONF_NAME_MAX];
	char classifier_user[CONF_NAME_MAX];
	bool signer_user_set, classifier_user_set;
	/*
	 * Workers run as uid worker-uid-base + their slot (no account needed;
	 * group: user's), so no worker can signal another -- or the blocker,
	 * which runs as user.  0: every worker runs as user.
	 */
	unsigned worker_uid_base;
	unsigned signer_rate_limit;         /* forged leaves per worker per minute; 0: no limit */
	bool spoof_source;
	unsigned connect_timeout; /* seconds */
	unsigned max_sessions;    /* in total, all workers */
	unsigned max_sessions_per_client;
	enum log_target log;
	struct smtp_limits smtp;
	int n_zones;
	struct conf_zone zones[CONF_MAX_ZONES];
	int n_policies;
	struct conf_policy policies[CONF_MAX_POLICIES];
	int n_actions;
	struct conf_action actions[CONF_MAX_ACTIONS];
	int n_profiles;
	struct conf_tls_profile profiles[CONF_MAX_PROFILES];
	/* TLS material: tls-dir defaults to "tls" beside the configuration file */
	char tls_dir[CONF_PATH_MAX];
	char trust_store[CONF_PATH_MAX];
	unsigned cert_cache_size;
	/*
	 * The blocked sites list (blocked.h, nftables/smtpgw.nft.in): how
	 * long a block lasts by default (seconds), its size per address
	 * family (the kernel set's size: smtpgw-nft renders it), the block
	 * requests per second the blocker carries out, and the prefixes that
	 * are never blocked.
	 */
	unsigned blocked_timeout;
	unsigned blocked_max;
	unsigned blocked_rate;
	int n_blocked_exceptions;
	struct prefix blocked_exceptions[CONF_MAX_BLOCK_EXCEPTIONS];
	/* held messages beyond hold-memory: unlinked files here (hold.h) */
	char spool_dir[CONF_PATH_MAX];
	struct conf_scanners clamd, rspamd;
	/*
	 * What is refused or stripped for content is kept here (quarantine.h):
	 * a directory of the workers' user, mode 0700, at most max_size octets
	 * and max_age seconds old (the oldest go first).
	 */
	char quarantine_dir[CONF_PATH_MAX];
	uint64_t quarantine_max_size;
	unsigned quarantine_max_age;
	/* non-fatal findings of the last parse: "file:line: warning: ..." */
	int n_warnings;
	char warnings[CONF_MAX_WARNINGS][256];
};

void config_defaults(struct config *c);
/* Release what a parse allocated (the actions' rules); c may be parsed again. */
void config_free(struct config *c);
/*
 * Parse a whole file's text.  name is used in messages.  On error returns -1
 * and writes "NAME:LINE: what is wrong" into err.
 */
int config_parse(struct config *c, const char *name, const char *text, size_t len,
    char *err, size_t errlen);
int config_load(struct config *c, const char *path, char *err, size_t errlen);

/* Lookups: -1 if not found. */
int config_zone_index(const struct config *c, const char *name);
int config_zone_of_iface(const struct config *c, const char *ifname);
bool policy_covers_port(const struct conf_policy *p, uint16_t port);

const char *tls_support_name(enum tls_support t);
int config_action_index(const struct config *c, const char *name);
int config_profile_index(const struct config *c, const char *name);
/* The limits for a session under policy index p (global ones for -1). */
const struct smtp_limits *config_limits(const struct config *c, int policy);
const struct conf_action *config_action_of(const struct config *c, int policy);
/* The content-inspection settings in effect for an action (never NULL). */
const struct action_rules *config_rules(const struct conf_action *a);
const char *tls_action_name(enum tls_action a);
const char *encryption_name(enum tls_encryption e);
const char *certfail_action_name(enum certfail_action a);
/* "chain-only", "untrusted-sign", "block" or "name:HOST" into buf. */
const char *noref_rule_name(const struct conf_tls_profile *p, char *buf, size_t len);
/* A DNS host name (letters, digits, '-', labels of 1..63, at most CONF_HOSTNAME_MAX). */
bool config_valid_hostname(const char *s);
extern const char *const certfail_class_keys[CF_COUNT];
/*
 * Parse one scanner address ("unix:/path", "tcp:ADDR:PORT",
 * "tcp:[ADDR6]:PORT") into out.  Pure; returns -1 with why set.
 */
int config_scan_server_parse(const char *s, struct conf_scan_server *out, char *why,
    size_t whylen);
/* Print the effective configuration (predefined sections included) in file syntax. */
void config_dump(const struct config *c, FILE *f);

#endif
