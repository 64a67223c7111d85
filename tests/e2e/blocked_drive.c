/*
 * blocked_drive - the daemon's blocked sites path, driven from outside
 * the daemon until rule sets can ask for a block: the master's side
 * (blocked_start, blocked_reconfigure, blocked_stop) and workers' side
 * (blocked_request, from a forked child running an event loop, as in the
 * daemon) of daemon/blocked.c, with the real blocker process and
 * libnftables against the kernel of the namespace it runs in.  Used by
 * tests/e2e/test_blocked_sites.py inside the testbed's gateway.
 *
 * usage: blocked_drive [-d] CONF STEP...
 *   ADDR,SECONDS,REASON,SID  a worker asks to block ADDR (SID in hex)
 *   burst=N,A.B.C.           a worker asks for A.B.C.1 .. A.B.C.N at once
 *                            (30 seconds, reason "burst", sid = i)
 *   reload=CONF2             the master reloads: the blocker restarts with
 *                            CONF2's settings
 * Consecutive requests are sent by one worker, which exits once all of
 * them have left its queue.  At the end the blocker is stopped, after it
 * has carried out what it received.  stdout: one line per request,
 * "request ADDR rc=R" (blocked_request's return value), and one line per
 * worker, "worker sent=S dropped=D"; stderr: the log (the blocker's
 * "blocked add ..." and "blocked refused ..." lines).  Exit 0, or 2 for a
 * usage error, 1 when something failed to run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blocked.h"
#include "config.h"
#include "ev.h"
#include "log.h"
#include "util.h"

#define MAX_REQ 256

struct req {
	union sockaddr_any addr;
	char text[64];
	unsigned seconds;
	char reason[80];
	uint64_t sid;
};

static struct req reqs[MAX_REQ];
static int n_reqs;
static struct ev_timer tick;

static void NORETURN
usage(void)
{
	fprintf(stderr, "usage: blocked_drive [-d] CONF ADDR,SECONDS,REASON,SID | burst=N,A.B.C. | "
	    "reload=CONF2 ...\n");
	exit(2);
}

static int
parse_addr(const char *s, union sockaddr_any *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, &a->sin.sin_addr) == 1) {
		a->sin.sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a->sin6.sin6_addr) == 1) {
		a->sin6.sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

static void
add_req(const char *addr, unsigned seconds, const char *reason, uint64_t sid)
{
	struct req *r;

	if (n_reqs == MAX_REQ)
		usage();
	r = &reqs[n_reqs++];
	if (parse_addr(addr, &r->addr) < 0)
		usage();
	snprintf(r->text, sizeof(r->text), "%s", addr);
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	r->seconds = seconds;
	r->sid = sid;
}

static void
tick_cb(struct ev_timer *t)
{
	unsigned long sent, dropped;

	blocked_stats(&sent, &dropped);
	/* every request either left the queue or was refused/dropped here */
	if (sent + dropped >= (unsigned long)n_reqs) {
		ev_break();
		return;
	}
	ev_timer_arm(t, 20, tick_cb);
}

/* A worker: asks for every request, runs its loop until they are sent. */
static void NORETURN
worker(void)
{
	unsigned long sent, dropped;

	blocked_child_init();
	log_set_procname("worker");
	ev_init();
	for (int i = 0; i < n_reqs; i++) {
		int rc = blocked_request(&reqs[i].addr, reqs[i].seconds, reqs[i].reason, reqs[i].sid);

		printf("request %s rc=%d\n", reqs[i].text, rc);
	}
	fflush(stdout);
	ev_timer_arm(&tick, 0, tick_cb);
	ev_loop();
	blocked_stats(&sent, &dropped);
	printf("worker sent=%lu dropped=%lu\n", sent, dropped);
	fflush(stdout);
	_exit(0);
}

static int
run_worker(void)
{
	pid_t pid;
	int status;

	if (n_reqs == 0)
		return 0;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0)
		worker();
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	n_reqs = 0;
	return 0;
}

static struct config *
load(const char *path)
{
	struct config *c = xmalloc(sizeof(*c));
	char err[512];

	if (config_load(c, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "blocked_drive: %s\n", err);
		exit(1);
	}
	return c;
}

int
main(int argc, char **argv)
{
	struct config *c;
	char err[512];
	int i = 1, rc = 0;
	bool debug = false;

	if (i < argc && strcmp(argv[i], "-d") == 0) {
		debug = true;
		i++;
	}
	if (argc - i < 2)
		usage();
	c = load(argv[i++]);
	log_init(LOG_TO_STDERR, "master", debug);
	if (blocked_start(c, err, sizeof(err)) < 0) {
		fprintf(stderr, "blocked_drive: %s\n", err);
		return 1;
	}
	for (; i < argc && rc == 0; i++) {
		const char *s = argv[i];

		if (strncmp(s, "reload=", 7) == 0) {
			if (run_worker() < 0)
				rc = 1;
			free(c);
			c = load(s + 7);
			blocked_reconfigure(c);
		} else if (strncmp(s, "burst=", 6) == 0) {
			char prefix[32], addr[48];
			unsigned n;

			if (sscanf(s + 6, "%u,%31s", &n, prefix) != 2 || n == 0 || n > 254)
				usage();
			for (unsigned k = 1; k <= n; k++) {
				snprintf(addr, sizeof(addr), "%s%u", prefix, k);
				add_req(addr, 30, "burst", k);
			}
		} else {
			char addr[64], reason[80];
			unsigned secs;
			unsigned long long sid;

			if (sscanf(s, "%63[^,],%u,%79[^,],%llx", addr, &secs, reason, &sid) != 4)
				usage();
			add_req(addr, secs, reason, sid);
		}
	}
	if (rc == 0 && run_worker() < 0)
		rc = 1;
	blocked_stop();
	free(c);
	return rc;
}
