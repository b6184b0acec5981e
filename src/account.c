/*-------------------------------------------------------------------------
 *
 * account.c
 *		The account primitives, the bottom layer of every write: lock an
 *		account row, post a ledger row, spend, change what holds reserve,
 *		and the holds still active.
 *
 * Layering: calls only go down.  The SQL entry points (ledger.c, holds.c,
 * grants.c, prices.c, plans.c, usage.c) call the billing layer (settle.c:
 * settling an account, the locked deduction) and these primitives; settle.c
 * calls these primitives; these call only SPI (spi.c) and the hash chain's
 * statement.  Nothing here calls back up.
 *
 * Locking: every function here except credits_lock_account and
 * credits_lock_or_open (which take it) requires the caller to hold the
 * account row lock (SELECT ... FOR UPDATE or an UPDATE of the row) and to
 * be connected to SPI.  The lock is held until the caller's transaction
 * ends, so balance, held and expiring, and the account's holds and grants,
 * cannot change under the caller.
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/* Read balance, held, expiring from columns 1-3 of the last result's row 0. */
static void
account_from_result(CreditsAccount *acct)
{
	acct->balance = credits_get_int64(0, 1);
	acct->held = credits_get_int64(0, 2);
	acct->expiring = credits_get_int64(0, 3);
}

/*
 * Lock user_id's account row into *acct; returns false if there is none.
 * Caller is connected.
 */
bool
credits_lock_account(text *user_id, CreditsAccount *acct)
{
	Datum		values[1] = {PointerGetDatum(user_id)};

	if (credits_exec(CQ_LOCK_ACCOUNT, values, NULL, false, 0) == 0)
		return false;
	acct->balance = credits_get_int64(0, 1);
	acct->held = credits_get_int64(0, 2);
	acct->expiring = credits_get_int64(0, 3);
	return true;
}

/* Lock user_id's account row into *acct, opening the account if needed. */
void
credits_lock_or_open(text *user_id, CreditsAccount *acct)
{
	Datum		values[1] = {PointerGetDatum(user_id)};

	if (credits_lock_account(user_id, acct))
		return;
	(void) credits_exec(CQ_OPEN_ACCOUNT, values, NULL, false, 0);
	if (!credits_lock_account(user_id, acct))
		elog(ERROR, "credits: account vanished after being opened");
}

/*
 * Holds that are still active for user_id, given accounts.held (the sum of
 * open holds, expired or not).  Caller must hold the account row lock.
 */
int64
credits_active_held(text *user_id, int64 held)
{
	Datum		values[2] = {PointerGetDatum(user_id), TimestampTzGetDatum(credits_now())};

	if (held == 0)
		return 0;
	if (credits_exec(CQ_ACTIVE_HELD, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: active holds query returned no row");
	return credits_get_int64(0, 1);
}

/*
 * Insert the ledger row for a change already applied to the account, and
 * fill *tx; charge (NULL for anything but a charge) gives its quantity,
 * rate and carry.  The same statement advances the account's hash chain
 * (id, created_at and hash of the new row, src/chain.c).  Caller must hold
 * the account row lock and be connected to SPI.
 */
void
credits_post_charge(text *user_id, int64 amount, int64 balance_after,
					text *action, Jsonb *metadata, text *idem_key,
					const CreditsCharge *charge, CreditsTx *tx)
{
	Datum		values[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', 'n', 'n', 'n', ' '};
	bool		isnull;

	values[0] = PointerGetDatum(user_id);
	values[1] = Int64GetDatum(amount);
	values[2] = Int64GetDatum(balance_after);
	values[3] = PointerGetDatum(action);
	values[4] = JsonbPGetDatum(metadata);
	values[5] = PointerGetDatum(idem_key);
	if (idem_key == NULL)
		nulls[5] = 'n';
	values[6] = values[7] = values[8] = (Datum) 0;
	if (charge != NULL)
	{
		values[6] = NumericGetDatum(charge->quantity);
		values[7] = NumericGetDatum(charge->rate);
		nulls[6] = nulls[7] = ' ';
		if (charge->carry != NULL)
		{
			values[8] = NumericGetDatum(charge->carry);
			nulls[8] = ' ';
		}
	}
	values[9] = TimestampTzGetDatum(GetCurrentTimestamp());

	if (credits_exec(CQ_POST, values, nulls, false, 0) != 1)
		elog(ERROR, "credits: ledger insert returned no row (account row vanished)");

	tx->tx_id = credits_get_int64(0, 1);
	tx->created_at = DatumGetTimestampTz(credits_get(0, 2, &isnull));
	tx->balance = balance_after;
	credits_note_write();
}

/* credits_post_charge() for every row that is not a charge. */
void
credits_post(text *user_id, int64 amount, int64 balance_after,
			 text *action, Jsonb *metadata, text *idem_key, CreditsTx *tx)
{
	credits_post_charge(user_id, amount, balance_after, action, metadata,
						idem_key, NULL, tx);
}

/* Add held_delta to held and expiring_delta to expiring; bumps version. */
void
credits_hold_account(text *user_id, int64 held_delta, int64 expiring_delta,
					 CreditsAccount *acct)
{
	Datum		values[3];

	values[0] = PointerGetDatum(user_id);
	values[1] = Int64GetDatum(held_delta);
	values[2] = Int64GetDatum(expiring_delta);
	if (credits_exec(CQ_HOLD_ACCOUNT, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: locked account row vanished");
	account_from_result(acct);
}

/* Write the account_events row of a change to held (after the change). */
void
credits_hold_event(text *user_id, const char *event, int64 hold_id)
{
	Datum		values[3];

	values[0] = PointerGetDatum(user_id);
	values[1] = CStringGetTextDatum(event);
	values[2] = Int64GetDatum(hold_id);
	if (credits_exec(CQ_HOLD_EVENT, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: hold event not written");
	credits_note_write();
}

/*
 * Close a hold's reservation (grant_ids/grant_amounts, soonest-expiring
 * first): its first `consume` credits are spent, the rest goes back to the
 * grants' remaining credit.  Returns the credit spent (at most consume).
 * accounts.expiring is the caller's to lower by that amount.
 */
int64
credits_unreserve(Datum grant_ids, Datum grant_amounts, int64 consume)
{
	Datum	   *ids;
	Datum	   *amounts;
	Datum	   *returned;
	bool	   *nulls;
	int			n;
	int			n_amounts;
	int64		spent = 0;
	Datum		values[3];

	deconstruct_array(DatumGetArrayTypeP(grant_ids), INT8OID, sizeof(int64),
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &ids, &nulls, &n);
	deconstruct_array(DatumGetArrayTypeP(grant_amounts), INT8OID, sizeof(int64),
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &amounts, &nulls, &n_amounts);
	if (n != n_amounts)
		elog(ERROR, "credits: hold reservation arrays differ in length");
	if (n == 0)
		return 0;

	returned = palloc(n * sizeof(Datum));
	for (int i = 0; i < n; i++)
	{
		int64		reserved = DatumGetInt64(amounts[i]);
		int64		take = Min(reserved, consume - spent);

		spent += take;
		returned[i] = Int64GetDatum(reserved - take);
	}

	values[0] = grant_ids;
	values[1] = grant_amounts;
	values[2] = PointerGetDatum(construct_array(returned, n, INT8OID, sizeof(int64),
													  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (credits_exec(CQ_UNRESERVE, values, NULL, false, 0) != (uint64) n)
		elog(ERROR, "credits: reserved grant vanished");
	return spent;
}

/*
 * Take amount off the settled account's balance, drawing up to draw of it
 * from unexpired grants (see the order above).  Returns the new balance.
 * The caller has checked that amount is available.
 */
int64
credits_spend(text *user_id, int64 amount, int64 draw)
{
	Datum		values[4];

	values[0] = PointerGetDatum(user_id);
	values[1] = Int64GetDatum(amount);
	values[2] = Int64GetDatum(draw);
	values[3] = TimestampTzGetDatum(credits_now());
	if (credits_exec(CQ_SPEND, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: locked account row vanished");
	return credits_get_int64(0, 1);
}
