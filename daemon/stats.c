/*
 * stats - shared counters (see stats.h).
 */
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "stats.h"
#include "util.h"

struct stats_slot {
	_Atomic uint64_t v[STAT_COUNT];
	char pad[64]; /* keep writers of neighbouring slots off one cache line */
	/* the scanner text: seq is odd while the writer changes it */
	_Atomic uint64_t scan_seq;
	uint32_t scan_len;
	char scan[STATS_SCAN_TEXT];
};

struct stats_shared {
	_Atomic uint64_t gauge[GAUGE_COUNT];
	char pad[64];
	struct stats_slot slot[];
};

static struct stats_shared *shared;
static unsigned nslots;
static struct stats_slot *mine;

static const char *const names[STAT_COUNT] = {
	[STAT_INSPECTED] = "inspected",
	[STAT_DENIED] = "inspect-denied",
	[STAT_STRIPPED] = "inspect-stripped",
	[STAT_ALARMS] = "alarms",
	[STAT_VIRUSES] = "viruses",
	[STAT_SPAM_REJECTED] = "spam-rejected",
	[STAT_SPAM_MARKED] = "spam-marked",
	[STAT_SCAN_TEMPFAIL] = "scan-tempfail",
	[STAT_UNSCANNED] = "unscanned",
	[STAT_QUARANTINED] = "quarantined",
	[STAT_QUARANTINE_FAILED] = "quarantine-failed",
};

int
stats_init(unsigned slots)
{
	size_t size = sizeof(struct stats_shared) + sizeof(struct stats_slot) * slots;
	void *p;

	if (shared)
		return 0;
	/* pages nobody writes (idle slots' texts) are never allocated */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	shared = p;
	nslots = slots;
	return 0;
}

void
stats_use_slot(unsigned slot)
{
	mine = shared && slot < nslots ? &shared->slot[slot] : NULL;
}

void
stats_add(enum stat_counter c, uint64_t n)
{
	if (mine && (unsigned)c < STAT_COUNT)
		atomic_fetch_add_explicit(&mine->v[c], n, memory_order_relaxed);
}

uint64_t
stats_sum(enum stat_counter c)
{
	uint64_t s = 0;

	for (unsigned i = 0; shared && i < nslots && (unsigned)c < STAT_COUNT; i++)
		s += atomic_load_explicit(&shared->slot[i].v[c], memory_order_relaxed);
	return s;
}

const char *
stats_name(enum stat_counter c)
{
	return (unsigned)c < STAT_COUNT ? names[c] : "?";
}

void
stats_gauge_add(enum stat_gauge g, int64_t delta)
{
	if (shared && (unsigned)g < GAUGE_COUNT)
		atomic_fetch_add_explicit(&shared->gauge[g], (uint64_t)delta, memory_order_relaxed);
}

void
stats_gauge_set(enum stat_gauge g, uint64_t v)
{
	if (shared && (unsigned)g < GAUGE_COUNT)
		atomic_store_explicit(&shared->gauge[g], v, memory_order_relaxed);
}

uint64_t
stats_gauge(enum stat_gauge g)
{
	if (shared && (unsigned)g < GAUGE_COUNT)
		return atomic_load_explicit(&shared->gauge[g], memory_order_relaxed);
	return 0;
}

void
stats_scan_publish(const char *text, size_t len)
{
	if (mine == NULL)
		return;
	if (len > STATS_SCAN_TEXT - 1)
		len = STATS_SCAN_TEXT - 1;
	atomic_fetch_add_explicit(&mine->scan_seq, 1, memory_order_acq_rel); /* odd: writing */
	atomic_thread_fence(memory_order_release);
	memcpy(mine->scan, text, len);
	mine->scan_len = (uint32_t)len;
	atomic_fetch_add_explicit(&mine->scan_seq, 1, memory_order_release); /* even: done */
}

size_t
stats_scan_read(unsigned slot, char *out, size_t outsz)
{
	struct stats_slot *s;

	if (outsz == 0)
		return 0;
	out[0] = '\0';
	if (shared == NULL || slot >= nslots)
		return 0;
	s = &shared->slot[slot];
	/* A writer publishes every few seconds: a few tries always find a quiet moment. */
	for (int tries = 0; tries < 100; tries++) {
		uint64_t a = atomic_load_explicit(&s->scan_seq, memory_order_acquire), b;
		size_t len;

		if (a & 1)
			continue;
		len = s->scan_len;
		if (len > outsz - 1)
			len = outsz - 1;
		if (len > STATS_SCAN_TEXT - 1)
			len = STATS_SCAN_TEXT - 1;
		memcpy(out, s->scan, len);
		atomic_thread_fence(memory_order_acquire);
		b = atomic_load_explicit(&s->scan_seq, memory_order_relaxed);
		if (a == b) {
			out[len] = '\0';
			return len;
		}
	}
	out[0] = '\0';
	return 0;
}

void
stats_scan_clear(unsigned slot)
{
	struct stats_slot *s;

	if (shared == NULL || slot >= nslots)
		return;
	s = &shared->slot[slot];
	atomic_fetch_add_explicit(&s->scan_seq, 1, memory_order_acq_rel);
	s->scan_len = 0;
	atomic_fetch_add_explicit(&s->scan_seq, 1, memory_order_release);
}
