/*
 * test_rule - rulesets: the three pattern kinds (case, anchoring, UTF-8),
 * first match wins, the default for no match, the one-line rule syntax
 * and its error texts (a bad regex names its offset), the round trip
 * through rule_format, the bounds, and a catastrophic regex on a hostile
 * item ending as a flagged error with the error action, quickly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rule.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct wc {
	const char *pat, *s;
	bool match;
};

static const struct wc wcs[] = {
	{ "*.exe", "a.exe", true },
	{ "*.exe", "A.EXE", true },
	{ "*.exe", "a.exe.txt", false },
	{ "*.exe", ".exe", true },
	{ "*.exe", "exe", false },
	{ "*", "", true },
	{ "", "", true },
	{ "", "a", false },
	{ "?", "", false },
	{ "?", "a", true },
	{ "?", "\xc3\xa9", true },   /* one character, two octets */
	{ "?", "\xe2\x82\xac", true },
	{ "??", "\xc3\xa9", false },
	/* '*' takes whole characters: never half of one for '?' to count */
	{ "*??", "\xe2\x82\xa9", false },
	{ "*??", "a\xe2\x82\xa9", true },
	{ "*?", "\xe2\x82\xa9", true },
	{ "*??a", "\xe2\xa9\xa9" "a", false }, /* one character before the a */
	{ "*??a", "x\xe2\xa9\xa9" "a", true },
	{ "*\xa9", "\xc3\xa9", false },
	{ "a?c", "abc", true },
	{ "a*b*c", "aXbYbZc", true },
	{ "a*b*c", "aXbYbZ", false },
	{ "*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false },
	{ "**x**", "abxcd", true },
	{ "invoice*.pdf.*", "Invoice_2024.PDF.js", true },
	{ "\xc3\xa9t\xc3\xa9.*", "\xc3\xa9t\xc3\xa9.doc", true },
};

static void
test_wildcard(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(wcs); i++) {
		bool m = rule_wildcard(wcs[i].pat, strlen(wcs[i].pat), wcs[i].s, strlen(wcs[i].s));

		if (m != wcs[i].match) {
			fprintf(stderr, "\"%s\" ~ \"%s\": %d\n", wcs[i].pat, wcs[i].s, m);
			fail();
		}
	}
}

static void
add(struct ruleset *rs, const char *line)
{
	char err[256];

	if (ruleset_add_line(rs, line, 1, err, sizeof(err)) != 0) {
		fprintf(stderr, "\"%s\": %s\n", line, err);
		fail();
	}
}

static void
test_match_order_and_default(void **state)
{
	struct ruleset rs;
	struct rule_result r;

	(void)state;
	ruleset_init(&rs, "filenames", RULE_ALLOW, RULE_F_LOG);
	add(&rs, "allow exact report.exe");
	add(&rs, "strip log pattern *.exe");
	add(&rs, "deny log alarm regex \\.(scr|pif|cpl)$");
	add(&rs, "block alarm   exact   evil.bat  ");

	r = ruleset_match(&rs, "REPORT.EXE", 10);
	assert_non_null(r.rule);
	assert_int_equal(r.action, RULE_ALLOW);
	assert_int_equal(r.rule - rs.rules, 0);

	r = ruleset_match(&rs, "x.exe", 5);
	assert_int_equal(r.action, RULE_STRIP);
	assert_int_equal(r.flags, RULE_F_LOG);

	r = ruleset_match(&rs, "screen.SCR", 10);
	assert_int_equal(r.action, RULE_DENY);
	assert_int_equal(r.flags, RULE_F_LOG | RULE_F_ALARM);
	assert_false(r.error);

	r = ruleset_match(&rs, "evil.bat", 8);
	assert_int_equal(r.action, RULE_BLOCK);
	assert_string_equal(r.rule->pattern, "evil.bat"); /* trailing spaces trimmed */

	r = ruleset_match(&rs, "notes.txt", 9);
	assert_null(r.rule);
	assert_int_equal(r.action, RULE_ALLOW);
	assert_int_equal(r.flags, RULE_F_LOG);
	assert_false(r.error);

	/* exact never matches across a NUL */
	r = ruleset_match(&rs, "evil.bat\0x", 10);
	assert_null(r.rule);
	ruleset_free(&rs);
}

static void
test_regex_semantics(void **state)
{
	struct ruleset rs;

	(void)state;
	ruleset_init(&rs, "headers", RULE_ALLOW, 0);
	add(&rs, "deny regex ^subject:.*viagra");
	add(&rs, "strip regex (?-i)^X-Secret:");
	add(&rs, "drop regex caf\xc3\xa9");

	assert_int_equal(ruleset_match(&rs, "Subject: cheap VIAGRA", 21).action, RULE_DENY);
	assert_int_equal(ruleset_match(&rs, "X-Subject: viagra", 17).action, RULE_ALLOW);
	assert_int_equal(ruleset_match(&rs, "X-Secret: 1", 11).action, RULE_STRIP);
	assert_int_equal(ruleset_match(&rs, "x-secret: 1", 11).action, RULE_ALLOW);
	assert_int_equal(ruleset_match(&rs, "un CAF\xc3\x89 noir", 14).action, RULE_DROP);
	/* invalid UTF-8 in the item is no error */
	assert_false(ruleset_match(&rs, "\xff\xfe caf\xc3\xa9", 9).error);
	assert_int_equal(ruleset_match(&rs, "\xff\xfe caf\xc3\xa9", 9).action, RULE_DROP);
	assert_int_equal(ruleset_match(&rs, "", 0).action, RULE_ALLOW);
	ruleset_free(&rs);
}

/*
 * Nested quantifiers on a long run that finally fails to match:
 * exponential backtracking without the limits.
 */
static void
test_regex_runaway(void **state)
{
	struct ruleset rs;
	char item[20000];
	struct rule_result r;
	clock_t t0;

	(void)state;
	ruleset_init(&rs, "evil", RULE_ALLOW, 0);
	add(&rs, "allow log regex ^(\\w+\\s?)*$");
	memset(item, 'a', sizeof(item));
	item[sizeof(item) - 1] = '!';
	t0 = clock();
	r = ruleset_match(&rs, item, sizeof(item));
	assert_true(r.error);
	assert_int_equal(r.action, RULE_DENY);
	assert_true(r.flags & RULE_F_LOG);
	assert_ptr_equal(r.rule, &rs.rules[0]);
	assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);

	/* the error action is the ruleset's */
	rs.err_action = RULE_DROP;
	assert_int_equal(ruleset_match(&rs, item, sizeof(item)).action, RULE_DROP);
	ruleset_free(&rs);

	/* an item longer than RULE_SUBJECT_MAX is an error too */
	ruleset_init(&rs, "x", RULE_ALLOW, 0);
	{
		char *big = calloc(1, RULE_SUBJECT_MAX + 1);

		r = ruleset_match(&rs, big, RULE_SUBJECT_MAX + 1);
		assert_true(r.error);
		assert_int_equal(r.action, RULE_DENY);
		free(big);
	}
	ruleset_free(&rs);
}

struct bad {
	const char *line;
	const char *err; /* a substring of the message */
};

static const struct bad bads[] = {
	{ "", "empty rule" },
	{ "   ", "empty rule" },
	{ "permit exact x", "unknown action 'permit'" },
	{ "deny", "missing pattern kind" },
	{ "deny log", "missing pattern kind" },
	{ "deny loud exact x", "unknown word 'loud'" },
	{ "deny exact", "missing pattern after 'exact'" },
	{ "deny regex   ", "missing pattern after 'regex'" },
	{ "deny regex a(b", "regex: missing closing parenthesis at offset 3" },
	{ "deny regex [z-a]", "regex: range out of order in character class at offset 3" },
	{ "deny regex \\C", "regex: " },
	{ "deny regex ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((a))))))"
	  "))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))", "regex: parentheses are too deeply nested" },
};

static void
test_syntax_errors(void **state)
{
	struct ruleset rs;

	(void)state;
	ruleset_init(&rs, "x", RULE_ALLOW, 0);
	for (size_t i = 0; i < N(bads); i++) {
		char err[256] = "";

		if (ruleset_add_line(&rs, bads[i].line, 7, err, sizeof(err)) == 0 ||
		    strstr(err, bads[i].err) == NULL) {
			fprintf(stderr, "\"%s\": \"%s\", want \"%s\"\n", bads[i].line, err, bads[i].err);
			fail();
		}
	}
	assert_int_equal(rs.nrules, 0);
	ruleset_free(&rs);
}

static void
test_bounds(void **state)
{
	struct ruleset rs;
	char err[256], pat[RULE_PATTERN_MAX + 2];

	(void)state;
	ruleset_init(&rs, "big", RULE_ALLOW, 0);
	memset(pat, 'x', sizeof(pat));
	assert_int_equal(ruleset_add(&rs, RULE_EXACT, pat, RULE_PATTERN_MAX, RULE_DENY, 0, 1, err,
	    sizeof(err)), 0);
	assert_int_equal(ruleset_add(&rs, RULE_EXACT, pat, RULE_PATTERN_MAX + 1, RULE_DENY, 0, 1,
	    err, sizeof(err)), -1);
	assert_non_null(strstr(err, "longer than"));
	assert_int_equal(ruleset_add(&rs, RULE_EXACT, "a\0b", 3, RULE_DENY, 0, 1, err,
	    sizeof(err)), -1);
	assert_int_equal(ruleset_add(&rs, RULE_EXACT, "", 0, RULE_DENY, 0, 1, err, sizeof(err)), -1);
	assert_int_equal(ruleset_add(&rs, RULE_EXACT, "a", 1, (enum rule_action)9, 0, 1, err,
	    sizeof(err)), -1);
	while (rs.nrules < RULESET_RULES_MAX)
		assert_int_equal(ruleset_add(&rs, RULE_WILDCARD, "*.x", 3, RULE_DENY, 0, 1, err,
		    sizeof(err)), 0);
	assert_int_equal(ruleset_add(&rs, RULE_WILDCARD, "*.x", 3, RULE_DENY, 0, 1, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "too many rules in big"));
	ruleset_free(&rs);
}

static void
test_format_round_trip(void **state)
{
	static const char *const lines[] = {
		"allow exact a.txt",
		"deny log pattern *.exe",
		"strip log alarm regex \\.(js|vbs)$",
		"block alarm exact with spaces inside",
		"drop pattern ?",
	};
	struct ruleset rs, rs2;
	char buf[2048];

	(void)state;
	ruleset_init(&rs, "a", RULE_DENY, 0);
	ruleset_init(&rs2, "b", RULE_DENY, 0);
	for (size_t i = 0; i < N(lines); i++) {
		add(&rs, lines[i]);
		rule_format(&rs.rules[i], buf, sizeof(buf));
		assert_string_equal(buf, lines[i]);
		add(&rs2, buf);
		assert_int_equal(rs2.rules[i].kind, rs.rules[i].kind);
		assert_int_equal(rs2.rules[i].action, rs.rules[i].action);
		assert_int_equal(rs2.rules[i].flags, rs.rules[i].flags);
		assert_string_equal(rs2.rules[i].pattern, rs.rules[i].pattern);
	}
	assert_int_equal(rs.rules[0].line, 1);
	ruleset_free(&rs);
	ruleset_free(&rs2);
}

static void
test_names(void **state)
{
	enum rule_action a;

	(void)state;
	assert_string_equal(rule_action_name(RULE_STRIP), "strip");
	assert_string_equal(rule_kind_name(RULE_WILDCARD), "pattern");
	assert_int_equal(rule_action_parse("Block", 5, &a), 0);
	assert_int_equal(a, RULE_BLOCK);
	assert_int_equal(rule_action_parse("blocks", 6, &a), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wildcard),
		cmocka_unit_test(test_match_order_and_default),
		cmocka_unit_test(test_regex_semantics),
		cmocka_unit_test(test_regex_runaway),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
