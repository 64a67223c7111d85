/*
 * io - buffered non-blocking socket I/O over the ev loop, plain or TLS.
 */
#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "io.h"
#include "log.h"
#include "util.h"

#define IO_F_CONNECTING 0x01u
#define IO_F_PAUSED 0x02u   /* owner asked not to read */
#define IO_F_EOF 0x04u      /* peer finished sending */
#define IO_F_SHUTDOWN 0x08u /* shut the write side down once out is flushed */
#define IO_F_DEAD 0x10u     /* closed; deliver nothing more */
#define IO_F_FAILED 0x20u   /* a write failed; reported from the event handler */
#define IO_F_WRDONE 0x40u   /* write side shut down */
#define IO_F_TLS 0x80u      /* TLS established: all I/O through io->ssl */
#define IO_F_HANDSHAKE 0x100u
#define IO_F_HS_PAUSED 0x200u  /* handshake waits for io_tls_resume() */
#define IO_F_TLS_PENDING 0x400u /* handshake starts once out is flushed */
#define IO_F_LOWAT_DUE 0x800u  /* out drained to lowat or below: IO_LOWAT owed */
#define IO_F_HUP_TOLD 0x1000u  /* IO_HUP delivered: stop watching for it */
#define IO_F_STARVED 0x2000u   /* the last SSL_read wanted more from the socket */

struct io {
	struct ev_fd ev;
	struct ev_timer timer;
	int fd;
	unsigned flags;
	struct buf in, out;
	size_t lowat;
	unsigned timeout_ms;
	const char *error;
	char errbuf[160];
	struct ssl_st *ssl;
	uint32_t rd_want, wr_want; /* the epoll events TLS reads / writes wait for */
	uint64_t rbytes;           /* payload octets read (after TLS) */
	uint64_t discarded;        /* plaintext octets dropped when a handshake started */
	struct io *pending_next;   /* on the list of ios with decrypted bytes waiting */
	bool on_pending;
	struct io *kick_next;      /* on the list of ios io_kick_soon owes a kick */
	bool on_kick;
	void (*cb)(struct io *io, enum io_event ev, void *arg);
	void *arg;
};

/* Largest single read: bounded so one busy peer cannot starve the loop. */
#define IO_READ_CHUNK 65536
/* An output buffer up to this size is released as soon as it is empty. */
#define IO_OUT_KEEP 16384
/* io_tls_bulk's read-ahead buffer: four TLS 1.3 records of 16 KiB and their overhead. */
#define IO_TLS_BULK_READ (4 * (16384 + 256))

static void io_handler(struct ev_fd *e, uint32_t revents);
static struct io *pending_head, *kick_head;

static bool
tls_active(const struct io *io)
{
	return (io->flags & (IO_F_TLS | IO_F_HANDSHAKE)) != 0;
}

/*
 * Bytes inside the SSL object that no epoll event will announce:
 * decrypted ones, or -- with read-ahead (tls.c), which takes whatever
 * the socket holds in one read -- whole records not yet decrypted.  What
 * OpenSSL holds after a read that wanted more is a partial record: only
 * the socket can complete it, so it does not count (else the pending
 * list would spin on it).
 */
static bool
tls_has_more(const struct io *io)
{
	return SSL_pending(io->ssl) > 0 ||
	    (!(io->flags & IO_F_STARVED) && SSL_has_pending(io->ssl));
}

static void
pending_add(struct io *io)
{
	if (io->on_pending)
		return;
	io->on_pending = true;
	io->pending_next = pending_head;
	pending_head = io;
}

static void
io_update(struct io *io)
{
	uint32_t want = 0;

	if (io->flags & IO_F_DEAD)
		return;
	if (io->flags & IO_F_CONNECTING) {
		want = EPOLLOUT;
	} else if (io->flags & IO_F_HS_PAUSED) {
		/* Not reading, yet a peer that goes away must be noticed (IO_HUP). */
		want = (io->flags & IO_F_HUP_TOLD) ? 0 : EPOLLRDHUP;
	} else if (io->flags & IO_F_HANDSHAKE) {
		want = io->rd_want | io->wr_want;
	} else {
		/*
		 * Between io_start_tls() and the handshake (the STARTTLS reply
		 * still going out) nothing is read: whatever the peer sends then
		 * belongs to the TLS stream, never to the plaintext dialogue.
		 */
		bool held = (io->flags & (IO_F_PAUSED | IO_F_TLS_PENDING)) != 0;
		bool reading = !held && !(io->flags & IO_F_EOF) && buf_room(&io->in) > 0;

		if (reading)
			want |= (io->flags & IO_F_TLS) ? io->rd_want : EPOLLIN;
		else if (held && !(io->flags & (IO_F_EOF | IO_F_HUP_TOLD)))
			want |= EPOLLRDHUP; /* the owner is not reading: still notice a close */
		if (buf_len(&io->out) > 0 || (io->flags & (IO_F_FAILED | IO_F_TLS_PENDING | IO_F_LOWAT_DUE)))
			want |= (io->flags & IO_F_TLS) ? io->wr_want : EPOLLOUT;
		/* Decrypted bytes inside the SSL object wake nobody: queue them. */
		if (reading && io->ssl && (io->flags & IO_F_TLS) && tls_has_more(io))
			pending_add(io);
	}
	ev_fd_mod(&io->ev, want);
}

static void
io_timeout_cb(struct ev_timer *t)
{
	struct io *io = container_of(t, struct io, timer);

	if (io->flags & IO_F_DEAD)
		return;
	io->error = "timeout";
	io->cb(io, IO_TIMEOUT, io->arg);
}

static void
io_touch(struct io *io)
{
	if (io->timeout_ms)
		ev_timer_arm(&io->timer, io->timeout_ms, io_timeout_cb);
}

struct io *
io_new(int fd, size_t inmax, size_t outmax, void (*cb)(struct io *, enum io_event, void *),
    void *arg)
{
	struct io *io = xcalloc(1, sizeof(*io));

	io->fd = fd;
	buf_init(&io->in, inmax);
	buf_init(&io->out, outmax);
	io->cb = cb;
	io->arg = arg;
	io->rd_want = EPOLLIN;
	io->wr_want = EPOLLOUT;
	/* io_update() registers it with what is needed. */
	ev_fd_init(&io->ev, fd, io_handler);
	io_update(io);
	return io;
}

int
io_connect(struct io *io, const union sockaddr_any *dst)
{
	if (connect(io->fd, &dst->sa, addr_len(dst)) < 0 && errno != EINPROGRESS) {
		io->error = strerror(errno);
		return -1;
	}
	io->flags |= IO_F_CONNECTING;
	io_update(io);
	return 0;
}

/* The OpenSSL error queue as one line, for io->error. */
static void
tls_error(struct io *io, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[120];

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "%s", errno ? strerror(errno) : "connection closed");
	snprintf(io->errbuf, sizeof(io->errbuf), "%s: %s", what, buf);
	io->error = io->errbuf;
	ERR_clear_error();
}

static void
start_handshake(struct io *io)
{
	/* Defence in depth: plaintext never survives into the TLS stream. */
	io->discarded += buf_len(&io->in);
	buf_reset(&io->in);
	io->flags &= ~IO_F_TLS_PENDING;
	io->flags |= IO_F_HANDSHAKE;
	/* The first step runs from the loop: the owner never sees a re-entrant event. */
	io->rd_want = 0;
	io->wr_want = EPOLLOUT;
}

/* Write what we can without calling back; failures surface as IO_ERROR. */
static void
io_flush(struct io *io)
{
	size_t before = buf_len(&io->out);

	while (buf_len(&io->out) > 0 && !(io->flags & (IO_F_FAILED | IO_F_CONNECTING))) {
		if (io->flags & IO_F_HANDSHAKE)
			return;
		if (io->flags & IO_F_TLS) {
			int n = SSL_write(io->ssl, buf_head(&io->out), (int)(buf_len(&io->out) > 65536
			    ? 65536 : buf_len(&io->out)));
			if (n <= 0) {
				int err = SSL_get_error(io->ssl, n);
				if (err == SSL_ERROR_WANT_WRITE) {
					io->wr_want = EPOLLOUT;
					break;
				}
				if (err == SSL_ERROR_WANT_READ) {
					io->wr_want = EPOLLIN;
					break;
				}
				tls_error(io, "TLS write");
				io->flags |= IO_F_FAILED;
				break;
			}
			io->wr_want = EPOLLOUT;
			buf_consume(&io->out, (size_t)n);
			io_touch(io);
			continue;
		}
		ssize_t n = send(io->fd, buf_head(&io->out), buf_len(&io->out), MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			io->error = strerror(errno);
			io->flags |= IO_F_FAILED;
			break;
		}
		buf_consume(&io->out, (size_t)n);
		io_touch(io);
	}
	/* Whoever flushed, the owner hears of the drain from the handler. */
	if (before > io->lowat && buf_len(&io->out) <= io->lowat)
		io->flags |= IO_F_LOWAT_DUE;
	/* A reply sent in full leaves nothing behind (a bulk buffer waits for io_read). */
	if (before > 0 && io->out.size <= IO_OUT_KEEP)
		buf_release(&io->out);
	if (buf_len(&io->out) == 0 && (io->flags & IO_F_TLS_PENDING))
		start_handshake(io);
	if (buf_len(&io->out) == 0 && (io->flags & IO_F_SHUTDOWN) && !(io->flags & IO_F_WRDONE) &&
	    !(io->flags & IO_F_HANDSHAKE)) {
		if (io->flags & IO_F_TLS)
			(void)SSL_shutdown(io->ssl); /* close_notify, best effort */
		(void)shutdown(io->fd, SHUT_WR);
		io->flags |= IO_F_WRDONE;
	}
}

int
io_write(struct io *io, const void *p, size_t n)
{
	if (io->flags & (IO_F_DEAD | IO_F_WRDONE))
		return -1;
	if (buf_append(&io->out, p, n) < 0)
		return -1;
	io_flush(io);
	io_update(io);
	return 0;
}

int
io_printf(struct io *io, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		fatal("formatted output too long (%d)", n);
	return io_write(io, line, (size_t)n);
}

void
io_kick(struct io *io)
{
	if (io->flags & IO_F_DEAD)
		return;
	io_flush(io);
	io_update(io);
}

void
io_pause(struct io *io)
{
	io->flags |= IO_F_PAUSED;
	io_update(io);
}

void
io_resume(struct io *io)
{
	io->flags &= ~IO_F_PAUSED;
	io_update(io);
}

void
io_set_timeout(struct io *io, unsigned ms)
{
	io->timeout_ms = ms;
	if (ms)
		io_touch(io);
	else
		ev_timer_cancel(&io->timer);
}

void
io_shutdown_after_flush(struct io *io)
{
	io->flags |= IO_F_SHUTDOWN;
	io_flush(io);
	io_update(io);
}

void
io_start_tls(struct io *io, SSL *ssl)
{
	FATAL_IF(io->ssl != NULL);
	io->ssl = ssl;
	SSL_set_fd(ssl, io->fd);
	/* What was read as plaintext is never part of the TLS stream. */
	io->discarded += buf_len(&io->in);
	buf_reset(&io->in);
	if (buf_len(&io->out) > 0)
		io->flags |= IO_F_TLS_PENDING;
	else
		start_handshake(io);
	io_update(io);
}

void
io_tls_resume(struct io *io)
{
	if (!(io->flags & IO_F_HS_PAUSED))
		return;
	io->flags &= ~IO_F_HS_PAUSED;
	io->rd_want = 0;
	io->wr_want = EPOLLOUT;
	io_update(io);
}

void
io_close(struct io *io)
{
	if (io->flags & IO_F_DEAD)
		return;
	io->flags |= IO_F_DEAD;
	ev_timer_cancel(&io->timer);
	/* closed just below, and a session's socket is never duplicated */
	ev_fd_forget(&io->ev);
	if (io->ssl) {
		if ((io->flags & IO_F_TLS) && !(io->flags & (IO_F_FAILED | IO_F_WRDONE)))
			(void)SSL_shutdown(io->ssl);
		SSL_free(io->ssl);
		io->ssl = NULL;
	}
	if (io->fd >= 0)
		close(io->fd);
	io->fd = -1;
	io->ev.fd = -1;
	buf_free_secure(&io->in);  /* may hold decrypted mail or AUTH exchanges */
	buf_free_secure(&io->out);
}

static void
io_handle_connect(struct io *io)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	io->flags &= ~IO_F_CONNECTING;
	if (err) {
		io->error = strerror(err);
		io->cb(io, IO_ERROR, io->arg);
		return;
	}
	io_touch(io);
	io_update(io);
	io->cb(io, IO_CONNECTED, io->arg);
}

static void
io_handshake(struct io *io)
{
	int r = SSL_do_handshake(io->ssl);

	if (r == 1) {
		io->flags &= ~IO_F_HANDSHAKE;
		io->flags |= IO_F_TLS;
		io->rd_want = EPOLLIN;
		io->wr_want = EPOLLOUT;
		io_touch(io);
		io_update(io);
		io->cb(io, IO_TLS_READY, io->arg);
		return;
	}
	switch (SSL_get_error(io->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		io->rd_want = EPOLLIN;
		io->wr_want = 0;
		io_update(io);
		return;
	case SSL_ERROR_WANT_WRITE:
		io->rd_want = 0;
		io->wr_want = EPOLLOUT;
		io_update(io);
		return;
	case SSL_ERROR_WANT_CLIENT_HELLO_CB:
		io->flags |= IO_F_HS_PAUSED;
		io_update(io);
		io->cb(io, IO_TLS_HELLO, io->arg);
		return;
	default:
		tls_error(io, "TLS handshake");
		io->cb(io, IO_ERROR, io->arg);
		return;
	}
}

/* One read into io->in; returns false when the owner was called with an end or error. */
static void
io_read(struct io *io)
{
	size_t got;
	char *w = buf_reserve(&io->in, IO_READ_CHUNK, &got);
	ssize_t n;

	if (w == NULL) {
		io_update(io);
		return;
	}
	if (io->flags & IO_F_TLS) {
		int r = SSL_read(io->ssl, w, got > INT32_MAX ? INT32_MAX : (int)got);
		if (r <= 0) {
			int err = SSL_get_error(io->ssl, r);
			if (err == SSL_ERROR_WANT_READ) {
				io->flags |= IO_F_STARVED;
				io->rd_want = EPOLLIN;
				io_update(io);
				return;
			}
			if (err == SSL_ERROR_WANT_WRITE) {
				io->rd_want = EPOLLOUT;
				io_update(io);
				return;
			}
			if (err == SSL_ERROR_ZERO_RETURN) {
				n = 0;
			} else {
				tls_error(io, "TLS read");
				io->cb(io, IO_ERROR, io->arg);
				return;
			}
		} else {
			n = r;
			io->flags &= ~IO_F_STARVED;
		}
		io->rd_want = EPOLLIN;
	} else {
		n = recv(io->fd, w, got, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			io->error = strerror(errno);
			io->cb(io, IO_ERROR, io->arg);
			return;
		}
	}
	if (n == 0) {
		io->flags |= IO_F_EOF;
		io_update(io);
		io->cb(io, IO_EOF, io->arg);
		return;
	}
	buf_commit(&io->in, (size_t)n);
	io->rbytes += (uint64_t)n;
	io_touch(io);
	io_update(io);
	io->cb(io, IO_DATAIN, io->arg);
	/*
	 * All consumed, all sent: an idle leg keeps no buffers (64 KiB were
	 * reserved for the read).  A leg streaming a message keeps them (a
	 * partial line is pending), so this costs an allocation per command,
	 * not per read of a message.
	 */
	if (!(io->flags & IO_F_DEAD)) {
		buf_release(&io->in);
		buf_release(&io->out);
	}
}

/*
 * The peer closed (or hung up) while we were not reading it: tell the
 * owner once, so a close is noticed in every state.  A full hang-up keeps
 * being reported by epoll whatever the interest mask, so the fd leaves
 * epoll until io_update() wants it again.
 */
static void
io_hup(struct io *io, uint32_t revents)
{
	io->flags |= IO_F_HUP_TOLD;
	if (revents & EPOLLHUP)
		ev_fd_del(&io->ev);
	else
		io_update(io);
	io->cb(io, IO_HUP, io->arg);
}

static void
io_report_error(struct io *io)
{
	int err = 0;
	socklen_t len = sizeof(err);

	(void)getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	io->error = strerror(err ? err : EIO);
	io->cb(io, IO_ERROR, io->arg);
}

static void
io_handler(struct ev_fd *e, uint32_t revents)
{
	struct io *io = container_of(e, struct io, ev);

	if (io->flags & IO_F_DEAD)
		return;
	if (io->flags & IO_F_CONNECTING) {
		if (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			io_handle_connect(io);
		return;
	}
	if (io->flags & IO_F_HS_PAUSED) {
		if (revents & EPOLLERR)
			io_report_error(io);
		else if ((revents & (EPOLLRDHUP | EPOLLHUP)) && !(io->flags & IO_F_HUP_TOLD))
			io_hup(io, revents);
		else if (revents & EPOLLHUP)
			ev_fd_del(&io->ev);
		return;
	}
	if (io->flags & IO_F_HANDSHAKE) {
		io_handshake(io);
		return;
	}

	/* With TLS either direction may need either event: try both. */
	if ((revents & EPOLLOUT) || (io->flags & IO_F_FAILED) ||
	    (tls_active(io) && buf_len(&io->out) > 0) ||
	    (io->flags & (IO_F_TLS_PENDING | IO_F_LOWAT_DUE))) {
		bool lowat;

		io_flush(io);
		if (io->flags & IO_F_FAILED) {
			io->cb(io, IO_ERROR, io->arg);
			return;
		}
		lowat = (io->flags & IO_F_LOWAT_DUE) != 0;
		io->flags &= ~IO_F_LOWAT_DUE;
		io_update(io);
		if (lowat) {
			io->cb(io, IO_LOWAT, io->arg);
			if (io->flags & IO_F_DEAD)
				return;
		}
		if (io->flags & IO_F_HANDSHAKE)
			return; /* STARTTLS reply sent: the handshake runs on the next event */
	}

	if (revents & EPOLLERR) {
		io_report_error(io);
		return;
	}
	if (revents & (EPOLLIN | EPOLLHUP | EPOLLOUT | EPOLLRDHUP)) {
		bool held = (io->flags & (IO_F_PAUSED | IO_F_TLS_PENDING)) != 0;

		if (held && !(io->flags & (IO_F_EOF | IO_F_HUP_TOLD)) &&
		    (revents & (EPOLLRDHUP | EPOLLHUP))) {
			io_hup(io, revents);
			return;
		}
		if (held || (io->flags & IO_F_EOF)) {
			/*
			 * epoll reports HUP whatever the interest mask; while we
			 * may not read, take the fd out of epoll so a hung-up
			 * peer cannot spin the loop.  io_update() re-adds it.
			 */
			if (revents & EPOLLHUP && !(revents & EPOLLOUT))
				ev_fd_del(&io->ev);
			return;
		}
		/* Plain sockets read on EPOLLIN/HUP only; TLS reads may wait on EPOLLOUT. */
		if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) &&
		    !((io->flags & IO_F_TLS) && io->rd_want == EPOLLOUT))
			return;
		io_read(io);
	}
}

void
io_run_pending(void)
{
	/* a kick may queue a read (io_update) and a read may owe a kick: until both are done */
again:
	while (pending_head) {
		struct io *io = pending_head;

		pending_head = io->pending_next;
		io->on_pending = false;
		if (io->flags & IO_F_DEAD || !(io->flags & IO_F_TLS) || io->ssl == NULL)
			continue;
		if (io->flags & (IO_F_PAUSED | IO_F_EOF) || buf_room(&io->in) == 0)
			continue;
		if (tls_has_more(io))
			io_read(io);
	}
	/* the reads above may have owed more kicks: they are on the list too */
	while (kick_head) {
		struct io *io = kick_head;

		kick_head = io->kick_next;
		io->on_kick = false;
		io_kick(io);
	}
	if (pending_head)
		goto again;
}

void
io_kick_soon(struct io *io)
{
	if ((io->flags & IO_F_DEAD) || io->on_kick)
		return;
	io->on_kick = true;
	io->kick_next = kick_head;
	kick_head = io;
}

void
io_free(struct io *io)
{
	if (io == NULL)
		return;
	FATAL_IF(!(io->flags & IO_F_DEAD));
	/* Still queued for a deferred TLS read or kick: unlink it first. */
	if (io->on_pending) {
		struct io **pp = &pending_head;

		while (*pp && *pp != io)
			pp = &(*pp)->pending_next;
		if (*pp)
			*pp = io->pending_next;
	}
	if (io->on_kick) {
		struct io **pp = &kick_head;

		while (*pp && *pp != io)
			pp = &(*pp)->kick_next;
		if (*pp)
			*pp = io->kick_next;
	}
	free(io);
}

void
io_tls_bulk(struct io *io, bool on)
{
	/*
	 * Takes effect when OpenSSL next allocates its read buffer: at once
	 * if it holds nothing (SSL_MODE_RELEASE_BUFFERS gave it back), else
	 * after the record in progress.  0: OpenSSL's own length again.
	 */
	if (io->ssl != NULL)
		SSL_set_default_read_buffer_len(io->ssl, on ? IO_TLS_BULK_READ : 0);
}

bool
io_has_more(const struct io *io)
{
	/* exactly when io_run_pending would read it */
	return (io->flags & IO_F_TLS) && io->ssl != NULL &&
	    !(io->flags & (IO_F_DEAD | IO_F_PAUSED | IO_F_EOF)) && buf_room(&io->in) > 0 &&
	    tls_has_more(io);
}

bool io_is_tls(const struct io *io) { return (io->flags & IO_F_TLS) != 0; }
bool io_closed(const struct io *io) { return (io->flags & IO_F_DEAD) != 0; }
struct buf *io_in(struct io *io) { return &io->in; }
struct buf *io_out(struct io *io) { return &io->out; }
struct ssl_st *io_ssl(const struct io *io) { return io->ssl; }
int io_fd(const struct io *io) { return io->fd; }
const char *io_error(const struct io *io) { return io->error; }
uint64_t io_rbytes(const struct io *io) { return io->rbytes; }
bool io_eof(const struct io *io) { return (io->flags & IO_F_EOF) != 0; }
bool io_in_handshake(const struct io *io) { return (io->flags & IO_F_HANDSHAKE) != 0; }
bool io_hs_paused(const struct io *io) { return (io->flags & IO_F_HS_PAUSED) != 0; }
void io_set_lowat(struct io *io, size_t lowat) { io->lowat = lowat; }
bool io_timer_armed(const struct io *io) { return ev_timer_armed(&io->timer); }
uint64_t io_discarded(const struct io *io) { return io->discarded; }
