/*-------------------------------------------------------------------------
 *
 * keyslot.c
 *		Redis Cluster hash slots of credits-sync's keys, and the names of the
 *		companion keys that share a reader key's slot.
 *
 * Redis Cluster maps a key to one of 16384 slots: CRC16 of the key, modulo
 * 16384, where CRC16 is the CCITT/XMODEM variant (polynomial 0x1021, initial
 * value 0, no reflection, no final XOR).  If the key has a "{" and a "}"
 * after it with at least one byte between them, only the bytes between the
 * first "{" and the first "}" after it (the hash tag) are hashed.  Written
 * from the Redis Cluster specification; key_slot("123456789") is 0x31C3 &
 * 16383, the CRC's check value, and test/sync/run.sh keyslot compares
 * key_slot() with CLUSTER KEYSLOT on hundreds of keys.
 *
 * A companion key holds the guard (version, or version and as_of) of one
 * reader key and must be in the reader key's slot, so that one script call
 * can compare and set both:
 *	- a reader key K without "}" has the companion "{K}:v": its hash tag is
 *	  exactly K, and K itself, having no "}", is hashed whole;
 *	- a reader key K with a "}" (a user id or prefix with braces) has the
 *	  companion "{T}:v:K", where T is the smallest decimal number whose CRC16
 *	  falls in K's slot (a table built on first use).  Such a name has two
 *	  "}" or more, a name of the first form exactly one, and T has no brace,
 *	  so distinct reader keys never share a companion.
 *
 * Calls: nothing (the bottom of the module layering).  Single-threaded: the
 * tables are built on first use without locking.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "credits_sync.h"

static uint16_t crc_table[256];
static bool crc_ready = false;
static uint32_t slot_tag[KEY_SLOTS];	/* smallest number hashing to slot */
static bool tags_ready = false;

/* Any time.  Fills crc_table from the polynomial 0x1021 (MSB first). */
static void
crc_init(void)
{
	for (int i = 0; i < 256; i++)
	{
		uint16_t	c = (uint16_t) (i << 8);

		for (int b = 0; b < 8; b++)
			c = (c & 0x8000) ? (uint16_t) ((c << 1) ^ 0x1021) : (uint16_t) (c << 1);
		crc_table[i] = c;
	}
	crc_ready = true;
}

/* s has n bytes.  CRC16/XMODEM of them. */
static uint16_t
crc16(const char *s, size_t n)
{
	uint16_t	crc = 0;

	if (!crc_ready)
		crc_init();
	for (size_t i = 0; i < n; i++)
		crc = (uint16_t) ((crc << 8) ^ crc_table[((crc >> 8) ^ (unsigned char) s[i]) & 0xff]);
	return crc;
}

/* key has len bytes.  Its Redis Cluster hash slot, 0 to KEY_SLOTS - 1. */
int
key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open != NULL)
	{
		size_t		after = (size_t) (open - key) + 1;
		const char *close = memchr(open + 1, '}', len - after);

		if (close != NULL && close > open + 1)
			return crc16(open + 1, (size_t) (close - open - 1)) & (KEY_SLOTS - 1);
	}
	return crc16(key, len) & (KEY_SLOTS - 1);
}

/* Any time.  Fills slot_tag: for each slot, the smallest n hashing to it. */
static void
tags_init(void)
{
	int			left = KEY_SLOTS;
	bool		have[KEY_SLOTS];

	memset(have, 0, sizeof(have));
	for (uint32_t n = 0; left > 0; n++)
	{
		char		buf[16];
		int			len = snprintf(buf, sizeof(buf), "%u", n);
		int			s = crc16(buf, (size_t) len) & (KEY_SLOTS - 1);

		if (!have[s])
		{
			have[s] = true;
			slot_tag[s] = n;
			left--;
		}
	}
	tags_ready = true;
}

/*
 * key has len bytes; dst has room for KEY_COMPANION_MAX(len) bytes.  Writes
 * the name of key's companion (see the header) and returns its length.
 */
size_t
key_companion(char *dst, const char *key, size_t len)
{
	size_t		n;

	if (memchr(key, '}', len) == NULL)
	{
		dst[0] = '{';
		memcpy(dst + 1, key, len);
		memcpy(dst + 1 + len, "}:v", 3);
		return len + 4;
	}
	if (!tags_ready)
		tags_init();
	n = (size_t) sprintf(dst, "{%u}:v:", slot_tag[key_slot(key, len)]);
	memcpy(dst + n, key, len);
	return n + len;
}
