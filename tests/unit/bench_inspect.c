/*
 * bench_inspect - how fast the pure inspection modules are, in one
 * process, no network: the numbers to weigh against smtpgw's relay cost
 * per message (bench/RESULTS.md: smtpgw CPU ms/msg).
 *
 *   build/tests/unit/bench_inspect [MESSAGE_MIB [ATTACHMENTS [ROUNDS [pdf]]]]
 *
 * Builds a message of MESSAGE_MIB MiB (default 10) holding a text part
 * and ATTACHMENTS (default 20) base64 attachments of random octets (with
 * "pdf": each starting like a PDF, which libmagic recognises early; random
 * octets are its worst case), and a 2 KiB plain message, then times, best
 * of ROUNDS (default 5):
 *   mime all        the parser alone, every body decoded, fed in 64 KiB
 *                   reads as the engine's input buffer delivers them
 *   mime 64k        the parser, only the first 64 KiB of each leaf decoded
 *                   (mime_want): what the rulesets below need
 *   +rules          plus rulesets like the predefined ones: every header
 *                   line against header patterns (regex), every part's
 *                   declared type and file names against type and
 *                   file-name patterns (wildcards)
 *   +rules+magic    plus libmagic on the first 64 KiB of every leaf
 *   same by line    the same fed one line per call: what batching saves
 * and prints MB/s (10^6 octets of message per CPU second) and CPU time
 * per message.  Not a test: asserts nothing about speed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mime.h"
#include "rule.h"
#include "sniff.h"

#define SNIFF_MAX (64 * 1024)

struct ctx {
	struct mime_parser *p;
	bool want, rules, magic, per_line;
	struct ruleset hdr, types, names;
	struct sniff *sn;
	unsigned char head[SNIFF_MAX];
	size_t nhead;
	uint64_t body, matched;
	char line[MIME_OUT_SIZE];
};

static double
now(void)
{
	struct timespec ts;

	/* CPU time: the machine is shared, wall time would measure the others */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
cb(void *arg, const struct mime_event *ev)
{
	struct ctx *c = arg;
	struct rule_result r;
	char type[SNIFF_TYPE_MAX];

	switch (ev->kind) {
	case MIME_EV_HEADER:
		if (c->rules) {
			int n = snprintf(c->line, sizeof(c->line), "%s: %s", ev->name, ev->value);

			r = ruleset_match(&c->hdr, c->line, (size_t)n < sizeof(c->line) ? (size_t)n :
			    sizeof(c->line) - 1);
			c->matched += r.rule != NULL;
		}
		break;
	case MIME_EV_PART_BEGIN:
		c->nhead = 0;
		if (c->want && !ev->part->multipart && !ev->part->message)
			mime_want(c->p, SNIFF_MAX);
		if (c->rules) {
			r = ruleset_match(&c->types, ev->part->type, strlen(ev->part->type));
			c->matched += r.rule != NULL;
			for (unsigned i = 0; i < ev->part->nnames; i++) {
				r = ruleset_match(&c->names, ev->part->names[i],
				    strlen(ev->part->names[i]));
				c->matched += r.rule != NULL;
			}
		}
		break;
	case MIME_EV_BODY:
		c->body += ev->len;
		if (c->magic && c->nhead < SNIFF_MAX) {
			size_t k = SNIFF_MAX - c->nhead < ev->len ? SNIFF_MAX - c->nhead : ev->len;

			memcpy(c->head + c->nhead, ev->data, k);
			c->nhead += k;
		}
		break;
	case MIME_EV_PART_END:
		if (c->magic && !ev->part->multipart && !ev->part->message) {
			sniff_type(c->sn, c->head, c->nhead, type, sizeof(type));
			if (getenv("BENCH_TYPES"))
				fprintf(stderr, "part %u: %s\n", ev->part->index, type);
			r = ruleset_match(&c->types, type, strlen(type));
			c->matched += r.rule != NULL;
		}
		break;
	case MIME_EV_ANOMALY:
		break;
	}
}

static void
add(struct ruleset *rs, const char *line)
{
	char err[256];

	if (ruleset_add_line(rs, line, 0, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", line, err);
		exit(1);
	}
}

/* Rules of the size and kind an inbound proxy action starts with. */
static void
rules_init(struct ctx *c)
{
	static const char *const exts[] = { "exe", "com", "scr", "pif", "bat", "cmd", "cpl",
		"msi", "msp", "js", "jse", "vbs", "vbe", "wsf", "wsh", "hta", "jar", "lnk", "ps1",
		"reg", "dll", "sys", "iso", "img", "vhd", "chm", "application", "gadget", "inf",
		"scf", "docm", "xlsm", "pptm", "dotm", "xlam", "one", "ace", "arj", "cab", "apk" };
	char line[128];

	ruleset_init(&c->hdr, "headers", RULE_ALLOW, 0);
	add(&c->hdr, "deny log regex ^content-type:.*\\bname\\s*=.*\\.(exe|scr|pif)\\b");
	add(&c->hdr, "strip log regex ^x-mailer:\\s*(mass|bulk)");
	add(&c->hdr, "deny log regex ^subject:.*\\b(viagra|lottery winner)\\b");
	add(&c->hdr, "deny log alarm regex ^received:.{2000,}");
	add(&c->hdr, "deny log regex ^from:.*@.*\\.(zip|mov)>?$");
	ruleset_init(&c->types, "content-types", RULE_ALLOW, 0);
	add(&c->types, "strip log pattern application/x-dosexec");
	add(&c->types, "strip log pattern application/vnd.microsoft.portable-executable");
	add(&c->types, "strip log pattern application/x-msdownload");
	add(&c->types, "strip log pattern application/x-ms*");
	add(&c->types, "strip log pattern application/hta");
	add(&c->types, "strip log pattern application/x-sh*");
	add(&c->types, "strip log pattern text/x-shellscript");
	add(&c->types, "strip log pattern application/javascript");
	add(&c->types, "strip log pattern application/x-java-archive");
	add(&c->types, "strip log pattern application/vnd.ms-htmlhelp");
	ruleset_init(&c->names, "filenames", RULE_ALLOW, 0);
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		snprintf(line, sizeof(line), "strip log pattern *.%s", exts[i]);
		add(&c->names, line);
	}
	add(&c->names, "strip log regex \\.(pdf|docx?|xlsx?|jpe?g)\\s*\\.[a-z0-9]{2,4}$");
}

static char *
make_message(size_t target, unsigned natt, bool pdf, size_t *len)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	/* raw octets per attachment so that the encoded message is about target */
	size_t per = (target - 4096) / (natt ? natt : 1) / 78 * 76 / 4 * 3, cap = target * 2, m = 0;
	char *msg = malloc(cap);
	uint32_t x = 12345;

	if (msg == NULL)
		exit(1);
	m += (size_t)snprintf(msg + m, cap - m,
	    "Received: from client.example.org (client.example.org [192.0.2.10])\r\n"
	    "\tby mx.example.net with ESMTPS id 4f2a91c0e1d3; Sat, 28 Nov 2026 08:04:00 +0000\r\n"
	    "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
	    "Subject: the quarterly figures\r\nDate: Sat, 28 Nov 2026 08:04:00 +0000\r\n"
	    "Message-ID: <20261128080400.4f2a91c0e1d3@example.org>\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"=_b1_4f2a91c0e1d3\"\r\n\r\n"
	    "This is a multi-part message in MIME format.\r\n"
	    "--=_b1_4f2a91c0e1d3\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
	    "Hello Bob,=0D=0A=0D=0Ahere are the figures. Caf=C3=A9 later?\r\n\r\n-- \r\nAlice\r\n");
	for (unsigned a = 0; a < natt; a++) {
		size_t col = 0;

		m += (size_t)snprintf(msg + m, cap - m,
		    "--=_b1_4f2a91c0e1d3\r\nContent-Type: application/octet-stream; name=\"figures-%u.bin\"\r\n"
		    "Content-Transfer-Encoding: base64\r\n"
		    "Content-Disposition: attachment; filename=\"figures-%u.bin\"\r\n\r\n", a, a);
		for (size_t i = 0; i < per; i += 3) {
			static const char head[] = "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";
			uint32_t v;

			x = x * 1664525u + 1013904223u;
			v = x >> 8;
			if (pdf && i + 3 <= sizeof(head) - 1)
				v = (uint32_t)(unsigned char)head[i] << 16 |
				    (uint32_t)(unsigned char)head[i + 1] << 8 | (unsigned char)head[i + 2];
			msg[m++] = al[v >> 18 & 63];
			msg[m++] = al[v >> 12 & 63];
			msg[m++] = al[v >> 6 & 63];
			msg[m++] = al[v & 63];
			if ((col += 4) == 76) {
				msg[m++] = '\r';
				msg[m++] = '\n';
				col = 0;
			}
		}
		msg[m++] = '\r';
		msg[m++] = '\n';
	}
	m += (size_t)snprintf(msg + m, cap - m, "--=_b1_4f2a91c0e1d3--\r\n");
	*len = m;
	return msg;
}

static char *
make_small(size_t *len)
{
	char *msg = malloc(4096);
	size_t m = 0;

	m += (size_t)snprintf(msg, 4096,
	    "Received: from client.example.org (client.example.org [192.0.2.10])\r\n"
	    "\tby mx.example.net with ESMTPS id 4f2a91c0e1d3; Sat, 28 Nov 2026 08:04:00 +0000\r\n"
	    "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
	    "Subject: lunch\r\nDate: Sat, 28 Nov 2026 08:04:00 +0000\r\n"
	    "Message-ID: <20261128080400.4f2a91c0e1d3@example.org>\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	while (m < 2048 - 80)
		m += (size_t)snprintf(msg + m, 4096 - m,
		    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eius.\r\n");
	*len = m;
	return msg;
}

static double
run(struct ctx *c, const char *msg, size_t len, unsigned iters)
{
	struct mime_parser *p = mime_new(NULL, cb, c);
	double t0 = now();

	c->p = p;

	for (unsigned it = 0; it < iters; it++) {
		mime_reset(p);
		if (c->per_line) {
			/* one call per line, as a line-by-line framer would make them */
			for (size_t off = 0; off < len;) {
				const char *lf = memchr(msg + off, '\n', len - off);
				size_t n = lf ? (size_t)(lf - (msg + off)) + 1 : len - off;

				mime_feed(p, msg + off, n);
				off += n;
			}
		} else {
			for (size_t off = 0; off < len; off += 65536)
				mime_feed(p, msg + off, len - off < 65536 ? len - off : 65536);
		}
		mime_finish(p);
	}
	t0 = now() - t0;
	mime_free(p);
	return t0;
}

int
main(int argc, char **argv)
{
	size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 10, len, slen;
	unsigned natt = argc > 2 ? (unsigned)atoi(argv[2]) : 20;
	unsigned rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 5;
	bool pdf = argc > 4 && strcmp(argv[4], "pdf") == 0;
	char *msg = make_message(mib << 20, natt, pdf, &len), *small = make_small(&slen), err[256];
	static struct ctx c;
	static const char *const names[] = { "mime all", "mime 64k", "+rules", "+rules+magic",
		"same by line" };

	rules_init(&c);
	c.sn = sniff_open(NULL, err, sizeof(err));
	if (c.sn == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("message: %zu octets, %u base64 attachments (%s); small message: %zu octets\n", len,
	    natt, pdf ? "PDF-like" : "random", slen);
	for (int mode = 0; mode < 5; mode++) {
		double best = 1e9, sbest = 1e9;
		unsigned siters = 2000;

		c.want = mode >= 1;
		c.rules = mode >= 2;
		c.magic = mode >= 3;
		c.per_line = mode == 4;
		for (unsigned r = 0; r < rounds; r++) {
			double t = run(&c, msg, len, 1), st = run(&c, small, slen, siters) / siters;

			if (t < best)
				best = t;
			if (st < sbest)
				sbest = st;
		}
		printf("%-13s large: %7.1f MB/s  %6.2f ms/msg   small: %7.1f MB/s  %6.1f us/msg\n",
		    names[mode], (double)len / best / 1e6, best * 1e3, (double)slen / sbest / 1e6,
		    sbest * 1e6);
	}
	printf("(decoded %llu octets, %llu rule hits)\n", (unsigned long long)c.body,
	    (unsigned long long)c.matched);
	sniff_close(c.sn);
	ruleset_free(&c.hdr);
	ruleset_free(&c.types);
	ruleset_free(&c.names);
	free(msg);
	free(small);
	return 0;
}
