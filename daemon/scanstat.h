/*
 * scanstat - the scanner status of every worker, merged into one for the
 * status file (smtpgwctl status).  Each worker has pools of its own
 * (scanner.h) and publishes what scanner_pool_status() prints
 * (stats_scan_publish); the master merges the texts of its children:
 *
 *   <engine>.servers            servers seen (distinct addresses)
 *   <engine>.workers            workers that reported the engine
 *   <engine>.queued, .unavailable, .too-large         summed
 *   <engine>.N.address          one block per address, in the order first seen
 *   <engine>.N.health           up / down / unchecked when every worker
 *                               agrees, else "mixed"
 *   <engine>.N.since            the latest health change
 *   <engine>.N.last-error       the latest one of any worker,
 *   <engine>.N.last-error-time  and its time
 *   <engine>.N.<other>          summed (requests, replies, errors,
 *                               timeouts, active, idle, the protocol's
 *                               counters: infected, reject, ...)
 *
 * Counters count since each worker started (a reload starts new ones).
 * Pure; bounded: SCANSTAT_ENGINES engines, SCANSTAT_SERVERS addresses
 * each, SCANSTAT_ITEMS items per server; lines beyond are ignored, and so
 * are lines whose engine or item name is not [a-z0-9-]+ (the texts come
 * from workers, which the master does not trust).
 */
#ifndef SMTPGW_SCANSTAT_H
#define SMTPGW_SCANSTAT_H

#include <stddef.h>
#include <stdio.h>

#define SCANSTAT_ENGINES 4
#define SCANSTAT_SERVERS 16
#define SCANSTAT_ITEMS 32

/* Merge n texts (NULL or "" skipped) and print the result to f. */
void scanstat_merge(const char *const *texts, size_t n, FILE *f);

#endif
