/*
 * priv - privilege separation.  The master does the privileged setup
 * (transparent listeners, the netfilter queue) and keeps root only to
 * respawn its children.  Children switch to the configured user at once
 * and keep only the capabilities their job needs:
 *   classifier  CAP_NET_ADMIN  nfnetlink checks it on every verdict
 *   worker      CAP_NET_RAW    IP_TRANSPARENT + SO_MARK on upstream sockets,
 *                              only when spoof-source is on; else nothing
 *   signer      nothing        it reads the CA keys before the drop
 * Each role has a user of its own (user, signer-user, classifier-user), so
 * no child can signal one of another role; every child is also
 * PR_SET_NO_NEW_PRIVS and not dumpable (no ptrace, no /proc/PID/mem).
 */
#ifndef SMTPGW_PRIV_H
#define SMTPGW_PRIV_H

#include <stddef.h>
#include <sys/capability.h>

int priv_drop(const char *user, const cap_value_t *keep, int nkeep, char *err, size_t errlen);

#endif
