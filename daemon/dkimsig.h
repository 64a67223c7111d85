/*
 * dkimsig - would a change break the message's DKIM signatures?
 *
 * libopendkim does all of the DKIM work: it parses every DKIM-Signature
 * (tags, h= list, l=, canonicalization, algorithm), selects the signed
 * header fields and computes, per signature, the header hash and the
 * body hash.  It does so without the signer's key: the key lookup is a
 * callback that finds nothing, so there is no DNS and no network; the
 * hashes are computed all the same (the key is only needed to check the
 * signature over the header hash, which no change of ours could repair
 * or break any differently).
 *
 * The question is asked by computing the hashes twice: over the message
 * as received and over the message as it would be delivered (with the
 * inspector's edits).  A signature is protected when its body hash is
 * valid on the original (its computed body hash equals its bh= tag: a
 * signature already broken cannot be broken further); a protected
 * signature is broken by the change when its header hash or its body
 * hash differs between the two copies, or when the change removed or
 * altered the DKIM-Signature field itself.  That covers everything the
 * signature covers and nothing else: an added header that h= does not
 * name, or content after an l= limit, breaks nothing.
 *
 * Feeding is incremental (the engine reads a held message back in
 * slices).  Limits: the header block of each copy is bounded by
 * DKIMSIG_HEADER_MAX octets (libopendkim keeps the header fields in
 * memory); beyond it, or on a library error with a DKIM-Signature field
 * in the original's header, the answer is "unknown", which callers treat
 * as "would break".  A header libopendkim refuses (no From field, a line
 * that is no field) without any DKIM-Signature field has nothing to
 * protect.  No I/O.
 */
#ifndef SMTPGW_DKIMSIG_H
#define SMTPGW_DKIMSIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DKIMSIG_HEADER_MAX (256 * 1024)

enum dkimsig_copy {
	DKIMSIG_ORIGINAL,
	DKIMSIG_CHANGED,
};

struct dkimsig;

struct dkimsig_result {
	int nsigs;       /* DKIM-Signature fields on the original */
	int nprotected;  /* ... whose body hash is valid */
	int nbroken;     /* ... that the change would break */
	bool unknown;    /* could not tell (limits, library error): treat as broken */
	/* the first broken signature: "d=DOMAIN s=SELECTOR what=body|headers|signature" */
	char detail[160];
};

/* sid is for log lines.  Never NULL. */
struct dkimsig *dkimsig_new(uint64_t sid);
/* The next octets of one copy (the message as inspected: CRLF lines, unstuffed). */
void dkimsig_feed(struct dkimsig *d, enum dkimsig_copy copy, const char *p, size_t n);
/* The original's header is in and carries no DKIM-Signature: nothing to protect. */
bool dkimsig_unsigned(const struct dkimsig *d);
/* Both copies are in (or the original is unsigned): compare. */
void dkimsig_compare(struct dkimsig *d, struct dkimsig_result *r);
void dkimsig_free(struct dkimsig *d);

#endif
