/*
 * blocked - the blocked sites list: a worker asks, the blocker process
 * adds the client's address to the kernel's set for a while, and the
 * ruleset refuses its next SMTP SYNs with a TCP reset
 * (nftables/smtpgw.nft.in, table smtpgw_blocked).
 *
 * Workers have no capabilities, so they cannot touch nftables.  The
 * blocker is a process of its own, started once by the master like the
 * signer: user + CAP_NET_ADMIN, no network input, nothing of the master's
 * but its registration socket (every other descriptor is closed).  It is
 * not the classifier: an nft command takes a netlink round trip and a
 * cache fetch, and SYNs must never wait behind one; nor should the
 * process that reads the queue carry nft's parser.  A reload restarts the
 * blocker with the new settings (exceptions, default timeout, rate) after
 * it has carried out what it already received.
 *
 * Channel: each worker makes a SOCK_SEQPACKET socketpair and passes one
 * end to the blocker over the shared registration socket (SCM_RIGHTS),
 * as with the signer.  Requests go one way (blocked_req.h format); the
 * blocker never answers, so a worker never waits for it.  What the
 * blocker does, it logs:
 *   blocked add addr=A seconds=N reason=R sid=S
 *   blocked refused addr=A reason=WHY sid=S [error="..."]
 * WHY: exception (blocked-sites-exceptions), rate-limit, list-full (the
 * set is at blocked-sites-max), no-ruleset (table smtpgw_blocked is not
 * loaded), nft (another nft error), malformed (a request our encoder
 * never makes: a bug, or a worker taken over), channels-full (a
 * registration beyond BLOCKED_MAX_CHANNELS, closed).  Refusal lines are limited
 * to 20 per 10 s, the rest counted ("blocked refused suppressed=N").
 * A request for an address already on the list sets it to the new time
 * and comment; requests for one address within BLOCKED_RECENT_MS
 * (blocked_req.h) after it was added are carried out once.
 *
 * Limits: BLOCKED_QUEUE requests wait in a worker while its channel is
 * full (more are dropped and counted); the blocker takes
 * blocked-sites-rate requests per second (token bucket, blocked_req.h),
 * and the kernel set holds blocked-sites-max addresses per family (its
 * `size`): a compromised worker can neither fill the set beyond that nor
 * make the blocker run more than `rate` nft commands a second.
 */
#ifndef SMTPGW_BLOCKED_H
#define SMTPGW_BLOCKED_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"
#include "config.h"

#define BLOCKED_QUEUE 64          /* requests a worker holds while its channel is full */
#define BLOCKED_MAX_CHANNELS 256  /* workers the blocker serves at once */

/*
 * Master: fork the blocker with c's settings (the registration socket is
 * made here, before any worker exists).  0, or -1 with err set.
 */
int blocked_start(const struct config *c, char *err, size_t errlen);
/* Master: a child exited; true if it was the blocker (it is started again). */
bool blocked_reaped(pid_t pid);
/* Master, after a reload: the blocker restarts with c's settings. */
void blocked_reconfigure(const struct config *c);
void blocked_stop(void);
/*
 * In every child the master forks (but the blocker): closes the
 * blocker's end of the registration socket, so no other process can read
 * the channels workers register.
 */
void blocked_child_init(void);
/*
 * In a child that never asks for a block (the classifier, the signer):
 * both ends closed, so it can neither read nor register channels.
 */
void blocked_child_detach(void);

/*
 * Worker (or any process with an ev loop, forked after blocked_start):
 * ask for addr to be blocked for `seconds` (0: blocked-sites-timeout;
 * at most BLOCKED_TIMEOUT_MAX), for `reason` (a log token,
 * [A-Za-z0-9._-]{1,63}: a rule's name, say), by session sid.  Never
 * blocks: the request is sent at once or queued (BLOCKED_QUEUE) until the
 * channel drains; the blocker decides and logs.  The caller then closes
 * the session itself (a `block` is a drop first).
 *
 * Returns 0 when the request was sent or queued; -1 when it was refused
 * here (an address that is never blocked, a bad reason or seconds) or
 * dropped (queue full, no blocker) - logged with the session id either
 * way.  The rule engine calls this for its `block` action.
 */
int blocked_request(const union sockaddr_any *addr, unsigned seconds, const char *reason,
    uint64_t sid);

/* Worker: requests sent, and dropped (queue full, no blocker, refused here). */
void blocked_stats(unsigned long *sent, unsigned long *dropped);

#endif
