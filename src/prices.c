/*-------------------------------------------------------------------------
 *
 * prices.c
 *		Prices as data: credit_cost and credit_charge.
 *
 * credits.prices holds, per action, the unit, the rate in credits per unit
 * and the rounding; the row in force is the latest with valid_from <=
 * now().  The cost of a quantity is quantity * rate, rounded to a whole
 * credit as the price says (every seeded price rounds up).  Arithmetic is
 * numeric, so 4,001 llm_tokens at 0.0005 cost exactly ceil(2.0005) = 3.
 *
 * credit_charge prices and deducts in one call: it runs the same deduction
 * path as credit_deduct (ledger.c), so an unkeyed charge on an account
 * without holds or expiring grants is one price lookup, one UPDATE and one
 * INSERT.  The ledger row's metadata records the price used under "price"
 * (rate, unit, quantity, rounding, valid_from), so a later price change
 * never alters past rows.  A retried keyed charge is matched on action and
 * quantity, not on the cost, so it returns the original row even after a
 * price change.
 *
 * Locking: a keyed charge locks the account row before looking the key up,
 * like credit_deduct; pricing takes no lock.
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(credit_cost);
PG_FUNCTION_INFO_V1(credit_charge);

/*
 * The cost of quantity units of action, and (if meta_out) metadata with the
 * price used.  Raises CR005 and CR011.  Caller is connected.
 */
static int64
price(text *action, Numeric quantity, Jsonb *metadata, bool read_only,
	  Jsonb **meta_out)
{
	Datum		values[4];
	bool		isnull;
	Datum		cost;

	values[0] = PointerGetDatum(action);
	values[1] = NumericGetDatum(quantity);
	values[2] = JsonbPGetDatum(metadata);
	values[3] = TimestampTzGetDatum(credits_now());
	if (credits_exec(CQ_PRICE, values, NULL, read_only, 0) != 1)
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_UNKNOWN_ACTION),
				errmsg("unknown action"),
				errdetail("No price is set for action \"%s\".", text_to_cstring(action)),
				errhint("Add a row to credits.prices."));
	cost = credits_get(0, 1, &isnull);
	if (isnull)
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_BALANCE_OVERFLOW),
				errmsg("cost would overflow"),
				errdetail("%s units of action \"%s\" cost more than the largest bigint.",
						  DatumGetCString(DirectFunctionCall1(numeric_out,
															  NumericGetDatum(quantity))),
						  text_to_cstring(action)));
	if (meta_out != NULL)
		*meta_out = DatumGetJsonbP(credits_get(0, 2, &isnull));
	return DatumGetInt64(cost);
}

/* credits.credit_cost(action, quantity): the cost in credits, rounded. */
Datum
credit_cost(PG_FUNCTION_ARGS)
{
	text	   *action = credits_arg_required_text(fcinfo, 0, "action");
	Numeric		quantity = credits_arg_quantity(fcinfo, 1);
	Jsonb	   *empty = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	int64		cost;

	credits_connect();
	cost = price(action, quantity, empty, true, NULL);
	credits_finish();

	PG_RETURN_INT64(cost);
}

/* Raise CR010 if a charge would cost nothing. */
static void
check_cost(int64 cost, Numeric quantity)
{
	if (cost <= 0)
		credits_invalid_parameter("quantity", "costs no credits",
								  psprintf("%s units round to a cost of 0.",
										   DatumGetCString(DirectFunctionCall1(numeric_out,
																			   NumericGetDatum(quantity)))));
}

/*
 * credits.credit_charge(user_id, action, quantity, metadata,
 * idempotency_key): price quantity units of action and deduct the cost.
 * Returns the ledger row, like credit_deduct.
 */
Datum
credit_charge(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	text	   *action = credits_arg_required_text(fcinfo, 1, "action");
	Numeric		quantity = credits_arg_quantity(fcinfo, 2);
	Jsonb	   *metadata = credits_arg_metadata(fcinfo, 3);
	text	   *key = credits_arg_idempotency_key(fcinfo, 4);
	Jsonb	   *meta;
	int64		cost;
	int64		balance;
	CreditsTx	tx;

	credits_connect();
	if (key == NULL)
	{
		cost = price(action, quantity, metadata, false, &meta);
		check_cost(cost, quantity);
		balance = credits_deduct_unkeyed(user_id, cost);
	}
	else
	{
		CreditsAccount acct;
		Datum		values[4];
		bool		isnull;

		if (!credits_lock_account(user_id, &acct))
			credits_unknown_account(user_id);
		values[0] = PointerGetDatum(user_id);
		values[1] = PointerGetDatum(key);
		values[2] = PointerGetDatum(action);
		values[3] = NumericGetDatum(quantity);
		if (credits_exec(CQ_CHARGE_FIND_KEY, values, NULL, false, 0) == 1)
		{
			if (!DatumGetBool(credits_get(0, 4, &isnull)))
				ereport(ERROR,
						errcode(ERRCODE_CREDITS_IDEMPOTENCY_MISMATCH),
						errmsg("idempotency key reused with different parameters"),
						errdetail("The key \"%s\" was first used for a different operation.",
								  text_to_cstring(key)),
						errhint("Use a new idempotency key for a different operation."));
			tx.tx_id = credits_get_int64(0, 1);
			tx.balance = credits_get_int64(0, 2);
			tx.created_at = DatumGetTimestampTz(credits_get(0, 3, &isnull));
			goto done;
		}
		cost = price(action, quantity, metadata, false, &meta);
		check_cost(cost, quantity);
		balance = credits_deduct_locked(user_id, cost, &acct);
	}
	credits_post(user_id, -cost, balance, action, meta, key, &tx);
done:
	credits_finish();

	credits_return_tx(fcinfo, &tx);
	return (Datum) 0;
}
