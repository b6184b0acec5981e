/*-------------------------------------------------------------------------
 *
 * partition.c
 *		The shared stable partition hash of user ids, and --partition p/n.
 *
 * The same hash as the proxy database's credits.partition_of(): h =
 * FNV-1a 32-bit over the user id's bytes (offset basis 2166136261, prime
 * 16777619), then murmur3's fmix32 finalizer, read as a signed int4; the
 * partition is h & (n - 1), n a power of two (PL/Proxy's RUN ON does
 * exactly that).  It depends on nothing PostgreSQL or Redis define, so it
 * never changes with their versions.  test/sync/run.sh partition checks
 * fixed vectors (the same as the proxy's tests).
 *
 * Calls nothing.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "credits_sync.h"

/* uid has len bytes.  The partition hash, as a signed 32-bit integer. */
int32_t
partition_hash(const char *uid, size_t len)
{
	uint32_t	h = 2166136261u;

	for (size_t i = 0; i < len; i++)
	{
		h ^= (unsigned char) uid[i];
		h *= 16777619u;
	}
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return (int32_t) h;
}

/* count is a power of two.  The partition of uid (len bytes), 0 .. count - 1. */
int
partition_of(const char *uid, size_t len, int count)
{
	return (int) ((uint32_t) partition_hash(uid, len) & (uint32_t) (count - 1));
}

/*
 * s is "p/n": n a power of two from 1 to 65536, 0 <= p < n.  False if it
 * is not.
 */
bool
partition_parse(const char *s, int *index, int *count)
{
	char	   *end;
	long		p,
				n;

	if (s[0] < '0' || s[0] > '9')
		return false;
	p = strtol(s, &end, 10);
	if (*end != '/' || end[1] < '0' || end[1] > '9')
		return false;
	n = strtol(end + 1, &end, 10);
	if (*end != '\0' || n < 1 || n > 65536 || (n & (n - 1)) != 0 || p < 0 || p >= n)
		return false;
	*index = (int) p;
	*count = (int) n;
	return true;
}
