/*
 * log - one line per event, key=value fields, printf-checked.
 *
 * Every line that concerns a session starts with its 12-hex-digit id, so
 * `grep ID` follows a connection from accept to close.  Values that come
 * from the network are passed through log_quote() so a peer can never forge
 * a field or a line, and repeated lines a peer can provoke go through
 * log_sid_limited().  AUTH payloads are never logged.
 */
#ifndef SMTPGW_LOG_H
#define SMTPGW_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum log_level {
	LOG_LVL_CRIT = 2,
	LOG_LVL_ERR = 3,
	LOG_LVL_WARN = 4,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

enum log_target {
	LOG_TO_STDERR,
	LOG_TO_SYSLOG,
};

void log_init(enum log_target target, const char *procname, int debug);
void log_set_procname(const char *procname);
void log_msg(enum log_level lvl, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* "<sid> <fmt...>" */
void log_sid(enum log_level lvl, uint64_t sid, const char *fmt, ...) PRINTF_LIKE(3, 4);

/*
 * The one way a value from the network (or any value that is not a fixed
 * token of ours) enters a log line: log_quote() renders it as one token
 * that a peer can never use to end the field or the line, and that reads
 * as the value itself:
 *   - bare when every byte is printable ASCII other than space, '"', '\\'
 *     and '=':                    sni=mx.ext.test  from=<alice@int.test>
 *   - otherwise in double quotes, '"' and '\\' escaped with a backslash,
 *     bytes outside printable ASCII (controls, DEL, 8-bit) as \xHH; space
 *     and '=' stay as they are:
 *       subject="/O=smtpgw testbed/CN=mx.ext.test"  helo="x\x0d\x0a1234 fake=1"
 *   - empty stays empty (key= is the empty value).
 * Cut to fit dstlen (terminator included) at a whole character, and then
 * marked with "..." (inside the quotes).  LOG_QUOTE_SIZE(n) bytes always
 * hold n source bytes whole.  Returns dst, for use as a printf argument.
 */
#define LOG_QUOTE_SIZE(n) (4 * (size_t)(n) + 3)
const char *log_quote(char *dst, size_t dstlen, const char *src, size_t srclen);
/* log_quote() of a C string (NULL is "-"). */
const char *log_quote_str(char *dst, size_t dstlen, const char *s);

/*
 * Per-session rate limit of repeated lines: log volume is attacker-driven
 * (every refused command logs a line).  The session embeds a struct
 * log_limit (zeroed: the defaults); log_sid_limited() lets `burst` lines
 * of one kind through per window of `window_ms`, drops the rest and says
 * how many once - "<sid> log suppressed=K line="<kind>" window_ms=W" -
 * when the next line of that kind opens a new window, when its slot is
 * reused for another kind, or at log_limit_flush() (session end).  A kind
 * is a call site: the format string's address is the key, its first
 * words (up to the first field) its name.  LOG_LIMIT_SLOTS kinds are
 * tracked at once; a further kind takes the slot whose window is oldest.
 */
#define LOG_LIMIT_SLOTS 4
#define LOG_LIMIT_BURST 20          /* default lines of one kind per window */
#define LOG_LIMIT_WINDOW_MS 10000u  /* default window */

struct log_limit_slot {
	const char *key;        /* format string; NULL: free */
	uint64_t since_ms;      /* start of the window (CLOCK_MONOTONIC) */
	unsigned lines;         /* logged in this window */
	unsigned suppressed;    /* dropped in this window, not yet reported */
	enum log_level lvl;     /* level of the kind (for its summary) */
};

struct log_limit {
	unsigned burst;         /* 0: LOG_LIMIT_BURST */
	unsigned window_ms;     /* 0: LOG_LIMIT_WINDOW_MS */
	struct log_limit_slot slot[LOG_LIMIT_SLOTS];
};

/* Non-default burst and window (tests, or a tighter limit somewhere). */
void log_limit_init(struct log_limit *l, unsigned burst, unsigned window_ms);
/* log_sid() within the limit; returns whether the line was written. */
bool log_sid_limited(struct log_limit *l, enum log_level lvl, uint64_t sid, const char *fmt,
    ...) PRINTF_LIKE(4, 5);
/* Report what is still suppressed (every kind) and forget it. */
void log_limit_flush(struct log_limit *l, uint64_t sid);

#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
void log_debug(const char *fmt, ...) PRINTF_LIKE(1, 2);
/*
 * An alarm: an event the admin asked to be told about (a rule flagged
 * "alarm").  Logged like log_sid() as "<sid> alarm <fmt...>", and, when
 * logging to syslog, under the ident "smtpgw-alarm" (its own tag, so a
 * syslog rule can route alarms) at LOG_ALERT.  Rate-limited per process:
 * a sender can trigger alarms at will.
 */
void log_alarm(uint64_t sid, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Debug lines are wanted (-d): callers skip building them otherwise. */
bool log_debug_enabled(void);

#endif
