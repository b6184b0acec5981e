-- credit_add: opens the account if needed, refuses to overflow.
SET client_min_messages = warning;

SELECT balance FROM credits.credit_add('add-new', 25, 'purchase', '{"order": 7}');
SELECT user_id, balance, held, version FROM credits.accounts WHERE user_id = 'add-new';
SELECT balance FROM credits.credit_add('add-new', 5, 'bonus');
SELECT version FROM credits.accounts WHERE user_id = 'add-new';
SELECT amount, balance_after, action, metadata FROM credits.ledger
 WHERE user_id = 'add-new' ORDER BY id;

-- overflow: the largest balance is accepted, one more is refused with CR011
SELECT balance FROM credits.credit_add('add-big', 9223372036854775806, 'purchase');
SELECT balance FROM credits.credit_add('add-big', 1, 'purchase');
SELECT * FROM credits.credit_add('add-big', 1, 'purchase');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('add-big', 1, 'purchase', '{}', 'overflow-key');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('add-big', 9223372036854775807, 'purchase');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM credits.ledger WHERE user_id = 'add-big';

-- bad input: nothing is written, no account is opened
SELECT * FROM credits.credit_add(NULL, 1, 'purchase');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('', 1, 'purchase');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add(repeat('u', 300), 1, 'purchase');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('add-bad', NULL, 'purchase');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('add-bad', 0, 'purchase');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('add-bad', -1, 'purchase');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('add-bad', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('add-bad', 1, '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('add-bad', 1, 'purchase', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_add('add-bad', 1, 'purchase', '{}', '');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM credits.accounts WHERE user_id = 'add-bad';
SELECT count(*) FROM credits.ledger WHERE user_id = 'add-bad';
