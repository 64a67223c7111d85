/*
 * status - the master's state, for admins and tools, as a key=value file.
 *
 * The master (main.c) rewrites the file given with -s at start, after
 * every reload attempt, when a child dies or is respawned, and on SIGUSR2;
 * it removes it at a clean stop.  Each write goes to FILE.tmp and is
 * renamed over FILE, so a reader never sees half of it.  One "key=value"
 * per line; the value is the rest of the line and never holds a newline.
 * `smtpgwctl status` shows it; `smtpgwctl apply` sends SIGHUP, waits for
 * "reloads" to move and accepts the reload only on "reload-result=ok".
 *
 * Keys (in this order):
 *   format           1 (bumped when a key changes meaning)
 *   seq              bumped on every write (SIGUSR2 readers wait for it)
 *   updated          time of this write, seconds since the epoch
 *   pid, version, config, started (epoch)
 *   generation       1 at start, +1 for each reload that took effect
 *   reloads          SIGHUPs handled (whatever their result)
 *   reload-result    none | ok | rejected (the running configuration
 *                    stays) | failed (the new children did not start)
 *   reload-error     why, for rejected and failed; empty otherwise
 *   reload-time      epoch of the last reload attempt, 0 if none
 *   classifier-pid   0 when there is none
 *   classifier       running | down
 *   signer-pid       the current generation's signer, 0 when there is none
 *   signer           running | down
 *   workers          workers of the current generation alive
 *   workers-expected how many the configuration asks for
 *   workers-draining old-generation workers finishing their sessions
 *   worker-pids      current generation, space separated
 *   sessions         sessions now, all workers (quota_total)
 *   child-deaths     children that died unexpectedly since start
 *   respawns         children respawned since start
 *   viruses, spam-rejected, spam-marked, scan-tempfail, unscanned
 *                    content scanning since start (stats.h)
 *   quarantined, quarantine-failed   records written / not written
 *   quarantine-bytes the quarantine's size now; quarantine-dir where
 *   clamd.*, rspamd.* each scanner pool, merged over the workers
 *                    (scanstat.h: health, last error, counters)
 */
#ifndef SMTPGW_STATUS_H
#define SMTPGW_STATUS_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#define STATUS_PIDS_MAX 1024

enum reload_result {
	RELOAD_NONE,
	RELOAD_OK,
	RELOAD_REJECTED,
	RELOAD_FAILED,
};

struct status {
	unsigned long seq;
	pid_t pid;
	const char *version;
	const char *config;
	time_t started;
	unsigned generation;
	unsigned reloads;
	enum reload_result reload_result;
	char reload_error[512];
	time_t reload_time;
	pid_t classifier_pid;
	bool classifier_alive;
	pid_t signer_pid;
	bool signer_alive;
	unsigned workers;
	unsigned workers_expected;
	unsigned workers_draining;
	char worker_pids[STATUS_PIDS_MAX];
	unsigned sessions;
	unsigned child_deaths;
	unsigned respawns;
	/* content inspection since start (stats.h): messages, refused, stripped, alarms */
	unsigned long long inspected, inspect_denied, inspect_stripped, alarms;
	unsigned long long viruses, spam_rejected, spam_marked, scan_tempfail, unscanned;
	unsigned long long quarantined, quarantine_failed, quarantine_bytes;
	const char *quarantine_dir;
	const char *scanners; /* scanstat_merge() output, or NULL */
};

const char *reload_result_name(enum reload_result r);
/* Print st in the file format (pure: no clock, no I/O beyond f). */
void status_print(const struct status *st, time_t now, FILE *f);
/* Write st to path atomically (path.tmp, then rename); -1 with err set. */
int status_write(const char *path, const struct status *st, char *err, size_t errlen);

#endif
