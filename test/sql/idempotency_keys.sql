-- One idempotency key namespace per user, bound in columns to the first
-- operation (credits.idempotency_keys); metadata is never read.  A retry
-- with the same binding returns the original result even after time has
-- passed; any other use of the key is CR003 and writes nothing.
SET client_min_messages = warning;

SELECT balance FROM credits.credit_init('ik-a', 10000);

-- issue 8, defect 4: a deduction whose metadata looks like a price does
-- not make its key a charge's
SELECT balance FROM credits.credit_deduct('ik-a', 1, 'training_job', '{"price":{"quantity":5}}', 'K');
SELECT * FROM credits.credit_charge('ik-a', 'training_job', 5, '{}', 'K');
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_balance('ik-a') AS balance_unchanged;
SELECT operation, amount, quantity, action FROM credits.idempotency_keys
 WHERE user_id = 'ik-a' AND key = 'K';

-- every keyed function shares the namespace: each reuse below is CR003
-- and writes nothing (terse: the DETAILs name hold ids)
\set VERBOSITY terse
CREATE TEMP TABLE counts AS
  SELECT (SELECT count(*) FROM credits.ledger WHERE user_id = 'ik-a') AS ledger,
		 (SELECT count(*) FROM credits.holds WHERE user_id = 'ik-a') AS holds,
		 (SELECT count(*) FROM credits.grants WHERE user_id = 'ik-a') AS grants;
SELECT * FROM credits.credit_add('ik-a', 1, 'training_job', '{}', 'K');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('ik-a', 1, 'training_job', NULL, '{}', 'K');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('ik-a', 1, 'training_job', '{}', '1 hour', 'K');
\echo :LAST_ERROR_SQLSTATE
SELECT hold_id AS h1 FROM credits.credit_hold('ik-a', 100, 'chat_message', '{}', '1 hour', 'H1') \gset
SELECT * FROM credits.credit_capture(:h1, 1, '{}', 'K');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_release(:h1, 'K');
\echo :LAST_ERROR_SQLSTATE
-- a hold's key used for a deduction, and for a charge
SELECT * FROM credits.credit_deduct('ik-a', 100, 'chat_message', '{}', 'H1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('ik-a', 'chat_message', 10, '{}', 'H1');
\echo :LAST_ERROR_SQLSTATE
SELECT (SELECT count(*) FROM credits.ledger WHERE user_id = 'ik-a') - ledger AS new_ledger_rows,
	   (SELECT count(*) FROM credits.holds WHERE user_id = 'ik-a') - holds AS new_holds,
	   (SELECT count(*) FROM credits.grants WHERE user_id = 'ik-a') - grants AS new_grants
  FROM counts;
SELECT status FROM credits.holds WHERE id = :h1;
\set VERBOSITY default

-- the DETAIL names both bindings
SELECT * FROM credits.credit_charge('ik-a', 'training_job', 5, '{}', 'K');

-- credit_release takes a key (defect 6): the retry returns the original
-- available balance; unkeyed, or with another key, a closed hold is CR004
SELECT credits.credit_available('ik-a') AS available_before;
SELECT credits.credit_release(:h1, 'R1') AS released_available;
SELECT balance FROM credits.credit_deduct('ik-a', 10, 'chat_message');
SELECT credits.credit_release(:h1, 'R1') AS retried_available;
SELECT count(*) AS release_events FROM credits.account_events
 WHERE user_id = 'ik-a' AND event = 'hold.release';
\set VERBOSITY terse
SELECT credits.credit_release(:h1);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_release(:h1, 'R2');
\echo :LAST_ERROR_SQLSTATE
-- the release key bound to hold h1 is CR003 for another hold
SELECT hold_id AS h2 FROM credits.credit_hold('ik-a', 5, 'chat_message') \gset
SELECT credits.credit_release(:h2, 'R1');
\echo :LAST_ERROR_SQLSTATE
-- a capture key is CR003 for a release of the same hold, and vice versa
SELECT balance FROM credits.credit_capture(:h2, 5, '{}', 'C2');
SELECT credits.credit_release(:h2, 'C2');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(:h1, 100, '{}', 'R1');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- the 1.0 form still works (positional, no key)
SELECT hold_id AS h3 FROM credits.credit_hold('ik-a', 5, 'chat_message') \gset
SELECT credits.credit_release(:h3) IS NOT NULL AS released;
-- bad keys are CR010
SELECT credits.credit_release(:h3, '');
\echo :LAST_ERROR_SQLSTATE

-- a retried capture with no amount binds the hold's amount
SELECT hold_id AS h4 FROM credits.credit_hold('ik-a', 7, 'chat_message') \gset
CREATE TEMP TABLE c4 AS SELECT * FROM credits.credit_capture(:h4, NULL, '{}', 'C4');
SELECT c.tx_id = c4.tx_id AS same_row FROM credits.credit_capture(:h4, 7, '{}', 'C4') c, c4;
SELECT amount, hold_id = :h4 AS bound_to_hold FROM credits.idempotency_keys
 WHERE user_id = 'ik-a' AND key = 'C4';

-- defect 5: retries after time has passed return the original result.
-- A grant expiring in one second, and a hold of one second.
CREATE TEMP TABLE g1 AS
  SELECT * FROM credits.credit_grant('ik-b', 50, 'promo', now() + interval '1 second', '{}', 'G1');
SELECT (SELECT expires_at FROM credits.grants WHERE user_id = 'ik-b') AS g1_expires \gset
SELECT hold_id AS h5, available AS h5_available
  FROM credits.credit_hold('ik-b', 20, 'chat_message', '{}', '1 second', 'H5') \gset
SELECT pg_sleep(1.5);
-- the grant's moment has passed: a fresh grant with it is CR010 ...
\set VERBOSITY terse
SELECT * FROM credits.credit_grant('ik-b', 50, 'promo', :'g1_expires', '{}', 'G2');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- ... but its retry returns the original row
SELECT g.tx_id = g1.tx_id AND g.balance = g1.balance AND g.created_at = g1.created_at AS same_row
  FROM credits.credit_grant('ik-b', 50, 'promo', :'g1_expires', '{}', 'G1') g, g1;
-- the hold has expired: its retry still returns the original hold
SELECT hold_id = :h5 AS same_hold, held, available = :h5_available AS same_available
  FROM credits.credit_hold('ik-b', 20, 'chat_message', '{}', '1 second', 'H5');
SELECT count(*) AS holds FROM credits.holds WHERE user_id = 'ik-b';
-- and a release of the expired hold with a new key is CR004
\set VERBOSITY terse
SELECT credits.credit_release(:h5, 'R5');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- the same with credits' clock (credits.clock_offset): a keyed grant that
-- expires in an hour, retried two hours later, returns the original row;
-- a new key with that expires_at is CR010
CREATE TEMP TABLE g3 AS
  SELECT * FROM credits.credit_grant('ik-b', 5, 'promo', now() + interval '1 hour', '{}', 'G3');
SELECT (SELECT expires_at FROM credits.grants WHERE idempotency_key = 'G3') AS g3_expires \gset
SET credits.clock_offset = 7200;
SELECT g.tx_id = g3.tx_id AND g.balance = g3.balance AS same_row
  FROM credits.credit_grant('ik-b', 5, 'promo', :'g3_expires', '{}', 'G3') g, g3;
\set VERBOSITY terse
SELECT * FROM credits.credit_grant('ik-b', 5, 'promo', :'g3_expires', '{}', 'G4');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET credits.clock_offset;
SELECT count(*) AS grants FROM credits.grants WHERE user_id = 'ik-b';

-- credit_subscribe shares the namespace (its keys live in
-- credits.subscription_keys): each way round is CR003, nothing written
SELECT granted FROM credits.credit_subscribe('ik-d', 'pro', now() + interval '3 months', 'S1');
SELECT credits.credit_balance('ik-d') AS balance;
\set VERBOSITY terse
SELECT * FROM credits.credit_deduct('ik-d', 1, 'chat_message', '{}', 'S1');
\echo :LAST_ERROR_SQLSTATE
SELECT balance FROM credits.credit_deduct('ik-d', 1, 'chat_message', '{}', 'D1');
SELECT * FROM credits.credit_subscribe('ik-d', 'enterprise', NULL, 'D1');
\echo :LAST_ERROR_SQLSTATE
SELECT hold_id AS h6 FROM credits.credit_hold('ik-d', 5, 'chat_message') \gset
SELECT credits.credit_release(:h6, 'R6') IS NOT NULL AS released;
SELECT * FROM credits.credit_subscribe('ik-d', 'enterprise', NULL, 'R6');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT credits.credit_balance('ik-d') AS balance, (SELECT plan FROM credits.subscriptions WHERE user_id = 'ik-d') AS plan;

-- keys stay per user
SELECT balance FROM credits.credit_add('ik-c', 5, 'purchase', '{}', 'K');
SELECT user_id, operation FROM credits.idempotency_keys WHERE key = 'K' ORDER BY user_id;
SELECT * FROM credits.credit_verify_all();
