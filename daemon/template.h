/*
 * template - the deny message: a text with %(name)% variables, rendered
 * either as an SMTP reply text or as the body of the text part that
 * replaces a stripped attachment.  Pure, bounded: output never exceeds
 * the caller's buffer (always NUL-terminated), every value is cut at
 * TPL_VALUE_MAX octets.
 *
 * Variables: %(reason)% %(type)% %(filename)% %(virus)% %(action)%
 * %(recovery)%.  Values come from the mail (file names, types) and are
 * hostile; the template comes from the configuration.  Both go through
 * the same filter:
 *   TPL_REPLY       one line of printable US-ASCII: line ends and controls
 *                   become a space, anything 8-bit becomes '?' (one per
 *                   character), trailing spaces removed -- safe after
 *                   "554 5.7.1 " with no way to start a new reply line.
 *   TPL_BODY        UTF-8 text with CRLF line ends (the template's own line
 *                   ends; a value's become a space), controls other than
 *                   TAB become a space, invalid UTF-8 becomes U+FFFD, lines
 *                   are broken before TPL_LINE_MAX octets, and a line that
 *                   would start with "--" gets a leading space so it can
 *                   never look like a MIME delimiter.  No final line end.
 *   TPL_BODY_ASCII  the same in US-ASCII ('?' for 8-bit), for a
 *                   destination without 8BITMIME.
 */
#ifndef SMTPGW_TEMPLATE_H
#define SMTPGW_TEMPLATE_H

#include <stddef.h>

#define TPL_SRC_MAX 8192  /* template text */
#define TPL_VALUE_MAX 512 /* one substituted value */
#define TPL_LINE_MAX 998  /* RFC 5322 line length, without CRLF */

struct tpl_vars {
	const char *reason, *type, *filename, *virus, *action, *recovery; /* NULL: "" */
};

enum tpl_mode {
	TPL_REPLY,
	TPL_BODY,
	TPL_BODY_ASCII,
};

/* The default deny message (TPL_BODY; its first line reads well as a reply). */
extern const char tpl_default[];

/*
 * Check a template from the configuration: unknown variables, an
 * unterminated "%(", a NUL, too long.  Returns 0 or -1 with the reason in
 * err (the caller adds "file:line: ").
 */
int tpl_check(const char *tpl, size_t len, char *err, size_t errsz);

/* Render into out[0..outsz) (outsz >= 1); returns the length. */
size_t tpl_render(const char *tpl, size_t len, const struct tpl_vars *v, enum tpl_mode mode,
    char *out, size_t outsz);

#endif
