-- pgTAP: the ledger is append-only for every role.  UPDATE, DELETE and
-- TRUNCATE fail with SQLSTATE CR020 for the superuser running this test,
-- also under session_replication_role = replica (the triggers are ENABLE
-- ALWAYS), and the rows are unchanged afterwards.
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(14);

SELECT ok((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), 'this test runs as a superuser');

SELECT is((SELECT balance FROM credits.credit_init('tap-append', 50)), 50::bigint, 'an account with one ledger row');
SELECT is((SELECT balance FROM credits.credit_deduct('tap-append', 20, 'chat_message')), 30::bigint, 'and a second row');
CREATE TEMP TABLE before AS SELECT * FROM credits.ledger WHERE user_id = 'tap-append';

SELECT throws_ok($$UPDATE credits.ledger SET amount = 1000 WHERE user_id = 'tap-append'$$,
				 'CR020', NULL, 'UPDATE of the ledger fails with CR020');
SELECT throws_ok($$UPDATE credits.ledger SET metadata = '{"x": 1}'$$,
				 'CR020', NULL, 'UPDATE of every row fails with CR020');
SELECT throws_ok($$DELETE FROM credits.ledger WHERE user_id = 'tap-append'$$,
				 'CR020', NULL, 'DELETE from the ledger fails with CR020');
SELECT throws_ok($$TRUNCATE credits.ledger$$,
				 'CR020', NULL, 'TRUNCATE of the ledger fails with CR020');
SELECT throws_ok($$TRUNCATE credits.ledger, credits.accounts$$,
				 'CR020', NULL, 'TRUNCATE of the ledger together with accounts fails with CR020');
SELECT throws_ok($$INSERT INTO credits.ledger (id, user_id, amount, balance_after, action)
				   SELECT id, user_id, amount, balance_after, action FROM credits.ledger WHERE user_id = 'tap-append'
				   ON CONFLICT (id) DO UPDATE SET amount = 0$$,
				 'CR020', NULL, 'INSERT ... ON CONFLICT DO UPDATE fails with CR020');

SET LOCAL session_replication_role = replica;
SELECT throws_ok($$DELETE FROM credits.ledger WHERE user_id = 'tap-append'$$,
				 'CR020', NULL, 'DELETE fails with CR020 under session_replication_role = replica');
SELECT throws_ok($$UPDATE credits.ledger SET amount = 0 WHERE user_id = 'tap-append'$$,
				 'CR020', NULL, 'UPDATE fails with CR020 under session_replication_role = replica');
SELECT throws_ok($$TRUNCATE credits.ledger$$,
				 'CR020', NULL, 'TRUNCATE fails with CR020 under session_replication_role = replica');
SET LOCAL session_replication_role = origin;

SELECT set_eq($$SELECT * FROM credits.ledger WHERE user_id = 'tap-append'$$,
			  $$SELECT * FROM pg_temp.before$$,
			  'the ledger rows are unchanged');
SELECT is_empty($$SELECT * FROM credits.credit_verify_all()$$, 'the balances still agree with the ledger');

SELECT * FROM finish();
ROLLBACK;
