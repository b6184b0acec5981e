/*-------------------------------------------------------------------------
 *
 * read.c
 *		Read-only entry points: credit_balance, credit_balance_at and
 *		credit_history.
 *
 * These take no locks beyond the snapshot of the calling statement (they
 * are STABLE and run their SPI statements read-only), so they never wait
 * for writers and see a consistent state.
 *
 * A user's ledger order is id order: ids are assigned under the account row
 * lock (src/spi.c, CHAIN_SET), so they follow the order in which the
 * balance changed, balance_after chains along them, and created_at never
 * goes backwards along them (test/specs/history_lock_order.spec).  The
 * reads sort by (created_at, id), which is that order for every row 1.1
 * wrote and is what ledger_user_time_idx serves; rows 1.0 wrote keep 1.0's
 * created_at (the transaction start) and sort by it.  History pages with
 * the last id seen as the cursor, compared as (created_at, id), so a page
 * never skips or repeats a row, also among equal created_at
 * (test/sql/history_order.sql).
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#define CREDITS_HISTORY_MAX 1000

PG_FUNCTION_INFO_V1(credit_balance);
PG_FUNCTION_INFO_V1(credit_history);
PG_FUNCTION_INFO_V1(credit_balance_at);

/* credits.credit_balance(user_id): the balance, NULL if no account. */
Datum
credit_balance(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	Datum		values[1] = {PointerGetDatum(user_id)};
	bool		found;
	int64		balance = 0;

	credits_connect();
	found = credits_exec(CQ_BALANCE, values, NULL, true, 1) == 1;
	if (found)
		balance = credits_get_int64(0, 1);
	credits_finish();

	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_INT64(balance);
}

/*
 * credits.credit_balance_at(user_id, at): the balance after the user's last
 * ledger row (in ledger order) with created_at <= at; 0 before the first.
 */
Datum
credit_balance_at(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	Datum		values[2];
	int64		balance;

	if (PG_ARGISNULL(1))
		credits_invalid_parameter("at", "must not be null", NULL);
	values[0] = PointerGetDatum(user_id);
	values[1] = PG_GETARG_DATUM(1);

	credits_connect();
	if (credits_exec(CQ_BALANCE_AT, values, NULL, true, 0) != 1)
		credits_unknown_account(user_id);
	balance = credits_get_int64(0, 1);
	credits_finish();

	PG_RETURN_INT64(balance);
}

/*
 * Check credit_history's lim, start_time and end_time (arguments 1-3) into
 * values[1..3].
 */
static void
history_args(FunctionCallInfo fcinfo, Datum *values)
{
	int32		lim;
	TimestampTz start_time = DT_NOBEGIN;
	TimestampTz end_time = DT_NOEND;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_INVALID_PARAMETER),
				errmsg("invalid lim: must not be null"));
	lim = PG_GETARG_INT32(1);
	if (lim < 1 || lim > CREDITS_HISTORY_MAX)
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_INVALID_PARAMETER),
				errmsg("invalid lim: must be between 1 and %d", CREDITS_HISTORY_MAX),
				errdetail("The lim given was %d.", lim));
	if (!PG_ARGISNULL(2))
		start_time = PG_GETARG_TIMESTAMPTZ(2);
	if (!PG_ARGISNULL(3))
		end_time = PG_GETARG_TIMESTAMPTZ(3);
	if (start_time > end_time)
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_INVALID_PARAMETER),
				errmsg("invalid start_time: must not be after end_time"));

	values[1] = Int32GetDatum(lim);
	values[2] = TimestampTzGetDatum(start_time);
	values[3] = TimestampTzGetDatum(end_time);
}

/*
 * credits.credit_history(user_id, lim, start_time, end_time, before_tx_id):
 * the user's ledger rows with start_time <= created_at < end_time, newest
 * first in ledger order, and with before_tx_id (one of the user's row ids)
 * only those before that row.  Pass the last id of a page as before_tx_id
 * to get the next one.
 */
Datum
credit_history(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[5];
	uint64		n;

	history_args(fcinfo, values);
	values[0] = PointerGetDatum(user_id);
	if (!PG_ARGISNULL(4))
	{
		int64		before = PG_GETARG_INT64(4);

		if (before < 1)
			ereport(ERROR,
					errcode(ERRCODE_CREDITS_INVALID_PARAMETER),
					errmsg("invalid before_tx_id: must be positive"),
					errdetail("The before_tx_id given was " INT64_FORMAT ".", before));
		values[4] = Int64GetDatum(before);
	}
	InitMaterializedSRF(fcinfo, 0);

	credits_connect();
	n = credits_exec(PG_ARGISNULL(4) ? CQ_HISTORY_PAGE : CQ_HISTORY_BEFORE,
					 values, NULL, true, 0);
	for (uint64 i = 0; i < n; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	credits_finish();

	return (Datum) 0;
}
