/*-------------------------------------------------------------------------
 *
 * read.c
 *		Read-only entry points: credit_balance and credit_history.
 *
 * These take no locks beyond the snapshot of the calling statement (they
 * are STABLE and run their SPI statements read-only), so they never wait
 * for writers and see a consistent state.
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
 * credits.credit_history(user_id, lim, start_time, end_time): ledger rows
 * with start_time <= created_at < end_time, newest first.
 */
Datum
credit_history(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[4];
	int32		lim;
	TimestampTz start_time = DT_NOBEGIN;
	TimestampTz end_time = DT_NOEND;
	uint64		n;

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

	InitMaterializedSRF(fcinfo, 0);

	values[0] = PointerGetDatum(user_id);
	values[1] = Int32GetDatum(lim);
	values[2] = TimestampTzGetDatum(start_time);
	values[3] = TimestampTzGetDatum(end_time);

	credits_connect();
	n = credits_exec(CQ_HISTORY, values, NULL, true, 0);
	for (uint64 i = 0; i < n; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	credits_finish();

	return (Datum) 0;
}
