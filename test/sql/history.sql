-- credit_balance and credit_history
SET client_min_messages = warning;

SELECT credits.credit_balance('hist-nobody') IS NULL AS no_account;
SELECT balance FROM credits.credit_init('hist-a', 10);
SELECT balance FROM credits.credit_add('hist-a', 5, 'purchase', '{"i": 1}');
SELECT balance FROM credits.credit_deduct('hist-a', 3, 'chat_message', '{"i": 2}');
SELECT balance FROM credits.credit_deduct('hist-a', 2, 'chat_message', '{"i": 3}');
SELECT credits.credit_balance('hist-a');

-- newest first; the row type is credits.ledger
SELECT amount, balance_after, action, metadata FROM credits.credit_history('hist-a');
SELECT amount FROM credits.credit_history('hist-a', 2);
SELECT pg_typeof(h) FROM credits.credit_history('hist-a', 1) h;
SELECT count(*) FROM credits.credit_history('hist-nobody');

-- time window: start_time <= created_at < end_time
SELECT count(*) FROM credits.credit_history('hist-a', 50, now() - interval '1 hour', now() + interval '1 hour');
SELECT count(*) FROM credits.credit_history('hist-a', 50, now() + interval '1 hour');
SELECT count(*) FROM credits.credit_history('hist-a', 50, NULL, now() - interval '1 hour');
SELECT count(*) FROM credits.credit_history('hist-a', 50, now(), now());

-- bad input
SELECT * FROM credits.credit_history('hist-a', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_history('hist-a', 1001);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_history('hist-a', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_history('hist-a', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_history('hist-a', 10, now(), now() - interval '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_history(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_balance(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_balance('');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM credits.credit_history('hist-a', 1000);
