/*
 * config - the daemon's configuration file (smtpgw.conf).
 *
 * Format (documented for admins in daemon/README.md and smtpgw.conf(5)):
 * ini-style sections, one "key = value" per line, '#' comments, order of
 * [policy] sections is the match order.  Line oriented on purpose: it diffs
 * well and the busybox shell tool can edit it with awk.
 *
 *   [global]              listen-port, queue, workers, user, spoof-source,
 *                         connect-timeout, max-sessions,
 *                         max-sessions-per-client, log, and the SMTP
 *                         limits and timeouts (struct smtp_limits)
 *   [zone NAME]           interfaces, external
 *   [policy NAME]         from, to, src, dst, action, tls-support, type,
 *                         enabled
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
struct smtp_limits {
	uint64_t max_message_size;   /* octets as delivered */
	unsigned max_recipients;
	unsigned max_line_length;    /* message line, without CRLF */
	bool bare_newline_normalize; /* else reject */
	bool allow_vrfy, allow_expn, allow_auth, allow_chunking;
	unsigned t_client_command, t_client_data;
	unsigned t_server_greeting, t_server_command, t_server_data_init;
	unsigned t_server_data_block, t_server_data_end;
};

struct config {
	char path[256];
	uint16_t listen_port;
	unsigned queue;
	unsigned workers;
	char user[CONF_NAME_MAX];
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
};

void config_defaults(struct config *c);
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

#endif
