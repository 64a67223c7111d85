/*
 * fuzz_rule - the rule compiler and matcher.
 *
 * Input: byte 0 picks the ruleset's default and error actions; the rest,
 * up to the first NUL, is rule lines ("ACTION [log] [alarm] KIND
 * PATTERN", one per line); after the NUL, items to match, one per line.
 *
 * Checks, besides memory errors and time (PCRE2's limits must stop any
 * regex; libFuzzer's -timeout catches one that does not):
 *  - a rule that compiles formats (rule_format) to a line that compiles to
 *    the same rule; one that does not leaves an error text;
 *  - matching: the result is the first rule that matches or the default;
 *    exact and wildcard rules are checked against a reference (a plain
 *    dynamic-programming wildcard matcher), so an earlier exact/wildcard
 *    rule can never be skipped and a reported one really matches; an
 *    error carries the error action and names a regex rule.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

#define ITEM_MAX 256

static unsigned char
lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static size_t
u8len(const unsigned char *s, size_t n)
{
	size_t k = 1;

	if (s[0] >= 0xc0 && s[0] < 0xe0)
		k = 2;
	else if (s[0] >= 0xe0 && s[0] < 0xf0)
		k = 3;
	else if (s[0] >= 0xf0 && s[0] < 0xf8)
		k = 4;
	if (k > n)
		return 1;
	for (size_t i = 1; i < k; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 1;
	return k;
}

/* m[i][j]: pat[i..] matches s[j..]. */
static bool
ref_wildcard(const char *pat, size_t plen, const char *str, size_t n)
{
	static bool m[RULE_PATTERN_MAX + 1][ITEM_MAX + 1];
	const unsigned char *p = (const unsigned char *)pat, *s = (const unsigned char *)str;

	for (size_t i = plen + 1; i-- > 0;) {
		for (size_t j = n + 1; j-- > 0;) {
			bool v;

			if (i == plen)
				v = j == n;
			else if (p[i] == '*') /* any run of characters (rule.h) */
				v = m[i + 1][j] || (j < n && m[i][j + u8len(s + j, n - j)]);
			else if (j == n)
				v = false;
			else if (p[i] == '?')
				v = m[i + 1][j + u8len(s + j, n - j)];
			else
				v = lower(p[i]) == lower(s[j]) && m[i + 1][j + 1];
			m[i][j] = v;
		}
	}
	return m[0][0];
}

static bool
ref_match(const struct rule *r, const char *s, size_t n)
{
	if (r->kind == RULE_EXACT)
		return r->len == n && strncasecmp(r->pattern, s, n) == 0 && !memchr(s, '\0', n);
	return ref_wildcard(r->pattern, r->len, s, n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ruleset rs, rs2;
	const char *text, *nul, *end;
	char line[RULE_PATTERN_MAX + 128], err[256], fmt[RULE_PATTERN_MAX + 128];
	unsigned lineno = 0;

	if (size < 1 || size > 32768)
		return 0;
	ruleset_init(&rs, "fuzz", (enum rule_action)(data[0] % 5), data[0] & 0x20 ? RULE_F_LOG : 0);
	ruleset_init(&rs2, "fuzz2", RULE_ALLOW, 0);
	rs.err_action = (enum rule_action)((data[0] >> 3) % 5);
	text = (const char *)data + 1;
	end = (const char *)data + size;
	nul = memchr(text, '\0', (size_t)(end - text));
	if (nul == NULL)
		nul = end;

	/* the rules */
	for (const char *p = text; p < nul && rs.nrules < 64;) {
		const char *e = memchr(p, '\n', (size_t)(nul - p));
		size_t n;

		if (e == NULL)
			e = nul;
		n = (size_t)(e - p);
		lineno++;
		if (n < sizeof(line)) {
			memcpy(line, p, n);
			line[n] = '\0';
			err[0] = '\0';
			if (ruleset_add_line(&rs, line, lineno, err, sizeof(err)) == 0) {
				const struct rule *r = &rs.rules[rs.nrules - 1];

				CHECK(r->line == lineno && r->len > 0 && r->len <= RULE_PATTERN_MAX);
				rule_format(r, fmt, sizeof(fmt));
				err[0] = '\0';
				CHECK(ruleset_add_line(&rs2, fmt, lineno, err, sizeof(err)) == 0);
				const struct rule *r2 = &rs2.rules[rs2.nrules - 1];
				CHECK(r2->kind == r->kind && r2->action == r->action &&
				    r2->flags == r->flags && r2->len == r->len &&
				    memcmp(r2->pattern, r->pattern, r->len) == 0);
			} else {
				CHECK(err[0] != '\0' && strnlen(err, sizeof(err)) < sizeof(err));
			}
		}
		p = e + 1;
	}

	/* the items */
	for (const char *p = nul < end ? nul + 1 : end; p < end;) {
		const char *e = memchr(p, '\n', (size_t)(end - p));
		size_t n;
		struct rule_result res;

		if (e == NULL)
			e = end;
		n = (size_t)(e - p);
		p = e + 1;
		if (n > ITEM_MAX)
			continue;
		res = ruleset_match(&rs, e - n, n);
		if (res.error) {
			CHECK(res.rule && res.rule->kind == RULE_REGEX);
			CHECK(res.action == rs.err_action);
		} else if (res.rule) {
			CHECK(res.action == res.rule->action && res.flags == res.rule->flags);
		} else {
			CHECK(res.action == rs.dflt && res.flags == rs.dflt_flags);
		}
		size_t upto = res.rule ? (size_t)(res.rule - rs.rules) : rs.nrules;
		CHECK(upto <= rs.nrules);
		for (size_t i = 0; i < upto && i < 16; i++)
			if (rs.rules[i].kind != RULE_REGEX)
				CHECK(!ref_match(&rs.rules[i], e - n, n));
		if (res.rule && !res.error && res.rule->kind != RULE_REGEX)
			CHECK(ref_match(res.rule, e - n, n));
	}
	ruleset_free(&rs);
	ruleset_free(&rs2);
	return 0;
}
