/*-------------------------------------------------------------------------
 *
 * holds.c
 *		Holds for metered work: credit_hold, credit_capture, credit_release,
 *		credit_available and credit_expire_holds.
 *
 * A hold reserves credit without spending it: accounts.held grows by its
 * amount and the ledger is untouched until the hold is captured, when one
 * ledger row spends the captured amount.  Every change to held writes a
 * hold.* account_events row and bumps accounts.version in the same
 * transaction, so credits-sync can mirror the available balance.
 *
 * Locking: a hold is only ever changed under its account's row lock.
 * credit_capture and credit_release read the hold's user_id without a
 * lock (it never changes), lock the account row, and only then read the
 * hold's state, so concurrent captures, releases and expiry jobs on one
 * hold are serialised and the later ones see the earlier ones' result.
 *
 * Expiry: a hold counts until expires_at, compared with credits_now() (the
 * transaction's start plus credits.clock_offset), so a transaction that began before the expiry may
 * still capture it.  Expired holds are closed lazily by the next write to
 * the account (settle.c) or in bulk by credit_expire_holds().
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(credit_hold);
PG_FUNCTION_INFO_V1(credit_capture);
PG_FUNCTION_INFO_V1(credit_release);
PG_FUNCTION_INFO_V1(credit_available);
PG_FUNCTION_INFO_V1(credit_expire_holds);

/* The state of one hold, as read under its account's lock. */
typedef struct HoldRow
{
	text	   *user_id;
	int64		amount;
	text	   *action;
	char	   *status;
	bool		expired;
	Datum		grant_ids;
	Datum		grant_amounts;
	bool		captured_null;
	int64		captured;
	int64		capture_tx_id;
	text	   *capture_key;	/* NULL if none */
	Jsonb	   *capture_metadata;	/* ledger metadata of a capture */
	TimestampTz expires_at;
} HoldRow;

/* Raise CR007 for hold_id. */
static void
unknown_hold(int64 hold_id)
{
	ereport(ERROR,
			errcode(ERRCODE_CREDITS_UNKNOWN_HOLD),
			errmsg("unknown hold"),
			errdetail("No hold has hold_id " INT64_FORMAT ".", hold_id));
}

/* Raise CR004: hold_id is closed or expired. */
static void
hold_not_open(int64 hold_id, const HoldRow *h)
{
	if (strcmp(h->status, "open") == 0)
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_HOLD_NOT_OPEN),
				errmsg("hold is not open"),
				errdetail("Hold " INT64_FORMAT " expired at %s.", hold_id,
						  timestamptz_to_str(h->expires_at)),
				errhint("Place a new hold."));
	ereport(ERROR,
			errcode(ERRCODE_CREDITS_HOLD_NOT_OPEN),
			errmsg("hold is not open"),
			errdetail("Hold " INT64_FORMAT " was already %s.", hold_id, h->status),
			errhint("A closed hold cannot be captured or released again."));
}

/*
 * Find hold_id's account and lock it, then read the hold into *h (with
 * capture_metadata merging metadata).  Raises CR007.  Caller is connected.
 */
static void
lock_hold(int64 hold_id, Jsonb *metadata, CreditsAccount *acct, HoldRow *h)
{
	Datum		values[3];
	SPITupleTable *tt;
	HeapTuple	row;
	bool		isnull;
	Datum		d;

	values[0] = Int64GetDatum(hold_id);
	if (credits_exec(CQ_HOLD_USER, values, NULL, false, 0) != 1)
		unknown_hold(hold_id);
	h->user_id = DatumGetTextPP(credits_get(0, 1, &isnull));
	if (!credits_lock_account(h->user_id, acct))
		elog(ERROR, "credits: account of hold " INT64_FORMAT " not found", hold_id);

	values[1] = JsonbPGetDatum(metadata);
	values[2] = TimestampTzGetDatum(credits_now());
	if (credits_exec(CQ_HOLD_GET, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: hold " INT64_FORMAT " vanished", hold_id);
	tt = SPI_tuptable;
	row = tt->vals[0];
	h->amount = DatumGetInt64(SPI_getbinval(row, tt->tupdesc, 2, &isnull));
	h->action = DatumGetTextPP(SPI_getbinval(row, tt->tupdesc, 3, &isnull));
	h->status = TextDatumGetCString(SPI_getbinval(row, tt->tupdesc, 4, &isnull));
	h->expired = DatumGetBool(SPI_getbinval(row, tt->tupdesc, 5, &isnull));
	h->grant_ids = SPI_getbinval(row, tt->tupdesc, 6, &isnull);
	h->grant_amounts = SPI_getbinval(row, tt->tupdesc, 7, &isnull);
	h->captured = DatumGetInt64(SPI_getbinval(row, tt->tupdesc, 8, &h->captured_null));
	d = SPI_getbinval(row, tt->tupdesc, 9, &isnull);
	h->capture_tx_id = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(row, tt->tupdesc, 10, &isnull);
	h->capture_key = isnull ? NULL : DatumGetTextPP(d);
	h->capture_metadata = DatumGetJsonbP(SPI_getbinval(row, tt->tupdesc, 11, &isnull));
	h->expires_at = DatumGetTimestampTz(SPI_getbinval(row, tt->tupdesc, 12, &isnull));
}

/* Raise CR004 unless the hold is open and unexpired. */
static void
check_open(int64 hold_id, const HoldRow *h)
{
	if (strcmp(h->status, "open") != 0 || h->expired)
		hold_not_open(hold_id, h);
}

/* Mark hold_id closed with status; captured/tx_id/key only for a capture. */
static void
close_hold(int64 hold_id, const char *status, int64 captured, int64 tx_id,
		   text *key)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', 'n', 'n', 'n'};

	values[0] = Int64GetDatum(hold_id);
	values[1] = CStringGetTextDatum(status);
	if (tx_id != 0)
	{
		values[2] = Int64GetDatum(captured);
		values[3] = Int64GetDatum(tx_id);
		nulls[2] = nulls[3] = ' ';
	}
	if (key != NULL)
	{
		values[4] = PointerGetDatum(key);
		nulls[4] = ' ';
	}
	if (credits_exec(CQ_HOLD_CLOSE, values, nulls, false, 0) != 1)
		elog(ERROR, "credits: hold " INT64_FORMAT " was not open", hold_id);
}

/*
 * credits.credit_hold(user_id, amount, action, metadata, ttl, idempotency_key):
 * reserve amount until credits_now() + ttl.  Returns the hold, its amount and the
 * available balance after it.
 */
Datum
credit_hold(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	int64		amount = credits_arg_amount(fcinfo, 1, "amount");
	text	   *action = credits_arg_action(fcinfo, 2);
	Jsonb	   *metadata = credits_arg_metadata(fcinfo, 3);
	Interval   *ttl = credits_arg_ttl(fcinfo, 4);
	text	   *key = credits_arg_idempotency_key(fcinfo, 5);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CreditsAccount acct;
	CreditsKeyBinding b;
	CreditsKeyResult r;
	int64		hold_id;
	int64		available;
	Datum		result[3];
	bool		result_nulls[3] = {false, false, false};

	credits_connect();
	if (!credits_lock_account(user_id, &acct))
		credits_unknown_account(user_id);
	credits_key_binding(&b, "hold", amount, action);
	if (key != NULL && credits_key_lookup(user_id, key, &b, &r))
	{
		hold_id = r.hold_id;
		available = r.available;
	}
	else
	{
		Datum		values[10];
		char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
		Datum		empty = PointerGetDatum(construct_empty_array(INT8OID));

		credits_settle(user_id, &acct);
		available = acct.balance - acct.held;
		if (amount > available)
			credits_insufficient(amount, Max(available, 0));

		values[6] = values[7] = empty;
		if (acct.expiring > 0)
		{
			Datum		reserve[3] = {PointerGetDatum(user_id), Int64GetDatum(amount),
			TimestampTzGetDatum(credits_now())};
			bool		isnull;

			if (credits_exec(CQ_RESERVE, reserve, NULL, false, 0) != 1)
				elog(ERROR, "credits: reservation returned no row");
			values[6] = credits_get(0, 1, &isnull);
			values[7] = credits_get(0, 2, &isnull);
		}
		credits_hold_account(user_id, amount, 0, &acct);
		available = acct.balance - acct.held;

		values[0] = PointerGetDatum(user_id);
		values[1] = Int64GetDatum(amount);
		values[2] = PointerGetDatum(action);
		values[3] = JsonbPGetDatum(metadata);
		values[4] = IntervalPGetDatum(ttl);
		values[5] = PointerGetDatum(key);
		if (key == NULL)
			nulls[5] = 'n';
		values[8] = Int64GetDatum(available);
		values[9] = TimestampTzGetDatum(credits_now());
		if (credits_exec(CQ_HOLD_INSERT, values, nulls, false, 0) != 1)
			elog(ERROR, "credits: hold insert returned no row");
		hold_id = credits_get_int64(0, 1);
		credits_hold_event(user_id, "hold.create", hold_id);
		if (key != NULL)
		{
			memset(&r, 0, sizeof(r));
			r.hold_id = hold_id;
			r.has_available = true;
			r.available = available;
			credits_key_record(user_id, key, &b, &r);
		}
	}
	credits_finish();

	InitMaterializedSRF(fcinfo, rsinfo != NULL && rsinfo->expectedDesc != NULL ?
						MAT_SRF_USE_EXPECTED_DESC : 0);
	result[0] = Int64GetDatum(hold_id);
	result[1] = Int64GetDatum(amount);
	result[2] = Int64GetDatum(available);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, result, result_nulls);
	return (Datum) 0;
}

/*
 * credits.credit_capture(hold_id, amount, metadata, idempotency_key): spend
 * amount (default: the held amount) and close the hold.  Less than the hold
 * releases the rest; more needs the difference to be available.  Returns
 * the ledger row, like credit_deduct.  A retry with the same key returns
 * the original row.
 */
Datum
credit_capture(PG_FUNCTION_ARGS)
{
	int64		hold_id = credits_arg_id(fcinfo, 0, "hold_id");
	bool		amount_given = !PG_ARGISNULL(1);
	int64		amount = amount_given ? credits_arg_amount(fcinfo, 1, "amount") : 0;
	Jsonb	   *metadata = credits_arg_metadata(fcinfo, 2);
	text	   *key = credits_arg_idempotency_key(fcinfo, 3);
	CreditsAccount acct;
	HoldRow		h;
	CreditsTx	tx;
	CreditsKeyBinding b;
	CreditsKeyResult r;
	int64		spent;

	credits_connect();
	lock_hold(hold_id, metadata, &acct, &h);

	if (!amount_given)
		amount = h.amount;

	/* A retried capture returns the original result, whatever the hold's state. */
	if (key != NULL)
	{
		memset(&b, 0, sizeof(b));
		b.operation = "capture";
		b.has_amount = true;
		b.amount = amount;
		b.hold_id = hold_id;
		if (credits_key_lookup(h.user_id, key, &b, &r))
		{
			credits_key_tx(&r, &tx);
			goto done;
		}
	}
	check_open(hold_id, &h);

	credits_settle(h.user_id, &acct);
	if (amount > h.amount && amount - h.amount > acct.balance - acct.held)
		credits_insufficient(amount - h.amount, Max(acct.balance - acct.held, 0));

	/* Spend the hold's reservation first, give the rest back to the grants. */
	spent = credits_unreserve(h.grant_ids, h.grant_amounts, amount);
	credits_hold_account(h.user_id, -h.amount, -spent, &acct);
	(void) credits_settle_grants(h.user_id, &acct);
	credits_post(h.user_id, -amount, credits_spend(h.user_id, amount, amount - spent),
				 h.action, h.capture_metadata, key, &tx);
	close_hold(hold_id, "captured", amount, tx.tx_id, key);
	credits_hold_event(h.user_id, "hold.capture", hold_id);
	if (key != NULL)
	{
		credits_key_result_tx(&r, &tx);
		credits_key_record(h.user_id, key, &b, &r);
	}
done:
	credits_finish();

	credits_return_tx(fcinfo, &tx);
	return (Datum) 0;
}

/*
 * credits.credit_release(hold_id, idempotency_key): close an open hold
 * without spending.  Returns the available balance after it; a retry with
 * the same key returns the original result.
 */
Datum
credit_release(PG_FUNCTION_ARGS)
{
	int64		hold_id = credits_arg_id(fcinfo, 0, "hold_id");
	text	   *key = credits_arg_idempotency_key(fcinfo, 1);
	CreditsAccount acct;
	HoldRow		h;
	CreditsKeyBinding b;
	CreditsKeyResult r;
	int64		available;

	credits_connect();
	lock_hold(hold_id, (Jsonb *) DatumGetPointer(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))),
			  &acct, &h);
	if (key != NULL)
	{
		memset(&b, 0, sizeof(b));
		b.operation = "release";
		b.hold_id = hold_id;
		if (credits_key_lookup(h.user_id, key, &b, &r))
		{
			available = r.available;
			goto done;
		}
	}
	check_open(hold_id, &h);
	credits_settle(h.user_id, &acct);
	(void) credits_unreserve(h.grant_ids, h.grant_amounts, 0);
	credits_hold_account(h.user_id, -h.amount, 0, &acct);
	close_hold(hold_id, "released", 0, 0, NULL);
	credits_hold_event(h.user_id, "hold.release", hold_id);
	(void) credits_settle_grants(h.user_id, &acct);
	available = acct.balance - acct.held;
	if (key != NULL)
	{
		memset(&r, 0, sizeof(r));
		r.has_available = true;
		r.available = available;
		credits_key_record(h.user_id, key, &b, &r);
	}
done:
	credits_finish();

	PG_RETURN_INT64(available);
}

/*
 * credits.credit_available(user_id): balance minus unexpired holds and
 * minus credit of expired grants not yet posted; NULL if no account.
 */
Datum
credit_available(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	Datum		values[2] = {PointerGetDatum(user_id), TimestampTzGetDatum(credits_now())};
	bool		found;
	int64		available = 0;

	credits_connect();
	found = credits_exec(CQ_AVAILABLE, values, NULL, true, 0) == 1;
	if (found)
		available = credits_get_int64(0, 1) - credits_get_int64(0, 2) -
			credits_get_int64(0, 3);
	credits_finish();

	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_INT64(available);
}

/*
 * credits.credit_expire_holds(): close every open hold past its expiry, in
 * the caller's transaction (jobs.c: accounts locked by others are skipped,
 * one account's failure is reported and skipped).  Returns the number of
 * holds closed.  CALL credits.run_jobs() does the same in chunks that
 * commit separately.
 */
Datum
credit_expire_holds(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32((int32) credits_job_all(CREDITS_JOB_EXPIRE_HOLDS));
}
