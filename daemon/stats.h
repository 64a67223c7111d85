/*
 * stats - counters since the master started, shared by all workers.
 *
 * The master maps one table before it forks; each worker adds only to its
 * own slot (no locks: one writer per slot, readers sum); a respawned
 * worker keeps adding to its slot, so nothing counted is lost when a
 * worker dies.  The master reads the sums for its status file
 * (smtpgwctl status).  Before stats_init() (unit tests, smtpgw -t) every
 * call is a no-op.
 */
#ifndef SMTPGW_STATS_H
#define SMTPGW_STATS_H

#include <stdint.h>

enum stat_counter {
	STAT_INSPECTED, /* messages given to the content inspector */
	STAT_DENIED,    /* ... refused by it (deny, drop, block) */
	STAT_STRIPPED,  /* ... delivered with parts stripped */
	STAT_ALARMS,    /* alarm-flagged rule matches */
	STAT_COUNT,
};

/* Master, before forking: slots = the most children alive at once. */
int stats_init(unsigned slots);
/* Child: which slot this process adds to. */
void stats_use_slot(unsigned slot);
void stats_add(enum stat_counter c, uint64_t n);
uint64_t stats_sum(enum stat_counter c);
const char *stats_name(enum stat_counter c);

#endif
