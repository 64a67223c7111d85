/*
 * fdlimit - the file descriptors a worker needs for max-sessions, and
 * RLIMIT_NOFILE raised to that before any child is forked.
 *
 * The session cap is shared by all workers and the kernel picks which
 * worker accepts, so one worker may end up holding every session: each
 * worker's limit covers the whole of max-sessions.  A session holds two
 * sockets (client and destination; TLS runs over them and adds none); on
 * top come FDLIMIT_BASE descriptors that are not sessions (stdio, the
 * listeners, epoll, signalfd, the signer channels, the reserve descriptor
 * for refusing when full, syslog) and a margin of 1/FDLIMIT_MARGIN_DIV
 * for connections being accepted and refused at that moment.
 *
 * The master raises the soft limit, and the hard one when it may
 * (CAP_SYS_RESOURCE, up to fs.nr_open), at start and on a reload that
 * needs more; children inherit it.  A limit that cannot be reached
 * refuses the configuration, saying which max-sessions would fit.  It is
 * never lowered.
 */
#ifndef SMTPGW_FDLIMIT_H
#define SMTPGW_FDLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>

#define FDLIMIT_BASE 64
#define FDLIMIT_PER_SESSION 2
#define FDLIMIT_MARGIN_DIV 16

/* Descriptors one worker needs for max_sessions (pure). */
rlim_t fdlimit_need(unsigned max_sessions);
/* The largest max-sessions whose need fits in limit (0 if none, pure). */
unsigned fdlimit_sessions_for(rlim_t limit);

/*
 * The limits to set (pure): from the current soft/hard limits, the
 * kernel's ceiling nr_open, and whether the hard limit may be raised.
 * 0 with *out set (equal to the current limits when nothing changes), or
 * -1 with err saying what fits.
 */
int fdlimit_plan(unsigned max_sessions, rlim_t soft, rlim_t hard, rlim_t nr_open,
    bool may_raise_hard, struct rlimit *out, char *err, size_t errlen);

/*
 * Raise this process's RLIMIT_NOFILE for max_sessions; with check_only,
 * only say whether a start as root could (smtpgw -t).  0, or -1 with err.
 */
int fdlimit_raise(unsigned max_sessions, bool check_only, char *err, size_t errlen);

#endif
