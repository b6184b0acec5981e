/*-------------------------------------------------------------------------
 *
 * settle.c
 *		Bringing a locked account up to date with the clock, and the grant
 *		draw-down shared by deductions, holds and captures.
 *
 * Holds and grants expire by time alone: every reader compares expires_at
 * with credits_now() (credits.c), so nothing has to run for an expired hold to stop counting or
 * for expired credit to stop being spendable.  The tables catch up here,
 * always under the account row lock ("settling" the account):
 *
 *	- an open hold past its expires_at is closed as 'expired': accounts.held
 *	  drops by its amount, the credit it reserved from grants goes back to
 *	  them, and a hold.expire event records the change;
 *	- a grant past its expires_at posts its unspent, unreserved credit as a
 *	  ledger row with action 'expire', so the ledger still sums to the
 *	  balance.
 *
 * Holds are settled first, since closing one can give credit back to a
 * grant that has expired meanwhile.  Once settled, every open hold is
 * active and no grant past its expiry has credit left, so
 * available = balance - held exactly.
 *
 * Draw-down order (deterministic): spending takes credit from the unexpired
 * grant that expires soonest, ties broken by the lower grant id, and from
 * non-expiring credit last.  A hold reserves credit in the same order;
 * reserved credit is protected from expiry until its hold closes, when the
 * part not captured goes back to its grant (and expires at once if the
 * grant has expired by then).  With F = balance - held - (expiring -
 * reserved), every operation keeps F >= 0, so a capture of no more than
 * its hold never fails and expiry never takes credit a hold relies on.
 *
 * Locking: every function here requires the caller to hold the account row
 * lock (SELECT ... FOR UPDATE or an UPDATE of the row) and to be connected
 * to SPI.  Holds and grants are only ever changed under their account's
 * lock, so they cannot change under the caller either.
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"

/* Read balance, held, expiring from columns 1-3 of the last result's row 0. */
static void
account_from_result(CreditsAccount *acct)
{
	acct->balance = credits_get_int64(0, 1);
	acct->held = credits_get_int64(0, 2);
	acct->expiring = credits_get_int64(0, 3);
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

/* Close user_id's expired open holds; returns how many. */
int
credits_settle_holds(text *user_id, CreditsAccount *acct)
{
	Datum		values[2] = {PointerGetDatum(user_id), TimestampTzGetDatum(credits_now())};
	SPITupleTable *tt;
	uint64		n;

	if (acct->held == 0)
		return 0;
	n = credits_exec(CQ_EXPIRE_HOLDS, values, NULL, false, 0);
	tt = SPI_tuptable;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		int64		hold_id = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		int64		amount = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
		Datum		ids = SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull);
		Datum		amounts = SPI_getbinval(tt->vals[i], tt->tupdesc, 4, &isnull);

		(void) credits_unreserve(ids, amounts, 0);
		credits_hold_account(user_id, -amount, 0, acct);
		credits_hold_event(user_id, "hold.expire", hold_id);
	}
	return (int) n;
}

/* Post amount of grant_id's remaining credit as expired. */
static void
expire_grant(text *user_id, int64 grant_id, int64 amount, Jsonb *metadata,
			 CreditsAccount *acct)
{
	Datum		values[3];
	CreditsTx	tx;

	values[0] = PointerGetDatum(user_id);
	values[1] = Int64GetDatum(grant_id);
	values[2] = Int64GetDatum(amount);
	if (credits_exec(CQ_EXPIRE_GRANT, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: expiring grant or its account vanished");
	account_from_result(acct);
	credits_post(user_id, -amount, acct->balance, cstring_to_text("expire"),
				 metadata, NULL, &tx);
}

/* Post the expiry of user_id's grants past expires_at; returns how many. */
int
credits_settle_grants(text *user_id, CreditsAccount *acct)
{
	Datum		values[2] = {PointerGetDatum(user_id), TimestampTzGetDatum(credits_now())};
	SPITupleTable *tt;
	uint64		n;

	if (acct->expiring == 0)
		return 0;
	n = credits_exec(CQ_DUE_GRANTS, values, NULL, false, 0);
	tt = SPI_tuptable;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		int64		grant_id = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		int64		remaining = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
		Jsonb	   *metadata = DatumGetJsonbP(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));

		expire_grant(user_id, grant_id, remaining, metadata, acct);
	}
	return (int) n;
}

/* Settle the locked account: close expired holds, then post expired grants. */
void
credits_settle(text *user_id, CreditsAccount *acct)
{
	(void) credits_settle_holds(user_id, acct);
	(void) credits_settle_grants(user_id, acct);
}

/*
 * Close grant_id now (a plan's renewal or plan change closing an allowance):
 * its expires_at becomes at most credits_now() and what is left of it is
 * posted as expired.  Returns the grant's total expired credit.  Credit
 * reserved by open holds stays reserved; since the grant has expired, the
 * part a hold gives back expires as soon as the hold closes.
 */
int64
credits_close_grant(text *user_id, int64 grant_id, CreditsAccount *acct)
{
	Datum		values[3];
	bool		isnull;
	int64		remaining;
	int64		expired;
	Jsonb	   *metadata;

	values[0] = Int64GetDatum(grant_id);
	values[1] = PointerGetDatum(user_id);
	values[2] = TimestampTzGetDatum(credits_now());
	if (credits_exec(CQ_GRANT_CLOSE, values, NULL, false, 0) != 1)
		return 0;
	remaining = credits_get_int64(0, 1);
	expired = credits_get_int64(0, 2);
	metadata = DatumGetJsonbP(credits_get(0, 3, &isnull));
	if (remaining > 0)
		expire_grant(user_id, grant_id, remaining, metadata, acct);
	return expired + remaining;
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

/*
 * The deduction path of an account with open holds or expiring grants
 * (called from credits_deduct_locked): settle, check, spend.  Returns the new balance.
 * Caller holds the lock of the account row whose values are *locked.
 */
int64
credits_spend_expiring(text *user_id, int64 amount, const CreditsAccount *locked)
{
	CreditsAccount acct = *locked;
	int64		available;

	credits_settle(user_id, &acct);
	available = acct.balance - acct.held;
	if (amount > available)
		credits_insufficient(amount, Max(available, 0));
	return credits_spend(user_id, amount, amount);
}
