/*-------------------------------------------------------------------------
 *
 * credits.c
 *		Module initialisation: the magic block, GUCs and the wake-up hooks.
 *
 * Nothing here touches tables.  credits_now() is the extension's clock
 * (shared semantics S1): every decision about time uses it, never a time
 * supplied by the caller.  _PG_init runs once per backend that loads
 * the library; when the library is in shared_preload_libraries it also
 * reserves the small shared-memory block used to coalesce wake-ups of
 * credits-sync (see wakeup.c).
 *
 * C entry points follow pg_stat_statements' convention: the symbol a SQL
 * script binds to never changes meaning.  A release that changes a
 * function's SQL signature adds a new symbol with a version suffix (for
 * example credit_deduct_1_1) and keeps the old one, so that a server with
 * the new library still runs databases that have not yet run ALTER
 * EXTENSION credits UPDATE.
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

PG_MODULE_MAGIC;

int			credits_default_credits = 100;
int			credits_clock_offset = 0;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(credits_library_version);

/* Called once per backend when the library is loaded. */
void
_PG_init(void)
{
	DefineCustomIntVariable("credits.default_credits",
							"Credits granted by credit_init() when no amount is given.",
							NULL,
							&credits_default_credits,
							100,
							0,
							INT_MAX,
							PGC_USERSET,
							0,
							NULL,
							NULL,
							NULL);

	/*
	 * For tests only: shifts credits' clock.  PGC_SUSET, so an application
	 * role can neither set it nor choose the time any other way.
	 */
	DefineCustomIntVariable("credits.clock_offset",
							"Seconds added to credits' clock (for tests only).",
							"Every decision credits makes about time (hold and grant "
							"expiry, plan periods, renewals) uses the transaction "
							"timestamp plus this offset.  Superuser only.",
							&credits_clock_offset,
							0,
							INT_MIN,
							INT_MAX,
							PGC_SUSET,
							0,
							NULL,
							NULL,
							NULL);

	MarkGUCPrefixReserved("credits");

	credits_wakeup_init();
}

/*
 * credits' clock: the transaction timestamp plus credits.clock_offset
 * seconds.  Constant within a transaction (like now()) for a fixed offset.
 */
TimestampTz
credits_now(void)
{
	return GetCurrentTransactionStartTimestamp() +
		(TimestampTz) credits_clock_offset * USECS_PER_SEC;
}

/* credits.library_version(): the version the loaded library was built as. */
Datum
credits_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CREDITS_VERSION));
}
