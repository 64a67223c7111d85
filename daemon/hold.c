/*
 * hold - held messages in memory and unlinked spool files (see hold.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hold.h"
#include "log.h"
#include "util.h"

#define HOLD_NAME_PREFIX "smtpgw-hold."

void
hold_init(struct hold *h, size_t memmax, const char *dir)
{
	memset(h, 0, sizeof(*h));
	h->fd = -1;
	h->memmax = memmax;
	h->dir = dir;
}

void
hold_free(struct hold *h)
{
	if (h->fd >= 0)
		close(h->fd);
	free(h->mem);
	free(h->io);
	hold_init(h, h->memmax, h->dir);
}

/* Files of a crashed process, left between their creation and unlink. */
void
hold_sweep(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int dfd;

	if (d == NULL)
		return;
	dfd = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, HOLD_NAME_PREFIX, strlen(HOLD_NAME_PREFIX)) != 0)
			continue;
		/* A live process unlinks its own file right after creating it: harmless. */
		if (unlinkat(dfd, de->d_name, 0) == 0)
			log_info("hold sweep removed=%s/%s", dir, de->d_name);
	}
	closedir(d);
}

/* A spool file without a name (or with one for a moment only). */
static int
spool_open(const char *dir)
{
	static bool swept;
	char path[CONF_PATH_MAX + 32];
	int fd;

	if (!swept) {
		swept = true;
		hold_sweep(dir);
	}
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	/* No O_TMPFILE here (9p, some FUSE file systems): name it, then unlink it at once. */
	if (snprintf(path, sizeof(path), "%s/" HOLD_NAME_PREFIX "XXXXXX", dir) >=
	    (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (unlink(path) < 0 || fchmod(fd, 0600) < 0) {
		int saved = errno;

		(void)unlink(path);
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int
fail(struct hold *h, int err)
{
	if (h->error == 0)
		h->error = err ? err : EIO;
	return -1;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		if (w == 0) {
			errno = ENOSPC;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
flush_io(struct hold *h)
{
	if (h->iolen == 0)
		return 0;
	if (write_all(h->fd, h->io, h->iolen) < 0)
		return fail(h, errno);
	h->filelen += h->iolen;
	h->iolen = 0;
	return 0;
}

int
hold_append(struct hold *h, const char *p, size_t n)
{
	FATAL_IF(h->sealed);
	if (h->error)
		return -1;
	/* memory first, growing by doubling up to memmax */
	if (h->memlen < h->memmax && n > 0) {
		size_t take = h->memmax - h->memlen < n ? h->memmax - h->memlen : n;

		if (h->memlen + take > h->memcap) {
			size_t cap = h->memcap ? h->memcap : 4096;

			while (cap < h->memlen + take)
				cap *= 2;
			if (cap > h->memmax)
				cap = h->memmax;
			h->mem = xrealloc(h->mem, cap);
			h->memcap = cap;
		}
		memcpy(h->mem + h->memlen, p, take);
		h->memlen += take;
		h->size += take;
		p += take;
		n -= take;
	}
	if (n == 0)
		return 0;
	if (h->fd < 0) {
		h->fd = spool_open(h->dir);
		if (h->fd < 0)
			return fail(h, errno);
		if (h->io == NULL)
			h->io = xmalloc(HOLD_IO_BUF);
	}
	while (n > 0) {
		size_t take = HOLD_IO_BUF - h->iolen < n ? HOLD_IO_BUF - h->iolen : n;

		memcpy(h->io + h->iolen, p, take);
		h->iolen += take;
		h->size += take;
		p += take;
		n -= take;
		if (h->iolen == HOLD_IO_BUF && flush_io(h) < 0)
			return -1;
	}
	return 0;
}

int
hold_seal(struct hold *h)
{
	if (h->sealed)
		return h->error ? -1 : 0;
	h->sealed = true;
	if (h->error)
		return -1;
	return h->fd >= 0 ? flush_io(h) : 0;
}

ssize_t
hold_read(struct hold *h, uint64_t off, size_t len, const char **p)
{
	FATAL_IF(!h->sealed);
	if (h->error)
		return -1;
	if (off >= h->size || len == 0)
		return 0;
	if (len > h->size - off)
		len = (size_t)(h->size - off);
	if (off < h->memlen) {
		*p = h->mem + off;
		return (ssize_t)(len < h->memlen - off ? len : h->memlen - off);
	}
	if (len > HOLD_IO_BUF)
		len = HOLD_IO_BUF;
	for (;;) {
		ssize_t r = pread(h->fd, h->io, len, (off_t)(off - h->memlen));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return fail(h, r < 0 ? errno : EIO);
		*p = h->io;
		return r;
	}
}

/* The octet at off, or -1. */
static int
byte_at(struct hold *h, uint64_t off)
{
	const char *p;

	if (hold_read(h, off, 1, &p) != 1)
		return -1;
	return (unsigned char)*p;
}

/* A line start: the beginning, the end, or right after a LF. */
static bool
line_start(struct hold *h, uint64_t off)
{
	return off == 0 || off == h->size || byte_at(h, off - 1) == '\n';
}

/* CRLF lines, none longer than max_line, no NUL, no bare CR or LF. */
static bool
text_ok(const char *t, size_t n, size_t max_line)
{
	size_t linelen = 0;

	if (n == 0)
		return true;
	if (n < 2 || t[n - 2] != '\r' || t[n - 1] != '\n')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (t[i] == '\0')
			return false;
		if (t[i] == '\r') {
			if (i + 1 >= n || t[i + 1] != '\n')
				return false;
			continue;
		}
		if (t[i] == '\n') {
			if (i == 0 || t[i - 1] != '\r')
				return false;
			linelen = 0;
			continue;
		}
		if (++linelen > max_line)
			return false;
	}
	return true;
}

int
hold_edits_check(struct hold *h, const struct inspect_edit *ed, unsigned n, size_t max_line,
    const char **why)
{
	uint64_t prev_end = 0;

	if (n > INSPECT_MAX_EDITS) {
		*why = "too many edits";
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		const struct inspect_edit *e = &ed[i];

		if (e->off > h->size || e->len > h->size - e->off) {
			*why = "edit beyond the end of the message";
			return -1;
		}
		if (e->off < prev_end) {
			*why = "edits not sorted or overlapping";
			return -1;
		}
		if (!line_start(h, e->off) || !line_start(h, e->off + e->len)) {
			*why = h->error ? "spool read error" : "edit not on line boundaries";
			return -1;
		}
		if (!text_ok(e->text, e->textlen, max_line)) {
			*why = "edit text is not CRLF lines within max-line-length";
			return -1;
		}
		prev_end = e->off + e->len;
	}
	return 0;
}

void
hold_cursor_init(struct hold_cursor *c, struct hold *h, const struct inspect_edit *ed,
    unsigned n)
{
	memset(c, 0, sizeof(*c));
	c->h = h;
	c->ed = ed;
	c->n = n;
}

ssize_t
hold_cursor_next(struct hold_cursor *c, const char **p, size_t max)
{
	while (max > 0) {
		if (c->i < c->n && c->pos == c->ed[c->i].off) {
			const struct inspect_edit *e = &c->ed[c->i];

			if (c->tpos < e->textlen) {
				size_t k = e->textlen - c->tpos < max ? e->textlen - c->tpos : max;

				*p = e->text + c->tpos;
				c->tpos += k;
				c->out += k;
				return (ssize_t)k;
			}
			/* the replacement is out: skip what it replaced */
			c->pos += e->len;
			c->i++;
			c->tpos = 0;
			continue;
		}
		uint64_t limit = c->i < c->n ? c->ed[c->i].off : c->h->size;
		if (c->pos >= limit)
			return 0; /* the end (an edit can only start at or after pos) */
		size_t want = limit - c->pos < max ? (size_t)(limit - c->pos) : max;
		ssize_t r = hold_read(c->h, c->pos, want, p);
		if (r <= 0)
			return -1;
		c->pos += (uint64_t)r;
		c->out += (uint64_t)r;
		return r;
	}
	return 0;
}
