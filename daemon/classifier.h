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

struct classifier *classifier_open(unsigned queue_num, char *err, size_t errlen);
void classifier_close(struct classifier *q);
/* Runs until *stop becomes non-zero; *reload asks to re-read the config. */
int classifier_run(struct classifier *q, const struct config *c, volatile int *stop);

#endif
