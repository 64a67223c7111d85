/*
 * log - one line per event, key=value fields, printf-checked.
 *
 * Every line that concerns a session starts with its 12-hex-digit id, so
 * `grep ID` follows a connection from accept to close.  Values that come
 * from the network are passed through log_quote() so a peer can never forge
 * a field or a line.  AUTH payloads are never logged.
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
 * Copy untrusted bytes into dst as a printable token: non-printables,
 * spaces, quotes and backslashes become \xHH; the result is truncated
 * (with "...") to fit.  Returns dst.
 */
const char *log_quote(char *dst, size_t dstlen, const char *src, size_t srclen);

#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
void log_debug(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Debug lines are wanted (-d): callers skip building them otherwise. */
bool log_debug_enabled(void);

#endif
