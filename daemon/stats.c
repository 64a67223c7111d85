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
};

static struct stats_slot *table;
static unsigned nslots;
static struct stats_slot *mine;

static const char *const names[STAT_COUNT] = {
	[STAT_INSPECTED] = "inspected",
	[STAT_DENIED] = "inspect-denied",
	[STAT_STRIPPED] = "inspect-stripped",
	[STAT_ALARMS] = "alarms",
};

int
stats_init(unsigned slots)
{
	void *p;

	if (table)
		return 0;
	p = mmap(NULL, sizeof(*table) * slots, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	memset(p, 0, sizeof(*table) * slots);
	table = p;
	nslots = slots;
	return 0;
}

void
stats_use_slot(unsigned slot)
{
	mine = table && slot < nslots ? &table[slot] : NULL;
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

	for (unsigned i = 0; table && i < nslots && (unsigned)c < STAT_COUNT; i++)
		s += atomic_load_explicit(&table[i].v[c], memory_order_relaxed);
	return s;
}

const char *
stats_name(enum stat_counter c)
{
	return (unsigned)c < STAT_COUNT ? names[c] : "?";
}
