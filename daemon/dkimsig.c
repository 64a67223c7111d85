/*
 * dkimsig - DKIM signatures a change would break, computed by
 * libopendkim (see dkimsig.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <dkim.h>

#include "dkimsig.h"
#include "log.h"
#include "util.h"

/* One copy of the message on its way into a libopendkim verifying handle. */
struct copy {
	DKIM *dkim;       /* NULL after a library error (or before the first octet) */
	bool failed;      /* library error or header limit: the answer is unknown */
	bool nosig;       /* no DKIM-Signature on this copy: nothing more to compute */
	bool ended;       /* dkim_eom() done */
	bool in_body;     /* the header block is over */
	enum { H_LINE_START, H_START_CR, H_IN_LINE } hstate;
	/* Does the header have a "DKIM-Signature:" field at all? (see copy_end) */
	size_t lpos;      /* octets of the current line seen, up to the field name's */
	bool lmatch;      /* ... all of them matching "dkim-signature:" */
	bool sig_field;
	bool overflow;    /* the header block is beyond DKIMSIG_HEADER_MAX */
	uint64_t header_octets;
};

struct dkimsig {
	uint64_t sid;
	struct copy c[2];
};

static DKIM_LIB *lib;

/*
 * The key lookup: nothing is ever found.  No DNS is done, and the
 * hashes we compare are computed before the key would be used.
 */
static DKIM_CBSTAT
no_key(DKIM *dkim, DKIM_SIGINFO *sig, unsigned char *buf, size_t buflen)
{
	(void)dkim;
	(void)sig;
	(void)buf;
	(void)buflen;
	return DKIM_CBSTAT_NOTFOUND;
}

static DKIM_LIB *
library(void)
{
	if (lib == NULL) {
		lib = dkim_init(NULL, NULL);
		if (lib == NULL)
			fatal("libopendkim: dkim_init failed");
		if (dkim_set_key_lookup(lib, no_key) != DKIM_STAT_OK)
			fatal("libopendkim: cannot set the key lookup");
	}
	return lib;
}

struct dkimsig *
dkimsig_new(uint64_t sid)
{
	struct dkimsig *d = xcalloc(1, sizeof(*d));

	d->sid = sid;
	return d;
}

static void
copy_free(struct copy *c)
{
	if (c->dkim)
		dkim_free(c->dkim);
	c->dkim = NULL;
}

void
dkimsig_free(struct dkimsig *d)
{
	if (d == NULL)
		return;
	copy_free(&d->c[0]);
	copy_free(&d->c[1]);
	free(d);
}

static void
copy_fail(struct copy *c)
{
	c->failed = true;
	copy_free(c);
}

#define SIG_FIELD "dkim-signature:"

/* One more octet of a header line: is it a DKIM-Signature field? */
static void
field_name(struct copy *c, char ch)
{
	if (c->lpos < sizeof(SIG_FIELD) - 1) {
		if (tolower((unsigned char)ch) != SIG_FIELD[c->lpos])
			c->lmatch = false;
		if (++c->lpos == sizeof(SIG_FIELD) - 1 && c->lmatch)
			c->sig_field = true;
	}
}

/* How many of p's n octets belong to the header block (and note where it ends). */
static size_t
header_part(struct copy *c, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (c->hstate) {
		case H_LINE_START:
			c->lpos = 0;
			c->lmatch = true;
			if (p[i] == '\r') {
				c->hstate = H_START_CR;
			} else if (p[i] != '\n') {
				c->hstate = H_IN_LINE;
				field_name(c, p[i]);
			}
			break;
		case H_START_CR:
			if (p[i] == '\n') {
				/* an empty line: the header block ends with it */
				c->in_body = true;
				return i + 1;
			}
			c->hstate = H_IN_LINE;
			c->lmatch = false;
			break;
		case H_IN_LINE:
			if (p[i] == '\n')
				c->hstate = H_LINE_START;
			else
				field_name(c, p[i]);
			break;
		}
	}
	return n;
}

void
dkimsig_feed(struct dkimsig *d, enum dkimsig_copy which, const char *p, size_t n)
{
	struct copy *c = &d->c[which];
	DKIM_STAT st;

	if (c->ended || c->nosig || c->overflow || n == 0)
		return;
	if (!c->in_body) {
		/* libopendkim keeps the header fields: bound what it may be given */
		size_t h = header_part(c, p, n);

		c->header_octets += h;
		if (c->header_octets > DKIMSIG_HEADER_MAX) {
			log_sid(LOG_LVL_INFO, d->sid, "dkim check header-octets>%d result=unknown",
			    DKIMSIG_HEADER_MAX);
			c->overflow = true;
			copy_fail(c);
			return;
		}
	}
	/* after a library error only the header is still scanned (for a DKIM-Signature field) */
	if (c->failed)
		return;
	if (c->dkim == NULL) {
		c->dkim = dkim_verify(library(), (const unsigned char *)"smtpgw", NULL, &st);
		if (c->dkim == NULL) {
			copy_fail(c);
			return;
		}
	}
	st = dkim_chunk(c->dkim, (unsigned char *)(uintptr_t)p, n);
	/* NOSIG (at the end of the header): no signature on this copy -- nothing to compare */
	if (st == DKIM_STAT_NOSIG)
		c->nosig = true;
	else if (st != DKIM_STAT_OK)
		copy_fail(c);
}

bool
dkimsig_unsigned(const struct dkimsig *d)
{
	const struct copy *c = &d->c[DKIMSIG_ORIGINAL];

	return c->nosig || (c->failed && c->in_body && !c->sig_field);
}

static void
copy_end(struct copy *c)
{
	DKIM_STAT st;

	if (c->failed || c->ended)
		return;
	c->ended = true;
	if (c->dkim == NULL || c->nosig)
		return; /* nothing was fed (an empty message), or nothing is signed */
	st = dkim_chunk(c->dkim, NULL, 0);
	if (st != DKIM_STAT_OK && st != DKIM_STAT_NOSIG) {
		copy_fail(c);
		return;
	}
	/* verification itself fails (no key): the hashes are what we want */
	(void)dkim_eom(c->dkim, NULL);
}

static int
siglist(struct copy *c, DKIM_SIGINFO ***sigs)
{
	int n = 0;

	if (c->dkim == NULL || c->nosig || dkim_getsiglist(c->dkim, sigs, &n) != DKIM_STAT_OK)
		return 0;
	return n;
}

static const char *
tag(DKIM_SIGINFO *s, const char *name)
{
	const unsigned char *v = dkim_sig_gettagvalue(s, false,
	    (unsigned char *)(uintptr_t)name);

	return v ? (const char *)v : "";
}

/* The signature's bh= tag equals the body hash libopendkim computed. */
static bool
body_hash_valid(DKIM_SIGINFO *s)
{
	void *hh, *bh;
	size_t hhlen, bhlen;
	const char *b64 = tag(s, "bh");
	unsigned char want[128];
	size_t len = strlen(b64);
	int n;

	if (dkim_sig_gethashes(s, &hh, &hhlen, &bh, &bhlen) != DKIM_STAT_OK || bhlen == 0 ||
	    len == 0 || len > 160 || len % 4 != 0)
		return false;
	n = EVP_DecodeBlock(want, (const unsigned char *)b64, (int)len);
	if (n < 0)
		return false;
	/* EVP_DecodeBlock counts '=' padding as zero octets */
	if (len >= 1 && b64[len - 1] == '=')
		n--;
	if (len >= 2 && b64[len - 2] == '=')
		n--;
	return (size_t)n == bhlen && memcmp(want, bh, bhlen) == 0;
}

static bool
hashes_equal(DKIM_SIGINFO *a, DKIM_SIGINFO *b, const char **what)
{
	void *ahh, *abh, *bhh, *bbh;
	size_t ahl, abl, bhl, bbl;

	if (dkim_sig_gethashes(a, &ahh, &ahl, &abh, &abl) != DKIM_STAT_OK ||
	    dkim_sig_gethashes(b, &bhh, &bhl, &bbh, &bbl) != DKIM_STAT_OK) {
		*what = "signature";
		return false;
	}
	if (abl != bbl || memcmp(abh, bbh, abl) != 0) {
		*what = "body";
		return false;
	}
	if (ahl != bhl || memcmp(ahh, bhh, ahl) != 0) {
		*what = "headers";
		return false;
	}
	return true;
}

void
dkimsig_compare(struct dkimsig *d, struct dkimsig_result *r)
{
	DKIM_SIGINFO **os = NULL, **cs = NULL;
	int on, cn;

	memset(r, 0, sizeof(*r));
	copy_end(&d->c[DKIMSIG_ORIGINAL]);
	copy_end(&d->c[DKIMSIG_CHANGED]);
	/*
	 * libopendkim refuses some messages outright (no From field, a line
	 * that is no header field): with no DKIM-Signature field in the
	 * original there is nothing to protect; with one, or past the
	 * header limit, nobody can tell.
	 */
	if (d->c[0].failed && !d->c[0].sig_field && !d->c[0].overflow)
		return;
	if (d->c[0].failed || d->c[1].failed) {
		r->unknown = true;
		snprintf(r->detail, sizeof(r->detail), "unknown");
		return;
	}
	on = siglist(&d->c[DKIMSIG_ORIGINAL], &os);
	cn = siglist(&d->c[DKIMSIG_CHANGED], &cs);
	r->nsigs = on;
	for (int i = 0; i < on; i++) {
		const char *what = "signature";
		DKIM_SIGINFO *match = NULL;

		if (!body_hash_valid(os[i]))
			continue;
		r->nprotected++;
		/* the same signature on the changed copy: the same b= value */
		for (int j = 0; j < cn && match == NULL; j++)
			if (strcmp(tag(os[i], "b"), tag(cs[j], "b")) == 0)
				match = cs[j];
		if (match && hashes_equal(os[i], match, &what))
			continue;
		if (r->nbroken++ == 0) {
			char dom[80], sel[80];
			const char *dv = tag(os[i], "d"), *sv = tag(os[i], "s");

			snprintf(r->detail, sizeof(r->detail), "d=%s s=%s what=%s",
			    log_quote(dom, sizeof(dom), dv, strlen(dv)),
			    log_quote(sel, sizeof(sel), sv, strlen(sv)), what);
		}
	}
}
