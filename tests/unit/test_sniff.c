/*
 * test_sniff - types by content (libmagic) and the bounded archive walk
 * (libarchive).  The archives are built here with libarchive's writer:
 * a zip holding an executable, archives nested past the depth limit, too
 * many entries, a tar.gz bomb against the uncompressed budget, a nested
 * archive larger than the in-memory bound, an encrypted zip (its names are
 * still listed), a truncated zip, a gzipped executable, a 7z, and data
 * that is no archive at all.
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

#include "sniff.h"

static struct sniff *sn;

/* A minimal PE32 header: what libmagic needs to call it an executable. */
static void
make_pe(unsigned char *b, size_t n)
{
	memset(b, 0, n);
	b[0] = 'M';
	b[1] = 'Z';
	b[0x3c] = 0x80;
	memcpy(b + 0x80, "PE\0\0", 4);
	b[0x84] = 0x4c;
	b[0x85] = 0x01;
	b[0x86] = 1;
	b[0x94] = 0xe0;
	b[0x96] = 0x02;
	b[0x97] = 0x01;
	b[0x98] = 0x0b;
	b[0x99] = 0x01;
}

struct file {
	const char *name;
	const void *data;
	size_t len;
};

/* An archive in memory: format ("zip", "7zip", "ustar"), filter ("gzip" or NULL). */
static unsigned char *
build(const char *format, const char *filter, const char *options, const char *pass,
    const struct file *files, size_t nfiles, size_t *len)
{
	struct archive *a = archive_write_new();
	size_t cap = 1 << 22, used = 0;
	unsigned char *buf = malloc(cap);

	assert_non_null(buf);
	assert_int_equal(archive_write_set_format_by_name(a, format), ARCHIVE_OK);
	if (filter)
		assert_int_equal(archive_write_add_filter_by_name(a, filter), ARCHIVE_OK);
	if (options)
		assert_int_equal(archive_write_set_options(a, options), ARCHIVE_OK);
	if (pass)
		assert_int_equal(archive_write_set_passphrase(a, pass), ARCHIVE_OK);
	assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
	for (size_t i = 0; i < nfiles; i++) {
		struct archive_entry *e = archive_entry_new();

		archive_entry_set_pathname(e, files[i].name);
		archive_entry_set_size(e, (la_int64_t)files[i].len);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		if (files[i].len)
			assert_int_equal(archive_write_data(a, files[i].data, files[i].len),
			    (la_ssize_t)files[i].len);
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	*len = used;
	return buf;
}

struct seen {
	unsigned n;
	char name[64][SNIFF_NAME_MAX];
	char type[64][SNIFF_TYPE_MAX];
	char container[64][SNIFF_NAME_MAX];
	unsigned depth[64];
	bool encrypted[64];
};

static void
entry_cb(void *arg, const struct sniff_entry *e)
{
	struct seen *s = arg;

	assert_non_null(e->name);
	assert_non_null(e->type);
	assert_non_null(e->container);
	if (s->n < 64) {
		snprintf(s->name[s->n], SNIFF_NAME_MAX, "%s", e->name);
		snprintf(s->type[s->n], SNIFF_TYPE_MAX, "%s", e->type);
		snprintf(s->container[s->n], SNIFF_NAME_MAX, "%s", e->container);
		s->depth[s->n] = e->depth;
		s->encrypted[s->n] = e->encrypted;
	}
	s->n++;
}

static enum sniff_status
walk(const void *buf, size_t len, const struct sniff_limits *lim, struct seen *s,
    struct sniff_result *res)
{
	memset(s, 0, sizeof(*s));
	return sniff_archive(sn, buf, len, lim, entry_cb, s, res);
}

static int
setup(void **state)
{
	char err[256];

	(void)state;
	sn = sniff_open(NULL, err, sizeof(err));
	if (sn == NULL)
		fprintf(stderr, "sniff_open: %s\n", err);
	return sn ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	sniff_close(sn);
	return 0;
}

static void
test_types(void **state)
{
	unsigned char pe[512];
	char t[SNIFF_TYPE_MAX];

	(void)state;
	make_pe(pe, sizeof(pe));
	assert_int_equal(sniff_type(sn, pe, sizeof(pe), t, sizeof(t)), 0);
	assert_string_equal(t, "application/vnd.microsoft.portable-executable");
	sniff_type(sn, "%PDF-1.4\n%\xe2\xe3\n", 14, t, sizeof(t));
	assert_string_equal(t, "application/pdf");
	sniff_type(sn, "hello, world\n", 13, t, sizeof(t));
	assert_string_equal(t, "text/plain");
	sniff_type(sn, "\x7f" "ELF\x02\x01\x01", 7, t, sizeof(t));
	assert_true(strncmp(t, "application/", 12) == 0);
	sniff_type(sn, "", 0, t, sizeof(t));
	assert_string_equal(t, "application/x-empty");
	assert_true(sniff_is_archive("application/zip"));
	assert_true(sniff_is_archive("application/gzip"));
	assert_true(sniff_is_archive(
	    "application/vnd.openxmlformats-officedocument.wordprocessingml.document"));
	assert_false(sniff_is_archive("application/pdf"));
	assert_false(sniff_is_archive("text/plain"));
}

static void
test_bad_magic_file(void **state)
{
	char err[256];

	(void)state;
	assert_null(sniff_open("/nonexistent/magic.mgc", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/magic.mgc"));
}

static void
test_zip_with_exe(void **state)
{
	unsigned char pe[4096], *zip;
	struct file f[] = { { "readme.txt", "just text\n", 10 }, { "dir/invoice.pdf.exe", pe,
		sizeof(pe) } };
	struct sniff_result res;
	struct seen s;
	size_t len;
	char t[SNIFF_TYPE_MAX];

	(void)state;
	make_pe(pe, sizeof(pe));
	zip = build("zip", NULL, NULL, NULL, f, 2, &len);
	sniff_type(sn, zip, len, t, sizeof(t));
	assert_string_equal(t, "application/zip");
	assert_int_equal(walk(zip, len, NULL, &s, &res), SNIFF_OK);
	assert_int_equal(s.n, 2);
	assert_int_equal(res.entries, 2);
	assert_string_equal(s.name[0], "readme.txt");
	assert_string_equal(s.type[0], "text/plain");
	assert_string_equal(s.name[1], "dir/invoice.pdf.exe");
	assert_string_equal(s.type[1], "application/vnd.microsoft.portable-executable");
	assert_int_equal(s.depth[1], 1);
	assert_string_equal(s.container[1], "");
	assert_non_null(strstr(res.format, "ZIP"));
	free(zip);
}

/* zip in zip in zip in zip: with max_depth 3 the fourth is not opened. */
static void
test_nested_depth(void **state)
{
	unsigned char pe[1024], *cur, *next;
	size_t len;
	struct sniff_result res;
	struct seen s;
	static const char *const names[] = { "l3.zip", "l2.zip", "l1.zip" };

	(void)state;
	make_pe(pe, sizeof(pe));
	struct file f = { "deep.exe", pe, sizeof(pe) };
	cur = build("zip", NULL, NULL, NULL, &f, 1, &len);
	for (int i = 0; i < 3; i++) {
		struct file g = { names[i], cur, len };

		next = build("zip", NULL, NULL, NULL, &g, 1, &len);
		free(cur);
		cur = next;
	}
	/* l1.zip > l2.zip > l3.zip > deep.exe */
	assert_int_equal(walk(cur, len, NULL, &s, &res), SNIFF_TOO_DEEP);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.name[2], "l3.zip");
	assert_int_equal(s.depth[2], 3);
	assert_string_equal(s.container[2], "l2.zip");
	assert_non_null(strstr(res.reason, "l3.zip"));

	struct sniff_limits lim = sniff_default_limits;
	lim.max_depth = 4;
	assert_int_equal(walk(cur, len, &lim, &s, &res), SNIFF_OK);
	assert_int_equal(s.n, 4);
	assert_string_equal(s.name[3], "deep.exe");
	assert_string_equal(s.type[3], "application/vnd.microsoft.portable-executable");
	assert_int_equal(s.depth[3], 4);
	free(cur);
}

static void
test_too_many_entries(void **state)
{
	struct file f[30];
	char names[30][16];
	unsigned char *zip;
	size_t len;
	struct sniff_result res;
	struct seen s;
	struct sniff_limits lim = sniff_default_limits;

	(void)state;
	for (int i = 0; i < 30; i++) {
		snprintf(names[i], sizeof(names[i]), "f%02d.txt", i);
		f[i].name = names[i];
		f[i].data = "x";
		f[i].len = 1;
	}
	zip = build("zip", NULL, NULL, NULL, f, 30, &len);
	lim.max_entries = 10;
	assert_int_equal(walk(zip, len, &lim, &s, &res), SNIFF_TOO_MANY);
	assert_int_equal(s.n, 10);
	free(zip);
}

/* 10 MiB of zeros in a tar.gz: the budget stops the inflation. */
static void
test_bomb_budget(void **state)
{
	size_t big = 10 << 20, len;
	unsigned char *zeros = calloc(1, big), *tgz;
	struct file f[] = { { "zeros.bin", zeros, big }, { "after.txt", "x", 1 } };
	struct sniff_result res;
	struct seen s;
	struct sniff_limits lim = sniff_default_limits;

	(void)state;
	tgz = build("ustar", "gzip", NULL, NULL, f, 2, &len);
	assert_true(len < 100000);
	lim.max_total = 1 << 20;
	assert_int_equal(walk(tgz, len, &lim, &s, &res), SNIFF_TOO_BIG);
	assert_true(res.bytes <= lim.max_total + lim.sniff_bytes);
	assert_int_equal(s.n, 1);
	/* with room enough, everything */
	lim.max_total = 64 << 20;
	assert_int_equal(walk(tgz, len, &lim, &s, &res), SNIFF_OK);
	assert_int_equal(s.n, 2);
	free(tgz);

	/* zip: an unneeded entry is skipped without inflating it */
	tgz = build("zip", NULL, NULL, NULL, f, 2, &len);
	lim.max_total = 1 << 20;
	assert_int_equal(walk(tgz, len, &lim, &s, &res), SNIFF_OK);
	assert_int_equal(s.n, 2);
	assert_true(res.bytes <= 2 * lim.sniff_bytes);
	free(tgz);
	free(zeros);
}

/* A nested archive larger than max_entry_size is not read into memory. */
static void
test_nested_too_big(void **state)
{
	size_t big = 2 << 20, len, ilen;
	unsigned char *rnd = malloc(big), *inner, *outer;
	uint32_t x = 7;
	struct sniff_result res;
	struct seen s;
	struct sniff_limits lim = sniff_default_limits;

	(void)state;
	for (size_t i = 0; i < big; i++) {
		x = x * 1664525u + 1013904223u;
		rnd[i] = (unsigned char)(x >> 24);
	}
	struct file f = { "noise.bin", rnd, big };
	inner = build("zip", NULL, NULL, NULL, &f, 1, &ilen);
	struct file g = { "inner.zip", inner, ilen };
	outer = build("zip", NULL, "zip:compression=store", NULL, &g, 1, &len);
	lim.max_entry_size = 1 << 20;
	assert_int_equal(walk(outer, len, &lim, &s, &res), SNIFF_TOO_BIG);
	assert_non_null(strstr(res.reason, "inner.zip"));
	assert_int_equal(s.n, 1);
	lim.max_entry_size = 4 << 20;
	assert_int_equal(walk(outer, len, &lim, &s, &res), SNIFF_OK);
	assert_int_equal(s.n, 2);
	free(rnd);
	free(inner);
	free(outer);
}

static void
test_encrypted(void **state)
{
	unsigned char pe[1024], *zip;
	struct file f[] = { { "secret.exe", pe, sizeof(pe) }, { "other.txt", "hello\n", 6 } };
	size_t len;
	struct sniff_result res;
	struct seen s;

	(void)state;
	make_pe(pe, sizeof(pe));
	zip = build("zip", NULL, "zip:encryption=zipcrypt", "secret", f, 2, &len);
	assert_int_equal(walk(zip, len, NULL, &s, &res), SNIFF_ENCRYPTED);
	assert_int_equal(s.n, 2); /* names are still listed */
	assert_string_equal(s.name[0], "secret.exe");
	assert_true(s.encrypted[0]);
	assert_string_equal(s.type[0], "");
	assert_string_equal(s.name[1], "other.txt");
	assert_non_null(strstr(res.reason, "secret.exe"));
	free(zip);
}

static void
test_corrupt_and_not_archive(void **state)
{
	unsigned char pe[2048], *zip;
	struct file f[] = { { "a.exe", pe, sizeof(pe) }, { "b.txt", "b\n", 2 } };
	size_t len;
	struct sniff_result res;
	struct seen s;

	(void)state;
	make_pe(pe, sizeof(pe));
	zip = build("zip", NULL, NULL, NULL, f, 2, &len);
	/* cut off the central directory: the seekable reader cannot open it */
	assert_int_equal(walk(zip, len / 2, NULL, &s, &res), SNIFF_CORRUPT);
	assert_true(res.reason[0] != '\0');
	free(zip);
	assert_int_equal(walk("just some text\n", 15, NULL, &s, &res), SNIFF_NOT_ARCHIVE);
	assert_int_equal(s.n, 0);
	assert_int_equal(walk("", 0, NULL, &s, &res), SNIFF_NOT_ARCHIVE);
	/* a zip local header followed by data that does not inflate */
	static const unsigned char bad[] = "PK\x03\x04\x0a\x00\x00\x00\x08\x00\x00\x00\x00\x00"
	    "\x00\x00\x00\x00\x10\x00\x00\x00\x10\x00\x00\x00\x01\x00\x00\x00" "a"
	    "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
	assert_int_equal(walk(bad, sizeof(bad) - 1, NULL, &s, &res), SNIFF_CORRUPT);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.name[0], "a");
}

static void
test_gzip_single_and_7z(void **state)
{
	unsigned char pe[4096], *gz, *z7;
	struct file f = { "payload", pe, sizeof(pe) };
	struct file g[] = { { "a.txt", "text\n", 5 }, { "b.exe", pe, sizeof(pe) } };
	size_t len;
	struct sniff_result res;
	struct seen s;
	char t[SNIFF_TYPE_MAX];

	(void)state;
	make_pe(pe, sizeof(pe));
	gz = build("raw", "gzip", NULL, NULL, &f, 1, &len);
	sniff_type(sn, gz, len, t, sizeof(t));
	assert_string_equal(t, "application/gzip");
	assert_int_equal(walk(gz, len, NULL, &s, &res), SNIFF_OK);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.type[0], "application/vnd.microsoft.portable-executable");
	free(gz);

	z7 = build("7zip", NULL, NULL, NULL, g, 2, &len);
	sniff_type(sn, z7, len, t, sizeof(t));
	assert_true(sniff_is_archive(t));
	assert_int_equal(walk(z7, len, NULL, &s, &res), SNIFF_OK);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.name[1], "b.exe");
	assert_string_equal(s.type[1], "application/vnd.microsoft.portable-executable");
	free(z7);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_bad_magic_file),
		cmocka_unit_test(test_zip_with_exe),
		cmocka_unit_test(test_nested_depth),
		cmocka_unit_test(test_too_many_entries),
		cmocka_unit_test(test_bomb_budget),
		cmocka_unit_test(test_nested_too_big),
		cmocka_unit_test(test_encrypted),
		cmocka_unit_test(test_corrupt_and_not_archive),
		cmocka_unit_test(test_gzip_single_and_7z),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
