/*
 * scanstat - merging the workers' scanner status (see scanstat.h).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "scanstat.h"
#include "util.h"

#define NAME_MAX_ 40
#define VALUE_MAX 200

struct item {
	char name[NAME_MAX_];
	bool numeric;
	uint64_t sum;
	char text[VALUE_MAX];
};

struct server {
	char address[VALUE_MAX];
	unsigned up, down, unchecked, other;
	int64_t since, err_time;
	char last_error[VALUE_MAX];
	struct item items[SCANSTAT_ITEMS];
	unsigned nitems;
};

struct engine {
	char name[NAME_MAX_];
	unsigned workers;
	uint64_t queued, unavailable, too_large;
	struct server srv[SCANSTAT_SERVERS];
	unsigned nsrv;
};

/* One worker's view while its text is read: its server numbers to merged servers. */
struct local {
	int map[SCANSTAT_ENGINES][SCANSTAT_SERVERS + 1];
	char addr[SCANSTAT_ENGINES][SCANSTAT_SERVERS + 1][VALUE_MAX];
	bool seen[SCANSTAT_ENGINES];
};

static bool
is_number(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Engine and item names: what scanner.c prints, [a-z0-9-], never empty. */
static bool
is_name(const char *s, size_t len)
{
	if (len == 0 || len >= NAME_MAX_)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static struct engine *
engine_of(struct engine *e, unsigned *ne, const char *name, size_t len, unsigned *idx)
{
	for (unsigned i = 0; i < *ne; i++) {
		if (strlen(e[i].name) == len && !strncmp(e[i].name, name, len)) {
			*idx = i;
			return &e[i];
		}
	}
	if (*ne == SCANSTAT_ENGINES || len >= NAME_MAX_)
		return NULL;
	memset(&e[*ne], 0, sizeof(e[*ne]));
	memcpy(e[*ne].name, name, len);
	*idx = *ne;
	return &e[(*ne)++];
}

static struct server *
server_of(struct engine *e, const char *address)
{
	for (unsigned i = 0; i < e->nsrv; i++)
		if (!strcmp(e->srv[i].address, address))
			return &e->srv[i];
	if (e->nsrv == SCANSTAT_SERVERS)
		return NULL;
	struct server *s = &e->srv[e->nsrv++];
	memset(s, 0, sizeof(*s));
	snprintf(s->address, sizeof(s->address), "%s", address);
	return s;
}

static void
server_item(struct server *s, const char *item, const char *v)
{
	struct item *it = NULL;

	if (!strcmp(item, "health")) {
		if (!strcmp(v, "up"))
			s->up++;
		else if (!strcmp(v, "down"))
			s->down++;
		else if (!strcmp(v, "unchecked"))
			s->unchecked++;
		else
			s->other++;
		return;
	}
	if (!strcmp(item, "since")) {
		int64_t t = strtoll(v, NULL, 10);
		if (t > s->since)
			s->since = t;
		return;
	}
	if (!strcmp(item, "last-error") || !strcmp(item, "last-error-time"))
		return; /* taken as a pair (merge_text) */
	for (unsigned i = 0; i < s->nitems; i++)
		if (!strcmp(s->items[i].name, item))
			it = &s->items[i];
	if (it == NULL) {
		if (s->nitems == SCANSTAT_ITEMS || strlen(item) >= NAME_MAX_)
			return;
		it = &s->items[s->nitems++];
		memset(it, 0, sizeof(*it));
		snprintf(it->name, sizeof(it->name), "%s", item);
		it->numeric = is_number(v);
		if (!it->numeric)
			snprintf(it->text, sizeof(it->text), "%s", v);
	}
	if (it->numeric && is_number(v))
		it->sum += strtoull(v, NULL, 10);
}

/* One worker's text.  Its "N.address" line comes before N's other lines. */
static void
merge_text(struct engine *e, unsigned *ne, const char *text)
{
	struct local *l = xcalloc(1, sizeof(*l));
	char err[SCANSTAT_ENGINES][SCANSTAT_SERVERS + 1][VALUE_MAX];
	int64_t errt[SCANSTAT_ENGINES][SCANSTAT_SERVERS + 1];
	const char *p = text;

	memset(err, 0, sizeof(err));
	memset(errt, 0, sizeof(errt));
	for (unsigned i = 0; i < SCANSTAT_ENGINES; i++)
		for (unsigned j = 0; j <= SCANSTAT_SERVERS; j++)
			l->map[i][j] = -1;
	while (p && *p) {
		const char *nl = strchr(p, '\n'), *eq, *dot;
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[NAME_MAX_ * 2 + VALUE_MAX + 8], key[NAME_MAX_ * 2], *v;
		struct engine *en;
		unsigned ei;

		if (len >= sizeof(line))
			goto next;
		memcpy(line, p, len);
		line[len] = '\0';
		eq = strchr(line, '=');
		dot = strchr(line, '.');
		if (eq == NULL || dot == NULL || dot > eq || (size_t)(eq - line) >= sizeof(key))
			goto next;
		snprintf(key, sizeof(key), "%.*s", (int)(eq - line), line);
		v = line + (eq - line) + 1;
		if (!is_name(line, (size_t)(dot - line)))
			goto next;
		if (strlen(v) >= VALUE_MAX)
			v[VALUE_MAX - 1] = '\0';
		en = engine_of(e, ne, line, (size_t)(dot - line), &ei);
		if (en == NULL)
			goto next;
		if (!l->seen[ei]) {
			l->seen[ei] = true;
			en->workers++;
		}
		char *rest = key + (dot - line) + 1;
		char *dot2 = strchr(rest, '.');
		if (dot2 == NULL) {
			if (!is_name(rest, strlen(rest)))
				goto next;
			uint64_t n = strtoull(v, NULL, 10);
			if (!strcmp(rest, "queued"))
				en->queued += n;
			else if (!strcmp(rest, "unavailable"))
				en->unavailable += n;
			else if (!strcmp(rest, "too-large"))
				en->too_large += n;
			goto next;
		}
		*dot2 = '\0';
		if (!is_number(rest))
			goto next;
		unsigned idx = (unsigned)strtoul(rest, NULL, 10);
		const char *item = dot2 + 1;
		if (idx == 0 || idx > SCANSTAT_SERVERS || !is_name(item, strlen(item)))
			goto next;
		if (!strcmp(item, "address")) {
			struct server *s = server_of(en, v);
			l->map[ei][idx] = s ? (int)(s - en->srv) : -1;
			goto next;
		}
		if (l->map[ei][idx] < 0)
			goto next;
		struct server *s = &en->srv[l->map[ei][idx]];
		if (!strcmp(item, "last-error"))
			snprintf(err[ei][idx], VALUE_MAX, "%s", v);
		else if (!strcmp(item, "last-error-time"))
			errt[ei][idx] = strtoll(v, NULL, 10);
		else
			server_item(s, item, v);
next:
		p = nl ? nl + 1 : NULL;
	}
	/* the latest error of any worker */
	for (unsigned i = 0; i < *ne && i < SCANSTAT_ENGINES; i++)
		for (unsigned j = 1; j <= SCANSTAT_SERVERS; j++) {
			struct server *s;
			if (l->map[i][j] < 0)
				continue;
			s = &e[i].srv[l->map[i][j]];
			if (err[i][j][0] && errt[i][j] >= s->err_time) {
				s->err_time = errt[i][j];
				snprintf(s->last_error, sizeof(s->last_error), "%s", err[i][j]);
			}
		}
	free(l);
}

void
scanstat_merge(const char *const *texts, size_t n, FILE *f)
{
	struct engine *e = xcalloc(SCANSTAT_ENGINES, sizeof(*e));
	unsigned ne = 0;

	for (size_t i = 0; i < n; i++)
		if (texts[i] && texts[i][0])
			merge_text(e, &ne, texts[i]);
	for (unsigned i = 0; i < ne; i++) {
		const struct engine *en = &e[i];

		fprintf(f, "%s.servers=%u\n%s.workers=%u\n", en->name, en->nsrv, en->name,
		    en->workers);
		fprintf(f, "%s.queued=%" PRIu64 "\n%s.unavailable=%" PRIu64 "\n%s.too-large=%" PRIu64
		    "\n", en->name, en->queued, en->name, en->unavailable, en->name, en->too_large);
		for (unsigned j = 0; j < en->nsrv; j++) {
			const struct server *s = &en->srv[j];
			unsigned total = s->up + s->down + s->unchecked + s->other;
			const char *health = total == 0 ? "unchecked" : s->up == total ? "up" :
			    s->down == total ? "down" : s->unchecked == total ? "unchecked" : "mixed";

			fprintf(f, "%s.%u.address=%s\n", en->name, j + 1, s->address);
			fprintf(f, "%s.%u.health=%s\n", en->name, j + 1, health);
			fprintf(f, "%s.%u.since=%" PRId64 "\n", en->name, j + 1, s->since);
			for (unsigned k = 0; k < s->nitems; k++) {
				const struct item *it = &s->items[k];
				if (it->numeric)
					fprintf(f, "%s.%u.%s=%" PRIu64 "\n", en->name, j + 1, it->name,
					    it->sum);
				else
					fprintf(f, "%s.%u.%s=%s\n", en->name, j + 1, it->name, it->text);
			}
			fprintf(f, "%s.%u.last-error=%s\n", en->name, j + 1, s->last_error);
			fprintf(f, "%s.%u.last-error-time=%" PRId64 "\n", en->name, j + 1, s->err_time);
		}
	}
	free(e);
}
