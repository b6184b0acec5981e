/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *		Coalesced wake-ups for credits-sync.
 *
 * A NOTIFY takes PostgreSQL's global notify lock from PreCommit_Notify
 * until the end of commit, so one NOTIFY per writing transaction serialises
 * every writer's commit (measured: about 3x fewer deductions per second).
 * Instead, credits-sync announces that it is about to sleep by calling
 * credits.sync_sleep(), which sets a flag in shared memory.  The first
 * writing transaction to reach pre-commit after that atomically clears the
 * flag and sends one NOTIFY credits_sync; every other writer only reads the
 * flag.  While it is awake the daemon polls the outbox.
 *
 * A writer that read the flag just before it was set will not notify, so
 * the daemon must see its rows before it waits.  Writers register in one of
 * two counters, chosen by the parity of the slot's epoch, from just before
 * they read the flag (at pre-commit) until after their commit is visible
 * (XACT_EVENT_COMMIT runs after ProcArrayEndTransaction) or their abort.
 * A writer reads the epoch, increments that epoch's counter, and reads the
 * epoch again: if it changed, it takes the increment back and starts over,
 * so a registered writer's epoch was current after its increment.
 *
 * credits.sync_arm() sets the flag, then advances the epoch and waits for
 * the previous epoch's counter to drain, twice.  Every atomic operation
 * here that writes is a full barrier, so a writer registered in an epoch
 * that began after the flag was set reads the flag after it was set: it
 * takes it and notifies, or another writer took it first and notifies
 * (and the daemon re-arms on that notification and waits for this writer
 * then).  A writer registered in an earlier epoch may have missed the
 * flag; the two waits drain both counters of the epochs before the first
 * advance, each of which new writers stop joining once the epoch moves on,
 * so the waits end within about one commit's time however busy the
 * writers are.  sync_arm() returns 0 when both drained: every writer that
 * may have missed the flag is visible, the daemon's next poll sees it, and
 * then it can wait (sync/main.c).  This depends neither on the oldest
 * transaction in progress (a transaction held open is not counted until
 * it reaches pre-commit) nor on a moment when no writer is
 * committing, which a steady stream of writers never leaves.  (The daemon
 * used to wait for a snapshot's xmin to pass the next xid, which an old
 * transaction held back without limit, and then for a single count of
 * committing writers to reach 0: with four writers that never pause it
 * read 4 every time (test/sync/run.sh, steady_stream), and after
 * poll_interval it slept anyway, so a commit that had missed the flag
 * waited for the next writer's notification or the safety poll.)  If a
 * transaction that took the flag aborts, the flag is set again.  A
 * prepared transaction is never counted and never notifies (PREPARE ends
 * the transaction here; COMMIT PREPARED runs no pre-commit for its work):
 * its rows are seen by the daemon's next poll, at most poll_interval
 * after the commit.

 * The flag lives in shared memory only when the library is preloaded
 * (shared_preload_libraries = 'credits').  Otherwise every writing
 * transaction notifies: correct, and slower under load.
 *
 * NOTIFY is delivered per database, so there is one flag per database.
 *
 * Locking: the flags and counters are atomics; the write path takes no
 * lock and never waits.
 * A spinlock serialises only the claiming of a database's slot.  The
 * per-backend state below is reset at every transaction end.
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "access/xact.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define CREDITS_SYNC_CHANNEL "credits_sync"

/*
 * NOTIFY is per database, so the flag is too: one slot per database that
 * has a sleeping daemon.  Slots are claimed under the spinlock and never
 * released (a database OID is not reused while the cluster runs long
 * enough to matter, and a stale slot only costs a scan step).
 */
#define CREDITS_WAKEUP_SLOTS 64

typedef struct CreditsWakeSlot
{
	pg_atomic_uint32 dboid;		/* InvalidOid while free */
	pg_atomic_uint32 sleeping;	/* 1 while credits-sync waits for NOTIFY */
	pg_atomic_uint64 epoch;		/* advanced by sync_arm() */
	pg_atomic_uint32 committing[2];	/* writers between reading the flag and
									 * the end of their commit, by the
									 * parity of the epoch they registered
									 * in */
} CreditsWakeSlot;

typedef struct CreditsSharedState
{
	slock_t		mutex;			/* serialises claiming a slot */
	pg_atomic_uint32 nslots;	/* slots claimed so far */
	CreditsWakeSlot slots[CREDITS_WAKEUP_SLOTS];
} CreditsSharedState;

static CreditsSharedState *credits_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This backend's slot for MyDatabaseId, once found */
static CreditsWakeSlot *my_slot = NULL;

/* Did the current transaction write an outbox row / take the flag? */
static bool xact_wrote = false;
static bool xact_took_flag = false;
static bool xact_counted = false;	/* counted in my_slot->committing */
static uint64 xact_epoch = 0;	/* ... of this epoch's parity */

/* How long sync_arm() waits for one epoch's writers (they are committing) */
#define ARM_DRAIN_MAX_MS 200

PG_FUNCTION_INFO_V1(credits_sync_sleep);
PG_FUNCTION_INFO_V1(credits_sync_arm);

/* End of a counted transaction (committed and visible, or aborted). */
static void
uncount(void)
{
	if (xact_counted && my_slot != NULL)
		pg_atomic_fetch_sub_u32(&my_slot->committing[xact_epoch & 1], 1);
	xact_counted = false;
}

/* shmem_request_hook: reserve the shared state.  Postmaster only. */
static void
credits_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CreditsSharedState)));
}

/* shmem_startup_hook: attach to (or create) the shared state. */
static void
credits_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	credits_shared = ShmemInitStruct("credits", sizeof(CreditsSharedState), &found);
	if (!found)
	{
		SpinLockInit(&credits_shared->mutex);
		pg_atomic_init_u32(&credits_shared->nslots, 0);
		for (int i = 0; i < CREDITS_WAKEUP_SLOTS; i++)
		{
			pg_atomic_init_u32(&credits_shared->slots[i].dboid, InvalidOid);
			pg_atomic_init_u32(&credits_shared->slots[i].sleeping, 0);
			pg_atomic_init_u64(&credits_shared->slots[i].epoch, 0);
			pg_atomic_init_u32(&credits_shared->slots[i].committing[0], 0);
			pg_atomic_init_u32(&credits_shared->slots[i].committing[1], 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The slot of MyDatabaseId, claiming one if create is true.  Returns NULL
 * if there is none (no daemon ever slept on this database, or all slots
 * are taken).  Caller must have checked credits_shared != NULL.
 */
static CreditsWakeSlot *
find_slot(bool create)
{
	uint32		n;

	if (my_slot != NULL)
		return my_slot;

	n = pg_atomic_read_u32(&credits_shared->nslots);
	for (uint32 i = 0; i < n; i++)
		if (pg_atomic_read_u32(&credits_shared->slots[i].dboid) == MyDatabaseId)
			return my_slot = &credits_shared->slots[i];
	if (!create)
		return NULL;

	SpinLockAcquire(&credits_shared->mutex);
	n = pg_atomic_read_u32(&credits_shared->nslots);
	for (uint32 i = 0; i < n; i++)
		if (pg_atomic_read_u32(&credits_shared->slots[i].dboid) == MyDatabaseId)
			my_slot = &credits_shared->slots[i];
	if (my_slot == NULL && n < CREDITS_WAKEUP_SLOTS)
	{
		my_slot = &credits_shared->slots[n];
		pg_atomic_write_u32(&my_slot->dboid, MyDatabaseId);
		pg_atomic_write_u32(&credits_shared->nslots, n + 1);
	}
	SpinLockRelease(&credits_shared->mutex);
	return my_slot;
}

/*
 * Count the current transaction in its epoch's counter (file header).
 * Caller is at pre-commit, about to read the flag.
 */
static void
register_writer(CreditsWakeSlot *slot)
{
	for (;;)
	{
		uint64		e = pg_atomic_read_u64(&slot->epoch);

		pg_atomic_fetch_add_u32(&slot->committing[e & 1], 1);
		if (pg_atomic_read_u64(&slot->epoch) == e)
		{
			xact_epoch = e;
			xact_counted = true;
			break;
		}
		pg_atomic_fetch_sub_u32(&slot->committing[e & 1], 1);
	}
	/* the flag is read after the epoch */
	pg_memory_barrier();
}

/* Transaction callback: send the coalesced NOTIFY at pre-commit. */
static void
credits_xact_callback(XactEvent event, void *arg)
{
	CreditsWakeSlot *slot;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (!xact_wrote)
				break;
			if (credits_shared == NULL)
				Async_Notify(CREDITS_SYNC_CHANNEL, NULL);
			else if ((slot = find_slot(false)) != NULL)
			{
				/* Register first (a full barrier), then read the flag */
				register_writer(slot);
				if (pg_atomic_read_u32(&slot->sleeping) != 0 &&
					pg_atomic_exchange_u32(&slot->sleeping, 0) != 0)
				{
					xact_took_flag = true;
					Async_Notify(CREDITS_SYNC_CHANNEL, NULL);
				}
			}
			break;

		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* Our NOTIFY will not be sent: let the next writer send it. */
			if (xact_took_flag && my_slot != NULL)
				pg_atomic_write_u32(&my_slot->sleeping, 1);
			uncount();
			xact_wrote = false;
			xact_took_flag = false;
			break;

		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			/* A prepared transaction cannot NOTIFY; the daemon's poll sees it. */
			uncount();
			xact_wrote = false;
			xact_took_flag = false;
			break;

		default:
			break;
	}
}

/* Called from _PG_init: install hooks and the transaction callback. */
void
credits_wakeup_init(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = credits_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = credits_shmem_startup;
	}
	RegisterXactCallback(credits_xact_callback, NULL);
}

/* Record that this transaction wrote an outbox row.  Caller is inside it. */
void
credits_note_write(void)
{
	xact_wrote = true;
}

/*
 * credits.sync_sleep(): mark credits-sync as sleeping on this database.
 * Returns false when wake-ups are not coalesced: the library is not
 * preloaded (every writer then notifies) or no slot was free (the daemon
 * must then rely on its periodic poll).
 */
Datum
credits_sync_sleep(PG_FUNCTION_ARGS)
{
	CreditsWakeSlot *slot;

	if (credits_shared == NULL || (slot = find_slot(true)) == NULL)
		PG_RETURN_BOOL(false);
	pg_atomic_write_u32(&slot->sleeping, 1);
	PG_RETURN_BOOL(true);
}

/*
 * credits.sync_arm(): mark credits-sync as sleeping on this database, then
 * advance the epoch and wait (at most ARM_DRAIN_MAX_MS) for the writers of
 * the previous one to finish their commit, twice (see the file header).
 * Returns 0 when they all did, so that every writer that may have missed
 * the flag is visible; else how many were still committing.  Returns -1
 * when wake-ups are not coalesced (as sync_sleep() returns false).
 */
Datum
credits_sync_arm(PG_FUNCTION_ARGS)
{
	CreditsWakeSlot *slot;
	TimestampTz start;

	if (credits_shared == NULL || (slot = find_slot(true)) == NULL)
		PG_RETURN_INT32(-1);
	pg_atomic_exchange_u32(&slot->sleeping, 1);
	start = GetCurrentTimestamp();
	for (int pass = 0; pass < 2; pass++)
	{
		uint64		old = pg_atomic_fetch_add_u64(&slot->epoch, 1);
		uint32		n;

		while ((n = pg_atomic_read_u32(&slot->committing[old & 1])) > 0)
		{
			if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), ARM_DRAIN_MAX_MS))
				PG_RETURN_INT32((int32) n);
			CHECK_FOR_INTERRUPTS();
			pg_usleep(100L);
		}
	}
	PG_RETURN_INT32(0);
}
