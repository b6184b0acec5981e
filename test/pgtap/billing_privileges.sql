-- pgTAP: privileges of the billing objects.  credits_app may call every
-- billing function except the renewal and expiry jobs (credits_ops runs
-- those) and may not touch the billing tables; credits_reader may
-- read them and call only credit_available, credit_cost and credit_usage;
-- PUBLIC gets nothing.  Checked in the catalogs and by acting as login-less
-- members of the two roles.
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(38);

CREATE TEMP TABLE billing_fn AS
SELECT p.oid, p.oid::regprocedure::text AS sig,
	   p.proname IN ('credit_available', 'credit_cost', 'credit_usage') AS read_only,
	   p.proname IN ('credit_expire_holds', 'credit_expire_grants', 'credit_renew') AS job
  FROM pg_proc p
 WHERE p.pronamespace = 'credits'::regnamespace
   AND p.proname IN ('credit_hold', 'credit_capture', 'credit_release', 'credit_available',
					 'credit_expire_holds', 'credit_cost', 'credit_charge', 'credit_grant',
					 'credit_expire_grants', 'credit_subscribe', 'credit_renew', 'credit_usage');
CREATE TEMP TABLE billing_rel AS
SELECT c.oid, c.oid::regclass::text AS name FROM pg_class c
 WHERE c.relnamespace = 'credits'::regnamespace
   AND c.relname IN ('holds', 'grants', 'prices', 'plans', 'subscriptions', 'allowances',
					 'current_prices', 'current_plans', 'grant_balances', 'daily_usage');

SELECT is((SELECT count(*)::int FROM billing_fn), 12, 'twelve billing functions');
SELECT is((SELECT count(*)::int FROM billing_rel), 10, 'six billing tables and four views');

-- credits_app
SELECT is_empty($$SELECT sig FROM billing_fn WHERE NOT job AND NOT has_function_privilege('credits_app', oid, 'EXECUTE')$$,
				'credits_app can EXECUTE every billing function but the jobs');
SELECT is_empty($$SELECT sig FROM billing_fn WHERE job AND has_function_privilege('credits_app', oid, 'EXECUTE')$$,
				'credits_app cannot EXECUTE the renewal and expiry jobs');
SELECT is_empty($$SELECT sig FROM billing_fn WHERE (job OR read_only) AND NOT has_function_privilege('credits_ops', oid, 'EXECUTE')$$,
				'credits_ops can EXECUTE the jobs and the read-only billing functions');
SELECT ok(has_function_privilege('credits_ops', 'credits.run_job_step(text, text, integer)', 'EXECUTE')
		  AND has_function_privilege('credits_ops', 'credits.run_jobs(integer, text[])', 'EXECUTE'),
		  'credits_ops can run credits.run_jobs and its step');
SELECT ok(NOT has_function_privilege('credits_app', 'credits.run_job_step(text, text, integer)', 'EXECUTE')
		  AND NOT has_function_privilege('credits_app', 'credits.run_jobs(integer, text[])', 'EXECUTE')
		  AND NOT has_function_privilege('credits_reader', 'credits.run_jobs(integer, text[])', 'EXECUTE'),
		  'credits_app and credits_reader cannot run credits.run_jobs or its step');
SELECT is_empty(
	$$SELECT name || ' ' || p FROM billing_rel,
			 unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
	   WHERE has_table_privilege('credits_app', oid, p)$$,
	'credits_app has no privilege on the billing tables and views');
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'credits'::regnamespace
		 AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('credits_app', c.oid, 'USAGE') END$$,
	'credits_app cannot use the sequences');

-- credits_reader
SELECT is_empty($$SELECT name FROM billing_rel WHERE NOT has_table_privilege('credits_reader', oid, 'SELECT')$$,
				'credits_reader can SELECT every billing table and view');
SELECT is_empty(
	$$SELECT name || ' ' || p FROM billing_rel, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
	   WHERE has_table_privilege('credits_reader', oid, p)$$,
	'credits_reader cannot change the billing tables');
SELECT is_empty($$SELECT sig FROM billing_fn WHERE read_only AND NOT has_function_privilege('credits_reader', oid, 'EXECUTE')$$,
				'credits_reader can EXECUTE credit_available, credit_cost and credit_usage');
SELECT is_empty($$SELECT sig FROM billing_fn WHERE NOT read_only AND has_function_privilege('credits_reader', oid, 'EXECUTE')$$,
				'credits_reader cannot EXECUTE the mutating billing functions');

-- PUBLIC
SELECT is_empty($$SELECT sig FROM billing_fn WHERE has_function_privilege('public', oid, 'EXECUTE')$$,
				'PUBLIC cannot EXECUTE any billing function');
SELECT is_empty($$SELECT name FROM billing_rel WHERE has_table_privilege('public', oid, 'SELECT')$$,
				'PUBLIC cannot read any billing table or view');

-- acting as the roles
CREATE ROLE tap_bp_app NOLOGIN IN ROLE credits_app;
CREATE ROLE tap_bp_reader NOLOGIN IN ROLE credits_reader;

SET LOCAL ROLE tap_bp_app;
SELECT is((SELECT balance FROM credits.credit_grant('tap-bp', 100, 'promo', now() + interval '1 day')), 100::bigint,
		  'a member of credits_app grants with credit_grant');
SELECT is((SELECT available FROM credits.credit_hold('tap-bp', 30, 'video_generation')), 70::bigint,
		  'a member of credits_app holds with credit_hold');
SELECT throws_ok($$SELECT * FROM credits.holds$$, '42501', NULL, 'a member of credits_app cannot read the holds');
SELECT throws_ok($$UPDATE credits.grants SET remaining = 1000$$, '42501', NULL,
				 'a member of credits_app cannot change the grants');
SELECT throws_ok($$INSERT INTO credits.prices (action, unit, rate) VALUES ('chat_message', 'message', 1)$$,
				 '42501', NULL, 'a member of credits_app cannot change the prices');
SELECT throws_ok($$INSERT INTO credits.subscriptions (user_id, plan) VALUES ('tap-bp', 'enterprise')$$,
				 '42501', NULL, 'a member of credits_app cannot write subscriptions');
SELECT is((SELECT balance FROM credits.credit_charge('tap-bp', 'chat_message', 1)), 90::bigint,
		  'a member of credits_app charges with credit_charge');
SELECT is(credits.credit_cost('llm_tokens', 4001), 3::bigint, 'a member of credits_app prices with credit_cost');
SELECT is((SELECT granted FROM credits.credit_subscribe('tap-bp', 'pro')), 100::bigint,
		  'a member of credits_app subscribes with credit_subscribe');
SELECT throws_ok($$SELECT credits.credit_renew()$$, '42501', NULL, 'a member of credits_app cannot run credit_renew');
SELECT throws_ok($$SELECT credits.credit_expire_holds()$$, '42501', NULL, 'a member of credits_app cannot run credit_expire_holds');
SELECT throws_ok($$SELECT credits.credit_expire_grants()$$, '42501', NULL, 'a member of credits_app cannot run credit_expire_grants');
SELECT throws_ok($$CALL credits.run_jobs()$$, '42501', NULL, 'a member of credits_app cannot CALL credits.run_jobs');
SELECT is((SELECT spent_lifetime FROM credits.credit_usage('tap-bp')), 10::numeric,
		  'a member of credits_app reads the usage');
RESET ROLE;

-- the hold's id, read as the owner
SELECT max(id) AS tap_bp_hold FROM credits.holds WHERE user_id = 'tap-bp' \gset
SET LOCAL ROLE tap_bp_app;
SELECT is((SELECT balance FROM credits.credit_capture(:tap_bp_hold, 20)), 170::bigint,
		  'a member of credits_app captures with credit_capture');
SELECT is((SELECT credits.credit_release(h.hold_id) FROM credits.credit_hold('tap-bp', 5, 'chat_message') h), 170::bigint,
		  'a member of credits_app releases with credit_release');
RESET ROLE;

SET LOCAL ROLE tap_bp_reader;
SELECT is((SELECT count(*)::int FROM credits.holds WHERE user_id = 'tap-bp'), 2,
		  'a member of credits_reader reads the holds');
SELECT is((SELECT sum(remaining)::int FROM credits.grant_balances WHERE user_id = 'tap-bp'), 170,
		  'a member of credits_reader reads grant_balances');
SELECT is(credits.credit_available('tap-bp'), 170::bigint, 'a member of credits_reader calls credit_available');
SELECT is((SELECT balance FROM credits.credit_usage('tap-bp')), 170::bigint, 'a member of credits_reader calls credit_usage');
SELECT throws_ok($$SELECT * FROM credits.credit_hold('tap-bp', 1, 'chat_message')$$, '42501', NULL,
				 'a member of credits_reader cannot place a hold');
SELECT throws_ok($$SELECT * FROM credits.credit_grant('tap-bp', 1, 'promo')$$, '42501', NULL,
				 'a member of credits_reader cannot grant');
SELECT throws_ok($$SELECT credits.credit_renew()$$, '42501', NULL,
				 'a member of credits_reader cannot run credit_renew');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
