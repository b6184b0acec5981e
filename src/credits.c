/*-------------------------------------------------------------------------
 *
 * credits.c
 *		Module initialisation: the magic block, GUCs and the wake-up hooks.
 *
 * Nothing here touches tables.  _PG_init runs once per backend that loads
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

#include "utils/builtins.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

int			credits_default_credits = 100;

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

	MarkGUCPrefixReserved("credits");

	credits_wakeup_init();
}

/* credits.library_version(): the version the loaded library was built as. */
Datum
credits_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CREDITS_VERSION));
}
