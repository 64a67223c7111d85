/*
 * listen - IP_TRANSPARENT / IPV6_TRANSPARENT listening sockets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "listen.h"

#define LISTEN_BACKLOG 1024

int
listen_transparent(int family, uint16_t port, char *err, size_t errlen)
{
	union sockaddr_any sa;
	int fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Accepted sockets inherit it: no Nagle stall on SMTP replies. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (family == AF_INET) {
		if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0)
			goto sockopt_fail;
		sa.sin.sin_family = AF_INET;
		sa.sin.sin_port = htons(port);
		sa.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else {
		if (setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) < 0 ||
		    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
			goto sockopt_fail;
		sa.sin6.sin6_family = AF_INET6;
		sa.sin6.sin6_port = htons(port);
		sa.sin6.sin6_addr = in6addr_loopback;
	}
	if (bind(fd, &sa.sa, addr_len(&sa)) < 0) {
		snprintf(err, errlen, "bind %s port %u: %s", family == AF_INET ? "127.0.0.1" : "::1",
		    port, strerror(errno));
		close(fd);
		return -1;
	}
	if (listen(fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;

sockopt_fail:
	snprintf(err, errlen, "transparent socket option: %s (needs CAP_NET_ADMIN)",
	    strerror(errno));
	close(fd);
	return -1;
}
