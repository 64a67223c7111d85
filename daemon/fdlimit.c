/*
 * fdlimit - RLIMIT_NOFILE for max-sessions (see fdlimit.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fdlimit.h"

rlim_t
fdlimit_need(unsigned max_sessions)
{
	rlim_t sessions = (rlim_t)max_sessions * FDLIMIT_PER_SESSION;

	return FDLIMIT_BASE + sessions + sessions / FDLIMIT_MARGIN_DIV;
}

unsigned
fdlimit_sessions_for(rlim_t limit)
{
	unsigned lo = 0, hi = 4000000000u;

	if (limit < fdlimit_need(1))
		return 0;
	/* need() is monotonic: the largest n with need(n) <= limit */
	while (lo < hi) {
		unsigned mid = lo + (hi - lo + 1) / 2;
		if (fdlimit_need(mid) <= limit)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

int
fdlimit_plan(unsigned max_sessions, rlim_t soft, rlim_t hard, rlim_t nr_open,
    bool may_raise_hard, struct rlimit *out, char *err, size_t errlen)
{
	rlim_t need = fdlimit_need(max_sessions);
	rlim_t ceiling;

	out->rlim_cur = soft;
	out->rlim_max = hard;
	if (soft == RLIM_INFINITY || need <= soft)
		return 0;
	if (hard == RLIM_INFINITY || need <= hard) {
		out->rlim_cur = need;
		return 0;
	}
	if (may_raise_hard && need <= nr_open) {
		out->rlim_cur = out->rlim_max = need;
		return 0;
	}
	ceiling = may_raise_hard ? (nr_open > hard ? nr_open : hard) : hard;
	snprintf(err, errlen, "max-sessions %u needs %llu file descriptors per worker, but the "
	    "limit can be raised only to %llu (%s): set max-sessions to %u or less, or raise %s",
	    max_sessions, (unsigned long long)need, (unsigned long long)ceiling,
	    may_raise_hard ? "fs.nr_open"
	        : "the hard RLIMIT_NOFILE, and smtpgw lacks CAP_SYS_RESOURCE",
	    fdlimit_sessions_for(ceiling),
	    may_raise_hard ? "the sysctl fs.nr_open" : "the hard limit (ulimit -Hn)");
	return -1;
}

static rlim_t
read_nr_open(void)
{
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");
	unsigned long long v = 0;

	if (f == NULL)
		return 1024 * 1024; /* the kernel's default */
	if (fscanf(f, "%llu", &v) != 1)
		v = 1024 * 1024;
	fclose(f);
	return (rlim_t)v;
}

static bool
have_sys_resource(void)
{
	cap_t caps = cap_get_proc();
	cap_flag_value_t v = CAP_CLEAR;

	if (caps == NULL)
		return false;
	(void)cap_get_flag(caps, CAP_SYS_RESOURCE, CAP_EFFECTIVE, &v);
	cap_free(caps);
	return v == CAP_SET;
}

int
fdlimit_raise(unsigned max_sessions, bool check_only, char *err, size_t errlen)
{
	struct rlimit cur, want;

	if (getrlimit(RLIMIT_NOFILE, &cur) < 0) {
		snprintf(err, errlen, "getrlimit: %s", strerror(errno));
		return -1;
	}
	/*
	 * -t answers for the daemon, which starts as root: a check by another
	 * user assumes root may raise the hard limit; root answers for itself.
	 */
	if (fdlimit_plan(max_sessions, cur.rlim_cur, cur.rlim_max, read_nr_open(),
	    (check_only && geteuid() != 0) || have_sys_resource(), &want, err, errlen) < 0)
		return -1;
	if (check_only || (want.rlim_cur == cur.rlim_cur && want.rlim_max == cur.rlim_max))
		return 0;
	if (setrlimit(RLIMIT_NOFILE, &want) < 0) {
		snprintf(err, errlen, "max-sessions %u: cannot raise RLIMIT_NOFILE to %llu: %s",
		    max_sessions, (unsigned long long)want.rlim_cur, strerror(errno));
		return -1;
	}
	return 0;
}
