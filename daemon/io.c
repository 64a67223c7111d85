/*
 * io - buffered non-blocking socket I/O over the ev loop.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"
#include "log.h"

/* Largest single read: bounded so one busy peer cannot starve the loop. */
#define IO_READ_CHUNK 65536

static void io_handler(struct ev_fd *e, uint32_t revents);

static void
io_update(struct io *io)
{
	uint32_t want = 0;

	if (io->flags & IO_F_DEAD)
		return;
	if (io->flags & IO_F_CONNECTING) {
		want = EPOLLOUT;
	} else {
		if (!(io->flags & (IO_F_PAUSED | IO_F_EOF)) && buf_room(&io->in) > 0)
			want |= EPOLLIN;
		if (buf_len(&io->out) > 0 || (io->flags & IO_F_FAILED))
			want |= EPOLLOUT;
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

void
io_init(struct io *io, int fd, size_t inmax, size_t outmax,
    void (*cb)(struct io *, enum io_event, void *), void *arg)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	buf_init(&io->in, inmax);
	buf_init(&io->out, outmax);
	io->cb = cb;
	io->arg = arg;
	/* Registered with no interest; io_update() picks what is needed. */
	ev_fd_add(&io->ev, fd, 0, io_handler);
	io->ev.events = 0;
	io_update(io);
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

/* Write what we can without calling back; failures surface as IO_ERROR. */
static void
io_flush(struct io *io)
{
	while (buf_len(&io->out) > 0 && !(io->flags & (IO_F_FAILED | IO_F_CONNECTING))) {
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
	if (buf_len(&io->out) == 0 && (io->flags & IO_F_SHUTDOWN) && !(io->flags & IO_F_WRDONE)) {
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
io_close(struct io *io)
{
	if (io->flags & IO_F_DEAD)
		return;
	io->flags |= IO_F_DEAD;
	ev_timer_cancel(&io->timer);
	ev_fd_del(&io->ev);
	if (io->fd >= 0)
		close(io->fd);
	io->fd = -1;
	io->ev.fd = -1;
	buf_free(&io->in);
	buf_free(&io->out);
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

	if (revents & EPOLLOUT || io->flags & IO_F_FAILED) {
		size_t before = buf_len(&io->out);

		io_flush(io);
		if (io->flags & IO_F_FAILED) {
			io->cb(io, IO_ERROR, io->arg);
			return;
		}
		io_update(io);
		if (before > io->lowat && buf_len(&io->out) <= io->lowat) {
			io->cb(io, IO_LOWAT, io->arg);
			if (io->flags & IO_F_DEAD)
				return;
		}
	}

	if (revents & EPOLLERR) {
		int err = 0;
		socklen_t len = sizeof(err);

		(void)getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		io->error = strerror(err ? err : EIO);
		io->cb(io, IO_ERROR, io->arg);
		return;
	}
	if (revents & (EPOLLIN | EPOLLHUP)) {
		size_t got;
		char *w;

		if (io->flags & (IO_F_PAUSED | IO_F_EOF)) {
			/*
			 * epoll reports HUP whatever the interest mask; while we
			 * may not read, take the fd out of epoll so a hung-up
			 * peer cannot spin the loop.  io_update() re-adds it.
			 */
			if (revents & EPOLLHUP && !(revents & EPOLLOUT))
				ev_fd_del(&io->ev);
			return;
		}
		w = buf_reserve(&io->in, IO_READ_CHUNK, &got);
		if (w == NULL) {
			io_update(io);
			return;
		}
		ssize_t n = recv(io->fd, w, got, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			io->error = strerror(errno);
			io->cb(io, IO_ERROR, io->arg);
			return;
		}
		if (n == 0) {
			io->flags |= IO_F_EOF;
			io_update(io);
			io->cb(io, IO_EOF, io->arg);
			return;
		}
		buf_commit(&io->in, (size_t)n);
		io_touch(io);
		io_update(io);
		io->cb(io, IO_DATAIN, io->arg);
	}
}
