/*-------------------------------------------------------------------------
 *
 * member.c
 *		test/sync/run.sh member_format: sync/batch.c's member_format()
 *		against what credits-sync stored before it, row by row.
 *
 * Reads lines of six tab-separated fields from standard input, the first
 * five hex-encoded: the row's id, "amount,balance_after,action" and the
 * metadata's text form, as the page query gives them; the text form of
 * timestamptz_send(created_at), as it is; PostgreSQL's
 * json_build_object() of the row (TimeZone UTC); and the score
 * floor(extract(epoch FROM created_at) * 1000), or "-" where PostgreSQL
 * cannot compute it (the infinities).  The expected member is that JSON
 * without whitespace outside strings and with the id right-aligned in 19
 * characters: what the daemon stored when PostgreSQL built the JSON.
 * Exits 1 on the first difference.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credits_sync.h"

/* Decodes hex (len digits) into out (NUL-terminated); returns the bytes, or -1. */
static long
unhex(const char *hex, size_t len, char *out)
{
	size_t		n = 0;

	if (len % 2 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 2)
	{
		unsigned	v;

		if (sscanf(hex + i, "%2x", &v) != 1)
			return -1;
		out[n++] = (char) v;
	}
	out[n] = '\0';
	return (long) n;
}

/* The old daemon's member: m compacted, then its id right-aligned. */
static size_t
old_member(char *dst, const char *m, size_t len)
{
	size_t		n = json_compact(dst, m, len);
	size_t		digits = 0;

	if (n < 6 || memcmp(dst, "{\"id\":", 6) != 0)
		return n;
	while (6 + digits < n && dst[6 + digits] >= '0' && dst[6 + digits] <= '9')
		digits++;
	if (digits == 0 || digits >= MEMBER_ID_WIDTH)
		return n;
	memmove(dst + 6 + MEMBER_ID_WIDTH - digits, dst + 6, n - 6);
	memset(dst + 6, ' ', MEMBER_ID_WIDTH - digits);
	return n + MEMBER_ID_WIDTH - digits;
}

int
main(void)
{
	static char line[1 << 20];
	long		rows = 0;

	while (fgets(line, sizeof(line), stdin) != NULL)
	{
		char	   *f[6];
		char	   *p = line;
		static char id[64],
					fields[1 << 18],
					meta[1 << 18],
					json[1 << 19];
		static char got[1 << 21],
					want[1 << 19];
		long		fields_len,
					meta_len,
					json_len;
		size_t		got_len,
					want_len;
		int64_t		score;

		line[strcspn(line, "\n")] = '\0';
		for (int i = 0; i < 6; i++)
		{
			f[i] = p;
			p = strchr(p, '\t');
			if (p == NULL && i < 5)
			{
				printf("line %ld: expected 6 fields\n", rows + 1);
				return 1;
			}
			if (p)
				*p++ = '\0';
		}
		if (unhex(f[0], strlen(f[0]), id) < 0 ||
			(fields_len = unhex(f[1], strlen(f[1]), fields)) < 0 ||
			(meta_len = unhex(f[2], strlen(f[2]), meta)) < 0 ||
			(json_len = unhex(f[4], strlen(f[4]), json)) < 0 ||
			member_room((size_t) fields_len, (size_t) meta_len) > sizeof(got))
		{
			printf("line %ld: malformed input\n", rows + 1);
			return 1;
		}
		got_len = member_format(got, id, fields, (size_t) fields_len, meta,
								(size_t) meta_len, f[3], &score);
		if (got_len > member_room((size_t) fields_len, (size_t) meta_len))
		{
			printf("row %s: wrote %zu bytes, more than member_room()\n", id, got_len);
			return 1;
		}
		want_len = old_member(want, json, (size_t) json_len);
		if (got_len != want_len || memcmp(got, want, got_len) != 0)
		{
			printf("row %s: member differs\n  want %.*s\n  got  %.*s\n", id,
				   (int) want_len, want, (int) got_len, got);
			return 1;
		}
		if (strcmp(f[5], "-") != 0 && strtoll(f[5], NULL, 10) != score)
		{
			printf("row %s (%s): score %" PRId64 ", want %s\n", id, f[3], score, f[5]);
			return 1;
		}
		rows++;
	}

	/* malformed columns are refused, not formatted */
	{
		static const char *const bad[][3] = {
			{"x1", "1,2,a", "\\x0000000000000000"},
			{"-1", "1,2,a", "\\x0000000000000000"},
			{"1", "1;2,a", "\\x0000000000000000"},
			{"1", "1,2", "\\x0000000000000000"},
			{"1", ",2,a", "\\x0000000000000000"},
			{"1", "1,2,a", "\\x00000000000000"},
			{"1", "1,2,a", "\\x000000000000000000"},
			{"1", "1,2,a", "\\x00000000000000zz"},
			{"1", "1,2,a", "0000000000000000"},
			{"12345678901234567890", "1,2,a", "\\x0000000000000000"},
		};
		char		out[512];
		int64_t		s;

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			if (member_format(out, bad[i][0], bad[i][1], strlen(bad[i][1]),
							  "{}", 2, bad[i][2], &s) != 0)
			{
				printf("malformed case %zu was formatted\n", i);
				return 1;
			}
	}
	if (rows < 1000)
	{
		printf("only %ld rows compared\n", rows);
		return 1;
	}
	printf("%ld rows: every member and score as before\n", rows);
	return 0;
}
