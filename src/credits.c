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
 * One library serves both versions.  The library is preloaded, so after a
 * server upgrade a database keeps its 1.0 SQL definitions until someone
 * runs ALTER EXTENSION credits UPDATE in it.  As in pg_stat_statements,
 * the C symbol a released SQL script binds never changes meaning:
 *
 *	- sql/credits--1.0.sql binds the plain names (credit_deduct, ...).  They
 *	  are defined by src/v1_0/, the 1.0 implementation as released, kept
 *	  verbatim but for search_path pinning (search_path.c) and renamed
 *	  internals, so a 1.0 database gets exactly 1.0's behaviour against
 *	  its 1.0 schema.
 *	- sql/credits.sql binds the 1.1 implementation, the other files of src/.  Its entry
 *	  points that 1.0 also had are compiled as <name>_1_1 (the #defines in
 *	  credits.h); new ones keep their names.  The upgrade script's last
 *	  section rebinds every upgraded function to the _1_1 symbol.
 *	- The rule for the next release: add a suffix for every entry point
 *	  whose behaviour or tables change (_1_2), and keep every symbol a
 *	  released script binds until no supported upgrade path starts there.
 *	  test/integration/upgrade.sh creates its 1.0 data through this library.
 *
 * Shared by both versions: this file (the magic block, the settings), the
 * wake-up flag (wakeup.c, credits.sync_sleep), the ledger trigger
 * (immutable.c) and search_path.c.
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
	/*
	 * It decides an amount, so only a superuser may change it: PGC_SUSET
	 * refuses SET, set_config() and ALTER ROLE ... SET by anyone else.
	 */
	DefineCustomIntVariable("credits.default_credits",
							"Credits granted by credit_init() when no amount is given.",
							"Superuser only: it decides an amount of credit.",
							&credits_default_credits,
							100,
							0,
							INT_MAX,
							PGC_SUSET,
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
