/*
 * addr - socket addresses and prefixes (IPv4 and IPv6).
 */
#ifndef SMTPGW_ADDR_H
#define SMTPGW_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

union sockaddr_any {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr_storage ss;
};

/* "192.0.2.10:25" or "[2001:db8::1]:25"; returns buf. */
#define ADDR_STRLEN 64
const char *addr_fmt(const union sockaddr_any *a, char *buf, size_t len);
/* Address only, no port. */
const char *addr_fmt_host(const union sockaddr_any *a, char *buf, size_t len);
socklen_t addr_len(const union sockaddr_any *a);
uint16_t addr_port(const union sockaddr_any *a);

/*
 * A prefix: family AF_INET or AF_INET6, the address in network order
 * (IPv4 in the first 4 bytes) and the prefix length.
 */
struct prefix {
	int family;
	uint8_t bytes[16];
	unsigned len;
};

/* Parse "192.0.2.0/24", "2001:db8::/32" or a bare address (full length). */
int prefix_parse(const char *s, struct prefix *p);
bool prefix_match(const struct prefix *p, int family, const void *addr);
bool prefix_match_sa(const struct prefix *p, const union sockaddr_any *a);

#endif
