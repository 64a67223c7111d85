/*
 * classify - decide what happens to a new SMTP connection, from its SYN.
 *
 * Pure functions (no I/O), so the decision table is unit-tested and the
 * packet parser fuzzed.  The classifier process (classifier.c) feeds them the
 * ingress interface from the queue metadata, the egress interface from a
 * route lookup, and the addresses and port from the packet.
 *
 * Rules, in order:
 *  1. the ingress interface belongs to no zone          -> reject
 *  2. the first enabled policy whose from-zones, to-zones, source and
 *     destination prefixes match and whose TLS Support covers the port
 *     (disabled: 25, enabled: 25+465, required: 465) decides:
 *     type proxy -> intercept, type packet-filter -> bypass
 *  3. no such policy                                    -> reject
 * Direction: inbound when the ingress zone is external, else outbound.
 */
#ifndef SMTPGW_CLASSIFY_H
#define SMTPGW_CLASSIFY_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "mark.h"

struct classify_input {
	char in_ifname[IFNAMSIZ];
	char out_ifname[IFNAMSIZ]; /* "" when the route lookup failed */
	int family;                /* AF_INET or AF_INET6 */
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
};

struct classify_result {
	struct mark_fields f;
	int to_zone;
	const char *reason; /* short token for the log */
};

void classify(const struct config *c, const struct classify_input *in,
    struct classify_result *out);

/*
 * Parse an IPv4 or IPv6 packet that carries a TCP segment (as queued by the
 * ruleset) into in->family, addresses and ports.  Returns -1 for anything
 * malformed or not TCP; never reads beyond len.
 */
int classify_parse_packet(const uint8_t *pkt, size_t len, struct classify_input *in);

#endif
