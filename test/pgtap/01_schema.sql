-- pgTAP: the schema contract of sql/credits.sql (tables, columns, types,
-- keys, indexes, the append-only triggers, pg_dump configuration, and the
-- core functions' shapes).  Run by .ci/test.sh in a fresh database with
-- the extension; everything here is rolled back.
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(83);

SELECT has_extension('credits', 'extension credits is installed');
SELECT has_schema('credits');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'credits'),
		  (SELECT default_version FROM pg_available_extensions WHERE name = 'credits'),
		  'the installed version is the control file''s default_version');
SELECT is((SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
			WHERE e.extname = 'credits'), 'credits', 'the extension lives in schema credits');

-- credits.accounts
SELECT has_table('credits', 'accounts', 'table credits.accounts');
SELECT col_is_pk('credits', 'accounts', 'user_id', 'accounts: user_id is the primary key');
SELECT col_type_is('credits', 'accounts', 'user_id', 'text', 'accounts.user_id is text');
SELECT col_type_is('credits', 'accounts', 'balance', 'bigint', 'accounts.balance is bigint');
SELECT col_not_null('credits', 'accounts', 'balance', 'accounts.balance is NOT NULL');
SELECT col_has_check('credits', 'accounts', 'balance', 'accounts.balance has a CHECK');
SELECT col_type_is('credits', 'accounts', 'version', 'bigint', 'accounts.version is bigint');
SELECT col_not_null('credits', 'accounts', 'version', 'accounts.version is NOT NULL');
SELECT col_type_is('credits', 'accounts', 'created_at', 'timestamp with time zone', 'accounts.created_at is timestamptz');
SELECT col_type_is('credits', 'accounts', 'updated_at', 'timestamp with time zone', 'accounts.updated_at is timestamptz');
SELECT throws_ok($$INSERT INTO credits.accounts (user_id, balance) VALUES ('tap-negative', -1)$$,
				 '23514', NULL, 'a negative balance violates a CHECK constraint');
SELECT throws_ok($$INSERT INTO credits.accounts (user_id) VALUES (repeat('x', 257))$$,
				 '23514', NULL, 'a user_id over 256 bytes violates a CHECK constraint');

-- credits.ledger
SELECT has_table('credits', 'ledger', 'table credits.ledger');
SELECT col_is_pk('credits', 'ledger', 'id', 'ledger: id is the primary key');
SELECT col_type_is('credits', 'ledger', 'id', 'bigint', 'ledger.id is bigint');
SELECT col_type_is('credits', 'ledger', 'user_id', 'text', 'ledger.user_id is text');
SELECT col_not_null('credits', 'ledger', 'user_id', 'ledger.user_id is NOT NULL');
SELECT col_type_is('credits', 'ledger', 'amount', 'bigint', 'ledger.amount is bigint');
SELECT col_not_null('credits', 'ledger', 'amount', 'ledger.amount is NOT NULL');
SELECT col_type_is('credits', 'ledger', 'balance_after', 'bigint', 'ledger.balance_after is bigint');
SELECT col_not_null('credits', 'ledger', 'balance_after', 'ledger.balance_after is NOT NULL');
SELECT col_type_is('credits', 'ledger', 'action', 'text', 'ledger.action is text');
SELECT col_not_null('credits', 'ledger', 'action', 'ledger.action is NOT NULL');
SELECT col_type_is('credits', 'ledger', 'metadata', 'jsonb', 'ledger.metadata is jsonb');
SELECT col_not_null('credits', 'ledger', 'metadata', 'ledger.metadata is NOT NULL');
SELECT col_type_is('credits', 'ledger', 'idempotency_key', 'text', 'ledger.idempotency_key is text');
SELECT col_is_null('credits', 'ledger', 'idempotency_key', 'ledger.idempotency_key is nullable');
SELECT col_type_is('credits', 'ledger', 'created_at', 'timestamp with time zone', 'ledger.created_at is timestamptz');
SELECT col_not_null('credits', 'ledger', 'created_at', 'ledger.created_at is NOT NULL');
SELECT col_type_is('credits', 'ledger', 'txid', 'bigint', 'ledger.txid is bigint (clients cannot read xid8)');
SELECT col_not_null('credits', 'ledger', 'txid', 'ledger.txid is NOT NULL');
SELECT col_default_is('credits', 'ledger', 'txid', 'txid_current()',
					  'ledger.txid defaults to the writing transaction');
SELECT has_sequence('credits', 'ledger_id_seq', 'sequence credits.ledger_id_seq');
SELECT is((SELECT pg_get_serial_sequence('credits.ledger', 'id')), 'credits.ledger_id_seq',
		  'ledger.id is fed by credits.ledger_id_seq, owned by the column');

SELECT has_index('credits', 'ledger', 'ledger_user_time_idx', ARRAY['user_id', 'created_at', 'id'],
				 'ledger_user_time_idx on (user_id, created_at, id) for per-user history');
-- indoption 3 = INDOPTION_DESC | INDOPTION_NULLS_FIRST
SELECT is((SELECT indoption::text FROM pg_index WHERE indexrelid = 'credits.ledger_user_time_idx'::regclass),
		  '0 3 3', 'ledger_user_time_idx sorts created_at and id descending');
SELECT col_type_is('credits', 'ledger', 'hash', 'bytea', 'ledger.hash is bytea (the per-user hash chain)');
SELECT has_index('credits', 'ledger', 'ledger_user_idempotency_key_idx', ARRAY['user_id', 'idempotency_key'],
				 'ledger_user_idempotency_key_idx on (user_id, idempotency_key)');
SELECT index_is_unique('credits', 'ledger', 'ledger_user_idempotency_key_idx',
					   'idempotency keys are unique per user');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
			WHERE indexrelid = 'credits.ledger_user_idempotency_key_idx'::regclass),
		  '(idempotency_key IS NOT NULL)', 'the idempotency index covers only rows with a key');
SELECT has_index('credits', 'ledger', 'ledger_txid_idx', ARRAY['txid', 'id'],
				 'ledger_txid_idx on (txid, id) for the sync cursor');

-- credits.account_events
SELECT has_table('credits', 'account_events', 'table credits.account_events');
SELECT col_is_pk('credits', 'account_events', 'id', 'account_events: id is the primary key');
SELECT col_type_is('credits', 'account_events', 'id', 'bigint', 'account_events.id is bigint');
SELECT col_type_is('credits', 'account_events', 'user_id', 'text', 'account_events.user_id is text');
SELECT col_type_is('credits', 'account_events', 'event', 'text', 'account_events.event is text');
SELECT col_type_is('credits', 'account_events', 'detail', 'jsonb', 'account_events.detail is jsonb');
SELECT col_type_is('credits', 'account_events', 'txid', 'bigint', 'account_events.txid is bigint');
SELECT col_default_is('credits', 'account_events', 'txid', 'txid_current()',
					  'account_events.txid defaults to the writing transaction');
SELECT has_index('credits', 'account_events', 'account_events_txid_idx', ARRAY['txid', 'id'],
				 'account_events_txid_idx on (txid, id) for the sync cursor');
SELECT has_index('credits', 'account_events', 'account_events_user_idx', ARRAY['user_id', 'id'],
				 'account_events_user_idx on (user_id, id)');

-- the append-only triggers, enabled ALWAYS (so also under
-- session_replication_role = replica)
SELECT has_trigger('credits', 'ledger', 'ledger_refuse_update_delete', 'ledger has its UPDATE/DELETE trigger');
SELECT has_trigger('credits', 'ledger', 'ledger_refuse_truncate', 'ledger has its TRUNCATE trigger');
SELECT trigger_is('credits', 'ledger', 'ledger_refuse_update_delete', 'credits', 'ledger_refuse_change',
				  'the UPDATE/DELETE trigger calls credits.ledger_refuse_change()');
SELECT trigger_is('credits', 'ledger', 'ledger_refuse_truncate', 'credits', 'ledger_refuse_change',
				  'the TRUNCATE trigger calls credits.ledger_refuse_change()');
SELECT is((SELECT tgenabled::text FROM pg_trigger
			WHERE tgrelid = 'credits.ledger'::regclass AND tgname = 'ledger_refuse_update_delete'),
		  'A', 'the UPDATE/DELETE trigger is ENABLE ALWAYS');
SELECT is((SELECT tgenabled::text FROM pg_trigger
			WHERE tgrelid = 'credits.ledger'::regclass AND tgname = 'ledger_refuse_truncate'),
		  'A', 'the TRUNCATE trigger is ENABLE ALWAYS');
-- tgtype bits: 1 ROW, 2 BEFORE, 8 DELETE, 16 UPDATE, 32 TRUNCATE
SELECT is((SELECT (tgtype & (1 | 2 | 8 | 16))::int FROM pg_trigger
			WHERE tgrelid = 'credits.ledger'::regclass AND tgname = 'ledger_refuse_update_delete'),
		  1 | 2 | 8 | 16, 'the UPDATE/DELETE trigger fires BEFORE, for each row, on UPDATE and DELETE');
SELECT is((SELECT (tgtype & (2 | 32))::int FROM pg_trigger
			WHERE tgrelid = 'credits.ledger'::regclass AND tgname = 'ledger_refuse_truncate'),
		  2 | 32, 'the TRUNCATE trigger fires BEFORE TRUNCATE');

-- pg_dump keeps the data: every table and sequence of the extension is a
-- configuration relation
SELECT set_has(
	$$SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'credits'$$,
	$$VALUES ('credits.accounts'), ('credits.ledger'), ('credits.ledger_id_seq'),
			 ('credits.account_events'), ('credits.account_events_id_seq')$$,
	'the core tables and sequences are in pg_extension.extconfig');
SELECT is_empty(
	$$SELECT c.oid::regclass::text FROM pg_class c
	   WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'p', 'S')
		 AND c.oid <> ALL (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'credits')$$,
	'every table and sequence in schema credits is dumped by pg_dump (pg_extension_config_dump)');

-- the core functions: names, arguments, results, C
SELECT has_function('credits', 'credit_init', ARRAY['text', 'bigint', 'jsonb']);
SELECT has_function('credits', 'credit_deduct', ARRAY['text', 'bigint', 'text', 'jsonb', 'text']);
SELECT has_function('credits', 'credit_add', ARRAY['text', 'bigint', 'text', 'jsonb', 'text']);
SELECT has_function('credits', 'credit_balance', ARRAY['text']);
SELECT has_function('credits', 'credit_history', ARRAY['text', 'integer', 'timestamp with time zone', 'timestamp with time zone', 'bigint']);
SELECT has_function('credits', 'credit_verify', ARRAY['text']);
SELECT has_function('credits', 'credit_verify_all', ARRAY[]::text[]);
SELECT has_function('credits', 'credit_rebuild', ARRAY['text']);
SELECT is(pg_get_function_result('credits.credit_init(text, bigint, jsonb)'::regprocedure),
		  'TABLE(tx_id bigint, balance bigint, created_at timestamp with time zone)',
		  'credit_init returns TABLE(tx_id, balance, created_at)');
SELECT is(pg_get_function_result('credits.credit_deduct(text, bigint, text, jsonb, text)'::regprocedure),
		  'TABLE(tx_id bigint, balance bigint, created_at timestamp with time zone)',
		  'credit_deduct returns TABLE(tx_id, balance, created_at)');
SELECT is(pg_get_function_result('credits.credit_add(text, bigint, text, jsonb, text)'::regprocedure),
		  'TABLE(tx_id bigint, balance bigint, created_at timestamp with time zone)',
		  'credit_add returns TABLE(tx_id, balance, created_at)');
SELECT function_returns('credits', 'credit_balance', ARRAY['text'], 'bigint');
SELECT is(pg_get_function_result('credits.credit_history(text, int, timestamptz, timestamptz, bigint)'::regprocedure),
		  'TABLE(id bigint, user_id text, amount bigint, balance_after bigint, action text, metadata jsonb, idempotency_key text, created_at timestamp with time zone)',
		  'credit_history returns the ledger''s public columns (no txid, no hash)');
SELECT is(pg_get_function_result('credits.credit_verify(text)'::regprocedure),
		  'TABLE(valid boolean, cached bigint, calculated bigint, difference bigint, broken_tx_id bigint, problem text)',
		  'credit_verify returns TABLE(valid, cached, calculated, difference, broken_tx_id, problem)');
SELECT is(pg_get_function_result('credits.credit_verify_all()'::regprocedure),
		  'TABLE(user_id text, cached bigint, calculated bigint, difference bigint, broken_tx_id bigint, problem text)',
		  'credit_verify_all returns TABLE(user_id, cached, calculated, difference, broken_tx_id, problem)');
SELECT function_returns('credits', 'credit_balance_at', ARRAY['text', 'timestamp with time zone'], 'bigint');
SELECT function_returns('credits', 'credit_rebuild', ARRAY['text'], 'bigint');
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
	   WHERE p.pronamespace = 'credits'::regnamespace
		 AND p.proname IN ('credit_init', 'credit_deduct', 'credit_add', 'credit_balance',
						   'credit_history', 'credit_verify', 'credit_verify_all', 'credit_rebuild')
		 AND l.lanname <> 'c'$$,
	'the core functions are written in C');

SELECT * FROM finish();
ROLLBACK;
