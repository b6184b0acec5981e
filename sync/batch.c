/*-------------------------------------------------------------------------
 *
 * batch.c
 *		The batch type handed from the PostgreSQL side to the Redis side.
 *
 * A SyncBatch (credits_sync.h) is plain C: users, rows and values as
 * NUL-terminated strings in one buffer the batch owns.  pg.c fills it from
 * a query result and frees the result at once; main.c hands it to
 * redis.c, which reads it and needs nothing of libpq.
 *
 * Also the anchor's text form (SyncAnchor), which pg.c reads from
 * PostgreSQL and main.c keeps in the cursor; and the txs:<user> member of
 * a ledger row (member_format), which pg.c builds from the row's columns
 * rather than have PostgreSQL build JSON for every row.
 *
 * Calls: nothing; pg.c and main.c call batch_clear(), member_format() and
 * the anchor_* functions.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credits_sync.h"

/* b is zeroed or was filled by one of pg.c's readers. */
void
batch_clear(SyncBatch *b)
{
	free(b->strings);
	free(b->users);
	free(b->txs);
	free(b->cur);
	memset(b, 0, sizeof(*b));
}

/*
 * Reads an unsigned decimal of at most 19 digits (below 2^63) at *p, which
 * must start with a digit, and advances *p past it.  False if there is
 * none.
 */
static bool
read_decimal(const char **p, int64_t *out)
{
	int64_t		v = 0;
	int			n = 0;

	while (**p >= '0' && **p <= '9')
	{
		if (++n > 18 && v > (INT64_MAX - (**p - '0')) / 10)
			return false;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	*out = v;
	return n > 0;
}

/*
 * Parses "<lid>:<lhash>/<eid>:<etxid>" (either part may be empty; lhash is
 * 64 lowercase hex digits, or "-") into *a.  False, with *a zeroed, if s is
 * malformed.
 */
bool
anchor_parse(const char *s, SyncAnchor *a)
{
	const char *p = s;
	int64_t		v;

	memset(a, 0, sizeof(*a));
	if (*p != '/')
	{
		size_t		hlen;

		if (!read_decimal(&p, &a->lid) || a->lid <= 0 || *p++ != ':')
			goto bad;
		hlen = strcspn(p, "/");
		if (!(hlen == 1 && *p == '-') &&
			!(hlen == 64 && strspn(p, "0123456789abcdef") >= 64))
			goto bad;
		memcpy(a->lhash, p, hlen);
		a->lhash[hlen] = '\0';
		p += hlen;
	}
	if (*p++ != '/')
		goto bad;
	if (*p != '\0')
	{
		if (!read_decimal(&p, &a->eid) || a->eid <= 0 || *p++ != ':' ||
			!read_decimal(&p, &v) || *p != '\0')
			goto bad;
		a->etxid = (uint64_t) v;
	}
	return true;
bad:
	memset(a, 0, sizeof(*a));
	return false;
}

/*
 * Writes a's text form into buf (n bytes; 128 are always enough: 19 + 1 +
 * 64 + 1 + 19 + 1 + 19 characters and the NUL).
 */
void
anchor_format(const SyncAnchor *a, char *buf, size_t n)
{
	int			k = 0;

	buf[0] = '\0';
	if (a->lid > 0)
		k = snprintf(buf, n, "%" PRId64 ":%s", a->lid, a->lhash);
	if (k < 0 || (size_t) k >= n)
		k = 0;
	if (a->eid > 0)
		snprintf(buf + k, n - (size_t) k, "/%" PRId64 ":%" PRIu64, a->eid, a->etxid);
	else
		snprintf(buf + k, n - (size_t) k, "/");
}

/* Keeps in *into the newer (larger id) ledger row and event of the two. */
void
anchor_merge(SyncAnchor *into, const SyncAnchor *from)
{
	if (from->lid > into->lid)
	{
		into->lid = from->lid;
		memcpy(into->lhash, from->lhash, sizeof(into->lhash));
	}
	if (from->eid > into->eid)
	{
		into->eid = from->eid;
		into->etxid = from->etxid;
	}
}

/*
 * Copies src (len bytes of JSON text) to dst without the whitespace outside
 * strings, and returns the new length.  dst has room for len bytes.
 */
size_t
json_compact(char *dst, const char *src, size_t len)
{
	bool		in_string = false;
	bool		escaped = false;
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		char		c = src[i];

		if (in_string)
		{
			dst[n++] = c;
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		}
		else if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		else
		{
			if (c == '"')
				in_string = true;
			dst[n++] = c;
		}
	}
	return n;
}

/* Appends s (len bytes) at d as a JSON string, escaped as PostgreSQL's escape_json() does. */
static char *
put_json_string(char *d, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	*d++ = '"';
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		switch (c)
		{
			case '\b':
				*d++ = '\\';
				*d++ = 'b';
				break;
			case '\f':
				*d++ = '\\';
				*d++ = 'f';
				break;
			case '\n':
				*d++ = '\\';
				*d++ = 'n';
				break;
			case '\r':
				*d++ = '\\';
				*d++ = 'r';
				break;
			case '\t':
				*d++ = '\\';
				*d++ = 't';
				break;
			case '"':
				*d++ = '\\';
				*d++ = '"';
				break;
			case '\\':
				*d++ = '\\';
				*d++ = '\\';
				break;
			default:
				if (c < ' ')
				{
					memcpy(d, "\\u00", 4);
					d[4] = hex[c >> 4];
					d[5] = hex[c & 15];
					d += 6;
				}
				else
					*d++ = (char) c;
		}
	}
	*d++ = '"';
	return d;
}

/* Appends v at d in decimal, zero-padded to at least width digits. */
static char *
put_zeropad(char *d, uint64_t v, int width)
{
	char		tmp[24];
	int			n = 0;

	do
	{
		tmp[n++] = (char) ('0' + v % 10);
		v /= 10;
	} while (v > 0);
	while (n < width)
		tmp[n++] = '0';
	while (n > 0)
		*d++ = tmp[--n];
	return d;
}

/* floor(a / b) for b > 0 */
static int64_t
floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b < 0 ? 1 : 0);
}

/*
 * Appends, quoted, timestamptz t (microseconds since 2000-01-01 00:00 UTC,
 * the value of timestamptz_send) the way PostgreSQL writes a timestamptz
 * in JSON with TimeZone UTC: 2025-01-02T03:04:05.1234+00:00, the fraction
 * without trailing zeros and left out when zero, years before 1 as 1 BC
 * and so on (the proleptic Gregorian calendar, as PostgreSQL uses), and
 * "infinity" or "-infinity" for the two infinities.
 */
static char *
put_timestamptz(char *d, int64_t t)
{
	const int64_t usecs_per_day = INT64_C(86400000000);
	int64_t		days,
				us,
				z,
				era,
				year;
	unsigned	doe,
				yoe,
				doy,
				mp,
				day,
				month;
	int			frac_digits;
	uint64_t	frac;

	if (t == INT64_MAX || t == INT64_MIN)
	{
		const char *s = t == INT64_MAX ? "\"infinity\"" : "\"-infinity\"";

		memcpy(d, s, strlen(s));
		return d + strlen(s);
	}
	days = floor_div(t, usecs_per_day);
	us = t - days * usecs_per_day;

	/* days since 2000-01-01 to a civil date (shifted to eras from 0000-03-01) */
	z = days + 10957 + 719468;
	era = floor_div(z, 146097);
	doe = (unsigned) (z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	year = (int64_t) yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	day = doy - (153 * mp + 2) / 5 + 1;
	month = mp < 10 ? mp + 3 : mp - 9;
	if (month <= 2)
		year++;

	*d++ = '"';
	d = put_zeropad(d, (uint64_t) (year > 0 ? year : 1 - year), 4);
	*d++ = '-';
	d = put_zeropad(d, month, 2);
	*d++ = '-';
	d = put_zeropad(d, day, 2);
	*d++ = 'T';
	d = put_zeropad(d, (uint64_t) (us / INT64_C(3600000000)), 2);
	*d++ = ':';
	d = put_zeropad(d, (uint64_t) (us / 60000000 % 60), 2);
	*d++ = ':';
	d = put_zeropad(d, (uint64_t) (us / 1000000 % 60), 2);
	frac = (uint64_t) (us % 1000000);
	if (frac != 0)
	{
		frac_digits = 6;
		while (frac % 10 == 0)
		{
			frac /= 10;
			frac_digits--;
		}
		*d++ = '.';
		d = put_zeropad(d, frac, frac_digits);
	}
	memcpy(d, "+00:00", 6);
	d += 6;
	if (year <= 0)
	{
		memcpy(d, " BC", 3);
		d += 3;
	}
	*d++ = '"';
	return d;
}

/* Parses the text form of a bytea of 8 bytes ("\\x" and 16 hex digits) as a big-endian int64. */
static bool
parse_int8send(const char *s, int64_t *v)
{
	uint64_t	u = 0;

	if (s[0] != '\\' || s[1] != 'x')
		return false;
	for (int i = 2; i < 18; i++)
	{
		char		c = s[i];

		u <<= 4;
		if (c >= '0' && c <= '9')
			u |= (uint64_t) (c - '0');
		else if (c >= 'a' && c <= 'f')
			u |= (uint64_t) (c - 'a' + 10);
		else
			return false;
	}
	if (s[18] != '\0')
		return false;
	*v = (int64_t) u;
	return true;
}

/* Whether s (len bytes) is an optionally negative decimal integer */
static bool
is_integer(const char *s, size_t len)
{
	size_t		i = (len > 0 && s[0] == '-') ? 1 : 0;

	if (i == len)
		return false;
	for (; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The most bytes member_format() writes for fields and metadata of these lengths. */
size_t
member_room(size_t fields_len, size_t metadata_len)
{
	/* each byte of the action escapes to at most 6; the rest is bounded */
	return 6 * fields_len + metadata_len + MEMBER_ID_WIDTH + 160;
}

/*
 * The txs:<user> member of a ledger row, written at dst (which has
 * member_room() bytes), and its score.  The columns, as pg.c's queries
 * give them: id in decimal; fields = "amount,balance_after,action" (the
 * action last and as it is); metadata, the jsonb's text form; created, the
 * text form of timestamptz_send(created_at).  The member is the row as
 * compact JSON, {"id":...,"amount":...,"balance":...,"action":...,
 * "metadata":...,"created_at":...}, byte for byte what PostgreSQL's
 * json_build_object() of those values gives with TimeZone UTC, without
 * whitespace outside strings, and with the id right-aligned in
 * MEMBER_ID_WIDTH characters with blanks, so that Redis, which orders
 * members of equal score by their bytes, orders rows of one millisecond
 * by id (a blank sorts below every digit).  *score_ms gets created_at in
 * epoch milliseconds, rounded down (the infinities: +-(2^53 - 1), the
 * largest a Redis score holds exactly).  Returns the member's length, or 0
 * if a column is malformed.
 */
size_t
member_format(char *dst, const char *id, const char *fields, size_t fields_len,
			  const char *metadata, size_t metadata_len, const char *created,
			  int64_t *score_ms)
{
	const char *amount = fields;
	const char *comma1 = memchr(fields, ',', fields_len);
	const char *balance,
			   *comma2,
			   *action;
	size_t		id_len = strlen(id);
	int64_t		t;
	char	   *d = dst;

	if (comma1 == NULL)
		return 0;
	balance = comma1 + 1;
	comma2 = memchr(balance, ',', fields_len - (size_t) (balance - fields));
	if (comma2 == NULL)
		return 0;
	action = comma2 + 1;
	if (id_len > MEMBER_ID_WIDTH || !is_integer(id, id_len) || id[0] == '-' ||
		!is_integer(amount, (size_t) (comma1 - amount)) ||
		!is_integer(balance, (size_t) (comma2 - balance)) ||
		!parse_int8send(created, &t))
		return 0;

	memcpy(d, "{\"id\":", 6);
	d += 6;
	if (id_len < MEMBER_ID_WIDTH)
	{
		memset(d, ' ', MEMBER_ID_WIDTH - id_len);
		d += MEMBER_ID_WIDTH - id_len;
	}
	memcpy(d, id, id_len);
	d += id_len;
	memcpy(d, ",\"amount\":", 10);
	d += 10;
	memcpy(d, amount, (size_t) (comma1 - amount));
	d += comma1 - amount;
	memcpy(d, ",\"balance\":", 11);
	d += 11;
	memcpy(d, balance, (size_t) (comma2 - balance));
	d += comma2 - balance;
	memcpy(d, ",\"action\":", 10);
	d += 10;
	d = put_json_string(d, action, fields_len - (size_t) (action - fields));
	memcpy(d, ",\"metadata\":", 12);
	d += 12;
	d += json_compact(d, metadata, metadata_len);
	memcpy(d, ",\"created_at\":", 14);
	d += 14;
	d = put_timestamptz(d, t);
	*d++ = '}';

	if (t == INT64_MAX)
		*score_ms = INT64_C(9007199254740991);
	else if (t == INT64_MIN)
		*score_ms = -INT64_C(9007199254740991);
	else
		*score_ms = floor_div(t, 1000) + INT64_C(946684800000);
	return (size_t) (d - dst);
}
