/*
 * ev - epoll loop and a binary min-heap of timers.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "ev.h"
#include "log.h"
#include "util.h"

#define EV_BATCH 128

static int ev_epfd = -1;
static bool ev_stop;
static void (*ev_idle_hook)(void);

static struct ev_timer **heap;
static size_t heap_len, heap_cap;

void
ev_init(void)
{
	if (ev_epfd >= 0)
		close(ev_epfd);
	ev_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ev_epfd < 0)
		fatal("epoll_create1: %s", strerror(errno));
	heap_len = 0;
}

void
ev_fd_add(struct ev_fd *e, int fd, uint32_t events, void (*cb)(struct ev_fd *, uint32_t))
{
	struct epoll_event ee = { .events = events, .data.ptr = e };

	e->fd = fd;
	e->events = events;
	e->cb = cb;
	if (epoll_ctl(ev_epfd, EPOLL_CTL_ADD, fd, &ee) < 0)
		fatal("epoll_ctl add fd=%d: %s", fd, strerror(errno));
	e->registered = true;
}

void
ev_fd_init(struct ev_fd *e, int fd, void (*cb)(struct ev_fd *, uint32_t))
{
	e->fd = fd;
	e->events = 0;
	e->cb = cb;
	e->registered = false;
}

void
ev_fd_mod(struct ev_fd *e, uint32_t events)
{
	struct epoll_event ee = { .events = events, .data.ptr = e };

	if (!e->registered) {
		if (events == 0)
			return;
		if (epoll_ctl(ev_epfd, EPOLL_CTL_ADD, e->fd, &ee) < 0)
			fatal("epoll_ctl re-add fd=%d: %s", e->fd, strerror(errno));
		e->registered = true;
		e->events = events;
		return;
	}
	if (e->events == events)
		return;
	e->events = events;
	if (epoll_ctl(ev_epfd, EPOLL_CTL_MOD, e->fd, &ee) < 0)
		fatal("epoll_ctl mod fd=%d: %s", e->fd, strerror(errno));
}

void
ev_fd_del(struct ev_fd *e)
{
	if (e->fd >= 0 && e->registered)
		(void)epoll_ctl(ev_epfd, EPOLL_CTL_DEL, e->fd, NULL);
	e->registered = false;
	e->events = 0;
}

void
ev_fd_forget(struct ev_fd *e)
{
	e->registered = false;
	e->events = 0;
}

static void
heap_swap(size_t a, size_t b)
{
	struct ev_timer *t = heap[a];

	heap[a] = heap[b];
	heap[b] = t;
	heap[a]->slot = a + 1;
	heap[b]->slot = b + 1;
}

static void
heap_up(size_t i)
{
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (heap[parent]->deadline <= heap[i]->deadline)
			break;
		heap_swap(i, parent);
		i = parent;
	}
}

static void
heap_down(size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < heap_len && heap[l]->deadline < heap[m]->deadline)
			m = l;
		if (r < heap_len && heap[r]->deadline < heap[m]->deadline)
			m = r;
		if (m == i)
			break;
		heap_swap(i, m);
		i = m;
	}
}

void
ev_timer_cancel(struct ev_timer *t)
{
	size_t i;

	if (t->slot == 0)
		return;
	i = t->slot - 1;
	FATAL_IF(i >= heap_len || heap[i] != t);
	heap_len--;
	if (i != heap_len) {
		heap[i] = heap[heap_len];
		heap[i]->slot = i + 1;
		heap_down(i);
		heap_up(i);
	}
	t->slot = 0;
}

void
ev_timer_arm(struct ev_timer *t, uint64_t ms, void (*cb)(struct ev_timer *))
{
	ev_timer_cancel(t);
	t->deadline = now_ms() + ms;
	t->cb = cb;
	if (heap_len == heap_cap) {
		heap_cap = heap_cap ? heap_cap * 2 : 256;
		heap = xrealloc(heap, heap_cap * sizeof(*heap));
	}
	heap[heap_len] = t;
	t->slot = ++heap_len;
	heap_up(heap_len - 1);
}

void
ev_set_idle_hook(void (*hook)(void))
{
	ev_idle_hook = hook;
}

void
ev_break(void)
{
	ev_stop = true;
}

static int
next_timeout(void)
{
	uint64_t now;

	if (heap_len == 0)
		return -1;
	now = now_ms();
	if (heap[0]->deadline <= now)
		return 0;
	if (heap[0]->deadline - now > 60000)
		return 60000;
	return (int)(heap[0]->deadline - now);
}

void
ev_loop(void)
{
	struct epoll_event evs[EV_BATCH];

	ev_stop = false;
	while (!ev_stop) {
		int n = epoll_wait(ev_epfd, evs, EV_BATCH, next_timeout());

		if (n < 0 && errno != EINTR)
			fatal("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			struct ev_fd *e = evs[i].data.ptr;
			/*
			 * A callback earlier in this batch may have closed it; the
			 * memory stays valid until the idle hook frees it.
			 */
			if (!e->registered)
				continue;
			e->cb(e, evs[i].events);
		}
		uint64_t now = now_ms();
		while (heap_len > 0 && heap[0]->deadline <= now) {
			struct ev_timer *t = heap[0];
			ev_timer_cancel(t);
			t->cb(t);
		}
		if (ev_idle_hook)
			ev_idle_hook();
	}
}
