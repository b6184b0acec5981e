-- credit_deduct: atomic, never overdraws, reports CR001/CR002.
SET client_min_messages = warning;

SELECT balance FROM credits.credit_init('deduct-a', 100);
SELECT balance FROM credits.credit_deduct('deduct-a', 10, 'chat_message');
SELECT balance FROM credits.credit_deduct('deduct-a', 90, 'canvas_generation', '{"size": "large"}');
SELECT amount, balance_after, action, metadata FROM credits.ledger
 WHERE user_id = 'deduct-a' ORDER BY id;

-- the returned row is the ledger row
SELECT balance FROM credits.credit_add('deduct-a', 5, 'purchase');
CREATE TEMP TABLE d AS SELECT * FROM credits.credit_deduct('deduct-a', 1, 'chat_message');
SELECT d.created_at = l.created_at AND d.balance = l.balance_after AND l.amount = -1 AS matches
  FROM d JOIN credits.ledger l ON l.id = d.tx_id;

-- insufficient credits: DETAIL is exactly required=N available=M
SELECT * FROM credits.credit_deduct('deduct-a', 5, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_balance('deduct-a');

-- spending exactly the balance reaches zero
SELECT balance FROM credits.credit_deduct('deduct-a', 4, 'chat_message');
SELECT * FROM credits.credit_deduct('deduct-a', 1, 'chat_message');
\echo :LAST_ERROR_SQLSTATE

-- unknown account
SELECT * FROM credits.credit_deduct('deduct-nobody', 1, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-nobody', 1, 'chat_message', '{}', 'key-1');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM credits.accounts WHERE user_id = 'deduct-nobody';

-- a failed call inside a transaction leaves the earlier work to the caller
BEGIN;
SELECT balance FROM credits.credit_add('deduct-a', 3, 'purchase');
SAVEPOINT s;
SELECT * FROM credits.credit_deduct('deduct-a', 4, 'chat_message');
ROLLBACK TO s;
SELECT balance FROM credits.credit_deduct('deduct-a', 3, 'chat_message');
COMMIT;
SELECT * FROM credits.credit_verify('deduct-a');

-- bad input: nothing is written
SELECT * FROM credits.credit_deduct(NULL, 1, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('', 1, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct(repeat('u', 257), 1, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', NULL, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', 0, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', -5, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', 1, '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', 1, 'chat_message', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', 1, 'chat_message', '"text"');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', 1, 'chat_message', 'null');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', 1, 'chat_message', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', 1, 'chat_message', '{}', '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('deduct-a', 1, 'chat_message', '{}', repeat('k', 257));
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS rows, sum(amount) AS total FROM credits.ledger WHERE user_id = 'deduct-a';
