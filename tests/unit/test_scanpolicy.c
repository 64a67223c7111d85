/*
 * test_scanpolicy - what clamd's and rspamd's answers mean under an
 * action's settings: each clamd outcome under av-on-*, each rspamd action
 * under spam-*, the threshold overrides (and the forced actions they
 * leave alone), the order of severity, and the texts: spam headers, the
 * header names they replace, a rewritten Subject field.
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
#include "scanpolicy.h"

static struct action_rules *
rules(void)
{
	struct action_rules *r = arules_new();

	r->antivirus = AV_MESSAGE;
	r->spam = true;
	return r;
}

static void
test_av(void **state)
{
	struct action_rules *r = rules();
	struct sp_av a;

	scanpolicy_av(r, CLAMD_CLEAN, "", &a);
	assert_int_equal(a.action, SP_PASS);
	assert_false(a.virus);
	assert_false(a.unscanned);

	scanpolicy_av(r, CLAMD_INFECTED, "Eicar-Signature", &a);
	assert_int_equal(a.action, SP_DENY);
	assert_true(a.virus);
	r->av_on_virus = RULE_STRIP;
	scanpolicy_av(r, CLAMD_INFECTED, "Eicar-Signature", &a);
	assert_int_equal(a.action, SP_STRIP);
	r->av_on_virus = RULE_DROP;
	scanpolicy_av(r, CLAMD_INFECTED, "Eicar-Signature", &a);
	assert_int_equal(a.action, SP_DROP);
	r->av_on_virus = RULE_BLOCK;
	scanpolicy_av(r, CLAMD_INFECTED, "Eicar-Signature", &a);
	assert_int_equal(a.action, SP_BLOCK);

	/* alerts about what clamd could not open are av-on-error, not viruses */
	r->av_on_error = SCAN_FAIL_ALLOW;
	scanpolicy_av(r, CLAMD_INFECTED, "Heuristics.Encrypted.Zip", &a);
	assert_int_equal(a.action, SP_PASS);
	assert_false(a.virus);
	assert_true(a.unscanned);
	assert_string_equal(a.why, "unscannable");
	scanpolicy_av(r, CLAMD_INFECTED, "Heuristics.Limits.Exceeded.MaxFileSize", &a);
	assert_false(a.virus);

	/* too large and errors: av-on-error */
	scanpolicy_av(r, CLAMD_TOO_LARGE, "", &a);
	assert_int_equal(a.action, SP_PASS);
	assert_true(a.unscanned);
	r->av_on_error = SCAN_FAIL_DENY;
	scanpolicy_av(r, CLAMD_ERROR, "", &a);
	assert_int_equal(a.action, SP_DENY);
	assert_false(a.unscanned);
	r->av_on_error = SCAN_FAIL_TEMPFAIL;
	scanpolicy_av(r, CLAMD_TOO_LARGE, "", &a);
	assert_int_equal(a.action, SP_TEMPFAIL);
	assert_string_equal(a.why, "too-large");

	/* unavailable: av-on-unavailable, never av-on-error */
	r->av_on_error = SCAN_FAIL_ALLOW;
	scanpolicy_av(r, CLAMD_UNAVAILABLE, "", &a);
	assert_int_equal(a.action, SP_TEMPFAIL);
	r->av_on_unavailable = SCAN_FAIL_ALLOW;
	scanpolicy_av(r, CLAMD_UNAVAILABLE, "", &a);
	assert_int_equal(a.action, SP_PASS);
	assert_true(a.unscanned);
	arules_free(r);
}

static struct rspamd_result
checked(enum rspamd_action act, double score)
{
	struct rspamd_result res;

	memset(&res, 0, sizeof(res));
	res.status = RSPAMD_CHECKED;
	res.action = act;
	res.score = score;
	res.required_score = 15;
	return res;
}

static void
test_spam_actions(void **state)
{
	static const struct {
		enum rspamd_action in;
		enum sp_action out;
		bool subject;
	} map[] = {
		{ RSPAMD_NO_ACTION, SP_PASS, false },
		{ RSPAMD_GREYLIST, SP_TEMPFAIL, false },
		{ RSPAMD_SOFT_REJECT, SP_TEMPFAIL, false },
		{ RSPAMD_ADD_HEADER, SP_MARK, false },
		{ RSPAMD_REWRITE_SUBJECT, SP_MARK, true },
		{ RSPAMD_REJECT, SP_DENY, false },
		/* never accepted only to be destroyed */
		{ RSPAMD_DISCARD, SP_DENY, false },
		{ RSPAMD_QUARANTINE, SP_DENY, false },
	};
	struct action_rules *r = rules();
	struct sp_spam s;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		struct rspamd_result res = checked(map[i].in, 5);
		res.has_subject = true;
		scanpolicy_spam(r, &res, &s);
		assert_int_equal(s.action, map[i].out);
		assert_int_equal(s.subject, map[i].subject);
		assert_false(s.overridden);
	}
	/* rewrite subject without a subject from rspamd: headers only */
	struct rspamd_result res = checked(RSPAMD_REWRITE_SUBJECT, 9);
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_MARK);
	assert_false(s.subject);

	/* failures: spam-on-unavailable (default allow); too large passes */
	res.status = RSPAMD_UNAVAILABLE;
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_PASS);
	assert_true(s.unscanned);
	r->spam_on_unavailable = SCAN_FAIL_TEMPFAIL;
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_TEMPFAIL);
	res.status = RSPAMD_ERROR;
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_TEMPFAIL);
	res.status = RSPAMD_TOO_LARGE;
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_PASS);
	assert_true(s.unscanned);
	arules_free(r);
}

static void
test_spam_thresholds(void **state)
{
	struct action_rules *r = rules();
	struct rspamd_result res;
	struct sp_spam s;

	/* reject score: rspamd's reject below it is only marked ... */
	r->spam_reject_score = 20;
	res = checked(RSPAMD_REJECT, 16);
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_MARK);
	assert_true(s.overridden);
	/* ... and anything at or above it refused */
	res = checked(RSPAMD_NO_ACTION, 20);
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_DENY);
	assert_string_equal(s.level, "reject");

	/* header score, after the reject score */
	r->spam_header_score = 8;
	res = checked(RSPAMD_ADD_HEADER, 7);
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_PASS);
	res = checked(RSPAMD_REWRITE_SUBJECT, 7);
	res.has_subject = true;
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_PASS);
	assert_false(s.subject);
	res = checked(RSPAMD_NO_ACTION, 8);
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_MARK);
	assert_string_equal(s.level, "add header");
	/* rspamd's reject under the reject score, and under the header score: passes */
	res = checked(RSPAMD_REJECT, 5);
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_PASS);
	/* greylist / soft reject are never decided by score */
	res = checked(RSPAMD_SOFT_REJECT, 1);
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_TEMPFAIL);
	/* a forced action (GTUBE, settings) stays as rspamd gives it */
	res = checked(RSPAMD_REJECT, 0);
	res.skipped = true;
	scanpolicy_spam(r, &res, &s);
	assert_int_equal(s.action, SP_DENY);
	assert_false(s.overridden);
	arules_free(r);
}

static void
test_worse(void **state)
{
	assert_int_equal(scanpolicy_worse(SP_DENY, SP_TEMPFAIL), SP_DENY);
	assert_int_equal(scanpolicy_worse(SP_TEMPFAIL, SP_STRIP), SP_TEMPFAIL);
	assert_int_equal(scanpolicy_worse(SP_STRIP, SP_MARK), SP_STRIP);
	assert_int_equal(scanpolicy_worse(SP_PASS, SP_MARK), SP_MARK);
	assert_int_equal(scanpolicy_worse(SP_BLOCK, SP_DROP), SP_BLOCK);
	assert_string_equal(sp_action_name(SP_TEMPFAIL), "tempfail");
}

static void
test_spam_headers(void **state)
{
	struct rspamd_result res = checked(RSPAMD_ADD_HEADER, 7.5);
	char out[4096];
	size_t n;

	res.nsymbols = 2;
	snprintf(res.symbols[0].name, sizeof(res.symbols[0].name), "BAYES_SPAM");
	res.symbols[0].score = 5;
	snprintf(res.symbols[1].name, sizeof(res.symbols[1].name), "MIME_BAD");
	res.symbols[1].score = 2.5;
	res.nadd = 2;
	snprintf(res.add[0].name, sizeof(res.add[0].name), "X-Rspamd-Server");
	snprintf(res.add[0].value, sizeof(res.add[0].value), "scan1");
	/* one of our own names: written once, ours */
	snprintf(res.add[1].name, sizeof(res.add[1].name), "X-Spam-Flag");
	snprintf(res.add[1].value, sizeof(res.add[1].value), "maybe");
	n = scanpolicy_spam_headers(&res, "add header", out, sizeof(out));
	assert_int_equal(n, strlen(out));
	assert_string_equal(out,
	    "X-Spam-Flag: YES\r\n"
	    "X-Spam-Score: 7.50 / 15.00\r\n"
	    "X-Spam-Action: add header\r\n"
	    "X-Spam-Symbols: BAYES_SPAM(5.00), MIME_BAD(2.50)\r\n"
	    "X-Rspamd-Server: scan1\r\n");
	/* too small: nothing */
	assert_int_equal(scanpolicy_spam_headers(&res, "add header", out, 10), 0);
	assert_string_equal(out, "");

	res.nremove = 1;
	snprintf(res.remove[0], sizeof(res.remove[0]), "X-Spamd-Result");
	assert_true(scanpolicy_replaced_header(&res, "x-spam-flag", 11));
	assert_true(scanpolicy_replaced_header(&res, "X-Spamd-Result", 14));
	assert_true(scanpolicy_replaced_header(&res, "X-Rspamd-Server", 15));
	assert_false(scanpolicy_replaced_header(&res, "X-Spam", 6));
	assert_false(scanpolicy_replaced_header(&res, "Subject", 7));
	assert_false(scanpolicy_replaced_header(NULL, "X-Rspamd-Server", 15));
}

static void
test_spam_headers_long(void **state)
{
	struct rspamd_result res = checked(RSPAMD_ADD_HEADER, 7.5);
	char out[8192];
	char *line, *save = NULL;

	res.nsymbols = RSPAMD_SYMBOLS_MAX;
	for (unsigned i = 0; i < res.nsymbols; i++) {
		memset(res.symbols[i].name, 'A' + (char)(i % 26), RSPAMD_NAME_MAX - 1);
		res.symbols[i].name[RSPAMD_NAME_MAX - 1] = '\0';
	}
	res.nadd = 1;
	snprintf(res.add[0].name, sizeof(res.add[0].name), "X-Long");
	memset(res.add[0].value, 'v', RSPAMD_VALUE_MAX - 1);
	res.add[0].value[RSPAMD_VALUE_MAX - 1] = '\0';
	assert_true(scanpolicy_spam_headers(&res, "add header", out, sizeof(out)) > 0);
	/* every line within 998 octets */
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		assert_true(strlen(line) <= 999); /* with its CR */
}

static void
test_subject(void **state)
{
	char out[4096], big[1200];

	assert_int_equal(scanpolicy_subject_field("*** SPAM *** offer", out, sizeof(out)),
	    strlen("Subject: *** SPAM *** offer\r\n"));
	assert_string_equal(out, "Subject: *** SPAM *** offer\r\n");
	/* 8-bit: encoded words, whole characters each */
	scanpolicy_subject_field("[SPAM] Gr\xc3\xbc\xc3\x9f" "e", out, sizeof(out));
	assert_string_equal(out, "Subject: =?UTF-8?B?W1NQQU1dIEdyw7zDn2U=?=\r\n");
	/* long: folded, lines within bounds, every word at most 75 octets */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[3] = '\xc3';
	big[4] = '\xa9';
	assert_true(scanpolicy_subject_field(big, out, sizeof(out)) > 0);
	for (char *p = out, *nl; (nl = strstr(p, "\r\n")) != NULL; p = nl + 2) {
		assert_true(nl - p <= 78);
		if (nl[2] != '\0')
			assert_int_equal(nl[2], ' ');
	}
	/* no room: nothing */
	assert_int_equal(scanpolicy_subject_field(big, out, 50), 0);
	assert_string_equal(out, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_av),
		cmocka_unit_test(test_spam_actions),
		cmocka_unit_test(test_spam_thresholds),
		cmocka_unit_test(test_worse),
		cmocka_unit_test(test_spam_headers),
		cmocka_unit_test(test_spam_headers_long),
		cmocka_unit_test(test_subject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
