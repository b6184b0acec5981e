-- credit_usage (one row per user) and the credits.daily_usage view.
-- Spending is every negative ledger row except expiries; tokens come from
-- metadata.tokens or, for llm_tokens charges, from the priced quantity.
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

SELECT granted, balance FROM credits.credit_subscribe('usage-a', 'pro', now() + interval '6 months');
SELECT balance FROM credits.credit_add('usage-a', 1000, 'purchase');
SELECT balance FROM credits.credit_charge('usage-a', 'chat_message', 2, '{"tokens": 700}');
SELECT balance FROM credits.credit_charge('usage-a', 'llm_tokens', 4001);
SELECT balance FROM credits.credit_charge('usage-a', 'llm_tokens', 2000, '{"tokens": 1999}');
SELECT balance FROM credits.credit_deduct('usage-a', 5, 'canvas_generation_simple', '{"tokens": "many"}');
SELECT hold_id AS h FROM credits.credit_hold('usage-a', 100, 'video_generation') \gset
SELECT balance FROM credits.credit_capture(:h, 40, '{"seconds": 4}');
SELECT available FROM credits.credit_hold('usage-a', 30, 'training_job');

SELECT balance, available, held, plan,
	   plan_ends_at = (SELECT ends_at FROM credits.subscriptions WHERE user_id = 'usage-a') AS plan_ends_at,
	   period_start = (SELECT period_start FROM credits.subscriptions WHERE user_id = 'usage-a') AS period_start,
	   spent_period, spent_lifetime, tokens_period, tokens_lifetime
  FROM credits.credit_usage('usage-a');

-- after a renewal the new period starts: the period sums start again from
-- zero, the lifetime sums keep everything; expiries are not spending
SELECT anchor AS a FROM credits.subscriptions WHERE user_id = 'usage-a' \gset
SELECT pg_temp.renew_at(:'a'::timestamptz + interval '1 month 1 hour') AS n \gset
SELECT amount, action FROM credits.ledger WHERE user_id = 'usage-a' AND action IN ('expire', 'grant') ORDER BY id;
SELECT balance, available, held, plan, spent_period, spent_lifetime, tokens_period, tokens_lifetime,
	   period_start = (SELECT period_start FROM credits.subscriptions WHERE user_id = 'usage-a') AS period_start
  FROM credits.credit_usage('usage-a');

-- a lapsed subscription shows as free until credit_renew moves it
SELECT balance FROM credits.credit_init('usage-c', 10);
SELECT granted FROM credits.credit_subscribe('usage-c', 'pro', now() + interval '1 second');
SELECT pg_sleep(1.1);
SELECT plan, plan_ends_at FROM credits.credit_usage('usage-c');

-- without a subscription: no plan, the period is the calendar month (UTC)
SELECT balance FROM credits.credit_init('usage-b', 50);
SELECT balance FROM credits.credit_charge('usage-b', 'llm_tokens', 10000);
SELECT balance, available, held, plan, plan_ends_at,
	   period_start = date_trunc('month', now(), 'UTC') AS calendar_month,
	   spent_period, spent_lifetime, tokens_period, tokens_lifetime
  FROM credits.credit_usage('usage-b');

-- daily_usage: spending per UTC day, user and action
SELECT day = (now() AT TIME ZONE 'UTC')::date AS today, user_id, action, credits, tokens
  FROM credits.daily_usage WHERE user_id LIKE 'usage-%' ORDER BY user_id, action;

-- sums beyond bigint (FINDINGS #15): spending the largest bigint twice, and
-- tokens an app reports in metadata, are summed exactly (numeric), not 22003
SELECT balance FROM credits.credit_add('usage-big', 9223372036854775807, 'purchase');
SELECT balance FROM credits.credit_deduct('usage-big', 9223372036854775807, 'chat_message', '{"tokens": 1e30}');
SELECT balance FROM credits.credit_add('usage-big', 9223372036854775807, 'purchase');
SELECT balance FROM credits.credit_deduct('usage-big', 9223372036854775807, 'chat_message', '{"tokens": 1e30}');
SELECT spent_period, spent_lifetime, tokens_period, tokens_lifetime
  FROM credits.credit_usage('usage-big');
SELECT user_id, action, credits, tokens
  FROM credits.daily_usage WHERE user_id = 'usage-big';

-- errors
SELECT * FROM credits.credit_usage('usage-nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_usage(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_usage('');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_usage(repeat('u', 257));
\echo :LAST_ERROR_SQLSTATE
