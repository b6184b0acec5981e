/*-------------------------------------------------------------------------
 *
 * grants.c
 *		Grants of credit, optionally expiring: credit_grant and
 *		credit_expire_grants.
 *
 * A grant adds to the balance with one ledger row (action 'grant', with
 * the grant id, source and expiry in its metadata) and records a row in
 * credits.grants.  An expiring grant's credit is tracked there (remaining,
 * reserved, expired) and counted in accounts.expiring; spending draws it
 * down soonest-expiring first (settle.c).  A non-expiring grant joins the
 * account's pooled non-expiring credit, which is spent last.
 *
 * Expiry posts a ledger row (action 'expire') for the unspent rest, so the
 * ledger always sums to the balance.  It happens under the account row
 * lock, either lazily before the account's next deduction, hold or capture
 * (so expired credit is never spendable), or in bulk here.
 *
 * Locking: like credit_add, an unkeyed grant locks the account row with its
 * INSERT ... ON CONFLICT DO UPDATE; a keyed one locks (or opens) the row
 * first and then looks the key up (idempotency.c), before checking that
 * expires_at is in the future.  credit_expire_grants (jobs.c) never
 * waits for an account lock: it skips accounts locked by others (SKIP
 * LOCKED), so it cannot deadlock with itself or with single-account
 * writes; a deduction racing it either settles the account first (the job
 * then finds nothing to do, or skips it) or waits for it.
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(credit_grant);
PG_FUNCTION_INFO_V1(credit_expire_grants);

/*
 * Grant amount to user_id (opening the account), expiring at expires_at if
 * expires, and post its ledger row into *tx; returns the grant id.  Raises
 * CR011.  Caller is connected; a keyed caller holds the account row lock
 * and has checked the key.
 */
int64
credits_grant_post(text *user_id, int64 amount, text *source, bool expires,
				   TimestampTz expires_at, Jsonb *metadata, text *idem_key,
				   CreditsTx *tx)
{
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int64		balance;
	int64		grant_id;
	bool		isnull;

	values[0] = PointerGetDatum(user_id);
	values[1] = Int64GetDatum(amount);
	values[2] = Int64GetDatum(expires ? amount : 0);
	if (credits_exec(CQ_GRANT_UPSERT, values, NULL, false, 0) != 1)
	{
		/* The row exists, is locked by us, and the sum would overflow. */
		if (credits_exec(CQ_BALANCE, values, NULL, false, 0) != 1)
			elog(ERROR, "credits: locked account row vanished");
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_BALANCE_OVERFLOW),
				errmsg("amount would overflow the balance"),
				errdetail("The balance is " INT64_FORMAT "; adding " INT64_FORMAT
						  " would exceed the largest bigint.",
						  credits_get_int64(0, 1), amount));
	}
	balance = credits_get_int64(0, 1);

	values[1] = PointerGetDatum(source);
	values[2] = Int64GetDatum(amount);
	values[3] = TimestampTzGetDatum(expires_at);
	if (!expires)
		nulls[3] = 'n';
	values[4] = JsonbPGetDatum(metadata);
	values[5] = PointerGetDatum(idem_key);
	if (idem_key == NULL)
		nulls[5] = 'n';
	if (credits_exec(CQ_GRANT_INSERT, values, nulls, false, 0) != 1)
		elog(ERROR, "credits: grant insert returned no row");
	grant_id = credits_get_int64(0, 1);

	credits_post(user_id, amount, balance, cstring_to_text("grant"),
				 DatumGetJsonbP(credits_get(0, 2, &isnull)), idem_key, tx);
	return grant_id;
}

/*
 * credits.credit_grant(user_id, amount, source, expires_at, metadata,
 * idempotency_key): add credit from a source, expiring at expires_at
 * (NULL: never).  Returns the ledger row, like credit_add.
 */
Datum
credit_grant(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	int64		amount = credits_arg_amount(fcinfo, 1, "amount");
	text	   *source = credits_arg_required_text(fcinfo, 2, "source");
	TimestampTz expires_at = 0;
	bool		expires = credits_arg_time(fcinfo, 3, "expires_at", &expires_at);
	Jsonb	   *metadata = credits_arg_metadata(fcinfo, 4);
	text	   *key = credits_arg_idempotency_key(fcinfo, 5);
	CreditsTx	tx;
	CreditsKeyBinding b;
	CreditsKeyResult r;

	credits_connect();
	if (key != NULL)
	{
		CreditsAccount acct;

		credits_lock_or_open(user_id, &acct);
		credits_key_binding(&b, "grant", amount, source);
		b.has_expires_at = expires;
		b.expires_at = expires_at;
		if (credits_key_lookup(user_id, key, &b, &r))
		{
			credits_key_tx(&r, &tx);
			goto done;
		}
	}
	/* after the key lookup: a retry once expires_at has passed still succeeds */
	if (expires)
		credits_check_future("expires_at", expires_at);
	(void) credits_grant_post(user_id, amount, source, expires, expires_at,
							  metadata, key, &tx);
	if (key != NULL)
	{
		credits_key_result_tx(&r, &tx);
		credits_key_record(user_id, key, &b, &r);
	}
done:
	credits_finish();

	credits_return_tx(fcinfo, &tx);
	return (Datum) 0;
}

/*
 * credits.credit_expire_grants(): post the expiry of every grant past its
 * expires_at (settling each account it touches, so expired holds that
 * reserved such credit are closed too), in the caller's transaction, like
 * credit_expire_holds.  Returns the number of grants whose expiry was
 * posted.
 */
Datum
credit_expire_grants(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32((int32) credits_job_all(CREDITS_JOB_EXPIRE_GRANTS));
}
