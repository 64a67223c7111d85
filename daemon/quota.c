/*
 * quota - shared session counters (design in quota.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "quota.h"
#include "log.h"
#include "util.h"

struct quota_slot {
	uint32_t total;
	uint16_t bucket[QUOTA_BUCKETS];
};

static struct quota_slot *slots;
static unsigned n_slots;
static struct quota_slot *mine;
static uint64_t hash_key[2];

int
quota_init(unsigned count)
{
	size_t len = (size_t)count * sizeof(struct quota_slot);

	slots = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (slots == MAP_FAILED) {
		slots = NULL;
		return -1;
	}
	n_slots = count;
	if (getrandom(hash_key, sizeof(hash_key), 0) != (ssize_t)sizeof(hash_key))
		fatal("getrandom: %s", strerror(errno));
	return 0;
}

void
quota_clear_slot(unsigned slot)
{
	if (slots && slot < n_slots)
		memset(&slots[slot], 0, sizeof(slots[slot]));
}

void
quota_use_slot(unsigned slot)
{
	mine = slots && slot < n_slots ? &slots[slot] : NULL;
}

static uint64_t
mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

unsigned
quota_bucket(const union sockaddr_any *a)
{
	const uint8_t *p;
	size_t n;
	uint64_t h = hash_key[0];

	if (a->sa.sa_family == AF_INET6) {
		p = a->sin6.sin6_addr.s6_addr;
		n = 16;
	} else {
		p = (const uint8_t *)&a->sin.sin_addr;
		n = 4;
	}
	for (size_t i = 0; i < n; i++)
		h = mix(h ^ ((uint64_t)p[i] << ((i % 8) * 8)) ^ hash_key[1]);
	return (unsigned)(h % QUOTA_BUCKETS);
}

const char *
quota_admit(unsigned bucket, unsigned max_total, unsigned max_per_client)
{
	uint64_t total = 0, client = 0;

	if (slots == NULL)
		return NULL;
	for (unsigned i = 0; i < n_slots; i++) {
		total += __atomic_load_n(&slots[i].total, __ATOMIC_RELAXED);
		client += __atomic_load_n(&slots[i].bucket[bucket], __ATOMIC_RELAXED);
	}
	if (total >= max_total)
		return "max-sessions";
	if (client >= max_per_client)
		return "max-sessions-per-client";
	return NULL;
}

void
quota_take(unsigned bucket)
{
	if (mine == NULL)
		return;
	__atomic_store_n(&mine->total, mine->total + 1, __ATOMIC_RELAXED);
	if (mine->bucket[bucket] < UINT16_MAX)
		__atomic_store_n(&mine->bucket[bucket], (uint16_t)(mine->bucket[bucket] + 1),
		    __ATOMIC_RELAXED);
}

void
quota_release(unsigned bucket)
{
	if (mine == NULL)
		return;
	if (mine->total > 0)
		__atomic_store_n(&mine->total, mine->total - 1, __ATOMIC_RELAXED);
	if (mine->bucket[bucket] > 0)
		__atomic_store_n(&mine->bucket[bucket], (uint16_t)(mine->bucket[bucket] - 1),
		    __ATOMIC_RELAXED);
}

unsigned
quota_total(void)
{
	unsigned total = 0;

	for (unsigned i = 0; slots && i < n_slots; i++)
		total += __atomic_load_n(&slots[i].total, __ATOMIC_RELAXED);
	return total;
}
