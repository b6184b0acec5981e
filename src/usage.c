/*-------------------------------------------------------------------------
 *
 * usage.c
 *		credit_usage: one row summarising a user's credit.
 *
 * Read-only: both statements run under the calling statement's snapshot
 * and take no locks.  Spending is every ledger row with a negative amount
 * except expiries (captures count under their hold's action); tokens come
 * from metadata.tokens, or for llm_tokens charges from the charged quantity
 * (also of charges that cost 0; 1.0's rows: the quantity in metadata).
 * The period is the subscription's current one, or the current calendar
 * month (UTC) for a user without a subscription.
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "funcapi.h"

PG_FUNCTION_INFO_V1(credit_usage);

/*
 * credits.credit_usage(user_id): balance, available, held (unexpired
 * holds), plan, plan end, period start, credits spent and tokens used this
 * period and over the lifetime.  Raises CR002 for an unknown account.
 */
Datum
credit_usage(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[2] = {PointerGetDatum(user_id), TimestampTzGetDatum(credits_now())};
	Datum		result[10];
	bool		nulls[10];
	int64		balance;
	int64		held;
	int64		unposted;

	InitMaterializedSRF(fcinfo, rsinfo != NULL && rsinfo->expectedDesc != NULL ?
						MAT_SRF_USE_EXPECTED_DESC : 0);

	credits_connect();
	if (credits_exec(CQ_AVAILABLE, values, NULL, true, 0) != 1)
		credits_unknown_account(user_id);
	balance = credits_get_int64(0, 1);
	held = credits_get_int64(0, 2);
	unposted = credits_get_int64(0, 3);

	if (credits_exec(CQ_USAGE, values, NULL, true, 0) != 1)
		elog(ERROR, "credits: usage query returned no row");
	memset(nulls, 0, sizeof(nulls));
	result[0] = Int64GetDatum(balance);
	result[1] = Int64GetDatum(balance - held - unposted);
	result[2] = Int64GetDatum(held);
	for (int col = 1; col <= 7; col++)
		result[2 + col] = credits_get(0, col, &nulls[2 + col]);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, result, nulls);
	credits_finish();

	return (Datum) 0;
}
