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
 * Parses "<lid>:<lhash>/<eid>:<etxid>" (either part may be empty) into *a.
 * False, with *a zeroed, if s is malformed.
 */
bool
anchor_parse(const char *s, SyncAnchor *a)
{
	const char *slash = strchr(s, '/');
	const char *p;
	char	   *end;

	memset(a, 0, sizeof(*a));
	if (slash == NULL)
		return false;
	if (slash != s)
	{
		size_t		hlen;

		a->lid = strtoll(s, &end, 10);
		if (end == s || *end != ':' || a->lid <= 0)
			goto bad;
		p = end + 1;
		hlen = (size_t) (slash - p);
		if (hlen == 0 || hlen >= sizeof(a->lhash))
			goto bad;
		memcpy(a->lhash, p, hlen);
		a->lhash[hlen] = '\0';
		if (strspn(a->lhash, "0123456789abcdef-") != hlen)
			goto bad;
	}
	p = slash + 1;
	if (*p != '\0')
	{
		a->eid = strtoll(p, &end, 10);
		if (end == p || *end != ':' || a->eid <= 0)
			goto bad;
		p = end + 1;
		a->etxid = strtoull(p, &end, 10);
		if (end == p || *end != '\0')
			goto bad;
	}
	return true;
bad:
	memset(a, 0, sizeof(*a));
	return false;
}

/* Writes a's text form into buf (n bytes; 128 are always enough). */
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
