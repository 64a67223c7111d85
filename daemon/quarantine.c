/*
 * quarantine - records of refused and stripped messages (see
 * quarantine.h): their format, the worker's writer, the sweep, and what
 * the admin's tools read.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "ev.h"
#include "log.h"
#include "quarantine.h"
#include "stats.h"
#include "util.h"

#define MAGIC "smtpgw-quarantine 1\n"
#define SUFFIX ".msg"
#define TMP_PREFIX ".tmp-"
#define RELEASED ".released"
#define AUDIT "audit.log"
#define TMP_STALE_S 3600
#define AUDIT_MAX (1024 * 1024)

static const char *const verdict_names[] = {
	[QV_DENY] = "deny", [QV_DROP] = "drop", [QV_BLOCK] = "block", [QV_STRIP] = "strip",
};

const char *
quarantine_verdict_name(enum quarantine_verdict v)
{
	return (unsigned)v < ARRAY_SIZE(verdict_names) ? verdict_names[v] : "?";
}

/* ------------------------------------------------------------ ids */

void
quarantine_make_id(char *out, time_t t, uint64_t sid, unsigned n)
{
	snprintf(out, QUARANTINE_ID_MAX, "%010" PRIu64 "-%012" PRIx64 "-%04x",
	    (uint64_t)(t < 0 ? 0 : t) % UINT64_C(10000000000), sid & UINT64_C(0xffffffffffff),
	    n & 0xffffu);
}

bool
quarantine_valid_id(const char *id)
{
	size_t i;

	/* 10 digits, '-', 12 hex, '-', 4 hex */
	if (strlen(id) != 28)
		return false;
	for (i = 0; i < 28; i++) {
		char c = id[i];
		if (i == 10 || i == 23) {
			if (c != '-')
				return false;
		} else if (i < 10) {
			if (c < '0' || c > '9')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return true;
}

/* ------------------------------------------------------------ format */

struct sbuf {
	char *p;
	size_t len, cap;
	bool over;
};

static void
sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->over || b->len + n + 1 > QUARANTINE_HEAD_MAX) {
		b->over = true;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* "key=value\n" with the value's line-breaking octets and '%' as %XX. */
static void
sb_kv(struct sbuf *b, const char *key, const char *v)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	sb_put(b, key, strlen(key));
	sb_put(b, "=", 1);
	for (const unsigned char *p = (const unsigned char *)(v ? v : ""); *p; p++) {
		if (++n > QUARANTINE_VALUE_MAX) {
			b->over = true;
			return;
		}
		if (*p < 0x20 || *p == 0x7f || *p == '%') {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			sb_put(b, e, 3);
		} else {
			sb_put(b, (const char *)p, 1);
		}
	}
	sb_put(b, "\n", 1);
}

static void
sb_kvu(struct sbuf *b, const char *key, uint64_t v, bool hexa)
{
	char t[32];

	snprintf(t, sizeof(t), hexa ? "%012" PRIx64 : "%" PRIu64, v);
	sb_kv(b, key, t);
}

int
quarantine_format_head(const struct qrec *r, char **out, size_t *outlen)
{
	struct sbuf b = { 0 };

	*out = NULL;
	*outlen = 0;
	if (r->nrcpts > QUARANTINE_RCPTS_MAX || !quarantine_valid_id(r->id))
		return -1;
	sb_put(&b, MAGIC, strlen(MAGIC));
	sb_kv(&b, "id", r->id);
	sb_kvu(&b, "time", (uint64_t)(r->time < 0 ? 0 : r->time), false);
	sb_kvu(&b, "session", r->session, true);
	sb_kv(&b, "action", r->action);
	sb_kv(&b, "direction", r->inbound ? "inbound" : "outbound");
	sb_kv(&b, "client", r->client);
	sb_kv(&b, "server", r->server);
	sb_kv(&b, "server-name", r->server_name);
	sb_kv(&b, "server-tls", r->server_tls ? "yes" : "no");
	sb_kv(&b, "client-tls", r->client_tls && r->client_tls[0] ? r->client_tls : "none");
	sb_kv(&b, "helo", r->helo);
	sb_kv(&b, "mail-from", r->mail_from);
	for (unsigned i = 0; i < r->nrcpts; i++)
		sb_kv(&b, "rcpt", r->rcpts[i]);
	sb_kv(&b, "verdict", quarantine_verdict_name(r->verdict));
	sb_kv(&b, "reason", r->reason);
	sb_kv(&b, "virus", r->virus);
	sb_kv(&b, "spam-score", r->spam_score);
	sb_kv(&b, "reply", r->reply);
	sb_kvu(&b, "size", r->size, false);
	sb_put(&b, "\n", 1);
	if (b.over) {
		free(b.p);
		return -1;
	}
	*out = b.p;
	*outlen = b.len;
	return 0;
}

static int
unhex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 :
	    c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decode a value in place (%XX); -1 on a bad escape or a NUL. */
static int
unescape(char *v)
{
	char *w = v;

	for (char *p = v; *p; p++) {
		if (*p == '%') {
			int h = unhex(p[1]), l = h < 0 ? -1 : unhex(p[2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return -1;
			*w++ = (char)(h << 4 | l);
			p += 2;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	return 0;
}

static int
parse_u64(const char *v, int base, uint64_t *out)
{
	char *end;
	unsigned long long n;

	if (*v == '\0' || *v == '-' || *v == '+' || *v == ' ')
		return -1;
	errno = 0;
	n = strtoull(v, &end, base);
	if (errno || *end)
		return -1;
	*out = n;
	return 0;
}

/* A value that goes into an SMTP command or a connection: no control octet. */
static bool
plain(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

int
quarantine_parse_head(const char *data, size_t len, struct qhead *h, char *why, size_t whylen)
{
	const char *end = NULL;
	size_t hl, maxr = 0;
	char *line, *next;
	unsigned seen = 0;
	enum { K_ID = 1, K_TIME = 2, K_SESSION = 4, K_VERDICT = 8, K_SIZE = 16, K_SERVER = 32,
		K_DIR = 64 };

	memset(h, 0, sizeof(*h));
	if (len < strlen(MAGIC) || memcmp(data, MAGIC, strlen(MAGIC)) != 0) {
		snprintf(why, whylen, "not a quarantine record");
		return -1;
	}
	for (size_t i = strlen(MAGIC) - 1; i + 1 < len && i + 1 < QUARANTINE_HEAD_MAX; i++) {
		if (data[i] == '\n' && data[i + 1] == '\n') {
			end = data + i + 2;
			break;
		}
	}
	if (end == NULL) {
		snprintf(why, whylen, "the head does not end (or is over %d octets)",
		    QUARANTINE_HEAD_MAX);
		return -1;
	}
	hl = (size_t)(end - data);
	if (memchr(data, '\0', hl)) {
		snprintf(why, whylen, "a NUL in the head");
		return -1;
	}
	h->text = xstrndup(data, hl);
	h->head_len = hl;
	for (size_t i = 0; i < hl; i++)
		if (h->text[i] == '\n')
			maxr++;
	h->rcpts = xcalloc(maxr + 1, sizeof(*h->rcpts));
	h->rec.action = h->rec.client = h->rec.server = h->rec.server_name = "";
	h->rec.client_tls = "none";
	h->rec.helo = h->rec.mail_from = h->rec.reason = h->rec.virus = "";
	h->rec.spam_score = h->rec.reply = "";
	for (line = h->text + strlen(MAGIC); *line && *line != '\n'; line = next) {
		char *eq, *nl = strchr(line, '\n');
		uint64_t n;

		*nl = '\0';
		next = nl + 1;
		eq = strchr(line, '=');
		if (eq == NULL || eq == line || unescape(eq + 1) < 0 ||
		    strlen(eq + 1) > QUARANTINE_VALUE_MAX) {
			snprintf(why, whylen, "bad head line \"%.60s\"", line);
			goto fail;
		}
		*eq = '\0';
		const char *k = line, *v = eq + 1;
		if (!strcmp(k, "id")) {
			if (!quarantine_valid_id(v))
				goto badval;
			snprintf(h->rec.id, sizeof(h->rec.id), "%s", v);
			seen |= K_ID;
		} else if (!strcmp(k, "time")) {
			if (parse_u64(v, 10, &n) < 0 || n > INT64_MAX)
				goto badval;
			h->rec.time = (int64_t)n;
			seen |= K_TIME;
		} else if (!strcmp(k, "session")) {
			if (parse_u64(v, 16, &h->rec.session) < 0)
				goto badval;
			seen |= K_SESSION;
		} else if (!strcmp(k, "action")) {
			h->rec.action = v;
		} else if (!strcmp(k, "direction")) {
			if (strcmp(v, "inbound") && strcmp(v, "outbound"))
				goto badval;
			h->rec.inbound = !strcmp(v, "inbound");
			seen |= K_DIR;
		} else if (!strcmp(k, "client")) {
			h->rec.client = v;
		} else if (!strcmp(k, "server")) {
			if (!plain(v))
				goto badval;
			h->rec.server = v;
			seen |= K_SERVER;
		} else if (!strcmp(k, "server-name")) {
			if (!plain(v))
				goto badval;
			h->rec.server_name = v;
		} else if (!strcmp(k, "server-tls")) {
			if (strcmp(v, "yes") && strcmp(v, "no"))
				goto badval;
			h->rec.server_tls = !strcmp(v, "yes");
		} else if (!strcmp(k, "client-tls")) {
			h->rec.client_tls = v;
		} else if (!strcmp(k, "helo")) {
			h->rec.helo = v;
		} else if (!strcmp(k, "mail-from")) {
			/* the release sends it in MAIL FROM: one line, no brackets */
			if (!plain(v) || strpbrk(v, "<>"))
				goto badval;
			h->rec.mail_from = v;
		} else if (!strcmp(k, "rcpt")) {
			if (h->rec.nrcpts >= QUARANTINE_RCPTS_MAX || !plain(v) || strpbrk(v, "<>") ||
			    *v == '\0')
				goto badval;
			h->rcpts[h->rec.nrcpts++] = v;
		} else if (!strcmp(k, "verdict")) {
			size_t i;
			for (i = 0; i < ARRAY_SIZE(verdict_names); i++)
				if (!strcmp(v, verdict_names[i]))
					break;
			if (i == ARRAY_SIZE(verdict_names))
				goto badval;
			h->rec.verdict = (enum quarantine_verdict)i;
			seen |= K_VERDICT;
		} else if (!strcmp(k, "reason")) {
			h->rec.reason = v;
		} else if (!strcmp(k, "virus")) {
			h->rec.virus = v;
		} else if (!strcmp(k, "spam-score")) {
			h->rec.spam_score = v;
		} else if (!strcmp(k, "reply")) {
			h->rec.reply = v;
		} else if (!strcmp(k, "size")) {
			if (parse_u64(v, 10, &h->rec.size) < 0)
				goto badval;
			seen |= K_SIZE;
		}
		/* unknown keys: a later format's additions, skipped */
		continue;
badval:
		snprintf(why, whylen, "bad value of %s: \"%.60s\"", k, v);
		goto fail;
	}
	if (seen != (K_ID | K_TIME | K_SESSION | K_VERDICT | K_SIZE | K_SERVER | K_DIR) ||
	    h->rec.nrcpts == 0) {
		snprintf(why, whylen, "the head lacks %s",
		    !(seen & K_ID) ? "id" : !(seen & K_TIME) ? "time" : !(seen & K_SESSION) ?
		    "session" : !(seen & K_VERDICT) ? "verdict" : !(seen & K_SIZE) ? "size" :
		    !(seen & K_SERVER) ? "server" : !(seen & K_DIR) ? "direction" : "recipients");
		goto fail;
	}
	h->rec.rcpts = h->rcpts;
	return 0;
fail:
	quarantine_head_free(h);
	return -1;
}

void
quarantine_head_free(struct qhead *h)
{
	free(h->text);
	free(h->rcpts);
	memset(h, 0, sizeof(*h));
}

/* ------------------------------------------------------------ the writer */

struct qwrite {
	char dir[CONF_PATH_MAX];
	char id[QUARANTINE_ID_MAX];
	char tmp[CONF_PATH_MAX + QUARANTINE_ID_MAX + 16];
	int fd;
	struct hold *h;
	uint64_t off;
	bool sync;
	qwrite_done_fn *done;
	void *arg;
	uint64_t sid;
	struct ev_timer timer;
	int err;
};

static void
write_finish(struct qwrite *w)
{
	char final[sizeof(w->tmp)];
	int err = w->err;

	if (err == 0 && w->sync && fdatasync(w->fd) < 0)
		err = errno;
	if (close(w->fd) < 0 && err == 0)
		err = errno;
	w->fd = -1;
	snprintf(final, sizeof(final), "%s/%s" SUFFIX, w->dir, w->id);
	if (err == 0 && rename(w->tmp, final) < 0)
		err = errno;
	if (err) {
		unlink(w->tmp);
	} else {
		struct stat sb;
		if (stat(final, &sb) == 0)
			stats_gauge_add(GAUGE_QUARANTINE_BYTES, (int64_t)sb.st_size);
	}
	w->done(w->arg, err, w->id);
	free(w);
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? errno : EIO;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void
write_step(struct ev_timer *t)
{
	struct qwrite *w = container_of(t, struct qwrite, timer);
	uint64_t budget = QUARANTINE_SLICE;

	while (w->err == 0 && budget > 0) {
		const char *p;
		ssize_t n = hold_read(w->h, w->off, HOLD_IO_BUF, &p);

		if (n < 0) {
			w->err = w->h->error ? w->h->error : EIO;
			break;
		}
		if (n == 0) {
			write_finish(w);
			return;
		}
		w->err = write_all(w->fd, p, (size_t)n);
		w->off += (uint64_t)n;
		budget = budget > (uint64_t)n ? budget - (uint64_t)n : 0;
	}
	if (w->err) {
		write_finish(w);
		return;
	}
	ev_timer_arm(&w->timer, 0, write_step);
}

/* The deferred report of a writer that failed at once (done() only from the loop). */
static void
write_failed(struct ev_timer *t)
{
	struct qwrite *w = container_of(t, struct qwrite, timer);

	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
		unlink(w->tmp);
	}
	w->done(w->arg, w->err, w->id);
	free(w);
}

struct qwrite *
quarantine_write(const char *dir, uint64_t max_size, struct qrec *rec, struct hold *h,
    bool sync, qwrite_done_fn *done, void *arg)
{
	struct qwrite *w = xcalloc(1, sizeof(*w));
	char *head = NULL;
	size_t headlen = 0;
	uint64_t total;

	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	snprintf(w->id, sizeof(w->id), "%s", rec->id);
	snprintf(w->tmp, sizeof(w->tmp), "%s/" TMP_PREFIX "%s", dir, rec->id);
	w->fd = -1;
	w->h = h;
	w->sync = sync;
	w->done = done;
	w->arg = arg;
	w->sid = rec->session;
	rec->size = h->size;
	if (quarantine_format_head(rec, &head, &headlen) < 0) {
		w->err = E2BIG;
		goto fail;
	}
	if (h->size > max_size) {
		/* larger than the whole quarantine: it cannot be kept */
		w->err = EFBIG;
		goto fail;
	}
	/* Room first: over the bound, the oldest go (down to 90 %, so this is rare). */
	total = stats_gauge(GAUGE_QUARANTINE_BYTES);
	if (total + headlen + h->size > max_size) {
		uint64_t target = max_size / 10 * 9;
		target = target > headlen + h->size ? target - headlen - h->size : 0;
		log_sid(LOG_LVL_INFO, rec->session, "quarantine full total=%" PRIu64
		    " max-size=%" PRIu64 " incoming=%" PRIu64 " (removing the oldest)", total,
		    max_size, (uint64_t)(headlen + h->size));
		(void)quarantine_sweep(dir, target, UINT32_MAX, time(NULL));
	}
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (w->fd < 0) {
		w->err = errno;
		goto fail;
	}
	w->err = write_all(w->fd, head, headlen);
	free(head);
	head = NULL;
	if (w->err)
		goto fail;
	ev_timer_arm(&w->timer, 0, write_step);
	return w;
fail:
	free(head);
	ev_timer_arm(&w->timer, 0, write_failed);
	return w;
}

void
quarantine_write_cancel(struct qwrite *w)
{
	if (w == NULL)
		return;
	ev_timer_cancel(&w->timer);
	if (w->fd >= 0) {
		close(w->fd);
		unlink(w->tmp);
	}
	free(w);
}

/* ------------------------------------------------------------ the sweep */

struct entry {
	char name[QUARANTINE_ID_MAX + 16];
	uint64_t size;
};

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* Remove a record and its release mark; log why. */
static void
remove_record(int dfd, const char *name, const char *why, uint64_t size)
{
	char id[QUARANTINE_ID_MAX], mark[QUARANTINE_ID_MAX + 16];
	size_t l = strlen(name);

	if (l <= strlen(SUFFIX) || l - strlen(SUFFIX) >= sizeof(id))
		return;
	memcpy(id, name, l - strlen(SUFFIX));
	id[l - strlen(SUFFIX)] = '\0';
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		return;
	snprintf(mark, sizeof(mark), "%s" RELEASED, id);
	(void)unlinkat(dfd, mark, 0);
	log_info("quarantine removed id=%s reason=%s size=%" PRIu64, id, why, size);
}

int64_t
quarantine_sweep(const char *dir, uint64_t target, unsigned max_age, time_t now)
{
	DIR *d = opendir(dir);
	struct entry *ents = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = 0;
	struct dirent *de;
	int dfd;

	if (d == NULL)
		return -1;
	dfd = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		struct stat sb;

		if (!strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX))) {
			/* a writer that died mid-record; a live one is never this old */
			if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
			    now - sb.st_mtime > TMP_STALE_S && unlinkat(dfd, de->d_name, 0) == 0)
				log_info("quarantine removed partial=%s", de->d_name);
			continue;
		}
		if (l != 28 + strlen(SUFFIX) || strcmp(de->d_name + 28, SUFFIX) != 0)
			continue;
		if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode))
			continue;
		/* the ID starts with the time it was kept */
		uint64_t t = strtoull(de->d_name, NULL, 10);
		if (max_age != UINT32_MAX && (uint64_t)now > t && (uint64_t)now - t > max_age) {
			remove_record(dfd, de->d_name, "max-age", (uint64_t)sb.st_size);
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			ents = xrealloc(ents, cap * sizeof(*ents));
		}
		snprintf(ents[n].name, sizeof(ents[n].name), "%s", de->d_name);
		ents[n].size = (uint64_t)sb.st_size;
		total += ents[n].size;
		n++;
	}
	if (n)
		qsort(ents, n, sizeof(*ents), by_name);
	for (size_t i = 0; i < n && total > target; i++) {
		remove_record(dfd, ents[i].name, "max-size", ents[i].size);
		total -= ents[i].size;
	}
	closedir(d);
	free(ents);
	stats_gauge_set(GAUGE_QUARANTINE_BYTES, total);
	return (int64_t)total;
}

/* Nothing in the directory open at fd but "." and ".." (fd stays open). */
static bool
dir_empty(int fd)
{
	int dfd = dup(fd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;
	bool empty = true;

	if (d == NULL) {
		if (dfd >= 0)
			close(dfd);
		return false;
	}
	while (empty && (de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			empty = false;
	closedir(d);
	return empty;
}

/* A path component that is "." or "..". */
static bool
dot_component(const char *p)
{
	while (*p) {
		const char *c = p + strspn(p, "/");
		size_t n = strcspn(c, "/");

		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return true;
		p = c + n;
	}
	return false;
}

int
quarantine_dir_check(const char *dir, unsigned uid, unsigned gid, char *err, size_t errlen)
{
	struct stat sb;
	int fd;
	bool mine, empty;

	if (dot_component(dir)) {
		snprintf(err, errlen, "%s: \".\" and \"..\" are not taken in the path", dir);
		return -1;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0; /* missing (made at start), or not a directory: said elsewhere */
	if (fstat(fd, &sb) < 0) {
		close(fd);
		return 0;
	}
	if (sb.st_mode & (S_ISVTX | S_IWOTH)) {
		snprintf(err, errlen, "%s: a shared directory (sticky or writable by all), not "
		    "taken", dir);
		close(fd);
		return -1;
	}
	mine = sb.st_uid == uid && sb.st_gid == gid && (sb.st_mode & 07777) == 0770;
	empty = dir_empty(fd);
	close(fd);
	if (!mine && !empty) {
		snprintf(err, errlen, "%s: not empty and not smtpgw's (uid %u, gid %u, mode %04o), "
		    "not taken (name a new or empty directory)", dir, (unsigned)sb.st_uid,
		    (unsigned)sb.st_gid, (unsigned)(sb.st_mode & 07777));
		return -1;
	}
	return 0;
}

int
quarantine_prepare(const char *dir, unsigned uid, unsigned gid, char *err, size_t errlen)
{
	char path[CONF_PATH_MAX];
	struct stat sb;
	int fd;

	if (dir[0] != '/' || strlen(dir) >= sizeof(path)) {
		snprintf(err, errlen, "%s: not an absolute path", dir);
		return -1;
	}
	/* "." and ".." would name another directory than the one checked */
	if (dot_component(dir)) {
		snprintf(err, errlen, "%s: \".\" and \"..\" are not taken in the path", dir);
		return -1;
	}
	snprintf(path, sizeof(path), "%s", dir);
	/* the parents, as root's (0755) */
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %s: %s", path, strerror(errno));
			return -1;
		}
		*p = '/';
	}
	if (mkdir(path, 0770) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", path, strerror(errno));
		return -1;
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/*
	 * A shared directory (sticky, or writable by anyone: /tmp) is never
	 * taken over, nor one that already holds files unless it is already
	 * ours (uid:gid, 0770): spool-dir = /etc would otherwise hand /etc to
	 * the workers' group.
	 */
	if (!S_ISDIR(sb.st_mode) || (sb.st_mode & (S_ISVTX | S_IWOTH))) {
		snprintf(err, errlen, "%s: a shared directory (sticky or writable by all), not "
		    "taken", path);
		close(fd);
		return -1;
	}
	if ((sb.st_uid != uid || sb.st_gid != gid || (sb.st_mode & 07777) != 0770) &&
	    !dir_empty(fd)) {
		snprintf(err, errlen, "%s: not empty and not smtpgw's (uid %u, gid %u, mode %04o), "
		    "not taken (name a new or empty directory)", path, (unsigned)sb.st_uid,
		    (unsigned)sb.st_gid, (unsigned)(sb.st_mode & 07777));
		close(fd);
		return -1;
	}
	if ((sb.st_uid != uid || sb.st_gid != gid) && fchown(fd, uid, gid) < 0) {
		snprintf(err, errlen, "%s: chown: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if ((sb.st_mode & 07777) != 0770 && fchmod(fd, 0770) < 0) {
		snprintf(err, errlen, "%s: chmod: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* ------------------------------------------------------------ admin side */

int
quarantine_open(const char *dir, const char *id, struct qhead *h, char *why, size_t whylen)
{
	char path[CONF_PATH_MAX + QUARANTINE_ID_MAX + 16];
	char *buf;
	ssize_t n;
	struct stat sb;
	int fd;

	if (!quarantine_valid_id(id)) {
		snprintf(why, whylen, "\"%.60s\" is not a quarantine ID", id);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s" SUFFIX, dir, id);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, errno == ENOENT ? "no quarantined message %s" : "%s: %s", id,
		    strerror(errno));
		return -1;
	}
	buf = xmalloc(QUARANTINE_HEAD_MAX);
	n = pread(fd, buf, QUARANTINE_HEAD_MAX, 0);
	if (n < 0 || fstat(fd, &sb) < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (quarantine_parse_head(buf, (size_t)n, h, why, whylen) < 0)
		goto fail;
	if (strcmp(h->rec.id, id) != 0 || (uint64_t)sb.st_size != h->head_len + h->rec.size) {
		snprintf(why, whylen, "record %s is damaged (its id or size does not match the file)",
		    id);
		quarantine_head_free(h);
		goto fail;
	}
	free(buf);
	return fd;
fail:
	free(buf);
	close(fd);
	return -1;
}

void
quarantine_state(const char *dir, const char *id, char *out, size_t outlen)
{
	char path[CONF_PATH_MAX + QUARANTINE_ID_MAX + 16];
	ssize_t n;
	int fd;

	out[0] = '\0';
	if (!quarantine_valid_id(id))
		return;
	snprintf(path, sizeof(path), "%s/%s" RELEASED, dir, id);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, out, outlen - 1);
	close(fd);
	if (n <= 0) {
		snprintf(out, outlen, "releasing");
		return;
	}
	out[n] = '\0';
	/* one line */
	for (char *p = out; *p; p++)
		if (*p == '\n' || (unsigned char)*p < 0x20)
			*p = ' ';
	while (n > 0 && out[n - 1] == ' ')
		out[--n] = '\0';
}

void
quarantine_audit(const char *dir, const char *fmt, ...)
{
	char path[CONF_PATH_MAX + 16], line[2048], ts[32];
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;
	int fd, n;

	snprintf(path, sizeof(path), "%s/" AUDIT, dir);
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(line, sizeof(line), "%s ", ts);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	/* bounded: past AUDIT_MAX the log becomes audit.log.1 (one generation kept) */
	struct stat sb;
	if (fstat(fd, &sb) == 0 && sb.st_size > AUDIT_MAX) {
		char old[sizeof(path) + 4];
		snprintf(old, sizeof(old), "%s.1", path);
		close(fd);
		(void)rename(path, old);
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return;
	}
	(void)!write(fd, line, (size_t)n);
	close(fd);
}
