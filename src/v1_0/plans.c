/*-------------------------------------------------------------------------
 *
 * plans.c
 *		Plans, subscriptions and monthly allowances: credit_subscribe and
 *		credit_renew.
 *
 * A subscription's periods are anchor + k * period (k = 0, 1, ...), with
 * the anchor set when the plan starts, so monthly periods do not drift.
 * Each period's allowance is a grant (source 'plan') that expires at the
 * period's end, or at the subscription's end if sooner.  Renewing a
 * subscription (at or after its renews_at):
 *
 *	- if it has ended, moves it to the free plan, with periods anchored at
 *	  the end;
 *	- closes the previous period's allowance grant, posting its unspent
 *	  credit as expired (credit reserved by open holds stays reserved);
 *	- for a rollover plan, carries up to rollover_cap of that expired
 *	  credit into the new allowance; a reset plan carries nothing;
 *	- grants the allowance of the period that contains the renewal time.
 *	  Periods missed entirely (credit_renew not run for a whole period) are
 *	  not granted after the fact.
 *
 * Exactly once: credits.allowances has one row per (user, plan, period
 * start), inserted with ON CONFLICT DO NOTHING before anything is granted.
 * credit_renew first locks every due subscription row (SELECT ... FOR
 * UPDATE, in user_id order); a second run at the same time waits for those
 * locks and then, under READ COMMITTED, re-checks each row and skips the
 * ones the first run renewed.  Nothing errors; the unique key is the
 * backstop.
 *
 * Locking order: subscription rows, then account rows, both in user_id
 * order; credit_subscribe locks one subscription row, then its account.
 * Deductions lock only account rows, so none of these can deadlock.
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "funcapi.h"

PG_FUNCTION_INFO_V1(credit_subscribe);
PG_FUNCTION_INFO_V1(credit_renew);

/* A plan's settings in force at some time. */
typedef struct PlanConfig
{
	int64		allowance;
	Interval   *period;
	bool		rollover;
	bool		capped;
	int64		cap;
} PlanConfig;

/* What a renewal did. */
typedef struct Renewal
{
	bool		renewed;		/* an allowance row was inserted */
	int64		granted;		/* credits granted (allowance + carried) */
	TimestampTz period_start;
	TimestampTz period_end;
	bool		has_period;
} Renewal;

/* Raise CR006 for plan. */
static void
unknown_plan(const char *plan)
{
	ereport(ERROR,
			errcode(ERRCODE_CREDITS_UNKNOWN_PLAN),
			errmsg("unknown plan"),
			errdetail("No plan named \"%s\" is in credits.plans.", plan),
			errhint("Add the plan to credits.plans."));
}

/* Read plan's settings in force at time at; false if none.  Connected. */
static bool
plan_config(text *plan, TimestampTz at, PlanConfig *cfg)
{
	Datum		values[2] = {PointerGetDatum(plan), TimestampTzGetDatum(at)};
	bool		isnull;
	Datum		cap;

	if (credits_exec(CQ_PLAN, values, NULL, false, 0) != 1)
		return false;
	cfg->allowance = credits_get_int64(0, 1);
	cfg->period = DatumGetIntervalP(credits_get(0, 2, &isnull));
	cfg->rollover = strcmp(TextDatumGetCString(credits_get(0, 3, &isnull)), "rollover") == 0;
	cap = credits_get(0, 4, &cfg->capped);
	cfg->capped = !cfg->capped;
	cfg->cap = cfg->capped ? DatumGetInt64(cap) : 0;
	return true;
}

/*
 * Renew user_id's subscription as of time t (see the file header).  Caller
 * holds the subscription row lock and is connected.
 */
static void
renew_one(text *user_id, TimestampTz t, Renewal *r)
{
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	text	   *plan;
	bool		has_end;
	TimestampTz ends_at;
	TimestampTz anchor;
	int64		cycle;
	bool		has_prev;
	int64		prev_grant = 0;
	bool		lapsed = false;
	PlanConfig	cfg;
	int64		k;
	int64		carried = 0;
	int64		amount;
	int64		grant_id = 0;
	TimestampTz expires_at;
	Datum		d;

	memset(r, 0, sizeof(Renewal));

	values[0] = PointerGetDatum(user_id);
	if (credits_exec(CQ_SUB_LOCK, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: locked subscription vanished");
	plan = DatumGetTextPP(credits_get(0, 1, &isnull));
	d = credits_get(0, 2, &isnull);
	has_end = !isnull;
	ends_at = has_end ? DatumGetTimestampTz(d) : 0;
	anchor = DatumGetTimestampTz(credits_get(0, 3, &isnull));
	cycle = credits_get_int64(0, 4);
	d = credits_get(0, 5, &isnull);
	has_prev = !isnull;
	if (has_prev)
		prev_grant = DatumGetInt64(d);

	if (has_end && ends_at <= t && strcmp(text_to_cstring(plan), "free") != 0)
	{
		lapsed = true;
		plan = cstring_to_text("free");
		anchor = ends_at;
		has_end = false;
		cycle = -1;
	}
	if (!plan_config(plan, t, &cfg))
		unknown_plan(text_to_cstring(plan));

	/* The period containing t. */
	values[0] = TimestampTzGetDatum(anchor);
	values[1] = IntervalPGetDatum(cfg.period);
	values[2] = Int64GetDatum(Max(cycle, 0));
	values[3] = TimestampTzGetDatum(t);
	if (credits_exec(CQ_PERIOD, values, NULL, false, 0) != 1)
		return;					/* t is before the anchor */
	k = credits_get_int64(0, 1);
	r->period_start = DatumGetTimestampTz(credits_get(0, 2, &isnull));
	r->period_end = DatumGetTimestampTz(credits_get(0, 3, &isnull));
	r->has_period = true;
	if (k <= cycle)
		return;					/* already granted */

	values[0] = PointerGetDatum(user_id);
	values[1] = PointerGetDatum(plan);
	values[2] = TimestampTzGetDatum(r->period_start);
	values[3] = TimestampTzGetDatum(r->period_end);
	values[4] = Int64GetDatum(cfg.allowance);
	r->renewed = credits_exec(CQ_ALLOWANCE_INSERT, values, NULL, false, 0) == 1;
	if (r->renewed)
	{
		CreditsAccount acct;
		Jsonb	   *metadata;
		CreditsTx	tx;

		credits_lock_or_open(user_id, &acct);
		if (has_prev)
		{
			int64		expired = credits_close_grant(user_id, prev_grant, &acct);

			if (!lapsed && cfg.rollover)
				carried = cfg.capped ? Min(expired, cfg.cap) : expired;
		}
		if (pg_add_s64_overflow(cfg.allowance, carried, &amount))
			ereport(ERROR,
					errcode(ERRCODE_CREDITS_BALANCE_OVERFLOW),
					errmsg("amount would overflow the balance"),
					errdetail("The allowance plus the carried credit exceeds the largest bigint."));

		values[3] = Int64GetDatum(carried);
		if (credits_exec(CQ_ALLOWANCE_SET, values, NULL, false, 0) != 1)
			elog(ERROR, "credits: allowance row vanished");
		metadata = DatumGetJsonbP(credits_get(0, 1, &isnull));

		expires_at = has_end ? Min(r->period_end, ends_at) : r->period_end;
		if (amount > 0 && expires_at > GetCurrentTransactionStartTimestamp())
		{
			grant_id = credits_grant_post(user_id, amount, cstring_to_text("plan"),
										  true, expires_at, metadata, NULL, &tx);
			r->granted = amount;
			values[3] = Int64GetDatum(grant_id);
			values[4] = Int64GetDatum(tx.tx_id);
			(void) credits_exec(CQ_ALLOWANCE_GRANT, values, NULL, false, 0);
		}
	}

	values[0] = PointerGetDatum(user_id);
	values[1] = PointerGetDatum(plan);
	values[2] = TimestampTzGetDatum(ends_at);
	nulls[2] = has_end ? ' ' : 'n';
	values[3] = TimestampTzGetDatum(anchor);
	values[4] = Int64GetDatum(k);
	values[5] = TimestampTzGetDatum(r->period_start);
	values[6] = TimestampTzGetDatum(r->period_end);
	values[7] = Int64GetDatum(grant_id);
	nulls[7] = grant_id != 0 ? ' ' : 'n';
	if (credits_exec(CQ_SUB_ADVANCE, values, nulls, false, 0) != 1)
		elog(ERROR, "credits: locked subscription vanished");
}

/*
 * credits.credit_subscribe(user_id, plan, ends_at): put user_id on plan
 * until ends_at (NULL: no end), opening the account if needed.  A new plan
 * starts a period now and grants its allowance at once; the same plan
 * again only changes ends_at.  Returns the current period, the credits
 * granted by this call and the balance.
 */
Datum
credit_subscribe(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	text	   *plan = credits_arg_required_text(fcinfo, 1, "plan");
	TimestampTz ends_at = 0;
	bool		has_end = credits_arg_future(fcinfo, 2, "ends_at", &ends_at);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PlanConfig	cfg;
	Renewal		r;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	Datum		result[4];
	bool		result_nulls[4] = {false, false, false, false};

	credits_connect();
	if (!plan_config(plan, GetCurrentTransactionStartTimestamp(), &cfg))
		unknown_plan(text_to_cstring(plan));

	values[0] = PointerGetDatum(user_id);
	values[1] = PointerGetDatum(plan);
	values[2] = TimestampTzGetDatum(ends_at);
	nulls[2] = has_end ? ' ' : 'n';
	if (credits_exec(CQ_SUB_INSERT, values, nulls, false, 0) == 0)
	{
		bool		isnull;
		char	   *current;

		if (credits_exec(CQ_SUB_LOCK, values, NULL, false, 0) != 1)
			elog(ERROR, "credits: subscription vanished");
		current = TextDatumGetCString(credits_get(0, 1, &isnull));
		if (strcmp(current, text_to_cstring(plan)) == 0)
		{
			values[1] = values[2];
			nulls[1] = nulls[2];
			(void) credits_exec(CQ_SUB_SET_END, values, nulls, false, 0);
		}
		else
			(void) credits_exec(CQ_SUB_SET_PLAN, values, nulls, false, 0);
	}
	renew_one(user_id, GetCurrentTransactionStartTimestamp(), &r);

	InitMaterializedSRF(fcinfo, rsinfo != NULL && rsinfo->expectedDesc != NULL ?
						MAT_SRF_USE_EXPECTED_DESC : 0);
	result[0] = TimestampTzGetDatum(r.period_start);
	result[1] = TimestampTzGetDatum(r.period_end);
	result_nulls[0] = result_nulls[1] = !r.has_period;
	result[2] = Int64GetDatum(r.granted);
	if (credits_exec(CQ_BALANCE, values, NULL, false, 0) == 1)
		result[3] = Int64GetDatum(credits_get_int64(0, 1));
	else
		result_nulls[3] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, result, result_nulls);
	credits_finish();

	return (Datum) 0;
}

/*
 * credits.credit_renew(now): renew every subscription due by now (default
 * now()).  Returns the number of allowances granted.  Run it from a
 * scheduler (pg_cron) at least once per period; running it twice, or
 * twice at once, grants nothing more.
 */
Datum
credit_renew(PG_FUNCTION_ARGS)
{
	TimestampTz t;
	Datum		values[1];
	SPITupleTable *tt;
	uint64		n;
	int			renewed = 0;

	if (PG_ARGISNULL(0))
		credits_invalid_parameter("now", "must not be null", NULL);
	t = PG_GETARG_TIMESTAMPTZ(0);
	if (TIMESTAMP_NOT_FINITE(t))
		credits_invalid_parameter("now", "must be finite", NULL);

	credits_connect();
	values[0] = TimestampTzGetDatum(t);
	n = credits_exec(CQ_SUBS_DUE, values, NULL, false, 0);
	tt = SPI_tuptable;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		text	   *user_id = DatumGetTextPP(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		Renewal		r;

		renew_one(user_id, t, &r);
		if (r.renewed)
			renewed++;
	}
	credits_finish();

	PG_RETURN_INT32(renewed);
}
