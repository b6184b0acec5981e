/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *		Idempotency keys: one namespace per user, bound in columns to the
 *		operation that first used the key.
 *
 * Every keyed function (credit_deduct, credit_add, credit_charge,
 * credit_hold, credit_capture, credit_release, credit_grant and
 * credit_subscribe) records its key in credits.idempotency_keys, primary
 * key (user_id, key), with the binding of the call -- the operation, and
 * whichever of amount, quantity, action (or source, or plan), expires_at
 * and hold_id the operation has -- and its result.  A later call with the
 * same user and key:
 *
 *	- with the same binding returns the recorded result and writes nothing,
 *	  however much time has passed or the balance has changed since;
 *	- with any other binding is CR003 and writes nothing.
 *
 * Metadata is never part of a binding and is never read here.
 * credit_subscribe (plans.c) binds its key here too, and keeps its
 * original result in credits.subscription_keys
 * (test/sql/idempotency_keys.sql).
 *
 * Locking: the caller locks the account row first and only then looks the
 * key up, and records it in the same transaction before releasing the
 * lock (at commit).  Concurrent calls with one key are thus serialised by
 * the row lock, and each later one sees the first one's row (every SPI
 * statement takes a new snapshot under READ COMMITTED), so a key has at
 * most one effect; if the first call aborts, its key row goes with it and
 * the next call performs the operation itself.  The primary key is the
 * backstop (test/specs/idempotent_retry.spec, idempotency_cross.spec).
 *
 * Order inside a keyed call: argument checks that do not depend on time,
 * then the account lock, then the key lookup, and only then anything that
 * depends on the clock or on the account's state (expiry of the hold,
 * expires_at in the future, prices in force, available credit).
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

/* Append b's binding to buf, e.g. credit_deduct(amount 1, action "x"). */
static void
describe(StringInfo buf, const char *operation, bool has_amount, int64 amount,
		 Numeric quantity, const char *action, bool has_expires_at,
		 TimestampTz expires_at, int64 hold_id)
{
	const char *sep = "";

	appendStringInfo(buf, "credit_%s(", operation);
	if (hold_id != 0)
	{
		appendStringInfo(buf, "%shold_id " INT64_FORMAT, sep, hold_id);
		sep = ", ";
	}
	if (has_amount)
	{
		appendStringInfo(buf, "%samount " INT64_FORMAT, sep, amount);
		sep = ", ";
	}
	if (quantity != NULL)
	{
		appendStringInfo(buf, "%squantity %s", sep,
						 DatumGetCString(DirectFunctionCall1(numeric_out,
															 NumericGetDatum(quantity))));
		sep = ", ";
	}
	if (action != NULL)
	{
		appendStringInfo(buf, "%saction \"%s\"", sep, action);
		sep = ", ";
	}
	if (has_expires_at)
		appendStringInfo(buf, "%sexpires_at %s", sep, timestamptz_to_str(expires_at));
	appendStringInfoChar(buf, ')');
}

/*
 * Look key up for user_id.  Returns false if the user has not used it;
 * true with *result filled if it was used with binding *b; raises CR003 if
 * it was used with any other binding.  Caller must hold the account row
 * lock and be connected to SPI.
 */
bool
credits_key_lookup(text *user_id, text *key, const CreditsKeyBinding *b,
				   CreditsKeyResult *result)
{
	Datum		values[2] = {PointerGetDatum(user_id), PointerGetDatum(key)};
	bool		n_amount,
				n_quantity,
				n_action,
				n_expires,
				n_hold,
				isnull;
	char	   *operation;
	int64		amount = 0;
	Numeric		quantity = NULL;
	char	   *action = NULL;
	TimestampTz expires_at = 0;
	int64		hold_id = 0;
	Datum		d;
	bool		same;

	if (credits_exec(CQ_FIND_KEY, values, NULL, false, 0) == 0)
		return false;

	operation = TextDatumGetCString(credits_get(0, 1, &isnull));
	d = credits_get(0, 2, &n_amount);
	if (!n_amount)
		amount = DatumGetInt64(d);
	d = credits_get(0, 3, &n_quantity);
	if (!n_quantity)
		quantity = DatumGetNumeric(d);
	d = credits_get(0, 4, &n_action);
	if (!n_action)
		action = TextDatumGetCString(d);
	d = credits_get(0, 5, &n_expires);
	if (!n_expires)
		expires_at = DatumGetTimestampTz(d);
	d = credits_get(0, 6, &n_hold);
	if (!n_hold)
		hold_id = DatumGetInt64(d);

	same = strcmp(operation, b->operation) == 0 &&
		n_amount == !b->has_amount &&
		(n_amount || amount == b->amount) &&
		n_quantity == (b->quantity == NULL) &&
		(n_quantity || DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													  NumericGetDatum(quantity),
													  NumericGetDatum(b->quantity))) == 0) &&
		n_action == (b->action == NULL) &&
		(n_action || strcmp(action, text_to_cstring(b->action)) == 0) &&
		n_expires == !b->has_expires_at &&
		(n_expires || expires_at == b->expires_at) &&
		(b->hold_id == 0 || (!n_hold && hold_id == b->hold_id));
	if (!same)
	{
		StringInfoData first;
		StringInfoData call;

		initStringInfo(&first);
		initStringInfo(&call);
		/* a hold's hold_id is its result, not part of its binding */
		describe(&first, operation, !n_amount, amount, quantity, action,
				 !n_expires, expires_at,
				 strcmp(operation, "hold") == 0 ? 0 : hold_id);
		describe(&call, b->operation, b->has_amount, b->amount, b->quantity,
				 b->action == NULL ? NULL : text_to_cstring(b->action),
				 b->has_expires_at, b->expires_at, b->hold_id);
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_IDEMPOTENCY_MISMATCH),
				errmsg("idempotency key reused with different parameters"),
				errdetail("The key \"%s\" was first used for %s; this call is %s.",
						  text_to_cstring(key), first.data, call.data),
				errhint("Use a new idempotency key for a different operation."));
	}

	memset(result, 0, sizeof(*result));
	d = credits_get(0, 7, &isnull);
	result->tx_id = isnull ? 0 : DatumGetInt64(d);
	d = credits_get(0, 8, &isnull);
	result->has_balance = !isnull;
	result->balance = isnull ? 0 : DatumGetInt64(d);
	d = credits_get(0, 9, &isnull);
	result->has_available = !isnull;
	result->available = isnull ? 0 : DatumGetInt64(d);
	result->hold_id = hold_id;
	d = credits_get(0, 10, &isnull);
	result->result = isnull ? NULL : DatumGetJsonbP(d);
	result->created_at = DatumGetTimestampTz(credits_get(0, 11, &isnull));
	return true;
}

/*
 * Record that key was used by user_id with binding *b and gave *result.
 * For credit_hold, result->hold_id is the hold placed (b->hold_id is 0).
 * Caller must hold the account row lock, have found the key unused with
 * credits_key_lookup() under that lock, and be connected to SPI.
 */
void
credits_key_record(text *user_id, text *key, const CreditsKeyBinding *b,
				   const CreditsKeyResult *result)
{
	Datum		values[13];
	char		nulls[13];
	int64		hold_id = b->hold_id != 0 ? b->hold_id : result->hold_id;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = PointerGetDatum(user_id);
	values[1] = PointerGetDatum(key);
	values[2] = CStringGetTextDatum(b->operation);
	values[3] = Int64GetDatum(b->amount);
	nulls[3] = b->has_amount ? ' ' : 'n';
	values[4] = NumericGetDatum(b->quantity);
	nulls[4] = b->quantity != NULL ? ' ' : 'n';
	values[5] = PointerGetDatum(b->action);
	nulls[5] = b->action != NULL ? ' ' : 'n';
	values[6] = TimestampTzGetDatum(b->expires_at);
	nulls[6] = b->has_expires_at ? ' ' : 'n';
	values[7] = Int64GetDatum(hold_id);
	nulls[7] = hold_id != 0 ? ' ' : 'n';
	values[8] = Int64GetDatum(result->tx_id);
	nulls[8] = result->tx_id != 0 ? ' ' : 'n';
	values[9] = Int64GetDatum(result->balance);
	nulls[9] = result->has_balance ? ' ' : 'n';
	values[10] = Int64GetDatum(result->available);
	nulls[10] = result->has_available ? ' ' : 'n';
	values[11] = JsonbPGetDatum(result->result);
	nulls[11] = result->result != NULL ? ' ' : 'n';
	values[12] = TimestampTzGetDatum(result->created_at);
	nulls[12] = result->created_at != 0 ? ' ' : 'n';
	if (credits_exec(CQ_KEY_RECORD, values, nulls, false, 0) != 1)
		elog(ERROR, "credits: idempotency key not recorded");
}

/* A binding for a tx-returning call (deduct, add, grant). */
void
credits_key_binding(CreditsKeyBinding *b, const char *operation, int64 amount,
					text *action)
{
	memset(b, 0, sizeof(*b));
	b->operation = operation;
	b->has_amount = true;
	b->amount = amount;
	b->action = action;
}

/* The key result of a call that returned the ledger row *tx. */
void
credits_key_result_tx(CreditsKeyResult *result, const CreditsTx *tx)
{
	memset(result, 0, sizeof(*result));
	result->tx_id = tx->tx_id;
	result->has_balance = true;
	result->balance = tx->balance;
	result->created_at = tx->created_at;
}

/* The ledger row a recorded tx-returning call returned. */
void
credits_key_tx(const CreditsKeyResult *result, CreditsTx *tx)
{
	tx->tx_id = result->tx_id;
	tx->balance = result->balance;
	tx->created_at = result->created_at;
}
