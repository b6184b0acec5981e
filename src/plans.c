/*-------------------------------------------------------------------------
 *
 * plans.c
 *		Plans, subscriptions and allowances: credit_subscribe, and the
 *		renewal of one subscription (run by the renew job, jobs.c).
 *
 * Time: every decision uses credits_now() (credits.c), never a time from
 * the caller.  A subscription's periods are anchor + k * period (k = 0, 1,
 * ...), computed in UTC whatever the session's TimeZone (the anchor, read
 * as a UTC timestamp, plus the interval k * period), and the period that
 * contains a time t is found in O(1): k is estimated from the period's
 * average length and corrected by a few steps.  Monthly periods do not
 * drift: the k-th period is always counted from the anchor.
 *
 * The anchor is set when the user first subscribes, and when a subscription
 * lapses at ends_at (periods of free then start there).  Changing plans
 * keeps it.  Each period's allowance is a grant (source 'plan') that
 * expires at the period's end, or at the subscription's end if sooner.
 *
 * Plan change (credit_subscribe to another plan; shared semantics S2):
 *	- the current allowance grant is closed: its expires_at becomes now and
 *	  its unspent, unreserved remainder is posted as an 'expire' ledger row
 *	  (credit reserved by open holds stays reserved, and expires when the
 *	  hold gives it back);
 *	- the new plan's allowance for the period containing now is granted,
 *	  unless credits.allowances already has a row for (user, new plan, that
 *	  period's start): switching back to a plan within a period it was
 *	  granted for grants nothing.
 * So the live plan-allowance credit (remaining + reserved of unexpired
 * 'plan' grants) never exceeds the current plan's allowance plus its
 * rollover cap (test/sql/plan_switch.sql).
 *
 * Renewing a subscription (at or after its renews_at):
 *	- if it has ended, moves it to the free plan, with periods anchored at
 *	  the end and no end (a free subscription with an end too);
 *	- if the plan's period changed since the last period was granted (a new
 *	  credits.plans row), periods continue from the end of that period;
 *	- closes the previous period's allowance grant;
 *	- for a rollover plan, carries up to rollover_cap of that expired
 *	  credit into the new allowance; a reset plan carries nothing;
 *	- grants the allowance of the period that contains now.  Periods missed
 *	  entirely (no renewal run for a whole period) are not granted after the
 *	  fact.
 *
 * credit_subscribe renews a due subscription first (so its result does not
 * depend on whether the job ran), and the same plan with a new ends_at
 * moves the current allowance's expiry to the period's end or the new
 * ends_at, whichever is sooner, unless it has already expired.
 *
 * Exactly once: credits.allowances has one row per (user, plan, period
 * start), inserted with ON CONFLICT DO NOTHING before anything is granted,
 * and subscriptions.cycle records the last period granted.
 *
 * Locking (the order every writer follows, see jobs.c): the account row
 * first, then the account's subscription row (and its grants and holds).
 * credit_subscribe locks (or opens) the account, then the subscription;
 * the renew job takes the account with SKIP LOCKED, then the subscription
 * row, and re-reads renews_at under the locks.  An application transaction
 * that has written to the account and then subscribes therefore never
 * waits for the job while holding what the job needs
 * (test/specs/plan_job_lock_order.spec).
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include <math.h>

#include "common/int.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(credit_subscribe);
PG_FUNCTION_INFO_V1(credit_renew);

/* Average length of a month, for the first estimate of k only */
#define CREDITS_AVG_MONTH_USECS	((double) 30.436875 * USECS_PER_DAY)

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
	if (cfg->period->month < 0 || cfg->period->day < 0 || cfg->period->time < 0)
		ereport(ERROR,
				errcode(ERRCODE_CREDITS_INVALID_PARAMETER),
				errmsg("invalid plan period"),
				errdetail("The period of plan \"%s\" has a negative field.",
						  text_to_cstring(plan)),
				errhint("Insert a row for the plan with a period like '1 month' or '7 days'."));
	return true;
}

/*
 * anchor + k * period, in UTC: the anchor is read as a timestamp without
 * time zone (its UTC wall clock), so month and day arithmetic never depends
 * on the session's TimeZone.  Raises 22008 if out of range.
 */
static TimestampTz
period_start(TimestampTz anchor, const Interval *period, int64 k)
{
	Interval	step;
	int64		months;
	int64		days;

	if (pg_mul_s64_overflow((int64) period->month, k, &months) ||
		months > PG_INT32_MAX ||
		pg_mul_s64_overflow((int64) period->day, k, &days) || days > PG_INT32_MAX ||
		pg_mul_s64_overflow(period->time, k, &step.time))
		ereport(ERROR,
				errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				errmsg("plan period out of range"));
	step.month = (int32) months;
	step.day = (int32) days;
	return DatumGetTimestamp(DirectFunctionCall2(timestamp_pl_interval,
												 TimestampGetDatum(anchor),
												 IntervalPGetDatum(&step)));
}

/*
 * The period of (anchor, period) that contains t: sets *k, *start, *end and
 * returns true, or false if t is before the anchor.  O(1): k is estimated
 * from the period's average length, then corrected (periods have no
 * negative field, so starts grow strictly with k).
 */
static bool
period_containing(TimestampTz anchor, const Interval *period, TimestampTz t,
				  int64 *k, TimestampTz *start, TimestampTz *end)
{
	double		avg = period->month * CREDITS_AVG_MONTH_USECS +
		(double) period->day * USECS_PER_DAY + (double) period->time;
	int64		n;

	if (t < anchor)
		return false;
	if (!(avg > 0))
		elog(ERROR, "credits: plan period has no length");
	n = (int64) floor((double) (t - anchor) / avg);
	for (int step = 0;; step++)
	{
		TimestampTz s;

		if (step > 64)
			elog(ERROR, "credits: period search did not converge");
		s = period_start(anchor, period, n);
		if (s > t)
		{
			n--;
			continue;
		}
		*end = period_start(anchor, period, n + 1);
		if (*end <= t)
		{
			n++;
			continue;
		}
		*start = s;
		*k = n;
		return true;
	}
}

/*
 * Renew user_id's subscription as of now (see the file header).  Caller
 * holds the account row lock and the subscription row lock, and is
 * connected.
 */
static void
renew_one(text *user_id, TimestampTz now, CreditsAccount *acct, Renewal *r)
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
	bool		has_pend;
	TimestampTz pend = 0;
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
	d = credits_get(0, 7, &isnull);
	has_pend = !isnull;
	if (has_pend)
		pend = DatumGetTimestampTz(d);

	/* past ends_at: free, from the end, with no end (free too) */
	if (has_end && ends_at <= now)
	{
		lapsed = true;
		plan = cstring_to_text("free");
		anchor = ends_at;
		has_end = false;
		cycle = -1;
	}
	if (!plan_config(plan, now, &cfg))
		unknown_plan(text_to_cstring(plan));

	/*
	 * The plan's period changed since the last period was granted (a new
	 * credits.plans row): periods continue from the end of that period.
	 */
	if (cycle >= 0 && has_pend && period_start(anchor, cfg.period, cycle + 1) != pend)
	{
		anchor = pend;
		cycle = -1;
	}

	if (!period_containing(anchor, cfg.period, now, &k, &r->period_start,
						   &r->period_end))
		return;					/* now is before the anchor */
	r->has_period = true;
	if (k <= cycle)
		return;					/* already granted */

	values[0] = PointerGetDatum(user_id);
	values[1] = PointerGetDatum(plan);
	values[2] = TimestampTzGetDatum(r->period_start);
	values[3] = TimestampTzGetDatum(r->period_end);
	values[4] = Int64GetDatum(cfg.allowance);
	r->renewed = credits_exec(CQ_ALLOWANCE_INSERT, values, NULL, false, 0) == 1;
	if (has_prev)
	{
		int64		expired = credits_close_grant(user_id, prev_grant, acct);

		if (r->renewed && !lapsed && cfg.rollover)
			carried = cfg.capped ? Min(expired, cfg.cap) : expired;
	}
	if (r->renewed)
	{
		Jsonb	   *metadata;
		CreditsTx	tx;

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
		if (amount > 0 && expires_at > now)
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
 * Renew user_id's subscription if it is due by now (the renew job, jobs.c).
 * Returns 1 if an allowance was granted, else 0.  Caller holds the account
 * row lock and is connected.
 */
int
credits_renew_account(text *user_id, TimestampTz now)
{
	Datum		values[1] = {PointerGetDatum(user_id)};
	CreditsAccount acct;
	bool		isnull;
	Renewal		r;

	/* Re-read under the locks: another run may have renewed it. */
	if (credits_exec(CQ_SUB_LOCK, values, NULL, false, 0) != 1)
		return 0;
	if (DatumGetTimestampTz(credits_get(0, 6, &isnull)) > now)
		return 0;
	if (!credits_lock_account(user_id, &acct))
		elog(ERROR, "credits: locked account row vanished");
	renew_one(user_id, now, &acct, &r);
	return r.renewed ? 1 : 0;
}

/* The binding of a keyed credit_subscribe (the shared key namespace, S4). */
static void
subscribe_binding(CreditsKeyBinding *b, text *plan, bool has_end, TimestampTz ends_at)
{
	memset(b, 0, sizeof(*b));
	b->operation = "subscribe";
	b->action = plan;
	b->has_expires_at = has_end;
	b->expires_at = ends_at;
}

/*
 * Look up a credit_subscribe key (account locked) in the user's key
 * namespace (credits.idempotency_keys): true with the original result in
 * result/result_nulls if it was used by a subscribe with the same plan and
 * ends_at; CR003 if it was used by anything else.  The result itself is
 * kept in credits.subscription_keys.
 */
static bool
find_subscribe_key(text *user_id, text *key, text *plan, bool has_end,
				   TimestampTz ends_at, Datum *result, bool *result_nulls)
{
	Datum		values[2] = {PointerGetDatum(user_id), PointerGetDatum(key)};
	CreditsKeyBinding b;
	CreditsKeyResult kr;

	subscribe_binding(&b, plan, has_end, ends_at);
	if (!credits_key_lookup(user_id, key, &b, &kr))
		return false;
	if (credits_exec(CQ_SUB_KEY_FIND, values, NULL, false, 0) != 1)
		elog(ERROR, "credits: result of subscribe key not found");
	for (int col = 0; col < 4; col++)
		result[col] = credits_get(0, col + 3, &result_nulls[col]);
	return true;
}

/*
 * credits.credit_subscribe(user_id, plan, ends_at, idempotency_key): put
 * user_id on plan until ends_at (NULL: no end), opening the account if
 * needed.  Another plan closes the current allowance and grants the new
 * plan's (see the file header); the same plan again only changes ends_at.
 * Returns the current period, the credits granted by this call and the
 * balance.  A retry with the same key returns the original result, even
 * after ends_at has passed.
 */
Datum
credit_subscribe(PG_FUNCTION_ARGS)
{
	text	   *user_id = credits_arg_user_id(fcinfo, 0);
	text	   *plan = credits_arg_required_text(fcinfo, 1, "plan");
	bool		has_end = !PG_ARGISNULL(2);
	TimestampTz ends_at = has_end ? PG_GETARG_TIMESTAMPTZ(2) : 0;
	text	   *key = PG_NARGS() > 3 ? credits_arg_idempotency_key(fcinfo, 3) : NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = credits_now();
	CreditsAccount acct;
	PlanConfig	cfg;
	Renewal		r;
	int64		pre_granted = 0;	/* by a due renewal done first, if kept */
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum		result[4];
	bool		result_nulls[4] = {false, false, false, false};

	if (has_end && TIMESTAMP_NOT_FINITE(ends_at))
		credits_invalid_parameter("ends_at", "must be finite", "Pass NULL for no end.");

	credits_connect();
	/* Lock order: the account row first (file header). */
	credits_lock_or_open(user_id, &acct);
	if (key != NULL && find_subscribe_key(user_id, key, plan, has_end, ends_at,
										  result, result_nulls))
		goto done;

	/* Checks that depend on time come after the key lookup. */
	if (has_end && ends_at <= now)
		credits_invalid_parameter("ends_at", "must be in the future",
								  psprintf("The ends_at given was %s.",
										   timestamptz_to_str(ends_at)));
	if (!plan_config(plan, now, &cfg))
		unknown_plan(text_to_cstring(plan));

	values[0] = PointerGetDatum(user_id);
	values[1] = PointerGetDatum(plan);
	values[2] = TimestampTzGetDatum(ends_at);
	nulls[2] = has_end ? ' ' : 'n';
	values[3] = TimestampTzGetDatum(now);
	if (credits_exec(CQ_SUB_INSERT, values, nulls, false, 0) == 0)
	{
		bool		isnull;
		char	   *current;
		Datum		grant;

		if (credits_exec(CQ_SUB_LOCK, values, NULL, false, 0) != 1)
			elog(ERROR, "credits: subscription vanished");
		/*
		 * A renewal the job has not run yet (a lapse at ends_at, a new
		 * period) is done first, so the result does not depend on whether
		 * the job ran.
		 */
		if (DatumGetTimestampTz(credits_get(0, 6, &isnull)) <= now)
		{
			renew_one(user_id, now, &acct, &r);
			pre_granted = r.granted;
			if (credits_exec(CQ_SUB_LOCK, values, NULL, false, 0) != 1)
				elog(ERROR, "credits: subscription vanished");
		}
		current = TextDatumGetCString(credits_get(0, 1, &isnull));
		grant = credits_get(0, 5, &isnull);
		if (strcmp(current, text_to_cstring(plan)) == 0)
		{
			values[1] = values[2];
			nulls[1] = nulls[2];
			values[2] = TimestampTzGetDatum(now);
			nulls[2] = ' ';
			(void) credits_exec(CQ_SUB_SET_END, values, nulls, false, 0);
		}
		else
		{
			/* S2: close the previous plan's allowance, then switch. */
			pre_granted = 0;	/* closed here: not granted by this call */
			if (!isnull)
				(void) credits_close_grant(user_id, DatumGetInt64(grant), &acct);
			values[1] = PointerGetDatum(plan);
			nulls[1] = ' ';
			(void) credits_exec(CQ_SUB_SET_PLAN, values, nulls, false, 0);
		}
	}
	renew_one(user_id, now, &acct, &r);
	r.granted += pre_granted;

	result[0] = TimestampTzGetDatum(r.period_start);
	result[1] = TimestampTzGetDatum(r.period_end);
	result_nulls[0] = result_nulls[1] = !r.has_period;
	result[2] = Int64GetDatum(r.granted);
	if (credits_exec(CQ_BALANCE, values, NULL, false, 0) == 1)
		result[3] = Int64GetDatum(credits_get_int64(0, 1));
	else
		result_nulls[3] = true;

	if (key != NULL)
	{
		values[0] = PointerGetDatum(user_id);
		values[1] = PointerGetDatum(key);
		values[2] = PointerGetDatum(plan);
		nulls[0] = nulls[1] = nulls[2] = ' ';	/* nulls[2] held ends_at's */
		values[3] = TimestampTzGetDatum(ends_at);
		nulls[3] = has_end ? ' ' : 'n';
		for (int col = 0; col < 4; col++)
		{
			values[4 + col] = result[col];
			nulls[4 + col] = result_nulls[col] ? 'n' : ' ';
		}
		(void) credits_exec(CQ_SUB_KEY_INSERT, values, nulls, false, 0);
		{
			CreditsKeyBinding b;
			CreditsKeyResult kr;

			subscribe_binding(&b, plan, has_end, ends_at);
			memset(&kr, 0, sizeof(kr));
			kr.has_balance = !result_nulls[3];
			kr.balance = result_nulls[3] ? 0 : DatumGetInt64(result[3]);
			credits_key_record(user_id, key, &b, &kr);
		}
	}
done:
	InitMaterializedSRF(fcinfo, rsinfo != NULL && rsinfo->expectedDesc != NULL ?
						MAT_SRF_USE_EXPECTED_DESC : 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, result, result_nulls);
	credits_finish();

	return (Datum) 0;
}

/*
 * credits.credit_renew(): renew every subscription due by credits_now(),
 * in the caller's transaction (jobs.c: accounts locked by others are
 * skipped, one account's failure is reported and skipped).  Returns the
 * number of allowances granted.  CALL credits.run_jobs() does the same in
 * chunks that commit separately.
 */
Datum
credit_renew(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32((int32) credits_job_all(CREDITS_JOB_RENEW));
}
