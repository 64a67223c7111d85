/*
 * smtp_caps - EHLO capability mediation.  The client is shown what the
 * destination offers AND smtpgw implements AND the configuration allows;
 * everything else (XCLIENT, XFORWARD, ETRN, private X- extensions, ...)
 * is removed.  CHUNKING is offered even when the destination lacks it:
 * the engine converts BDAT to DATA.  STARTTLS is offered when the proxy
 * action lets the client encrypt (smtpgw terminates it), whatever the
 * destination offers; it is never offered on a leg that is already TLS.
 */
#ifndef SMTPGW_SMTP_CAPS_H
#define SMTPGW_SMTP_CAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"

#define CAP_PIPELINING 0x001u
#define CAP_SIZE 0x002u
#define CAP_8BITMIME 0x004u
#define CAP_SMTPUTF8 0x008u
#define CAP_ENHANCEDSTATUSCODES 0x010u
#define CAP_DSN 0x020u
#define CAP_CHUNKING 0x040u
#define CAP_AUTH 0x080u
#define CAP_STARTTLS 0x100u

struct caps {
	unsigned flags;
	uint64_t size;      /* SIZE value; 0 = none given */
	char auth[256];     /* AUTH mechanisms as offered */
};

/*
 * Parse an EHLO reply (code 250; lines as text without "250-") into up.
 * lines[0] is the greeting line.
 */
void caps_parse(struct caps *up, const char *const *lines, const size_t *lens, int nlines);
/*
 * Build the reply shown to the client into out: "250-<greeting>\r\n"
 * then the mediated keywords.  Returns the flags offered in *shown.
 */
int caps_render(const struct caps *up, const struct smtp_limits *lim, const char *greeting,
    size_t greetlen, struct buf *out, struct caps *shown, bool offer_starttls);

/*
 * The capability flags as keyword names for logs, in the order of the
 * defines above, comma-separated: "PIPELINING,SIZE,8BITMIME"; "-" for
 * none; bits without a name as one hexadecimal number at the end
 * ("DSN,0x200").  Pure.  CAPS_NAMES_SIZE always holds every flag; a
 * smaller out is cut at a name and ends with "...".  Returns out.
 */
#define CAPS_NAMES_SIZE 128
const char *caps_names(unsigned flags, char *out, size_t outlen);

#endif
