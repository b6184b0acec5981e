-- pgTAP: roles, privileges, ownership and pinned search_path.
--
-- Least privilege (README, Roles): credits_app spends and reads through the
-- functions; credits_ops runs the jobs, rebuilds, verifies and changes
-- prices and plans; credits_reader reads; PUBLIC gets nothing.  Every
-- member object of the extension is owned by credits_owner (NOLOGIN, not a
-- superuser), and every function has SET search_path = pg_catalog, pg_temp
-- in its definition.  The expected privileges are a table below with one
-- row per function name: a function the extension gains without a row here
-- fails "every function is in the role table", and one without owner or
-- SET clause fails the catalog checks, whatever its name.  Checked in the
-- catalogs and by acting as login-less members of each role.
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(80);

-- the extension's member functions and relations
CREATE TEMP TABLE ext_member AS
SELECT d.classid, d.objid, pg_describe_object(d.classid, d.objid, 0) AS what
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'credits');
CREATE TEMP TABLE ext_fn AS
SELECT p.oid, p.oid::regprocedure::text AS sig, p.proname, p.prokind, p.prosecdef, p.proconfig, p.proowner
  FROM pg_proc p JOIN ext_member m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid;

-- function name -> may credits_app, credits_ops, credits_reader EXECUTE it?
CREATE TEMP TABLE role_table (name text PRIMARY KEY, app boolean, ops boolean, reader boolean);
INSERT INTO role_table VALUES
	('credit_init', true, false, false),
	('credit_deduct', true, false, false),
	('credit_add', true, false, false),
	('credit_hold', true, false, false),
	('credit_capture', true, false, false),
	('credit_release', true, false, false),
	('credit_charge', true, false, false),
	('credit_grant', true, false, false),
	('credit_subscribe', true, false, false),
	('credit_balance', true, true, true),
	('credit_balance_at', true, true, true),
	('credit_available', true, true, true),
	('credit_history', true, true, true),
	('credit_usage', true, true, true),
	('credit_cost', true, true, true),
	('credit_verify', true, true, true),
	('library_version', true, true, true),
	('partition_hash', true, true, true),
	('partition_of', true, true, true),
	('hold_partition', true, true, true),
	('partition_setup', false, false, false),
	('credit_verify_all', false, true, true),
	('credit_rebuild', false, true, false),
	('credit_renew', false, true, false),
	('credit_expire_holds', false, true, false),
	('credit_expire_grants', false, true, false),
	('run_job_step', false, true, false),
	('run_jobs', false, true, false),
	('sync_sleep', false, false, true),
	('sync_arm', false, false, true),
	('ledger_refuse_change', false, false, false),
	('ledger_row_hash', false, false, false);

-- the roles
SELECT has_role('credits_app');
SELECT has_role('credits_ops');
SELECT has_role('credits_reader');
SELECT has_role('credits_owner');
SELECT is_empty(
	$$SELECT rolname FROM pg_roles
	   WHERE rolname IN ('credits_app', 'credits_ops', 'credits_reader', 'credits_owner')
		 AND (rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication)$$,
	'the four roles are NOLOGIN, not superusers, and have no role attributes');
SELECT schema_privs_are('credits', 'credits_app', ARRAY['USAGE'], 'credits_app has USAGE (only) on schema credits');
SELECT schema_privs_are('credits', 'credits_ops', ARRAY['USAGE'], 'credits_ops has USAGE (only) on schema credits');
SELECT schema_privs_are('credits', 'credits_reader', ARRAY['USAGE'], 'credits_reader has USAGE (only) on schema credits');

-- ownership: every member object, and the schema
SELECT is((SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'credits'), 'credits_owner',
		  'schema credits is owned by credits_owner');
SELECT cmp_ok((SELECT count(*)::int FROM ext_member), '>=', 40, 'the extension has its members (at least 40)');
SELECT is_empty(
	$$SELECT m.what FROM ext_member m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	   WHERE c.relowner <> 'credits_owner'::regrole$$,
	'every table, view and sequence of the extension is owned by credits_owner');
SELECT is_empty($$SELECT sig FROM ext_fn WHERE proowner <> 'credits_owner'::regrole$$,
				'every function of the extension is owned by credits_owner');
SELECT is_empty(
	$$SELECT m.what FROM ext_member m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
	   WHERE t.typowner <> 'credits_owner'::regrole$$,
	'every type of the extension is owned by credits_owner');
SELECT is_empty(
	$$SELECT what FROM ext_member
	   WHERE classid NOT IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass)$$,
	'the extension has no member of a kind whose ownership this test does not check');

-- search_path: pinned in every function's definition
SELECT is_empty(
	$$SELECT sig FROM ext_fn WHERE prosecdef
		 AND proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']$$,
	'every SECURITY DEFINER function has exactly SET search_path = pg_catalog, pg_temp');
SELECT is_empty(
	$$SELECT sig FROM ext_fn WHERE prokind <> 'p' AND proname <> 'ledger_row_hash'
		 AND proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']$$,
	'every function (procedures and ledger_row_hash aside) has exactly SET search_path = pg_catalog, pg_temp');
SELECT is_empty(
	$$SELECT sig FROM ext_fn f JOIN pg_proc p ON p.oid = f.oid
	   WHERE f.proname = 'ledger_row_hash'
		 AND (p.prosecdef OR p.provolatile <> 'i' OR p.proconfig IS NOT NULL)$$,
	'ledger_row_hash, without the clause, is IMMUTABLE and not SECURITY DEFINER');
SELECT is_empty(
	$$SELECT sig FROM ext_fn f JOIN pg_proc p ON p.oid = f.oid JOIN pg_language l ON l.oid = p.prolang
	   WHERE p.proname LIKE 'credit\_%' AND NOT (f.prosecdef AND l.lanname = 'c')$$,
	'every credit_* function is a SECURITY DEFINER C function');
-- 1.0's C symbols run the frozen 1.0 code (src/v1_0/): a 1.1 definition
-- must bind <name>_1_1 (src/credits.c)
SELECT is_empty(
	$$SELECT f.sig || ' binds ' || p.prosrc FROM ext_fn f JOIN pg_proc p ON p.oid = f.oid
	   WHERE p.prosrc IN ('credit_init', 'credit_deduct', 'credit_add', 'credit_balance',
						  'credit_history', 'credit_verify', 'credit_verify_all', 'credit_rebuild',
						  'credit_hold', 'credit_capture', 'credit_release', 'credit_available',
						  'credit_expire_holds', 'credit_cost', 'credit_charge', 'credit_grant',
						  'credit_expire_grants', 'credit_subscribe', 'credit_renew', 'credit_usage')$$,
	'no function of the extension binds a C symbol of 1.0');

-- the role table
SELECT is_empty($$SELECT sig FROM ext_fn WHERE proname NOT IN (SELECT name FROM role_table)$$,
				'every function of the extension is in the role table (add new ones to it, to the privileges section and to README)');
SELECT is_empty(
	$$SELECT f.sig FROM ext_fn f JOIN role_table t ON t.name = f.proname
	   WHERE has_function_privilege('credits_app', f.oid, 'EXECUTE') IS DISTINCT FROM t.app$$,
	'credits_app can EXECUTE exactly the functions of its column');
SELECT is_empty(
	$$SELECT f.sig FROM ext_fn f JOIN role_table t ON t.name = f.proname
	   WHERE has_function_privilege('credits_ops', f.oid, 'EXECUTE') IS DISTINCT FROM t.ops$$,
	'credits_ops can EXECUTE exactly the functions of its column');
SELECT is_empty(
	$$SELECT f.sig FROM ext_fn f JOIN role_table t ON t.name = f.proname
	   WHERE has_function_privilege('credits_reader', f.oid, 'EXECUTE') IS DISTINCT FROM t.reader$$,
	'credits_reader can EXECUTE exactly the functions of its column');
SELECT is_empty($$SELECT sig FROM ext_fn WHERE has_function_privilege('public', oid, 'EXECUTE')$$,
				'PUBLIC cannot EXECUTE any function of the extension');

-- the tables: credits_app nothing, credits_reader SELECT, credits_ops SELECT
-- and INSERT on prices and plans
SELECT is_empty(
	$$SELECT c.oid::regclass::text || ' ' || p.priv FROM pg_class c,
			 unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(priv)
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
		 AND (has_table_privilege('credits_app', c.oid, p.priv) OR has_table_privilege('public', c.oid, p.priv))$$,
	'credits_app and PUBLIC have no privilege on any table or view');
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind = 'S'
		 AND (has_sequence_privilege('credits_app', c.oid, 'USAGE, SELECT, UPDATE')
			  OR has_sequence_privilege('credits_ops', c.oid, 'USAGE, UPDATE')
			  OR has_sequence_privilege('credits_reader', c.oid, 'USAGE, UPDATE'))$$,
	'no role can use or advance the sequences');
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
		 AND NOT (has_table_privilege('credits_reader', c.oid, 'SELECT')
				  AND has_table_privilege('credits_ops', c.oid, 'SELECT'))$$,
	'credits_reader and credits_ops can SELECT every table and view');
SELECT is_empty(
	$$SELECT c.oid::regclass::text || ' ' || p.priv FROM pg_class c,
			 unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(priv)
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
		 AND has_table_privilege('credits_reader', c.oid, p.priv)$$,
	'credits_reader cannot change any table');
SELECT is_empty(
	$$SELECT c.oid::regclass::text || ' ' || p.priv FROM pg_class c,
			 unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(priv)
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
		 AND has_table_privilege('credits_ops', c.oid, p.priv)
		 AND NOT (p.priv = 'INSERT' AND c.oid IN ('credits.prices'::regclass, 'credits.plans'::regclass))$$,
	'credits_ops can change no table but by INSERT into prices and plans');
SELECT table_privs_are('credits', 'prices', 'credits_ops', ARRAY['INSERT', 'SELECT'], 'credits_ops has INSERT and SELECT on credits.prices');
SELECT table_privs_are('credits', 'plans', 'credits_ops', ARRAY['INSERT', 'SELECT'], 'credits_ops has INSERT and SELECT on credits.plans');

-- Acting as the roles.  The tap_* roles are login-less members, the way an
-- application's login role would be granted credits_app.
CREATE ROLE tap_app NOLOGIN IN ROLE credits_app;
CREATE ROLE tap_ops NOLOGIN IN ROLE credits_ops;
CREATE ROLE tap_reader NOLOGIN IN ROLE credits_reader;
CREATE ROLE tap_nobody NOLOGIN;

-- Defect 1 of issue 9: credits.default_credits decides an amount, so an
-- application role cannot change it by any route.
SET LOCAL ROLE tap_app;
SELECT throws_ok($$SET credits.default_credits = 1000000$$, '42501', NULL,
				 'a member of credits_app cannot SET credits.default_credits');
SELECT throws_ok($$SET LOCAL credits.default_credits = 1000000$$, '42501', NULL,
				 'a member of credits_app cannot SET LOCAL credits.default_credits');
SELECT throws_ok($$SELECT set_config('credits.default_credits', '1000000', false)$$, '42501', NULL,
				 'a member of credits_app cannot set_config() credits.default_credits');
SELECT throws_ok($$ALTER ROLE tap_app SET credits.default_credits = 1000000$$, '42501', NULL,
				 'a member of credits_app cannot ALTER ROLE ... SET credits.default_credits');
SELECT is((SELECT balance FROM credits.credit_init('tap-default')), 100::bigint,
		  'credit_init without an amount still grants the default 100');
SELECT is(current_setting('credits.default_credits'), '100', 'the setting is unchanged');
RESET ROLE;
SELECT is((SELECT setting FROM pg_settings WHERE name = 'credits.default_credits'), '100', 'the superuser sees 100');
SELECT is((SELECT context FROM pg_settings WHERE name = 'credits.default_credits'), 'superuser',
		  'credits.default_credits is a superuser-only setting');

-- credits_app: spends and reads
SET LOCAL ROLE tap_app;
SELECT is((SELECT balance FROM credits.credit_init('tap-priv', 100)), 100::bigint,
		  'a member of credits_app opens an account with credit_init');
SELECT is((SELECT balance FROM credits.credit_deduct('tap-priv', 10, 'chat_message')), 90::bigint,
		  'a member of credits_app deducts with credit_deduct');
SELECT is((SELECT balance FROM credits.credit_add('tap-priv', 5, 'purchase')), 95::bigint,
		  'a member of credits_app adds with credit_add');
SELECT is(credits.credit_balance('tap-priv'), 95::bigint, 'a member of credits_app reads the balance');
SELECT is((SELECT count(*)::int FROM credits.credit_history('tap-priv')), 3,
		  'a member of credits_app reads the history');
SELECT is((SELECT valid FROM credits.credit_verify('tap-priv')), true, 'a member of credits_app verifies one account');
SELECT throws_ok($$SELECT * FROM credits.credit_verify_all()$$, '42501', NULL,
				 'a member of credits_app cannot run credit_verify_all');
SELECT throws_ok($$SELECT credits.credit_rebuild('tap-priv')$$, '42501', NULL,
				 'a member of credits_app cannot run credit_rebuild');
SELECT throws_ok($$SELECT credits.credit_renew()$$, '42501', NULL,
				 'a member of credits_app cannot run credit_renew');
SELECT throws_ok($$SELECT credits.credit_expire_holds()$$, '42501', NULL,
				 'a member of credits_app cannot run credit_expire_holds');
SELECT throws_ok($$SELECT credits.credit_expire_grants()$$, '42501', NULL,
				 'a member of credits_app cannot run credit_expire_grants');
SELECT throws_ok($$INSERT INTO credits.prices (action, unit, rate) VALUES ('chat_message', 'message', 1)$$,
				 '42501', NULL, 'a member of credits_app cannot change a price');
SELECT throws_ok($$INSERT INTO credits.plans (plan, allowance) VALUES ('pro', 1000000)$$,
				 '42501', NULL, 'a member of credits_app cannot change a plan');
SELECT throws_ok($$INSERT INTO credits.ledger (user_id, amount, balance_after, action) VALUES ('tap-priv', 1000, 1095, 'forged')$$,
				 '42501', NULL, 'a member of credits_app cannot INSERT into the ledger');
SELECT throws_ok($$UPDATE credits.accounts SET balance = 1000000 WHERE user_id = 'tap-priv'$$,
				 '42501', NULL, 'a member of credits_app cannot UPDATE accounts');
SELECT throws_ok($$SELECT * FROM credits.ledger$$,
				 '42501', NULL, 'a member of credits_app cannot read the ledger table directly');
SELECT throws_ok($$SELECT credits.sync_sleep()$$, '42501', NULL, 'a member of credits_app cannot call sync_sleep');
RESET ROLE;

-- credits_ops: jobs, rebuilds, verification, prices and plans; no spending
UPDATE credits.accounts SET balance = 1 WHERE user_id = 'tap-priv';
SET LOCAL ROLE tap_ops;
SELECT is((SELECT count(*)::int FROM credits.credit_verify_all() WHERE user_id = 'tap-priv'), 1,
		  'a member of credits_ops runs credit_verify_all and sees the damaged account');
SELECT is(credits.credit_rebuild('tap-priv'), 95::bigint, 'a member of credits_ops runs credit_rebuild');
SELECT lives_ok($$SELECT credits.credit_renew(), credits.credit_expire_holds(), credits.credit_expire_grants()$$,
				'a member of credits_ops runs the renewal and expiry jobs');
SELECT lives_ok($$INSERT INTO credits.prices (action, unit, rate, valid_from) VALUES ('tap_action', 'call', 7, now())$$,
				'a member of credits_ops adds a price');
SELECT lives_ok($$INSERT INTO credits.plans (plan, allowance, valid_from) VALUES ('tap_plan', 42, now())$$,
				'a member of credits_ops adds a plan');
SELECT is(credits.credit_cost('tap_action', 2), 14::bigint, 'the new price is in force');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE user_id = 'tap-priv'), 3, 'a member of credits_ops reads the ledger');
SELECT throws_ok($$UPDATE credits.prices SET rate = 1$$, '42501', NULL, 'a member of credits_ops cannot rewrite a price');
SELECT throws_ok($$DELETE FROM credits.plans$$, '42501', NULL, 'a member of credits_ops cannot delete a plan');
SELECT throws_ok($$SELECT * FROM credits.credit_deduct('tap-priv', 1, 'chat_message')$$, '42501', NULL,
				 'a member of credits_ops cannot call credit_deduct');
SELECT throws_ok($$SELECT * FROM credits.credit_add('tap-priv', 1, 'purchase')$$, '42501', NULL,
				 'a member of credits_ops cannot call credit_add');
SELECT throws_ok($$SELECT * FROM credits.credit_grant('tap-priv', 1, 'promo')$$, '42501', NULL,
				 'a member of credits_ops cannot call credit_grant');
SELECT throws_ok($$INSERT INTO credits.ledger (user_id, amount, balance_after, action) VALUES ('tap-priv', 1000, 1095, 'forged')$$,
				 '42501', NULL, 'a member of credits_ops cannot INSERT into the ledger');
RESET ROLE;

-- credits_reader: reads
SET LOCAL ROLE tap_reader;
SELECT is((SELECT sum(amount)::bigint FROM credits.ledger WHERE user_id = 'tap-priv'), 95::bigint,
		  'a member of credits_reader reads the ledger');
SELECT is(credits.credit_balance('tap-priv'), 95::bigint, 'a member of credits_reader calls credit_balance');
SELECT is_empty($$SELECT * FROM credits.credit_verify_all() WHERE user_id = 'tap-priv'$$,
				'a member of credits_reader calls credit_verify_all');
SELECT throws_ok($$SELECT * FROM credits.credit_deduct('tap-priv', 1, 'chat_message')$$,
				 '42501', NULL, 'a member of credits_reader cannot call credit_deduct');
SELECT throws_ok($$SELECT * FROM credits.credit_add('tap-priv', 1, 'purchase')$$,
				 '42501', NULL, 'a member of credits_reader cannot call credit_add');
SELECT throws_ok($$SELECT credits.credit_rebuild('tap-priv')$$, '42501', NULL,
				 'a member of credits_reader cannot call credit_rebuild');
SELECT throws_ok($$INSERT INTO credits.prices (action, unit, rate) VALUES ('chat_message', 'message', 1)$$,
				 '42501', NULL, 'a member of credits_reader cannot change a price');
RESET ROLE;

SET LOCAL ROLE tap_nobody;
SELECT throws_ok($$SELECT * FROM credits.credit_deduct('tap-priv', 1, 'chat_message')$$,
				 '42501', NULL, 'a role with no grant cannot call credit_deduct');
SELECT throws_ok($$SELECT credits.credit_balance('tap-priv')$$,
				 '42501', NULL, 'a role with no grant cannot call credit_balance');
RESET ROLE;

-- The functions run as credits_owner, not as a superuser.
SELECT is((SELECT r.rolsuper FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
			WHERE p.oid = 'credits.credit_deduct(text, bigint, text, jsonb, text)'::regprocedure), false,
		  'credit_deduct runs as a role that is not a superuser');
SELECT is(credits.credit_balance('tap-priv'), 95::bigint, 'the refused calls changed nothing');

SELECT * FROM finish();
ROLLBACK;
