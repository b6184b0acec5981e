/*-------------------------------------------------------------------------
 *
 * billing_args.c
 *		Argument checks of the billing functions (see validate.c for the
 *		core's).
 *
 * Like validate.c: the functions are not STRICT, every check runs before
 * the call's first write, and a bad value is CR010 with the parameter's
 * name in the message.
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

/* The longest ttl a hold may have */
#define CREDITS_MAX_TTL "1000 years"

/* A positive bigint id (hold_id): checked like an amount. */
int64
credits_arg_id(FunctionCallInfo fcinfo, int argno, const char *name)
{
	return credits_arg_amount(fcinfo, argno, name);
}

/*
 * A hold's ttl: not null, no negative field, more than zero and at most
 * CREDITS_MAX_TTL (so that now() + ttl cannot leave the timestamp range).
 */
Interval *
credits_arg_ttl(FunctionCallInfo fcinfo, int argno)
{
	Interval   *ttl;
	Interval   *zero;
	Datum		max;

	if (PG_ARGISNULL(argno))
		credits_invalid_parameter("ttl", "must not be null", NULL);
	ttl = PG_GETARG_INTERVAL_P(argno);
	zero = palloc0(sizeof(Interval));
	max = DirectFunctionCall3(interval_in, CStringGetDatum(CREDITS_MAX_TTL),
							  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	if (ttl->month < 0 || ttl->day < 0 || ttl->time < 0 ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(ttl),
										  IntervalPGetDatum(zero))) <= 0)
		credits_invalid_parameter("ttl", "must be positive",
								  psprintf("The ttl given was %s.",
										   DatumGetCString(DirectFunctionCall1(interval_out,
																			   IntervalPGetDatum(ttl)))));
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(ttl), max)) > 0)
		credits_invalid_parameter("ttl", "too long",
								  "A hold may last at most " CREDITS_MAX_TTL ".");
	return ttl;
}

/* A quantity to price: a finite number greater than zero. */
Numeric
credits_arg_quantity(FunctionCallInfo fcinfo, int argno)
{
	Numeric		q;

	if (PG_ARGISNULL(argno))
		credits_invalid_parameter("quantity", "must not be null", NULL);
	q = PG_GETARG_NUMERIC(argno);
	if (numeric_is_nan(q) || numeric_is_inf(q))
		credits_invalid_parameter("quantity", "must be a finite number", NULL);
	if (DatumGetBool(DirectFunctionCall2(numeric_le, NumericGetDatum(q),
										 NumericGetDatum(int64_to_numeric(0)))))
		credits_invalid_parameter("quantity", "must be positive",
								  psprintf("The quantity given was %s.",
										   DatumGetCString(DirectFunctionCall1(numeric_out,
																			   NumericGetDatum(q)))));
	return q;
}

/*
 * An optional finite time (a keyed call's expires_at): returns false for
 * NULL.  Whether it is in the future is checked after the key lookup, by
 * credits_check_future(), so that a retry after that moment still returns
 * the original result.
 */
bool
credits_arg_time(FunctionCallInfo fcinfo, int argno, const char *name,
				 TimestampTz *result)
{
	TimestampTz t;

	if (PG_ARGISNULL(argno))
		return false;
	t = PG_GETARG_TIMESTAMPTZ(argno);
	if (TIMESTAMP_NOT_FINITE(t))
		credits_invalid_parameter(name, "must be finite",
								  "Pass NULL for no end.");
	*result = t;
	return true;
}

/* Raise CR010 unless t (from credits_arg_time) is later than the clock. */
void
credits_check_future(const char *name, TimestampTz t)
{
	if (t <= credits_now())
		credits_invalid_parameter(name, "must be in the future",
								  psprintf("The %s given was %s.", name,
										   timestamptz_to_str(t)));
}
