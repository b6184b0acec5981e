/*-------------------------------------------------------------------------
 *
 * partition_hash.h
 *		The stable partition hash of a user_id, in plain C: the one
 *		definition the extension (src/partition.c, credits.partition_hash)
 *		and credits-sync (sync/partition.c, --partition) both compile.
 *
 * fnv1a-32 of the bytes (offset basis 2166136261, prime 16777619), then
 * murmur3's fmix32 finalizer.  It depends on nothing PostgreSQL, Redis or
 * the platform define, and is fixed forever: changing it would move every
 * account.  test/sql/partition.sql and test/sync (partition) check the
 * same vectors.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CREDITS_PARTITION_HASH_H
#define CREDITS_PARTITION_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The partition hash of the len bytes at data. */
static inline uint32_t
credits_partition_hash32(const char *data, size_t len)
{
	uint32_t	h = 2166136261u;

	for (size_t i = 0; i < len; i++)
	{
		h ^= (unsigned char) data[i];
		h *= 16777619u;
	}
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

#endif							/* CREDITS_PARTITION_HASH_H */
