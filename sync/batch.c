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
 * Calls: nothing; pg.c and main.c call batch_clear().
 *
 *-------------------------------------------------------------------------
 */
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
