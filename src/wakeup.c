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
 * flag.  While it is awake the daemon polls the outbox, and it sleeps only
 * when no transaction is in progress, so a writer that read the flag just
 * before it was set is still seen.  If a transaction that took the flag
 * aborts, the flag is set again.
 *
 * The flag lives in shared memory only when the library is preloaded
 * (shared_preload_libraries = 'credits').  Otherwise every writing
 * transaction notifies: correct, and slower under load.
 *
 * Locking: the flag is a pg_atomic_uint32; no LWLock is taken on the write
 * path.  The per-backend state below is reset at every transaction end.
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

#define CREDITS_SYNC_CHANNEL "credits_sync"

typedef struct CreditsSharedState
{
	pg_atomic_uint32 sync_sleeping; /* 1 while credits-sync waits for NOTIFY */
} CreditsSharedState;

static CreditsSharedState *credits_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Did the current transaction write an outbox row / take the flag? */
static bool xact_wrote = false;
static bool xact_took_flag = false;

PG_FUNCTION_INFO_V1(credits_sync_sleep);

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
		pg_atomic_init_u32(&credits_shared->sync_sleeping, 0);
	LWLockRelease(AddinShmemInitLock);
}

/* Transaction callback: send the coalesced NOTIFY at pre-commit. */
static void
credits_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (!xact_wrote)
				break;
			if (credits_shared == NULL)
				Async_Notify(CREDITS_SYNC_CHANNEL, NULL);
			else if (pg_atomic_read_u32(&credits_shared->sync_sleeping) != 0 &&
					 pg_atomic_exchange_u32(&credits_shared->sync_sleeping, 0) != 0)
			{
				xact_took_flag = true;
				Async_Notify(CREDITS_SYNC_CHANNEL, NULL);
			}
			break;

		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* Our NOTIFY will not be sent: let the next writer send it. */
			if (xact_took_flag && credits_shared != NULL)
				pg_atomic_write_u32(&credits_shared->sync_sleeping, 1);
			xact_wrote = false;
			xact_took_flag = false;
			break;

		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			/* A prepared transaction cannot NOTIFY; the daemon's poll sees it. */
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
 * credits.sync_sleep(): mark credits-sync as sleeping.  Returns false when
 * the library is not preloaded (every writer then notifies).
 */
Datum
credits_sync_sleep(PG_FUNCTION_ARGS)
{
	if (credits_shared == NULL)
		PG_RETURN_BOOL(false);
	pg_atomic_write_u32(&credits_shared->sync_sleeping, 1);
	PG_RETURN_BOOL(true);
}
