/*-------------------------------------------------------------------------
 *
 * search_path.c
 *		The pinned search_path every statement of the extension runs under.
 *
 * Every function of the extension is declared with
 * SET search_path = pg_catalog, pg_temp (the last section of
 * sql/credits.sql adds the clause to each one), so the function manager
 * pins the path for the whole call, and credits_pin_search_path() finds it
 * already pinned and does nothing: the common case costs one strcmp.
 *
 * A statement can still be reached with the caller's search_path: through
 * the 1.0 SQL definitions, which have no SET clause, until ALTER EXTENSION
 * credits UPDATE runs in that database (see credits.c), or through a
 * function declared without the clause by mistake.  Then the path is set
 * for the one statement at a new GUC nest level, exactly as the SET clause
 * would, and restored afterwards; an error unwinds the nest level with the
 * (sub)transaction.  This uses only the GUC API, which is the same in
 * PostgreSQL 15, 16 and 17 (PushOverrideSearchPath, used before 1.1, was
 * removed in 17).
 *
 * With pg_temp named last, no temporary object can shadow a name
 * (functions and operators are never looked up in pg_temp at all), and
 * every table in the statements is schema-qualified anyway.
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "catalog/namespace.h"
#include "utils/guc.h"

/* Returns true if search_path is already exactly CREDITS_SEARCH_PATH. */
static inline bool
search_path_is_pinned(void)
{
	return namespace_search_path != NULL &&
		strcmp(namespace_search_path, CREDITS_SEARCH_PATH) == 0;
}

/*
 * Pin search_path to CREDITS_SEARCH_PATH unless it already is.  Returns the
 * GUC nest level to hand to credits_unpin_search_path(), or -1 if nothing
 * was changed.  Caller must call credits_unpin_search_path() on success;
 * on error the (sub)transaction abort restores the path.
 */
int
credits_pin_search_path(void)
{
	int			nest;

	if (search_path_is_pinned())
		return -1;
	nest = NewGUCNestLevel();
#if PG_VERSION_NUM >= 170000
	/* 17 has this very step, with the same path (GUC_SAFE_SEARCH_PATH) */
	RestrictSearchPath();
#else
	(void) set_config_option("search_path", CREDITS_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
#endif
	return nest;
}

/* Undo credits_pin_search_path(nest). */
void
credits_unpin_search_path(int nest)
{
	if (nest >= 0)
		AtEOXact_GUC(true, nest);
}
