/*
 * log - stderr or syslog, one line per event; the quoting of untrusted
 * values and the per-session limit of repeated lines (log.h).
 */
#include <limits.h>
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
	else
		closelog(); /* a reload may turn syslog off: its socket goes */
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

static void PRINTF_LIKE(3, 0)
log_vsid(enum log_level lvl, uint64_t sid, const char *fmt, va_list ap)
{
	char prefix[24];

	snprintf(prefix, sizeof(prefix), "%012llx ", (unsigned long long)sid);
	log_vemit(lvl, prefix, fmt, ap);
}

void
log_sid(enum log_level lvl, uint64_t sid, const char *fmt, ...)
{
	va_list ap;

	if (lvl == LOG_LVL_DEBUG && !log_debug_on)
		return;
	va_start(ap, fmt);
	log_vsid(lvl, sid, fmt, ap);
	va_end(ap);
}

/*
 * Alarms: at most ALARM_BURST a second per process, then one summary per
 * second with the count dropped.  The syslog ident is switched for the
 * line (openlog keeps no state a line could race with: one thread).
 */
#define ALARM_BURST 20

void
log_alarm(uint64_t sid, const char *fmt, ...)
{
	static uint64_t window;
	static unsigned sent, dropped;
	uint64_t now = now_ms() / 1000;
	char line[1800];
	va_list ap;

	if (now != window) {
		if (dropped)
			log_msg(LOG_LVL_WARN, "alarm suppressed=%u window_ms=1000", dropped);
		window = now;
		sent = dropped = 0;
	}
	if (sent >= ALARM_BURST) {
		dropped++;
		return;
	}
	sent++;
	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_target == LOG_TO_SYSLOG) {
		closelog();
		openlog("smtpgw-alarm", LOG_PID | LOG_NDELAY, LOG_MAIL);
		syslog(LOG_ALERT, "%012llx alarm %s", (unsigned long long)sid, line);
		closelog();
		openlog("smtpgw", LOG_PID | LOG_NDELAY, LOG_MAIL);
		return;
	}
	log_sid(LOG_LVL_WARN, sid, "alarm %s", line);
}

/* ---- quoting ---- */

/* A byte that may stand in a bare token. */
static bool
quote_bare(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
}

/* Bytes c takes inside quotes: itself, \" or \\, or \xHH. */
static size_t
quote_width(unsigned char c)
{
	if (c == '"' || c == '\\')
		return 2;
	if (c < 0x20 || c >= 0x7f)
		return 4;
	return 1;
}

/*
 * Write src into dst while whole characters fit in room (escaped when
 * quoted); returns the bytes written, *done = all of src.
 */
static size_t
quote_into(char *dst, size_t room, const char *src, size_t srclen, bool quoted, bool *done)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < srclen; i++) {
		unsigned char c = (unsigned char)src[i];
		size_t w = quoted ? quote_width(c) : 1;

		if (o + w > room)
			break;
		switch (w) {
		case 1:
			dst[o++] = (char)c;
			break;
		case 2:
			dst[o++] = '\\';
			dst[o++] = (char)c;
			break;
		default:
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
			break;
		}
	}
	*done = i == srclen;
	return o;
}

const char *
log_quote(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	bool quoted = false, done;
	size_t room, q, o;
	char *body;

	if (dstlen == 0)
		return dst;
	for (size_t i = 0; i < srclen && !quoted; i++)
		quoted = !quote_bare((unsigned char)src[i]);
	room = dstlen - 1;
	q = quoted ? 2 : 0;
	if (room < q) {
		/* Not even room for "": the empty token is the only safe one. */
		dst[0] = '\0';
		return dst;
	}
	body = dst + (quoted ? 1 : 0);
	o = quote_into(body, room - q, src, srclen, quoted, &done);
	if (!done) {
		/* Cut: keep whole characters only, and say so with "...". */
		if (room >= q + 3) {
			o = quote_into(body, room - q - 3, src, srclen, quoted, &done);
			memcpy(body + o, "...", 3);
			o += 3;
		} else {
			/* No room to say it was cut: the empty token. */
			dst[0] = '\0';
			return dst;
		}
	}
	if (quoted) {
		dst[0] = '"';
		body[o++] = '"';
	}
	body[o] = '\0';
	return dst;
}

const char *
log_quote_str(char *dst, size_t dstlen, const char *s)
{
	if (s == NULL)
		s = "-";
	return log_quote(dst, dstlen, s, strlen(s));
}

/* ---- rate limit per session ---- */

static uint64_t
limit_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A kind's name: the format's first words, up to the first field or conversion. */
static void
limit_kind_name(const char *fmt, char *out, size_t len)
{
	const char *p = fmt;
	size_t o = 0;

	out[0] = '\0';
	while (*p != '\0') {
		const char *w = p;
		size_t n;

		while (*p != '\0' && *p != ' ')
			p++;
		n = (size_t)(p - w);
		if (n == 0 || memchr(w, '=', n) != NULL || memchr(w, '%', n) != NULL)
			break;
		if (o + (o ? 1 : 0) + n >= len)
			break;
		if (o)
			out[o++] = ' ';
		memcpy(out + o, w, n);
		o += n;
		out[o] = '\0';
		while (*p == ' ')
			p++;
	}
}

static unsigned
limit_window(const struct log_limit *l)
{
	return l->window_ms ? l->window_ms : LOG_LIMIT_WINDOW_MS;
}

/* The summary of a slot's dropped lines, if any. */
static void
limit_report(const struct log_limit *l, struct log_limit_slot *sl, uint64_t sid)
{
	char name[64], q[LOG_QUOTE_SIZE(64)];

	if (sl->key == NULL || sl->suppressed == 0)
		return;
	limit_kind_name(sl->key, name, sizeof(name));
	log_sid(sl->lvl, sid, "log suppressed=%u line=%s window_ms=%u", sl->suppressed,
	    log_quote_str(q, sizeof(q), name), limit_window(l));
	sl->suppressed = 0;
}

void
log_limit_init(struct log_limit *l, unsigned burst, unsigned window_ms)
{
	memset(l, 0, sizeof(*l));
	l->burst = burst;
	l->window_ms = window_ms;
}

bool
log_sid_limited(struct log_limit *l, enum log_level lvl, uint64_t sid, const char *fmt, ...)
{
	unsigned burst = l->burst ? l->burst : LOG_LIMIT_BURST;
	struct log_limit_slot *sl = NULL;
	uint64_t now;
	va_list ap;

	if (lvl == LOG_LVL_DEBUG && !log_debug_on)
		return false;
	now = limit_now_ms();
	for (int i = 0; i < LOG_LIMIT_SLOTS && sl == NULL; i++)
		if (l->slot[i].key == fmt)
			sl = &l->slot[i];
	if (sl == NULL) {
		/* A new kind: a free slot, else the one whose window is oldest. */
		sl = &l->slot[0];
		for (int i = 0; i < LOG_LIMIT_SLOTS; i++) {
			if (l->slot[i].key == NULL) {
				sl = &l->slot[i];
				break;
			}
			if (l->slot[i].since_ms < sl->since_ms)
				sl = &l->slot[i];
		}
		limit_report(l, sl, sid);
		memset(sl, 0, sizeof(*sl));
		sl->key = fmt;
		sl->since_ms = now;
	} else if (now - sl->since_ms >= limit_window(l)) {
		limit_report(l, sl, sid);
		sl->since_ms = now;
		sl->lines = 0;
	}
	sl->lvl = lvl;
	if (sl->lines >= burst) {
		if (sl->suppressed < UINT_MAX)
			sl->suppressed++;
		return false;
	}
	sl->lines++;
	va_start(ap, fmt);
	log_vsid(lvl, sid, fmt, ap);
	va_end(ap);
	return true;
}

void
log_limit_flush(struct log_limit *l, uint64_t sid)
{
	for (int i = 0; i < LOG_LIMIT_SLOTS; i++) {
		limit_report(l, &l->slot[i], sid);
		l->slot[i].key = NULL;
	}
}
