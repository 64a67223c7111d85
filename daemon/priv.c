/*
 * priv - drop to an unprivileged user with a minimal capability set.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "priv.h"

int
priv_drop(const char *user, const cap_value_t *keep, int nkeep, char *err, size_t errlen)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return priv_drop_ids(geteuid(), getegid(), keep, nkeep, err, errlen);
	pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, errlen, "user \"%s\" does not exist", user);
		return -1;
	}
	return priv_drop_ids(pw->pw_uid, pw->pw_gid, keep, nkeep, err, errlen);
}

int
priv_drop_ids(uid_t uid, gid_t gid, const cap_value_t *keep, int nkeep, char *err,
    size_t errlen)
{
	cap_t caps;
	pid_t parent = getppid();
	int pdeath = 0;

	(void)prctl(PR_GET_PDEATHSIG, &pdeath);
	if (geteuid() == 0) {
		/* Keep permitted capabilities across the uid change, then trim them. */
		if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 ||
		    setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
			snprintf(err, errlen, "switch to uid %u gid %u: %s", (unsigned)uid,
			    (unsigned)gid, strerror(errno));
			return -1;
		}
		/*
		 * The kernel clears the parent-death signal when the
		 * credentials change: arm it again, or a child would outlive a
		 * killed master and keep the queue and the listeners.  A parent
		 * that died in between never sends it: act as if it had.
		 */
		if (pdeath != 0) {
			(void)prctl(PR_SET_PDEATHSIG, pdeath);
			if (getppid() != parent)
				(void)raise(pdeath);
		}
	}
	caps = cap_init();
	if (caps == NULL) {
		snprintf(err, errlen, "cap_init: %s", strerror(errno));
		return -1;
	}
	if (nkeep > 0 && (cap_set_flag(caps, CAP_PERMITTED, nkeep, keep, CAP_SET) < 0 ||
	    cap_set_flag(caps, CAP_EFFECTIVE, nkeep, keep, CAP_SET) < 0)) {
		snprintf(err, errlen, "cap_set_flag: %s", strerror(errno));
		cap_free(caps);
		return -1;
	}
	if (cap_set_proc(caps) < 0) {
		snprintf(err, errlen, "cap_set_proc: %s", strerror(errno));
		cap_free(caps);
		return -1;
	}
	cap_free(caps);
	(void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	/* Nothing this process runs may gain privileges back. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "no_new_privs: %s", strerror(errno));
		return -1;
	}
	/*
	 * Not dumpable: no ptrace, no /proc/PID/mem, no core file, even from
	 * a process of the same uid (a worker must never read the signer's
	 * keys, nor a worker another's sessions).  The kernel already clears
	 * it on the uid change; said here so it also holds without one.
	 */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		snprintf(err, errlen, "dumpable: %s", strerror(errno));
		return -1;
	}
	return 0;
}
