/*
 * ev - one epoll event loop per process, with a timer heap.
 *
 * Why hand-written instead of libevent: the loop is ~200 lines, the only
 * users are io.c (sessions), the listeners and the classifier, and owning
 * it keeps the TLS layer's want-read/want-write juggling and the deferred
 * freeing of sessions in one place we control.  Level-triggered epoll:
 * simpler to get right with TLS, where a read can want a write.
 */
#ifndef SMTPGW_EV_H
#define SMTPGW_EV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_fd {
	int fd;
	uint32_t events; /* EPOLLIN / EPOLLOUT currently registered */
	bool registered;  /* known to epoll (ev_fd_del removes it) */
	void (*cb)(struct ev_fd *e, uint32_t revents);
};

struct ev_timer {
	uint64_t deadline; /* now_ms() based */
	size_t slot;       /* index in the heap + 1; 0 = not armed */
	void (*cb)(struct ev_timer *t);
};

void ev_init(void);
void ev_fd_add(struct ev_fd *e, int fd, uint32_t events, void (*cb)(struct ev_fd *, uint32_t));
/*
 * Known but not yet registered: the first ev_fd_mod() with interest adds
 * it, so an fd whose interest is known only later costs one epoll_ctl,
 * not two.  Until then it reports nothing, hang-ups included.
 */
void ev_fd_init(struct ev_fd *e, int fd, void (*cb)(struct ev_fd *, uint32_t));
void ev_fd_mod(struct ev_fd *e, uint32_t events);
/* Removes the fd from epoll; a later ev_fd_mod() with interest re-adds it. */
void ev_fd_del(struct ev_fd *e);
/*
 * The fd is about to be closed: epoll drops it by itself when its last
 * descriptor closes, so no epoll_ctl is needed -- only for a descriptor
 * never duplicated (dup, fork, SCM_RIGHTS) while registered, as a
 * session's socket is.  Events already returned for it are skipped.
 */
void ev_fd_forget(struct ev_fd *e);

void ev_timer_arm(struct ev_timer *t, uint64_t ms, void (*cb)(struct ev_timer *));
void ev_timer_cancel(struct ev_timer *t);
static inline bool ev_timer_armed(const struct ev_timer *t) { return t->slot != 0; }

/* Called after every batch of events (deferred frees run here). */
void ev_set_idle_hook(void (*hook)(void));
void ev_loop(void);
void ev_break(void);

#endif
