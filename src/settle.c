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
 * Layering: the entry points (ledger.c, holds.c, grants.c, prices.c,
 * plans.c, jobs.c) call this file, and it calls only the account
 * primitives below it (account.c), never back up.  credits_deduct_locked,
 * the deduction under the lock shared by credit_deduct and credit_charge,
 * lives here because it settles.
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

/*
 * Deduct from the locked account *acct; raises CR001 if the available
 * credit does not cover amount.  Returns the new balance.  Caller must hold
 * the account row lock.
 */
int64
credits_deduct_locked(text *user_id, int64 amount, const CreditsAccount *acct)
{
	Datum		values[2] = {PointerGetDatum(user_id), Int64GetDatum(amount)};
	int64		available;

	/*
	 * Open holds or expiring grants: settle the account first (settle.c), so
	 * that a hold past its expiry is closed before the credit it held is
	 * spent (a capture of it is then CR004, and available never goes
	 * negative for a transaction that still sees the hold active), and draw
	 * expiring grants down.
	 */
	if (acct->expiring > 0 || acct->held > 0)
		return credits_spend_expiring(user_id, amount, acct);

	available = acct->balance - credits_active_held(user_id, acct->held);

	if (amount > available)
		credits_insufficient(amount, Max(available, 0));
	if (credits_exec(CQ_DEDUCT_LOCKED, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: locked account row vanished");
	return credits_get_int64(0, 1);
}
