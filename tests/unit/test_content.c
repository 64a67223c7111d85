/*
 * test_content - the content inspector (content.c) as an attacker meets
 * it: the predefined SMTP-Incoming.Standard action over whole messages,
 * fed in small pieces like the engine does, and the verdict it gives.
 *
 * Inbound strips executables by name (*.exe, ...) and by content
 * (application/x-dosexec, ...), names inside archives too, and refuses
 * ambiguous MIME.  Each bypass below is a way a sender could get an
 * executable to a reader on Windows past those rules:
 *  - names Windows saves under another name: trailing dots and spaces
 *    ("evil.exe." is written as evil.exe), a path before the name;
 *  - the same inside a zip;
 *  - an attached message declared message/news (Thunderbird opens it
 *    like message/rfc822, attachments and all);
 *  - a zip that does not start at the first octet (a self-extractor's
 *    layout: unzip tools, 7-Zip and Explorer open it) declared as a zip
 *    by its type or name, so libmagic's look at the first octets does not
 *    call it an archive; an ISO image likewise (its signature is at 32 KiB).
 * And what must stay as it was: a clean message passes untouched.
 *
 * Needs the magic database (SNIFF_MAGIC_DEFAULT, Debian's libmagic-mgc).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "content.h"
#include "inspect.h"

static struct conf_action inbound;

/* ------------------------------------------------------------ helpers */

struct msgbuf {
	char *p;
	size_t len, cap;
};

static void
put(struct msgbuf *m, const void *p, size_t n)
{
	if (m->len + n + 1 > m->cap) {
		m->cap = (m->len + n + 1) * 2;
		m->p = realloc(m->p, m->cap);
		assert_non_null(m->p);
	}
	memcpy(m->p + m->len, p, n);
	m->len += n;
	m->p[m->len] = '\0';
}

static void
puts_(struct msgbuf *m, const char *s)
{
	put(m, s, strlen(s));
}

/* base64 in 76-column CRLF lines */
static void
put_b64(struct msgbuf *m, const unsigned char *d, size_t n)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t col = 0;

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) |
		    (i + 2 < n ? d[i + 2] : 0);
		char q[4] = { al[v >> 18 & 63], al[v >> 12 & 63],
			i + 1 < n ? al[v >> 6 & 63] : '=', i + 2 < n ? al[v & 63] : '=' };
		put(m, q, 4);
		if ((col += 4) == 76) {
			puts_(m, "\r\n");
			col = 0;
		}
	}
	if (col)
		puts_(m, "\r\n");
}

/* A multipart/mixed message: a text part, then one part with hdrs and body. */
static void
build_msg(struct msgbuf *m, const char *hdrs, const char *body)
{
	puts_(m, "From: a@example.net\r\nTo: b@example.org\r\nSubject: test\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
	    "--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\n");
	puts_(m, hdrs);
	puts_(m, "\r\n\r\n");
	puts_(m, body);
	puts_(m, "\r\n--b1--\r\n");
}

struct verdict {
	enum inspect_verdict v;
	unsigned nedits;
	char reason[64];
	char reply[256];
};

/*
 * A verdict that end() leaves pending (the action keeps a quarantine and
 * this test has no held copy to keep: the engine's hook gets it at once).
 */
static struct inspect_result pending_res;
static bool pending_done;

static void
on_verdict(void *ctx, struct inspect_result *res)
{
	(void)ctx;
	inspect_result_move(&pending_res, res);
	pending_done = true;
}

/* The inspector over m, fed in 7-octet pieces. */
static struct verdict
inspect(const struct msgbuf *m)
{
	const char *rcpts[] = { "b@example.org" };
	struct inspect_envelope env = {
		.session_id = 1, .inbound = true, .action = &inbound, .helo = "client.example",
		.mail_from = "a@example.net", .rcpts = rcpts, .nrcpts = 1,
	};
	struct inspect_result res;
	struct verdict out;
	unsigned flags = 0;
	/* no scanner, no held copy (held = NULL): nothing is kept */
	static const struct inspect_hooks hooks = { .verdict = on_verdict };
	void *t = inspect_content.begin(&inspect_content, &env, &hooks, &flags);

	assert_non_null(t);
	assert_true(flags & INSPECT_F_HOLD);
	for (size_t o = 0; o < m->len; o += 7)
		assert_int_equal(inspect_content.body(t, m->p + o, m->len - o < 7 ? m->len - o : 7),
		    INSPECT_OK);
	pending_done = false;
	memset(&res, 0, sizeof(res));
	if (inspect_content.end(t, &res) == INSPECT_PENDING) {
		assert_true(pending_done);
		inspect_result_move(&res, &pending_res);
	}
	out.v = res.verdict;
	out.nedits = res.nedits;
	snprintf(out.reason, sizeof(out.reason), "%s", res.reason);
	snprintf(out.reply, sizeof(out.reply), "%s", res.reply);
	inspect_result_clear(&res);
	return out;
}

/* The attachment was stripped: allowed, with the one part replaced. */
static void
assert_stripped(const struct msgbuf *m)
{
	struct verdict v = inspect(m);

	if (v.v != INSPECT_ALLOW || v.nedits != 1 || strcmp(v.reason, "stripped=1") != 0)
		fail_msg("not stripped: verdict=%d edits=%u reason=%s reply=%s\n%.400s", (int)v.v,
		    v.nedits, v.reason, v.reply, m->p);
}

static void
test_msg(const char *hdrs, const char *body)
{
	struct msgbuf m = { 0 };

	build_msg(&m, hdrs, body);
	assert_stripped(&m);
	free(m.p);
}

static const unsigned char harmless[] = "not an executable, only text that names one\n";

/* An archive in memory (libarchive's writer: "zip", "iso9660"), one entry. */
static unsigned char *
archive_of(const char *format, const char *name, const void *data, size_t n, size_t *len)
{
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	size_t cap = 1 << 20;
	unsigned char *buf = malloc(cap);

	assert_non_null(buf);
	assert_int_equal(archive_write_set_format_by_name(a, format), ARCHIVE_OK);
	assert_int_equal(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)n);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	assert_int_equal(archive_write_data(a, data, n), (la_ssize_t)n);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	archive_entry_free(e);
	return buf;
}

static unsigned char *
zip_of(const char *name, const void *data, size_t n, size_t *len)
{
	return archive_of("zip", name, data, n, len);
}

/* A zip of count small text files. */
static unsigned char *
zip_many(unsigned count, size_t *len)
{
	struct archive *a = archive_write_new();
	size_t cap = 1 << 20;
	unsigned char *buf = malloc(cap);

	assert_non_null(buf);
	assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
	for (unsigned i = 0; i < count; i++) {
		struct archive_entry *e = archive_entry_new();
		char name[32];

		snprintf(name, sizeof(name), "f%u.txt", i);
		archive_entry_set_pathname(e, name);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_size(e, (la_int64_t)sizeof(harmless) - 1);
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		assert_int_equal(archive_write_data(a, harmless, sizeof(harmless) - 1),
		    (la_ssize_t)sizeof(harmless) - 1);
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	return buf;
}

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
set_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

/*
 * What "zip -A" makes of a self-extractor: prefix octets of something
 * else first, the zip's offsets moved to match.
 */
static unsigned char *
sfx_of(const unsigned char *zip, size_t zlen, size_t prefix, size_t *len)
{
	unsigned char *out = malloc(prefix + zlen);
	size_t eocd = zlen - 22;

	assert_non_null(out);
	for (size_t i = 0; i < prefix; i++)
		out[i] = (unsigned char)(i * 131 + 7);
	memcpy(out + prefix, zip, zlen);
	unsigned char *z = out + prefix;
	assert_int_equal(le32(z + eocd), 0x06054b50u);
	uint32_t cd = le32(z + eocd + 16);
	unsigned n = (unsigned)z[eocd + 10] | (unsigned)z[eocd + 11] << 8;
	set_le32(z + eocd + 16, cd + (uint32_t)prefix);
	for (unsigned i = 0; i < n; i++) {
		unsigned char *h = z + cd;
		assert_int_equal(le32(h), 0x02014b50u);
		set_le32(h + 42, le32(h + 42) + (uint32_t)prefix);
		cd += 46u + ((unsigned)h[28] | (unsigned)h[29] << 8) +
		    ((unsigned)h[30] | (unsigned)h[31] << 8) + ((unsigned)h[32] | (unsigned)h[33] << 8);
	}
	*len = prefix + zlen;
	return out;
}

/* -------------------------------------------------------------- tests */

/* The baseline: the rule works, and a clean message is left alone. */
static void
test_plain_exe_stripped_clean_untouched(void **state)
{
	struct msgbuf m = { 0 };
	struct verdict v;

	(void)state;
	test_msg("Content-Type: application/octet-stream\r\n"
	    "Content-Disposition: attachment; filename=\"evil.exe\"", "x");
	build_msg(&m, "Content-Type: text/plain\r\n"
	    "Content-Disposition: attachment; filename=\"notes.txt\"", "x");
	v = inspect(&m);
	assert_int_equal(v.v, INSPECT_ALLOW);
	assert_int_equal(v.nedits, 0);
	free(m.p);
}

/* Windows drops trailing dots and spaces from a name it saves. */
static void
test_name_trailing_dots_spaces(void **state)
{
	(void)state;
	test_msg("Content-Type: application/octet-stream\r\n"
	    "Content-Disposition: attachment; filename=\"evil.exe.\"", "x");
	test_msg("Content-Type: application/octet-stream\r\n"
	    "Content-Disposition: attachment; filename=\"evil.exe \"", "x");
	test_msg("Content-Type: application/octet-stream; name=\"evil.js . .\"", "x");
	test_msg("Content-Type: application/octet-stream\r\n"
	    "Content-Disposition: attachment; filename*=utf-8''evil.vbs%20%2E", "x");
}

/* A reader saves a name with a path under its last component. */
static void
test_name_with_path(void **state)
{
	(void)state;
	test_msg("Content-Type: application/octet-stream\r\n"
	    "Content-Disposition: attachment; filename=\"dir/evil.exe.\"", "x");
}

/* The same inside an archive. */
static void
test_zip_entry_trailing_dot(void **state)
{
	struct msgbuf m = { 0 };
	size_t zlen;
	unsigned char *zip = zip_of("evil.exe.", harmless, sizeof(harmless) - 1, &zlen);

	(void)state;
	build_msg(&m, "Content-Type: application/zip; name=\"a.zip\"\r\n"
	    "Content-Transfer-Encoding: base64", "");
	m.len -= strlen("\r\n--b1--\r\n");
	m.p[m.len] = '\0';
	put_b64(&m, zip, zlen);
	puts_(&m, "--b1--\r\n");
	assert_stripped(&m);
	free(zip);
	free(m.p);
}

/* message/news is an attached message to Thunderbird: its parts are inspected. */
static void
test_message_news(void **state)
{
	(void)state;
	test_msg("Content-Type: message/news",
	    "From: x@example.net\r\nNewsgroups: a.b\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=in\r\n\r\n"
	    "--in\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n\r\nx\r\n"
	    "--in--");
}

/* A zip behind other octets, declared a zip: still opened, its names still checked. */
static void
test_zip_not_at_start(void **state)
{
	const char *decl[] = {
		"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64",
		"Content-Type: application/octet-stream; name=\"invoice.zip\"\r\n"
		    "Content-Transfer-Encoding: base64",
	};
	size_t zlen, slen;
	unsigned char *zip = zip_of("evil.exe", harmless, sizeof(harmless) - 1, &zlen);
	unsigned char *sfx = sfx_of(zip, zlen, 3000, &slen);

	(void)state;
	for (size_t i = 0; i < sizeof(decl) / sizeof(decl[0]); i++) {
		struct msgbuf m = { 0 };

		build_msg(&m, decl[i], "");
		m.len -= strlen("\r\n--b1--\r\n");
		m.p[m.len] = '\0';
		put_b64(&m, sfx, slen);
		puts_(&m, "--b1--\r\n");
		assert_stripped(&m);
		free(m.p);
	}
	free(zip);
	free(sfx);
}

/* An ISO image (Windows mounts it on a double click): its signature is at 32 KiB. */
static void
test_iso_image(void **state)
{
	struct msgbuf m = { 0 };
	size_t ilen;
	unsigned char *iso = archive_of("iso9660", "EVIL.EXE", harmless, sizeof(harmless) - 1,
	    &ilen);

	(void)state;
	build_msg(&m, "Content-Type: application/octet-stream; name=\"invoice.iso\"\r\n"
	    "Content-Transfer-Encoding: base64", "");
	m.len -= strlen("\r\n--b1--\r\n");
	m.p[m.len] = '\0';
	put_b64(&m, iso, ilen);
	puts_(&m, "--b1--\r\n");
	assert_stripped(&m);
	free(iso);
	free(m.p);
}

/*
 * The archive walk's bounds are the message's, not each attachment's:
 * every entry costs a libmagic call (about a millisecond), and the
 * inspection runs in the worker's event loop.  Per attachment, a 5 MiB
 * message of zips with 1000 small entries each kept a worker -- and
 * every session on it -- busy for most of a minute.  Here three zips of
 * 600 entries: the third walk finds the message's budget spent, and the
 * archive is unopenable (inbound: denied).
 */
static void
test_archive_budget_per_message(void **state)
{
	struct msgbuf m = { 0 };
	size_t zlen;
	unsigned char *zip = zip_many(600, &zlen);
	struct verdict v;

	(void)state;
	puts_(&m, "From: a@example.net\r\nTo: b@example.org\r\nSubject: test\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n");
	for (int i = 0; i < 3; i++) {
		puts_(&m, "--b1\r\nContent-Type: application/zip\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n");
		put_b64(&m, zip, zlen);
	}
	puts_(&m, "--b1--\r\n");
	v = inspect(&m);
	assert_int_equal(v.v, INSPECT_DENY);
	assert_non_null(strstr(v.reply, "archive-unopenable"));
	free(zip);
	free(m.p);
}

static int
setup(void **state)
{
	char err[256];

	(void)state;
	if (content_init(NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	snprintf(inbound.name, sizeof(inbound.name), "SMTP-Incoming.Standard");
	inbound.predefined = true;
	/*
	 * The predefined inbound rules without their quarantine: these tests
	 * judge names and archives, not the keeping of a copy (test_quarantine)
	 */
	static struct action_rules rules;
	rules = *config_rules(&inbound);
	rules.quarantine = false;
	inbound.rules = &rules;
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_exe_stripped_clean_untouched),
		cmocka_unit_test(test_name_trailing_dots_spaces),
		cmocka_unit_test(test_name_with_path),
		cmocka_unit_test(test_zip_entry_trailing_dot),
		cmocka_unit_test(test_message_news),
		cmocka_unit_test(test_zip_not_at_start),
		cmocka_unit_test(test_iso_image),
		cmocka_unit_test(test_archive_budget_per_message),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
