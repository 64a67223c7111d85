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
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
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
#include "quota.h"
#include "signer.h"
#include "tls.h"
#include "listen.h"
#include "log.h"
#include "classifier.h"
#include "priv.h"
#include "status.h"
#include "util.h"
#include "worker.h"

#define DEFAULT_CONF "/etc/smtpgw/smtpgw.conf"
#define MAX_CHILDREN 160
#define READY_TIMEOUT_MS 10000
/* More respawns than this within RESPAWN_WINDOW_S means something is broken. */
#define RESPAWN_LIMIT 10
#define RESPAWN_WINDOW_S 60

enum role { ROLE_CLASSIFIER, ROLE_WORKER };

struct child {
	pid_t pid;
	enum role role;
	bool draining; /* old generation after a reload: not respawned */
};

static struct child children[MAX_CHILDREN];
static struct config *conf;
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
	    "  -d          debug logging (every classification decision)\n"
	    "  -h          this help\n"
	    "  -V          print the version\n"
	    "\n"
	    "Signals: SIGTERM/SIGINT stop; SIGHUP reloads the configuration (sessions in\n"
	    "progress finish under the configuration they started with); SIGUSR2\n"
	    "rewrites the status file and makes every worker log its counters.\n"
	    "Must start as root (or with CAP_NET_ADMIN); children run as the configured\n"
	    "user with only CAP_NET_ADMIN (classifier) or CAP_NET_RAW (workers, when\n"
	    "spoof-source is on).\n");
}

static void
child_sig(int sig)
{
	(void)sig;
	child_stop = 1;
}

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

/* Runs in the child; never returns. */
static void NORETURN
child_run(enum role role, int ready_fd)
{
	char err[256];
	sigset_t none;
	int rc;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(0); /* the master is already gone */
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
		log_set_procname("classify");
		for (int i = 0; i < 2; i++)
			if (lfds[i] >= 0)
				close(lfds[i]);
		cap_value_t keep[] = { CAP_NET_ADMIN };
		if (priv_drop(conf->user, keep, 1, err, sizeof(err)) < 0) {
			log_err("classify privileges error=\"%s\"", err);
			_exit(1);
		}
		(void)!write(ready_fd, "c", 1);
		close(ready_fd);
		rc = classifier_run(queue, conf, &child_stop);
		_exit(rc < 0 ? 1 : 0);
	}

	log_set_procname("worker");
	signal(SIGCHLD, SIG_DFL);
	classifier_close(queue);
	cap_value_t keep[] = { CAP_NET_RAW };
	if (priv_drop(conf->user, keep, conf->spoof_source ? 1 : 0, err, sizeof(err)) < 0) {
		log_err("worker privileges error=\"%s\"", err);
		_exit(1);
	}
	(void)!write(ready_fd, "w", 1);
	close(ready_fd);
	/* worker_main blocks the signals it handles through its signalfd */
	rc = worker_main(conf, lfds, 2);
	_exit(rc < 0 ? 1 : 0);
}

static pid_t
spawn(enum role role, int ready_fd)
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
		child_run(role, ready_fd);
	}
	children[slot].pid = pid;
	children[slot].role = role;
	children[slot].draining = false;
	return pid;
}

/* Spawn a classifier and the workers; wait until each reported ready. */
static int
spawn_generation(void)
{
	int p[2];
	unsigned want = 1 + worker_count(conf), got = 0;
	uint64_t deadline = now_ms() + READY_TIMEOUT_MS;

	if (pipe2(p, O_CLOEXEC) < 0)
		fatal("pipe: %s", strerror(errno));
	if (spawn(ROLE_CLASSIFIER, p[1]) < 0)
		goto fail;
	for (unsigned i = 0; i < want - 1; i++)
		if (spawn(ROLE_WORKER, p[1]) < 0)
			goto fail;
	close(p[1]);
	while (got < want) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		char b[16];
		uint64_t now = now_ms();

		if (now >= deadline)
			break;
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		ssize_t n = read(p[0], b, sizeof(b));
		if (n <= 0)
			break; /* every child closed its end: someone died before ready */
		got += (unsigned)n;
	}
	close(p[0]);
	if (got < want) {
		log_err("startup failed: %u of %u children ready", got, want);
		return -1;
	}
	return 0;
fail:
	close(p[0]);
	close(p[1]);
	return -1;
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
				children[i].pid = 0;
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

/* Fill the children's part of the status from the table and write it. */
static void
status_refresh(void)
{
	static bool warned;
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
	st.workers_expected = worker_count(conf);
	st.sessions = quota_total();
	st.seq++;
	if (status_write(statusfile, &st, err, sizeof(err)) < 0) {
		if (!warned)
			log_warn("status file error=\"%s\"", err);
		warned = true;
	} else {
		warned = false;
	}
}

/*
 * SIGHUP: read the file again; if it is valid, start a new classifier and
 * new workers with it and let the old workers drain.  An invalid file
 * changes nothing.
 */
static enum reload_result
reload(const char *path, char *why, size_t whylen)
{
	char err[512];
	struct config *nc = xmalloc(sizeof(*nc));

	why[0] = '\0';
	if (config_load(nc, path, err, sizeof(err)) < 0) {
		log_err("reload rejected error=\"%s\" (the running configuration stays)", err);
		snprintf(why, whylen, "%s", err);
		free(nc);
		return RELOAD_REJECTED;
	}
	if (nc->listen_port != conf->listen_port || nc->queue != conf->queue ||
	    nc->user[0] != conf->user[0] || strcmp(nc->user, conf->user) != 0) {
		log_err("reload rejected error=\"listen-port, queue and user change only on restart\"");
		snprintf(why, whylen, "listen-port, queue and user change only on restart");
		free(nc);
		return RELOAD_REJECTED;
	}
	/* The queue has one reader: stop the old classifier first (SYNs wait in the kernel). */
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i].pid > 0 && children[i].role == ROLE_CLASSIFIER) {
			kill(children[i].pid, SIGTERM);
			waitpid(children[i].pid, NULL, 0);
			children[i].pid = 0;
		} else if (children[i].pid > 0) {
			children[i].draining = true;
			kill(children[i].pid, SIGUSR1);
		}
	}
	/* Old workers keep pointing into their own copy of the old config. */
	if (tls_reload(nc, err, sizeof(err)) < 0) {
		log_err("reload rejected error=\"tls: %s\" (the running configuration stays)", err);
		snprintf(why, whylen, "tls: %.400s", err);
		free(nc);
		return RELOAD_REJECTED;
	}
	free(conf);
	conf = nc;
	blocked_reconfigure(conf);
	if (spawn_generation() < 0) {
		log_err("reload: new generation failed to start");
		snprintf(why, whylen, "the new classifier or workers failed to start (see the log)");
		return RELOAD_FAILED;
	}
	log_info("reload done zones=%d policies=%d workers=%u", conf->n_zones,
	    conf->n_policies, worker_count(conf));
	return RELOAD_OK;
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
		int sig = sigwaitinfo(&set, &si);

		if (sig == SIGTERM || sig == SIGINT) {
			log_info("master stop signal=%d", sig);
			signal_children(SIGTERM, false);
			wait_children(5000);
			signer_stop();
			blocked_stop();
			return 0;
		}
		if (sig == SIGHUP) {
			log_info("master reload file=%s", path);
			st.reload_result = reload(path, st.reload_error, sizeof(st.reload_error));
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
			if (signer_reaped(pid) || blocked_reaped(pid))
				continue;
			for (int i = 0; i < MAX_CHILDREN; i++) {
				if (children[i].pid != pid)
					continue;
				enum role role = children[i].role;
				bool draining = children[i].draining;

				children[i].pid = 0;
				/* its sessions are gone with it */
				quota_clear_slot((unsigned)i);
				if (draining) {
					log_info("master drained worker pid=%d", (int)pid);
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
					return 1;
				}
				int p[2];
				if (pipe2(p, O_CLOEXEC) == 0) {
					if (spawn(role, p[1]) > 0) {
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

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_CONF;
	char err[512];
	bool check = false, debug = false, dump = false;
	sigset_t set;
	int ch, rc;

	while ((ch = getopt(argc, argv, "c:dDhp:s:tV")) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
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
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	conf = xmalloc(sizeof(*conf));
	if (config_load(conf, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "smtpgw: %s\n", err);
		return 1;
	}
	for (int i = 0; i < conf->n_warnings; i++)
		fprintf(stderr, "smtpgw: %s\n", conf->warnings[i]);
	if (dump) {
		config_dump(conf, stdout);
		return 0;
	}
	if (check) {
		printf("smtpgw: %s: configuration OK (%d zones, %d policies, %d actions, "
		    "%d TLS profiles, %d warnings)\n", path, conf->n_zones, conf->n_policies,
		    conf->n_actions, conf->n_profiles, conf->n_warnings);
		return 0;
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

	if (quota_init(MAX_CHILDREN) < 0) {
		log_err("session limits: cannot map shared memory: %s", strerror(errno));
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
	 * TLS material: generated on first start, loaded before any worker
	 * exists.  CA keys are never loaded here: only the signer reads them.
	 */
	static struct tls_material material;
	if (tls_prepare_files(conf, err, sizeof(err)) < 0 ||
	    tls_load(conf, &material, err, sizeof(err)) < 0) {
		log_err("tls setup error=\"%s\"", err);
		return 1;
	}
	tls_global = &material;
	if (signer_start(conf, material.leaf_key, err, sizeof(err)) < 0) {
		log_err("signer setup error=\"%s\"", err);
		return 1;
	}
	if (blocked_start(conf, err, sizeof(err)) < 0) {
		log_err("blocked setup error=\"%s\"", err);
		return 1;
	}
	log_info("master start version=%s config=%s listen-port=%u queue=%u workers=%u spoof=%s",
	    SMTPGW_VERSION, path, conf->listen_port, conf->queue, worker_count(conf),
	    conf->spoof_source ? "yes" : "no");

	if (spawn_generation() < 0) {
		signal_children(SIGTERM, false);
		wait_children(2000);
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
