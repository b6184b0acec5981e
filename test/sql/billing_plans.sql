-- Plans, subscriptions and allowances: credit_subscribe and credit_renew.
-- Time is simulated with credits.clock_offset (pg_temp.renew_at).  Periods
-- are shown as k (the period starts at base + k * unit, in UTC, base being
-- the anchor the test recorded), so the output does not depend on today's
-- date.
SET client_min_messages = warning;

-- credits' clock at t for one call (S1): credits.clock_offset, a superuser
-- setting, is set so that credits_now() is in [t, t + 1s), then reset
CREATE FUNCTION pg_temp.renew_at(t timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	PERFORM set_config('credits.clock_offset', ceil(extract(epoch FROM t - now()))::int::text, true);
	n := credits.credit_renew();
	PERFORM set_config('credits.clock_offset', '0', true);
	RETURN n;
END $$;

SELECT plan, allowance, period, policy, rollover_cap FROM credits.current_plans ORDER BY plan;

-- the anchors, and "k=N" for t = base + N * unit
CREATE TEMP TABLE bases (user_id text, plan text, base timestamptz, unit interval,
						 ends timestamptz, PRIMARY KEY (user_id, plan));
CREATE FUNCTION pg_temp.k(t timestamptz, base timestamptz, unit interval) RETURNS text
	LANGUAGE sql AS
$$SELECT coalesce((SELECT 'k=' || k FROM generate_series(-1, 60) k
					 WHERE ((base AT TIME ZONE 'UTC') + unit * k) AT TIME ZONE 'UTC' = t), 'other')$$;
CREATE TEMP VIEW allowance_state AS
SELECT al.user_id, al.plan, pg_temp.k(al.period_start, b.base, b.unit) AS period_start,
	   pg_temp.k(al.period_end, b.base, b.unit) AS period_end, al.allowance, al.carried,
	   g.amount AS granted,
	   CASE g.expires_at WHEN al.period_end THEN 'period end' WHEN b.ends THEN 'subscription end'
			ELSE g.expires_at::text END AS expires
  FROM credits.allowances al JOIN bases b USING (user_id, plan)
  LEFT JOIN credits.grants g ON g.id = al.grant_id
 WHERE al.user_id LIKE 'plan-%' ORDER BY al.user_id, al.period_start, al.plan;
CREATE TEMP VIEW sub_state AS
SELECT s.user_id, s.plan, s.cycle, pg_temp.k(s.period_start, b.base, b.unit) AS period_start,
	   s.ends_at IS NOT DISTINCT FROM b.ends AS ends_as_set,
	   CASE s.renews_at WHEN s.period_end THEN 'period end' WHEN s.ends_at THEN 'subscription end'
			ELSE s.renews_at::text END AS renews, a.balance
  FROM credits.subscriptions s JOIN credits.accounts a USING (user_id)
  JOIN bases b ON b.user_id = s.user_id AND b.plan = s.plan
 WHERE s.user_id LIKE 'plan-%' ORDER BY s.user_id;
CREATE TEMP VIEW ledger_state AS
SELECT user_id, amount, balance_after, action, metadata ->> 'plan' AS plan,
	   metadata ->> 'carried' AS carried
  FROM credits.ledger WHERE user_id LIKE 'plan-%' ORDER BY user_id, id;

-- subscribing opens the account and grants the first allowance at once
SELECT granted, balance, period_end = period_start + interval '1 month' AS one_month
  FROM credits.credit_subscribe('plan-a', 'pro', now() + interval '2 months 15 days');
INSERT INTO bases SELECT user_id, 'pro', anchor, '1 month', ends_at
  FROM credits.subscriptions WHERE user_id = 'plan-a';
INSERT INTO bases SELECT user_id, 'free', ends_at, '1 month', NULL
  FROM credits.subscriptions WHERE user_id = 'plan-a';
SELECT anchor AS a, ends_at AS a_ends FROM credits.subscriptions WHERE user_id = 'plan-a' \gset
SELECT * FROM sub_state WHERE user_id = 'plan-a';
SELECT * FROM allowance_state WHERE user_id = 'plan-a';

-- nothing is due yet
SELECT credits.credit_renew() AS n \gset
SELECT count(*) AS allowances FROM credits.allowances WHERE user_id = 'plan-a';

-- a reset plan: at the renewal the unspent allowance expires and the new
-- one is granted, once, however often credit_renew runs
SELECT balance FROM credits.credit_deduct('plan-a', 30, 'chat_message');
SELECT pg_temp.renew_at(:'a'::timestamptz + interval '1 month 1 hour') AS n \gset
SELECT pg_temp.renew_at(:'a'::timestamptz + interval '1 month 1 hour') AS n \gset
SELECT pg_temp.renew_at(:'a'::timestamptz + interval '1 month 2 hours') AS n \gset
SELECT * FROM sub_state WHERE user_id = 'plan-a';
SELECT * FROM allowance_state WHERE user_id = 'plan-a';
SELECT * FROM ledger_state WHERE user_id = 'plan-a';

-- the last period's allowance expires with the subscription
SELECT pg_temp.renew_at(:'a'::timestamptz + interval '2 months 1 hour') AS n \gset
SELECT * FROM sub_state WHERE user_id = 'plan-a';
SELECT * FROM allowance_state WHERE user_id = 'plan-a';

-- a lapsed subscription moves to free, with periods from its end
SELECT pg_temp.renew_at(:'a_ends'::timestamptz + interval '1 hour') AS n \gset
SELECT * FROM sub_state WHERE user_id = 'plan-a';
SELECT * FROM allowance_state WHERE user_id = 'plan-a';
SELECT * FROM ledger_state WHERE user_id = 'plan-a';
-- and free renews monthly from there
SELECT pg_temp.renew_at(:'a_ends'::timestamptz + interval '1 month 1 hour') AS n \gset
SELECT * FROM allowance_state WHERE user_id = 'plan-a' AND plan = 'free';
SELECT * FROM sub_state WHERE user_id = 'plan-a';

-- rollover: up to rollover_cap of the unspent allowance is carried over
INSERT INTO credits.plans (plan, allowance, period, policy, rollover_cap, valid_from) VALUES
	('plan_test_rollover', 100, '1 month', 'rollover', 50, '-infinity'),
	('plan_test_uncapped', 100, '1 month', 'rollover', NULL, '-infinity');
SELECT granted FROM credits.credit_subscribe('plan-b', 'plan_test_rollover');
SELECT granted FROM credits.credit_subscribe('plan-c', 'plan_test_uncapped');
INSERT INTO bases SELECT user_id, plan, anchor, '1 month', NULL
  FROM credits.subscriptions WHERE user_id IN ('plan-b', 'plan-c');
SELECT anchor AS b FROM credits.subscriptions WHERE user_id = 'plan-b' \gset
SELECT anchor AS c FROM credits.subscriptions WHERE user_id = 'plan-c' \gset
SELECT balance FROM credits.credit_deduct('plan-b', 20, 'chat_message');
SELECT balance FROM credits.credit_deduct('plan-c', 20, 'chat_message');
SELECT pg_temp.renew_at(:'b'::timestamptz + interval '1 month 1 hour') AS n \gset
SELECT pg_temp.renew_at(:'c'::timestamptz + interval '1 month 1 hour') AS n \gset
SELECT balance FROM credits.credit_deduct('plan-b', 130, 'chat_message');
SELECT balance FROM credits.credit_deduct('plan-c', 130, 'chat_message');
SELECT pg_temp.renew_at(:'b'::timestamptz + interval '2 months 1 hour') AS n \gset
SELECT pg_temp.renew_at(:'c'::timestamptz + interval '2 months 1 hour') AS n \gset
SELECT * FROM allowance_state WHERE user_id IN ('plan-b', 'plan-c');
SELECT * FROM ledger_state WHERE user_id IN ('plan-b', 'plan-c');
SELECT * FROM sub_state WHERE user_id IN ('plan-b', 'plan-c');

-- non-expiring credit is not touched by renewals
SELECT balance FROM credits.credit_add('plan-b', 7, 'purchase');
SELECT pg_temp.renew_at(:'b'::timestamptz + interval '3 months 1 hour') AS n \gset
SELECT balance, expiring FROM credits.accounts WHERE user_id = 'plan-b';

-- changing plan closes the old allowance (its rest is posted as expired) and
-- grants the new plan's for the current period (same anchor); the same plan
-- again only moves the end
SELECT granted, balance FROM credits.credit_subscribe('plan-d', 'free');
SELECT granted, balance FROM credits.credit_subscribe('plan-d', 'pro', now() + interval '1 year');
SELECT granted, balance FROM credits.credit_subscribe('plan-d', 'pro', now() + interval '2 years');
SELECT plan, ends_at > now() + interval '23 months' AS ends_moved FROM credits.subscriptions WHERE user_id = 'plan-d';
SELECT g.source, g.amount, g.remaining, g.expires_at = al.period_end AS at_period_end, al.plan
  FROM credits.grants g JOIN credits.allowances al ON al.grant_id = g.id
 WHERE g.user_id = 'plan-d' ORDER BY g.id;

-- a plan's settings are versioned: a new row applies from its valid_from;
-- periods that credit_renew missed entirely are not granted afterwards
INSERT INTO credits.plans (plan, allowance, period, policy, valid_from)
	VALUES ('plan_test_daily', 10, '1 day', 'reset', '-infinity');
SELECT granted FROM credits.credit_subscribe('plan-e', 'plan_test_daily');
INSERT INTO bases SELECT user_id, plan, anchor, '1 day', NULL
  FROM credits.subscriptions WHERE user_id = 'plan-e';
SELECT anchor AS e FROM credits.subscriptions WHERE user_id = 'plan-e' \gset
INSERT INTO credits.plans (plan, allowance, period, policy, valid_from)
	VALUES ('plan_test_daily', 25, '1 day', 'reset', :'e'::timestamptz + interval '36 hours');
SELECT pg_temp.renew_at(:'e'::timestamptz + interval '1 day 1 hour') AS n \gset
SELECT pg_temp.renew_at(:'e'::timestamptz + interval '4 days 1 hour') AS n \gset
SELECT * FROM allowance_state WHERE user_id = 'plan-e';
SELECT * FROM sub_state WHERE user_id = 'plan-e';

-- subscribing an account that already has credit keeps it
SELECT balance FROM credits.credit_init('plan-f', 40);
SELECT granted, balance FROM credits.credit_subscribe('plan-f', 'free');

-- errors: CR006 unknown plan, CR010 bad input; nothing is written
SELECT count(*) AS subs0 FROM credits.subscriptions \gset
SELECT * FROM credits.credit_subscribe('plan-x', 'platinum');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_subscribe('plan-a', 'platinum');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_subscribe(NULL, 'pro');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_subscribe('', 'pro');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_subscribe(repeat('u', 257), 'pro');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_subscribe('plan-x', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_subscribe('plan-x', '');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT * FROM credits.credit_subscribe('plan-x', 'pro', now() - interval '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_subscribe('plan-x', 'pro', now());
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT * FROM credits.credit_subscribe('plan-x', 'pro', 'infinity');
\echo :LAST_ERROR_SQLSTATE
-- the caller cannot choose the time: credit_renew takes no argument
SELECT credits.credit_renew(now() + interval '50 years');
\echo :LAST_ERROR_SQLSTATE
SELECT (SELECT count(*) FROM credits.subscriptions) = :subs0 AS no_new_subscriptions,
	   NOT EXISTS (SELECT FROM credits.accounts WHERE user_id = 'plan-x') AS no_account,
	   (SELECT plan FROM credits.subscriptions WHERE user_id = 'plan-a') AS plan_a;

-- every allowance was granted once per user, plan and period
SELECT user_id, plan, period_start, count(*) FROM credits.allowances
 GROUP BY 1, 2, 3 HAVING count(*) > 1;
SELECT * FROM credits.credit_verify_all();
