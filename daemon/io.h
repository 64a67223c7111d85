/*
 * io - buffered, event-driven I/O on one socket: the one abstraction the
 * session code talks to.  TLS (OpenSSL) runs inside it, so the SMTP code
 * is the same over plain and TLS legs.
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
 *   IO_HUP        the peer closed or hung up while we were not reading it
 *                 (paused, or a paused handshake): told once, so a close
 *                 is noticed in every state.  What it sent before is still
 *                 unread; resuming reads it, then IO_EOF.
 *
 * TLS: io_start_tls() hands the io an SSL object; from then on every read
 * and write goes through it, and the owner sees the same vocabulary.  The
 * handshake begins only after queued plaintext output has been sent (the
 * STARTTLS reply), and plaintext input still buffered is never fed to it.
 *
 * Lifetime: the owner calls io_close() (possibly from inside its callback);
 * after that no event is delivered, but the struct stays valid until the
 * owner frees it (io_free) after the event batch (ev idle hook), which is
 * what makes closing from inside a callback safe.
 *
 * Buffers: in holds at most inmax octets (reading stops when it is full,
 * so a peer cannot make us hold more); out holds at most outmax octets
 * (io_write() fails beyond that: the owner treats it as a peer that does
 * not read).
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
	IO_HUP,
};

/* Opaque outside io.c: owners use the functions below. */
struct io;
struct ssl_st;

/*
 * A new io on the non-blocking socket fd (owned from now on; closed by
 * io_close()), with in/out buffers bounded by inmax/outmax.
 */
struct io *io_new(int fd, size_t inmax, size_t outmax,
    void (*cb)(struct io *, enum io_event, void *), void *arg);
/* Free an io after io_close(), outside its callbacks (the owner's deferred free). */
void io_free(struct io *io);
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
/*
 * io_kick, later in this turn of the loop: after io_run_pending has
 * delivered the reads that were waiting (see io_has_more), never later.
 */
void io_kick_soon(struct io *io);
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
bool io_is_tls(const struct io *io);
/*
 * Deliver reads for TLS ios whose decrypted bytes waited for room, then
 * the kicks io_kick_soon owes (ev idle hook).
 */
void io_run_pending(void);
bool io_closed(const struct io *io);

/*
 * Accessors.  The owner works on the buffers directly: it consumes from
 * io_in() and appends to io_out(), then calls io_kick().
 */
struct buf *io_in(struct io *io);
struct buf *io_out(struct io *io);
struct ssl_st *io_ssl(const struct io *io); /* NULL before io_start_tls() */
int io_fd(const struct io *io);
const char *io_error(const struct io *io);  /* why the last IO_ERROR/IO_TIMEOUT, or NULL */
uint64_t io_rbytes(const struct io *io);    /* payload octets read (after TLS) */
bool io_eof(const struct io *io);           /* the peer finished sending */
bool io_in_handshake(const struct io *io);  /* a TLS handshake is in progress */
bool io_hs_paused(const struct io *io);     /* ... and waits for io_tls_resume() */
/* IO_LOWAT fires when io_out() drains to this many bytes or fewer. */
void io_set_lowat(struct io *io, size_t lowat);
/* The inactivity timer (io_set_timeout) is running. */
bool io_timer_armed(const struct io *io);
/*
 * More input is already inside the io -- TLS records read ahead, or
 * decrypted bytes -- and will be delivered in this turn of the loop
 * without the socket (io_run_pending): an owner relaying a stream may
 * wait for it before flushing what it made of the last read, so the next
 * leg gets full records instead of one per read.  Never true for a
 * paused, ended or full io (nothing would come).
 */
bool io_has_more(const struct io *io);
/*
 * A TLS leg about to carry a stream (a message body): read-ahead takes up
 * to IO_TLS_BULK_READ octets -- several records -- per read(2) instead of
 * one record.  Off again when the stream ends: the larger buffer is only
 * held while a record is incomplete, and outside a message nobody should
 * make every session hold it by stalling mid-record.  No-op on plain legs.
 */
void io_tls_bulk(struct io *io, bool on);
/* Plaintext octets dropped because a TLS handshake started behind them. */
uint64_t io_discarded(const struct io *io);

#endif
