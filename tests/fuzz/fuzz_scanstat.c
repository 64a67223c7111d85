/*
 * fuzz_scanstat - the texts the master merges into its status file
 * (scanstat_merge: what each worker publishes, read from shared memory a
 * compromised worker can write) and the spam texts scanpolicy builds from
 * rspamd's answer (a new Subject field, the spam headers).
 *
 * Input: split at NUL bytes; up to four pieces are workers' texts; the
 * first piece is also the subject and a header value.
 *
 * Checks, besides memory errors:
 *  - the merged output is "key=value" lines, each starting with an engine
 *    name and a dot, at most SCANSTAT_ENGINES engines;
 *  - the Subject field and the spam headers are CRLF lines of at most 998
 *    octets, with no bare CR or LF and no NUL.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scanpolicy.h"
#include "scanstat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static void
crlf_lines(const char *s, size_t n)
{
	size_t line = 0;

	for (size_t i = 0; i < n; i++) {
		CHECK(s[i] != '\0');
		if (s[i] == '\r') {
			CHECK(i + 1 < n && s[i + 1] == '\n');
			continue;
		}
		if (s[i] == '\n') {
			CHECK(i > 0 && s[i - 1] == '\r');
			line = 0;
			continue;
		}
		CHECK(++line <= 998);
	}
	CHECK(n == 0 || (n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n'));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *out = NULL;
	const char *texts[4] = { NULL };
	size_t n = 0, len = 0;
	FILE *f;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (char *p = buf; n < 4 && p <= buf + size; p += strlen(p) + 1)
		texts[n++] = p;
	f = open_memstream(&out, &len);
	if (f == NULL) {
		free(buf);
		return 0;
	}
	scanstat_merge(texts, n, f);
	fclose(f);
	for (char *line = out, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		char *eq, *dot;
		nl = strchr(line, '\n');
		CHECK(nl != NULL); /* every line ends */
		*nl = '\0';
		eq = strchr(line, '=');
		dot = strchr(line, '.');
		CHECK(eq != NULL && dot != NULL && dot < eq && dot > line);
	}
	free(out);

	/* rspamd's subject and a header value: printable one-liners */
	{
		char subject[RSPAMD_SUBJECT_MAX], field[4096], hdrs[8192];
		struct rspamd_result res;
		size_t m;

		snprintf(subject, sizeof(subject), "%s", texts[0]);
		for (char *p = subject; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		m = scanpolicy_subject_field(subject, field, sizeof(field));
		CHECK(m == strlen(field));
		crlf_lines(field, m);
		memset(&res, 0, sizeof(res));
		res.status = RSPAMD_CHECKED;
		res.score = (double)size;
		res.nadd = 1;
		snprintf(res.add[0].name, sizeof(res.add[0].name), "X-Test");
		snprintf(res.add[0].value, sizeof(res.add[0].value), "%s", subject);
		res.nsymbols = 1;
		snprintf(res.symbols[0].name, sizeof(res.symbols[0].name), "%.60s", subject);
		m = scanpolicy_spam_headers(&res, "add header", hdrs, sizeof(hdrs));
		CHECK(m == strlen(hdrs));
		crlf_lines(hdrs, m);
	}
	free(buf);
	return 0;
}
