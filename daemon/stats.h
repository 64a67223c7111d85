/*
 * stats - counters since the master started, shared by all workers.
 *
 * The master maps one table before it forks; each worker adds only to its
 * own slot (no locks: one writer per slot, readers sum); a respawned
 * worker keeps adding to its slot, so nothing counted is lost when a
 * worker dies.  The master reads the sums for its status file
 * (smtpgwctl status).  Before stats_init() (unit tests, smtpgw -t) every
 * call is a no-op.
 *
 * Beside the counters:
 *  - gauges, one value for all processes (the quarantine's size);
 *  - each slot's scanner status: the text its worker's scanner pools
 *    print (scanner_pool_status, "key=value" lines), published every
 *    STATS_SCAN_PUBLISH_MS and read by the master under a sequence
 *    counter (a reader never takes a half-written text), merged into the
 *    status file by scanstat.c.  At most STATS_SCAN_TEXT octets a slot.
 */
#ifndef SMTPGW_STATS_H
#define SMTPGW_STATS_H

#include <stddef.h>
#include <stdint.h>

enum stat_counter {
	STAT_INSPECTED, /* messages given to the content inspector */
	STAT_DENIED,    /* ... refused by it (deny, drop, block) */
	STAT_STRIPPED,  /* ... delivered with parts stripped */
	STAT_ALARMS,    /* alarm-flagged rule matches */
	STAT_VIRUSES,   /* messages in which clamd found a virus */
	STAT_SPAM_REJECTED, /* refused for rspamd's verdict */
	STAT_SPAM_MARKED,   /* delivered with spam headers (and subject) */
	STAT_SCAN_TEMPFAIL, /* 451 because a scanner was down or failed */
	STAT_UNSCANNED,     /* passed without a scanner's verdict (an "allow" setting) */
	STAT_QUARANTINED,   /* records written */
	STAT_QUARANTINE_FAILED, /* records that could not be written */
	STAT_COUNT,
};

enum stat_gauge {
	GAUGE_QUARANTINE_BYTES, /* octets in quarantine-dir (quarantine.h) */
	GAUGE_COUNT,
};

#define STATS_SCAN_TEXT 16384
#define STATS_SCAN_PUBLISH_MS 2000

/* Master, before forking: slots = the most children alive at once. */
int stats_init(unsigned slots);
/* Child: which slot this process adds to. */
void stats_use_slot(unsigned slot);
void stats_add(enum stat_counter c, uint64_t n);
uint64_t stats_sum(enum stat_counter c);
const char *stats_name(enum stat_counter c);

void stats_gauge_add(enum stat_gauge g, int64_t delta);
void stats_gauge_set(enum stat_gauge g, uint64_t v);
uint64_t stats_gauge(enum stat_gauge g);

/* Worker: replace its slot's scanner text (cut at STATS_SCAN_TEXT - 1). */
void stats_scan_publish(const char *text, size_t len);
/* Master: a copy of slot's scanner text into out (NUL-terminated); its length. */
size_t stats_scan_read(unsigned slot, char *out, size_t outsz);
/* Master: a slot is free again (its child is gone): its text goes. */
void stats_scan_clear(unsigned slot);

#endif
