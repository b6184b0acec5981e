/*-------------------------------------------------------------------------
 *
 * ledger.c
 *		The mutating entry points: credit_init, credit_deduct, credit_add.
 *
 * One call is one atomic step.  The account row is locked before anything
 * is decided, and stays locked until the caller's transaction ends:
 *
 *	- Unkeyed deduct: one statement, an UPDATE ... WHERE balance - held >=
 *	  amount that locks, checks and changes the row, and the ledger INSERT
 *	  of its row (under READ COMMITTED the WHERE clause is
 *	  re-checked against the newest row version after a lock wait, so no
 *	  interleaving can overdraw).  Only when it matches nothing do we lock
 *	  with SELECT ... FOR UPDATE to find out why (unknown account,
 *	  insufficient credits, holds that have expired and no longer count, or
 *	  expiring grants to settle and draw down: see settle.c).
 *	- Unkeyed add: one INSERT ... ON CONFLICT DO UPDATE, which opens the
 *	  account if needed and refuses to overflow.
 *	- Keyed calls lock the row first and only then look the key up in
 *	  credits.idempotency_keys (idempotency.c), so concurrent retries of one
 *	  key are serialised by the row lock and the later ones see the first
 *	  one's key row (each SPI statement takes a new snapshot under READ
 *	  COMMITTED).
 *
 * The ledger row is inserted after the account row is changed, in the same
 * transaction, so accounts.balance always equals the sum of the ledger.
 *
 * History order and the hash chain: the row's id, created_at and hash are
 * assigned by an UPDATE of the locked account row that also records them
 * as the account's last_tx_id, last_tx_at and last_hash (src/spi.c,
 * CHAIN_SET; src/chain.c).  credit_deduct's fast path does it in its
 * one statement (CQ_DEDUCT_POST); every other path changes the
 * balance first and then calls credits_post, whose one statement advances
 * the chain and inserts the row (CQ_POST).  So ids follow the row-lock
 * order, created_at never goes backwards along them, and balance_after
 * chains along them (test/specs/history_lock_order.spec).
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(credit_init);
PG_FUNCTION_INFO_V1(credit_deduct);
PG_FUNCTION_INFO_V1(credit_add);

/*
 * The unkeyed deduction's fast path: one statement locks, checks and
 * changes the account row, advances its hash chain, and inserts the ledger
 * row with the id, created_at and hash that its UPDATE assigned
 * (CQ_DEDUCT_POST).  Returns false, having written nothing, if the guarded
 * UPDATE matched no row (see credits_deduct_unkeyed for why).  Caller is
 * connected.
 */
static bool
deduct_fast(text *user_id, int64 amount, text *action, Jsonb *metadata,
			CreditsTx *tx)
{
	Datum		values[5];
	bool		isnull;

	values[0] = PointerGetDatum(user_id);
	values[1] = Int64GetDatum(amount);
	values[2] = PointerGetDatum(action);
	values[3] = JsonbPGetDatum(metadata);
	values[4] = TimestampTzGetDatum(GetCurrentTimestamp());
	if (credits_exec(CQ_DEDUCT_POST, values, NULL, false, 0) != 1)
		return false;

	tx->balance = credits_get_int64(0, 1);
	tx->tx_id = credits_get_int64(0, 2);
	tx->created_at = DatumGetTimestampTz(credits_get(0, 3, &isnull));
	credits_note_write();
	return true;
}

/* Return *tx as the single row of a TABLE(tx_id, balance, created_at). */
void
credits_return_tx(FunctionCallInfo fcinfo, const CreditsTx *tx)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	InitMaterializedSRF(fcinfo,
						rsinfo != NULL && rsinfo->expectedDesc != NULL ?
						MAT_SRF_USE_EXPECTED_DESC : 0);
	values[0] = Int64GetDatum(tx->tx_id);
	values[1] = Int64GetDatum(tx->balance);
	values[2] = TimestampTzGetDatum(tx->created_at);
	nulls[0] = nulls[2] = (tx->tx_id == 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* Apply an unkeyed deduction; returns the new balance.  Caller is connected. */
int64
credits_deduct_unkeyed(text *user_id, int64 amount)
{
	Datum		values[2] = {PointerGetDatum(user_id), Int64GetDatum(amount)};
	CreditsAccount acct;

	if (credits_exec(CQ_DEDUCT_FAST, values, NULL, false, 0) == 1)
		return credits_get_int64(0, 1);
	if (!credits_lock_account(user_id, &acct))
		credits_unknown_account(user_id);
	return credits_deduct_locked(user_id, amount, &acct);
}

/* Raise CR011: adding amount to balance would overflow bigint. */
static void
balance_overflow(int64 balance, int64 amount)
{
	ereport(ERROR,
			errcode(ERRCODE_CREDITS_BALANCE_OVERFLOW),
			errmsg("amount would overflow the balance"),
			errdetail("The balance is " INT64_FORMAT "; adding " INT64_FORMAT
					  " would exceed the largest bigint.", balance, amount));
}

/* Add to an account, opening it if needed; returns the new balance. */
static int64
add_upsert(text *user_id, int64 amount)
{
	Datum		values[2] = {PointerGetDatum(user_id), Int64GetDatum(amount)};

	if (credits_exec(CQ_ADD_UPSERT, values, NULL, false, 0) == 1)
		return credits_get_int64(0, 1);

	/* The row exists, is now locked by us, and the sum would overflow. */
	if (credits_exec(CQ_BALANCE, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: locked account row vanished");
	balance_overflow(credits_get_int64(0, 1), amount);
	pg_unreachable();
}

/*
 * credits.credit_deduct(user_id, amount, action, metadata, idempotency_key)
 */
Datum
credit_deduct(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	int64		amount = credits_arg_amount(fcinfo, 1, "amount");
	text	   *action = credits_arg_action(fcinfo, 2);
	Jsonb	   *metadata = credits_arg_metadata(fcinfo, 3);
	text	   *key = credits_arg_idempotency_key(fcinfo, 4);
	CreditsTx	tx;

	credits_connect();
	if (key == NULL)
	{
		if (!deduct_fast(user_id, amount, action, metadata, &tx))
		{
			CreditsAccount acct;

			if (!credits_lock_account(user_id, &acct))
				credits_unknown_account(user_id);
			credits_post(user_id, -amount,
						 credits_deduct_locked(user_id, amount, &acct),
						 action, metadata, NULL, &tx);
		}
	}
	else
	{
		CreditsAccount acct;
		CreditsKeyBinding b;
		CreditsKeyResult r;

		if (!credits_lock_account(user_id, &acct))
			credits_unknown_account(user_id);
		credits_key_binding(&b, "deduct", amount, action);
		if (credits_key_lookup(user_id, key, &b, &r))
			credits_key_tx(&r, &tx);
		else
		{
			credits_post(user_id, -amount,
						 credits_deduct_locked(user_id, amount, &acct),
						 action, metadata, key, &tx);
			credits_key_result_tx(&r, &tx);
			credits_key_record(user_id, key, &b, &r);
		}
	}
	credits_finish();

	credits_return_tx(fcinfo, &tx);
	return (Datum) 0;
}

/*
 * credits.credit_add(user_id, amount, action, metadata, idempotency_key)
 */
Datum
credit_add(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	int64		amount = credits_arg_amount(fcinfo, 1, "amount");
	text	   *action = credits_arg_action(fcinfo, 2);
	Jsonb	   *metadata = credits_arg_metadata(fcinfo, 3);
	text	   *key = credits_arg_idempotency_key(fcinfo, 4);
	CreditsTx	tx;

	credits_connect();
	if (key == NULL)
		credits_post(user_id, amount, add_upsert(user_id, amount),
					 action, metadata, NULL, &tx);
	else
	{
		CreditsAccount acct;
		CreditsKeyBinding b;
		CreditsKeyResult r;

		credits_lock_or_open(user_id, &acct);
		credits_key_binding(&b, "add", amount, action);
		if (credits_key_lookup(user_id, key, &b, &r))
			credits_key_tx(&r, &tx);
		else
		{
			credits_post(user_id, amount, add_upsert(user_id, amount),
						 action, metadata, key, &tx);
			credits_key_result_tx(&r, &tx);
			credits_key_record(user_id, key, &b, &r);
		}
	}
	credits_finish();

	credits_return_tx(fcinfo, &tx);
	return (Datum) 0;
}

/*
 * credits.credit_init(user_id, amount, metadata): open an account with a
 * signup grant.  For an existing account it grants nothing and returns the
 * account's first ledger row with the current balance.
 */
Datum
credit_init(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	Jsonb	   *metadata;
	int64		amount;
	Datum		values[2];
	CreditsTx	tx;

	if (PG_ARGISNULL(1))
		amount = credits_default_credits;
	else
	{
		amount = PG_GETARG_INT64(1);
		if (amount < 0)
			ereport(ERROR,
					errcode(ERRCODE_CREDITS_INVALID_PARAMETER),
					errmsg("invalid amount: must not be negative"),
					errdetail("The amount given was " INT64_FORMAT ".", amount));
	}
	metadata = credits_arg_metadata(fcinfo, 2);

	values[0] = PointerGetDatum(user_id);
	values[1] = Int64GetDatum(amount);

	credits_connect();
	if (credits_exec(CQ_INIT_ACCOUNT, values, NULL, false, 0) == 1)
		credits_post(user_id, amount, amount,
					 cstring_to_text("init"), metadata, NULL, &tx);
	else
	{
		bool		isnull;
		Datum		d;

		if (credits_exec(CQ_INIT_EXISTING, values, NULL, false, 0) != 1)
			elog(ERROR, "credits: existing account not found");
		d = credits_get(0, 1, &isnull);
		tx.tx_id = isnull ? 0 : DatumGetInt64(d);
		tx.balance = credits_get_int64(0, 2);
		d = credits_get(0, 3, &isnull);
		tx.created_at = isnull ? 0 : DatumGetTimestampTz(d);
	}
	credits_finish();

	credits_return_tx(fcinfo, &tx);
	return (Datum) 0;
}
