/*-------------------------------------------------------------------------
 *
 * verify.c
 *		Checking the ledger and repairing the balance cache: credit_verify,
 *		credit_verify_all and credit_rebuild.
 *
 * The ledger is the source of truth and accounts.balance caches its sum.
 * The verify functions also check each user's hash chain (src/chain.c):
 * every row's hash must match its fields and the previous row's hash and
 * id, and the account's last_tx_id and last_hash must name the newest row;
 * they report the first break by id.  They only read, under the calling
 * statement's snapshot.
 * credit_rebuild locks the account row first; since every writer locks
 * that row before inserting a ledger row, the sum it computes cannot move
 * until it commits.
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(credit_verify);
PG_FUNCTION_INFO_V1(credit_verify_all);
PG_FUNCTION_INFO_V1(credit_rebuild);

/*
 * Read cached and calculated balances of user_id into *cached and *calc.
 * Raises CR002 if there is no account.  Caller is connected.
 */
static void
read_balances(text *user_id, bool read_only, int64 *cached, int64 *calc)
{
	Datum		values[1] = {PointerGetDatum(user_id)};
	bool		isnull;
	Datum		d;

	if (credits_exec(CQ_VERIFY, values, NULL, read_only, 0) != 1)
		credits_unknown_account(user_id);
	*cached = credits_get_int64(0, 1);
	d = credits_get(0, 2, &isnull);
	*calc = isnull ? 0 : DatumGetInt64(d);
}

/*
 * credits.credit_verify(user_id): valid (the cache matches the ledger
 * and the chain is intact), cached, calculated, difference, and the first
 * break in the chain: broken_tx_id and problem (NULL when intact).
 */
Datum
credit_verify(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	Datum		values[1] = {PointerGetDatum(user_id)};
	ReturnSetInfo *rsinfo;
	Datum		out[6];
	bool		nulls[6] = {false, false, false, false, true, true};
	int64		cached;
	int64		calc;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	credits_connect();
	read_balances(user_id, true, &cached, &calc);
	if (credits_exec(CQ_VERIFY_CHAIN, values, NULL, true, 0) == 1)
	{
		out[4] = credits_get(0, 1, &nulls[4]);
		out[5] = credits_get(0, 2, &nulls[5]);
	}
	out[0] = BoolGetDatum(cached == calc && nulls[5]);
	out[1] = Int64GetDatum(cached);
	out[2] = Int64GetDatum(calc);
	out[3] = Int64GetDatum(cached - calc);
	/* the tuplestore copies the values before SPI's memory goes */
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	credits_finish();

	return (Datum) 0;
}

/*
 * credits.credit_verify_all(): every account whose cache differs from
 * its ledger or whose chain is broken, and every ledger user without an
 * account (cached is then NULL): user_id, cached, calculated, difference,
 * broken_tx_id, problem.
 */
Datum
credit_verify_all(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	uint64		n;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	credits_connect();
	n = credits_exec(CQ_VERIFY_ALL_CHAIN, NULL, NULL, true, 0);
	for (uint64 i = 0; i < n; i++)
	{
		Datum		values[6];
		bool		nulls[6];

		values[0] = credits_get(i, 1, &nulls[0]);
		values[1] = credits_get(i, 2, &nulls[1]);
		values[2] = credits_get(i, 3, &nulls[2]);
		nulls[3] = nulls[1] || nulls[2];
		if (!nulls[3])
			values[3] = Int64GetDatum(DatumGetInt64(values[1]) -
									  DatumGetInt64(values[2]));
		values[4] = credits_get(i, 4, &nulls[4]);
		values[5] = credits_get(i, 5, &nulls[5]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	credits_finish();

	return (Datum) 0;
}

/*
 * credits.credit_rebuild(user_id): set the cached balance to the ledger's
 * sum, record the correction in account_events, return the balance.
 */
Datum
credit_rebuild(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	Datum		values[3];
	int64		cached;
	int64		calc;
	int64		expiring;

	values[0] = PointerGetDatum(user_id);

	credits_connect();
	if (credits_exec(CQ_LOCK_ACCOUNT, values, NULL, false, 0) == 0)
		credits_unknown_account(user_id);
	expiring = credits_get_int64(0, 3);
	read_balances(user_id, false, &cached, &calc);
	if (calc < 0)
		ereport(ERROR,
				errcode(ERRCODE_DATA_CORRUPTED),
				errmsg("ledger sum for the account is negative"),
				errdetail("The ledger rows of user_id \"%s\" sum to " INT64_FORMAT ".",
						  text_to_cstring(user_id), calc));
	if (calc < expiring)
		ereport(ERROR,
				errcode(ERRCODE_DATA_CORRUPTED),
				errmsg("ledger sum for the account is below its unspent expiring grants"),
				errdetail("The ledger rows of user_id \"%s\" sum to " INT64_FORMAT
						  ", but its grants still hold " INT64_FORMAT " unspent credits.",
						  text_to_cstring(user_id), calc, expiring),
				errhint("Inspect credits.grants and credits.ledger for the user before rebuilding."));
	if (calc != cached)
	{
		values[1] = Int64GetDatum(calc);
		if (credits_exec(CQ_REBUILD, values, NULL, false, 0) != 1)
			elog(ERROR, "credits: locked account row vanished");

		values[1] = CStringGetTextDatum("rebuild");
		values[2] = DirectFunctionCall1(jsonb_in,
										CStringGetDatum(psprintf("{\"before\": " INT64_FORMAT
																 ", \"after\": " INT64_FORMAT "}",
																 cached, calc)));
		(void) credits_exec(CQ_INSERT_EVENT, values, NULL, false, 0);
		credits_note_write();
	}
	credits_finish();

	PG_RETURN_INT64(calc);
}
