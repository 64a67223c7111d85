/*
 * listen - the transparent listeners that TPROXY delivers to.
 *
 * Bound to 127.0.0.1 / ::1 only: a connection made straight to the
 * listener port can then only come from the box itself, and its accepted
 * socket has no classification mark, so the worker refuses it instead of
 * connecting to itself.
 */
#ifndef SMTPGW_LISTEN_H
#define SMTPGW_LISTEN_H

#include <stddef.h>
#include <stdint.h>

/* Returns the listening fd, or -1 with err set.  Needs CAP_NET_ADMIN/RAW. */
int listen_transparent(int family, uint16_t port, char *err, size_t errlen);

#endif
