/*
 * util - allocation helpers and the fatal tier of the error policy.
 *
 * Error policy (two tiers, written down once):
 *  - Recoverable errors (a peer misbehaves, a syscall fails for one session,
 *    a config line is wrong) are returned as -1 / NULL with a message for the
 *    caller, and unwind through one cleanup label.  One session failing never
 *    takes the process down.
 *  - Broken invariants and allocation failure are fatal at once: fatal()
 *    logs the function name and exits.  A worker that exits is respawned by
 *    the master; sessions it carried see a reset, never a half-relayed mail.
 */
#ifndef SMTPGW_UTIL_H
#define SMTPGW_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* The struct that holds member m at address p (through void * for alignment checkers). */
#define container_of(p, type, m) ((type *)(void *)((char *)(p) - offsetof(type, m)))

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

void fatal_at(const char *func, const char *fmt, ...) PRINTF_LIKE(2, 3) NORETURN;
#define fatal(...) fatal_at(__func__, __VA_ARGS__)
#define FATAL_IF(cond) do { if (cond) fatal("invariant failed: %s", #cond); } while (0)

/* Copy with truncation detection; returns -1 if src did not fit. */
int strlcpy_checked(char *dst, const char *src, size_t size);

/* Random 48-bit session identifier printed as 12 hex digits. */
uint64_t random_id(void);

/* Monotonic clock in milliseconds. */
uint64_t now_ms(void);

/*
 * Functions that have hurt C network daemons before are refused at compile
 * time (HAProxy does the same): use snprintf / strlcpy_checked instead.
 */
#include <stdio.h>  /* declared before they are poisoned */
#include <string.h>
#ifndef SMTPGW_ALLOW_UNSAFE
#pragma GCC poison strcpy strcat sprintf vsprintf gets
#endif

#endif
