/*
 * priv - privilege separation.  The master does the privileged setup
 * (transparent listeners, the netfilter queue) and keeps root only to
 * respawn its children.  Children switch to the configured user at once
 * and keep only the capabilities their job needs:
 *   classifier  CAP_NET_ADMIN  nfnetlink checks it on every verdict
 *   worker      CAP_NET_RAW    IP_TRANSPARENT + SO_MARK on upstream sockets,
 *                              only when spoof-source is on; else nothing
 *   signer      nothing        it reads the CA keys before the drop
 * Each role has a user of its own (user, signer-user, classifier-user),
 * and each worker a uid of its own (worker-uid-base + its slot), so no
 * child can signal another (the blocker runs as user, which no worker
 * is); every child is also
 * PR_SET_NO_NEW_PRIVS and not dumpable (no ptrace, no /proc/PID/mem).
 */
#ifndef SMTPGW_PRIV_H
#define SMTPGW_PRIV_H

#include <stddef.h>
#include <sys/capability.h>

#include <sys/types.h>

int priv_drop(const char *user, const cap_value_t *keep, int nkeep, char *err, size_t errlen);
/* The same to a uid and gid of their own (a worker's: no account needed). */
int priv_drop_ids(uid_t uid, gid_t gid, const cap_value_t *keep, int nkeep, char *err,
    size_t errlen);

#endif
