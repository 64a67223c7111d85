/*
 * io - buffered, event-driven I/O on one socket: the one abstraction the
 * session code talks to.  The TLS layer (a later change) plugs in below
 * this API, so the SMTP code is the same over plain and TLS legs.
 *
 * Event vocabulary delivered to the owner's callback:
 *   IO_CONNECTED  an io_connect() completed
 *   IO_DATAIN     new bytes were appended to io->in (consume them from there)
 *   IO_LOWAT      io->out drained to io->lowat bytes or less
 *   IO_TIMEOUT    no progress for io->timeout_ms
 *   IO_EOF        the peer closed its sending side (io->in may hold bytes)
 *   IO_ERROR      the socket failed; io->error says why
 *   IO_TLS_READY  the TLS handshake started by io_start_tls() completed
 *   IO_TLS_HELLO  a server handshake paused at the ClientHello (the
 *                 owner's client-hello callback asked to wait); continue
 *                 with io_tls_resume()
 *
 * TLS: io_start_tls() hands the io an SSL object; from then on every read
 * and write goes through it, and the owner sees the same vocabulary.  The
 * handshake begins only after queued plaintext output has been sent (the
 * STARTTLS reply), and plaintext input still buffered is never fed to it.
 *
 * Lifetime: the owner calls io_close() (possibly from inside its callback);
 * after that no event is delivered, but the struct stays valid until the
 * owner frees it after the event batch (ev idle hook), which is what makes
 * closing from inside a callback safe.
 */
#ifndef SMTPGW_IO_H
#define SMTPGW_IO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "buf.h"
#include "ev.h"
#include "util.h"

enum io_event {
	IO_CONNECTED,
	IO_DATAIN,
	IO_LOWAT,
	IO_TIMEOUT,
	IO_EOF,
	IO_ERROR,
	IO_TLS_READY,
	IO_TLS_HELLO,
};

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
	struct io *pending_next;   /* on the list of ios with decrypted bytes waiting */
	bool on_pending;
	void (*cb)(struct io *io, enum io_event ev, void *arg);
	void *arg;
};

void io_init(struct io *io, int fd, size_t inmax, size_t outmax,
    void (*cb)(struct io *, enum io_event, void *), void *arg);
/* fd is a non-blocking socket; start connecting it to dst. */
int io_connect(struct io *io, const union sockaddr_any *dst);
/* Queue bytes for sending; -1 if the output buffer would exceed its max. */
int io_write(struct io *io, const void *p, size_t n);
int io_printf(struct io *io, const char *fmt, ...) PRINTF_LIKE(2, 3);
/*
 * Re-evaluate after the owner worked on the buffers directly: send what it
 * appended to io->out, read again if it consumed from a full io->in.
 */
void io_kick(struct io *io);
void io_pause(struct io *io);
void io_resume(struct io *io);
/* Inactivity timeout; 0 disables.  Re-armed on every read or write. */
void io_set_timeout(struct io *io, unsigned ms);
/* Send what is queued, then shut the write side down. */
void io_shutdown_after_flush(struct io *io);
void io_close(struct io *io);
/* Take over ssl (SSL_set_fd is done here); the handshake starts after out drains. */
void io_start_tls(struct io *io, struct ssl_st *ssl);
void io_tls_resume(struct io *io);
static inline bool io_is_tls(const struct io *io) { return (io->flags & IO_F_TLS) != 0; }
/* Deliver reads for TLS ios whose decrypted bytes waited for room (ev idle hook). */
void io_run_pending(void);
static inline bool io_closed(const struct io *io) { return (io->flags & IO_F_DEAD) != 0; }

#endif
