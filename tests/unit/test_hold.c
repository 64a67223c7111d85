/*
 * test_hold - held messages: memory up to the bound, then an unlinked
 * spool file (0600, no name in the spool directory, gone when freed),
 * read back byte-exact; the inspector's edits checked against the rules
 * of inspect.h and applied by the cursor, across the memory/file seam.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hold.h"

static char dir[] = "/tmp/test_hold.XXXXXX";

static int
entries(const char *d)
{
	DIR *dd = opendir(d);
	struct dirent *de;
	int n = 0;

	assert_non_null(dd);
	while ((de = readdir(dd)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(dd);
	return n;
}

/* Descriptors of this process that are files under d (named or deleted). */
static int
open_in(const char *d)
{
	DIR *dd = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(dd);
	while ((de = readdir(dd)) != NULL) {
		char link[300], target[PATH_MAX];
		ssize_t len;

		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (strncmp(target, d, strlen(d)) == 0 && target[strlen(d)] == '/')
			n++;
	}
	closedir(dd);
	return n;
}

/* The whole held message through a cursor (edits applied), pieces of at most max. */
static char *
read_all(struct hold *h, const struct inspect_edit *ed, unsigned n, size_t max, size_t *len)
{
	struct hold_cursor c;
	char *out = NULL;
	size_t o = 0;
	const char *p;
	ssize_t k;

	hold_cursor_init(&c, h, ed, n);
	while ((k = hold_cursor_next(&c, &p, max)) > 0) {
		assert_true((size_t)k <= max);
		out = realloc(out, o + (size_t)k + 1);
		assert_non_null(out);
		memcpy(out + o, p, (size_t)k);
		o += (size_t)k;
	}
	assert_int_equal(k, 0);
	if (out == NULL)
		out = calloc(1, 1);
	out[o] = '\0';
	*len = o;
	return out;
}

static int
setup(void **state)
{
	(void)state;
	if (dir[sizeof(dir) - 2] == 'X')
		assert_non_null(mkdtemp(dir));
	return 0;
}

static void
test_memory_only(void **state)
{
	struct hold h;
	size_t len;
	char *out;

	(void)state;
	hold_init(&h, 4096, dir);
	assert_int_equal(hold_append(&h, "Subject: x\r\n\r\nbody\r\n", 20), 0);
	assert_int_equal(hold_seal(&h), 0);
	assert_false(hold_spooled(&h));
	assert_int_equal(open_in(dir), 0);
	out = read_all(&h, NULL, 0, 7, &len);
	assert_int_equal(len, 20);
	assert_memory_equal(out, "Subject: x\r\n\r\nbody\r\n", 20);
	free(out);
	hold_free(&h);
}

/* Beyond the bound: a spool file without a name, 0600, gone with hold_free(). */
static void
test_spooled_byte_exact(void **state)
{
	struct hold h;
	size_t total = 0, len;
	char *want = malloc(300 * 1024), *out;
	struct stat st;

	(void)state;
	assert_non_null(want);
	hold_init(&h, 4096, dir);
	for (int i = 0; total + 100 < 300 * 1024; i++) {
		char line[100];
		int n = snprintf(line, sizeof(line), "line %06d %.*s\r\n", i, i % 60,
		    "................................................................");
		memcpy(want + total, line, (size_t)n);
		total += (size_t)n;
		assert_int_equal(hold_append(&h, line, (size_t)n), 0);
	}
	assert_true(hold_spooled(&h));
	assert_int_equal(hold_seal(&h), 0);
	assert_int_equal(h.size, total);
	assert_true(h.memlen <= 4096);
	/* the file has no name: the directory is empty, yet the descriptor is there */
	assert_int_equal(entries(dir), 0);
	assert_int_equal(open_in(dir), 1);
	assert_int_equal(fstat(h.fd, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_nlink, 0);
	out = read_all(&h, NULL, 0, 1000, &len);
	assert_int_equal(len, total);
	assert_memory_equal(out, want, total);
	free(out);
	hold_free(&h);
	assert_int_equal(open_in(dir), 0);
	assert_int_equal(entries(dir), 0);
	free(want);
}

static void
test_spool_error(void **state)
{
	struct hold h;
	char big[8192];

	(void)state;
	memset(big, 'x', sizeof(big));
	hold_init(&h, 4096, "/nonexistent/smtpgw-spool");
	assert_int_equal(hold_append(&h, big, 4000), 0); /* in memory */
	assert_int_equal(hold_append(&h, big, sizeof(big)), -1);
	assert_int_equal(h.error, ENOENT);
	assert_int_equal(hold_append(&h, "x", 1), -1); /* sticky */
	assert_int_equal(hold_seal(&h), -1);
	hold_free(&h);
}

/* A crash between creation and unlink leaves a named file: the sweep removes only those. */
static void
test_sweep(void **state)
{
	char path[PATH_MAX];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/smtpgw-hold.abc123", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/keep-me", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	hold_sweep(dir);
	assert_int_equal(entries(dir), 1);
	assert_int_equal(unlink(path), 0);
}

static struct inspect_edit
ed(uint64_t off, uint64_t len, const char *text)
{
	struct inspect_edit e = { .off = off, .len = len, .text = (char *)(uintptr_t)text,
		.textlen = strlen(text) };
	return e;
}

#define MSG "From: a@example.com\r\nSubject: hello\r\n\r\n.dot line\r\nsecond\r\nthird\r\n"

static void
held(struct hold *h, size_t memmax)
{
	hold_init(h, memmax, dir);
	assert_int_equal(hold_append(h, MSG, strlen(MSG)), 0);
	assert_int_equal(hold_seal(h), 0);
}

static void
test_edits_check(void **state)
{
	struct hold h;
	const char *why = NULL;
	size_t subj = strlen("From: a@example.com\r\n");
	size_t subjlen = strlen("Subject: hello\r\n");
	struct inspect_edit ok[2] = { ed(0, 0, "X-Scanned: yes\r\n"),
		ed(subj, subjlen, "Subject: [tagged] hello\r\n") };
	struct inspect_edit mid[1] = { ed(3, 2, "") };
	struct inspect_edit end_mid[1] = { ed(subj, 3, "") };
	struct inspect_edit overlap[2] = { ed(0, subj + subjlen, ""), ed(subj, 0, "") };
	struct inspect_edit unsorted[2] = { ed(subj, 0, "A: b\r\n"), ed(0, 0, "C: d\r\n") };
	struct inspect_edit beyond[1] = { ed(strlen(MSG), 1, "") };
	struct inspect_edit bare_lf[1] = { ed(0, 0, "A: b\nC: d\r\n") };
	struct inspect_edit no_crlf[1] = { ed(0, 0, "A: b") };
	struct inspect_edit nul[1] = { { .off = 0, .len = 0, .text = (char *)"A\0b\r\n",
		.textlen = 5 } };
	char longtext[1100];
	memset(longtext, 'L', 1000);
	memcpy(longtext + 1000, "\r\n", 3);
	struct inspect_edit too_long[1] = { ed(0, 0, longtext) };
	struct inspect_edit at_end[1] = { ed(strlen(MSG), 0, "appended\r\n") };

	(void)state;
	held(&h, 4096);
	assert_int_equal(hold_edits_check(&h, ok, 2, 998, &why), 0);
	assert_int_equal(hold_edits_check(&h, at_end, 1, 998, &why), 0);
	assert_int_equal(hold_edits_check(&h, mid, 1, 998, &why), -1);
	assert_string_equal(why, "edit not on line boundaries");
	assert_int_equal(hold_edits_check(&h, end_mid, 1, 998, &why), -1);
	assert_int_equal(hold_edits_check(&h, overlap, 2, 998, &why), -1);
	assert_string_equal(why, "edits not sorted or overlapping");
	assert_int_equal(hold_edits_check(&h, unsorted, 2, 998, &why), -1);
	assert_int_equal(hold_edits_check(&h, beyond, 1, 998, &why), -1);
	assert_string_equal(why, "edit beyond the end of the message");
	assert_int_equal(hold_edits_check(&h, bare_lf, 1, 998, &why), -1);
	assert_int_equal(hold_edits_check(&h, no_crlf, 1, 998, &why), -1);
	assert_int_equal(hold_edits_check(&h, nul, 1, 998, &why), -1);
	assert_int_equal(hold_edits_check(&h, too_long, 1, 998, &why), -1);
	assert_int_equal(hold_edits_check(&h, too_long, 1, 1000, &why), 0);
	hold_free(&h);
}

/* Insert, replace, delete and append; the same result from memory and across the seam. */
static void
test_cursor_edits(void **state)
{
	size_t subj = strlen("From: a@example.com\r\n");
	size_t subjlen = strlen("Subject: hello\r\n");
	size_t second = strlen("From: a@example.com\r\nSubject: hello\r\n\r\n.dot line\r\n");
	struct inspect_edit e[4] = {
		ed(0, 0, "X-Scanned: yes\r\n"),
		ed(subj, subjlen, "Subject: [tagged] hello\r\n"),
		ed(second, strlen("second\r\n"), ""),
		ed(strlen(MSG), 0, "--\r\n.footer\r\n"),
	};
	const char *want = "X-Scanned: yes\r\nFrom: a@example.com\r\nSubject: [tagged] hello\r\n"
	    "\r\n.dot line\r\nthird\r\n--\r\n.footer\r\n";

	(void)state;
	for (size_t memmax = 8; memmax <= 4096; memmax *= 8) {
		for (size_t max = 1; max <= 4096; max *= 4) {
			struct hold h;
			size_t len;
			char *out;
			const char *why;

			held(&h, memmax);
			assert_int_equal(hold_spooled(&h), memmax < strlen(MSG));
			assert_int_equal(hold_edits_check(&h, e, 4, 998, &why), 0);
			out = read_all(&h, e, 4, max, &len);
			assert_string_equal(out, want);
			free(out);
			/* no edits: the original */
			out = read_all(&h, NULL, 0, max, &len);
			assert_string_equal(out, MSG);
			free(out);
			hold_free(&h);
		}
	}
	assert_int_equal(open_in(dir), 0);
}

static int
teardown_group(void **state)
{
	(void)state;
	assert_int_equal(entries(dir), 0);
	rmdir(dir);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory_only),
		cmocka_unit_test(test_spooled_byte_exact),
		cmocka_unit_test(test_spool_error),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_edits_check),
		cmocka_unit_test(test_cursor_edits),
	};

	return cmocka_run_group_tests(tests, setup, teardown_group);
}
