/*
 * mark - the packet / conntrack / socket mark layout shared with the
 * nftables ruleset (nftables/smtpgw.nft.in must agree with these values).
 *
 * The classifier answers each queued SYN with a verdict that carries this
 * mark.  The ruleset copies it into the conntrack mark (so the decision
 * survives SYN cookies, whose completing ACK is never queued) and acts on
 * the decision bits.  With net.ipv4.tcp_fwmark_accept=1 the accepted
 * socket inherits the mark, which is how a worker learns the zone,
 * direction and policy of a session without asking the classifier.
 *
 *   bit  0      MARK_TPROXY     set by the ruleset on packets it delivers
 *                               locally (policy routing: fwmark 0x1 iif ZONE-IF
 *                               lookup the local table)
 *   bit  1      MARK_UPSTREAM   SO_MARK of the daemon's own upstream sockets;
 *                               exempts them from masquerading, which would
 *                               silently undo source spoofing
 *   bit  2      MARK_SMTP       set by the ruleset on every packet of forwarded
 *                               SMTP (its queue chain); iptables-nft's NFQUEUE
 *                               rule queues the SYNs that carry it where the
 *                               kernel lacks the nft queue statement.  The
 *                               classifier's verdict replaces the whole mark,
 *                               so it never reaches a socket
 *   bits 4-5    decision        0 none, 1 intercept, 2 bypass, 3 reject
 *   bit  6      MARK_INBOUND    arrived on an external-zone interface
 *   bits 8-15   from-zone       zone index + 1 (0: unknown)
 *   bits 16-23  policy          policy index + 1 (0: none)
 *   bits 24-31  reserved (zero)
 */
#ifndef SMTPGW_MARK_H
#define SMTPGW_MARK_H

#include <stdbool.h>
#include <stdint.h>

#define MARK_TPROXY 0x1u
#define MARK_UPSTREAM 0x2u
#define MARK_SMTP 0x4u
#define MARK_DECISION_MASK 0x30u
#define MARK_DECISION_SHIFT 4
#define MARK_INBOUND 0x40u
#define MARK_ZONE_SHIFT 8
#define MARK_POLICY_SHIFT 16
/* The bits the ruleset saves into and restores from the conntrack mark. */
#define MARK_CT_MASK 0x00ffff70u

/*
 * The TCP ports the ruleset steers (smtp_ports): SMTP, and SMTP over
 * implicit TLS.  A policy's tls-support picks among these two.
 */
#define MARK_PORT_SMTP 25
#define MARK_PORT_SMTPS 465

enum decision {
	DECISION_NONE = 0,
	DECISION_INTERCEPT = 1,
	DECISION_BYPASS = 2,
	DECISION_REJECT = 3,
};

struct mark_fields {
	enum decision decision;
	bool inbound;
	int zone;   /* index into config zones, -1 unknown */
	int policy; /* index into config policies, -1 none */
};

/* Zone and policy indices must be < MARK_MAX_INDEX. */
#define MARK_MAX_INDEX 255

uint32_t mark_encode(const struct mark_fields *f);
/* Returns -1 if the classification bits are malformed. */
int mark_decode(uint32_t mark, struct mark_fields *f);
const char *decision_name(enum decision d);

#endif
