-- credit_verify, credit_verify_all, credit_rebuild
SET client_min_messages = warning;

SELECT balance FROM credits.credit_init('verify-a', 20);
SELECT balance FROM credits.credit_deduct('verify-a', 5, 'chat_message');
SELECT * FROM credits.credit_verify('verify-a');
SELECT * FROM credits.credit_verify_all() WHERE user_id LIKE 'verify-%';

-- corrupt the cache behind the functions' back (a superuser can)
UPDATE credits.accounts SET balance = 99 WHERE user_id = 'verify-a';
SELECT * FROM credits.credit_verify('verify-a');
SELECT * FROM credits.credit_verify_all() WHERE user_id LIKE 'verify-%';

-- rebuild fixes it, records the correction, and bumps the version
SELECT version AS v0 FROM credits.accounts WHERE user_id = 'verify-a' \gset
SELECT credits.credit_rebuild('verify-a');
SELECT balance, version - :v0 AS bumped FROM credits.accounts WHERE user_id = 'verify-a';
SELECT event, detail FROM credits.account_events WHERE user_id = 'verify-a';
SELECT * FROM credits.credit_verify('verify-a');
-- rebuilding a correct account changes nothing
SELECT credits.credit_rebuild('verify-a');
SELECT count(*) FROM credits.account_events WHERE user_id = 'verify-a';

-- a ledger row without an account shows up with cached NULL
BEGIN;
INSERT INTO credits.ledger (user_id, amount, balance_after, action) VALUES ('verify-orphan', 3, 3, 'manual');
SELECT user_id, cached, calculated, difference,
	   broken_tx_id = (SELECT id FROM credits.ledger WHERE user_id = 'verify-orphan') AS broken_row, problem
  FROM credits.credit_verify_all() WHERE user_id LIKE 'verify-%';
ROLLBACK;

-- a cache so wrong that the ledger sum is below the account's unspent
-- expiring grants is refused, not half-repaired
BEGIN;
UPDATE credits.accounts SET balance = 1000, expiring = 500 WHERE user_id = 'verify-a';
SELECT credits.credit_rebuild('verify-a');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- unknown account and bad input
SELECT * FROM credits.credit_verify('verify-nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_rebuild('verify-nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_verify(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_rebuild('');
\echo :LAST_ERROR_SQLSTATE
