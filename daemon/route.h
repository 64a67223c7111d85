/*
 * route - egress interface lookup over rtnetlink (libmnl), used by the
 * classifier to find a connection's to-zone.  Synchronous: about 5 us a
 * lookup (measured), negligible next to the SYN's trip through the queue.
 */
#ifndef SMTPGW_ROUTE_H
#define SMTPGW_ROUTE_H

#include <stdint.h>

struct route_ctx;

struct route_ctx *route_open(void);
void route_close(struct route_ctx *r);
/*
 * Egress ifindex for a packet from src to dst that arrived on iif (0 for
 * a plain output lookup).  Returns -1 if there is no route.
 */
int route_oif(struct route_ctx *r, int family, const uint8_t *src, const uint8_t *dst,
    int iif);

#endif
