/*
 * test_certcache - the worker's asynchronous requests to a real signer.
 *
 * This process plays the master (it starts the signer child with
 * signer_new, reaps and respawns it) and a worker (its event loop drives
 * the requests).  A test CA issues the "upstream" certificates; a TLS
 * profile trusts it through its ca-file, exactly as on the gateway.
 * Covered: a forged leaf signed by the CA the signer's own verdict
 * allows (and verifying against that CA), the signer overruling a worker
 * that asks for the Proxy Authority, the profile's block, identical
 * requests sent once, the timeout with a stalled signer (and its late
 * reply ignored), cancel (the callback never runs, nothing leaks or is
 * touched after free), the bounded queue, the rate limit, the signer
 * dying with requests in flight and its respawned successor answering
 * them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "certcache.h"
#include "config.h"
#include "ev.h"
#include "signer.h"
#include "tls.h"
#include "util.h"

static struct {
	char dir[64];
	struct config conf;
	struct tls_material m;
	X509 *root;
	EVP_PKEY *rootkey, *srvkey;
	X509 *good;    /* for mx.example.test, issued by root */
	X509 *other;   /* for other.example.test, issued by root */
	X509 *alien;   /* self-signed */
	struct signer *signer;
	char user[64];
} T;

/* What the callbacks saw. */
struct seen {
	int calls;
	X509 *leaf;
	bool trusted;
	char why[200];
};

static struct ev_timer guard;
static bool guard_fired;
static int answered; /* callbacks run, all tests */

static void
guard_cb(struct ev_timer *t)
{
	(void)t;
	guard_fired = true;
	ev_break();
}

/* Run the loop until *done or ms pass. */
static void
run_until(const int *done, int want, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	guard_fired = false;
	while (*done < want && now_ms() < end) {
		ev_timer_arm(&guard, 20, guard_cb);
		ev_loop();
	}
	ev_timer_cancel(&guard);
}

static void
seen_cb(void *arg, X509 *leaf, bool trusted, const char *why)
{
	struct seen *s = arg;

	s->calls++;
	answered++;
	X509_free(s->leaf);
	s->leaf = leaf;
	s->trusted = trusted;
	snprintf(s->why, sizeof(s->why), "%s", why ? why : "");
}

static void
seen_clear(struct seen *s)
{
	X509_free(s->leaf);
	memset(s, 0, sizeof(*s));
}

static X509 *
make_cert(const char *cn, bool self_signed)
{
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ex;
	char san[128];

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)now_ms());
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, T.srvkey);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(self_signed ? x : T.root));
	snprintf(san, sizeof(san), "DNS:%s", cn);
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, self_signed ? x : T.root, x, NULL, NULL, 0);
	ex = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
	X509_add_ext(x, ex, -1);
	X509_EXTENSION_free(ex);
	X509_sign(x, self_signed ? T.srvkey : T.rootkey, EVP_sha256());
	return x;
}

static STACK_OF(X509) *
chain_of(X509 *x)
{
	STACK_OF(X509) *sk = sk_X509_new_null();

	X509_up_ref(x);
	sk_X509_push(sk, x);
	return sk;
}

static struct certcache_req *
ask(X509 *up, const char *ref, int profile, bool trusted, struct seen *s, const char **why)
{
	STACK_OF(X509) *chain = chain_of(up);
	struct certcache_query q = { .chain = chain, .refname = ref, .profile = profile,
		.trusted = trusted };
	struct certcache_req *r = certcache_request(&q, seen_cb, s, why);

	sk_X509_pop_free(chain, X509_free);
	return r;
}

/* The leaf was signed by ca, and carries the upstream's names. */
static void
assert_signed_by(X509 *leaf, X509 *ca, X509 *up)
{
	assert_non_null(leaf);
	assert_int_equal(X509_verify(leaf, X509_get0_pubkey(ca)), 1);
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(ca)), 0);
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(leaf), X509_get_subject_name(up)), 0);
}

static void
start_signer(unsigned rate)
{
	char err[400];

	T.conf.signer_rate_limit = rate;
	T.signer = signer_new(&T.conf, &T.m, 1, T.user, 1, NULL, err, sizeof(err));
	if (T.signer == NULL)
		fail_msg("signer_new: %s", err);
	signer_worker_attach(signer_reg_fd(T.signer));
}

static int
setup(void **state)
{
	char err[400], path[128];
	FILE *f;
	struct passwd *pw;

	(void)state;
	snprintf(T.dir, sizeof(T.dir), "/tmp/smtpgw-test-certcache.XXXXXX");
	assert_non_null(mkdtemp(T.dir));
	/* root may drop to nobody; anyone else stays who they are */
	pw = getpwuid(geteuid());
	snprintf(T.user, sizeof(T.user), "%s", geteuid() == 0 ? "nobody" : pw ? pw->pw_name : "x");
	assert_int_equal(tls_make_ca("test root", &T.root, &T.rootkey), 0);
	T.srvkey = EVP_EC_gen("P-256");
	snprintf(path, sizeof(path), "%s/root.pem", T.dir);
	f = fopen(path, "w");
	PEM_write_X509(f, T.root);
	fclose(f);
	T.good = make_cert("mx.example.test", false);
	T.other = make_cert("other.example.test", false);
	T.alien = make_cert("mx.example.test", true);

	config_defaults(&T.conf);
	snprintf(T.conf.path, sizeof(T.conf.path), "test.conf");
	snprintf(T.conf.tls_dir, sizeof(T.conf.tls_dir), "%s/tls", T.dir);
	snprintf(T.conf.trust_store, sizeof(T.conf.trust_store), "%s", path);
	/* profile 1: untrusted-sign (the default), with the root as ca-file */
	T.conf.profiles[1] = T.conf.profiles[0];
	snprintf(T.conf.profiles[1].name, sizeof(T.conf.profiles[1].name), "P1");
	snprintf(T.conf.profiles[1].ca_file, sizeof(T.conf.profiles[1].ca_file), "%s", path);
	T.conf.profiles[1].ocsp = false;
	/* profile 2: name mismatch blocks */
	T.conf.profiles[2] = T.conf.profiles[1];
	snprintf(T.conf.profiles[2].name, sizeof(T.conf.profiles[2].name), "P2");
	T.conf.profiles[2].on_fail[CF_NAME_MISMATCH] = CERTFAIL_BLOCK;
	T.conf.n_profiles = 3;
	if (tls_prepare_files(&T.conf, err, sizeof(err)) < 0 ||
	    tls_load(&T.conf, &T.m, NULL, err, sizeof(err)) < 0)
		fail_msg("tls: %s", err);
	ev_init();
	certcache_init(100);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	signer_free(T.signer);
	tls_material_free(&T.m);
	X509_free(T.root);
	X509_free(T.good);
	X509_free(T.other);
	X509_free(T.alien);
	EVP_PKEY_free(T.rootkey);
	EVP_PKEY_free(T.srvkey);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", T.dir);
	(void)!system(cmd);
	return 0;
}

static int
before(void **state)
{
	(void)state;
	certcache_init(100); /* an empty cache: every test asks the signer */
	certcache_set_limits(CERTCACHE_MAX_PENDING, 2000);
	if (T.signer == NULL)
		start_signer(0);
	return 0;
}

static void
test_verdict_decides_the_ca(void **state)
{
	struct seen a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	const char *why;
	int done = 0;

	(void)state;
	/* valid chain, matching name: the Proxy Authority */
	assert_non_null(ask(T.good, "mx.example.test", 1, true, &a, &why));
	/* the signer's verdict overrules the worker: wrong name -> untrusted CA */
	assert_non_null(ask(T.good, "wrong.example.test", 1, true, &b, &why));
	/* a chain nobody trusts: the untrusted CA, whatever the worker says */
	assert_non_null(ask(T.alien, "mx.example.test", 1, true, &c, &why));
	/* the profile blocks a name mismatch: refused */
	assert_non_null(ask(T.other, "mx.example.test", 2, true, &d, &why));
	assert_int_equal(certcache_pending(), 4);
	done = answered + 4;
	run_until(&answered, done, 5000);
	assert_int_equal(a.calls + b.calls + c.calls + d.calls, 4);
	assert_int_equal(certcache_pending(), 0);
	assert_true(a.trusted);
	assert_signed_by(a.leaf, T.m.pa_cert, T.good);
	assert_false(b.trusted);
	assert_signed_by(b.leaf, T.m.ua_cert, T.good);
	assert_false(c.trusted);
	assert_signed_by(c.leaf, T.m.ua_cert, T.alien);
	assert_null(d.leaf);
	assert_non_null(strstr(d.why, "refused"));
	/* cached: by the upstream certificate and the CA that signed */
	X509 *hit = certcache_lookup(T.good, true);
	assert_non_null(hit);
	assert_int_equal(X509_cmp(hit, a.leaf), 0);
	X509_free(hit);
	assert_null(certcache_lookup(T.other, true));
	seen_clear(&a);
	seen_clear(&b);
	seen_clear(&c);
	seen_clear(&d);
}

static void
test_identical_requests_share_one(void **state)
{
	struct seen a = { 0 }, b = { 0 };
	unsigned long h0, m0, h1, m1;
	const char *why;
	int done = 0;

	(void)state;
	certcache_stats(&h0, &m0);
	assert_non_null(ask(T.other, "other.example.test", 1, true, &a, &why));
	assert_non_null(ask(T.other, "other.example.test", 1, true, &b, &why));
	certcache_stats(&h1, &m1);
	assert_int_equal(m1 - m0, 1); /* one request on the wire */
	done = answered + 2;
	run_until(&answered, done, 5000);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_int_equal(X509_cmp(a.leaf, b.leaf), 0);
	seen_clear(&a);
	seen_clear(&b);
}

static void
test_timeout_with_a_stalled_signer(void **state)
{
	struct seen a = { 0 }, b = { 0 };
	pid_t pid = signer_pid(T.signer);
	const char *why;
	uint64_t t0;

	(void)state;
	certcache_set_limits(8, 300);
	kill(pid, SIGSTOP);
	t0 = now_ms();
	assert_non_null(ask(T.good, "mx.example.test", 1, true, &a, &why));
	run_until(&a.calls, 1, 3000);
	assert_int_equal(a.calls, 1);
	assert_null(a.leaf);
	assert_non_null(strstr(a.why, "did not answer"));
	assert_true(now_ms() - t0 >= 300);
	assert_int_equal(certcache_pending(), 0);
	/* the signer wakes up: its late answer is dropped, the next request is served */
	kill(pid, SIGCONT);
	certcache_set_limits(8, 2000);
	assert_non_null(ask(T.good, "mx.example.test", 1, true, &b, &why));
	run_until(&b.calls, 1, 3000);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_non_null(b.leaf);
	seen_clear(&a);
	seen_clear(&b);
}

static void
test_cancel(void **state)
{
	struct seen a = { 0 }, b = { 0 }, c = { 0 };
	struct certcache_req *ra, *rb;
	pid_t pid = signer_pid(T.signer);
	const char *why;

	(void)state;
	/* cancelled before it could be sent */
	ra = ask(T.good, "mx.example.test", 1, true, &a, &why);
	assert_non_null(ra);
	certcache_cancel(ra);
	assert_int_equal(certcache_pending(), 0);
	/* cancelled while the signer works on it (stalled: surely in flight) */
	kill(pid, SIGSTOP);
	rb = ask(T.other, "other.example.test", 1, true, &b, &why);
	assert_non_null(rb);
	run_until(&b.calls, 1, 100); /* sends it */
	certcache_cancel(rb);
	kill(pid, SIGCONT);
	assert_non_null(ask(T.alien, "mx.example.test", 1, false, &c, &why));
	run_until(&c.calls, 1, 3000);
	assert_int_equal(c.calls, 1);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 0);
	/* the cancelled one's answer still filled the cache */
	X509 *hit = certcache_lookup(T.other, true);
	assert_non_null(hit);
	X509_free(hit);
	seen_clear(&c);
}

static void
test_queue_is_bounded(void **state)
{
	struct seen s[3] = { { 0 } };
	struct certcache_req *r[3];
	pid_t pid = signer_pid(T.signer);
	const char *why = NULL;

	(void)state;
	certcache_set_limits(2, 2000);
	kill(pid, SIGSTOP);
	r[0] = ask(T.good, "a.example.test", 1, false, &s[0], &why);
	r[1] = ask(T.good, "b.example.test", 1, false, &s[1], &why);
	assert_non_null(r[0]);
	assert_non_null(r[1]);
	r[2] = ask(T.good, "c.example.test", 1, false, &s[2], &why);
	assert_null(r[2]);
	assert_non_null(why);
	assert_non_null(strstr(why, "too many"));
	certcache_cancel(r[0]);
	certcache_cancel(r[1]);
	kill(pid, SIGCONT);
	run_until(&s[0].calls, 1, 200);
	assert_int_equal(s[0].calls + s[1].calls + s[2].calls, 0);
}

static void
test_signer_death_and_respawn(void **state)
{
	struct seen a = { 0 };
	pid_t pid = signer_pid(T.signer), pid2;
	const char *why;
	int status;

	(void)state;
	certcache_set_limits(8, 4000);
	kill(pid, SIGSTOP);
	assert_non_null(ask(T.good, "mx.example.test", 1, true, &a, &why));
	run_until(&a.calls, 1, 100); /* sent, not answered */
	assert_int_equal(a.calls, 0);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* the master's part: the signer is started again with its generation's copies */
	assert_true(signer_reaped(pid, status));
	pid2 = signer_pid(T.signer);
	assert_true(pid2 > 0 && pid2 != pid);
	run_until(&a.calls, 1, 3000);
	assert_int_equal(a.calls, 1);
	assert_true(a.trusted);
	assert_signed_by(a.leaf, T.m.pa_cert, T.good);
	seen_clear(&a);
}

static void
test_rate_limit(void **state)
{
	struct seen s[3] = { { 0 } };
	const char *why;
	int done = 0;

	(void)state;
	signer_free(T.signer);
	start_signer(2); /* two a minute */
	assert_non_null(ask(T.good, "a.example.test", 1, false, &s[0], &why));
	assert_non_null(ask(T.good, "b.example.test", 1, false, &s[1], &why));
	assert_non_null(ask(T.good, "c.example.test", 1, false, &s[2], &why));
	done = answered + 3;
	run_until(&answered, done, 5000);
	assert_non_null(s[0].leaf);
	assert_non_null(s[1].leaf);
	assert_null(s[2].leaf);
	assert_non_null(strstr(s[2].why, "rate limit"));
	for (int i = 0; i < 3; i++)
		seen_clear(&s[i]);
	signer_free(T.signer);
	T.signer = NULL; /* the next test starts one without limit */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_verdict_decides_the_ca, before),
		cmocka_unit_test_setup(test_identical_requests_share_one, before),
		cmocka_unit_test_setup(test_timeout_with_a_stalled_signer, before),
		cmocka_unit_test_setup(test_cancel, before),
		cmocka_unit_test_setup(test_queue_is_bounded, before),
		cmocka_unit_test_setup(test_signer_death_and_respawn, before),
		cmocka_unit_test_setup(test_rate_limit, before),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
