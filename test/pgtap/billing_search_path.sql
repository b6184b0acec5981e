-- pgTAP: the billing functions are safe under a hostile search_path.
--
-- Schema "hostile" shadows what the billing queries could resolve by name:
-- the tables, the comparison and arithmetic operators on bigint, numeric,
-- text and timestamptz, jsonb ||, now(), sum(), unnest(), array_agg(),
-- ceil() and date_trunc().  Every shadow records
-- that it was called and returns a wrong answer.  A login-less member of
-- credits_app then calls every billing function with search_path =
-- hostile, pg_catalog; the results must be the right ones, with no shadow
-- called.  (The statements are prepared in this session, under that
-- search_path, by the first calls.)
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(19);

-- credits_ops too: the steps include the renewal and expiry jobs
CREATE ROLE tap_bsp_app NOLOGIN IN ROLE credits_app, credits_ops;
CREATE ROLE tap_bsp_ops NOLOGIN IN ROLE credits_ops;

CREATE SCHEMA hostile;
GRANT USAGE ON SCHEMA hostile TO PUBLIC;
CREATE TABLE hostile.hijacked (what text NOT NULL);
GRANT INSERT, SELECT ON hostile.hijacked TO PUBLIC;
CREATE TABLE hostile.holds (LIKE credits.holds);
CREATE TABLE hostile.grants (LIKE credits.grants);
CREATE TABLE hostile.prices (LIKE credits.prices);
CREATE TABLE hostile.plans (LIKE credits.plans);
CREATE TABLE hostile.subscriptions (LIKE credits.subscriptions);
CREATE TABLE hostile.allowances (LIKE credits.allowances);
CREATE TABLE hostile.accounts (LIKE credits.accounts);
CREATE TABLE hostile.carries (LIKE credits.carries);
CREATE TABLE hostile.idempotency_keys (LIKE credits.idempotency_keys);
INSERT INTO hostile.prices VALUES ('chat_message', 'message', 0.001, 'down', '-infinity', true);
INSERT INTO hostile.plans VALUES ('pro', 1, '1 day', 'reset', NULL, '-infinity');
GRANT ALL ON ALL TABLES IN SCHEMA hostile TO PUBLIC;

CREATE FUNCTION hostile.log(what text) RETURNS void LANGUAGE sql AS
$$INSERT INTO hostile.hijacked VALUES (what)$$;
CREATE FUNCTION hostile.b_true(a bigint, b bigint) RETURNS boolean LANGUAGE sql AS
$$SELECT hostile.log('bigint comparison'); SELECT true$$;
CREATE FUNCTION hostile.b_big(a bigint, b bigint) RETURNS bigint LANGUAGE sql AS
$$SELECT hostile.log('bigint arithmetic'); SELECT 1000000::bigint$$;
CREATE FUNCTION hostile.t_true(a text, b text) RETURNS boolean LANGUAGE sql AS
$$SELECT hostile.log('text comparison'); SELECT true$$;
CREATE FUNCTION hostile.n_mul(a numeric, b numeric) RETURNS numeric LANGUAGE sql AS
$$SELECT hostile.log('numeric *'); SELECT 0::numeric$$;
CREATE FUNCTION hostile.ts_true(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE sql AS
$$SELECT hostile.log('timestamptz comparison'); SELECT true$$;
CREATE FUNCTION hostile.ts_plus(a timestamptz, b interval) RETURNS timestamptz LANGUAGE sql AS
$$SELECT hostile.log('timestamptz + interval'); SELECT '2000-01-01'::timestamptz$$;
CREATE FUNCTION hostile.j_cat(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql AS
$$SELECT hostile.log('jsonb ||'); SELECT '{"hijacked": true}'::jsonb$$;
CREATE OPERATOR hostile.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.<> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.<= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_big);
CREATE OPERATOR hostile.- (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_big);
CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.t_true);
CREATE OPERATOR hostile.* (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = hostile.n_mul);
CREATE OPERATOR hostile.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_true);
CREATE OPERATOR hostile.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_true);
CREATE OPERATOR hostile.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = hostile.ts_plus);
CREATE OPERATOR hostile.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = hostile.j_cat);
CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE sql AS
$$SELECT hostile.log('now()'); SELECT '2000-01-01'::timestamptz$$;
CREATE FUNCTION hostile.sum_step(s bigint, v bigint) RETURNS bigint LANGUAGE sql AS
$$SELECT hostile.log('sum(bigint)'); SELECT 424242::bigint$$;
CREATE AGGREGATE hostile.sum(bigint) (SFUNC = hostile.sum_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION hostile.unnest(a bigint[]) RETURNS SETOF bigint LANGUAGE sql AS
$$SELECT hostile.log('unnest()'); SELECT 1::bigint$$;
CREATE FUNCTION hostile.ceil(n numeric) RETURNS numeric LANGUAGE sql AS
$$SELECT hostile.log('ceil()'); SELECT 1::numeric$$;
CREATE FUNCTION hostile.floor(n numeric) RETURNS numeric LANGUAGE sql AS
$$SELECT hostile.log('floor()'); SELECT 1::numeric$$;
CREATE FUNCTION hostile.trim_scale(n numeric) RETURNS numeric LANGUAGE sql AS
$$SELECT hostile.log('trim_scale()'); SELECT 0.5::numeric$$;
CREATE FUNCTION hostile.n_add(a numeric, b numeric) RETURNS numeric LANGUAGE sql AS
$$SELECT hostile.log('numeric +'); SELECT 0::numeric$$;
CREATE OPERATOR hostile.+ (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = hostile.n_add);
CREATE FUNCTION hostile.date_trunc(f text, t timestamptz, z text) RETURNS timestamptz LANGUAGE sql AS
$$SELECT hostile.log('date_trunc()'); SELECT '2000-01-01'::timestamptz$$;
CREATE FUNCTION hostile.agg_step(s bigint[], v bigint) RETURNS bigint[] LANGUAGE sql AS
$$SELECT hostile.log('array_agg()'); SELECT ARRAY[1]::bigint[]$$;
CREATE AGGREGATE hostile.array_agg(bigint) (SFUNC = hostile.agg_step, STYPE = bigint[]);

-- step -> result, or the SQLSTATE it raised
CREATE TEMP TABLE bsp_result (step text PRIMARY KEY, a bigint, b bigint, state text);
GRANT ALL ON pg_temp.bsp_result TO tap_bsp_app, tap_bsp_ops;
-- Run query q (returning up to two bigints) as step name; written to be
-- called under the hostile search_path, so every name is qualified.
CREATE FUNCTION pg_temp.step(name text, q text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	ra bigint;
	rb bigint;
BEGIN
	EXECUTE q INTO ra, rb;
	INSERT INTO pg_temp.bsp_result (step, a, b) VALUES (name, ra, rb);
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.bsp_result (step, state) VALUES (name, SQLSTATE);
END
$$;

SET LOCAL ROLE tap_bsp_app;
SET LOCAL search_path = hostile, pg_catalog;

SELECT pg_temp.step('grant', $$SELECT r.balance, NULL::bigint FROM credits.credit_grant('tap-bsp', 50, 'promo', pg_catalog.now() OPERATOR(pg_catalog.+) '1 day'::interval) r$$);
SELECT pg_temp.step('add', $$SELECT r.balance, NULL::bigint FROM credits.credit_add('tap-bsp', 50, 'purchase') r$$);
SELECT pg_temp.step('hold', $$SELECT r.hold_id, r.available FROM credits.credit_hold('tap-bsp', 70, 'video_generation') r$$);
SELECT pg_temp.step('available', $$SELECT credits.credit_available('tap-bsp'), NULL::bigint$$);
SELECT pg_temp.step('deduct', $$SELECT r.balance, NULL::bigint FROM credits.credit_deduct('tap-bsp', 10, 'chat_message') r$$);
SELECT pg_temp.step('capture', $$SELECT r.balance, NULL::bigint FROM credits.credit_capture(
	(SELECT x.a FROM pg_temp.bsp_result x WHERE x.step OPERATOR(pg_catalog.=) 'hold'), 60, '{"s": 6}', 'tap-bsp-cap') r$$);
SELECT pg_temp.step('hold 2', $$SELECT r.hold_id, r.available FROM credits.credit_hold('tap-bsp', 5, 'chat_message', '{}', '1 hour', 'tap-bsp-h') r$$);
SELECT pg_temp.step('release', $$SELECT credits.credit_release(
	(SELECT x.a FROM pg_temp.bsp_result x WHERE x.step OPERATOR(pg_catalog.=) 'hold 2')), NULL::bigint$$);
SELECT pg_temp.step('cost', $$SELECT credits.credit_cost('llm_tokens', 4001), credits.credit_cost('chat_message', 1)$$);
SELECT pg_temp.step('charge', $$SELECT r.balance, NULL::bigint FROM credits.credit_charge('tap-bsp', 'chat_message', 1, '{}', 'tap-bsp-ch') r$$);
SELECT pg_temp.step('subscribe', $$SELECT r.granted, r.balance FROM credits.credit_subscribe('tap-bsp', 'pro') r$$);
-- the jobs are credits_ops'; credits' clock 32 days on (superuser) for the renewal
RESET search_path;
RESET ROLE;
SET LOCAL credits.clock_offset = 2764800;
SET LOCAL ROLE tap_bsp_ops;
SET LOCAL search_path = hostile, pg_catalog;
SELECT pg_temp.step('renew', $$SELECT credits.credit_renew(), NULL::bigint$$);
RESET search_path;
RESET ROLE;
SET LOCAL credits.clock_offset = 0;
SET LOCAL ROLE tap_bsp_ops;
SET LOCAL search_path = hostile, pg_catalog;
SELECT pg_temp.step('expire', $$SELECT credits.credit_expire_holds(), credits.credit_expire_grants()$$);
RESET search_path;
RESET ROLE;
SET LOCAL ROLE tap_bsp_app;
SET LOCAL search_path = hostile, pg_catalog;
SELECT pg_temp.step('usage', $$SELECT r.spent_lifetime, r.tokens_lifetime FROM credits.credit_usage('tap-bsp') r$$);
SELECT pg_temp.step('overdraw', $$SELECT r.balance, NULL::bigint FROM credits.credit_charge('tap-bsp', 'training_job', 1) r$$);

RESET search_path;
RESET ROLE;

SELECT is_empty($$SELECT step, state FROM bsp_result WHERE state IS NOT NULL AND step <> 'overdraw'$$,
				'no call raised an error');
SELECT is((SELECT a FROM bsp_result WHERE step = 'grant'), 50::bigint, 'credit_grant: balance 50');
SELECT results_eq($$SELECT h.amount, r.b FROM bsp_result r JOIN credits.holds h ON h.id = r.a WHERE r.step = 'hold'$$,
				  $$VALUES (70::bigint, 30::bigint)$$, 'credit_hold: 70 held, 30 available');
SELECT is((SELECT a FROM bsp_result WHERE step = 'available'), 30::bigint, 'credit_available: 30');
SELECT is((SELECT a FROM bsp_result WHERE step = 'deduct'), 90::bigint, 'credit_deduct (grant draw-down): 90');
SELECT is((SELECT a FROM bsp_result WHERE step = 'capture'), 30::bigint, 'credit_capture: 30');
SELECT results_eq($$SELECT h.amount, r.b FROM bsp_result r JOIN credits.holds h ON h.id = r.a WHERE r.step = 'hold 2'$$,
				  $$VALUES (5::bigint, 25::bigint)$$, 'a keyed credit_hold: 5 held, 25 available');
SELECT is((SELECT a FROM bsp_result WHERE step = 'release'), 30::bigint, 'credit_release: 30 available');
SELECT results_eq($$SELECT a, b FROM bsp_result WHERE step = 'cost'$$, $$VALUES (3::bigint, 10::bigint)$$,
				  'credit_cost uses credits.prices: 3 and 10');
SELECT is((SELECT a FROM bsp_result WHERE step = 'charge'), 20::bigint, 'credit_charge: 20');
SELECT results_eq($$SELECT a, b FROM bsp_result WHERE step = 'subscribe'$$, $$VALUES (100::bigint, 120::bigint)$$,
				  'credit_subscribe uses credits.plans: 100 granted');
SELECT cmp_ok((SELECT a FROM bsp_result WHERE step = 'renew'), '>=', 1::bigint, 'credit_renew renewed');
SELECT is((SELECT state FROM bsp_result WHERE step = 'overdraw'), 'CR001', 'an overdraft is still CR001');
SELECT results_eq($$SELECT a, b FROM bsp_result WHERE step = 'usage'$$, $$VALUES (80::bigint, 0::bigint)$$,
				  'credit_usage: 80 spent');
SELECT results_eq(
	$$SELECT amount, action FROM credits.ledger WHERE user_id = 'tap-bsp' ORDER BY id$$,
	$$VALUES (50::bigint, 'grant'::text), (50, 'purchase'), (-10, 'chat_message'), (-60, 'video_generation'),
			 (-10, 'chat_message'), (100, 'grant'), (-100, 'expire'), (100, 'grant')$$,
	'the ledger has exactly the expected rows');
SELECT is((SELECT metadata FROM credits.ledger WHERE user_id = 'tap-bsp' AND action = 'video_generation'),
		  (SELECT jsonb_build_object('s', 6, 'held', 70, 'hold_id', a) FROM bsp_result WHERE step = 'hold'),
		  'the capture metadata is built by pg_catalog functions');
SELECT is_empty($$SELECT DISTINCT what FROM hostile.hijacked$$, 'no shadowing function or operator was called');
SELECT is_empty($$SELECT FROM hostile.holds UNION ALL SELECT FROM hostile.grants UNION ALL SELECT FROM hostile.accounts
				  UNION ALL SELECT FROM hostile.subscriptions UNION ALL SELECT FROM hostile.allowances$$,
				'the hostile tables are untouched');
SELECT is_empty($$SELECT * FROM credits.credit_verify_all() WHERE user_id = 'tap-bsp'$$, 'the ledger sums to the balance');

SELECT * FROM finish();
ROLLBACK;
