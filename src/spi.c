/*-------------------------------------------------------------------------
 *
 * spi.c
 *		Prepared statements: every query the extension runs, in one table.
 *
 * Each statement is parsed once per backend, with search_path pinned to
 * pg_catalog (and pg_temp, which is never searched for functions or
 * operators), and kept with SPI_keepplan.  The plan cache re-analyses a
 * saved statement with the search_path that was in effect when it was
 * prepared, so a caller's hostile search_path can never redirect a table,
 * function or operator: every name below is schema-qualified, and the
 * operators resolve in pg_catalog.
 *
 * Every SPI return code is checked; an unexpected one is a can't-happen
 * and uses elog.  Callers bracket their work with credits_connect() and
 * credits_finish(), so each call's SPI memory is freed when it returns.
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/guc.h"

typedef struct CreditsStatement
{
	const char *sql;
	int			nargs;
	Oid			argtypes[6];
	int			expect;			/* SPI_OK_* code on success */
	SPIPlanPtr	plan;
} CreditsStatement;

/*
 * The unkeyed deduction: one UPDATE that locks, checks and changes the row.
 * The check subtracts every open hold (expired ones too), which is never
 * more permissive than the exact rule; when it fails, the caller re-checks
 * with CQ_LOCK_ACCOUNT and credits_active_held().
 */
static CreditsStatement statements[CQ__COUNT] = {
	[CQ_DEDUCT_FAST] = {
		"UPDATE credits.accounts SET balance = balance - $2, version = version + 1,"
		" updated_at = pg_catalog.now()"
		" WHERE user_id = $1 AND balance - held >= $2 RETURNING balance",
		2, {TEXTOID, INT8OID}, SPI_OK_UPDATE_RETURNING
	},
	[CQ_DEDUCT_LOCKED] = {
		"UPDATE credits.accounts SET balance = balance - $2, version = version + 1,"
		" updated_at = pg_catalog.now()"
		" WHERE user_id = $1 RETURNING balance",
		2, {TEXTOID, INT8OID}, SPI_OK_UPDATE_RETURNING
	},
	[CQ_ADD_UPSERT] = {
		"INSERT INTO credits.accounts AS a (user_id, balance) VALUES ($1, $2)"
		" ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + excluded.balance,"
		" version = a.version + 1, updated_at = pg_catalog.now()"
		" WHERE a.balance <= 9223372036854775807 - excluded.balance"
		" RETURNING a.balance",
		2, {TEXTOID, INT8OID}, SPI_OK_INSERT_RETURNING
	},
	[CQ_LOCK_ACCOUNT] = {
		"SELECT balance, held FROM credits.accounts WHERE user_id = $1 FOR UPDATE",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	[CQ_OPEN_ACCOUNT] = {
		"INSERT INTO credits.accounts (user_id, balance) VALUES ($1, 0)"
		" ON CONFLICT (user_id) DO NOTHING",
		1, {TEXTOID}, SPI_OK_INSERT
	},
	[CQ_INIT_ACCOUNT] = {
		"INSERT INTO credits.accounts (user_id, balance) VALUES ($1, $2)"
		" ON CONFLICT (user_id) DO NOTHING RETURNING balance",
		2, {TEXTOID, INT8OID}, SPI_OK_INSERT_RETURNING
	},
	[CQ_INIT_EXISTING] = {
		"SELECT l.id, a.balance, l.created_at FROM credits.accounts a"
		" LEFT JOIN LATERAL (SELECT id, created_at FROM credits.ledger"
		"  WHERE user_id = a.user_id ORDER BY created_at, id LIMIT 1) l ON true"
		" WHERE a.user_id = $1",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	[CQ_FIND_KEY] = {
		"SELECT id, amount, action, balance_after, created_at FROM credits.ledger"
		" WHERE user_id = $1 AND idempotency_key = $2",
		2, {TEXTOID, TEXTOID}, SPI_OK_SELECT
	},
	[CQ_INSERT_LEDGER] = {
		"INSERT INTO credits.ledger"
		" (user_id, amount, balance_after, action, metadata, idempotency_key)"
		" VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at",
		6, {TEXTOID, INT8OID, INT8OID, TEXTOID, JSONBOID, TEXTOID},
		SPI_OK_INSERT_RETURNING
	},
	[CQ_BALANCE] = {
		"SELECT balance FROM credits.accounts WHERE user_id = $1",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	[CQ_HISTORY] = {
		"SELECT id, user_id, amount, balance_after, action, metadata,"
		" idempotency_key, created_at, txid FROM credits.ledger"
		" WHERE user_id = $1 AND created_at >= $3 AND created_at < $4"
		" ORDER BY created_at DESC, id DESC LIMIT $2",
		4, {TEXTOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	[CQ_VERIFY] = {
		"SELECT a.balance, (SELECT pg_catalog.sum(amount) FROM credits.ledger"
		"  WHERE user_id = a.user_id)::pg_catalog.int8"
		" FROM credits.accounts a WHERE a.user_id = $1",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	[CQ_VERIFY_ALL] = {
		"SELECT coalesce(a.user_id, l.user_id), a.balance, coalesce(l.total, 0)"
		" FROM credits.accounts a FULL JOIN"
		" (SELECT user_id, pg_catalog.sum(amount)::pg_catalog.int8 AS total FROM credits.ledger"
		"  GROUP BY user_id) l ON l.user_id = a.user_id"
		" WHERE a.balance IS DISTINCT FROM coalesce(l.total, 0)"
		" ORDER BY 1",
		0, {InvalidOid}, SPI_OK_SELECT
	},
	[CQ_REBUILD] = {
		"UPDATE credits.accounts SET balance = $2, version = version + 1,"
		" updated_at = pg_catalog.now() WHERE user_id = $1",
		2, {TEXTOID, INT8OID}, SPI_OK_UPDATE
	},
	[CQ_INSERT_EVENT] = {
		"INSERT INTO credits.account_events (user_id, event, detail)"
		" VALUES ($1, $2, $3)",
		3, {TEXTOID, TEXTOID, JSONBOID}, SPI_OK_INSERT
	},
};

/* Prepare statement q under a pinned search_path.  Caller is connected. */
static SPIPlanPtr
prepare_statement(CreditsStatement *st)
{
	SPIPlanPtr	plan;
	int			save_nestlevel;

	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	plan = SPI_prepare(st->sql, st->nargs, st->argtypes);
	AtEOXact_GUC(true, save_nestlevel);

	if (plan == NULL)
		elog(ERROR, "credits: SPI_prepare failed for \"%s\": %s",
			 st->sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "credits: SPI_keepplan failed");
	return plan;
}

/* Connect to SPI.  Every call must be matched by credits_finish(). */
void
credits_connect(void)
{
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "credits: SPI_connect failed: %s", SPI_result_code_string(rc));
}

/* Disconnect from SPI, freeing the call's SPI memory. */
void
credits_finish(void)
{
	int			rc = SPI_finish();

	if (rc != SPI_OK_FINISH)
		elog(ERROR, "credits: SPI_finish failed: %s", SPI_result_code_string(rc));
}

/*
 * Run statement q; returns SPI_processed.  Caller must be connected.
 * read_only is true only for functions declared STABLE.
 */
uint64
credits_exec(CreditsQuery q, Datum *values, const char *nulls,
			 bool read_only, long tcount)
{
	CreditsStatement *st = &statements[q];
	int			rc;

	Assert(q >= 0 && q < CQ__COUNT);
	if (st->plan == NULL)
		st->plan = prepare_statement(st);

	rc = SPI_execute_plan(st->plan, values, nulls, read_only, tcount);
	if (rc != st->expect)
		elog(ERROR, "credits: unexpected SPI result %s for \"%s\"",
			 SPI_result_code_string(rc), st->sql);
	return SPI_processed;
}

/* Column col (1-based) of result row row (0-based).  Caller is connected. */
Datum
credits_get(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, isnull);
}

/* A NOT NULL bigint column of the last result. */
int64
credits_get_int64(int row, int col)
{
	bool		isnull;
	Datum		d = credits_get(row, col, &isnull);

	if (isnull)
		elog(ERROR, "credits: unexpected null in column %d", col);
	return DatumGetInt64(d);
}
