-- pgTAP: the schema contract of the billing section of sql/credits.sql
-- (tables, views, seeds, functions, pg_dump registration).
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(51);

-- accounts.expiring
SELECT col_type_is('credits', 'accounts', 'expiring', 'bigint', 'accounts.expiring is bigint');
SELECT col_not_null('credits', 'accounts', 'expiring', 'accounts.expiring is NOT NULL');
SELECT col_default_is('credits', 'accounts', 'expiring', '0', 'accounts.expiring defaults to 0');
SELECT throws_ok($$INSERT INTO credits.accounts (user_id, balance, expiring) VALUES ('tap-bs', 5, 6)$$,
				 '23514', NULL, 'accounts.expiring cannot exceed the balance');

-- tables
SELECT has_table('credits', t, 'table credits.' || t)
  FROM unnest(ARRAY['holds', 'grants', 'prices', 'plans', 'subscriptions', 'allowances']) t;
SELECT has_view('credits', v, 'view credits.' || v)
  FROM unnest(ARRAY['current_prices', 'current_plans', 'grant_balances', 'daily_usage']) v;
SELECT columns_are('credits', 'holds', ARRAY['id', 'user_id', 'amount', 'action', 'metadata',
	'idempotency_key', 'status', 'created_at', 'expires_at', 'available_after', 'grant_ids',
	'grant_amounts', 'closed_at', 'captured', 'capture_tx_id', 'capture_key'], 'holds columns');
SELECT columns_are('credits', 'grants', ARRAY['id', 'user_id', 'source', 'amount', 'expires_at',
	'remaining', 'reserved', 'expired', 'metadata', 'idempotency_key', 'created_at'], 'grants columns');
SELECT columns_are('credits', 'prices', ARRAY['action', 'unit', 'rate', 'rounding', 'valid_from', 'per_call'],
				   'prices: action, unit, rate, rounding, per_call (and valid_from)');
SELECT columns_are('credits', 'daily_usage', ARRAY['day', 'user_id', 'action', 'credits', 'tokens'],
				   'daily_usage(day, user_id, action, credits, tokens)');
SELECT col_type_is('credits', 'prices', 'rate', 'numeric', 'prices.rate is numeric');
SELECT col_is_pk('credits', 'prices', ARRAY['action', 'valid_from'], 'prices are keyed by action and valid_from');
SELECT col_is_pk('credits', 'allowances', ARRAY['user_id', 'plan', 'period_start'],
				 'one allowance per user, plan and period');
SELECT col_is_pk('credits', 'subscriptions', 'user_id', 'one subscription per user');
SELECT throws_ok($$INSERT INTO credits.holds (user_id, amount, action, expires_at, available_after, status)
				   VALUES ('tap-bs', 1, 'a', now(), 0, 'lost')$$,
				 '23514', NULL, 'a hold status is open, captured, released or expired');
SELECT throws_ok($$INSERT INTO credits.prices (action, unit, rate) VALUES ('tap_bs', 'unit', 0)$$,
				 '23514', NULL, 'a price rate is positive');
SELECT throws_ok($$INSERT INTO credits.plans (plan, allowance, policy) VALUES ('tap_bs', 1, 'hoard')$$,
				 '23514', NULL, 'a plan policy is reset or rollover');

-- the seeds
SELECT results_eq(
	$$SELECT action, unit, rate, rounding FROM credits.current_prices ORDER BY action$$,
	$$VALUES ('canvas_generation_complex', 'generation', 75::numeric, 'up'),
			 ('canvas_generation_simple', 'generation', 50::numeric, 'up'),
			 ('chat_message', 'message', 10::numeric, 'up'),
			 ('llm_tokens', 'token', 0.0005::numeric, 'up'),
			 ('training_job', 'gpu_hour', 1000::numeric, 'up'),
			 ('video_generation', 'second', 10::numeric, 'up')$$,
	'the seeded prices');
SELECT results_eq(
	$$SELECT plan, allowance, period, policy FROM credits.current_plans WHERE plan IN ('free', 'pro') ORDER BY plan$$,
	$$VALUES ('free', 5::bigint, '1 month'::text, 'reset'), ('pro', 100::bigint, '1 month'::text, 'reset')$$,
	'free = 5 and pro = 100 a month');
SELECT ok(EXISTS (SELECT FROM credits.current_plans WHERE plan = 'enterprise'), 'an enterprise plan is seeded');

-- the functions: names, arguments, results
SELECT has_function('credits', 'credit_hold', ARRAY['text', 'bigint', 'text', 'jsonb', 'interval', 'text']);
SELECT has_function('credits', 'credit_capture', ARRAY['bigint', 'bigint', 'jsonb', 'text']);
SELECT has_function('credits', 'credit_release', ARRAY['bigint', 'text']);
SELECT has_function('credits', 'credit_available', ARRAY['text']);
SELECT has_function('credits', 'credit_expire_holds', ARRAY[]::text[]);
SELECT has_function('credits', 'credit_cost', ARRAY['text', 'numeric']);
SELECT has_function('credits', 'credit_charge', ARRAY['text', 'text', 'numeric', 'jsonb', 'text']);
SELECT has_function('credits', 'credit_grant', ARRAY['text', 'bigint', 'text', 'timestamp with time zone', 'jsonb', 'text']);
SELECT has_function('credits', 'credit_expire_grants', ARRAY[]::text[]);
SELECT has_function('credits', 'credit_subscribe', ARRAY['text', 'text', 'timestamp with time zone', 'text']);
SELECT has_function('credits', 'credit_renew', ARRAY[]::text[]);
SELECT has_function('credits', 'credit_usage', ARRAY['text']);
SELECT is(pg_get_function_result('credits.credit_hold(text, bigint, text, jsonb, interval, text)'::regprocedure),
		  'TABLE(hold_id bigint, held bigint, available bigint)', 'credit_hold returns (hold_id, held, available)');
SELECT is(pg_get_function_result('credits.credit_capture(bigint, bigint, jsonb, text)'::regprocedure),
		  'TABLE(tx_id bigint, balance bigint, created_at timestamp with time zone)', 'credit_capture returns the ledger row');
SELECT is(pg_get_function_result('credits.credit_charge(text, text, numeric, jsonb, text)'::regprocedure),
		  'TABLE(tx_id bigint, balance bigint, created_at timestamp with time zone)', 'credit_charge returns the ledger row');
SELECT is(pg_get_function_result('credits.credit_grant(text, bigint, text, timestamptz, jsonb, text)'::regprocedure),
		  'TABLE(tx_id bigint, balance bigint, created_at timestamp with time zone)', 'credit_grant returns the ledger row');
SELECT is(pg_get_function_result('credits.credit_usage(text)'::regprocedure),
		  'TABLE(balance bigint, available bigint, held bigint, plan text, plan_ends_at timestamp with time zone, '
		  'period_start timestamp with time zone, spent_period numeric, spent_lifetime numeric, tokens_period numeric, '
		  'tokens_lifetime numeric)', 'credit_usage returns one summary row');
SELECT function_returns('credits', 'credit_release', ARRAY['bigint', 'text'], 'bigint');
SELECT function_returns('credits', 'credit_cost', ARRAY['text', 'numeric'], 'bigint');
SELECT is_empty(
	$$SELECT oid::regprocedure::text FROM pg_proc
	   WHERE pronamespace = 'credits'::regnamespace
		 AND proname IN ('credit_hold', 'credit_capture', 'credit_release', 'credit_available',
						 'credit_expire_holds', 'credit_cost', 'credit_charge', 'credit_grant',
						 'credit_expire_grants', 'credit_subscribe', 'credit_renew', 'credit_usage')
		 AND (prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c') OR NOT prosecdef)$$,
	'the billing functions are C and SECURITY DEFINER');
SELECT is((SELECT array_agg(provolatile::text ORDER BY proname) FROM pg_proc
			WHERE pronamespace = 'credits'::regnamespace
			  AND proname IN ('credit_available', 'credit_cost', 'credit_usage')),
		  ARRAY['s', 's', 's'], 'the read-only billing functions are STABLE');

-- pg_dump keeps the billing tables, and the prices and plans added after
-- CREATE EXTENSION (the seeds come back with it)
SELECT is((SELECT count(*)::int FROM pg_extension e, unnest(e.extconfig) c
			WHERE e.extname = 'credits'
			  AND c::regclass::text IN ('credits.holds', 'credits.grants', 'credits.subscriptions',
										 'credits.allowances', 'credits.prices', 'credits.plans',
										 'credits.holds_id_seq', 'credits.grants_id_seq')),
		  8, 'the billing tables and sequences are extension configuration');
SELECT is((SELECT e.extcondition[array_position(e.extconfig, 'credits.prices'::regclass::oid)]
			 FROM pg_extension e WHERE e.extname = 'credits'),
		  $$WHERE valid_from <> '-infinity' OR action NOT IN ('chat_message', 'canvas_generation_simple', 'canvas_generation_complex', 'video_generation', 'training_job', 'llm_tokens')$$,
		  'pg_dump keeps the prices added after install, also valid from -infinity (all but the seeded rows)');

SELECT * FROM finish();
ROLLBACK;
