/*
 * fuzz_blocked - blocked_req_decode on arbitrary bytes: what the blocker
 * accepts from a worker it cannot trust.
 *
 * Besides memory errors, checks what an accepted request promises: a
 * known family, an address that may be blocked, bounded seconds, a
 * 48-bit session id, a reason of [A-Za-z0-9._-] only; that it is the
 * canonical encoding (encoding it again gives the same bytes, so nothing
 * rides along unchecked); and that the nft commands made from it have
 * exactly the expected shape - three lines about one element, one quoted
 * comment, no character a worker chose outside the reason token.  A refused input
 * leaves nothing half-filled.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "blocked_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static size_t
count(const char *s, char ch)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == ch;
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct blocked_req zero;
	struct blocked_req r;
	struct blocked_settings s = { .timeout = 1200, .rate = 20 };
	uint8_t again[BLOCKED_REQ_WIRE];
	char cmd[BLOCKED_NFT_CMD_MAX], want[BLOCKED_NFT_CMD_MAX], a[INET6_ADDRSTRLEN];
	const char *why = NULL;
	unsigned secs;

	if (blocked_req_decode(data, size, &r, &why) != 0) {
		CHECK(why != NULL);
		CHECK(memcmp(&r, &zero, sizeof(r)) == 0);
		return 0;
	}
	CHECK(size == BLOCKED_REQ_WIRE);
	CHECK(r.family == AF_INET || r.family == AF_INET6);
	CHECK(blocked_addr_refused(r.family, r.addr) == NULL);
	CHECK(r.seconds <= BLOCKED_TIMEOUT_MAX);
	CHECK(r.sid <= 0xffffffffffffull);
	CHECK(blocked_reason_valid(r.reason, strlen(r.reason)));

	blocked_req_encode(&r, again);
	CHECK(memcmp(again, data, BLOCKED_REQ_WIRE) == 0);

	secs = blocked_req_seconds(&r, &s);
	CHECK(secs >= 1 && secs <= BLOCKED_TIMEOUT_MAX);
	CHECK(blocked_req_nft_cmd(&r, secs, cmd, sizeof(cmd)) > 0);
	CHECK(inet_ntop(r.family, r.addr, a, sizeof(a)) != NULL);
	const char *set = r.family == AF_INET ? "blocked4" : "blocked6";
	snprintf(want, sizeof(want),
	    "add element inet smtpgw_blocked %s { %s timeout %us }\n"
	    "delete element inet smtpgw_blocked %s { %s }\n"
	    "add element inet smtpgw_blocked %s { %s timeout %us comment \"smtpgw reason=%s "
	    "sid=%012llx\" }\n", set, a, secs, set, a, set, a, secs, r.reason,
	    (unsigned long long)r.sid);
	CHECK(strcmp(cmd, want) == 0);
	CHECK(count(cmd, '"') == 2 && count(cmd, '{') == 3 && count(cmd, '}') == 3);
	CHECK(count(cmd, '\n') == 3 && strchr(cmd, ';') == NULL && strchr(cmd, '#') == NULL);
	return 0;
}
