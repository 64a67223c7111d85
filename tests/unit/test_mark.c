/*
 * test_mark - the classification mark: encoding, decoding, and agreement
 * with the defines of nftables/smtpgw.nft.in and the values in smtpgw-nft
 * (the ruleset cannot include mark.h, so this test is what keeps them from
 * drifting).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mark.h"

static const struct {
	struct mark_fields f;
	uint32_t mark;
} layout[] = {
	{{DECISION_NONE, false, -1, -1}, 0x00000000},
	{{DECISION_INTERCEPT, false, -1, -1}, 0x00000010},
	{{DECISION_BYPASS, false, -1, -1}, 0x00000020},
	{{DECISION_REJECT, false, -1, -1}, 0x00000030},
	{{DECISION_NONE, true, -1, -1}, 0x00000040},
	{{DECISION_INTERCEPT, false, 0, 0}, 0x00010110},
	{{DECISION_BYPASS, true, 1, 4}, 0x00050260},
	{{DECISION_REJECT, true, 3, -1}, 0x00000470},
	{{DECISION_INTERCEPT, true, MARK_MAX_INDEX - 1, MARK_MAX_INDEX - 1}, 0x00ffff50},
};

static void
test_layout(void **state)
{
	struct mark_fields f;

	for (size_t i = 0; i < sizeof(layout) / sizeof(layout[0]); i++) {
		uint32_t m = mark_encode(&layout[i].f);

		if (m != layout[i].mark)
			fail_msg("row %zu: encoded 0x%08x, expected 0x%08x", i, m, layout[i].mark);
		assert_int_equal(mark_decode(m, &f), 0);
		assert_int_equal(f.decision, layout[i].f.decision);
		assert_int_equal(f.inbound, layout[i].f.inbound);
		assert_int_equal(f.zone, layout[i].f.zone);
		assert_int_equal(f.policy, layout[i].f.policy);
	}
}

/* Every encodable combination round-trips and stays inside the ct mask. */
static void
test_round_trip(void **state)
{
	static const int idx[] = {-1, 0, 1, 17, 127, 128, MARK_MAX_INDEX - 1};
	struct mark_fields in, out;

	for (int d = DECISION_NONE; d <= DECISION_REJECT; d++)
		for (int inb = 0; inb < 2; inb++)
			for (size_t z = 0; z < sizeof(idx) / sizeof(idx[0]); z++)
				for (size_t p = 0; p < sizeof(idx) / sizeof(idx[0]); p++) {
					uint32_t m;

					in.decision = (enum decision)d;
					in.inbound = inb;
					in.zone = idx[z];
					in.policy = idx[p];
					m = mark_encode(&in);
					assert_int_equal(m & ~MARK_CT_MASK, 0);
					assert_int_equal(mark_decode(m, &out), 0);
					assert_int_equal(out.decision, in.decision);
					assert_int_equal(out.inbound, in.inbound);
					assert_int_equal(out.zone, in.zone);
					assert_int_equal(out.policy, in.policy);
				}
}

/* Indices that do not fit in 8 bits are encoded as unknown, never wrapped. */
static void
test_index_overflow(void **state)
{
	struct mark_fields in = {DECISION_INTERCEPT, false, MARK_MAX_INDEX, 1000}, out;

	assert_int_equal(mark_encode(&in), 0x10);
	assert_int_equal(mark_decode(mark_encode(&in), &out), 0);
	assert_int_equal(out.zone, -1);
	assert_int_equal(out.policy, -1);
}

static void
test_decode(void **state)
{
	struct mark_fields f;

	/* The routing bits are not part of the classification. */
	assert_int_equal(mark_decode(0x10 | MARK_TPROXY | MARK_UPSTREAM, &f), 0);
	assert_int_equal(f.decision, DECISION_INTERCEPT);
	assert_false(f.inbound);
	assert_int_equal(f.zone, -1);
	assert_int_equal(f.policy, -1);

	/* Reserved bits 24-31 make a mark malformed. */
	for (int bit = 24; bit < 32; bit++)
		assert_int_equal(mark_decode(0x00010110u | (1u << bit), &f), -1);
	assert_int_equal(mark_decode(0x00ffffffu, &f), 0);
}

static void
test_decision_bits(void **state)
{
	assert_int_equal(MARK_DECISION_MASK, 0x30);
	assert_int_equal(DECISION_INTERCEPT << MARK_DECISION_SHIFT, 0x10);
	assert_int_equal(DECISION_BYPASS << MARK_DECISION_SHIFT, 0x20);
	assert_int_equal(DECISION_REJECT << MARK_DECISION_SHIFT, 0x30);
	/* The fields do not overlap each other or the routing bits. */
	assert_int_equal(MARK_DECISION_MASK & (MARK_TPROXY | MARK_UPSTREAM | MARK_INBOUND), 0);
	assert_int_equal(MARK_CT_MASK & (MARK_TPROXY | MARK_UPSTREAM | MARK_SMTP), 0);
	/* MARK_SMTP is not part of the classification, nor a routing bit. */
	assert_int_equal(MARK_SMTP & (MARK_TPROXY | MARK_UPSTREAM | MARK_DECISION_MASK |
	    MARK_INBOUND), 0);
	assert_int_equal(MARK_CT_MASK, MARK_DECISION_MASK | MARK_INBOUND |
	    0xffu << MARK_ZONE_SHIFT | 0xffu << MARK_POLICY_SHIFT);

	assert_string_equal(decision_name(DECISION_NONE), "none");
	assert_string_equal(decision_name(DECISION_INTERCEPT), "intercept");
	assert_string_equal(decision_name(DECISION_BYPASS), "bypass");
	assert_string_equal(decision_name(DECISION_REJECT), "reject");
	assert_string_equal(decision_name((enum decision)7), "invalid");
}

/* ---- agreement with the nftables ruleset ---- */

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text;
	long n;

	if (f == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	text = malloc((size_t)n + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
	text[n] = '\0';
	fclose(f);
	return text;
}

static uint32_t
decision_mark(enum decision d)
{
	struct mark_fields f = {d, false, -1, -1};

	return mark_encode(&f);
}

static void
expect_line(const char *text, const char *path, const char *needle)
{
	if (strstr(text, needle) == NULL)
		fail_msg("%s does not contain \"%s\" (mark.h and the ruleset disagree)", path,
		    needle);
}

/*
 * The value of "define NAME = VALUE" at the start of a line, up to the
 * comment; NULL when the template has no such define.
 */
static const char *
nft_define(const char *text, const char *name, char *buf, size_t len)
{
	char key[64];
	size_t klen;

	klen = (size_t)snprintf(key, sizeof(key), "\ndefine %s = ", name);
	for (const char *p = text; (p = strstr(p, key)) != NULL; p++) {
		const char *v = p + klen, *end = v;
		size_t n;

		while (*end != '\0' && *end != '\n' && *end != '#')
			end++;
		while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		n = (size_t)(end - v);
		if (n >= len)
			fail_msg("define %s: value too long", name);
		memcpy(buf, v, n);
		buf[n] = '\0';
		return buf;
	}
	return NULL;
}

static void
expect_define(const char *text, const char *path, const char *name, const char *want)
{
	char buf[128];
	const char *got = nft_define(text, name, buf, sizeof(buf));

	if (got == NULL)
		fail_msg("%s: no \"define %s\" (mark.h has %s)", path, name, want);
	if (strcmp(got, want) != 0)
		fail_msg("%s: define %s = %s, mark.h says %s", path, name, got, want);
}

/* The defines are mark.h's values, written the way the template writes them. */
static void
test_nft_defines(void **state)
{
	const char *path = SMTPGW_SRCDIR "/nftables/smtpgw.nft.in";
	char *text = slurp(path);
	char want[64];

	snprintf(want, sizeof(want), "0x%x", MARK_TPROXY);
	expect_define(text, path, "mark_tproxy", want);
	snprintf(want, sizeof(want), "0x%x", MARK_SMTP);
	expect_define(text, path, "mark_smtp", want);
	snprintf(want, sizeof(want), "0x%x", MARK_DECISION_MASK);
	expect_define(text, path, "mark_decision", want);
	snprintf(want, sizeof(want), "0x%x", decision_mark(DECISION_NONE));
	expect_define(text, path, "decision_none", want);
	snprintf(want, sizeof(want), "0x%x", decision_mark(DECISION_INTERCEPT));
	expect_define(text, path, "decision_intercept", want);
	snprintf(want, sizeof(want), "0x%x", decision_mark(DECISION_BYPASS));
	expect_define(text, path, "decision_bypass", want);
	snprintf(want, sizeof(want), "0x%x", decision_mark(DECISION_REJECT));
	expect_define(text, path, "decision_reject", want);
	snprintf(want, sizeof(want), "0x%08x", MARK_CT_MASK);
	expect_define(text, path, "mark_ct", want);
	snprintf(want, sizeof(want), "{ %d, %d }", MARK_PORT_SMTP, MARK_PORT_SMTPS);
	expect_define(text, path, "smtp_ports", want);
	free(text);
}

/*
 * The rules use the names, never a number of their own: outside the
 * define lines and comments no "0x" appears, and the rules that carry the
 * design are there.
 */
static void
test_nft_rules_use_defines(void **state)
{
	const char *path = SMTPGW_SRCDIR "/nftables/smtpgw.nft.in";
	char *text = slurp(path);
	int lineno = 0;

	for (char *line = text, *next; line != NULL; line = next) {
		char *hash;

		lineno++;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (strncmp(line, "define ", 7) == 0)
			continue;
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		if (strstr(line, "0x") != NULL)
			fail_msg("%s:%d: a literal mark value; use a define: %s", path, lineno, line);
		if (strstr(line, " 25") != NULL || strstr(line, "465") != NULL)
			fail_msg("%s:%d: a literal SMTP port; use $smtp_ports: %s", path, lineno, line);
	}
	free(text);

	text = slurp(path);
	/* The queue chain is in the template: the match once, the queue. */
	expect_line(text, path, "tcp dport $smtp_ports fib daddr type != local "
	    "meta mark set meta mark | $mark_smtp\n");
	expect_line(text, path, "\n@NATIVE@\t\tmeta mark & $mark_smtp == $mark_smtp "
	    "tcp flags & (fin | syn | rst | ack) == syn queue flags bypass to $queue_num\n");
	/* Conntrack save / restore. */
	expect_line(text, path, "ct mark set meta mark & $mark_ct\n");
	expect_line(text, path, "meta mark set ct mark & $mark_ct\n");
	/* Bypass forwards, intercept goes to the listener, the rest is reset. */
	expect_line(text, path, "meta mark & $mark_decision == $decision_bypass accept\n");
	expect_line(text, path, "meta mark & $mark_decision == $decision_intercept meta nfproto ipv4");
	expect_line(text, path, "meta mark & $mark_decision == $decision_intercept meta nfproto ipv6");
	expect_line(text, path, "\t\treject with tcp reset\n");
	/* Second layer: any forwarded SMTP without a bypass verdict. */
	expect_line(text, path, "\t\ttcp dport $smtp_ports ct mark & $mark_decision != "
	    "$decision_bypass reject with tcp reset\n");
	free(text);
}

/* smtpgw-nft: the policy routing bit and the mark its NFQUEUE rule matches. */
static void
test_nft_script_agrees(void **state)
{
	const char *path = SMTPGW_SRCDIR "/nftables/smtpgw-nft";
	char *text = slurp(path);
	char s[64];

	snprintf(s, sizeof(s), "\nMARK_TPROXY=0x%x\t", MARK_TPROXY);
	expect_line(text, path, s);
	snprintf(s, sizeof(s), "\nMARK_SMTP=0x%x\n", MARK_SMTP);
	expect_line(text, path, s);
	expect_line(text, path, "fwmark $MARK_TPROXY/$MARK_TPROXY iif");
	expect_line(text, path, "-m mark --mark $MARK_SMTP/$MARK_SMTP");
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_index_overflow),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_decision_bits),
		cmocka_unit_test(test_nft_defines),
		cmocka_unit_test(test_nft_rules_use_defines),
		cmocka_unit_test(test_nft_script_agrees),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
