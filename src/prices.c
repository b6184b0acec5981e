/*-------------------------------------------------------------------------
 *
 * prices.c
 *		Prices as data: credit_cost and credit_charge.
 *
 * credits.prices holds, per action, the unit, the rate in credits per unit,
 * the rounding and per_call; the row in force is the latest with
 * valid_from <= credits' clock.  Arithmetic is numeric, so it is exact.
 *
 *	- Metered prices (per_call = false, the default): per user and action a
 *	  fraction of a credit c in [0, 1) is carried in credits.carries.  A
 *	  charge of q units costs floor(c + q * rate) and carries the rest, so N
 *	  charges of q cost floor(c0 + N * q * rate) in total: 2,000 charges of
 *	  one llm_token at 0.0005 cost exactly 1 credit.  rounding is not used.
 *	- Per-call prices (per_call = true): each charge costs q * rate rounded
 *	  to a whole credit as rounding says (up: every call costs at least 1),
 *	  and the carry is neither read nor changed.
 *
 * A charge whose cost is 0 still writes a ledger row, of amount 0, so that
 * it is audited and its key is bound.  Every charge's ledger row records
 * quantity, rate and (metered) the carry after it, in columns; its metadata
 * also records the price used under "price", so a later price change never
 * alters past rows.  credit_cost(action, q) is q * rate rounded as the
 * price says, as in 1.0: for a per-call price the cost of a charge, for a
 * metered price rounded up (every seeded price) the most a charge of q can
 * cost, whatever the carry (floor(c + x) <= ceil(x) for c < 1), which is
 * what a hold for the work should reserve.
 *
 * Holds and captures are in credits, not units: capturing a hold for a
 * metered action spends the amount captured and neither reads nor changes
 * the carry (price the work with credit_cost, or charge it instead).
 *
 * Locking: every charge locks the account row first (SELECT ... FOR
 * UPDATE), then looks its key up, then reads the price and the carry and
 * writes; the carry only changes under that lock, so concurrent charges of
 * one user are serialised and none loses another's fraction.  If the
 * deduction fails (CR001) the carry is not written.
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(credit_cost);
PG_FUNCTION_INFO_V1(credit_charge);

/* A priced charge: what it costs and what its ledger row records. */
typedef struct Priced
{
	int64		cost;
	bool		per_call;
	bool		carry_unchanged;	/* metered: the carry is what it was */
	CreditsCharge charge;
	Jsonb	   *metadata;		/* the caller's, with the price used */
} Priced;

/*
 * Price quantity units of action for user_id, with metadata for the ledger
 * row; user_id NULL (credit_cost) rounds as the price says, metered or not.  Raises CR005 and CR011.  Caller is
 * connected and, for a charge, holds the account row lock.
 */
static void
price(text *user_id, text *action, Numeric quantity, Jsonb *metadata,
	  bool read_only, Priced *p)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	Datum		d;

	values[0] = PointerGetDatum(action);
	values[1] = NumericGetDatum(quantity);
	values[2] = JsonbPGetDatum(metadata);
	values[3] = PointerGetDatum(user_id);
	if (user_id == NULL)
		nulls[3] = 'n';
	values[4] = TimestampTzGetDatum(credits_now());
	if (credits_exec(CQ_PRICE, values, nulls, read_only, 0) != 1)
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_UNKNOWN_ACTION),
				errmsg("unknown action"),
				errdetail("No price is set for action \"%s\".", text_to_cstring(action)),
				errhint("Add a row to credits.prices."));
	d = credits_get(0, 1, &isnull);
	if (isnull)
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_BALANCE_OVERFLOW),
				errmsg("cost would overflow"),
				errdetail("%s units of action \"%s\" cost more than the largest bigint.",
						  DatumGetCString(DirectFunctionCall1(numeric_out,
															  NumericGetDatum(quantity))),
						  text_to_cstring(action)));
	p->cost = DatumGetInt64(d);
	d = credits_get(0, 2, &isnull);
	p->charge.carry = isnull ? NULL : DatumGetNumeric(d);
	p->charge.rate = DatumGetNumeric(credits_get(0, 3, &isnull));
	p->charge.quantity = quantity;
	p->per_call = DatumGetBool(credits_get(0, 4, &isnull));
	p->metadata = DatumGetJsonbP(credits_get(0, 5, &isnull));
	d = credits_get(0, 6, &isnull);
	p->carry_unchanged = !isnull && DatumGetBool(d);
}

/* credits.credit_cost(action, quantity): quantity * rate, rounded as the price says. */
Datum
credit_cost(PG_FUNCTION_ARGS)
{
	text	   *action = credits_arg_required_text(fcinfo, 0, "action");
	Numeric		quantity = credits_arg_quantity(fcinfo, 1);
	Jsonb	   *empty = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	Priced		p;

	credits_connect();
	price(NULL, action, quantity, empty, true, &p);
	credits_finish();

	PG_RETURN_INT64(p.cost);
}

/*
 * credits.credit_charge(user_id, action, quantity, metadata,
 * idempotency_key): price quantity units of action and deduct the cost,
 * carrying the fraction of a metered price.  Returns the ledger row, like
 * credit_deduct.  A retry with the same key returns the original row, even
 * after a price change.
 */
Datum
credit_charge(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	text	   *action = credits_arg_action(fcinfo, 1);
	Numeric		quantity = credits_arg_quantity(fcinfo, 2);
	Jsonb	   *metadata = credits_arg_metadata(fcinfo, 3);
	text	   *key = credits_arg_idempotency_key(fcinfo, 4);
	CreditsAccount acct;
	CreditsKeyBinding b;
	CreditsKeyResult r;
	Priced		p;
	int64		balance;
	CreditsTx	tx;

	credits_connect();
	if (!credits_lock_account(user_id, &acct))
		credits_unknown_account(user_id);
	memset(&b, 0, sizeof(b));
	b.operation = "charge";
	b.quantity = quantity;
	b.action = action;
	if (key != NULL && credits_key_lookup(user_id, key, &b, &r))
		credits_key_tx(&r, &tx);
	else
	{
		price(user_id, action, quantity, metadata, false, &p);
		/* raises CR001 before the carry is written */
		balance = credits_deduct_locked(user_id, p.cost, &acct);
		if (!p.per_call && !p.carry_unchanged)
		{
			Datum		values[3];

			values[0] = PointerGetDatum(user_id);
			values[1] = PointerGetDatum(action);
			values[2] = NumericGetDatum(p.charge.carry);
			(void) credits_exec(CQ_CARRY_SET, values, NULL, false, 0);
		}
		credits_post_charge(user_id, -p.cost, balance, action, p.metadata, key,
							&p.charge, &tx);
		if (key != NULL)
		{
			credits_key_result_tx(&r, &tx);
			credits_key_record(user_id, key, &b, &r);
		}
	}
	credits_finish();

	credits_return_tx(fcinfo, &tx);
	return (Datum) 0;
}
