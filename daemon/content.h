/*
 * content - the content inspector: a proxy action's header, content-type
 * and file-name rulesets, ambiguous MIME and unopenable archives, and the
 * deny message, applied to every message (design in content.c).
 */
#ifndef SMTPGW_CONTENT_H
#define SMTPGW_CONTENT_H

#include <stddef.h>

#include "inspect.h"

/*
 * Load the magic database (NULL: Debian's).  Once per process, before the
 * workers fork so they share its pages.  -1 with err on failure.
 */
int content_init(const char *magic_file, char *err, size_t errsz);

extern const struct inspector inspect_content;

#endif
