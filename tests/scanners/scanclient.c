/*
 * scanclient - drives the daemon's clamd and rspamd clients (daemon/
 * clamd.h, rspamd.h) against real scanners, for the end-to-end tests
 * (tests/e2e/test_scanner_*.py) and by hand.  One event loop, like a
 * worker: every scan of every group starts at once and runs
 * concurrently, unless -s asks for one after the other.
 *
 * usage: scanclient [-t TIMEOUT_MS] [-m MAX_SIZE] [-c CONNECTIONS]
 *            [-q QUEUE] [-i IDLE_MS] [-w WAIT_MS] [-s] [-S] [-d]
 *            GROUP [:: GROUP]...
 *   GROUP := clamd|rspamd "SERVER [SERVER...]" ITEM...
 *   ITEM  := FILE | key=value
 * Each group is a pool of its own.  Keys (they apply to the files after
 * them in the group): chunk=N (feed N octets at a time, default 65536),
 * cancel-ms=N (cancel the scan N ms after its start), delay-ms=N (wait
 * N ms between chunks: a slow client), and for rspamd the envelope:
 * ip=, helo=, from=, rcpt= (repeatable), user=, tls-version=,
 * tls-cipher=, hostname=, settings-id=, qid=, length=known|chunked.
 *
 * Output: one line per scan when it ends, in the order they end:
 *   result group=G file=F status=... [virus=|action= score= ...]
 *       server=ADDR size=N ms=N reason="..."
 * then, with -S, each pool's status lines (after -w WAIT_MS more of the
 * loop, so health checks can run).  Exit 0 when every scan ended.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clamd.h"
#include "config.h"
#include "ev.h"
#include "log.h"
#include "rspamd.h"
#include "scanner.h"
#include "util.h"

#define MAX_GROUPS 8
#define MAX_JOBS 256
#define MAX_RCPTS 64

struct group {
	bool rspamd;
	struct conf_scanners conf;
	struct clamd_pool *clamd;
	struct rspamd_pool *rsp;
	int first, njobs; /* jobs [first, first + njobs) */
	int next;         /* -s: the next job to start */
};

struct job {
	int group;
	const char *file;
	char *data;
	size_t len, off;
	size_t chunk;
	unsigned cancel_ms, delay_ms;
	bool known_length;
	struct rspamd_envelope env;
	const char *rcpts[MAX_RCPTS];
	union sockaddr_any ip;
	struct clamd_scan *cs;
	struct rspamd_scan *rs;
	struct ev_timer cancel_timer, delay_timer;
	bool started, busy, ended, finished;
};

static struct group groups[MAX_GROUPS];
static int ngroups;
static struct job jobs[MAX_JOBS];
static int njobs, nfinished;
static bool sequential;
static struct ev_timer wait_timer;

static void start_job(struct job *j);

static void NORETURN
usage(void)
{
	fprintf(stderr,
	    "usage: scanclient [-t TIMEOUT_MS] [-m MAX_SIZE] [-c CONNECTIONS] [-q QUEUE]\n"
	    "           [-i IDLE_MS] [-w WAIT_MS] [-s] [-S] [-d] GROUP [:: GROUP]...\n"
	    "  GROUP := clamd|rspamd \"SERVER...\" (FILE | key=value)...\n");
	exit(2);
}

static char *
read_file(const char *path, size_t *len)
{
	struct stat st;
	char *p;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0)
		fatal("%s: %s", path, strerror(errno));
	p = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
		if (n <= 0)
			fatal("%s: read: %s", path, n < 0 ? strerror(errno) : "short");
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return p;
}

/* A value for the output line: quoted like the daemon's log fields. */
static const char *
q(char *buf, size_t len, const char *s)
{
	return log_quote_str(buf, len, s ? s : "");
}

static void
job_finished(struct job *j)
{
	struct group *g = &groups[j->group];

	j->finished = true;
	j->cs = NULL;
	j->rs = NULL;
	ev_timer_cancel(&j->cancel_timer);
	ev_timer_cancel(&j->delay_timer);
	nfinished++;
	if (sequential && g->next < g->first + g->njobs)
		start_job(&jobs[g->next++]);
}

static void
clamd_done(void *arg, const struct clamd_result *r)
{
	struct job *j = arg;
	char a[LOG_QUOTE_SIZE(256)], b[LOG_QUOTE_SIZE(256)];

	printf("result group=%d file=%s status=%s virus=%s server=%s size=%llu ms=%llu reason=%s\n",
	    j->group + 1, j->file, clamd_status_name(r->status),
	    r->status == CLAMD_INFECTED ? r->virus : "-", q(a, sizeof(a), r->server),
	    (unsigned long long)r->size, (unsigned long long)r->elapsed_ms,
	    q(b, sizeof(b), r->reason));
	fflush(stdout);
	job_finished(j);
}

static void
rspamd_done(void *arg, const struct rspamd_result *r)
{
	struct job *j = arg;
	char a[LOG_QUOTE_SIZE(256)], b[LOG_QUOTE_SIZE(256)], c[LOG_QUOTE_SIZE(RSPAMD_SUBJECT_MAX)];
	char syms[2048] = "", hdrs[4096] = "", d[LOG_QUOTE_SIZE(2048)], e[LOG_QUOTE_SIZE(4096)];
	char f[LOG_QUOTE_SIZE(RSPAMD_MESSAGE_MAX)], act[LOG_QUOTE_SIZE(32)];
	size_t o = 0;

	for (unsigned i = 0; i < r->nsymbols && o < sizeof(syms); i++)
		o += (size_t)snprintf(syms + o, sizeof(syms) - o, "%s%s:%.2f", i ? "," : "",
		    r->symbols[i].name, r->symbols[i].score);
	o = 0;
	for (unsigned i = 0; i < r->nadd && o < sizeof(hdrs); i++)
		o += (size_t)snprintf(hdrs + o, sizeof(hdrs) - o, "%s%s: %s", i ? " | " : "",
		    r->add[i].name, r->add[i].value);
	printf("result group=%d file=%s status=%s action=%s score=%.2f required=%.2f "
	    "symbols=%s nsymbols=%u subject=%s add=%s smtp_message=%s server=%s size=%llu ms=%llu "
	    "reason=%s\n",
	    j->group + 1, j->file, rspamd_status_name(r->status),
	    r->status == RSPAMD_CHECKED ? q(act, sizeof(act), rspamd_action_name(r->action)) : "-",
	    r->score, r->required_score, q(d, sizeof(d), syms), r->symbols_total,
	    r->has_subject ? q(c, sizeof(c), r->subject) : "-", q(e, sizeof(e), hdrs),
	    q(f, sizeof(f), r->smtp_message), q(a, sizeof(a), r->server),
	    (unsigned long long)r->size, (unsigned long long)r->elapsed_ms,
	    q(b, sizeof(b), r->reason));
	fflush(stdout);
	job_finished(j);
}

static int
job_feed_one(struct job *j, const char *p, size_t n)
{
	return j->cs ? clamd_scan_feed(j->cs, p, n) : rspamd_scan_feed(j->rs, p, n);
}

static void delay_cb(struct ev_timer *t);

/* Feed until the client says busy, the file is done, or a delay is due. */
static void
feed(struct job *j)
{
	while (!j->finished && !j->ended && (j->cs || j->rs)) {
		size_t n = j->len - j->off;
		int rc;

		if (n == 0) {
			j->ended = true;
			if (j->cs)
				clamd_scan_end(j->cs);
			else
				rspamd_scan_end(j->rs);
			return;
		}
		if (n > j->chunk)
			n = j->chunk;
		rc = job_feed_one(j, j->data + j->off, n);
		j->off += n;
		if (rc == SCANNER_FEED_DONE) {
			j->ended = true; /* the outcome is on its way */
			return;
		}
		if (rc == SCANNER_FEED_BUSY) {
			j->busy = true;
			return;
		}
		if (j->delay_ms) {
			ev_timer_arm(&j->delay_timer, j->delay_ms, delay_cb);
			return;
		}
	}
}

static void
delay_cb(struct ev_timer *t)
{
	struct job *j = container_of(t, struct job, delay_timer);

	if (!j->busy)
		feed(j);
}

static void
resume_cb(void *arg)
{
	struct job *j = arg;

	j->busy = false;
	if (!ev_timer_armed(&j->delay_timer))
		feed(j);
}

static void
cancel_cb(struct ev_timer *t)
{
	struct job *j = container_of(t, struct job, cancel_timer);

	if (j->finished)
		return;
	if (j->cs)
		clamd_scan_cancel(j->cs);
	else
		rspamd_scan_cancel(j->rs);
	printf("result group=%d file=%s status=cancelled\n", j->group + 1, j->file);
	fflush(stdout);
	job_finished(j);
}

static void
start_job(struct job *j)
{
	struct group *g = &groups[j->group];
	uint64_t sid = random_id();

	j->started = true;
	if (g->rspamd)
		j->rs = rspamd_scan_start(g->rsp, sid, &j->env,
		    j->known_length ? (uint64_t)j->len : RSPAMD_SIZE_UNKNOWN, rspamd_done, resume_cb, j);
	else
		j->cs = clamd_scan_start(g->clamd, sid, clamd_done, resume_cb, j);
	if (j->cancel_ms)
		ev_timer_arm(&j->cancel_timer, j->cancel_ms, cancel_cb);
	feed(j);
}

static void
idle_hook(void)
{
	if (nfinished == njobs && !ev_timer_armed(&wait_timer))
		ev_break();
}

static void
wait_cb(struct ev_timer *t)
{
}

/* key=value items of a group; returns false for a file name. */
static bool
job_option(struct job *proto, const char *item)
{
	const char *eq = strchr(item, '=');
	char key[32];
	const char *v;

	const char *slash = strchr(item, '/');

	if (eq == NULL || (size_t)(eq - item) >= sizeof(key) || (slash != NULL && slash < eq))
		return false;
	memcpy(key, item, (size_t)(eq - item));
	key[eq - item] = '\0';
	v = eq + 1;
	if (!strcmp(key, "chunk"))
		proto->chunk = strtoul(v, NULL, 10) ? strtoul(v, NULL, 10) : 1;
	else if (!strcmp(key, "cancel-ms"))
		proto->cancel_ms = (unsigned)strtoul(v, NULL, 10);
	else if (!strcmp(key, "delay-ms"))
		proto->delay_ms = (unsigned)strtoul(v, NULL, 10);
	else if (!strcmp(key, "ip")) {
		struct prefix pf;

		if (prefix_parse(v, &pf) < 0)
			fatal("ip=%s: not an address", v);
		memset(&proto->ip, 0, sizeof(proto->ip));
		if (pf.family == AF_INET) {
			proto->ip.sin.sin_family = AF_INET;
			memcpy(&proto->ip.sin.sin_addr, pf.bytes, 4);
		} else {
			proto->ip.sin6.sin6_family = AF_INET6;
			memcpy(&proto->ip.sin6.sin6_addr, pf.bytes, 16);
		}
		proto->env.client = &proto->ip;
	} else if (!strcmp(key, "helo"))
		proto->env.helo = v;
	else if (!strcmp(key, "from"))
		proto->env.mail_from = v;
	else if (!strcmp(key, "rcpt")) {
		if (proto->env.nrcpts == MAX_RCPTS)
			fatal("more than %d rcpt=", MAX_RCPTS);
		proto->rcpts[proto->env.nrcpts++] = v;
	} else if (!strcmp(key, "user"))
		proto->env.user = v;
	else if (!strcmp(key, "tls-version"))
		proto->env.tls_version = v;
	else if (!strcmp(key, "tls-cipher"))
		proto->env.tls_cipher = v;
	else if (!strcmp(key, "hostname"))
		proto->env.hostname = v;
	else if (!strcmp(key, "settings-id"))
		proto->env.settings_id = v;
	else if (!strcmp(key, "qid"))
		proto->env.queue_id = v;
	else if (!strcmp(key, "length"))
		proto->known_length = !strcmp(v, "known");
	else
		fatal("unknown item %s", item);
	return true;
}

int
main(int argc, char **argv)
{
	struct scanner_opts o = {
		.timeout_ms = 10000, .connections = 8, .queue = 256,
		.max_size = 25ull * 1024 * 1024, .idle_ms = 10000,
	};
	unsigned wait_ms = 0;
	bool status = false;
	int debug = 0, ch;

	while ((ch = getopt(argc, argv, "t:m:c:q:i:w:sSd")) != -1) {
		switch (ch) {
		case 't': o.timeout_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'm': o.max_size = strtoull(optarg, NULL, 10); break;
		case 'c': o.connections = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'q': o.queue = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'i': o.idle_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'w': wait_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': sequential = true; break;
		case 'S': status = true; break;
		case 'd': debug = 1; break;
		default: usage();
		}
	}
	if (o.timeout_ms == 0 || o.connections == 0)
		usage();
	log_init(LOG_TO_STDERR, "scanclient", debug);
	ev_init();

	for (int i = optind; i < argc;) {
		struct group *g;
		struct job proto;
		char *w[CONF_MAX_SCAN_SERVERS + 1], *list;
		int nw;

		if (ngroups == MAX_GROUPS || argc - i < 2)
			usage();
		g = &groups[ngroups];
		if (!strcmp(argv[i], "rspamd"))
			g->rspamd = true;
		else if (strcmp(argv[i], "clamd") != 0)
			usage();
		list = xstrdup(argv[i + 1]);
		nw = 0;
		for (char *tok = strtok(list, " \t"); tok && nw <= CONF_MAX_SCAN_SERVERS;
		    tok = strtok(NULL, " \t"))
			w[nw++] = tok;
		if (nw > CONF_MAX_SCAN_SERVERS)
			fatal("more than %d servers", CONF_MAX_SCAN_SERVERS);
		for (int k = 0; k < nw; k++) {
			char why[160];

			if (config_scan_server_parse(w[k], &g->conf.servers[k], why, sizeof(why)) < 0)
				fatal("%s: %s", w[k], why);
		}
		g->conf.n_servers = nw;
		free(list);
		if (g->rspamd)
			g->rsp = rspamd_pool_new_opts(&g->conf, &o);
		else
			g->clamd = clamd_pool_new_opts(&g->conf, &o);
		g->first = njobs;
		memset(&proto, 0, sizeof(proto));
		proto.chunk = 65536;
		proto.group = ngroups;
		for (i += 2; i < argc && strcmp(argv[i], "::") != 0; i++) {
			struct job *j;

			if (job_option(&proto, argv[i]))
				continue;
			if (njobs == MAX_JOBS)
				fatal("more than %d files", MAX_JOBS);
			j = &jobs[njobs++];
			*j = proto;
			j->file = argv[i];
			j->data = read_file(argv[i], &j->len);
			j->env.rcpts = j->rcpts;
			if (j->env.client != NULL)
				j->env.client = &j->ip;
		}
		g->njobs = njobs - g->first;
		g->next = g->first;
		ngroups++;
		if (i < argc)
			i++; /* "::" */
	}
	if (ngroups == 0)
		usage();

	ev_set_idle_hook(idle_hook);
	for (int i = 0; i < ngroups; i++) {
		struct group *g = &groups[i];

		if (sequential) {
			if (g->njobs > 0)
				start_job(&jobs[g->next++]);
		} else {
			for (int k = g->first; k < g->first + g->njobs; k++)
				start_job(&jobs[k]);
		}
	}
	if (njobs > nfinished || wait_ms > 0) {
		if (wait_ms > 0 && nfinished == njobs)
			ev_timer_arm(&wait_timer, wait_ms, wait_cb);
		ev_loop();
	}
	/* -w: run on for WAIT_MS after the last scan (health checks). */
	if (wait_ms > 0 && !ev_timer_armed(&wait_timer)) {
		ev_timer_arm(&wait_timer, wait_ms, wait_cb);
		ev_loop();
	}
	if (status) {
		for (int i = 0; i < ngroups; i++) {
			printf("status group=%d\n", i + 1);
			if (groups[i].rspamd)
				rspamd_pool_status(groups[i].rsp, stdout);
			else
				clamd_pool_status(groups[i].clamd, stdout);
		}
	}
	for (int i = 0; i < ngroups; i++) {
		clamd_pool_free(groups[i].clamd);
		rspamd_pool_free(groups[i].rsp);
	}
	for (int i = 0; i < njobs; i++)
		free(jobs[i].data);
	return nfinished == njobs ? 0 : 1;
}
