/*
 * blocked_req - block requests: wire format, validation, exceptions, rate
 * limit, nft command (see blocked_req.h).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "blocked_req.h"

#define SID_MAX 0xffffffffffffull

void
blocked_settings_from_config(struct blocked_settings *s, const struct config *c)
{
	memset(s, 0, sizeof(*s));
	s->timeout = c->blocked_timeout;
	s->rate = c->blocked_rate;
	s->n_exceptions = c->n_blocked_exceptions;
	if (s->n_exceptions > CONF_MAX_BLOCK_EXCEPTIONS)
		s->n_exceptions = CONF_MAX_BLOCK_EXCEPTIONS;
	memcpy(s->exceptions, c->blocked_exceptions,
	    (size_t)s->n_exceptions * sizeof(s->exceptions[0]));
}

bool
blocked_reason_valid(const char *s, size_t len)
{
	if (len == 0 || len > BLOCKED_REASON_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';

		if (!ok)
			return false;
	}
	return true;
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

const char *
blocked_addr_refused(int family, const uint8_t *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (family == AF_INET) {
		if (a[0] == 0)
			return "unspecified";
		if (a[0] == 127)
			return "loopback";
		if ((a[0] & 0xf0) == 0xe0)
			return "multicast";
		if (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255)
			return "broadcast";
		return NULL;
	}
	if (family == AF_INET6) {
		if (all_zero(a, 16))
			return "unspecified";
		if (all_zero(a, 15) && a[15] == 1)
			return "loopback";
		if (a[0] == 0xff)
			return "multicast";
		if (memcmp(a, mapped, sizeof(mapped)) == 0)
			return "ipv4-mapped";
		return NULL;
	}
	return "family";
}

int
blocked_req_make(struct blocked_req *r, const union sockaddr_any *a, unsigned seconds,
    const char *reason, uint64_t sid, const char **why)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	size_t rlen;

	memset(r, 0, sizeof(*r));
	if (a == NULL) {
		*why = "address";
		return -1;
	}
	if (a->sa.sa_family == AF_INET) {
		r->family = AF_INET;
		memcpy(r->addr, &a->sin.sin_addr, 4);
	} else if (a->sa.sa_family == AF_INET6) {
		const uint8_t *b = a->sin6.sin6_addr.s6_addr;

		if (memcmp(b, mapped, sizeof(mapped)) == 0) {
			r->family = AF_INET;
			memcpy(r->addr, b + 12, 4);
		} else {
			r->family = AF_INET6;
			memcpy(r->addr, b, 16);
		}
	} else {
		*why = "family";
		return -1;
	}
	if (blocked_addr_refused(r->family, r->addr) != NULL) {
		*why = "address";
		return -1;
	}
	if (seconds > BLOCKED_TIMEOUT_MAX) {
		*why = "seconds";
		return -1;
	}
	rlen = reason ? strnlen(reason, BLOCKED_REASON_MAX + 1) : 0;
	if (!blocked_reason_valid(reason, rlen)) {
		*why = "reason";
		return -1;
	}
	if (sid > SID_MAX) {
		*why = "sid";
		return -1;
	}
	r->seconds = seconds;
	r->sid = sid;
	memcpy(r->reason, reason, rlen);
	r->reason[rlen] = '\0';
	return 0;
}

void
blocked_req_encode(const struct blocked_req *r, uint8_t out[BLOCKED_REQ_WIRE])
{
	uint32_t secs = r->seconds;
	uint64_t sid = r->sid;
	size_t rlen = strnlen(r->reason, BLOCKED_REASON_MAX);

	memset(out, 0, BLOCKED_REQ_WIRE);
	out[0] = BLOCKED_REQ_VERSION;
	out[1] = r->family == AF_INET ? 4 : 6;
	out[2] = (uint8_t)rlen;
	memcpy(out + 4, &secs, 4);
	memcpy(out + 8, &sid, 8);
	memcpy(out + 16, r->addr, r->family == AF_INET ? 4 : 16);
	memcpy(out + 32, r->reason, rlen);
}

/* decode(), and *r is all zero when it fails: never half a request. */
static int
decode(const uint8_t *buf, size_t len, struct blocked_req *r, const char **why)
{
	uint32_t secs;
	uint64_t sid;
	size_t rlen;

	if (len != BLOCKED_REQ_WIRE) {
		*why = "length";
		return -1;
	}
	if (buf[0] != BLOCKED_REQ_VERSION) {
		*why = "version";
		return -1;
	}
	if (buf[1] == 4) {
		r->family = AF_INET;
		if (!all_zero(buf + 20, 12)) {
			*why = "address";
			return -1;
		}
		memcpy(r->addr, buf + 16, 4);
	} else if (buf[1] == 6) {
		r->family = AF_INET6;
		memcpy(r->addr, buf + 16, 16);
	} else {
		*why = "family";
		return -1;
	}
	if (buf[3] != 0) {
		*why = "padding";
		return -1;
	}
	if (blocked_addr_refused(r->family, r->addr) != NULL) {
		*why = "address";
		return -1;
	}
	memcpy(&secs, buf + 4, 4);
	if (secs > BLOCKED_TIMEOUT_MAX) {
		*why = "seconds";
		return -1;
	}
	memcpy(&sid, buf + 8, 8);
	if (sid > SID_MAX) {
		*why = "sid";
		return -1;
	}
	rlen = buf[2];
	if (!blocked_reason_valid((const char *)buf + 32, rlen) ||
	    !all_zero(buf + 32 + rlen, BLOCKED_REQ_WIRE - 32 - rlen)) {
		*why = "reason";
		return -1;
	}
	r->seconds = secs;
	r->sid = sid;
	memcpy(r->reason, buf + 32, rlen);
	r->reason[rlen] = '\0';
	return 0;
}

int
blocked_req_decode(const uint8_t *buf, size_t len, struct blocked_req *r, const char **why)
{
	memset(r, 0, sizeof(*r));
	if (decode(buf, len, r, why) == 0)
		return 0;
	memset(r, 0, sizeof(*r));
	return -1;
}

bool
blocked_excepted(const struct blocked_settings *s, int family, const uint8_t *addr)
{
	for (int i = 0; i < s->n_exceptions; i++)
		if (prefix_match(&s->exceptions[i], family, addr))
			return true;
	return false;
}

unsigned
blocked_req_seconds(const struct blocked_req *r, const struct blocked_settings *s)
{
	unsigned secs = r->seconds ? r->seconds : s->timeout;

	if (secs == 0)
		secs = 1;
	return secs > BLOCKED_TIMEOUT_MAX ? BLOCKED_TIMEOUT_MAX : secs;
}

void
blocked_rate_init(struct blocked_rate *b, unsigned rate, uint64_t now_ms)
{
	b->rate = rate ? rate : 1;
	b->milli = (uint64_t)b->rate * 1000;
	b->last_ms = now_ms;
}

bool
blocked_rate_take(struct blocked_rate *b, uint64_t now_ms)
{
	uint64_t cap = (uint64_t)b->rate * 1000;

	/* rate tokens per second = rate thousandths of a token per millisecond */
	if (now_ms > b->last_ms) {
		uint64_t add = (now_ms - b->last_ms) * b->rate;

		b->milli = add >= cap - b->milli ? cap : b->milli + add;
	}
	b->last_ms = now_ms; /* a clock that went back adds nothing */
	if (b->milli < 1000)
		return false;
	b->milli -= 1000;
	return true;
}

bool
blocked_recent_seen(const struct blocked_recent *c, const struct blocked_req *r,
    uint64_t now_ms)
{
	for (unsigned i = 0; i < BLOCKED_RECENT; i++) {
		if (c->slot[i].family != r->family || memcmp(c->slot[i].addr, r->addr, 16) != 0)
			continue;
		if (now_ms >= c->slot[i].at_ms && now_ms - c->slot[i].at_ms < BLOCKED_RECENT_MS)
			return true;
	}
	return false;
}

void
blocked_recent_note(struct blocked_recent *c, const struct blocked_req *r, uint64_t now_ms)
{
	unsigned i = c->next % BLOCKED_RECENT;

	c->slot[i].family = r->family;
	memcpy(c->slot[i].addr, r->addr, 16);
	c->slot[i].at_ms = now_ms;
	c->next = (i + 1) % BLOCKED_RECENT;
}

int
blocked_req_nft_cmd(const struct blocked_req *r, unsigned seconds, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	size_t rlen = strnlen(r->reason, sizeof(r->reason));
	int n;

	/* Checked again here: this is the line that reaches nft's parser. */
	if ((r->family != AF_INET && r->family != AF_INET6) ||
	    blocked_addr_refused(r->family, r->addr) != NULL ||
	    !blocked_reason_valid(r->reason, rlen) || seconds == 0 ||
	    seconds > BLOCKED_TIMEOUT_MAX || r->sid > SID_MAX ||
	    inet_ntop(r->family, r->addr, a, sizeof(a)) == NULL)
		return -1;
	const char *set = r->family == AF_INET ? BLOCKED_NFT_SET4 : BLOCKED_NFT_SET6;

	/*
	 * add (a no-op when it is there), delete, add: one transaction that
	 * sets the element whether or not it existed - a new block renews an
	 * old one to exactly its own time and comment, on every kernel (some
	 * keep an existing element's timeout on a plain add).
	 */
	n = snprintf(buf, len,
	    "add element inet " BLOCKED_NFT_TABLE " %s { %s timeout %us }\n"
	    "delete element inet " BLOCKED_NFT_TABLE " %s { %s }\n"
	    "add element inet " BLOCKED_NFT_TABLE " %s { %s timeout %us "
	    "comment \"smtpgw reason=%s sid=%012llx\" }\n",
	    set, a, seconds, set, a, set, a, seconds, r->reason, (unsigned long long)r->sid);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}
