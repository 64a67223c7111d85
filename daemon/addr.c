/*
 * addr - formatting and prefix matching.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "util.h"

const char *
addr_fmt_host(const union sockaddr_any *a, char *buf, size_t len)
{
	const void *src = NULL;

	if (a->sa.sa_family == AF_INET)
		src = &a->sin.sin_addr;
	else if (a->sa.sa_family == AF_INET6)
		src = &a->sin6.sin6_addr;
	if (src == NULL || inet_ntop(a->sa.sa_family, src, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "unknown");
	return buf;
}

const char *
addr_fmt(const union sockaddr_any *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	addr_fmt_host(a, host, sizeof(host));
	if (a->sa.sa_family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", host, addr_port(a));
	else
		snprintf(buf, len, "%s:%u", host, addr_port(a));
	return buf;
}

socklen_t
addr_len(const union sockaddr_any *a)
{
	return a->sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	    : sizeof(struct sockaddr_in);
}

uint16_t
addr_port(const union sockaddr_any *a)
{
	if (a->sa.sa_family == AF_INET6)
		return ntohs(a->sin6.sin6_port);
	if (a->sa.sa_family == AF_INET)
		return ntohs(a->sin.sin_port);
	return 0;
}

int
prefix_parse(const char *s, struct prefix *p)
{
	char tmp[INET6_ADDRSTRLEN + 8];
	char *slash, *end;
	unsigned max;

	if (strlcpy_checked(tmp, s, sizeof(tmp)) < 0)
		return -1;
	memset(p, 0, sizeof(*p));
	slash = strchr(tmp, '/');
	if (slash)
		*slash++ = '\0';
	if (inet_pton(AF_INET, tmp, p->bytes) == 1) {
		p->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, tmp, p->bytes) == 1) {
		p->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	p->len = max;
	if (slash) {
		unsigned long v;

		if (*slash < '0' || *slash > '9')
			return -1;
		v = strtoul(slash, &end, 10);
		if (*end != '\0' || v > max)
			return -1;
		p->len = (unsigned)v;
	}
	/* Host bits must be zero: "192.0.2.1/24" is almost always a typo. */
	for (unsigned bit = p->len; bit < max; bit++)
		if (p->bytes[bit / 8] & (0x80 >> (bit % 8)))
			return -1;
	return 0;
}

bool
prefix_match(const struct prefix *p, int family, const void *addr)
{
	const uint8_t *a = addr;
	unsigned full = p->len / 8, rest = p->len % 8;

	if (p->family != family)
		return false;
	if (memcmp(p->bytes, a, full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));
		if ((p->bytes[full] & mask) != (a[full] & mask))
			return false;
	}
	return true;
}

bool
prefix_match_sa(const struct prefix *p, const union sockaddr_any *a)
{
	if (a->sa.sa_family == AF_INET)
		return prefix_match(p, AF_INET, &a->sin.sin_addr);
	if (a->sa.sa_family == AF_INET6) {
		/* An IPv4-mapped IPv6 address matches IPv4 prefixes. */
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6.sin6_addr))
			return prefix_match(p, AF_INET, &a->sin6.sin6_addr.s6_addr[12]);
		return prefix_match(p, AF_INET6, &a->sin6.sin6_addr);
	}
	return false;
}
