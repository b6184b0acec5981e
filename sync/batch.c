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
 * PostgreSQL and main.c keeps in the cursor.
 *
 * Calls: nothing; pg.c and main.c call batch_clear() and the anchor_*
 * functions.
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
