/*
 * test_quarantine - the quarantine's records: IDs, the head written and
 * read back (every field, escapes, many recipients), heads that are
 * refused (not a record, missing keys, bad values, over the bounds), the
 * worker's writer (a held message copied in slices, the file appearing
 * only once complete, its size checked when opened), its cancellation,
 * the sweep (age, then size, oldest first, stale partial files), and the
 * directory's preparation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "ev.h"
#include "hold.h"
#include "quarantine.h"

static char dir[] = "/tmp/test_quarantine.XXXXXX";

static const char *const rcpts[] = { "bob@int.test", "b\xc3\xb6rje@int.test" };

static struct qrec
sample(void)
{
	struct qrec r;

	memset(&r, 0, sizeof(r));
	quarantine_make_id(r.id, 1764936000, 0x4f2a91c0e1d3ull, 7);
	r.time = 1764936000;
	r.session = 0x4f2a91c0e1d3ull;
	r.action = "SMTP-Incoming.Standard";
	r.inbound = true;
	r.client = "198.51.100.10:40123";
	r.server = "[2001:db8:1::25]:25";
	r.server_name = "mx.int.test";
	r.server_tls = true;
	r.client_tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
	r.helo = "client.ext.test";
	r.mail_from = "alice@ext.test";
	r.rcpts = rcpts;
	r.nrcpts = 2;
	r.verdict = QV_STRIP;
	r.reason = "virus Eicar 100% sure\r\nX-Injected: yes";
	r.virus = "Eicar-Test-Signature";
	r.spam_score = "";
	r.reply = "";
	r.size = 5;
	return r;
}

static void
test_ids(void **state)
{
	char id[QUARANTINE_ID_MAX];

	quarantine_make_id(id, 1764936000, 0x4f2a91c0e1d3ull, 1);
	assert_string_equal(id, "1764936000-4f2a91c0e1d3-0001");
	assert_true(quarantine_valid_id(id));
	quarantine_make_id(id, 5, 0xffffffffffffffffull, 0x12345);
	assert_string_equal(id, "0000000005-ffffffffffff-2345");
	assert_false(quarantine_valid_id("../../etc/passwd"));
	assert_false(quarantine_valid_id("1764936000-4f2a91c0e1d3-000"));
	assert_false(quarantine_valid_id("1764936000-4F2A91C0E1D3-0001"));
	assert_false(quarantine_valid_id("1764936000-4f2a91c0e1d3-0001.msg"));
	assert_false(quarantine_valid_id("176493600x-4f2a91c0e1d3-0001"));
	assert_false(quarantine_valid_id(""));
}

static void
test_round_trip(void **state)
{
	struct qrec r = sample();
	struct qhead h;
	char *text, why[200];
	size_t len;

	assert_int_equal(quarantine_format_head(&r, &text, &len), 0);
	/* one line per value: the CRLF in the reason is escaped, so is '%' */
	assert_non_null(strstr(text, "reason=virus Eicar 100%25 sure%0D%0AX-Injected: yes\n"));
	assert_null(strstr(text, "\nX-Injected"));
	assert_true(len >= 2 && text[len - 1] == '\n' && text[len - 2] == '\n');
	/* the message follows the head */
	text = realloc(text, len + 5);
	memcpy(text + len, "Hi\r\n\n", 5);
	assert_int_equal(quarantine_parse_head(text, len + 5, &h, why, sizeof(why)), 0);
	assert_int_equal(h.head_len, len);
	assert_string_equal(h.rec.id, r.id);
	assert_int_equal(h.rec.time, r.time);
	assert_int_equal(h.rec.session, r.session);
	assert_string_equal(h.rec.action, r.action);
	assert_true(h.rec.inbound);
	assert_string_equal(h.rec.client, r.client);
	assert_string_equal(h.rec.server, r.server);
	assert_string_equal(h.rec.server_name, r.server_name);
	assert_true(h.rec.server_tls);
	assert_string_equal(h.rec.client_tls, r.client_tls);
	assert_string_equal(h.rec.helo, r.helo);
	assert_string_equal(h.rec.mail_from, r.mail_from);
	assert_int_equal(h.rec.nrcpts, 2);
	assert_string_equal(h.rec.rcpts[0], rcpts[0]);
	assert_string_equal(h.rec.rcpts[1], rcpts[1]);
	assert_int_equal(h.rec.verdict, QV_STRIP);
	assert_string_equal(h.rec.reason, r.reason);
	assert_string_equal(h.rec.virus, r.virus);
	assert_string_equal(h.rec.reply, "");
	assert_int_equal(h.rec.size, 5);
	quarantine_head_free(&h);
	free(text);

	/* the null sender, an outbound deny */
	r.mail_from = "";
	r.inbound = false;
	r.verdict = QV_BLOCK;
	r.reply = "554 5.7.1 no";
	assert_int_equal(quarantine_format_head(&r, &text, &len), 0);
	assert_int_equal(quarantine_parse_head(text, len, &h, why, sizeof(why)), 0);
	assert_string_equal(h.rec.mail_from, "");
	assert_false(h.rec.inbound);
	assert_int_equal(h.rec.verdict, QV_BLOCK);
	assert_string_equal(h.rec.reply, "554 5.7.1 no");
	quarantine_head_free(&h);
	free(text);
}

static void
test_refused_heads(void **state)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
		{ "From: x\n\n", "not a quarantine record" },
		{ "smtpgw-quarantine 1\nid=1764936000-4f2a91c0e1d3-0001\n", "does not end" },
		{ "smtpgw-quarantine 1\nid=1764936000-4f2a91c0e1d3-0001\nnoequals\n\n", "bad head line" },
		{ "smtpgw-quarantine 1\nid=../x\n\n", "bad value of id" },
		{ "smtpgw-quarantine 1\nid=1764936000-4f2a91c0e1d3-0001\nreason=%0\n\n", "bad head line" },
		{ "smtpgw-quarantine 1\nid=1764936000-4f2a91c0e1d3-0001\nreason=%00\n\n", "bad head line" },
		{ "smtpgw-quarantine 1\nid=1764936000-4f2a91c0e1d3-0001\ntime=-1\n\n", "bad value of time" },
		/* what a release puts on the wire: no command injection */
		{ "smtpgw-quarantine 1\nmail-from=a@b%0D%0ARCPT TO:<x@y>\n\n", "bad value of mail-from" },
		{ "smtpgw-quarantine 1\nrcpt=<x@y>\n\n", "bad value of rcpt" },
		{ "smtpgw-quarantine 1\nserver=192.0.2.1:25%0A\n\n", "bad value of server" },
		{ "smtpgw-quarantine 1\nid=1764936000-4f2a91c0e1d3-0001\nverdict=maybe\n\n",
		  "bad value of verdict" },
		{ "smtpgw-quarantine 1\nid=1764936000-4f2a91c0e1d3-0001\ntime=1\nsession=1\n"
		  "verdict=deny\nsize=1\nserver=192.0.2.25:25\ndirection=inbound\n\n", "recipients" },
		{ "smtpgw-quarantine 1\nid=1764936000-4f2a91c0e1d3-0001\ntime=1\nsession=1\n"
		  "verdict=deny\nserver=192.0.2.25:25\ndirection=inbound\nrcpt=a@b\n\n", "size" },
	};
	struct qhead h;
	char why[200];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(quarantine_parse_head(cases[i].text, strlen(cases[i].text), &h, why,
		    sizeof(why)), -1);
		if (strstr(why, cases[i].why) == NULL)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, why, cases[i].why);
		assert_null(h.text);
	}
}

static void
test_bounds(void **state)
{
	struct qrec r = sample();
	const char **many = calloc(QUARANTINE_RCPTS_MAX + 1, sizeof(*many));
	char *text, big[QUARANTINE_VALUE_MAX + 2];
	size_t len;

	for (unsigned i = 0; i <= QUARANTINE_RCPTS_MAX; i++)
		many[i] = "someone@int.test";
	r.rcpts = many;
	r.nrcpts = QUARANTINE_RCPTS_MAX + 1;
	assert_int_equal(quarantine_format_head(&r, &text, &len), -1);
	r.nrcpts = QUARANTINE_RCPTS_MAX;
	assert_int_equal(quarantine_format_head(&r, &text, &len), 0);
	free(text);
	r = sample();
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	r.helo = big;
	assert_int_equal(quarantine_format_head(&r, &text, &len), -1);
	free(many);
}

/* ---- the writer ---- */

static int done_calls, done_err;
static char done_id[QUARANTINE_ID_MAX];

static void
on_done(void *arg, int err, const char *id)
{
	(void)arg;
	done_calls++;
	done_err = err;
	snprintf(done_id, sizeof(done_id), "%s", id);
	ev_break();
}

static size_t
count(const char *d, const char *prefix)
{
	DIR *dd = opendir(d);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(dd);
	while ((de = readdir(dd)) != NULL)
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			n++;
	closedir(dd);
	return n;
}

static void
fill(struct hold *h, size_t size)
{
	char line[100];

	hold_init(h, 4096, dir);
	for (size_t n = 0; n < size; n += sizeof(line)) {
		memset(line, 'a' + (char)(n / sizeof(line) % 26), sizeof(line) - 2);
		line[sizeof(line) - 2] = '\r';
		line[sizeof(line) - 1] = '\n';
		assert_int_equal(hold_append(h, line, sizeof(line)), 0);
	}
	assert_int_equal(hold_seal(h), 0);
}

static void
test_writer(void **state)
{
	struct qrec r = sample();
	struct hold h;
	struct qwrite *w;
	struct qhead head;
	char why[200], path[300];
	struct stat sb;
	int fd;

	fill(&h, 3 * QUARANTINE_SLICE + 1000); /* several slices, spooled */
	w = quarantine_write(dir, 1ull << 30, &r, &h, true, on_done, NULL);
	assert_non_null(w);
	assert_int_equal(r.size, h.size);
	/* nothing named yet: only the partial file */
	assert_int_equal(count(dir, ".tmp-"), 1);
	assert_int_equal(done_calls, 0);
	ev_loop();
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_err, 0);
	assert_string_equal(done_id, r.id);
	assert_int_equal(count(dir, ".tmp-"), 0);
	fd = quarantine_open(dir, r.id, &head, why, sizeof(why));
	assert_true(fd >= 0);
	assert_int_equal(head.rec.size, h.size);
	snprintf(path, sizeof(path), "%s/%s.msg", dir, r.id);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* the message octets, byte-exact */
	for (uint64_t off = 0; off < h.size;) {
		char a[4096];
		const char *b;
		ssize_t n = hold_read(&h, off, sizeof(a), &b);
		assert_true(n > 0);
		assert_int_equal(pread(fd, a, (size_t)n, (off_t)(head.head_len + off)), n);
		assert_memory_equal(a, b, (size_t)n);
		off += (uint64_t)n;
	}
	close(fd);
	quarantine_head_free(&head);
	/* a damaged record (cut short) is refused when opened */
	assert_int_equal(truncate(path, sb.st_size - 1), 0);
	assert_int_equal(quarantine_open(dir, r.id, &head, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "damaged"));
	unlink(path);

	/* cancelled: no file, no call */
	done_calls = 0;
	w = quarantine_write(dir, 1ull << 30, &r, &h, false, on_done, NULL);
	quarantine_write_cancel(w);
	assert_int_equal(count(dir, ".tmp-"), 0);
	assert_int_equal(count(dir, "1764936000"), 0);

	/* larger than the whole quarantine: refused, reported from the loop */
	w = quarantine_write(dir, 1000, &r, &h, false, on_done, NULL);
	assert_int_equal(done_calls, 0);
	ev_loop();
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_err, EFBIG);
	assert_int_equal(count(dir, ".tmp-"), 0);
	hold_free(&h);
	(void)w;
}

static void
touch(const char *name, size_t size, time_t mtime)
{
	char path[300];
	struct timeval tv[2] = { { mtime, 0 }, { mtime, 0 } };
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	assert_int_equal(utimes(path, tv), 0);
}

static void
test_sweep(void **state)
{
	time_t now = 1764936000;

	touch("1764000000-000000000001-0001.msg", 100, now);    /* older than max-age */
	touch("1764000000-000000000001-0001.released", 10, now);
	touch("1764935000-000000000002-0001.msg", 300, now);    /* the oldest kept */
	touch("1764935500-000000000003-0001.msg", 300, now);
	touch("1764935900-000000000004-0001.msg", 300, now);
	touch(".tmp-1764930000-000000000005-0001", 50, now - 7200); /* a crashed writer's */
	touch(".tmp-1764935999-000000000006-0001", 50, now);        /* one at work */
	touch("audit.log", 1000, now);
	/* max-age 86400: the first goes (with its mark); total 900 */
	assert_int_equal(quarantine_sweep(dir, 10000, 86400, now), 900);
	assert_int_equal(count(dir, "1764000000"), 0);
	assert_int_equal(count(dir, ".tmp-"), 1);
	assert_int_equal(count(dir, "audit.log"), 1);
	/* size: the oldest go until at most 400 */
	assert_int_equal(quarantine_sweep(dir, 400, 86400, now), 300);
	assert_int_equal(count(dir, "1764935000"), 0);
	assert_int_equal(count(dir, "1764935500"), 0);
	assert_int_equal(count(dir, "1764935900"), 1);
	assert_int_equal(quarantine_sweep("/nonexistent/q", 400, 86400, now), -1);
}

static void
test_prepare(void **state)
{
	char sub[300], err[300];
	struct stat sb;

	snprintf(sub, sizeof(sub), "%s/a/b/q", dir);
	assert_int_equal(quarantine_prepare(sub, getuid(), getgid(), err, sizeof(err)), 0);
	assert_int_equal(stat(sub, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0770);
	/* an existing one gets its mode back */
	assert_int_equal(chmod(sub, 0755), 0);
	assert_int_equal(quarantine_prepare(sub, getuid(), getgid(), err, sizeof(err)), 0);
	assert_int_equal(stat(sub, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0770);
	/* never through a symlink */
	char link[320];
	snprintf(link, sizeof(link), "%s/link", dir);
	assert_int_equal(symlink(sub, link), 0);
	assert_int_equal(quarantine_prepare(link, getuid(), getgid(), err, sizeof(err)), -1);
	assert_int_equal(quarantine_prepare("relative", getuid(), getgid(), err, sizeof(err)), -1);
	/* never a shared directory */
	assert_int_equal(quarantine_prepare("/tmp", getuid(), getgid(), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "shared directory"));
	/* another owner's directory is taken only when empty */
	if (getuid() == 0) {
		char other[320], file[340];
		snprintf(other, sizeof(other), "%s/other", dir);
		assert_int_equal(mkdir(other, 0755), 0);
		assert_int_equal(chown(other, 1, 1), 0);
		snprintf(file, sizeof(file), "%s/x", other);
		close(open(file, O_CREAT | O_WRONLY, 0600));
		assert_int_equal(quarantine_prepare(other, 65534, 65534, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "not empty"));
		unlink(file);
		assert_int_equal(quarantine_prepare(other, 65534, 65534, err, sizeof(err)), 0);
		assert_int_equal(stat(other, &sb), 0);
		assert_int_equal(sb.st_uid, 65534);
		/*
		 * root's own directory that holds files (spool-dir = /etc) is not
		 * handed to the workers' group; once smtpgw's (0:gid 0770), it is
		 */
		char mine[320], f2[340];
		snprintf(mine, sizeof(mine), "%s/etc-like", dir);
		assert_int_equal(mkdir(mine, 0755), 0);
		snprintf(f2, sizeof(f2), "%s/passwd", mine);
		close(open(f2, O_CREAT | O_WRONLY, 0644));
		assert_int_equal(quarantine_prepare(mine, 0, 65534, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "not empty"));
		assert_int_equal(stat(mine, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0755);
		assert_int_equal(sb.st_gid, 0);
		assert_int_equal(chown(mine, 0, 65534), 0);
		assert_int_equal(chmod(mine, 0770), 0);
		assert_int_equal(quarantine_prepare(mine, 0, 65534, err, sizeof(err)), 0);
		unlink(f2);
	}
	/* "." and ".." in the path are refused */
	char dots[340];
	snprintf(dots, sizeof(dots), "%s/a/b/q/..", dir);
	assert_int_equal(quarantine_prepare(dots, getuid(), getgid(), err, sizeof(err)), -1);
	snprintf(dots, sizeof(dots), "%s/a/../a/b/q", dir);
	assert_int_equal(quarantine_prepare(dots, getuid(), getgid(), err, sizeof(err)), -1);
	snprintf(dots, sizeof(dots), "%s/a/./b/q", dir);
	assert_int_equal(quarantine_prepare(dots, getuid(), getgid(), err, sizeof(err)), -1);
}

static int
setup(void **state)
{
	assert_non_null(mkdtemp(dir));
	ev_init();
	return 0;
}

static int
teardown(void **state)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refused_heads),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_prepare),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
