/*
 * smtpgw - transparent SMTP proxy gateway: the master process.
 *
 * The master parses the configuration, does the privileged setup (the
 * transparent listeners and the netfilter queue), then forks and
 * supervises its children: one classifier (classifier.c) and N workers
 * (worker.c), each switched to the unprivileged user with a minimal
 * capability set (priv.h).  The master itself never touches network
 * input.  A child that dies is respawned; if the master dies, the children
 * follow (PDEATHSIG), the listeners close and the ruleset fails closed.
 * With -s the master keeps a status file (status.h) for smtpgwctl: it is
 * rewritten at start, after each reload attempt, when a child dies and on
 * SIGUSR2, which is also passed on to the workers (they log their
 * counters).
 *
 * Why one file of this size: the master's life cycle (generations built
 * whole before a reload switches, children and their respawns, the
 * status file, -t and -D) shares the generation struct and the signal
 * loop.  The next split is the preparation of a generation (users,
 * spool-dir, quarantine-dir) into a file of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blocked.h"
#include "config.h"
#include "content.h"
#include "fdlimit.h"
#include "quota.h"
#include "signer.h"
#include "stats.h"
#include "tls.h"
#include "listen.h"
#include "log.h"
#include "classifier.h"
#include "priv.h"
#include "qadmin.h"
#include "quarantine.h"
#include "scanstat.h"
#include "status.h"
#include "util.h"
#include "worker.h"

#define DEFAULT_CONF "/etc/smtpgw/smtpgw.conf"
#define MAX_CHILDREN 160
/* a worker's uid is worker-uid-base + its slot */
_Static_assert(MAX_CHILDREN <= CONF_WORKER_UID_SPAN, "worker uids must cover every slot");
#define READY_TIMEOUT_MS 10000
/* More respawns than this within RESPAWN_WINDOW_S means something is broken. */
#define RESPAWN_LIMIT 10
#define RESPAWN_WINDOW_S 60

enum role { ROLE_CLASSIFIER, ROLE_WORKER };

/*
 * One configuration generation: the configuration, the TLS material and
 * the signer its children were started with.  The current one serves new
 * connections; an older one lives until its last (draining) worker is
 * gone, then its signer is stopped and it is freed.  Children are forked
 * from the master, so each holds its own copy of its generation.
 */
struct gen {
	struct gen *next;
	unsigned id;
	struct config *conf;
	struct tls_material tls;
	struct signer *signer;
	char worker_user[CONF_NAME_MAX];     /* resolved role users (users_resolve) */
	gid_t worker_gid;                    /* user's group: the workers' (spool-dir) */
	char classifier_user[CONF_NAME_MAX];
	char signer_user[CONF_NAME_MAX];
	unsigned children; /* alive */
};

struct child {
	pid_t pid;
	enum role role;
	bool draining; /* old generation after a reload: not respawned */
	struct gen *gen;
};

static struct child children[MAX_CHILDREN];
static struct gen *gens; /* every live generation */
static struct gen *cur;  /* the one new children get */
static struct classifier *queue;
static int lfds[2] = { -1, -1 };
static const char *pidfile;
static const char *statusfile;
static struct status st;
static volatile int child_stop;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: smtpgw [-dDht] [-c FILE] [-p PIDFILE] [-s STATUSFILE]\n"
	    "       smtpgw [-c FILE] -Q list | show ID | raw ID | delete ID | release ID\n"
	    "\n"
	    "Transparent SMTP proxy gateway: classifies new SMTP connections queued by\n"
	    "the nftables ruleset, accepts them on transparent listeners (TPROXY) and\n"
	    "relays them to their original destination.\n"
	    "\n"
	    "  -c FILE     configuration file (default " DEFAULT_CONF ")\n"
	    "  -t          check the configuration and exit (0: valid, 1: errors,\n"
	    "              printed as FILE:LINE: problem)\n"
	    "  -D          print the effective configuration (predefined proxy\n"
	    "              actions and TLS profiles included) and exit\n"
	    "  -p PIDFILE  write the master's PID here once the classifier and all\n"
	    "              workers are ready (removed at exit)\n"
	    "  -s FILE     keep a key=value status file here: pid, configuration\n"
	    "              generation, last reload result, children, sessions now\n"
	    "              (rewritten on reload, child exit and SIGUSR2; removed at exit)\n"
	    "  -Q VERB     the quarantine (quarantine-dir): list its records, show one\n"
	    "              (envelope, verdict, headers), raw (the original message),\n"
	    "              delete one, or release one to its original recipients\n"
	    "              (once; who is $SMTPGW_ADMIN or the login name)\n"
	    "  -d          debug logging (every classification decision)\n"
	    "  -h          this help\n"
	    "  -V          print the version\n"
	    "\n"
	    "Signals: SIGTERM/SIGINT stop; SIGHUP reloads the configuration (sessions in\n"
	    "progress finish under the configuration they started with); SIGUSR2\n"
	    "rewrites the status file and makes every worker log its counters.\n"
	    "Must start as root (or with CAP_NET_ADMIN); children run as their role's\n"
	    "user (user, signer-user, classifier-user) with only CAP_NET_ADMIN\n"
	    "(classifier, blocker) or CAP_NET_RAW (workers, when spoof-source is on).\n"
	    "A reload builds the new generation (TLS material, signer, workers) before\n"
	    "it touches the running one; -t loads everything a reload loads.\n");
}

static void
child_sig(int sig)
{
	(void)sig;
	child_stop = 1;
}

/* ------------------------------------------------------------ users */

/*
 * The user each role runs as.  The signer and the classifier get users of
 * their own, so no child can signal (or trace) a child of another role:
 * a worker, the network-facing process, cannot stop the signer or the
 * classifier.  When signer-user / classifier-user is not set and its
 * default user does not exist (named or not), that role runs as user (said
 * in notes[]); another user that is named but does not exist is an error.
 */
static int
users_resolve(const struct config *c, struct gen *g, char notes[2][300], char *err,
    size_t errlen)
{
	const struct {
		const char *key, *name;
		bool set;
		char *out;
	} roles[2] = {
		{ "signer-user", c->signer_user, c->signer_user_set, g->signer_user },
		{ "classifier-user", c->classifier_user, c->classifier_user_set,
		    g->classifier_user },
	};
	struct passwd *pw;
	uid_t wuid;

	snprintf(g->worker_user, sizeof(g->worker_user), "%s", c->user);
	pw = getpwnam(c->user);
	if (pw == NULL) {
		snprintf(err, errlen, "%s: user \"%s\" does not exist", c->path, c->user);
		return -1;
	}
	wuid = pw->pw_uid;
	g->worker_gid = pw->pw_gid;
	/*
	 * Separate worker uids must belong to no account: a worker would act
	 * as that account (its files, its processes).
	 */
	if (c->worker_uid_base) {
		for (unsigned i = 0; i < CONF_WORKER_UID_SPAN; i++) {
			struct passwd *other = getpwuid((uid_t)(c->worker_uid_base + i));
			if (other) {
				snprintf(err, errlen, "%s: worker-uid-base: uid %u belongs to account "
				    "\"%s\" (workers use %u..%u): choose a range no account uses, or 0",
				    c->path, c->worker_uid_base + i, other->pw_name, c->worker_uid_base,
				    c->worker_uid_base + CONF_WORKER_UID_SPAN - 1);
				return -1;
			}
		}
	}
	for (int i = 0; i < 2; i++) {
		notes[i][0] = '\0';
		pw = getpwnam(roles[i].name);
		/*
		 * Named on purpose (not the built-in default, which a box may
		 * lack): a missing user is a typo, and an error.
		 */
		if (pw == NULL && roles[i].set &&
		    strcmp(roles[i].name, i == 0 ? CONF_DEFAULT_SIGNER_USER :
		    CONF_DEFAULT_CLASSIFIER_USER) != 0) {
			snprintf(err, errlen, "%s: %s: user \"%s\" does not exist", c->path,
			    roles[i].key, roles[i].name);
			return -1;
		}
		if (pw == NULL) {
			snprintf(notes[i], sizeof(notes[i]), "%s %s does not exist: that process "
			    "runs as %s, like the workers, which can then signal it (see smtpgw(8), "
			    "USERS)", roles[i].key, roles[i].name, c->user);
			snprintf(roles[i].out, CONF_NAME_MAX, "%s", c->user);
			continue;
		}
		if (pw->pw_uid == wuid || pw->pw_uid == 0)
			snprintf(notes[i], sizeof(notes[i]), "%s %s has uid %u, %s: a worker can "
			    "signal that process", roles[i].key, roles[i].name, (unsigned)pw->pw_uid,
			    pw->pw_uid == 0 ? "root" : "the workers' uid");
		snprintf(roles[i].out, CONF_NAME_MAX, "%s", roles[i].name);
	}
	return 0;
}

/* ------------------------------------------------------------ children */

static unsigned
worker_count(const struct config *c)
{
	long n = c->workers ? (long)c->workers : sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (n > 64)
		n = 64;
	return (unsigned)n;
}

/*
 * In the signer process: the master's sockets are none of its business,
 * nor the blocker's (a signer started after the blocker, at a reload or a
 * respawn, would otherwise hold both ends of its registration socket).
 */
static void
signer_child_cleanup(void)
{
	for (int i = 0; i < 2; i++)
		if (lfds[i] >= 0)
			close(lfds[i]);
	classifier_close(queue);
	blocked_child_detach();
}

/*
 * Runs in the child; never returns.  ready_fd is the write end of the
 * pipe the master waits on, ready_rd its read end (closed: only the
 * master reads there).
 */
static void NORETURN
child_run(enum role role, struct gen *g, int slot, int ready_fd, int ready_rd, bool standby)
{
	char err[256];
	sigset_t none;
	int rc;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(0); /* the master is already gone */
	if (ready_rd >= 0)
		close(ready_rd);
	/* Its generation's log setting: a reload may have changed it. */
	log_init(g->conf->log, role == ROLE_CLASSIFIER ? "classify" : "worker",
	    log_debug_enabled());
	if (role == ROLE_CLASSIFIER)
		blocked_child_detach(); /* it never asks for a block */
	else
		blocked_child_init();
	sigemptyset(&none);
	if (role == ROLE_CLASSIFIER) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = child_sig; /* no SA_RESTART: recv() returns EINTR */
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		signal(SIGHUP, SIG_IGN);
		signal(SIGCHLD, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (int i = 0; i < 2; i++)
			if (lfds[i] >= 0)
				close(lfds[i]);
		signer_close_inherited(NULL);
		cap_value_t keep[] = { CAP_NET_ADMIN };
		if (priv_drop(g->classifier_user, keep, 1, err, sizeof(err)) < 0) {
			log_err("classify privileges error=\"%s\"", err);
			_exit(1);
		}
		(void)!write(ready_fd, "c", 1);
		close(ready_fd);
		rc = classifier_run(queue, g->conf, &child_stop);
		_exit(rc < 0 ? 1 : 0);
	}

	signal(SIGCHLD, SIG_DFL);
	classifier_close(queue);
	signer_close_inherited(g->signer);
	signer_worker_attach(signer_reg_fd(g->signer));
	tls_global = &g->tls;
	cap_value_t keep[] = { CAP_NET_RAW };
	int nkeep = g->conf->spoof_source ? 1 : 0;
	/* A uid of its own (worker-uid-base + slot): no worker can signal another. */
	if ((g->conf->worker_uid_base ?
	    priv_drop_ids((uid_t)(g->conf->worker_uid_base + (unsigned)slot), g->worker_gid, keep,
	    nkeep, err, sizeof(err)) :
	    priv_drop(g->worker_user, keep, nkeep, err, sizeof(err))) < 0) {
		log_err("worker privileges error=\"%s\"", err);
		_exit(1);
	}
	(void)!write(ready_fd, "w", 1);
	close(ready_fd);
	/* worker_main blocks the signals it handles through its signalfd */
	rc = worker_main(g->conf, lfds, 2, standby);
	_exit(rc < 0 ? 1 : 0);
}

/*
 * Fork one child of generation g (a worker on standby: see worker.h); its
 * table slot, or -1.  ready[1] is where it says it is ready; ready[0],
 * the master's end, is closed in the child.
 */
static int
spawn(enum role role, struct gen *g, const int ready[2], bool standby)
{
	int slot = -1;
	pid_t pid;

	for (int i = 0; i < MAX_CHILDREN && slot < 0; i++)
		if (children[i].pid == 0)
			slot = i;
	if (slot < 0) {
		log_err("spawn error=\"child table full\"");
		return -1;
	}
	/* The child's table index is also its slot in the shared limits. */
	quota_clear_slot((unsigned)slot);
	pid = fork();
	if (pid < 0) {
		log_err("fork error=\"%s\"", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		quota_use_slot((unsigned)slot);
		stats_use_slot((unsigned)slot);
		child_run(role, g, slot, ready[1], ready[0], standby);
	}
	children[slot].pid = pid;
	children[slot].role = role;
	children[slot].draining = false;
	children[slot].gen = g;
	g->children++;
	return slot;
}

/* A child is gone (reaped): its slot and its generation's count. */
static void
child_gone(int slot)
{
	children[slot].pid = 0;
	if (children[slot].gen)
		children[slot].gen->children--;
	children[slot].gen = NULL;
	/* its sessions are gone with it, and its scanner pools */
	quota_clear_slot((unsigned)slot);
	stats_scan_clear((unsigned)slot);
}

/* Stop the children of a failed batch (SIGKILL: they never served). */
static void
kill_batch(const int *slots, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		int sl = slots[i];
		if (sl < 0 || children[sl].pid <= 0)
			continue;
		kill(children[sl].pid, SIGKILL);
		waitpid(children[sl].pid, NULL, 0);
		child_gone(sl);
	}
}

/*
 * Spawn n children of one role for generation g and wait until each
 * reported ready; on failure the ones started are stopped again.
 */
static int
spawn_ready(struct gen *g, enum role role, unsigned n, bool standby)
{
	int p[2], slots[MAX_CHILDREN];
	unsigned got = 0, started = 0;
	uint64_t deadline = now_ms() + READY_TIMEOUT_MS;

	if (n > MAX_CHILDREN || pipe2(p, O_CLOEXEC) < 0)
		return -1;
	for (; started < n; started++)
		if ((slots[started] = spawn(role, g, p, standby)) < 0)
			break;
	close(p[1]);
	while (started == n && got < n) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		char b[16];
		uint64_t now = now_ms();

		if (now >= deadline)
			break;
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		ssize_t r = read(p[0], b, sizeof(b));
		if (r <= 0)
			break; /* every child closed its end: someone died before ready */
		got += (unsigned)r;
	}
	close(p[0]);
	if (got < n) {
		log_err("start failed role=%s ready=%u wanted=%u generation=%u",
		    role == ROLE_CLASSIFIER ? "classify" : "worker", got, n, g->id);
		kill_batch(slots, started);
		return -1;
	}
	return 0;
}

static void
signal_children(int sig, bool only_current)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].pid > 0 && (!only_current || !children[i].draining))
			kill(children[i].pid, sig);
}

static void
wait_children(int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		bool any = false;

		for (int i = 0; i < MAX_CHILDREN; i++) {
			if (children[i].pid <= 0)
				continue;
			if (waitpid(children[i].pid, NULL, WNOHANG) == children[i].pid)
				child_gone(i);
			else
				any = true;
		}
		if (!any)
			return;
		if (now_ms() >= deadline) {
			signal_children(SIGKILL, false);
			deadline = now_ms() + 1000;
		}
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* ------------------------------------------------------------ generations */

static void
gen_free(struct gen *g)
{
	struct gen **pp;

	if (g == NULL)
		return;
	for (pp = &gens; *pp; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	}
	signer_free(g->signer);
	tls_material_free(&g->tls);
	config_free(g->conf);
	free(g->conf);
	free(g);
}

/* An old generation whose last child is gone: its signer goes too. */
static void
gen_release_if_done(struct gen *g)
{
	if (g && g != cur && g->children == 0) {
		log_info("master generation done generation=%u", g->id);
		gen_free(g);
	}
}

/*
 * The quarantine directory and the spool directory, the workers' own
 * (they write them), and the quarantine's bounds applied (which also
 * counts what it holds).  A failure is logged,
 * not fatal: mail keeps flowing, refusals are refused anyway, and a strip
 * that cannot be kept is tempfailed (content.c).
 */
static void
quarantine_setup(const struct config *c, gid_t worker_gid)
{
	char err[512];
	int64_t total;
	bool root = geteuid() == 0;

	/*
	 * root's, the workers' group, 0770 like spool-dir: every worker has a
	 * uid of its own and writes its records 0600, so no worker reads
	 * another's; the master sweeps and smtpgw -Q reads as root.
	 */
	if (quarantine_prepare(c->quarantine_dir, root ? 0 : geteuid(),
	    root ? worker_gid : getegid(), err, sizeof(err)) < 0) {
		log_err("quarantine setup error=\"quarantine-dir: %s\" (what is refused or stripped for its "
		    "content cannot be kept)", err);
		return;
	}
	total = quarantine_sweep(c->quarantine_dir, c->quarantine_max_size, c->quarantine_max_age,
	    time(NULL));
	log_info("quarantine dir=%s bytes=%lld max-size=%llu max-age=%u", c->quarantine_dir,
	    (long long)total, (unsigned long long)c->quarantine_max_size, c->quarantine_max_age);
}

/*
 * Everything a generation needs before any of its children exists:
 * missing TLS files made, the material loaded, the users resolved and the
 * signer started with the CA keys checked.  Takes c (freed on failure).
 */
/*
 * spool-dir: created when missing; root's, the workers' group, 0770 -- the
 * workers (each with a uid of its own) make their unlinked files there,
 * nobody else may look.  A symbolic link is refused (it could point the
 * workers' files anywhere).
 */
static int
spool_prepare(const struct config *c, gid_t gid, char *err, size_t errlen)
{
	char why[400];

	if (geteuid() != 0)
		return 0; /* tests run unprivileged: the directory is theirs */
	/* the appliance's /var/spool is in RAM: missing parents are made too */
	if (quarantine_prepare(c->spool_dir, 0, gid, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%.200s: spool-dir: %.250s", c->path, why);
		return -1;
	}
	return 0;
}

static struct gen *
gen_build(struct config *c, unsigned id, EVP_PKEY *leaf, char *err, size_t errlen)
{
	struct gen *g = xcalloc(1, sizeof(*g));
	char notes[2][300], serr[400];

	g->id = id;
	g->conf = c;
	if (users_resolve(c, g, notes, err, errlen) < 0)
		goto fail;
	for (int i = 0; i < 2; i++)
		if (notes[i][0])
			log_warn("master users generation=%u note=\"%s\"", id, notes[i]);
	if (spool_prepare(c, g->worker_gid, err, errlen) < 0)
		goto fail;
	quarantine_setup(c, g->worker_gid);
	if (tls_prepare_files(c, err, errlen) < 0 || tls_load(c, &g->tls, leaf, err, errlen) < 0)
		goto fail;
	g->signer = signer_new(c, &g->tls, id, g->signer_user, worker_count(c),
	    signer_child_cleanup, serr, sizeof(serr));
	if (g->signer == NULL) {
		snprintf(err, errlen, "signer: %s", serr);
		goto fail;
	}
	g->next = gens;
	gens = g;
	return g;
fail:
	tls_material_free(&g->tls);
	config_free(c);
	free(c);
	free(g);
	return NULL;
}

/* ------------------------------------------------------------ status */

static int
write_pidfile(const char *path)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -1;
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Every worker's scanner pools (stats.h), merged (scanstat.h); replaces old. */
static char *
scanners_merged(char *old)
{
	const char *texts[MAX_CHILDREN];
	char *bufs[MAX_CHILDREN], *out = NULL;
	size_t n = 0, len = 0;
	FILE *f;

	free(old);
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i].pid <= 0 || children[i].role != ROLE_WORKER)
			continue;
		bufs[n] = xmalloc(STATS_SCAN_TEXT);
		stats_scan_read((unsigned)i, bufs[n], STATS_SCAN_TEXT);
		texts[n] = bufs[n];
		n++;
	}
	f = open_memstream(&out, &len);
	if (f != NULL) {
		scanstat_merge(texts, n, f);
		if (fclose(f) != 0) {
			free(out);
			out = NULL;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(bufs[i]);
	return out;
}

/* Fill the children's part of the status from the table and write it. */
static void
status_refresh(void)
{
	static bool warned;
	static char *scanners_text;
	char err[512];
	size_t off = 0;

	if (statusfile == NULL)
		return;
	st.classifier_pid = 0;
	st.classifier_alive = false;
	st.workers = st.workers_draining = 0;
	st.worker_pids[0] = '\0';
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &children[i];

		if (ch->pid <= 0 || kill(ch->pid, 0) < 0)
			continue;
		if (ch->draining) {
			st.workers_draining++;
		} else if (ch->role == ROLE_CLASSIFIER) {
			st.classifier_pid = ch->pid;
			st.classifier_alive = true;
		} else {
			int n = snprintf(st.worker_pids + off, sizeof(st.worker_pids) - off, "%s%d",
			    off ? " " : "", (int)ch->pid);
			if (n > 0 && (size_t)n < sizeof(st.worker_pids) - off)
				off += (size_t)n;
			st.workers++;
		}
	}
	st.signer_pid = cur ? signer_pid(cur->signer) : -1;
	st.signer_alive = st.signer_pid > 0 && kill(st.signer_pid, 0) == 0;
	if (st.signer_pid < 0)
		st.signer_pid = 0;
	st.workers_expected = cur ? worker_count(cur->conf) : 0;
	st.sessions = quota_total();
	st.inspected = stats_sum(STAT_INSPECTED);
	st.inspect_denied = stats_sum(STAT_DENIED);
	st.inspect_stripped = stats_sum(STAT_STRIPPED);
	st.alarms = stats_sum(STAT_ALARMS);
	st.viruses = stats_sum(STAT_VIRUSES);
	st.spam_rejected = stats_sum(STAT_SPAM_REJECTED);
	st.spam_marked = stats_sum(STAT_SPAM_MARKED);
	st.scan_tempfail = stats_sum(STAT_SCAN_TEMPFAIL);
	st.unscanned = stats_sum(STAT_UNSCANNED);
	st.quarantined = stats_sum(STAT_QUARANTINED);
	st.quarantine_failed = stats_sum(STAT_QUARANTINE_FAILED);
	st.quarantine_bytes = stats_gauge(GAUGE_QUARANTINE_BYTES);
	st.quarantine_dir = cur ? cur->conf->quarantine_dir : "";
	scanners_text = scanners_merged(scanners_text);
	st.scanners = scanners_text;
	st.seq++;
	if (status_write(statusfile, &st, err, sizeof(err)) < 0) {
		if (!warned)
			log_warn("status file error=\"%s\"", err);
		warned = true;
	} else {
		warned = false;
	}
}

/* ------------------------------------------------------------ reload */

/*
 * SIGHUP: build the new generation completely - configuration, file
 * descriptor limit, TLS material, signer (CA keys checked), workers
 * ready - before touching the running one; only then replace the
 * classifier and let the old workers drain.  Anything that fails before
 * that point leaves the running generation exactly as it was (rejected).
 */
static enum reload_result
reload(const char *path, char *why, size_t whylen)
{
	char err[512], serr[400];
	struct config *nc = xmalloc(sizeof(*nc));
	struct gen *old = cur, *ng;
	const struct config *oc = old->conf;

	why[0] = '\0';
	if (config_load(nc, path, err, sizeof(err)) < 0) {
		config_free(nc);
		free(nc);
		goto rejected;
	}
	if (nc->listen_port != oc->listen_port || nc->queue != oc->queue ||
	    strcmp(nc->user, oc->user) != 0) {
		snprintf(err, sizeof(err), "listen-port, queue and user change only on restart");
		config_free(nc);
		free(nc);
		goto rejected;
	}
	if (fdlimit_raise(nc->max_sessions, false, serr, sizeof(serr)) < 0) {
		snprintf(err, sizeof(err), "%s: %s", path, serr);
		config_free(nc);
		free(nc);
		goto rejected;
	}
	ng = gen_build(nc, old->id + 1, old->tls.leaf_key, err, sizeof(err));
	if (ng == NULL)
		goto rejected;
	/* Ready, but polling no listener until the switch (worker.h, standby). */
	if (spawn_ready(ng, ROLE_WORKER, worker_count(nc), true) < 0) {
		snprintf(err, sizeof(err), "the new workers did not start (see the log)");
		gen_free(ng);
		goto rejected;
	}
	/* The queue has one reader: the old classifier stops first (SYNs wait in the kernel). */
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i].pid > 0 && children[i].role == ROLE_CLASSIFIER) {
			kill(children[i].pid, SIGTERM);
			waitpid(children[i].pid, NULL, 0);
			child_gone(i);
		}
	}
	if (spawn_ready(ng, ROLE_CLASSIFIER, 1, false) < 0) {
		/* Back to the old one; the new workers, which never accepted, go. */
		for (int i = 0; i < MAX_CHILDREN; i++)
			if (children[i].pid > 0 && children[i].gen == ng) {
				kill(children[i].pid, SIGKILL);
				waitpid(children[i].pid, NULL, 0);
				child_gone(i);
			}
		gen_free(ng);
		if (spawn_ready(old, ROLE_CLASSIFIER, 1, false) < 0) {
			log_err("reload failed: neither the new nor the old classifier started");
			snprintf(why, whylen, "the new classifier did not start, nor the old one again "
			    "(see the log); SMTP is refused until a restart");
			return RELOAD_FAILED;
		}
		snprintf(err, sizeof(err), "the new classifier did not start (see the log)");
		goto rejected;
	}
	/*
	 * The switch: the new workers start accepting, then the old ones stop
	 * and finish their sessions (no moment without a worker accepting).
	 */
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].pid > 0 && children[i].gen == ng && children[i].role == ROLE_WORKER)
			kill(children[i].pid, SIGHUP);
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i].pid > 0 && children[i].gen == old && !children[i].draining) {
			children[i].draining = true;
			kill(children[i].pid, SIGUSR1);
		}
	}
	cur = ng;
	tls_global = &cur->tls;
	/* log = stderr|syslog: the master's own lines follow the new setting too. */
	if (nc->log != oc->log)
		log_init(nc->log, "master", log_debug_enabled());
	gen_release_if_done(old);
	log_info("reload done generation=%u zones=%d policies=%d workers=%u", ng->id,
	    nc->n_zones, nc->n_policies, worker_count(nc));
	return RELOAD_OK;
rejected:
	log_err("reload rejected error=\"%s\" (the running configuration stays)", err);
	snprintf(why, whylen, "%s", err);
	return RELOAD_REJECTED;
}

static int
supervise(const char *path)
{
	sigset_t set;
	time_t window_start = time(NULL);
	int respawns = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	for (;;) {
		siginfo_t si;
		struct timespec tick = { QUARANTINE_SWEEP_S, 0 };
		int sig = sigtimedwait(&set, &si, &tick);

		if (sig < 0) {
			/* quarantine-max-age: records older than it go, every QUARANTINE_SWEEP_S */
			if (errno == EAGAIN && cur)
				(void)quarantine_sweep(cur->conf->quarantine_dir,
				    cur->conf->quarantine_max_size, cur->conf->quarantine_max_age,
				    time(NULL));
			continue;
		}
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("master stop signal=%d", sig);
			signal_children(SIGTERM, false);
			wait_children(5000);
			while (gens)
				gen_free(gens);
			cur = NULL;
			blocked_stop();
			return 0;
		}
		if (sig == SIGHUP) {
			log_info("master reload file=%s", path);
			st.reload_result = reload(path, st.reload_error, sizeof(st.reload_error));
			/* Once the new classifier runs: SYNs never wait for the blocker. */
			if (st.reload_result != RELOAD_REJECTED)
				blocked_reconfigure(cur->conf);
			st.reloads++;
			st.reload_time = time(NULL);
			if (st.reload_result == RELOAD_OK)
				st.generation++;
			status_refresh();
			continue;
		}
		if (sig == SIGUSR2) {
			status_refresh();
			/* Workers only: the classifier and the signer do not handle it. */
			for (int i = 0; i < MAX_CHILDREN; i++)
				if (children[i].pid > 0 && children[i].role == ROLE_WORKER)
					kill(children[i].pid, SIGUSR2);
			continue;
		}
		if (sig != SIGCHLD)
			continue;
		for (;;) {
			int status;
			pid_t pid = waitpid(-1, &status, WNOHANG);

			if (pid <= 0)
				break;
			if (signer_reaped(pid, status) || blocked_reaped(pid))
				continue;
			for (int i = 0; i < MAX_CHILDREN; i++) {
				if (children[i].pid != pid)
					continue;
				enum role role = children[i].role;
				bool draining = children[i].draining;
				struct gen *g = children[i].gen;

				child_gone(i);
				if (draining) {
					log_info("master drained worker pid=%d", (int)pid);
					gen_release_if_done(g);
					break;
				}
				st.child_deaths++;
				log_err("master child died role=%s pid=%d status=%d signal=%d",
				    role == ROLE_CLASSIFIER ? "classify" : "worker", (int)pid,
				    WIFEXITED(status) ? WEXITSTATUS(status) : -1,
				    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
				if (time(NULL) - window_start > RESPAWN_WINDOW_S) {
					window_start = time(NULL);
					respawns = 0;
				}
				if (++respawns > RESPAWN_LIMIT) {
					log_err("master giving up: %d respawns in %d s", respawns,
					    RESPAWN_WINDOW_S);
					signal_children(SIGTERM, false);
					wait_children(5000);
					while (gens)
						gen_free(gens);
					blocked_stop();
					return 1;
				}
				int p[2];
				if (pipe2(p, O_CLOEXEC) == 0) {
					if (spawn(role, cur, p, false) >= 0) {
						st.respawns++;
						log_info("master respawned role=%s",
						    role == ROLE_CLASSIFIER ? "classify" : "worker");
					}
					close(p[0]);
					close(p[1]);
				}
				break;
			}
		}
		status_refresh();
	}
}

/* ------------------------------------------------------------ -t */

/*
 * smtpgw -t: a directory a start or a reload makes or uses must be one, or
 * be missing with a directory to make it in.  spool-dir (spool_prepare)
 * refuses a symbolic link and makes its missing parents too, so for it
 * the nearest existing ancestor must be a directory; tls-dir
 * (tls_prepare_files) is made with one mkdir(2), which needs its parent.
 * Nothing is created.
 */
static int
dir_usable(const struct config *c, const char *key, const char *dir, bool spool, char *err,
    size_t errlen)
{
	char parent[CONF_PATH_MAX];
	struct stat sb;
	size_t n;

	if ((spool ? lstat(dir, &sb) : stat(dir, &sb)) == 0) {
		if (S_ISDIR(sb.st_mode))
			return 0;
		snprintf(err, errlen, "%.200s: %s %.200s is not a directory", c->path, key, dir);
		return -1;
	}
	if (errno != ENOENT && !(spool && errno == ENOTDIR)) {
		snprintf(err, errlen, "%.200s: %s %.200s: %s", c->path, key, dir, strerror(errno));
		return -1;
	}
	snprintf(parent, sizeof(parent), "%s", dir);
	for (;;) {
		n = strlen(parent);
		while (n > 1 && parent[n - 1] == '/')
			parent[--n] = '\0';
		char *slash = strrchr(parent, '/');
		if (slash == NULL)
			snprintf(parent, sizeof(parent), ".");
		else if (slash == parent)
			parent[1] = '\0';
		else
			*slash = '\0';
		if (stat(parent, &sb) == 0) {
			if (S_ISDIR(sb.st_mode))
				return 0;
			break;
		}
		/* ENOTDIR: a file on the way, named when its own turn comes */
		if (!spool || (errno != ENOENT && errno != ENOTDIR) || strcmp(parent, "/") == 0 ||
		    strcmp(parent, ".") == 0)
			break;
	}
	snprintf(err, errlen, "%.120s: %s %.120s cannot be created: %.120s is not a "
	    "directory", c->path, key, dir, parent);
	return -1;
}

/* smtpgw -t: what spool_prepare() would refuse of spool-dir as it is (as root). */
static int
spool_check(const struct config *c, gid_t gid, char *err, size_t errlen)
{
	char why[400];

	if (geteuid() != 0)
		return 0; /* spool_prepare() leaves it alone too */
	if (quarantine_dir_check(c->spool_dir, 0, gid, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%.200s: spool-dir: %.250s", c->path, why);
		return -1;
	}
	return 0;
}

/* smtpgw -t: everything a start or a reload would check, nothing created or changed. */
static int
check_config(struct config *c, const char *path)
{
	char err[512], warn[512], notes[2][300];
	struct gen g;

	for (int i = 0; i < c->n_warnings; i++)
		fprintf(stderr, "smtpgw: %s\n", c->warnings[i]);
	memset(&g, 0, sizeof(g));
	if (tls_check(c, err, sizeof(err), warn, sizeof(warn)) < 0 ||
	    users_resolve(c, &g, notes, err, sizeof(err)) < 0 ||
	    dir_usable(c, "tls-dir", c->tls_dir, false, err, sizeof(err)) < 0 ||
	    dir_usable(c, "spool-dir", c->spool_dir, true, err, sizeof(err)) < 0 ||
	    spool_check(c, g.worker_gid, err, sizeof(err)) < 0) {
		fprintf(stderr, "smtpgw: %s\n", err);
		return 1;
	}
	if (fdlimit_raise(c->max_sessions, true, err, sizeof(err)) < 0) {
		fprintf(stderr, "smtpgw: %s: %s\n", path, err);
		return 1;
	}
	if (content_init(NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "smtpgw: content inspection: %s\n", err);
		return 1;
	}
	if (warn[0])
		fprintf(stderr, "smtpgw: %s\n", warn);
	for (int i = 0; i < 2; i++)
		if (notes[i][0])
			fprintf(stderr, "smtpgw: %s: note: %s\n", path, notes[i]);
	printf("smtpgw: %s: configuration OK (%d zones, %d policies, %d actions, "
	    "%d TLS profiles, %d warnings)\n", path, c->n_zones, c->n_policies,
	    c->n_actions, c->n_profiles, c->n_warnings);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_CONF;
	char err[512];
	bool check = false, debug = false, dump = false, qadmin = false;
	struct config *conf;
	sigset_t set;
	int ch, rc;

	while ((ch = getopt(argc, argv, "+c:dDhp:Qs:tV")) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'Q': qadmin = true; break;
		case 'D': dump = true; break;
		case 'd': debug = true; break;
		case 'p': pidfile = optarg; break;
		case 's': statusfile = optarg; break;
		case 't': check = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("smtpgw %s\n", SMTPGW_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc && !qadmin) {
		usage(stderr);
		return 2;
	}

	conf = xmalloc(sizeof(*conf));
	if (config_load(conf, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "smtpgw: %s\n", err);
		return 1;
	}
	if (qadmin)
		return qadmin_main(conf, argc - optind, argv + optind);
	if (dump) {
		for (int i = 0; i < conf->n_warnings; i++)
			fprintf(stderr, "smtpgw: %s\n", conf->warnings[i]);
		config_dump(conf, stdout);
		return 0;
	}
	if (check)
		return check_config(conf, path);
	for (int i = 0; i < conf->n_warnings; i++)
		fprintf(stderr, "smtpgw: %s\n", conf->warnings[i]);

	/*
	 * Nothing this process was started with but stdin, stdout and stderr
	 * may reach its children (the signer above all): whatever the parent
	 * left open is closed before anything of ours is opened.
	 */
	if (close_range(3, ~0u, 0) < 0) {
		long max = sysconf(_SC_OPEN_MAX);

		for (long fd = 3; fd < (max > 0 ? max : 1024); fd++)
			close((int)fd);
	}
	log_init(conf->log, "master", debug);
	/* Signals are taken synchronously (sigwaitinfo); children set their own. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Before anything is opened or forked: children inherit the limit. */
	if (fdlimit_raise(conf->max_sessions, false, err, sizeof(err)) < 0) {
		log_err("%s: %s", path, err);
		return 1;
	}
	if (quota_init(MAX_CHILDREN) < 0 || stats_init(MAX_CHILDREN) < 0) {
		log_err("session limits: cannot map shared memory: %s", strerror(errno));
		return 1;
	}
	/* The magic database, once, before any fork: the workers share its pages. */
	if (content_init(NULL, err, sizeof(err)) < 0) {
		log_err("content inspection setup error=\"%s\"", err);
		return 1;
	}
	lfds[0] = listen_transparent(AF_INET, conf->listen_port, err, sizeof(err));
	if (lfds[0] < 0) {
		log_err("listen family=ipv4 error=\"%s\"", err);
		return 1;
	}
	lfds[1] = listen_transparent(AF_INET6, conf->listen_port, err, sizeof(err));
	if (lfds[1] < 0)
		log_warn("listen family=ipv6 error=\"%s\" (IPv6 SMTP will be refused)", err);
	queue = classifier_open(conf->queue, err, sizeof(err));
	if (queue == NULL) {
		log_err("classify setup error=\"%s\"", err);
		return 1;
	}
	/*
	 * TLS material (generated on first start) and the signer, before any
	 * worker exists.  CA keys are never loaded here: only the signer reads them.
	 */
	cur = gen_build(conf, 1, NULL, err, sizeof(err));
	if (cur == NULL) {
		log_err("setup error=\"%s\"", err);
		return 1;
	}
	tls_global = &cur->tls;
	if (blocked_start(cur->conf, err, sizeof(err)) < 0) {
		log_err("blocked setup error=\"%s\"", err);
		return 1;
	}
	log_info("master start version=%s config=%s listen-port=%u queue=%u workers=%u spoof=%s",
	    SMTPGW_VERSION, path, conf->listen_port, conf->queue, worker_count(conf),
	    conf->spoof_source ? "yes" : "no");

	if (spawn_ready(cur, ROLE_WORKER, worker_count(conf), false) < 0 ||
	    spawn_ready(cur, ROLE_CLASSIFIER, 1, false) < 0) {
		signal_children(SIGTERM, false);
		wait_children(2000);
		while (gens)
			gen_free(gens);
		return 1;
	}
	if (pidfile && write_pidfile(pidfile) < 0)
		log_warn("pidfile path=%s error=\"%s\"", pidfile, strerror(errno));
	st.pid = getpid();
	st.version = SMTPGW_VERSION;
	st.config = path;
	st.started = time(NULL);
	st.generation = 1;
	st.reload_result = RELOAD_NONE;
	status_refresh();
	log_info("master ready");
	rc = supervise(path);
	if (pidfile)
		unlink(pidfile);
	if (statusfile)
		unlink(statusfile);
	return rc;
}
