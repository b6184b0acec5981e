-- pgTAP: the functions are safe under a hostile search_path.
--
-- Schema "hostile" shadows what the extension's queries could resolve by
-- name: tables accounts/ledger/account_events, the operators = <> < <= >
-- >= + - on text and bigint, * / on numeric, comparisons on timestamptz and
-- timestamptz + interval, now(), ceil(), sum(bigint), jsonb_typeof() and
-- octet_length().  Every shadowing function records that it was called and
-- returns a wrong answer.  A login-less member of credits_app then calls the
-- core and billing functions with search_path = hostile, pg_catalog
-- (pg_catalog explicitly last, so the shadows win), and the results must be
-- the right ones, with no shadow called and the hostile tables untouched.
-- Last, the same through a definition without the SET clause, as 1.0's.
--
-- pgTAP itself cannot run under that search_path, so the calls store their
-- results in a temporary table and the assertions come after RESET.
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(27);

-- credits_ops too: the steps include credit_verify_all and credit_rebuild
CREATE ROLE tap_sp_app NOLOGIN IN ROLE credits_app, credits_ops;

CREATE SCHEMA hostile;
GRANT USAGE ON SCHEMA hostile TO PUBLIC;
CREATE TABLE hostile.hijacked (what text NOT NULL);
GRANT INSERT, SELECT ON hostile.hijacked TO PUBLIC;

CREATE TABLE hostile.accounts (user_id text, balance bigint, held bigint DEFAULT 0, version bigint DEFAULT 1,
							   created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE hostile.ledger (LIKE credits.ledger);
CREATE TABLE hostile.account_events (LIKE credits.account_events);
INSERT INTO hostile.accounts (user_id, balance) VALUES ('tap-sp', 999999);
GRANT ALL ON hostile.accounts, hostile.ledger, hostile.account_events TO PUBLIC;
CREATE TEMP TABLE accounts (user_id text, balance bigint);
INSERT INTO pg_temp.accounts VALUES ('tap-sp', 888888);
GRANT ALL ON pg_temp.accounts TO PUBLIC;

CREATE FUNCTION hostile.t_true(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('text operator'); RETURN true; END$$;
CREATE FUNCTION hostile.t_false(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('text operator'); RETURN false; END$$;
CREATE FUNCTION hostile.b_true(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('bigint comparison'); RETURN true; END$$;
CREATE FUNCTION hostile.b_false(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('bigint comparison'); RETURN false; END$$;
CREATE FUNCTION hostile.b_big(a bigint, b bigint) RETURNS bigint LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('bigint arithmetic'); RETURN 1000000; END$$;
CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.t_true);
CREATE OPERATOR hostile.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.t_false);
CREATE OPERATOR hostile.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.<> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_false);
CREATE OPERATOR hostile.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.<= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_true);
CREATE OPERATOR hostile.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_big);
CREATE OPERATOR hostile.- (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.b_big);
CREATE FUNCTION hostile.n_big(a numeric, b numeric) RETURNS numeric LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('numeric arithmetic'); RETURN 1000000; END$$;
CREATE OPERATOR hostile.* (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = hostile.n_big);
CREATE OPERATOR hostile./ (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = hostile.n_big);
CREATE FUNCTION hostile.ceil(a numeric) RETURNS numeric LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('ceil()'); RETURN 1000000; END$$;
CREATE FUNCTION hostile.ts_true(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('timestamptz comparison'); RETURN true; END$$;
CREATE OPERATOR hostile.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_true);
CREATE OPERATOR hostile.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_true);
CREATE OPERATOR hostile.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_true);
CREATE OPERATOR hostile.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_true);
CREATE FUNCTION hostile.ts_plus(a timestamptz, b interval) RETURNS timestamptz LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('timestamptz + interval'); RETURN '2000-01-01 00:00:00+00'; END$$;
CREATE OPERATOR hostile.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = hostile.ts_plus);
CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('now()'); RETURN '2000-01-01 00:00:00+00'; END$$;
CREATE FUNCTION hostile.jsonb_typeof(j jsonb) RETURNS text LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('jsonb_typeof()'); RETURN 'object'; END$$;
CREATE FUNCTION hostile.octet_length(t text) RETURNS integer LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('octet_length()'); RETURN 1; END$$;
CREATE FUNCTION hostile.sum_step(s bigint, v bigint) RETURNS bigint LANGUAGE plpgsql AS
$$BEGIN INSERT INTO hostile.hijacked VALUES ('sum(bigint)'); RETURN 424242; END$$;
CREATE AGGREGATE hostile.sum(bigint) (SFUNC = hostile.sum_step, STYPE = bigint, INITCOND = '0');

-- The 1.0 SQL definitions (until ALTER EXTENSION credits UPDATE) have no
-- SET clause and are SECURITY DEFINER, owned by the superuser who created
-- the extension: the library must pin the path itself (src/search_path.c).
CREATE FUNCTION hostile.deduct_unpinned(user_id text, amount bigint, action text,
										metadata jsonb DEFAULT '{}', idempotency_key text DEFAULT NULL)
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS '$libdir/credits', 'credit_deduct' LANGUAGE C VOLATILE SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION hostile.deduct_unpinned(text, bigint, text, jsonb, text) TO tap_sp_app;
-- and 1.1's C function, declared without the clause by mistake
CREATE FUNCTION hostile.balance_unpinned(user_id text) RETURNS bigint
	AS '$libdir/credits', 'credit_balance_1_1' LANGUAGE C STABLE SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION hostile.balance_unpinned(text) TO tap_sp_app;

-- step -> result; written under the hostile search_path, so every name in
-- the statements below is qualified and no operator is used
CREATE TEMP TABLE sp_result (step text, tx_id bigint, balance bigint, state text, flag boolean);
GRANT ALL ON pg_temp.sp_result TO tap_sp_app;

SET LOCAL ROLE tap_sp_app;
SET LOCAL search_path = hostile, pg_catalog;

-- Each step records its result, or the error it raised.
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, tx_id, balance) SELECT 'init', r.tx_id, r.balance FROM credits.credit_init('tap-sp', 100) r;
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('init', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, tx_id, balance) SELECT 'deduct', r.tx_id, r.balance FROM credits.credit_deduct('tap-sp', 30, 'chat_message', '{"n": 1}') r;
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('deduct', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, tx_id, balance) SELECT 'add', r.tx_id, r.balance FROM credits.credit_add('tap-sp', 5, 'purchase', '{}', 'tap-sp-key') r;
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('add', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, tx_id, balance) SELECT 'add retry', r.tx_id, r.balance FROM credits.credit_add('tap-sp', 5, 'purchase', '{}', 'tap-sp-key') r;
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('add retry', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, balance) SELECT 'balance', credits.credit_balance('tap-sp');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('balance', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, balance) SELECT 'history', pg_catalog.count(*) FROM credits.credit_history('tap-sp');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('history', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, balance, flag) SELECT 'verify', r.calculated, r.valid FROM credits.credit_verify('tap-sp') r;
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('verify', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, balance) SELECT 'verify_all', pg_catalog.count(*) FROM credits.credit_verify_all();
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('verify_all', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, balance) SELECT 'rebuild', credits.credit_rebuild('tap-sp');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('rebuild', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
-- billing (holds, prices)
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, balance) SELECT 'available', credits.credit_available('tap-sp');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('available', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, tx_id, balance) SELECT 'hold', r.hold_id, r.available FROM credits.credit_hold('tap-sp', 20, 'video_generation') r;
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('hold', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, tx_id, balance) SELECT 'capture', r.tx_id, r.balance FROM pg_temp.sp_result h, credits.credit_capture(h.tx_id, 15) r WHERE h.step OPERATOR(pg_catalog.=) 'hold';
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('capture', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, tx_id, balance) SELECT 'charge', r.tx_id, r.balance FROM credits.credit_charge('tap-sp', 'chat_message', 1) r;
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('charge', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, balance) SELECT 'cost', credits.credit_cost('video_generation', 2.5);
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('cost', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, balance) SELECT 'available after', credits.credit_available('tap-sp');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('available after', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;
DO $$
BEGIN
	PERFORM credits.credit_deduct('tap-sp', 1000, 'chat_message');
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('overdraw', '00000');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('overdraw', SQLSTATE);
END
$$;
DO $$
BEGIN
	PERFORM credits.credit_deduct('tap-sp', 1, 'chat_message', '[1]');
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('bad metadata', '00000');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('bad metadata', SQLSTATE);
END
$$;

DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, tx_id, balance, state)
		SELECT 'unpinned', r.tx_id, r.balance, pg_catalog.current_setting('search_path')
		  FROM hostile.deduct_unpinned('tap-sp', 5, 'chat_message') r;
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('unpinned', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;

DO $$
BEGIN
	INSERT INTO pg_temp.sp_result (step, balance) SELECT 'unpinned 1.1', hostile.balance_unpinned('tap-sp');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO pg_temp.sp_result (step, state) VALUES ('unpinned 1.1', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END
$$;

RESET search_path;
RESET ROLE;

SELECT is_empty($$SELECT step, state FROM sp_result WHERE state IS NOT NULL AND step NOT IN ('overdraw', 'bad metadata', 'unpinned')$$,
				'no call raised an error');
SELECT is((SELECT balance FROM sp_result WHERE step = 'init'), 100::bigint, 'credit_init: balance 100');
SELECT is((SELECT balance FROM sp_result WHERE step = 'deduct'), 70::bigint, 'credit_deduct: balance 70');
SELECT is((SELECT balance FROM sp_result WHERE step = 'add'), 75::bigint, 'credit_add: balance 75');
SELECT is((SELECT tx_id FROM sp_result WHERE step = 'add retry'), (SELECT tx_id FROM sp_result WHERE step = 'add'),
		  'the idempotent retry returns the original tx_id');
SELECT is((SELECT balance FROM sp_result WHERE step = 'balance'), 75::bigint, 'credit_balance: 75');
SELECT is((SELECT balance FROM sp_result WHERE step = 'history'), 3::bigint, 'credit_history: 3 rows');
SELECT is((SELECT flag FROM sp_result WHERE step = 'verify'), true, 'credit_verify: valid');
SELECT is((SELECT balance FROM sp_result WHERE step = 'verify'), 75::bigint, 'credit_verify: calculated 75');
SELECT is((SELECT balance FROM sp_result WHERE step = 'verify_all'), 0::bigint, 'credit_verify_all: no mismatch');
SELECT is((SELECT balance FROM sp_result WHERE step = 'rebuild'), 75::bigint, 'credit_rebuild: 75');
SELECT is((SELECT balance FROM sp_result WHERE step = 'available'), 75::bigint, 'credit_available: 75');
SELECT is((SELECT balance FROM sp_result WHERE step = 'hold'), 55::bigint, 'credit_hold of 20: available 55');
SELECT is((SELECT balance FROM sp_result WHERE step = 'capture'), 60::bigint, 'credit_capture of 15: balance 60');
SELECT is((SELECT balance FROM sp_result WHERE step = 'charge'), 50::bigint, 'credit_charge of one chat_message: balance 50');
SELECT is((SELECT balance FROM sp_result WHERE step = 'cost'), 25::bigint, 'credit_cost of 2.5 s of video: 25');
SELECT is((SELECT balance FROM sp_result WHERE step = 'available after'), 50::bigint, 'credit_available after the capture: 50');
SELECT is((SELECT state FROM sp_result WHERE step = 'overdraw'), 'CR001', 'an overdraft is still CR001');
SELECT is((SELECT state FROM sp_result WHERE step = 'bad metadata'), 'CR010', 'metadata that is not an object is still CR010');

SELECT is((SELECT balance FROM sp_result WHERE step = 'unpinned'), 45::bigint,
		  'a definition without the SET clause (as in 1.0): credit_deduct of 5, balance 45');
SELECT is((SELECT balance FROM sp_result WHERE step = 'unpinned 1.1'), 45::bigint,
		  'credit_balance_1_1 without the SET clause: 45');
SELECT is((SELECT state FROM sp_result WHERE step = 'unpinned'), 'hostile, pg_catalog',
		  'the caller''s search_path is restored after the call');
SELECT is_empty($$SELECT DISTINCT what FROM hostile.hijacked$$, 'no shadowing function or operator was called');
SELECT results_eq($$SELECT user_id, balance FROM hostile.accounts$$, $$VALUES ('tap-sp'::text, 999999::bigint)$$,
				  'hostile.accounts is untouched');
SELECT is_empty($$SELECT * FROM hostile.ledger$$, 'hostile.ledger is untouched');
SELECT results_eq($$SELECT amount, balance_after FROM credits.ledger WHERE user_id = 'tap-sp' ORDER BY id$$,
				  $$VALUES (100::bigint, 100::bigint), (-30, 70), (5, 75), (-15, 60), (-10, 50), (-5, 45)$$,
				  'credits.ledger holds exactly the six rows');
SELECT cmp_ok((SELECT max(created_at) FROM credits.ledger WHERE user_id = 'tap-sp'), '>', '2000-01-02'::timestamptz,
			  'created_at comes from pg_catalog.now()');

SELECT * FROM finish();
ROLLBACK;
