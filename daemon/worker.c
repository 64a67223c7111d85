/*
 * worker - accept loop and session event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "certcache.h"
#include "ev.h"
#include "io.h"
#include "quota.h"
#include "log.h"
#include "msgscan.h"
#include "session.h"
#include "util.h"
#include "worker.h"

#define WORKER_MAX_LISTENERS 4
/*
 * Out of descriptors (EMFILE/ENFILE): the listeners are not polled for a
 * while - level-triggered, a pending connection would wake us at once,
 * forever - and a timer takes them back.  The pause doubles while the
 * shortage lasts.  One warning per ACCEPT_WARN_MS says how many were
 * refused meanwhile.
 */
#define ACCEPT_PAUSE_MIN_MS 100
#define ACCEPT_PAUSE_MAX_MS 1600
#define ACCEPT_WARN_MS 10000

static const struct config *wconf;
static struct ev_fd listeners[WORKER_MAX_LISTENERS];
static int n_listeners;
static struct ev_fd sigev;
static bool draining;
static bool standby; /* listeners known, not polled until SIGHUP */
/*
 * A descriptor held in reserve: when the table is full it is closed to
 * accept one waiting connection, tell it 421 and close it, so a client
 * beyond the limit hears why instead of waiting in the backlog.
 */
static int reserve_fd = -1;
static struct ev_timer resume_timer;
static unsigned pause_ms;
static bool paused;
static uint64_t fd_warned_ms;
static unsigned long fd_refused, fd_pauses;

static void
refuse_now(int fd, const char *reply)
{
	/* A fresh socket's send buffer always has room for one line. */
	(void)!send(fd, reply, strlen(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

static void
reserve_take(void)
{
	if (reserve_fd < 0)
		reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* The table is full: refuse one waiting connection with the reserve descriptor. */
static bool
refuse_one_full(int lfd)
{
	int fd;

	if (reserve_fd < 0)
		return false;
	close(reserve_fd);
	reserve_fd = -1;
	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0) {
		refuse_now(fd, "421 4.3.2 Service temporarily unavailable (out of resources), "
		    "try again later\r\n");
		fd_refused++;
	}
	reserve_take();
	return fd >= 0;
}

static void
resume_cb(struct ev_timer *t)
{
	(void)t;
	paused = false;
	if (draining || standby)
		return;
	for (int i = 0; i < n_listeners; i++)
		ev_fd_mod(&listeners[i], EPOLLIN | EPOLLEXCLUSIVE);
}

static void
pause_accepting(int err)
{
	uint64_t now = now_ms();

	pause_ms = pause_ms ? pause_ms * 2 : ACCEPT_PAUSE_MIN_MS;
	if (pause_ms > ACCEPT_PAUSE_MAX_MS)
		pause_ms = ACCEPT_PAUSE_MAX_MS;
	fd_pauses++;
	if (now - fd_warned_ms >= ACCEPT_WARN_MS || fd_warned_ms == 0) {
		log_warn("accept error=\"%s\" sessions=%u paused-ms=%u refused=%lu pauses=%lu "
		    "(out of file descriptors: raise the limit or lower max-sessions)",
		    strerror(err), session_count(), pause_ms, fd_refused, fd_pauses);
		fd_warned_ms = now;
		fd_refused = fd_pauses = 0;
	}
	paused = true;
	for (int i = 0; i < n_listeners; i++)
		ev_fd_del(&listeners[i]);
	ev_timer_arm(&resume_timer, pause_ms, resume_cb);
}

/* Returns false once the listener has nothing more to accept (or must not, now). */
static bool
accept_one(int lfd)
{
	union sockaddr_any client, dst;
	socklen_t clen = sizeof(client), dlen = sizeof(dst), mlen;
	struct mark_fields mf;
	char cbuf[ADDR_STRLEN], dbuf[ADDR_STRLEN];
	uint32_t mark = 0;
	int fd;

	fd = accept4(lfd, &client.sa, &clen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return false;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			int e = errno;
			/* those waiting now hear 421; the listeners rest for a while */
			for (int i = 0; i < 16 && refuse_one_full(lfd); i++)
				;
			pause_accepting(e);
			return false;
		}
		if (errno != ECONNABORTED && errno != EINTR)
			log_warn("accept error=\"%s\"", strerror(errno));
		return true;
	}
	pause_ms = 0; /* descriptors again: the next shortage starts with a short pause */
	mlen = sizeof(mark);
	if (getsockname(fd, &dst.sa, &dlen) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &mlen) < 0) {
		log_warn("accept getsockname error=\"%s\"", strerror(errno));
		close(fd);
		return true;
	}
	/*
	 * Only connections the classifier marked for interception are
	 * served.  A mark of 0 means the connection reached the loopback
	 * listener directly (not through TPROXY): serving it would make us
	 * connect to ourselves.
	 */
	if (mark_decode(mark, &mf) < 0 || mf.decision != DECISION_INTERCEPT) {
		log_warn("accept refused reason=not-intercepted client=%s dst=%s mark=0x%x",
		    addr_fmt(&client, cbuf, sizeof(cbuf)), addr_fmt(&dst, dbuf, sizeof(dbuf)), mark);
		close(fd);
		return true;
	}
	/* Caps count every worker's sessions (quota.h), not just ours. */
	unsigned bucket = quota_bucket(&client);
	const char *cap = quota_admit(bucket, wconf->max_sessions, wconf->max_sessions_per_client);
	if (cap != NULL) {
		log_warn("accept refused reason=%s client=%s limit=%u", cap,
		    addr_fmt(&client, cbuf, sizeof(cbuf)),
		    strcmp(cap, "max-sessions") ? wconf->max_sessions_per_client : wconf->max_sessions);
		refuse_now(fd, strcmp(cap, "max-sessions") == 0
		    ? "421 4.7.0 Too many connections, try again later\r\n"
		    : "421 4.7.0 Too many connections from your address, try again later\r\n");
		return true;
	}
	(void)session_start(fd, &client, &dst, &mf, wconf);
	return true;
}

static void
listener_cb(struct ev_fd *e, uint32_t revents)
{
	/* A few per wakeup: fair to the sessions already running. */
	for (int i = 0; i < 16 && !draining && !paused; i++)
		if (!accept_one(e->fd))
			break;
}

static void
stop_accepting(void)
{
	ev_timer_cancel(&resume_timer);
	paused = false;
	for (int i = 0; i < n_listeners; i++) {
		ev_fd_del(&listeners[i]);
		close(listeners[i].fd);
		listeners[i].fd = -1;
	}
	n_listeners = 0;
}

static void
idle_hook(void)
{
	io_run_pending();
	session_reap();
	if (draining && session_count() == 0)
		ev_break();
}

/* The forged-certificate cache's counters since this worker started. */
static void
log_certcache(const char *reason)
{
	unsigned long hits, misses;

	certcache_stats(&hits, &misses);
	log_info("certcache hits=%lu misses=%lu reason=%s", hits, misses, reason);
}

static void
signal_cb(struct ev_fd *e, uint32_t revents)
{
	struct signalfd_siginfo si;

	while (read(e->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			log_info("worker stop sessions=%u", session_count());
			log_certcache("stop");
			stop_accepting();
			session_close_all("shutdown");
			ev_break();
			break;
		case SIGUSR1:
			if (!draining)
				log_info("worker drain sessions=%u", session_count());
			draining = true;
			stop_accepting();
			break;
		case SIGUSR2: /* passed on by the master */
			log_certcache("signal");
			break;
		case SIGHUP: /* from the master: our generation is live */
			if (standby && !draining) {
				standby = false;
				for (int i = 0; i < n_listeners; i++)
					ev_fd_mod(&listeners[i], EPOLLIN | EPOLLEXCLUSIVE);
				log_info("worker live listeners=%d", n_listeners);
			}
			break;
		default:
			break;
		}
	}
}

int
worker_main(const struct config *c, const int *lfds, int nlfds, bool on_standby)
{
	sigset_t set;
	int sfd;

	wconf = c;
	ev_init();
	certcache_init(c->cert_cache_size);
	reserve_take();
	tlsi_init();
	ev_set_idle_hook(idle_hook);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		fatal("signalfd: %s", strerror(errno));
	ev_fd_add(&sigev, sfd, EPOLLIN, signal_cb);

	standby = on_standby;
	for (int i = 0; i < nlfds && i < WORKER_MAX_LISTENERS; i++) {
		if (lfds[i] < 0)
			continue;
		ev_fd_add(&listeners[n_listeners++], lfds[i], EPOLLIN | EPOLLEXCLUSIVE, listener_cb);
		if (standby)
			ev_fd_del(&listeners[n_listeners - 1]);
	}
	/* this worker's scanner pools (health checks start now) */
	msgscan_worker_init(c);
	log_info("worker ready listeners=%d max_sessions=%u%s clamd-servers=%d rspamd-servers=%d",
	    n_listeners, c->max_sessions, standby ? " standby=yes" : "", c->clamd.n_servers,
	    c->rspamd.n_servers);
	ev_loop();
	session_reap();
	/* every session is gone, so is every scan: the pools may go */
	msgscan_worker_free();
	return 0;
}
