/*
 * test_action_rules - a proxy action's inspection settings: what the
 * configuration yields (rulesets, rewrites, settings, rules-from), the
 * errors it names (file:line: what), the predefined defaults, and that
 * the dump reads back as the same configuration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action_rules.h"
#include "config.h"
#include "smtp_caps.h"

#define NAME "rules.conf"

static struct config *conf;
static char err[600];

static int
parse(const char *text)
{
	config_free(conf);
	return config_parse(conf, NAME, text, strlen(text), err, sizeof(err));
}

static const struct action_rules *
rules_of(const char *action)
{
	int i = config_action_index(conf, action);

	assert_true(i >= 0);
	return config_rules(&conf->actions[i]);
}

static enum rule_action
match(const struct action_rules *r, enum arules_kind k, const char *item)
{
	return ruleset_match(arules_rs(r, k), item, strlen(item)).action;
}

static int
setup(void **state)
{
	conf = calloc(1, sizeof(*conf));
	assert_non_null(conf);
	return 0;
}

static int
teardown(void **state)
{
	config_free(conf);
	free(conf);
	return 0;
}

static void
test_rulesets_parsed(void **state)
{
	const struct action_rules *r;

	assert_int_equal(parse("[action A]\n"
	    "greeting-rule = deny log pattern *.invalid\n"
	    "mail-from-rule = deny exact spammer@example.com\n"
	    "mail-from-default = allow\n"
	    "rcpt-to-rule = block alarm regex ^root@\n"
	    "header-rule = strip log regex ^X-Spam-Flag: *YES\n"
	    "content-type-rule = strip pattern application/x-dosexec\n"
	    "content-type-default = allow log\n"
	    "filename-rule = strip pattern *.exe\n"
	    "filename-rule = deny pattern *.scr\n"
	    "filename-default = allow\n"), 0);
	r = rules_of("A");
	assert_int_equal(match(r, AR_GREETING, "host.invalid"), RULE_DENY);
	assert_int_equal(match(r, AR_GREETING, "mx.example.com"), RULE_ALLOW);
	assert_int_equal(match(r, AR_MAIL_FROM, "SPAMMER@example.com"), RULE_DENY);
	assert_int_equal(match(r, AR_RCPT_TO, "root@example.com"), RULE_BLOCK);
	assert_int_equal(match(r, AR_HEADER, "X-Spam-Flag: YES"), RULE_STRIP);
	assert_int_equal(match(r, AR_CONTENT_TYPE, "application/x-dosexec"), RULE_STRIP);
	assert_int_equal(match(r, AR_FILENAME, "invoice.pdf.exe"), RULE_STRIP);
	assert_int_equal(match(r, AR_FILENAME, "x.SCR"), RULE_DENY);
	assert_int_equal(match(r, AR_FILENAME, "x.pdf"), RULE_ALLOW);
	assert_int_equal(arules_rs(r, AR_CONTENT_TYPE)->dflt_flags, RULE_F_LOG);
}

static void
test_settings(void **state)
{
	const struct action_rules *r;

	assert_int_equal(parse("[action A]\n"
	    "hide-banner = yes\nbanner = mx.example.com ESMTP\n"
	    "esmtp = PIPELINING SIZE 8BITMIME\n"
	    "auth-mechanisms = plain login\n"
	    "unknown-commands = allow\nsource-routed = allow\nlocal-part-8bit = deny\n"
	    "envelope-headers = yes\n"
	    "on-ambiguous = deny log alarm\non-archive-unopenable = strip log\n"
	    "deny-message = Refused: %(reason)%\\nCall the helpdesk.\n"), 0);
	r = rules_of("A");
	assert_true(r->hide_banner);
	assert_string_equal(r->banner, "mx.example.com ESMTP");
	assert_int_equal(r->esmtp, CAP_PIPELINING | CAP_SIZE | CAP_8BITMIME);
	assert_string_equal(r->auth_mechs, "PLAIN LOGIN");
	assert_true(r->unknown_allow);
	assert_true(r->source_routed_allow);
	assert_false(r->local_8bit_allow);
	assert_true(r->envelope_headers);
	assert_int_equal(r->on_ambiguous, RULE_DENY);
	assert_int_equal(r->on_ambiguous_flags, RULE_F_LOG | RULE_F_ALARM);
	assert_int_equal(r->on_unopenable, RULE_STRIP);
	assert_string_equal(r->deny_message, "Refused: %(reason)%\nCall the helpdesk.");
}

/* An action that sets nothing: nothing refused, nothing hidden. */
static void
test_no_settings(void **state)
{
	const struct action_rules *r;

	assert_int_equal(parse("[action A]\ntls-action = inspect\n"), 0);
	r = rules_of("A");
	assert_int_equal(match(r, AR_FILENAME, "x.exe"), RULE_ALLOW);
	assert_false(r->hide_banner);
	assert_false(r->envelope_headers);
}

static void
test_predefined(void **state)
{
	const struct action_rules *in, *out;

	assert_int_equal(parse("[global]\n"), 0);
	in = rules_of("SMTP-Incoming.Standard");
	out = rules_of("SMTP-Outgoing.Standard");
	/* inbound strips executables by name and by content; outbound logs them */
	assert_int_equal(match(in, AR_FILENAME, "Invoice.EXE"), RULE_STRIP);
	assert_int_equal(match(in, AR_FILENAME, "report.pdf"), RULE_ALLOW);
	assert_int_equal(match(in, AR_CONTENT_TYPE, "application/x-dosexec"), RULE_STRIP);
	assert_int_equal(match(out, AR_FILENAME, "tool.exe"), RULE_ALLOW);
	assert_true(ruleset_match(arules_rs(out, AR_FILENAME), "tool.exe", 8).flags & RULE_F_LOG);
	assert_true(in->hide_banner);
	assert_false(out->hide_banner);
	assert_int_equal(in->on_ambiguous, RULE_DENY);
	assert_int_equal(out->on_ambiguous, RULE_ALLOW);
	assert_int_equal(in->on_unopenable, RULE_DENY);
	assert_false(in->source_routed_allow);
	assert_false(out->source_routed_allow);
}

/* rules-from: what the action does not set comes from the named action. */
static void
test_rules_from(void **state)
{
	const struct action_rules *r;

	assert_int_equal(parse("[action A]\nrules-from = SMTP-Incoming.Standard\n"
	    "filename-rule = deny pattern *.zip\n"
	    "hide-banner = no\n"
	    "[action B]\nrules-from = A\n"), 0);
	r = rules_of("A");
	/* its own filename ruleset replaces the inherited one entirely */
	assert_int_equal(match(r, AR_FILENAME, "a.zip"), RULE_DENY);
	assert_int_equal(match(r, AR_FILENAME, "a.exe"), RULE_ALLOW);
	/* the rest is the predefined action's */
	assert_int_equal(match(r, AR_CONTENT_TYPE, "application/x-dosexec"), RULE_STRIP);
	assert_false(r->hide_banner);
	assert_int_equal(r->on_ambiguous, RULE_DENY);
	/* and a chain */
	r = rules_of("B");
	assert_int_equal(match(r, AR_FILENAME, "a.zip"), RULE_DENY);
	assert_int_equal(match(r, AR_CONTENT_TYPE, "application/x-dosexec"), RULE_STRIP);
	assert_false(r->hide_banner);
}

static void
test_rewrite(void **state)
{
	const struct action_rules *r;
	char out[300];
	unsigned line = 0;

	assert_int_equal(parse("[action A]\n"
	    "mail-from-rewrite = exact old@example.com => new@example.com\n"
	    "mail-from-rewrite = pattern *@legacy.example => *@example.com\n"
	    "rcpt-to-rewrite = regex ^(.+)\\+[^@]*@(.*)$ => $1@$2\n"), 0);
	r = rules_of("A");
	assert_int_equal(arules_rewrite(r, 0, "OLD@example.com", out, sizeof(out), &line), 1);
	assert_string_equal(out, "new@example.com");
	assert_int_equal(line, 2);
	assert_int_equal(arules_rewrite(r, 0, "alice@legacy.example", out, sizeof(out), &line), 1);
	assert_string_equal(out, "alice@example.com");
	assert_int_equal(arules_rewrite(r, 0, "alice@other.example", out, sizeof(out), NULL), 0);
	assert_int_equal(arules_rewrite(r, 1, "bob+tag@example.org", out, sizeof(out), NULL), 1);
	assert_string_equal(out, "bob@example.org");
	/* a result that does not fit is refused, never truncated */
	assert_int_equal(arules_rewrite(r, 0, "old@example.com", out, 5, NULL), -1);
}

static void
test_errors(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "[action A]\ncontent-type-rule = deny regex (unclosed\n",
		  "rules.conf:2: [action A] content-type-rule: regex: missing closing parenthesis" },
		{ "[action A]\nmail-from-rule = strip exact a@b\n",
		  "rules.conf:2: [action A] mail-from-rule: strip is only possible" },
		{ "[action A]\nfilename-rule = remove pattern *.exe\n",
		  "rules.conf:2: [action A] filename-rule: unknown action" },
		{ "[action A]\nfilename-default = deny loud\n",
		  "rules.conf:2: [action A] filename-default: unknown word \"loud\"" },
		{ "[action A]\nesmtp = PIPELINING XFORWARD\n",
		  "rules.conf:2: [action A] esmtp: unknown ESMTP extension \"XFORWARD\"" },
		{ "[action A]\nhide-banner = maybe\n",
		  "rules.conf:2: [action A] hide-banner: expected yes or no" },
		{ "[action A]\ndeny-message = %(nosuch)%\n", "rules.conf:2: [action A] deny-message:" },
		{ "[action A]\nmail-from-rewrite = exact a@b.example\n",
		  "rules.conf:2: [action A] mail-from-rewrite: expected KIND PATTERN => REPLACEMENT" },
		{ "[action A]\nrcpt-to-rewrite = regex (x => y@z\n",
		  "rules.conf:2: [action A] rcpt-to-rewrite: regex:" },
		{ "[action A]\nrules-from = Nowhere\n",
		  "rules.conf:1: action A: rules-from names \"Nowhere\", which is not a proxy action" },
		{ "[action A]\nrules-from = B\n[action B]\nrules-from = A\n",
		  "rules-from makes a loop" },
		{ "[action A]\nfilename-rules = deny pattern x\n",
		  "rules.conf:2: unknown key \"filename-rules\" in [action A]" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(cases[i].text), -1);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].want);
	}
}

/* What smtpgw -D prints reads back as the same rules (smtpgwctl relies on it). */
static void
test_dump_round_trip(void **state)
{
	char *text = NULL, *text2 = NULL;
	size_t len = 0, len2 = 0;
	FILE *f;

	assert_int_equal(parse("[action A]\nrules-from = SMTP-Incoming.Standard\n"
	    "filename-rule = strip log alarm pattern *.iso\n"
	    "filename-default = allow\n"
	    "mail-from-rewrite = pattern *@legacy.example => *@example.com\n"
	    "deny-message = Line one\\nLine two with a \\\\ backslash\n"
	    "esmtp = none\n"), 0);
	f = open_memstream(&text, &len);
	config_dump(conf, f);
	fclose(f);
	/* the user's section reads back (predefined ones are not parsed: read-only) */
	char *sec = strstr(text, "[action A]"), *end;
	assert_non_null(sec);
	sec = strdup(sec);
	if ((end = strstr(sec, "\n[")) != NULL)
		end[1] = '\0';
	assert_int_equal(parse(sec), 0);
	f = open_memstream(&text2, &len2);
	config_dump(conf, f);
	fclose(f);
	/* the path line differs ("rules.conf"); everything after it must not */
	assert_string_equal(strchr(text, '\n'), strchr(text2, '\n'));
	free(sec);
	assert_non_null(strstr(text, "filename-rule = strip log alarm pattern *.iso\n"));
	assert_non_null(strstr(text, "deny-message = Line one\\nLine two with a \\\\ backslash\n"));
	assert_non_null(strstr(text, "[action SMTP-Incoming.Standard]"));
	assert_non_null(strstr(text, "filename-rule = strip log pattern *.exe\n"));
	assert_string_equal(rules_of("A")->deny_message, "Line one\nLine two with a \\ backslash");
	assert_int_equal(rules_of("A")->esmtp, 0);
	free(text);
	free(text2);
}

/*
 * A predefined action's section, as dumped, reads back as a custom action
 * with the same rules and settings: it is what "smtpgwctl action clone"
 * writes.  Its empty texts (banner, deny message) must not be dumped as
 * "key =" lines, which do not parse.
 */
static void
test_predefined_dump_clones(void **state)
{
	static const char *const names[] = { "SMTP-Incoming.Standard", "SMTP-Outgoing.Standard" };

	for (size_t n = 0; n < 2; n++) {
		char *text = NULL, hdr[80], *sec, *end, *body, *copy;
		size_t len = 0;
		FILE *f;

		assert_int_equal(parse("[global]\n"), 0);
		f = open_memstream(&text, &len);
		config_dump(conf, f);
		fclose(f);
		snprintf(hdr, sizeof(hdr), "[action %s]\n# predefined, read-only\n", names[n]);
		sec = strstr(text, hdr);
		assert_non_null(sec);
		body = sec + strlen(hdr);
		if ((end = strstr(body, "\n[")) != NULL)
			end[1] = '\0';
		assert_null(strstr(body, "banner = \n"));
		assert_null(strstr(body, "deny-message = \n"));
		size_t csz = strlen(body) + 32;
		copy = malloc(csz);
		assert_non_null(copy);
		snprintf(copy, csz, "[action Copy]\n%s", body);
		if (parse(copy) != 0)
			fail_msg("%s does not read back: %s", names[n], err);
		const struct action_rules *c = rules_of("Copy"), *p = arules_predefined(n == 0);
		for (int k = 0; k < AR_COUNT; k++) {
			const struct ruleset *a = arules_rs(c, (enum arules_kind)k);
			const struct ruleset *b = arules_rs(p, (enum arules_kind)k);
			char la[RULE_PATTERN_MAX + 64], lb[RULE_PATTERN_MAX + 64];

			assert_int_equal(a->nrules, b->nrules);
			assert_int_equal(a->dflt, b->dflt);
			assert_int_equal(a->dflt_flags, b->dflt_flags);
			for (unsigned i = 0; i < a->nrules; i++) {
				rule_format(&a->rules[i], la, sizeof(la));
				rule_format(&b->rules[i], lb, sizeof(lb));
				assert_string_equal(la, lb);
			}
		}
		assert_int_equal(c->hide_banner, p->hide_banner);
		assert_string_equal(c->banner, p->banner);
		assert_int_equal(c->esmtp, p->esmtp);
		assert_int_equal(c->on_ambiguous, p->on_ambiguous);
		assert_int_equal(c->on_unopenable, p->on_unopenable);
		assert_string_equal(c->deny_message, p->deny_message);
		free(copy);
		free(text);
	}
}

/* The scanners' settings: parsed, inherited, predefined, refused, dumped. */
static void
test_scanner_settings(void **state)
{
	const struct action_rules *r, *in, *out;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	assert_int_equal(parse("[action A]\n"
	    "antivirus = attachments\nav-on-virus = strip\nav-on-error = tempfail\n"
	    "av-on-unavailable = allow\nspam = on\nspam-reject-code = 550 5.7.0\n"
	    "spam-on-unavailable = tempfail\nspam-reject-score = 12.5\n"
	    "spam-header-score = 4\nquarantine = no\n"
	    "[action B]\nrules-from = A\nspam = off\n"
	    "[action C]\nrules-from = SMTP-Outgoing.Standard\n"
	    "[action D]\ntls-action = inspect\n"), 0);
	r = rules_of("A");
	assert_int_equal(r->antivirus, AV_ATTACHMENTS);
	assert_int_equal(r->av_on_virus, RULE_STRIP);
	assert_int_equal(r->av_on_error, SCAN_FAIL_TEMPFAIL);
	assert_int_equal(r->av_on_unavailable, SCAN_FAIL_ALLOW);
	assert_true(r->spam);
	assert_string_equal(r->spam_reject_code, "550 5.7.0");
	assert_int_equal(r->spam_on_unavailable, SCAN_FAIL_TEMPFAIL);
	assert_true(r->spam_reject_score == 12.5);
	assert_true(r->spam_header_score == 4);
	assert_false(r->quarantine);
	/* inherited, but for what B sets */
	r = rules_of("B");
	assert_int_equal(r->antivirus, AV_ATTACHMENTS);
	assert_int_equal(r->av_on_virus, RULE_STRIP);
	assert_false(r->spam);
	assert_string_equal(r->spam_reject_code, "550 5.7.0");
	/* the predefined ones: viruses both ways, spam inbound only */
	in = rules_of("SMTP-Incoming.Standard");
	out = rules_of("SMTP-Outgoing.Standard");
	assert_int_equal(in->antivirus, AV_MESSAGE);
	assert_int_equal(out->antivirus, AV_MESSAGE);
	assert_int_equal(in->av_on_virus, RULE_DENY);
	assert_int_equal(in->av_on_unavailable, SCAN_FAIL_TEMPFAIL);
	assert_int_equal(in->av_on_error, SCAN_FAIL_ALLOW);
	assert_true(in->spam);
	assert_false(out->spam);
	assert_int_equal(in->spam_on_unavailable, SCAN_FAIL_ALLOW);
	assert_string_equal(in->spam_reject_code, "554 5.7.1");
	assert_true(in->spam_reject_score < 0 && in->spam_header_score < 0);
	assert_true(in->quarantine);
	assert_int_equal(rules_of("C")->antivirus, AV_MESSAGE);
	assert_false(rules_of("C")->spam);
	/* an action that sets nothing scans nothing */
	r = rules_of("D");
	assert_int_equal(r->antivirus, AV_OFF);
	assert_false(r->spam);
	assert_true(r->quarantine);

	/* the dump reads back the same */
	f = open_memstream(&text, &len);
	config_dump(conf, f);
	fclose(f);
	assert_non_null(strstr(text, "[action A]\n"));
	assert_non_null(strstr(text, "antivirus = attachments\n"));
	assert_non_null(strstr(text, "spam-reject-score = 12.5\n"));
	assert_non_null(strstr(text, "spam-header-score = 4\n"));
	assert_non_null(strstr(text, "spam-reject-code = 550 5.7.0\n"));
	assert_non_null(strstr(text, "spam-reject-score = rspamd\n")); /* predefined */
	char *sec = strstr(text, "[action A]"), *end;
	sec = strdup(sec);
	if ((end = strstr(sec, "\n[")) != NULL)
		end[1] = '\0';
	assert_int_equal(parse(sec), 0);
	r = rules_of("A");
	assert_int_equal(r->antivirus, AV_ATTACHMENTS);
	assert_true(r->spam_reject_score == 12.5);
	assert_false(r->quarantine);
	free(sec);
	free(text);
}

static void
test_scanner_errors(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "[action A]\nantivirus = yes\n",
		  "rules.conf:2: [action A] antivirus: expected off, message or attachments, got \"yes\"" },
		{ "[action A]\nav-on-virus = allow\n",
		  "av-on-virus: expected deny, strip, drop or block" },
		{ "[action A]\nav-on-error = strip\n", "av-on-error: expected allow, deny or tempfail" },
		{ "[action A]\nav-on-unavailable = deny\n",
		  "av-on-unavailable: expected allow or tempfail" },
		{ "[action A]\nspam = yes\n", "spam: expected on or off" },
		{ "[action A]\nspam-reject-code = 451\n", "spam-reject-code: expected a 5xx reply code" },
		{ "[action A]\nspam-reject-code = 554 4.7.1\n", "spam-reject-code:" },
		{ "[action A]\nspam-reject-code = 554 5.7\n", "spam-reject-code:" },
		{ "[action A]\nspam-reject-code = 554 5.7.1 go away\n", "spam-reject-code:" },
		{ "[action A]\nspam-reject-code = 5544\n", "spam-reject-code:" },
		{ "[action A]\nspam-reject-score = -1\n",
		  "spam-reject-score: expected rspamd or a score of 0 to 10000" },
		{ "[action A]\nspam-header-score = 1e9\n", "spam-header-score:" },
		{ "[action A]\nspam-header-score = 5x\n", "spam-header-score:" },
		{ "[action A]\nspam-header-score = nan\n", "spam-header-score:" },
		{ "[action A]\nquarantine = maybe\n", "quarantine: expected yes or no" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(cases[i].text), -1);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].want);
	}
	/* the forms that are taken */
	assert_int_equal(parse("[action A]\nspam-reject-code = 550\nspam-header-score = .5\n"), 0);
	assert_int_equal(parse("[action A]\nspam-reject-code = 554 5.123.999\n"), 0);
}

static void
test_addresses(void **state)
{
	assert_true(arules_source_routed("user@example.com", true));
	assert_true(arules_source_routed("user%host@relay.example", false));
	assert_true(arules_source_routed("host!user@relay.example", false));
	assert_false(arules_source_routed("user@ex%ample.com", false));
	assert_false(arules_source_routed("first.last@example.com", false));
	assert_true(arules_local_8bit("j\xc3\xb6rg@example.com"));
	assert_false(arules_local_8bit("joerg@ex\xc3\xa4mple.com"));
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_rulesets_parsed),
		T(test_settings),
		T(test_no_settings),
		T(test_predefined),
		T(test_rules_from),
		T(test_rewrite),
		T(test_errors),
		T(test_dump_round_trip),
		T(test_predefined_dump_clones),
		T(test_scanner_settings),
		T(test_scanner_errors),
		T(test_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
