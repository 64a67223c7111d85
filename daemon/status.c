/*
 * status - write the master's status file (format in status.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "status.h"
#include "util.h"

const char *
reload_result_name(enum reload_result r)
{
	switch (r) {
	case RELOAD_NONE: return "none";
	case RELOAD_OK: return "ok";
	case RELOAD_REJECTED: return "rejected";
	case RELOAD_FAILED: return "failed";
	}
	return "invalid";
}

/* A value on one line: control characters (newlines above all) become spaces. */
static void
put_value(FILE *f, const char *key, const char *v)
{
	fprintf(f, "%s=", key);
	for (; v && *v; v++)
		fputc((unsigned char)*v < 0x20 || *v == 0x7f ? ' ' : *v, f);
	fputc('\n', f);
}

void
status_print(const struct status *st, time_t now, FILE *f)
{
	fprintf(f, "format=1\nseq=%lu\nupdated=%lld\n", st->seq, (long long)now);
	fprintf(f, "pid=%d\n", (int)st->pid);
	put_value(f, "version", st->version);
	put_value(f, "config", st->config);
	fprintf(f, "started=%lld\n", (long long)st->started);
	fprintf(f, "generation=%u\nreloads=%u\n", st->generation, st->reloads);
	fprintf(f, "reload-result=%s\n", reload_result_name(st->reload_result));
	put_value(f, "reload-error", st->reload_error);
	fprintf(f, "reload-time=%lld\n", (long long)st->reload_time);
	fprintf(f, "classifier-pid=%d\nclassifier=%s\n", (int)st->classifier_pid,
	    st->classifier_alive ? "running" : "down");
	fprintf(f, "signer-pid=%d\nsigner=%s\n", (int)st->signer_pid,
	    st->signer_alive ? "running" : "down");
	fprintf(f, "workers=%u\nworkers-expected=%u\nworkers-draining=%u\n", st->workers,
	    st->workers_expected, st->workers_draining);
	fprintf(f, "inspected=%llu\ninspect-denied=%llu\ninspect-stripped=%llu\nalarms=%llu\n",
	    st->inspected, st->inspect_denied, st->inspect_stripped, st->alarms);
	put_value(f, "worker-pids", st->worker_pids);
	fprintf(f, "sessions=%u\nchild-deaths=%u\nrespawns=%u\n", st->sessions,
	    st->child_deaths, st->respawns);
	fprintf(f, "viruses=%llu\nspam-rejected=%llu\nspam-marked=%llu\nscan-tempfail=%llu\n"
	    "unscanned=%llu\n", st->viruses, st->spam_rejected, st->spam_marked, st->scan_tempfail,
	    st->unscanned);
	fprintf(f, "quarantined=%llu\nquarantine-failed=%llu\nquarantine-bytes=%llu\n",
	    st->quarantined, st->quarantine_failed, st->quarantine_bytes);
	put_value(f, "quarantine-dir", st->quarantine_dir);
	/* scanstat.h lines, already one key=value per line */
	if (st->scanners)
		fputs(st->scanners, f);
}

int
status_write(const char *path, const struct status *st, char *err, size_t errlen)
{
	char tmp[4096];
	FILE *f;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "path too long");
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	status_print(st, time(NULL), f);
	if (fflush(f) != 0 || ferror(f)) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		fclose(f);
		unlink(tmp);
		return -1;
	}
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}
