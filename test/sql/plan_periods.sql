-- Plan periods (issue 8, defect 9): anchor + k * period computed in UTC,
-- whatever the session's TimeZone, and found in O(1) (no walk over the
-- elapsed periods).  Time is credits' clock, moved with
-- credits.clock_offset (superuser only).
SET client_min_messages = warning;

-- renew the subscriptions due at t (credits_now() in [t, t + 1s))
CREATE FUNCTION pg_temp.renew_at(t timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	PERFORM set_config('credits.clock_offset', ceil(extract(epoch FROM t - now()))::int::text, true);
	n := credits.credit_renew();
	PERFORM set_config('credits.clock_offset', '0', true);
	RETURN n;
END $$;
-- move u's subscription to anchor a, no period granted yet, due at a
CREATE FUNCTION pg_temp.anchor(u text, a timestamptz) RETURNS void LANGUAGE sql AS $$
UPDATE credits.subscriptions SET anchor = a, cycle = -1, period_start = NULL,
	   period_end = NULL, renews_at = a
 WHERE user_id = u
$$;
CREATE TEMP VIEW periods AS
SELECT user_id, plan, period_start AT TIME ZONE 'UTC' AS period_start_utc,
	   period_end AT TIME ZONE 'UTC' AS period_end_utc, allowance
  FROM credits.allowances WHERE user_id LIKE 'period-%' AND period_start > '2027-01-01'
 ORDER BY user_id, period_start;

-- a monthly plan anchored on 31 January 00:30 UTC (16:30 on the 30th in
-- Los Angeles).  Renewed at 1 March 00:00 UTC, the period is
-- [28 February 00:30, 31 March 00:30) UTC under either TimeZone; computed
-- in Los Angeles time it would start on 1 March 00:30 UTC, after the clock,
-- and nothing would be renewed.
SELECT granted FROM credits.credit_subscribe('period-utc', 'pro');
SELECT granted FROM credits.credit_subscribe('period-la', 'pro');
SELECT pg_temp.anchor('period-utc', '2027-01-31 00:30+00');
SELECT pg_temp.anchor('period-la', '2027-01-31 00:30+00');
-- one at a time: the other waits (renews_at infinity)
CREATE FUNCTION pg_temp.hold_back(u text, until timestamptz) RETURNS void LANGUAGE sql AS $$
UPDATE credits.subscriptions SET renews_at = until WHERE user_id = u
$$;
SELECT pg_temp.hold_back('period-la', 'infinity');
SET TimeZone = 'UTC';
SELECT pg_temp.renew_at('2027-03-01 00:00+00') >= 1 AS renewed;
SELECT pg_temp.hold_back('period-la', '2027-02-01'), pg_temp.hold_back('period-utc', 'infinity');
SET TimeZone = 'America/Los_Angeles';
SELECT pg_temp.renew_at('2027-03-01 00:00+00') >= 1 AS renewed;
-- and again a month later, across the start of daylight saving time
SELECT pg_temp.hold_back('period-utc', '2027-03-01'), pg_temp.hold_back('period-la', 'infinity');
SET TimeZone = 'UTC';
SELECT pg_temp.renew_at('2027-04-01 00:00+00') >= 1 AS renewed;
SELECT pg_temp.hold_back('period-la', '2027-03-01'), pg_temp.hold_back('period-utc', 'infinity');
SET TimeZone = 'America/Los_Angeles';
SELECT pg_temp.renew_at('2027-04-01 00:00+00') >= 1 AS renewed;
RESET TimeZone;
SELECT * FROM periods WHERE user_id IN ('period-utc', 'period-la');
-- identical under both TimeZones
SELECT period_start_utc, period_end_utc, count(*) AS users
  FROM periods WHERE user_id IN ('period-utc', 'period-la') GROUP BY 1, 2 ORDER BY 1;

-- a daily plan across a daylight saving change: 24 hours apart in UTC
INSERT INTO credits.plans (plan, allowance, period, policy, valid_from)
	VALUES ('period_daily', 3, '1 day', 'reset', '-infinity');
SELECT granted FROM credits.credit_subscribe('period-daily', 'period_daily');
SELECT pg_temp.anchor('period-daily', '2027-03-13 12:00+00');
SET TimeZone = 'America/Los_Angeles';
SELECT pg_temp.renew_at('2027-03-14 13:00+00') >= 1 AS renewed;
SELECT pg_temp.renew_at('2027-03-15 13:00+00') >= 1 AS renewed;
RESET TimeZone;
SELECT * FROM periods WHERE user_id = 'period-daily';

-- O(1): a 1-second plan renewed 30 days late finds its period at once
-- (before 1.1 it walked 2,592,000 periods, one row each)
INSERT INTO credits.plans (plan, allowance, period, policy, valid_from)
	VALUES ('period_second', 1, '1 second', 'reset', '-infinity');
SELECT granted FROM credits.credit_subscribe('period-second', 'period_second');
SELECT pg_temp.anchor('period-second', '2027-01-01 00:00:00.25+00');
CREATE TEMP TABLE timing AS SELECT clock_timestamp() AS t0;
SELECT pg_temp.renew_at('2027-01-31 00:00:00+00') >= 1 AS renewed;
SELECT clock_timestamp() - t0 < interval '1 second' AS fast FROM timing;
SELECT period_end_utc - period_start_utc AS length,
	   extract(epoch FROM period_start_utc - '2027-01-01 00:00:00.25') % 1 = 0 AS whole_periods,
	   period_start_utc - '2027-01-01 00:00:00.25' BETWEEN '29 days 23:59:59' AND '30 days' AS thirty_days_on,
	   period_start_utc <= '2027-01-31 00:00:01' AND period_end_utc > '2027-01-31 00:00:00' AS contains_clock
  FROM periods WHERE user_id = 'period-second';

-- a plan period with a negative field is refused (periods must grow)
INSERT INTO credits.plans (plan, allowance, period, policy, valid_from)
	VALUES ('period_bad', 1, '1 month -29 days', 'reset', '-infinity');
SELECT granted FROM credits.credit_subscribe('period-bad', 'period_bad');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS written FROM credits.ledger WHERE user_id = 'period-bad';
