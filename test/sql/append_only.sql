-- The ledger is append-only for every role, the superuser running this
-- test included, and also under session_replication_role = replica.
SET client_min_messages = warning;

SELECT balance FROM credits.credit_init('append-a', 10);
UPDATE credits.ledger SET amount = 1000 WHERE user_id = 'append-a';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM credits.ledger WHERE user_id = 'append-a';
\echo :LAST_ERROR_SQLSTATE
TRUNCATE credits.ledger;
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
DELETE FROM credits.ledger WHERE user_id = 'append-a';
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
SELECT amount FROM credits.ledger WHERE user_id = 'append-a';
