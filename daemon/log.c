/*
 * log - stderr or syslog, one line per event.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_target log_target = LOG_TO_STDERR;
static int log_debug_on;
static char log_proc[32] = "smtpgw";
static int log_pid; /* set when the process takes its name (after fork) */

void
log_init(enum log_target target, const char *procname, int debug)
{
	log_target = target;
	log_debug_on = debug;
	log_set_procname(procname);
	if (target == LOG_TO_SYSLOG)
		openlog("smtpgw", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_procname(const char *procname)
{
	(void)strlcpy_checked(log_proc, procname, sizeof(log_proc));
	log_pid = (int)getpid();
}

static void PRINTF_LIKE(3, 0)
log_vemit(enum log_level lvl, const char *prefix, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	if (log_target == LOG_TO_SYSLOG) {
		syslog((int)lvl, "%s%s", prefix, line);
		return;
	}

	struct timespec ts;
	struct tm tm;
	char stamp[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One write(2) per line so lines of concurrent processes never interleave. */
	char out[2300];
	int m = snprintf(out, sizeof(out), "%s.%03ldZ smtpgw[%d] %s: %s%s\n", stamp,
	    ts.tv_nsec / 1000000, log_pid ? log_pid : (int)getpid(), log_proc, prefix, line);
	if (m > 0) {
		size_t len = (size_t)m < sizeof(out) ? (size_t)m : sizeof(out) - 1;
		if ((size_t)m >= sizeof(out))
			out[len - 1] = '\n';
		(void)!write(STDERR_FILENO, out, len);
	}
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(lvl, "", fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_debug_on)
		return;
	va_start(ap, fmt);
	log_vemit(LOG_LVL_DEBUG, "", fmt, ap);
	va_end(ap);
}

bool
log_debug_enabled(void)
{
	return log_debug_on != 0;
}

void
log_sid(enum log_level lvl, uint64_t sid, const char *fmt, ...)
{
	char prefix[24];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "%012llx ", (unsigned long long)sid);
	va_start(ap, fmt);
	log_vemit(lvl, prefix, fmt, ap);
	va_end(ap);
}

/* Escape src into dst while it fits in room bytes; returns bytes written, *done = all of src. */
static size_t
quote_into(char *dst, size_t room, const char *src, size_t srclen, bool *done)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < srclen; i++) {
		unsigned char c = (unsigned char)src[i];
		bool plain = c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';

		if (o + (plain ? 1 : 4) > room)
			break;
		if (plain) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	*done = i == srclen;
	return o;
}

const char *
log_quote(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	size_t o;
	bool done;

	if (dstlen == 0)
		return dst;
	o = quote_into(dst, dstlen - 1, src, srclen, &done);
	if (!done) {
		/* Did not fit: keep whole escapes only, and end with "...". */
		o = dstlen >= 4 ? quote_into(dst, dstlen - 4, src, srclen, &done) : 0;
		if (o + 4 <= dstlen) {
			memcpy(dst + o, "...", 3);
			o += 3;
		}
	}
	dst[o] = '\0';
	return dst;
}
