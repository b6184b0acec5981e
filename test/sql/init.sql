-- credit_init: signup grant, default from credits.default_credits, retries
-- grant nothing and return the current state.
SET client_min_messages = warning;

SELECT tx_id IS NOT NULL AS has_tx, balance FROM credits.credit_init('init-default');
SELECT credits.credit_balance('init-default');

-- a retried signup webhook grants nothing and returns the first row
SELECT (SELECT tx_id FROM credits.credit_init('init-default')) =
       (SELECT min(id) FROM credits.ledger WHERE user_id = 'init-default') AS same_tx;
SELECT balance FROM credits.credit_init('init-default', 500);
SELECT count(*) FROM credits.ledger WHERE user_id = 'init-default';

-- explicit amount, metadata stored on the init row
SELECT balance FROM credits.credit_init('init-explicit', 42, '{"source": "signup"}');
SELECT amount, balance_after, action, metadata FROM credits.ledger WHERE user_id = 'init-explicit';

-- the setting
SET credits.default_credits = 7;
SELECT balance FROM credits.credit_init('init-setting');
RESET credits.default_credits;
SELECT balance FROM credits.credit_init('init-setting-reset');

-- zero opens an account without credit
SELECT balance FROM credits.credit_init('init-zero', 0);
SELECT amount, action FROM credits.ledger WHERE user_id = 'init-zero';

-- after spending, a retry returns the current balance
SELECT balance FROM credits.credit_deduct('init-explicit', 2, 'chat_message');
SELECT balance FROM credits.credit_init('init-explicit', 42);

-- bad input: nothing is written
SELECT * FROM credits.credit_init(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_init('');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_init(repeat('x', 257));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_init('init-bad', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_init('init-bad', 1, '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_init('init-bad', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM credits.accounts WHERE user_id = 'init-bad';

-- 256 bytes is the limit, counted in bytes (é is two bytes)
SELECT balance FROM credits.credit_init(repeat('x', 256), 1);
SELECT * FROM credits.credit_init(repeat('é', 129), 1);
\echo :LAST_ERROR_SQLSTATE
SELECT balance FROM credits.credit_init(repeat('é', 128), 1);
