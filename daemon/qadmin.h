/*
 * qadmin - the admin's side of the quarantine (quarantine.h): list, show,
 * dump, delete and release its records.  `smtpgw -c FILE -Q VERB [ID]`
 * runs it (as root, for smtpgwctl quarantine); it never runs inside the
 * daemon.
 *
 *   list          one line per record, tab-separated: ID, time (UTC),
 *                 direction, verdict, state (held / released / releasing),
 *                 size, sender, recipients (count), reason
 *   show ID       the record's envelope and verdict, its state, and the
 *                 message's header section
 *   raw ID        the original message, octet for octet
 *   delete ID     remove it (and its release mark)
 *   release ID    deliver the original to its original recipients
 *                 through its original destination, once
 *
 * Release: a fresh SMTP session from the gateway itself (never through
 * the interception, which sees forwarded traffic only) to the original
 * destination address and port: EHLO, TLS, MAIL FROM with the original
 * sender, RCPT TO each original recipient, DATA, the message dot-stuffed.
 * TLS: implicit on port 465; otherwise STARTTLS when the action
 * (as configured now) wants encryption to the recipient or the original
 * upstream leg was encrypted -- required then, unless the action only
 * prefers it and the original leg was cleartext.  The certificate is
 * judged with the action's TLS profile (tls_judge) against the name the
 * original was judged on; a failure the profile blocks stops the release.
 *
 * Once: "<ID>.released" is created with O_EXCL before anything is sent
 * (a second release, even a concurrent one, refuses); it is removed again
 * when the release fails before the destination accepted the message,
 * so it can be tried again; after the destination's 250 it records who,
 * when, the destination's reply and the recipients it refused.  Every
 * release and deletion goes to the audit log (quarantine.h) and, when the
 * configuration logs to syslog, to syslog.  Who: $SMTPGW_ADMIN (set by
 * smtpgwctl), else the login name, with $SSH_CLIENT's address when set.
 *
 * Exit status: 0 done, 1 failed (why on stderr), 2 usage.
 */
#ifndef SMTPGW_QADMIN_H
#define SMTPGW_QADMIN_H

#include "config.h"

#define QADMIN_TIMEOUT_S 60      /* connect, each command's reply */
#define QADMIN_DATA_TIMEOUT_S 600 /* the reply to the final dot (RFC 5321 4.5.3.2.6) */

int qadmin_main(const struct config *c, int argc, char **argv);

#endif
