/*
 * blocked_req - a request to put a client on the blocked sites list, the
 * way it travels from a worker to the blocker process (blocked.h) and is
 * judged there: the wire format, its validation, the exceptions, the rate
 * limit, and the nft command it becomes.  Pure: no I/O, no clock of its
 * own (callers pass now_ms); unit-tested (tests/unit/test_blocked_req.c)
 * and fuzzed (tests/fuzz/fuzz_blocked.c).
 *
 * Wire format: one SOCK_SEQPACKET message of exactly BLOCKED_REQ_WIRE
 * bytes; integers in host order (both ends are the same binary on the
 * same host):
 *   0        BLOCKED_REQ_VERSION
 *   1        family: 4 or 6
 *   2        reason length, 1..BLOCKED_REASON_MAX
 *   3        0
 *   4..7     seconds; 0: the configured blocked-sites-timeout
 *   8..15    session id (48 bits; 0: none)
 *   16..31   address, network order; IPv4 in bytes 16..19, the rest 0
 *   32..95   reason, BLOCKED_REASON_MAX bytes at most, the rest 0
 * The receiver trusts none of it: a worker is where network input is
 * parsed, so it is the process an attacker would own first.  Everything
 * that reaches the nft command is rebuilt from checked binary values
 * (inet_ntop of the address bytes, an integer, a reason made only of
 * [A-Za-z0-9._-]); no byte of the message is copied into it unchecked.
 */
#ifndef SMTPGW_BLOCKED_REQ_H
#define SMTPGW_BLOCKED_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"

#define BLOCKED_REQ_VERSION 1
#define BLOCKED_REQ_WIRE 96
#define BLOCKED_REASON_MAX 63
/* Longest block a request may ask for (blocked-sites-timeout's bound too). */
#define BLOCKED_TIMEOUT_MAX CONF_BLOCKED_TIMEOUT_MAX

/*
 * The ruleset's names (nftables/smtpgw.nft.in; tests/unit/test_blocked_req.c
 * checks that the template defines them).
 */
#define BLOCKED_NFT_TABLE "smtpgw_blocked"
#define BLOCKED_NFT_SET4 "blocked4"
#define BLOCKED_NFT_SET6 "blocked6"
/* An element's comment: "smtpgw reason=R sid=S" (smtpgwctl blocked list shows it). */
#define BLOCKED_NFT_CMD_MAX 512

struct blocked_req {
	int family;                          /* AF_INET or AF_INET6 */
	uint8_t addr[16];                    /* network order; IPv4: first 4 bytes */
	unsigned seconds;                    /* 0: the configured default */
	uint64_t sid;                        /* 48 bits */
	char reason[BLOCKED_REASON_MAX + 1]; /* [A-Za-z0-9._-]{1,63} */
};

/*
 * What the blocker applies, from the configuration: the default and
 * longest block, the rate limit and the exceptions.
 */
struct blocked_settings {
	unsigned timeout;                    /* blocked-sites-timeout */
	unsigned rate;                       /* blocked-sites-rate, requests per second */
	int n_exceptions;
	struct prefix exceptions[CONF_MAX_BLOCK_EXCEPTIONS];
};

void blocked_settings_from_config(struct blocked_settings *s, const struct config *c);

/* A reason is 1..BLOCKED_REASON_MAX bytes of [A-Za-z0-9._-]. */
bool blocked_reason_valid(const char *s, size_t len);

/*
 * Addresses no request may block whatever the configuration says: the
 * unspecified address, loopback, multicast, the IPv4 broadcast address,
 * and IPv4-mapped IPv6 (blocked_req_make turns those into IPv4).  Returns
 * why (a log token), or NULL when addr may be blocked.
 */
const char *blocked_addr_refused(int family, const uint8_t *addr);

/*
 * Worker side: a request from the client's socket address.  An
 * IPv4-mapped IPv6 address becomes IPv4 (the kernel matches IPv4 packets
 * against the IPv4 set).  Returns 0, or -1 with *why set (a log token:
 * family, address, seconds, reason, sid).
 */
int blocked_req_make(struct blocked_req *r, const union sockaddr_any *a, unsigned seconds,
    const char *reason, uint64_t sid, const char **why);

/* Writes exactly BLOCKED_REQ_WIRE bytes. */
void blocked_req_encode(const struct blocked_req *r, uint8_t out[BLOCKED_REQ_WIRE]);

/*
 * Receiving side: a message of len bytes into *r, every field checked
 * (length, version, family, zero padding, address class, seconds bound,
 * reason characters, sid range).  Returns 0, or -1 with *why set.
 */
int blocked_req_decode(const uint8_t *buf, size_t len, struct blocked_req *r, const char **why);

/* True when addr is inside one of the exception prefixes. */
bool blocked_excepted(const struct blocked_settings *s, int family, const uint8_t *addr);

/*
 * The seconds a valid request gets: its own, or the default for 0, never
 * more than BLOCKED_TIMEOUT_MAX.
 */
unsigned blocked_req_seconds(const struct blocked_req *r, const struct blocked_settings *s);

/*
 * Token bucket: `rate` requests per second, bursts of up to `rate`
 * (one second's worth).  Integer arithmetic in thousandths of a token.
 */
struct blocked_rate {
	unsigned rate;
	uint64_t milli;   /* tokens * 1000, at most rate * 1000 */
	uint64_t last_ms; /* when milli was last brought up to date */
};

void blocked_rate_init(struct blocked_rate *b, unsigned rate, uint64_t now_ms);
/* Takes a token if there is one; false: over the rate. */
bool blocked_rate_take(struct blocked_rate *b, uint64_t now_ms);

/*
 * The addresses added in the last BLOCKED_RECENT_MS: many sessions of one
 * client that break the same rule at once make one nft command, not one
 * each, and spend one token.  A fixed ring of BLOCKED_RECENT slots.
 */
#define BLOCKED_RECENT 64
#define BLOCKED_RECENT_MS 2000

struct blocked_recent {
	struct {
		int family; /* 0: free */
		uint8_t addr[16];
		uint64_t at_ms;
	} slot[BLOCKED_RECENT];
	unsigned next;
};

/* True when r's address was noted within BLOCKED_RECENT_MS of now_ms. */
bool blocked_recent_seen(const struct blocked_recent *c, const struct blocked_req *r,
    uint64_t now_ms);
void blocked_recent_note(struct blocked_recent *c, const struct blocked_req *r, uint64_t now_ms);

/*
 * The nft commands (one transaction) that set r's element for `seconds`
 * (a valid request: checked by blocked_req_decode), whether or not it was
 * there:
 *   add element inet smtpgw_blocked blocked4 { 192.0.2.10 timeout 1200s }
 *   delete element inet smtpgw_blocked blocked4 { 192.0.2.10 }
 *   add element inet smtpgw_blocked blocked4 { 192.0.2.10 timeout 1200s
 *       comment "smtpgw reason=R sid=S" }
 * Returns the length, or -1 when r is not valid or it does not fit.
 */
int blocked_req_nft_cmd(const struct blocked_req *r, unsigned seconds, char *buf, size_t len);

#endif
