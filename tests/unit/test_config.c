/*
 * test_config - config_parse: what a valid file yields, and that every
 * documented error names the file and the line it is about.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define NAME "t.conf"

static struct config *conf; /* ~1 MB: heap, once per run */
static char err[512];

static int
parse(const char *text)
{
	return config_parse(conf, NAME, text, strlen(text), err, sizeof(err));
}

static void
parse_ok(const char *text)
{
	if (parse(text) != 0)
		fail_msg("unexpected error: %s", err);
}

static int
setup(void **state)
{
	conf = malloc(sizeof(*conf));
	return conf == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	free(conf);
	return 0;
}

/* The shape of tests/testbed/smtpgw.conf; line numbers matter below. */
static const char testbed_conf[] =
    "# smtpgw configuration used by the netns testbed's gateway.\n" /*  1 */
    "\n"                                                             /*  2 */
    "[global]\n"                                                     /*  3 */
    "# transparent listeners on 127.0.0.1 and ::1\n"                 /*  4 */
    "listen-port = 10025\n"                                          /*  5 */
    "queue = 0\n"                                                    /*  6 */
    "workers = 2\n"                                                  /*  7 */
    "user = nobody\n"                                                /*  8 */
    "spoof-source = yes\n"                                           /*  9 */
    "connect-timeout = 10\n"                                         /* 10 */
    "\n"                                                             /* 11 */
    "[zone trusted]\n"                                               /* 12 */
    "interfaces = lan0\n"                                            /* 13 */
    "\n"                                                             /* 14 */
    "[zone external]\n"                                              /* 15 */
    "interfaces = wan0\n"                                            /* 16 */
    "\n"                                                             /* 17 */
    "[policy SMTP-Proxy-Out]\n"                                      /* 18 */
    "from = trusted\n"                                               /* 19 */
    "to = external\n"                                                /* 20 */
    "action = SMTP-Outgoing.Standard\n"                              /* 21 */
    "\n"                                                             /* 22 */
    "[policy SMTP-Proxy-In]\n"                                       /* 23 */
    "from = external\n"                                              /* 24 */
    "to = trusted\n"                                                 /* 25 */
    "action = SMTP-Incoming.Standard\n";                             /* 26 */

static void
test_testbed_shape(void **state)
{
	const struct conf_policy *out, *in;

	parse_ok(testbed_conf);
	assert_string_equal(conf->path, NAME);
	assert_int_equal(conf->listen_port, 10025);
	assert_int_equal(conf->queue, 0);
	assert_int_equal(conf->workers, 2);
	assert_string_equal(conf->user, "nobody");
	assert_true(conf->spoof_source);
	assert_int_equal(conf->connect_timeout, 10);

	assert_int_equal(conf->n_zones, 2);
	assert_string_equal(conf->zones[0].name, "trusted");
	assert_int_equal(conf->zones[0].line, 12);
	assert_int_equal(conf->zones[0].n_ifaces, 1);
	assert_string_equal(conf->zones[0].ifaces[0], "lan0");
	assert_false(conf->zones[0].external);
	/* The zone called "external" is external without saying so. */
	assert_string_equal(conf->zones[1].name, "external");
	assert_true(conf->zones[1].external);
	assert_int_equal(config_zone_of_iface(conf, "wan0"), 1);
	assert_int_equal(config_zone_of_iface(conf, "eth0"), -1);
	assert_int_equal(config_zone_index(conf, "external"), 1);
	assert_int_equal(config_zone_index(conf, "dmz"), -1);

	assert_int_equal(conf->n_policies, 2);
	out = &conf->policies[0];
	assert_string_equal(out->name, "SMTP-Proxy-Out");
	assert_int_equal(out->line, 18);
	assert_int_equal(out->n_from, 1);
	assert_int_equal(out->from[0], 0);
	assert_int_equal(out->n_to, 1);
	assert_int_equal(out->to[0], 1);
	assert_int_equal(out->n_src, 0);
	assert_int_equal(out->n_dst, 0);
	assert_string_equal(out->action, "SMTP-Outgoing.Standard");
	/* Policy defaults. */
	assert_int_equal(out->tls_support, TLS_SUPPORT_ENABLED);
	assert_int_equal(out->type, POLICY_PROXY);
	assert_true(out->enabled);
	in = &conf->policies[1];
	assert_string_equal(in->name, "SMTP-Proxy-In");
	assert_int_equal(in->from[0], 1);
	assert_int_equal(in->to[0], 0);
}

/*
 * The real testbed file must keep parsing (config_load path included).
 * It is a template: the testbed fills in @TESTBED_CA_CERT@, so do we.
 */
static void
test_testbed_file_loads(void **state)
{
	const char *src = SMTPGW_SRCDIR "/tests/testbed/smtpgw.conf";
	char path[64], line[1200];
	FILE *in = fopen(src, "r"), *out;

	assert_non_null(in);
	snprintf(path, sizeof(path), "/tmp/smtpgw-test-%d.conf", (int)getpid());
	out = fopen(path, "w");
	assert_non_null(out);
	while (fgets(line, sizeof(line), in)) {
		char *ph = strstr(line, "@TESTBED_CA_CERT@");
		if (ph) {
			*ph = '\0';
			fprintf(out, "%s/tmp/testbed-ca.crt%s", line, ph + strlen("@TESTBED_CA_CERT@"));
		} else {
			fputs(line, out);
		}
	}
	fclose(in);
	fclose(out);
	int rc = config_load(conf, path, err, sizeof(err));
	unlink(path);
	if (rc != 0)
		fail_msg("%s", err);
	assert_string_equal(conf->path, path);
	assert_true(conf->n_zones > 0);
	assert_true(conf->n_policies > 0);
	assert_true(config_action_index(conf, "Testbed-Outgoing") >= 0);
	config_free(conf); /* its actions' rulesets (the next test loads over it) */
}

static void
test_load_missing_file(void **state)
{
	assert_int_equal(config_load(conf, "/nonexistent/smtpgw.conf", err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/smtpgw.conf: cannot open: No such file or directory");
	assert_int_equal(config_load(conf, "/", err, sizeof(err)), -1);
	assert_string_equal(err, "/: not a regular file");
}

static void
test_defaults(void **state)
{
	parse_ok("");
	assert_int_equal(conf->listen_port, 10025);
	assert_int_equal(conf->queue, 0);
	assert_int_equal(conf->workers, 0);
	assert_string_equal(conf->user, "nobody");
	assert_true(conf->spoof_source);
	assert_int_equal(conf->connect_timeout, 30);
	assert_int_equal(conf->max_sessions, 2000);
	assert_int_equal(conf->max_sessions_per_client, 100);
	assert_int_equal(conf->log, LOG_TO_STDERR);
	/* one user per role; unset ones may fall back (main.c), so say so */
	assert_string_equal(conf->signer_user, "smtpgw-signer");
	assert_string_equal(conf->classifier_user, "smtpgw-classify");
	assert_false(conf->signer_user_set);
	assert_false(conf->classifier_user_set);
	assert_int_equal(conf->signer_rate_limit, 600);
	assert_int_equal(conf->n_zones, 0);
	assert_int_equal(conf->n_policies, 0);
	assert_string_equal(conf->spool_dir, "/var/spool/smtpgw");
	assert_int_equal(conf->smtp.t_inspect, 120);
	assert_int_equal(conf->smtp.on_inspect_timeout, INSPECT_TIMEOUT_TEMPFAIL);
	assert_int_equal(conf->smtp.hold, HOLD_WHEN_NEEDED);
	assert_int_equal(conf->smtp.hold_memory, 256 * 1024);
	assert_int_equal(conf->smtp.dkim_protect, DKIM_PROTECT_DENY);
	assert_string_equal(err, "");
}

/* Content inspection: global defaults, an action of its own. */
static void
test_inspection_keys(void **state)
{
	parse_ok("[global]\nspool-dir = /data/spool\ninspect-timeout = 30\n"
	    "inspect-timeout-action = allow\nhold-memory = 4096\n"
	    "[action strict]\nhold = always\ninspect-timeout-action = deny\n"
	    "dkim-protect = change-anyway\ninspect-timeout = 3600\nhold-memory = 1073741824\n");
	assert_string_equal(conf->spool_dir, "/data/spool");
	assert_int_equal(conf->smtp.t_inspect, 30);
	assert_int_equal(conf->smtp.on_inspect_timeout, INSPECT_TIMEOUT_ALLOW);
	assert_int_equal(conf->smtp.hold_memory, 4096);
	const struct smtp_limits *a = &conf->actions[config_action_index(conf, "strict")].smtp;
	assert_int_equal(a->hold, HOLD_ALWAYS);
	assert_int_equal(a->on_inspect_timeout, INSPECT_TIMEOUT_DENY);
	assert_int_equal(a->dkim_protect, DKIM_PROTECT_CHANGE);
	assert_int_equal(a->t_inspect, 3600);
	assert_int_equal(a->hold_memory, 1073741824);
	/* the predefined actions follow [global] */
	a = &conf->actions[config_action_index(conf, "SMTP-Incoming.Standard")].smtp;
	assert_int_equal(a->hold, HOLD_WHEN_NEEDED);
	assert_int_equal(a->t_inspect, 30);
}

static void
test_global_keys(void **state)
{
	parse_ok("[global]\n"
	    "listen-port = 65535\n"
	    "queue = 65535\n"
	    "workers = 64\n"
	    "user = smtpgw\n"
	    "spoof-source = off\n"
	    "connect-timeout = 600\n"
	    "max-sessions = 1000000\n"
	    "max-sessions-per-client = 1\n"
	    "signer-user = _smtpgw-signer\n"
	    "classifier-user = classify\n"
	    "signer-rate-limit = 0\n"
	    "log = syslog\n");
	assert_string_equal(conf->signer_user, "_smtpgw-signer");
	assert_string_equal(conf->classifier_user, "classify");
	assert_true(conf->signer_user_set && conf->classifier_user_set);
	assert_int_equal(conf->signer_rate_limit, 0);
	assert_int_equal(conf->listen_port, 65535);
	assert_int_equal(conf->queue, 65535);
	assert_int_equal(conf->workers, 64);
	assert_string_equal(conf->user, "smtpgw");
	assert_false(conf->spoof_source);
	assert_int_equal(conf->connect_timeout, 600);
	assert_int_equal(conf->max_sessions, 1000000);
	assert_int_equal(conf->max_sessions_per_client, 1);
	assert_int_equal(conf->log, LOG_TO_SYSLOG);
}

static void
test_booleans(void **state)
{
	static const struct {
		const char *word;
		bool value;
	} cases[] = {
		{"yes", true}, {"true", true}, {"on", true},
		{"no", false}, {"false", false}, {"off", false},
	};
	char text[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[global]\nspoof-source = %s\n", cases[i].word);
		parse_ok(text);
		assert_int_equal(conf->spoof_source, cases[i].value);
	}
}

/* Comments, blank lines, indentation, CRLF and a missing final newline. */
static void
test_lexical(void **state)
{
	parse_ok("# comment\n"
	    "; also a comment\n"
	    "   \t\n"
	    "  [global]   \r\n"
	    "\tworkers\t=\t4   # four of them\r\n"
	    "user = smtpgw # the daemon's own user\n"
	    "queue = 7");
	assert_int_equal(conf->workers, 4);
	assert_int_equal(conf->queue, 7);
	assert_string_equal(conf->user, "smtpgw");

	/* '#' only starts a comment after white space. */
	assert_int_equal(parse("[global]\nuser = no#body\n"), -1);
	assert_string_equal(err, NAME ":2: user: \"no#body\" is not a valid user name");
}

static void
test_zones(void **state)
{
	parse_ok("[zone lan]\n"
	    "interfaces = eth0 eth1\tbond0.100\n"
	    "interfaces = wg0\n"
	    "[zone external]\n"
	    "interfaces = ppp0\n"
	    "external = no\n"
	    "[zone partner]\n"
	    "interfaces = vpn0\n"
	    "external = yes\n");
	assert_int_equal(conf->n_zones, 3);
	assert_int_equal(conf->zones[0].n_ifaces, 4);
	assert_string_equal(conf->zones[0].ifaces[2], "bond0.100");
	assert_string_equal(conf->zones[0].ifaces[3], "wg0");
	assert_false(conf->zones[0].external);
	assert_false(conf->zones[1].external); /* said otherwise */
	assert_true(conf->zones[2].external);
	assert_int_equal(config_zone_of_iface(conf, "wg0"), 0);
	assert_int_equal(config_zone_of_iface(conf, "vpn0"), 2);
}

/* [policy] sections keep their order: it is the match order. */
static void
test_policy_order_and_any(void **state)
{
	parse_ok("[zone a]\ninterfaces = a0\n"
	    "[zone b]\ninterfaces = b0\n"
	    "[policy zeta]\nfrom = any\nto = any\naction = z\n"
	    "[policy alpha]\nfrom = b a\nto = any\ntype = packet-filter\n"
	    "[policy mu]\nfrom = a\nto = b\nsrc = 192.0.2.0/24 2001:db8::/32\n"
	    "dst = any\ntls-support = required\nenabled = no\naction = m\n"
	    "[action z]\n[action m]\n");
	assert_int_equal(conf->n_policies, 3);
	assert_string_equal(conf->policies[0].name, "zeta");
	assert_string_equal(conf->policies[1].name, "alpha");
	assert_string_equal(conf->policies[2].name, "mu");
	assert_int_equal(conf->policies[0].line, 5);
	assert_int_equal(conf->policies[1].line, 9);
	assert_int_equal(conf->policies[2].line, 13);

	/* "any" is an empty list. */
	assert_int_equal(conf->policies[0].n_from, 0);
	assert_int_equal(conf->policies[0].n_to, 0);

	/* Zone lists keep their order; packet-filter needs no action. */
	assert_int_equal(conf->policies[1].n_from, 2);
	assert_int_equal(conf->policies[1].from[0], 1);
	assert_int_equal(conf->policies[1].from[1], 0);
	assert_int_equal(conf->policies[1].type, POLICY_PACKET_FILTER);
	assert_string_equal(conf->policies[1].action, "");

	assert_int_equal(conf->policies[2].n_src, 2);
	assert_int_equal(conf->policies[2].src[0].family, AF_INET);
	assert_int_equal(conf->policies[2].src[0].len, 24);
	assert_int_equal(conf->policies[2].src[1].family, AF_INET6);
	assert_int_equal(conf->policies[2].src[1].len, 32);
	assert_int_equal(conf->policies[2].n_dst, 0);
	assert_int_equal(conf->policies[2].tls_support, TLS_SUPPORT_REQUIRED);
	assert_false(conf->policies[2].enabled);
}

static void
test_tls_support_ports(void **state)
{
	static const struct {
		enum tls_support tls;
		uint16_t port;
		bool covered;
	} cases[] = {
		{TLS_SUPPORT_DISABLED, 25, true},
		{TLS_SUPPORT_DISABLED, 465, false},
		{TLS_SUPPORT_ENABLED, 25, true},
		{TLS_SUPPORT_ENABLED, 465, true},
		{TLS_SUPPORT_ENABLED, 587, false},
		{TLS_SUPPORT_REQUIRED, 25, false},
		{TLS_SUPPORT_REQUIRED, 465, true},
	};
	struct conf_policy p;

	memset(&p, 0, sizeof(p));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p.tls_support = cases[i].tls;
		assert_int_equal(policy_covers_port(&p, cases[i].port), cases[i].covered);
	}
	assert_string_equal(tls_support_name(TLS_SUPPORT_DISABLED), "disabled");
	assert_string_equal(tls_support_name(TLS_SUPPORT_ENABLED), "enabled");
	assert_string_equal(tls_support_name(TLS_SUPPORT_REQUIRED), "required");
}

/* A valid zone pair and policy head to build error cases on. */
#define ZONES "[zone a]\ninterfaces = a0\n[zone b]\ninterfaces = b0\n" /* lines 1-4 */
#define ZONES_AFTER_GLOBAL ZONES

static const struct {
	const char *text;
	const char *err;
} errors[] = {
	/* structure */
	{"workers = 2\n", NAME ":1: \"workers\" outside any section"},
	{"\n\n[frobnicate]\n",
	    NAME ":3: unknown section [frobnicate] (expected global, zone, policy, action or tls-profile)"},
	{"[global\n", NAME ":1: malformed section header (expected [kind name])"},
	{"[global] x\n", NAME ":1: malformed section header (expected [kind name])"},
	{"[global x]\n", NAME ":1: [global] takes no name"},
	{"[global]\nworkers\n", NAME ":2: expected \"key = value\" or [section]"},
	{"[global]\n = 2\n", NAME ":2: missing key before '='"},
	{"[global]\nuser =\n", NAME ":2: user: missing value"},
	{"[global]\nuser =   # nobody\n", NAME ":2: user: missing value"},

	/* [global] */
	{"[global]\n# x\nfoo = 1\n", NAME ":3: unknown key \"foo\" in [global]"},
	{"[global]\nlisten-port = 0\n", NAME ":2: listen-port: 0 is out of range (1..65535)"},
	{"[global]\nlisten-port = 65536\n",
	    NAME ":2: listen-port: 65536 is out of range (1..65535)"},
	{"[global]\nworkers = 65\n", NAME ":2: workers: 65 is out of range (0..64)"},
	{"[global]\nconnect-timeout = 601\n",
	    NAME ":2: connect-timeout: 601 is out of range (1..600)"},
	{"[global]\nmax-sessions = 0\n", NAME ":2: max-sessions: 0 is out of range (1..1000000)"},
	{"[global]\nqueue = -1\n", NAME ":2: queue: \"-1\" is not a number"},
	{"[global]\nqueue = +1\n", NAME ":2: queue: \"+1\" is not a number"},
	{"[global]\nworkers = 4x\n", NAME ":2: workers: \"4x\" is not a number"},
	{"[global]\nqueue = 99999999999999999999999\n",
	    NAME ":2: queue: \"99999999999999999999999\" is not a number"},
	{"[global]\nspoof-source = maybe\n",
	    NAME ":2: spoof-source: expected yes or no, got \"maybe\""},
	{"[global]\nspoof-source = YES\n", NAME ":2: spoof-source: expected yes or no, got \"YES\""},
	{"[global]\nlog = file\n", NAME ":2: log: expected stderr or syslog, got \"file\""},
	{"[global]\nuser = -x\n", NAME ":2: user: \"-x\" is not a valid user name"},
	{"[global]\nsigner-user = a:b\n", NAME ":2: signer-user: \"a:b\" is not a valid user name"},
	{"[global]\nclassifier-user = \"x\"\n",
	    NAME ":2: classifier-user: \"\"x\"\" is not a valid user name"},
	{"[global]\nsigner-rate-limit = 1000001\n",
	    NAME ":2: signer-rate-limit: 1000001 is out of range (0..1000000)"},
	{"[global]\nsigner-rate-limit = -1\n",
	    NAME ":2: signer-rate-limit: \"-1\" is not a number"},

	/* [global] scanners */
	{"[global]\nclamd-servers = /run/clamav/clamd.ctl\n",
	    NAME ":2: clamd-servers: \"/run/clamav/clamd.ctl\": expected unix:/PATH or tcp:ADDRESS:PORT"},
	{"[global]\nclamd-servers = unix:clamd.ctl\n",
	    NAME ":2: clamd-servers: \"unix:clamd.ctl\": unix: needs an absolute path"},
	{"[global]\nrspamd-servers = tcp:localhost:11333\n",
	    NAME ":2: rspamd-servers: \"tcp:localhost:11333\": \"localhost\" is not an IP address "
	    "(names are never resolved; IPv6 in brackets)"},
	{"[global]\nrspamd-servers = tcp:2001:db8::1:11333\n",
	    NAME ":2: rspamd-servers: \"tcp:2001:db8::1:11333\": \"2001:db8::1\" is not an IP "
	    "address (names are never resolved; IPv6 in brackets)"},
	{"[global]\nrspamd-servers = tcp:[192.0.2.1]:11333\n",
	    NAME ":2: rspamd-servers: \"tcp:[192.0.2.1]:11333\": \"192.0.2.1\" is not an IP "
	    "address (names are never resolved; IPv6 in brackets)"},
	{"[global]\nclamd-servers = tcp:[2001:db8::1]3310\n",
	    NAME ":2: clamd-servers: \"tcp:[2001:db8::1]3310\": expected tcp:[IPv6]:PORT"},
	{"[global]\nclamd-servers = tcp:192.0.2.60\n",
	    NAME ":2: clamd-servers: \"tcp:192.0.2.60\": expected tcp:ADDRESS:PORT"},
	{"[global]\nclamd-servers = tcp::3310\n",
	    NAME ":2: clamd-servers: \"tcp::3310\": not an IP address"},
	{"[global]\nclamd-servers = tcp:192.0.2.60:0\n",
	    NAME ":2: clamd-servers: \"tcp:192.0.2.60:0\": port must be 1..65535"},
	{"[global]\nclamd-servers = tcp:192.0.2.60:65536\n",
	    NAME ":2: clamd-servers: \"tcp:192.0.2.60:65536\": port must be 1..65535"},
	{"[global]\nclamd-servers = tcp:192.0.2.60:33x\n",
	    NAME ":2: clamd-servers: \"tcp:192.0.2.60:33x\": port must be 1..65535"},
	{"[global]\nclamd-servers = tcp:192.0.2.60:3310 tcp:192.0.2.60:3310\n",
	    NAME ":2: clamd-servers: \"tcp:192.0.2.60:3310\" listed twice"},
	{"[global]\nclamd-servers = unix:/a unix:/b unix:/c unix:/d unix:/e unix:/f unix:/g unix:/h "
	    "unix:/i\n", NAME ":2: clamd-servers: more than 8 servers"},
	{"[global]\nclamd-timeout = 0\n", NAME ":2: clamd-timeout: 0 is out of range (1..3600)"},
	{"[global]\nrspamd-connections = 0\n",
	    NAME ":2: rspamd-connections: 0 is out of range (1..1024)"},
	{"[global]\nclamd-max-size = 100\n",
	    NAME ":2: clamd-max-size: 100 is out of range (1024..4294967295)"},
	{"[global]\nrspamd-idle-timeout = 5\n", NAME ":2: unknown key \"rspamd-idle-timeout\" in [global]"},
	{"[global]\nclamd-colour = red\n", NAME ":2: unknown key \"clamd-colour\" in [global]"},

	/* [zone] */
	{"[zone]\n", NAME ":1: [zone NAME]: \"\" is not a valid name"},
	{"[zone a b]\n", NAME ":1: [zone NAME]: \"a b\" is not a valid name"},
	{"[zone a]\n[zone b]\n[zone a]\n", NAME ":3: zone \"a\" is defined twice"},
	{"[zone a]\ncolour = red\n", NAME ":2: unknown key \"colour\" in [zone a]"},
	{"[zone a]\nexternal = 1\n", NAME ":2: external: expected yes or no, got \"1\""},
	{"[zone a]\ninterfaces = eth0 a/b\n",
	    NAME ":2: interfaces: \"a/b\" is not a valid interface name"},
	{"[zone a]\ninterfaces = abcdefghijklmnop\n",
	    NAME ":2: interfaces: \"abcdefghijklmnop\" is not a valid interface name"},
	{"[zone a]\ninterfaces = eth0\n\n[zone b]\ninterfaces = eth1 eth0\n",
	    NAME ":4: interface eth0 is in zone a and zone b"},
	{"\n[zone a]\ninterfaces = eth0\ninterfaces = eth0\n",
	    NAME ":2: zone a: interface eth0 listed twice"},

	/* [policy] */
	{ZONES "[policy p]\n[policy q]\n[policy p]\n", NAME ":7: policy \"p\" is defined twice"},
	{ZONES "[policy p]\nfrom = a\nsize = 3\n", NAME ":7: unknown key \"size\" in [policy p]"},
	{ZONES "[policy p]\nto = a\naction = x\n", NAME ":5: policy p: missing \"from\" (zones or any)"},
	{ZONES "[policy p]\nfrom = a\naction = x\n", NAME ":5: policy p: missing \"to\" (zones or any)"},
	{ZONES "[policy p]\nfrom = a\nto = b\n",
	    NAME ":5: policy p: missing \"action\" (a proxy action name)"},
	{ZONES "[policy p]\nfrom = a\nto = b\ntype = proxy\n",
	    NAME ":5: policy p: missing \"action\" (a proxy action name)"},
	/* Undefined zones are reported at the policy's header line. */
	{ZONES "[policy ok]\nfrom = a\nto = b\naction = x\n\n"
	    "[policy p]\nfrom = a nowhere\nto = b\naction = x\n",
	    NAME ":10: from: zone \"nowhere\" is not defined"},
	{ZONES "[policy p]\nfrom = a\nto = c\naction = x\n[zone c2]\n",
	    NAME ":5: to: zone \"c\" is not defined"},
	/* "any" only means any when it stands alone. */
	{ZONES "[policy p]\nfrom = any a\nto = b\naction = x\n",
	    NAME ":5: from: zone \"any\" is not defined"},
	{ZONES "[policy p]\nfrom = a\nto = b\nsrc = 192.0.2.1/24\n",
	    NAME ":8: src: \"192.0.2.1/24\" is not an address or prefix (host bits must be zero)"},
	{ZONES "[policy p]\nfrom = a\nto = b\ndst = 2001:db8::1/32\n",
	    NAME ":8: dst: \"2001:db8::1/32\" is not an address or prefix (host bits must be zero)"},
	{ZONES "[policy p]\nfrom = a\nto = b\ndst = 192.0.2.0/33\n",
	    NAME ":8: dst: \"192.0.2.0/33\" is not an address or prefix (host bits must be zero)"},
	{ZONES "[policy p]\nsrc = mail.example.com\n",
	    NAME ":6: src: \"mail.example.com\" is not an address or prefix (host bits must be zero)"},
	{ZONES "[policy p]\ntls-support = optional\n",
	    NAME ":6: tls-support: expected disabled, enabled or required, got \"optional\""},
	{ZONES "[policy p]\ntype = nat\n",
	    NAME ":6: type: expected proxy or packet-filter, got \"nat\""},
	{ZONES "[policy p]\nenabled = maybe\n", NAME ":6: enabled: expected yes or no, got \"maybe\""},
	{ZONES "[policy p]\naction = a b\n",
	    NAME ":6: action: \"a b\" is not a valid proxy action name"},

	/* proxy actions, TLS profiles and the manual's rules */
	{ZONES "[policy p]\nfrom = a\nto = b\naction = nosuch\n",
	    NAME ":5: policy p: proxy action \"nosuch\" is not defined"},
	{"[action SMTP-Outgoing.Standard]\n",
	    NAME ":1: action \"SMTP-Outgoing.Standard\" is predefined and read-only (clone it under a new name)"},
	{"[tls-profile TLS-SMTP.Standard]\n",
	    NAME ":1: TLS profile \"TLS-SMTP.Standard\" is predefined and read-only (clone it under a new name)"},
	{"[action x]\n[action x]\n", NAME ":2: action \"x\" is defined twice"},
	{"[action x]\n[global]\n",
	    NAME ":2: [global] must come before the [action] sections (they start from its limits)"},
	{"[action x]\ntls-action = decrypt\n",
	    NAME ":2: tls-action: expected inspect, allow or drop, got \"decrypt\""},
	{"[action x]\nsender-encryption = maybe\n",
	    NAME ":2: sender-encryption: expected required, preferred or none, got \"maybe\""},
	{"[action x]\ntls-profile = nosuch\n", NAME ":1: action x: TLS profile \"nosuch\" is not defined"},
	{"[action x]\nmax-recipients = 0\n", NAME ":2: max-recipients: 0 is out of range (1..100000)"},
	{"[action x]\nhold = sometimes\n",
	    NAME ":2: hold: expected when-needed or always, got \"sometimes\""},
	{"[action x]\ninspect-timeout-action = drop\n",
	    NAME ":2: inspect-timeout-action: expected tempfail, deny or allow, got \"drop\""},
	{"[action x]\ndkim-protect = ignore\n",
	    NAME ":2: dkim-protect: expected deny or change-anyway, got \"ignore\""},
	{"[global]\ninspect-timeout = 0\n", NAME ":2: inspect-timeout: 0 is out of range (1..3600)"},
	{"[global]\nhold-memory = 4095\n",
	    NAME ":2: hold-memory: 4095 is out of range (4096..1073741824)"},
	{"[global]\nspool-dir = spool\n", NAME ":2: spool-dir: expected an absolute path"},
	{"[action x]\nspool-dir = /tmp\n", NAME ":2: unknown key \"spool-dir\" in [action x]"},
	{"[tls-profile t]\nmin-version = 1.4\n",
	    NAME ":2: min-version: expected 1.0, 1.1, 1.2 or 1.3, got \"1.4\""},
	{"[tls-profile t]\non-expired = ignore\n",
	    NAME ":2: on-expired: expected allow, untrusted-sign or block, got \"ignore\""},
	{"[tls-profile t]\nciphers = ALL;rm\n", NAME ":2: ciphers: \"ALL;rm\" is not an OpenSSL cipher string"},
	{"[tls-profile t]\nca-file = certs.pem\n", NAME ":2: ca-file: expected an absolute path"},
	{"[tls-profile t]\non-no-reference-name = allow\n",
	    NAME ":2: on-no-reference-name: expected chain-only, untrusted-sign, block or name:HOST, "
	    "got \"allow\""},
	{"[tls-profile t]\non-no-reference-name = name:\n",
	    NAME ":2: on-no-reference-name: expected chain-only, untrusted-sign, block or name:HOST, "
	    "got \"name:\""},
	{"[tls-profile t]\non-no-reference-name = name:a..b\n",
	    NAME ":2: on-no-reference-name: expected chain-only, untrusted-sign, block or name:HOST, "
	    "got \"name:a..b\""},
	{"[tls-profile t]\non-no-reference-name = name:-a.test\n",
	    NAME ":2: on-no-reference-name: expected chain-only, untrusted-sign, block or name:HOST, "
	    "got \"name:-a.test\""},
	{"[tls-profile t]\nallow-cn-fallback = sometimes\n",
	    NAME ":2: allow-cn-fallback: expected yes or no, got \"sometimes\""},
	/* actions no session could ever satisfy */
	{"[action x]\ntls-action = drop\nsender-encryption = required\n",
	    NAME ":1: action x: tls-action drop refuses TLS on both legs, so sender-encryption = "
	    "required can never be met"},
	{"[action x]\ntls-action = drop\nrecipient-encryption = required\n",
	    NAME ":1: action x: tls-action drop refuses TLS on both legs, so recipient-encryption = "
	    "required can never be met"},
	{"[action x]\nsender-encryption = required\nrecipient-encryption = none\n",
	    NAME ":1: action x: sender-encryption = required with recipient-encryption = none needs "
	    "allow-cleartext-relay = yes (TLS to the client, cleartext on)"},
	{ZONES "[action plain]\ntls-action = allow\n[policy p]\nfrom = a\nto = b\naction = plain\n",
	    NAME ":7: policy p: TLS Support enabled needs content inspection, but action plain has "
	    "tls-action allow (set tls-action = inspect, or tls-support = disabled)"},
	{ZONES "[action plain]\ntls-action = drop\n[policy p]\nfrom = a\nto = b\naction = plain\n"
	    "tls-support = required\n",
	    NAME ":7: policy p: TLS Support required needs content inspection, but action plain has "
	    "tls-action drop (set tls-action = inspect, or tls-support = disabled)"},
};

/* Scanner servers and limits; what smtpgw -D prints parses back the same. */
static void
test_scanners(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	struct conf_scanners clamd;

	parse_ok("[global]\n");
	assert_int_equal(conf->clamd.n_servers, 0);
	assert_int_equal(conf->clamd.max_size, 25 * 1024 * 1024);
	assert_int_equal(conf->clamd.timeout, 30);
	assert_int_equal(conf->clamd.idle_timeout, 10);
	assert_int_equal(conf->rspamd.max_size, 50 * 1024 * 1024);
	assert_int_equal(conf->rspamd.idle_timeout, 0);

	parse_ok("[global]\n"
	    "clamd-servers = unix:/run/clamav/clamd.ctl tcp:198.51.100.60:3310 tcp:[2001:db8::60]:3310\n"
	    "clamd-timeout = 20\nclamd-connections = 4\nclamd-queue = 0\n"
	    "clamd-max-size = 10485760\nclamd-idle-timeout = 0\n"
	    "rspamd-servers = tcp:127.0.0.1:11333\nrspamd-timeout = 15\nrspamd-max-size = 2048\n");
	assert_int_equal(conf->clamd.n_servers, 3);
	assert_string_equal(conf->clamd.servers[0].text, "unix:/run/clamav/clamd.ctl");
	assert_int_equal(conf->clamd.servers[0].addr.sa.sa_family, AF_UNIX);
	assert_string_equal(conf->clamd.servers[0].addr.un.sun_path, "/run/clamav/clamd.ctl");
	assert_int_equal(conf->clamd.servers[1].addr.sa.sa_family, AF_INET);
	assert_int_equal(ntohs(conf->clamd.servers[1].addr.sin.sin_port), 3310);
	assert_int_equal(conf->clamd.servers[1].addrlen, sizeof(struct sockaddr_in));
	assert_int_equal(conf->clamd.servers[2].addr.sa.sa_family, AF_INET6);
	assert_int_equal(conf->clamd.servers[2].addrlen, sizeof(struct sockaddr_in6));
	assert_int_equal(conf->clamd.timeout, 20);
	assert_int_equal(conf->clamd.connections, 4);
	assert_int_equal(conf->clamd.queue, 0);
	assert_int_equal(conf->clamd.max_size, 10485760);
	assert_int_equal(conf->clamd.idle_timeout, 0);
	assert_int_equal(conf->rspamd.n_servers, 1);
	assert_int_equal(conf->rspamd.timeout, 15);
	assert_int_equal(conf->rspamd.max_size, 2048);

	/* the dump's scanner lines parse back to the same settings */
	clamd = conf->clamd;
	f = open_memstream(&text, &len);
	assert_non_null(f);
	config_dump(conf, f);
	fclose(f);
	assert_non_null(strstr(text, "clamd-servers = unix:/run/clamav/clamd.ctl "
	    "tcp:198.51.100.60:3310 tcp:[2001:db8::60]:3310\n"));
	assert_non_null(strstr(text, "clamd-idle-timeout = 0\n"));
	{
		char again[4096] = "[global]\n";
		size_t o = strlen(again);

		for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
			if (!strncmp(line, "clamd-", 6) || !strncmp(line, "rspamd-", 7))
				o += (size_t)snprintf(again + o, sizeof(again) - o, "%s\n", line);
		parse_ok(again);
	}
	free(text);
	assert_memory_equal(&conf->clamd, &clamd, sizeof(clamd));

	/* "none" empties a list (what the dump writes for no servers) */
	parse_ok("[global]\nrspamd-servers = tcp:192.0.2.1:1\nrspamd-servers = none\n");
	assert_int_equal(conf->rspamd.n_servers, 0);
}

/* Actions inherit [global]'s limits; predefined ones follow them; the warning rule. */
static void
test_actions_and_profiles(void **state)
{
	parse_ok("[global]\nmax-recipients = 7\n"
	    ZONES_AFTER_GLOBAL
	    "[tls-profile strict]\nmin-version = 1.3\non-name-mismatch = block\n"
	    "[action out]\ntls-profile = strict\nmax-message-size = 2048\n"
	    "recipient-encryption = required\n"
	    "[action plain]\ntls-action = allow\n"
	    "[policy p]\nfrom = a\nto = b\naction = out\n"
	    "[policy q]\nfrom = b\nto = a\naction = SMTP-Incoming.Standard\ntls-support = disabled\n"
	    "[policy r]\nfrom = b\nto = a\naction = plain\ntls-support = disabled\n");
	int out = config_action_index(conf, "out");
	assert_true(out >= 0);
	assert_int_equal(conf->actions[out].smtp.max_recipients, 7);
	assert_int_equal(conf->actions[out].smtp.max_message_size, 2048);
	assert_int_equal(conf->actions[out].recipient_enc, ENC_REQUIRED);
	assert_int_equal(conf->actions[out].profile, config_profile_index(conf, "strict"));
	const struct conf_tls_profile *t = &conf->profiles[conf->actions[out].profile];
	assert_int_equal(t->min_version, 13);
	assert_int_equal(t->on_fail[CF_NAME_MISMATCH], CERTFAIL_BLOCK);
	assert_int_equal(t->on_fail[CF_EXPIRED], CERTFAIL_UNTRUSTED_SIGN); /* cloned default */
	assert_int_equal(t->no_ref, NOREF_CHAIN_ONLY);
	assert_false(t->cn_fallback);
	int in = config_action_index(conf, "SMTP-Incoming.Standard");
	assert_true(conf->actions[in].predefined);
	assert_int_equal(conf->actions[in].smtp.max_recipients, 7);
	assert_int_equal(conf->actions[in].tls_action, TLS_ACTION_INSPECT);
	assert_ptr_equal(config_limits(conf, 0), &conf->actions[out].smtp);
	assert_ptr_equal(config_limits(conf, -1), &conf->smtp);
	/* inspect + TLS Support disabled: a warning naming the policy's line, not an error */
	assert_int_equal(conf->n_warnings, 3);
	assert_non_null(strstr(conf->warnings[0], NAME ":"));
	assert_non_null(strstr(conf->warnings[0], "policy q has TLS Support disabled"));
	/* the predefined action scans, and no scanner is configured: said once per engine */
	assert_non_null(strstr(conf->warnings[1], "asks clamd for viruses, but [global] names no "
	    "clamd-servers"));
	assert_non_null(strstr(conf->warnings[2], "asks rspamd about spam"));
}

/*
 * A single-valued key given twice in a section: the last one applies, and
 * a warning names both lines (lists -- interfaces, rules, rewrites -- are
 * meant to repeat, and [global] may come back: its keys count across).
 */
static void
test_key_set_twice(void **state)
{
	parse_ok("[global]\n"                          /* 1 */
	    "max-sessions = 100\n"                      /* 2 */
	    "[zone a]\n"                                /* 3 */
	    "interfaces = lan0\n"                       /* 4 */
	    "interfaces = lan1\n"                       /* 5 */
	    "[global]\n"                                /* 6 */
	    "max-sessions = 200\n"                      /* 7 */
	    "[action x]\n"                              /* 8 */
	    "filename-rule = deny exact a.exe\n"        /* 9 */
	    "filename-rule = deny exact b.exe\n"        /* 10 */
	    "mail-from-rewrite = exact a@b => c@d\n"    /* 11 */
	    "mail-from-rewrite = exact e@f => g@h\n"    /* 12 */
	    "max-recipients = 5\n"                      /* 13 */
	    "max-recipients = 6\n"                      /* 14 */
	    "[tls-profile p]\n"                         /* 15 */
	    "on-expired = allow\n"                      /* 16 */
	    "[tls-profile q]\n"                         /* 17 */
	    "on-expired = block\n");                    /* 18 */
	assert_int_equal(conf->max_sessions, 200);
	int x = config_action_index(conf, "x");
	assert_int_equal(conf->actions[x].smtp.max_recipients, 6);
	assert_int_equal(conf->zones[0].n_ifaces, 2);
	assert_int_equal(conf->n_warnings, 2);
	assert_string_equal(conf->warnings[0],
	    NAME ":7: warning: max-sessions is set again (first at line 2): the last one applies");
	assert_string_equal(conf->warnings[1],
	    NAME ":14: warning: max-recipients is set again (first at line 13): the last one "
	    "applies");
	config_free(conf);
}

/* A UTF-8 byte order mark is named as such, at line 1. */
static void
test_byte_order_mark(void **state)
{
	assert_int_equal(parse("\xef\xbb\xbf[global]\nworkers = 1\n"), -1);
	assert_string_equal(err, NAME ":1: the file starts with a UTF-8 byte order mark: save it "
	    "without one (plain ASCII or UTF-8)");
}

/* on-no-reference-name and allow-cn-fallback: parsed, and dumped the way they parse back. */
static void
test_reference_name_keys(void **state)
{
	static const struct {
		const char *value;
		enum noref_rule rule;
		const char *name;
	} rules[] = {
		{ "chain-only", NOREF_CHAIN_ONLY, "" },
		{ "untrusted-sign", NOREF_UNTRUSTED_SIGN, "" },
		{ "block", NOREF_BLOCK, "" },
		{ "name:mx.int.test", NOREF_NAME, "mx.int.test" },
		{ "name:localhost", NOREF_NAME, "localhost" },
	};
	char text[256], buf[300];

	(void)state;
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		snprintf(text, sizeof(text), "[tls-profile t]\non-no-reference-name = %s\n"
		    "allow-cn-fallback = %s\n", rules[i].value, i % 2 ? "yes" : "no");
		parse_ok(text);
		const struct conf_tls_profile *t = &conf->profiles[config_profile_index(conf, "t")];
		assert_int_equal(t->no_ref, rules[i].rule);
		assert_string_equal(t->no_ref_name, rules[i].name);
		assert_int_equal(t->cn_fallback, i % 2 == 1);
		assert_string_equal(noref_rule_name(t, buf, sizeof(buf)), rules[i].value);
	}
	/* a later value replaces the fixed name */
	parse_ok("[tls-profile t]\non-no-reference-name = name:a.test\non-no-reference-name = block\n");
	assert_string_equal(conf->profiles[1].no_ref_name, "");
	/* the dump carries both keys */
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	parse_ok("[tls-profile t]\non-no-reference-name = name:mx.int.test\n");
	config_dump(conf, f);
	fclose(f);
	assert_non_null(strstr(out, "\n[tls-profile t]\n"));
	assert_non_null(strstr(out, "on-no-reference-name = name:mx.int.test\nallow-cn-fallback = no\n"));
	assert_non_null(strstr(out, "on-no-reference-name = chain-only\n")); /* the predefined */
	free(out);
	/* host names */
	assert_true(config_valid_hostname("a"));
	assert_true(config_valid_hostname("mx-1.ext.test"));
	assert_false(config_valid_hostname("a.-b"));
	assert_false(config_valid_hostname("a-.b"));
	assert_false(config_valid_hostname("a.b."));
	assert_false(config_valid_hostname("a_b.test"));
	assert_false(config_valid_hostname("*.ext.test"));
	memset(text, 'a', 64);
	text[64] = '\0';
	assert_false(config_valid_hostname(text)); /* a 64-octet label */
	text[63] = '\0';
	assert_true(config_valid_hostname(text));
	/* settings that can deliver stay valid */
	parse_ok("[action x]\ntls-action = drop\n"
	    "[action y]\nsender-encryption = required\nrecipient-encryption = none\n"
	    "allow-cleartext-relay = yes\n"
	    "[action z]\ntls-action = allow\nsender-encryption = required\n"
	    "recipient-encryption = none\n");
}

static void
test_errors(void **state)
{
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		err[0] = '\0';
		if (parse(errors[i].text) != -1)
			fail_msg("case %zu parsed; expected %s", i, errors[i].err);
		if (strcmp(err, errors[i].err) != 0)
			fail_msg("case %zu:\n  got      %s\n  expected %s", i, err, errors[i].err);
	}
}

static void
test_nul_byte(void **state)
{
	static const char text[] = "[global]\nuser = no\0body\nworkers = 1\n";

	assert_int_equal(config_parse(conf, NAME, text, sizeof(text) - 1, err, sizeof(err)), -1);
	assert_string_equal(err, NAME ":2: NUL byte in line");
}

static void
test_line_length(void **state)
{
	char text[CONF_LINE_MAX + 64];
	size_t n;

	/* A line of exactly CONF_LINE_MAX bytes (newline excluded) is fine ... */
	n = (size_t)snprintf(text, sizeof(text), "[global]\n");
	memset(text + n, '#', CONF_LINE_MAX);
	n += CONF_LINE_MAX;
	memcpy(text + n, "\nworkers = 3\n", 14);
	parse_ok(text);
	assert_int_equal(conf->workers, 3);

	/* ... one byte more is not, newline or not. */
	n = (size_t)snprintf(text, sizeof(text), "[global]\n");
	memset(text + n, '#', CONF_LINE_MAX + 1);
	text[n + CONF_LINE_MAX + 1] = '\0';
	assert_int_equal(parse(text), -1);
	assert_string_equal(err, NAME ":2: line longer than 1024 bytes");
}

static void
test_file_too_large(void **state)
{
	size_t len = CONF_FILE_MAX + 1;
	char *text = malloc(len);

	assert_non_null(text);
	memset(text, '\n', len);
	assert_int_equal(config_parse(conf, NAME, text, len, err, sizeof(err)), -1);
	assert_string_equal(err, NAME ": file is larger than 1048576 bytes");
	free(text);
}

static void
test_list_limits(void **state)
{
	char text[4096];
	size_t n;

	/* CONF_MAX_IFACES interfaces fit in a zone, one more does not. */
	n = (size_t)snprintf(text, sizeof(text), "[zone a]\ninterfaces =");
	for (int i = 0; i < CONF_MAX_IFACES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, " e%d", i);
	snprintf(text + n, sizeof(text) - n, "\n");
	parse_ok(text);
	assert_int_equal(conf->zones[0].n_ifaces, CONF_MAX_IFACES);
	snprintf(text + n, sizeof(text) - n, "\ninterfaces = extra\n");
	assert_int_equal(parse(text), -1);
	assert_string_equal(err, NAME ":3: interfaces: more than 32 interfaces in one zone");

	n = (size_t)snprintf(text, sizeof(text), "[zone a]\n[policy p]\nsrc =");
	for (int i = 0; i <= CONF_MAX_PREFIXES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, " 10.0.%d.0/24", i);
	snprintf(text + n, sizeof(text) - n, "\n");
	assert_int_equal(parse(text), -1);
	assert_string_equal(err, NAME ":3: src: more than 32 prefixes");
}

/* The error buffer is always terminated, even when it is too small. */
static void
test_small_error_buffer(void **state)
{
	char small[10];

	memset(small, 'x', sizeof(small));
	assert_int_equal(config_parse(conf, NAME, "[x]\n", 4, small, sizeof(small)), -1);
	assert_string_equal(small, NAME ":1:");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_testbed_shape),
		cmocka_unit_test(test_testbed_file_loads),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_global_keys),
		cmocka_unit_test(test_inspection_keys),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_lexical),
		cmocka_unit_test(test_zones),
		cmocka_unit_test(test_policy_order_and_any),
		cmocka_unit_test(test_tls_support_ports),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_reference_name_keys),
		cmocka_unit_test(test_actions_and_profiles),
		cmocka_unit_test(test_scanners),
		cmocka_unit_test(test_key_set_twice),
		cmocka_unit_test(test_byte_order_mark),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_file_too_large),
		cmocka_unit_test(test_list_limits),
		cmocka_unit_test(test_small_error_buffer),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
