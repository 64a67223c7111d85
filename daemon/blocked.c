/*
 * blocked - the blocker process and the workers' side of its channels
 * (see blocked.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "blocked.h"
#include "blocked_req.h"
#include "ev.h"
#include "log.h"
#include "priv.h"
#include "util.h"

/* More respawns than this within BLOCKED_RESPAWN_WINDOW_S: leave it dead. */
#define BLOCKED_RESPAWN_LIMIT 10
#define BLOCKED_RESPAWN_WINDOW_S 60
/* A stopping blocker gets this long to carry out what it received. */
#define BLOCKED_STOP_MS 3000
/* Requests read from one channel before the others get their turn. */
#define BLOCKED_READ_BURST 32
/* Refusal lines per window; the rest are counted and summed up. */
#define BLOCKED_LOG_BURST 20
#define BLOCKED_LOG_WINDOW_MS 10000

/* Shared by the master, the blocker and the workers (inherited). */
static int reg_fds[2] = { -1, -1 }; /* [0] the blocker reads, [1] workers write */
static pid_t blocker_pid = -1;
static struct blocked_settings bset;  /* what the next blocker starts with */
static char buser[CONF_NAME_MAX];
static enum log_target blog;
static time_t respawn_window;
static int respawns;

/* ------------------------------------------------------------ the blocker */

static volatile sig_atomic_t bstop;

struct blocker {
	struct nft_ctx *nft;
	struct blocked_rate bucket;
	struct blocked_recent recent;
	/* refusal lines in the current window, and those left out */
	uint64_t log_since;
	unsigned log_lines, log_suppressed;
	unsigned long n_added, n_refused;
};

static void
blocker_sig(int sig)
{
	(void)sig;
	bstop = 1;
}

/* A refusal: logged within BLOCKED_LOG_BURST lines per window, else counted. */
static void
refused(struct blocker *b, const char *addr, const char *reason, uint64_t sid,
    const char *detail)
{
	uint64_t now = now_ms();
	char q[LOG_QUOTE_SIZE(160)];

	b->n_refused++;
	if (now - b->log_since >= BLOCKED_LOG_WINDOW_MS) {
		if (b->log_suppressed)
			log_warn("blocked refused suppressed=%u window_ms=%u", b->log_suppressed,
			    BLOCKED_LOG_WINDOW_MS);
		b->log_since = now;
		b->log_lines = b->log_suppressed = 0;
	}
	if (b->log_lines >= BLOCKED_LOG_BURST) {
		b->log_suppressed++;
		return;
	}
	b->log_lines++;
	if (detail)
		log_warn("blocked refused addr=%s reason=%s sid=%012llx error=%s", addr, reason,
		    (unsigned long long)sid, log_quote_str(q, sizeof(q), detail));
	else
		log_warn("blocked refused addr=%s reason=%s sid=%012llx", addr, reason,
		    (unsigned long long)sid);
}

/* nft's error text, first line only, for the log. */
static void
first_line(const char *s, char *out, size_t len)
{
	size_t n = strcspn(s, "\n");

	if (n >= len)
		n = len - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

static void
handle(struct blocker *b, const uint8_t *buf, size_t len)
{
	struct blocked_req r;
	const char *why;
	char a[INET6_ADDRSTRLEN], cmd[BLOCKED_NFT_CMD_MAX], err[160];
	uint64_t now = now_ms();
	unsigned secs;
	int rc;

	if (blocked_req_decode(buf, len, &r, &why) < 0) {
		/* A worker sent what ours never encode: a bug, or a worker taken over. */
		refused(b, "-", "malformed", 0, why);
		return;
	}
	if (inet_ntop(r.family, r.addr, a, sizeof(a)) == NULL)
		snprintf(a, sizeof(a), "?");
	if (blocked_excepted(&bset, r.family, r.addr)) {
		refused(b, a, "exception", r.sid, NULL);
		return;
	}
	if (blocked_recent_seen(&b->recent, &r, now)) {
		log_debug("blocked duplicate addr=%s reason=%s sid=%012llx", a, r.reason,
		    (unsigned long long)r.sid);
		return;
	}
	if (!blocked_rate_take(&b->bucket, now)) {
		refused(b, a, "rate-limit", r.sid, NULL);
		return;
	}
	secs = blocked_req_seconds(&r, &bset);
	if (blocked_req_nft_cmd(&r, secs, cmd, sizeof(cmd)) < 0) {
		refused(b, a, "internal", r.sid, "command does not fit");
		return;
	}
	rc = nft_run_cmd_from_buffer(b->nft, cmd);
	first_line(nft_ctx_get_error_buffer(b->nft), err, sizeof(err));
	(void)nft_ctx_get_output_buffer(b->nft);
	if (rc != 0) {
		/* ENFILE: the set is at its size (blocked-sites-max) */
		const char *reason = strstr(err, "Too many open files") ? "list-full"
		    : strstr(err, "No such file or directory") ? "no-ruleset" : "nft";
		refused(b, a, reason, r.sid, err);
		return;
	}
	blocked_recent_note(&b->recent, &r, now);
	b->n_added++;
	log_info("blocked add addr=%s seconds=%u reason=%s sid=%012llx", a, secs, r.reason,
	    (unsigned long long)r.sid);
}

/* Up to `max` requests waiting on fd; false once the worker's end is gone. */
static bool
drain(struct blocker *b, int fd, int max)
{
	uint8_t buf[BLOCKED_REQ_WIRE + 1];

	for (int i = 0; i < max; i++) {
		/* MSG_TRUNC: the real length, so an oversized message is refused whole */
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);

		if (n == 0)
			return false;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		handle(b, buf, (size_t)n > sizeof(buf) ? sizeof(buf) : (size_t)n);
	}
	return true;
}

static int
recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))], c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
		.msg_controllen = sizeof(cbuf) };
	struct cmsghdr *h;
	int fd = -1;

	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT) <= 0)
		return -1;
	for (h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		/* one descriptor per registration; any more are closed */
		size_t nfd = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int x;

			memcpy(&x, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			if (fd < 0)
				fd = x;
			else
				close(x);
		}
	}
	if (fd >= 0 && (m.msg_flags & MSG_CTRUNC)) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Everything the master holds (listeners, the queue, the signer's
 * sockets) is closed: the blocker keeps stdio and its registration
 * socket, moved to descriptor 3.
 */
static int
keep_only_reg(int reg)
{
	if (reg != 3) {
		if (dup3(reg, 3, O_CLOEXEC) < 0)
			return -1;
		reg = 3;
	}
	if (close_range(4, ~0u, 0) < 0) {
		/* old kernel: close them one by one */
		long max = sysconf(_SC_OPEN_MAX);

		for (long fd = 4; fd < (max > 0 ? max : 1024); fd++)
			close((int)fd);
	}
	return reg;
}

static void NORETURN
blocker_main(void)
{
	struct blocker b;
	struct pollfd pfd[BLOCKED_MAX_CHANNELS + 1];
	struct sigaction sa;
	sigset_t none, stops;
	char err[256];
	bool debug = log_debug_enabled();
	int n = 1, reg;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(0); /* the master is already gone */
	/*
	 * SIGTERM and SIGINT stay blocked (as they were across the fork)
	 * but inside ppoll(): a stop that comes early is kept, not fatal,
	 * and never interrupts an nft command halfway.
	 */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = blocker_sig;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigprocmask(SIG_SETMASK, &stops, NULL);

	close(reg_fds[1]);
	if (blog == LOG_TO_SYSLOG)
		closelog(); /* its socket goes with the rest; opened again below */
	reg = keep_only_reg(reg_fds[0]);
	log_init(blog, "blocked", debug);
	if (reg < 0) {
		log_err("blocked setup error=\"%s\"", strerror(errno));
		_exit(1);
	}
	cap_value_t keep[] = { CAP_NET_ADMIN };
	if (priv_drop(buser, keep, 1, err, sizeof(err)) < 0) {
		log_err("blocked privileges error=\"%s\"", err);
		_exit(1);
	}
	memset(&b, 0, sizeof(b));
	b.nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (b.nft == NULL || nft_ctx_buffer_output(b.nft) != 0 ||
	    nft_ctx_buffer_error(b.nft) != 0) {
		log_err("blocked setup error=\"libnftables context\"");
		_exit(1);
	}
	blocked_rate_init(&b.bucket, bset.rate, now_ms());
	b.log_since = now_ms();
	log_info("blocked ready timeout=%u rate=%u exceptions=%d", bset.timeout, bset.rate,
	    bset.n_exceptions);

	pfd[0].fd = reg;
	pfd[0].events = POLLIN;
	while (!bstop) {
		if (ppoll(pfd, (nfds_t)n, NULL, &none) < 0) {
			if (errno == EINTR)
				continue;
			log_err("blocked poll error=\"%s\"", strerror(errno));
			_exit(1);
		}
		if (pfd[0].revents & POLLIN) {
			int fd = recv_fd(reg);

			if (fd >= 0 && n < BLOCKED_MAX_CHANNELS + 1) {
				pfd[n].fd = fd;
				pfd[n].events = POLLIN;
				pfd[n].revents = 0;
				n++;
			} else if (fd >= 0) {
				/* BLOCKED_MAX_CHANNELS workers at once: more is no daemon of ours */
				refused(&b, "-", "channels-full", 0, NULL);
				close(fd);
			}
		} else if (pfd[0].revents & (POLLHUP | POLLERR)) {
			break; /* the master is gone */
		}
		for (int i = 1; i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			/* read what is there even when the worker has gone since */
			if (!drain(&b, pfd[i].fd, BLOCKED_READ_BURST) ||
			    (!(pfd[i].revents & POLLIN) && (pfd[i].revents & (POLLHUP | POLLERR)))) {
				close(pfd[i].fd);
				pfd[i] = pfd[--n];
				i--;
			}
		}
	}
	/* Stopping (a reload, or the master stops): carry out what was sent. */
	while (true) {
		int fd = recv_fd(reg);

		if (fd < 0)
			break;
		if (n < BLOCKED_MAX_CHANNELS + 1)
			pfd[n++].fd = fd;
		else
			close(fd);
	}
	for (int i = 1; i < n; i++)
		(void)drain(&b, pfd[i].fd, BLOCKED_QUEUE + BLOCKED_READ_BURST);
	if (b.log_suppressed)
		log_warn("blocked refused suppressed=%u window_ms=%u", b.log_suppressed,
		    BLOCKED_LOG_WINDOW_MS);
	log_info("blocked stop added=%lu refused=%lu", b.n_added, b.n_refused);
	nft_ctx_free(b.nft);
	_exit(0);
}

/* ------------------------------------------------------------ the master */

static int
spawn_blocker(void)
{
	sigset_t stops, old;
	pid_t pid;

	/* The child starts with the stop signals held (blocker_main). */
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigprocmask(SIG_BLOCK, &stops, &old);
	pid = fork();
	if (pid == 0)
		blocker_main();
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0)
		return -1;
	blocker_pid = pid;
	return 0;
}

static void
take_settings(const struct config *c)
{
	blocked_settings_from_config(&bset, c);
	snprintf(buser, sizeof(buser), "%s", c->user);
	blog = c->log;
}

int
blocked_start(const struct config *c, char *err, size_t errlen)
{
	take_settings(c);
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, reg_fds) < 0) {
		snprintf(err, errlen, "blocked: socketpair: %s", strerror(errno));
		return -1;
	}
	/* Workers register without ever waiting (the master never writes here). */
	(void)fcntl(reg_fds[1], F_SETFL, fcntl(reg_fds[1], F_GETFL) | O_NONBLOCK);
	if (spawn_blocker() < 0) {
		snprintf(err, errlen, "blocked: fork: %s", strerror(errno));
		return -1;
	}
	respawn_window = time(NULL);
	return 0;
}

bool
blocked_reaped(pid_t pid)
{
	if (pid <= 0 || pid != blocker_pid)
		return false;
	blocker_pid = -1;
	if (time(NULL) - respawn_window > BLOCKED_RESPAWN_WINDOW_S) {
		respawn_window = time(NULL);
		respawns = 0;
	}
	if (++respawns > BLOCKED_RESPAWN_LIMIT) {
		log_err("blocked exited pid=%d; %d respawns in %d s, not starting it again "
		    "(block requests are dropped)", (int)pid, respawns - 1, BLOCKED_RESPAWN_WINDOW_S);
		return true;
	}
	log_err("blocked exited pid=%d; starting it again", (int)pid);
	/* Workers see their channel close and register again. */
	if (spawn_blocker() < 0)
		log_err("blocked respawn error=\"%s\"", strerror(errno));
	return true;
}

/* SIGTERM, then wait (bounded) for it to carry out what it has and exit. */
static void
stop_blocker(void)
{
	uint64_t deadline = now_ms() + BLOCKED_STOP_MS;

	if (blocker_pid <= 0)
		return;
	kill(blocker_pid, SIGTERM);
	for (;;) {
		pid_t r = waitpid(blocker_pid, NULL, WNOHANG);

		if (r == blocker_pid || (r < 0 && errno == ECHILD))
			break;
		if (now_ms() >= deadline) {
			kill(blocker_pid, SIGKILL);
			waitpid(blocker_pid, NULL, 0);
			break;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	blocker_pid = -1;
}

void
blocked_reconfigure(const struct config *c)
{
	take_settings(c);
	if (reg_fds[0] < 0)
		return;
	stop_blocker();
	respawns = 0;
	if (spawn_blocker() < 0)
		log_err("blocked restart error=\"%s\"", strerror(errno));
}

void
blocked_stop(void)
{
	stop_blocker();
}

void
blocked_child_init(void)
{
	if (reg_fds[0] >= 0) {
		close(reg_fds[0]);
		reg_fds[0] = -1;
	}
}

void
blocked_child_detach(void)
{
	blocked_child_init();
	if (reg_fds[1] >= 0) {
		close(reg_fds[1]);
		reg_fds[1] = -1;
	}
}

/* ------------------------------------------------------------ worker side */

static int chan = -1;
static struct ev_fd chan_ev;
static uint8_t queue[BLOCKED_QUEUE][BLOCKED_REQ_WIRE];
static unsigned q_head, q_len;
static unsigned long n_sent, n_dropped;

static int
send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))], c = 'r';
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
		.msg_controllen = sizeof(cbuf) };
	struct cmsghdr *h;

	memset(cbuf, 0, sizeof(cbuf));
	h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(fd));
	return sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -1 : 0;
}

static void flush(void);

static void
channel_close(void)
{
	if (chan < 0)
		return;
	ev_fd_del(&chan_ev);
	close(chan);
	chan = -1;
}

static void
chan_cb(struct ev_fd *e, uint32_t revents)
{
	(void)e;
	/* The blocker never writes: readable or hung up means it is gone. */
	if (revents & (EPOLLHUP | EPOLLERR | EPOLLIN))
		channel_close();
	if (q_len)
		flush();
}

static int
channel_open(void)
{
	int sv[2];

	if (chan >= 0)
		return 0;
	if (reg_fds[1] < 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if (send_fd(reg_fds[1], sv[1]) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	close(sv[1]);
	chan = sv[0];
	/* No interest but EPOLLOUT while requests wait; hang-ups are always reported. */
	ev_fd_add(&chan_ev, chan, 0, chan_cb);
	return 0;
}

static void
drop_queue(const char *why)
{
	if (q_len == 0)
		return;
	log_warn("blocked requests dropped count=%u reason=%s", q_len, why);
	n_dropped += q_len;
	q_head = q_len = 0;
}

static void
flush(void)
{
	bool reopened = false;

	while (q_len) {
		if (chan < 0 && channel_open() < 0) {
			drop_queue("no-blocker");
			return;
		}
		ssize_t n = send(chan, queue[q_head], BLOCKED_REQ_WIRE, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n == BLOCKED_REQ_WIRE) {
			q_head = (q_head + 1) % BLOCKED_QUEUE;
			q_len--;
			n_sent++;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev_fd_mod(&chan_ev, EPOLLOUT);
			return;
		}
		if (n < 0 && errno == EINTR)
			continue;
		/* The blocker went away (restart): one new channel, then give up. */
		channel_close();
		if (reopened) {
			drop_queue("channel");
			return;
		}
		reopened = true;
	}
	if (chan >= 0)
		ev_fd_mod(&chan_ev, 0);
}

int
blocked_request(const union sockaddr_any *addr, unsigned seconds, const char *reason,
    uint64_t sid)
{
	struct blocked_req r;
	const char *why;
	char a[ADDR_STRLEN], q[LOG_QUOTE_SIZE(BLOCKED_REASON_MAX)];

	if (blocked_req_make(&r, addr, seconds, reason, sid, &why) < 0) {
		n_dropped++;
		log_sid(LOG_LVL_WARN, sid, "blocked request refused reason=%s addr=%s block-reason=%s",
		    why, addr ? addr_fmt_host(addr, a, sizeof(a)) : "-",
		    log_quote_str(q, sizeof(q), reason));
		return -1;
	}
	if (inet_ntop(r.family, r.addr, a, sizeof(a)) == NULL)
		snprintf(a, sizeof(a), "?");
	if (reg_fds[1] < 0) {
		n_dropped++;
		log_sid(LOG_LVL_WARN, sid, "blocked request dropped reason=no-blocker addr=%s", a);
		return -1;
	}
	if (q_len == BLOCKED_QUEUE) {
		n_dropped++;
		log_sid(LOG_LVL_WARN, sid, "blocked request dropped reason=queue-full addr=%s", a);
		return -1;
	}
	unsigned long dropped = n_dropped;

	blocked_req_encode(&r, queue[(q_head + q_len) % BLOCKED_QUEUE]);
	q_len++;
	char secs[16] = "default";

	if (r.seconds)
		snprintf(secs, sizeof(secs), "%u", r.seconds);
	log_sid(LOG_LVL_INFO, sid, "blocked request addr=%s seconds=%s reason=%s", a, secs,
	    r.reason);
	flush();
	return n_dropped == dropped ? 0 : -1;
}

void
blocked_stats(unsigned long *sent, unsigned long *dropped)
{
	*sent = n_sent;
	*dropped = n_dropped;
}
