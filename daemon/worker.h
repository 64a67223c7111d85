/*
 * worker - a network-facing process: accepts intercepted connections on
 * the shared transparent listeners and runs their sessions in one event
 * loop.  Several workers share the listeners (EPOLLEXCLUSIVE wakes one).
 *
 * Signals: SIGTERM ends every session and exits; SIGUSR1 (after a config
 * reload) stops accepting and exits once the last session has ended, so
 * sessions in progress finish under the configuration they started with.
 * A worker started on standby (a reload's new generation, before the
 * switch) polls no listener until SIGHUP says its generation is live: it
 * never accepts a connection the previous generation's classifier
 * marked, and one killed because the reload failed never had a session.
 */
#ifndef SMTPGW_WORKER_H
#define SMTPGW_WORKER_H

#include <stdbool.h>

#include "config.h"

int worker_main(const struct config *c, const int *lfds, int nlfds, bool standby);

#endif
