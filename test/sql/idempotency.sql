-- Idempotency keys: a retry changes nothing and returns the original
-- tx_id, balance and created_at; a key reused differently is CR003.
SET client_min_messages = warning;

SELECT balance FROM credits.credit_init('idem-a', 100);

CREATE TEMP TABLE first AS
  SELECT * FROM credits.credit_deduct('idem-a', 10, 'chat_message', '{"n": 1}', 'msg-1');
SELECT balance FROM first;
SELECT balance FROM credits.credit_deduct('idem-a', 10, 'chat_message', '{}', 'msg-2');

-- the retry returns the original row, also its original balance
SELECT r.tx_id = f.tx_id AS same_tx, r.balance, r.created_at = f.created_at AS same_time
  FROM credits.credit_deduct('idem-a', 10, 'chat_message', '{"n": 1}', 'msg-1') r, first f;
-- metadata is not part of the key's identity
SELECT r.tx_id = f.tx_id AS same_tx
  FROM credits.credit_deduct('idem-a', 10, 'chat_message', '{"n": 2}', 'msg-1') r, first f;
SELECT credits.credit_balance('idem-a');
SELECT count(*) FROM credits.ledger WHERE user_id = 'idem-a' AND idempotency_key = 'msg-1';

-- same key, different amount or action: CR003, nothing written
SELECT * FROM credits.credit_deduct('idem-a', 11, 'chat_message', '{}', 'msg-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('idem-a', 10, 'canvas_generation', '{}', 'msg-1');
\echo :LAST_ERROR_SQLSTATE
-- a deduction key reused for an add (the sign differs)
SELECT * FROM credits.credit_add('idem-a', 10, 'chat_message', '{}', 'msg-1');
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_balance('idem-a');

-- keys are per user: another user may use the same key
SELECT balance FROM credits.credit_init('idem-b', 50);
SELECT balance FROM credits.credit_deduct('idem-b', 10, 'chat_message', '{}', 'msg-1');

-- keyed add opens the account once
SELECT balance FROM credits.credit_add('idem-new', 30, 'purchase', '{}', 'order-9');
SELECT balance FROM credits.credit_add('idem-new', 30, 'purchase', '{}', 'order-9');
SELECT count(*), sum(amount) FROM credits.ledger WHERE user_id = 'idem-new';

-- a retry after an insufficient-credits failure is still refused
SELECT * FROM credits.credit_deduct('idem-b', 1000, 'chat_message', '{}', 'big');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM credits.ledger WHERE idempotency_key = 'big';

-- the retry of a keyed deduction succeeds even when the balance since fell
SELECT balance FROM credits.credit_deduct('idem-b', 40, 'chat_message', '{}', 'drain');
SELECT balance FROM credits.credit_deduct('idem-b', 40, 'chat_message', '{}', 'drain');
SELECT * FROM credits.credit_verify('idem-b');
