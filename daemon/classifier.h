/*
 * classifier - the classifier process: reads queued SYNs from netfilter
 * (libnetfilter_queue's libmnl-based API), classifies them (classify.c)
 * and answers each with an ACCEPT verdict carrying the decision mark
 * (mark.h).  The ruleset acts on the mark: tproxy, forward, or reset.
 *
 * The queue is opened and bound by the privileged master (classifier_open); the
 * classifier child keeps CAP_NET_ADMIN only, because nfnetlink checks it on
 * every verdict message.
 */
#ifndef SMTPGW_CLASSIFIER_H
#define SMTPGW_CLASSIFIER_H

#include "config.h"

struct classifier;

/* Opens and binds queue queue_num (master, privileged); NULL with err set. */
struct classifier *classifier_open(unsigned queue_num, char *err, size_t errlen);
void classifier_close(struct classifier *q);
/*
 * Answers queued SYNs by c until *stop becomes non-zero (the child's
 * signal handler sets it); 0 then, -1 when the queue socket fails.  The
 * configuration never changes under a running classifier: a reload
 * starts a new classifier child with the new one.
 */
int classifier_run(struct classifier *q, const struct config *c, volatile int *stop);

#endif
