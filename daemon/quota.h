/*
 * quota - concurrent-session caps shared by all workers.
 *
 * The master maps one shared table before it forks; each worker owns one
 * slot and writes only its own counters (no locks); admission sums every
 * slot.  Per-client counts are kept in QUOTA_BUCKETS buckets chosen by a
 * keyed hash of the client address: clients that collide share a bucket,
 * which can only make the cap stricter, and the random key keeps a remote
 * party from choosing collisions.  When a worker dies the master clears
 * its slot, so a crash never leaks capacity.
 */
#ifndef SMTPGW_QUOTA_H
#define SMTPGW_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

#define QUOTA_BUCKETS 4096

/* Master, before forking: slots = the most children alive at once. */
int quota_init(unsigned slots);
void quota_clear_slot(unsigned slot);
/* Child: which slot this process writes. */
void quota_use_slot(unsigned slot);

unsigned quota_bucket(const union sockaddr_any *client);
/* 0 if admitted; else which cap refused ("max-sessions", "max-sessions-per-client"). */
const char *quota_admit(unsigned bucket, unsigned max_total, unsigned max_per_client);
void quota_take(unsigned bucket);
void quota_release(unsigned bucket);
unsigned quota_total(void);

#endif
