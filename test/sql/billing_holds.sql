-- Holds: credit_hold, credit_capture, credit_release, credit_available and
-- credit_expire_holds.  A hold lowers the available balance, not the
-- balance; only a capture writes the ledger; every change to held writes a
-- hold.* event and bumps the account's version.
SET client_min_messages = warning;

-- the available balance after the other holds, per account
CREATE TEMP VIEW hold_state AS
SELECT a.user_id, a.balance, a.held, credits.credit_available(a.user_id) AS available,
	   (SELECT count(*) FROM credits.ledger l WHERE l.user_id = a.user_id) AS ledger_rows
  FROM credits.accounts a WHERE a.user_id LIKE 'hold-%' ORDER BY a.user_id;

SELECT balance FROM credits.credit_init('hold-a', 100);
SELECT version AS v0 FROM credits.accounts WHERE user_id = 'hold-a' \gset

-- a hold: returns its amount and the available balance after it
SELECT hold_id AS h1 FROM credits.credit_hold('hold-a', 30, 'video_generation', '{"job": "v-1"}') \gset
SELECT held, available FROM credits.credit_hold('hold-a', 5, 'chat_message', '{}', '1 hour', 'hold-a-k1');
SELECT * FROM hold_state WHERE user_id = 'hold-a';
SELECT credits.credit_balance('hold-a'), credits.credit_available('hold-a');
SELECT version - :v0 AS versions_bumped FROM credits.accounts WHERE user_id = 'hold-a';
SELECT amount, action, metadata, status, expires_at - created_at AS ttl, closed_at IS NULL AS open
  FROM credits.holds WHERE user_id = 'hold-a' ORDER BY id;

-- the same key again returns the original hold and available balance
SELECT hold_id = (SELECT id FROM credits.holds WHERE idempotency_key = 'hold-a-k1') AS same_hold,
	   held, available
  FROM credits.credit_hold('hold-a', 5, 'chat_message', '{}', '1 hour', 'hold-a-k1');
SELECT count(*) AS holds FROM credits.holds WHERE user_id = 'hold-a';
-- ... and with other parameters it is CR003
SELECT * FROM credits.credit_hold('hold-a', 6, 'chat_message', '{}', '1 hour', 'hold-a-k1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-a', 5, 'canvas_generation_simple', '{}', '1 hour', 'hold-a-k1');
\echo :LAST_ERROR_SQLSTATE

-- deductions and new holds respect the available balance (65)
SELECT * FROM credits.credit_deduct('hold-a', 66, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_deduct('hold-a', 66, 'chat_message', '{}', 'hold-a-d1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-a', 66, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT balance FROM credits.credit_deduct('hold-a', 60, 'chat_message');
SELECT * FROM hold_state WHERE user_id = 'hold-a';

-- capture with no amount spends the held amount; the ledger row carries
-- the hold's action and metadata, the capture's metadata and the hold id
SELECT balance FROM credits.credit_capture(:h1, NULL, '{"seconds": 3}');
SELECT amount, balance_after, action, metadata - 'hold_id' AS metadata,
	   (metadata ->> 'hold_id')::bigint = :h1 AS has_hold_id
  FROM credits.ledger WHERE user_id = 'hold-a' ORDER BY id DESC LIMIT 1;
SELECT status, captured, capture_tx_id = (SELECT max(id) FROM credits.ledger WHERE user_id = 'hold-a') AS tx,
	   closed_at IS NOT NULL AS closed
  FROM credits.holds WHERE id = :h1;
SELECT * FROM hold_state WHERE user_id = 'hold-a';

-- a closed hold cannot be captured or released again: CR004 (terse: the
-- DETAIL names the hold id)
\set VERBOSITY terse
SELECT * FROM credits.credit_capture(:h1);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_release(:h1);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- capturing less releases the rest
SELECT hold_id AS h2 FROM credits.credit_hold('hold-a', 5, 'video_generation') \gset
SELECT balance FROM credits.credit_capture(:h2, 2);
SELECT status, captured FROM credits.holds WHERE id = :h2;
SELECT * FROM hold_state WHERE user_id = 'hold-a';

-- capturing more needs the difference to be available: CR001 reports the
-- difference against the available balance
SELECT balance FROM credits.credit_init('hold-b', 100);
SELECT hold_id AS h3 FROM credits.credit_hold('hold-b', 50, 'training_job') \gset
SELECT balance FROM credits.credit_capture(:h3, 80);
SELECT hold_id AS h4 FROM credits.credit_hold('hold-b', 10, 'training_job') \gset
SELECT * FROM credits.credit_capture(:h4, 21);
\echo :LAST_ERROR_SQLSTATE
SELECT status FROM credits.holds WHERE id = :h4;
SELECT balance FROM credits.credit_capture(:h4, 20);
SELECT * FROM hold_state WHERE user_id = 'hold-b';

-- release: returns the available balance; nothing in the ledger
SELECT balance FROM credits.credit_init('hold-c', 100);
SELECT hold_id AS h5, available FROM credits.credit_hold('hold-c', 40, 'video_generation') \gset
SELECT :available AS available_while_held;
SELECT credits.credit_release(:h5);
SELECT status, captured, closed_at IS NOT NULL AS closed FROM credits.holds WHERE id = :h5;
SELECT * FROM hold_state WHERE user_id = 'hold-c';
\set VERBOSITY terse
SELECT credits.credit_release(:h5);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(:h5);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- every change to held wrote an event with the account's new state, and
-- bumped the version once
SELECT event, detail ->> 'amount' AS amount, detail ->> 'held' AS held,
	   detail ->> 'balance' AS balance, detail ->> 'status' AS status,
	   detail ->> 'captured' AS captured,
	   (detail ->> 'version')::bigint - :v0 AS version
  FROM credits.account_events WHERE user_id = 'hold-a' ORDER BY id;
SELECT (SELECT version FROM credits.accounts WHERE user_id = 'hold-a') - :v0 AS versions_bumped;

-- capture idempotency: the same key returns the original row
SELECT balance FROM credits.credit_add('hold-b', 20, 'purchase');
SELECT hold_id AS h6 FROM credits.credit_hold('hold-b', 5, 'video_generation') \gset
CREATE TEMP TABLE cap1 AS SELECT * FROM credits.credit_capture(:h6, 5, '{}', 'cap-1');
SELECT balance FROM cap1;
SELECT c.tx_id = cap1.tx_id AND c.balance = cap1.balance AND c.created_at = cap1.created_at AS same_row
  FROM credits.credit_capture(:h6, 5, '{}', 'cap-1') c, cap1;
SELECT c.tx_id = cap1.tx_id AS same_row FROM credits.credit_capture(:h6, NULL, '{}', 'cap-1') c, cap1;
SELECT count(*) AS captures FROM credits.ledger WHERE idempotency_key = 'cap-1';
-- the same key with another amount is CR003; without it, or with another key, CR004
-- (terse: the DETAIL names hold ids)
\set VERBOSITY terse
SELECT * FROM credits.credit_capture(:h6, 6, '{}', 'cap-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(:h6);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(:h6, 5, '{}', 'cap-2');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- a key already used by another operation of the user is CR003
SELECT hold_id AS h7 FROM credits.credit_hold('hold-b', 5, 'video_generation') \gset
SELECT balance FROM credits.credit_deduct('hold-b', 1, 'chat_message', '{}', 'used-key');
\set VERBOSITY terse
SELECT * FROM credits.credit_capture(:h7, 5, '{}', 'used-key');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT status FROM credits.holds WHERE id = :h7;

-- expiry: a hold stops counting at expires_at with no job running
SELECT balance FROM credits.credit_init('hold-d', 100);
SELECT hold_id AS h8 FROM credits.credit_hold('hold-d', 60, 'video_generation', '{}', '2 seconds') \gset
SELECT credits.credit_available('hold-d') AS available_while_held;
SELECT pg_sleep(2.1);
SELECT * FROM hold_state WHERE user_id = 'hold-d';
SELECT status FROM credits.holds WHERE id = :h8;
\set VERBOSITY terse
SELECT * FROM credits.credit_capture(:h8);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_release(:h8);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- the expired hold's credit can be spent: the deduction closes the hold
-- first (settle.c), so nothing is left for credit_expire_holds() to close
SELECT balance FROM credits.credit_deduct('hold-d', 90, 'chat_message');
SELECT status FROM credits.holds WHERE id = :h8;
SELECT status, closed_at IS NOT NULL AS closed FROM credits.holds WHERE id = :h8;
SELECT * FROM hold_state WHERE user_id = 'hold-d';
SELECT event, detail ->> 'held' AS held FROM credits.account_events
 WHERE user_id = 'hold-d' ORDER BY id;
SELECT credits.credit_expire_holds() AS closed_again;

-- the next write to an account closes its expired holds too
SELECT hold_id AS h9 FROM credits.credit_hold('hold-c', 10, 'video_generation') \gset
UPDATE credits.holds SET expires_at = now() - interval '1 second' WHERE id = :h9;
SELECT * FROM hold_state WHERE user_id = 'hold-c';
SELECT held, available FROM credits.credit_hold('hold-c', 20, 'video_generation');
SELECT status FROM credits.holds WHERE id = :h9;
SELECT event FROM credits.account_events WHERE user_id = 'hold-c' ORDER BY id;
SELECT * FROM hold_state WHERE user_id = 'hold-c';

-- credit_available: NULL for an unknown account
SELECT credits.credit_available('hold-nobody') IS NULL AS no_account;

-- bad input: CR010, CR002, CR007; nothing is written
SELECT version AS v1 FROM credits.accounts WHERE user_id = 'hold-c' \gset
SELECT count(*) AS holds0 FROM credits.holds \gset
SELECT * FROM credits.credit_hold(NULL, 1, 'video_generation');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('', 1, 'video_generation');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold(repeat('u', 257), 1, 'video_generation');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-nobody', 1, 'video_generation');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', NULL, 'video_generation');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 0, 'video_generation');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', -1, 'video_generation');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, 'video_generation', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, 'video_generation', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, 'video_generation', '{}', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, 'video_generation', '{}', '0');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, 'video_generation', '{}', '-1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, 'video_generation', '{}', '1 day -25 hours');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, 'video_generation', '{}', '1001 years');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, 'video_generation', '{}', '1 hour', '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('hold-c', 1, 'video_generation', '{}', '1 hour', repeat('k', 257));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(999999999);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(:h9, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(:h9, -5);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(:h9, 5, '"x"');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(:h9, 5, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_capture(:h9, 5, '{}', '');
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_release(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_release(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_release(999999999);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_available(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_available('');
\echo :LAST_ERROR_SQLSTATE
SELECT (SELECT version FROM credits.accounts WHERE user_id = 'hold-c') = :v1 AS unchanged,
	   (SELECT count(*) FROM credits.holds) = :holds0 AS no_new_holds;

-- invariants: held is the sum of open holds; the ledger sums to the balance
SELECT a.user_id, a.held, coalesce(sum(h.amount), 0) AS open_holds
  FROM credits.accounts a LEFT JOIN credits.holds h ON h.user_id = a.user_id AND h.status = 'open'
 WHERE a.user_id LIKE 'hold-%'
 GROUP BY a.user_id, a.held HAVING a.held <> coalesce(sum(h.amount), 0);
SELECT * FROM credits.credit_verify_all();
