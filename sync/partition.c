/*-------------------------------------------------------------------------
 *
 * partition.c
 *		The shared stable partition hash of user ids, and --partition p/n.
 *
 * The same hash as the proxy database's credits.partition_of(): h =
 * FNV-1a 32-bit over the user id's bytes (offset basis 2166136261, prime
 * 16777619), then murmur3's fmix32 finalizer, read as a signed int4; the
 * partition is h & (n - 1), n a power of two (PL/Proxy's RUN ON does
 * exactly that).  The hash itself is src/partition_hash.h, the extension's
 * own definition, compiled here too.  test/sync/run.sh partition checks
 * fixed vectors (the same as the proxy's tests).
 *
 * Calls nothing.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "credits_sync.h"
#include "../src/partition_hash.h"

/* uid has len bytes.  The partition hash, as a signed 32-bit integer. */
int32_t
partition_hash(const char *uid, size_t len)
{
	return (int32_t) credits_partition_hash32(uid, len);
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
