-- pgTAP: roles and privileges.  credits_app may call every credit_*
-- function and may not write the tables; credits_reader may read the tables
-- and may not call the mutating functions; PUBLIC gets nothing; the
-- functions run as their owner (SECURITY DEFINER).  Checked in the catalogs
-- and by acting as login-less roles that are granted the two roles.
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(41);

-- the roles
SELECT has_role('credits_app');
SELECT has_role('credits_reader');
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = 'credits_app'), false, 'credits_app is NOLOGIN');
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = 'credits_reader'), false, 'credits_reader is NOLOGIN');
SELECT is((SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication
			 FROM pg_roles WHERE rolname = 'credits_app'), false, 'credits_app has no role attributes');
SELECT is((SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication
			 FROM pg_roles WHERE rolname = 'credits_reader'), false, 'credits_reader has no role attributes');
SELECT schema_privs_are('credits', 'credits_app', ARRAY['USAGE'], 'credits_app has USAGE (only) on schema credits');
SELECT schema_privs_are('credits', 'credits_reader', ARRAY['USAGE'], 'credits_reader has USAGE (only) on schema credits');

-- the functions: SECURITY DEFINER, owned by a superuser
SELECT cmp_ok((SELECT count(*)::int FROM pg_proc
				WHERE pronamespace = 'credits'::regnamespace AND proname LIKE 'credit\_%'),
			  '>=', 8, 'schema credits has the eight core credit_* functions (at least)');
SELECT is_empty(
	$$SELECT oid::regprocedure::text FROM pg_proc
	   WHERE pronamespace = 'credits'::regnamespace AND proname LIKE 'credit\_%' AND NOT prosecdef$$,
	'every credit_* function is SECURITY DEFINER');
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
	   WHERE p.pronamespace = 'credits'::regnamespace AND p.proname LIKE 'credit\_%' AND NOT r.rolsuper$$,
	'every credit_* function is owned by a superuser');
SELECT is_definer('credits', 'credit_deduct', ARRAY['text', 'bigint', 'text', 'jsonb', 'text'],
				  'credit_deduct is SECURITY DEFINER');

-- credits_app: every credit_* function, no writes
SELECT is_empty(
	$$SELECT oid::regprocedure::text FROM pg_proc
	   WHERE pronamespace = 'credits'::regnamespace AND proname LIKE 'credit\_%'
		 AND proname NOT IN ('credit_expire_holds', 'credit_expire_grants', 'credit_renew')
		 AND NOT has_function_privilege('credits_app', oid, 'EXECUTE')$$,
	'credits_app can EXECUTE every credit_* function but the jobs (credits_ops'')');
SELECT is_empty(
	$$SELECT c.oid::regclass::text || ' ' || p.priv FROM pg_class c,
			 unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(priv)
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
		 AND has_table_privilege('credits_app', c.oid, p.priv)$$,
	'credits_app has no INSERT, UPDATE, DELETE or TRUNCATE on any table of schema credits');
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'credits'::regnamespace
		 AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('credits_app', c.oid, 'UPDATE') END$$,
	'credits_app cannot advance the sequences of schema credits');
SELECT table_privs_are('credits', 'accounts', 'credits_app', ARRAY[]::text[], 'credits_app has no privilege on credits.accounts');
SELECT table_privs_are('credits', 'ledger', 'credits_app', ARRAY[]::text[], 'credits_app has no privilege on credits.ledger');
SELECT table_privs_are('credits', 'account_events', 'credits_app', ARRAY[]::text[], 'credits_app has no privilege on credits.account_events');

-- credits_reader: SELECT on the tables, no mutating function
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'p')
		 AND NOT has_table_privilege('credits_reader', c.oid, 'SELECT')$$,
	'credits_reader can SELECT every table of schema credits');
SELECT is_empty(
	$$SELECT c.oid::regclass::text || ' ' || p.priv FROM pg_class c,
			 unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(priv)
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
		 AND has_table_privilege('credits_reader', c.oid, p.priv)$$,
	'credits_reader has no INSERT, UPDATE, DELETE or TRUNCATE on any table of schema credits');
SELECT table_privs_are('credits', 'ledger', 'credits_reader', ARRAY['SELECT'], 'credits_reader has SELECT only on credits.ledger');
SELECT function_privs_are('credits', 'credit_deduct', ARRAY['text', 'bigint', 'text', 'jsonb', 'text'],
						  'credits_reader', ARRAY[]::text[], 'credits_reader cannot EXECUTE credit_deduct');
SELECT function_privs_are('credits', 'credit_add', ARRAY['text', 'bigint', 'text', 'jsonb', 'text'],
						  'credits_reader', ARRAY[]::text[], 'credits_reader cannot EXECUTE credit_add');
SELECT function_privs_are('credits', 'credit_init', ARRAY['text', 'bigint', 'jsonb'],
						  'credits_reader', ARRAY[]::text[], 'credits_reader cannot EXECUTE credit_init');
SELECT function_privs_are('credits', 'credit_rebuild', ARRAY['text'],
						  'credits_reader', ARRAY[]::text[], 'credits_reader cannot EXECUTE credit_rebuild');
SELECT function_privs_are('credits', 'credit_balance', ARRAY['text'],
						  'credits_reader', ARRAY['EXECUTE'], 'credits_reader can EXECUTE credit_balance');

-- PUBLIC: nothing
SELECT is_empty(
	$$SELECT oid::regprocedure::text FROM pg_proc
	   WHERE pronamespace = 'credits'::regnamespace AND proname LIKE 'credit\_%'
		 AND has_function_privilege('public', oid, 'EXECUTE')$$,
	'PUBLIC cannot EXECUTE any credit_* function');
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
		 AND has_table_privilege('public', c.oid, 'SELECT')$$,
	'PUBLIC cannot read any table of schema credits');

-- Acting as the roles.  The tap_* roles are login-less members, the way an
-- application's login role would be granted credits_app.
CREATE ROLE tap_app NOLOGIN IN ROLE credits_app;
CREATE ROLE tap_reader NOLOGIN IN ROLE credits_reader;
CREATE ROLE tap_nobody NOLOGIN;

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
SELECT throws_ok($$INSERT INTO credits.ledger (user_id, amount, balance_after, action) VALUES ('tap-priv', 1000, 1095, 'forged')$$,
				 '42501', NULL, 'a member of credits_app cannot INSERT into the ledger');
SELECT throws_ok($$UPDATE credits.accounts SET balance = 1000000 WHERE user_id = 'tap-priv'$$,
				 '42501', NULL, 'a member of credits_app cannot UPDATE accounts');
SELECT throws_ok($$SELECT * FROM credits.ledger$$,
				 '42501', NULL, 'a member of credits_app cannot read the ledger table directly');
RESET ROLE;

SET LOCAL ROLE tap_reader;
SELECT is((SELECT sum(amount)::bigint FROM credits.ledger WHERE user_id = 'tap-priv'), 95::bigint,
		  'a member of credits_reader reads the ledger');
SELECT throws_ok($$SELECT * FROM credits.credit_deduct('tap-priv', 1, 'chat_message')$$,
				 '42501', NULL, 'a member of credits_reader cannot call credit_deduct');
SELECT throws_ok($$SELECT * FROM credits.credit_add('tap-priv', 1, 'purchase')$$,
				 '42501', NULL, 'a member of credits_reader cannot call credit_add');
RESET ROLE;

SET LOCAL ROLE tap_nobody;
SELECT throws_ok($$SELECT * FROM credits.credit_deduct('tap-priv', 1, 'chat_message')$$,
				 '42501', NULL, 'a role with no grant cannot call credit_deduct');
RESET ROLE;

SELECT is(credits.credit_balance('tap-priv'), 95::bigint, 'the refused calls changed nothing');

SELECT * FROM finish();
ROLLBACK;
