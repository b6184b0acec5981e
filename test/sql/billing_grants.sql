-- Grants: credit_grant, the draw-down order, expiry (lazy and bulk,
-- credit_expire_grants), the grant_balances view, and how holds reserve
-- expiring credit.
SET client_min_messages = warning;

-- per account: balance, available, expiring credit, and each grant's state
CREATE TEMP VIEW grant_state AS
SELECT g.user_id, g.source, g.amount, g.remaining, g.reserved, g.expired
  FROM credits.grants g WHERE g.user_id LIKE 'grant-%' ORDER BY g.user_id, g.id;
CREATE TEMP VIEW account_state AS
SELECT a.user_id, a.balance, credits.credit_available(a.user_id) AS available,
	   a.held, a.expiring
  FROM credits.accounts a WHERE a.user_id LIKE 'grant-%' ORDER BY a.user_id;
-- the bookkeeping invariants: expiring = sum(remaining + reserved) of the
-- account's grants, grants.reserved = what open holds reserved, and the
-- ledger sums to the balance
CREATE TEMP VIEW broken AS
SELECT a.user_id, 'expiring' AS what FROM credits.accounts a
 WHERE a.expiring <> (SELECT coalesce(sum(g.remaining + g.reserved), 0) FROM credits.grants g
					   WHERE g.user_id = a.user_id AND g.expires_at IS NOT NULL)
UNION ALL
SELECT g.user_id, 'reserved ' || g.id FROM credits.grants g
 WHERE g.reserved <> (SELECT coalesce(sum(r.amount), 0) FROM credits.holds h,
						ROWS FROM (unnest(h.grant_ids), unnest(h.grant_amounts)) AS r(grant_id, amount)
					   WHERE h.status = 'open' AND r.grant_id = g.id)
UNION ALL
SELECT user_id, 'ledger' FROM credits.credit_verify_all();

SELECT now() + interval '1 day' AS day1, now() + interval '2 days' AS day2 \gset

-- a grant opens the account and returns the ledger row, like credit_add
CREATE TEMP TABLE g1 AS SELECT * FROM credits.credit_grant('grant-a', 50, 'promo', :'day1');
SELECT balance FROM g1;
SELECT l.amount, l.balance_after, l.action, l.metadata ->> 'source' AS source,
	   (l.metadata ->> 'grant_id')::bigint = g.id AS grant_id,
	   (l.metadata ->> 'expires_at')::timestamptz = :'day1' AS expires_at,
	   l.created_at = g1.created_at AS created_at
  FROM g1 JOIN credits.ledger l ON l.id = g1.tx_id
  JOIN credits.grants g ON g.user_id = l.user_id AND g.source = 'promo';
SELECT balance FROM credits.credit_grant('grant-a', 30, 'promo-2', :'day2', '{"campaign": "spring"}');
SELECT balance FROM credits.credit_grant('grant-a', 20, 'purchase');
-- same expiry as the first: the lower grant id goes first
SELECT balance FROM credits.credit_grant('grant-a', 10, 'promo-3', :'day1');
SELECT * FROM grant_state WHERE user_id = 'grant-a';
SELECT metadata FROM credits.grants WHERE user_id = 'grant-a' AND source = 'promo-2';
SELECT * FROM account_state WHERE user_id = 'grant-a';
SELECT user_id, source, expires_at IS NULL AS never, remaining, reserved
  FROM credits.grant_balances WHERE user_id = 'grant-a' ORDER BY expires_at, grant_id;

-- spending draws from the soonest-expiring grant first (ties: lower id),
-- non-expiring credit last
SELECT balance FROM credits.credit_deduct('grant-a', 55, 'chat_message');
SELECT * FROM grant_state WHERE user_id = 'grant-a';
SELECT balance FROM credits.credit_deduct('grant-a', 25, 'chat_message', '{}', 'grant-a-d1');
SELECT * FROM grant_state WHERE user_id = 'grant-a';
SELECT balance FROM credits.credit_charge('grant-a', 'chat_message', 1);
SELECT * FROM grant_state WHERE user_id = 'grant-a';
SELECT * FROM account_state WHERE user_id = 'grant-a';
-- the expiring credit is used up: the account is back on the fast path
SELECT balance FROM credits.credit_deduct('grant-a', 5, 'chat_message');
SELECT * FROM account_state WHERE user_id = 'grant-a';
SELECT user_id, source, remaining FROM credits.grant_balances WHERE user_id = 'grant-a';

-- expiry: an expired grant stops being spendable at expires_at, before
-- anything posts it (the clock is moved by editing expires_at)
SELECT balance FROM credits.credit_grant('grant-b', 40, 'promo', :'day1');
SELECT balance FROM credits.credit_add('grant-b', 10, 'purchase');
UPDATE credits.grants SET expires_at = now() - interval '1 second' WHERE user_id = 'grant-b';
SELECT * FROM account_state WHERE user_id = 'grant-b';
SELECT count(*) AS grant_rows FROM credits.grant_balances WHERE user_id = 'grant-b' AND grant_id IS NOT NULL;
SELECT * FROM credits.credit_deduct('grant-b', 11, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_hold('grant-b', 11, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('grant-b', 'chat_message', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS nothing_posted FROM credits.ledger WHERE user_id = 'grant-b' AND action = 'expire';
-- the next deduction posts the expiry first, under the account lock
SELECT balance FROM credits.credit_deduct('grant-b', 4, 'chat_message');
SELECT amount, balance_after, action, metadata ->> 'source' AS source
  FROM credits.ledger WHERE user_id = 'grant-b' ORDER BY id;
SELECT * FROM grant_state WHERE user_id = 'grant-b';
SELECT * FROM account_state WHERE user_id = 'grant-b';

-- and in real time, with no job running
SELECT balance FROM credits.credit_grant('grant-t', 25, 'promo', now() + interval '2 seconds');
SELECT credits.credit_available('grant-t') AS before_expiry;
SELECT pg_sleep(2.1);
SELECT credits.credit_available('grant-t') AS after_expiry, credits.credit_balance('grant-t') AS balance;

-- credit_expire_grants() posts the expiry in bulk
SELECT balance FROM credits.credit_grant('grant-c', 25, 'promo', :'day1');
SELECT balance FROM credits.credit_grant('grant-c', 5, 'promo-2', :'day1');
SELECT balance FROM credits.credit_deduct('grant-c', 10, 'chat_message');
UPDATE credits.grants SET expires_at = now() - interval '1 second' WHERE user_id = 'grant-c';
SELECT credits.credit_expire_grants() >= 3 AS expired_some;
SELECT amount, balance_after, action, metadata ->> 'source' AS source
  FROM credits.ledger WHERE user_id IN ('grant-c', 'grant-t') ORDER BY id;
SELECT * FROM grant_state WHERE user_id IN ('grant-c', 'grant-t');
SELECT * FROM account_state WHERE user_id IN ('grant-c', 'grant-t');
SELECT credits.credit_expire_grants() AS expired_again;

-- holds reserve expiring credit in the same order, and reserved credit is
-- protected from expiry until the hold closes
SELECT balance FROM credits.credit_grant('grant-d', 30, 'promo', :'day1');
SELECT balance FROM credits.credit_add('grant-d', 20, 'purchase');
SELECT hold_id AS hd, held, available FROM credits.credit_hold('grant-d', 40, 'video_generation') \gset
SELECT :held AS held, :available AS available;
SELECT grant_amounts FROM credits.holds WHERE id = :hd;
SELECT * FROM grant_state WHERE user_id = 'grant-d';
UPDATE credits.grants SET expires_at = now() - interval '1 second' WHERE user_id = 'grant-d';
SELECT * FROM account_state WHERE user_id = 'grant-d';
SELECT credits.credit_expire_grants() >= 0 AS ran;
SELECT * FROM grant_state WHERE user_id = 'grant-d';
-- the whole hold can still be captured
SELECT balance FROM credits.credit_capture(:hd);
SELECT * FROM grant_state WHERE user_id = 'grant-d';
SELECT * FROM account_state WHERE user_id = 'grant-d';

-- capturing less gives the rest back to the grant, which has expired: it
-- expires at once
SELECT balance FROM credits.credit_grant('grant-e', 30, 'promo', :'day1');
SELECT balance FROM credits.credit_add('grant-e', 20, 'purchase');
SELECT hold_id AS he FROM credits.credit_hold('grant-e', 40, 'video_generation') \gset
UPDATE credits.grants SET expires_at = now() - interval '1 second' WHERE user_id = 'grant-e';
SELECT balance FROM credits.credit_capture(:he, 10);
SELECT amount, balance_after, action FROM credits.ledger WHERE user_id = 'grant-e' ORDER BY id;
SELECT * FROM grant_state WHERE user_id = 'grant-e';
SELECT * FROM account_state WHERE user_id = 'grant-e';

-- capturing more than the hold draws the extra from unreserved grants
SELECT balance FROM credits.credit_grant('grant-f', 30, 'promo', :'day1');
SELECT balance FROM credits.credit_grant('grant-f', 30, 'promo-2', :'day2');
SELECT balance FROM credits.credit_add('grant-f', 10, 'purchase');
SELECT hold_id AS hf FROM credits.credit_hold('grant-f', 20, 'video_generation') \gset
SELECT * FROM grant_state WHERE user_id = 'grant-f';
SELECT balance FROM credits.credit_capture(:hf, 45);
SELECT * FROM grant_state WHERE user_id = 'grant-f';
SELECT * FROM account_state WHERE user_id = 'grant-f';

-- releasing gives the reservation back (and expires what has expired)
SELECT balance FROM credits.credit_grant('grant-g', 30, 'promo', :'day1');
SELECT balance FROM credits.credit_grant('grant-g', 30, 'promo-2', :'day2');
SELECT balance FROM credits.credit_add('grant-g', 20, 'purchase');
SELECT hold_id AS hg FROM credits.credit_hold('grant-g', 50, 'video_generation') \gset
SELECT * FROM grant_state WHERE user_id = 'grant-g';
UPDATE credits.grants SET expires_at = now() - interval '1 second'
 WHERE user_id = 'grant-g' AND source = 'promo';
SELECT * FROM account_state WHERE user_id = 'grant-g';
SELECT credits.credit_release(:hg);
SELECT amount, balance_after, action FROM credits.ledger WHERE user_id = 'grant-g' ORDER BY id;
SELECT * FROM grant_state WHERE user_id = 'grant-g';
SELECT * FROM account_state WHERE user_id = 'grant-g';

-- an expired hold on expired credit: neither counts; credit_expire_holds()
-- closes the hold and posts the expiry of what it reserved
SELECT balance FROM credits.credit_grant('grant-h', 30, 'promo', :'day1');
SELECT balance FROM credits.credit_add('grant-h', 20, 'purchase');
SELECT hold_id AS hh FROM credits.credit_hold('grant-h', 40, 'video_generation') \gset
UPDATE credits.grants SET expires_at = now() - interval '1 second' WHERE user_id = 'grant-h';
UPDATE credits.holds SET expires_at = now() - interval '1 second' WHERE id = :hh;
SELECT * FROM account_state WHERE user_id = 'grant-h';
SELECT credits.credit_expire_holds() >= 1 AS closed_some;
SELECT status FROM credits.holds WHERE id = :hh;
SELECT amount, balance_after, action FROM credits.ledger WHERE user_id = 'grant-h' ORDER BY id;
SELECT * FROM grant_state WHERE user_id = 'grant-h';
SELECT * FROM account_state WHERE user_id = 'grant-h';

-- idempotency: the same key returns the original row; other parameters
-- are CR003
CREATE TEMP TABLE gk AS SELECT * FROM credits.credit_grant('grant-k', 10, 'promo', :'day1', '{}', 'gk-1');
SELECT g.tx_id = gk.tx_id AND g.balance = gk.balance AND g.created_at = gk.created_at AS same_row
  FROM credits.credit_grant('grant-k', 10, 'promo', :'day1', '{}', 'gk-1') g, gk;
SELECT count(*) AS grants FROM credits.grants WHERE user_id = 'grant-k';
-- (terse: the DETAIL names the expiry times, which change every run)
\set VERBOSITY terse
SELECT * FROM credits.credit_grant('grant-k', 11, 'promo', :'day1', '{}', 'gk-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-k', 10, 'promo-2', :'day1', '{}', 'gk-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-k', 10, 'promo', :'day2', '{}', 'gk-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-k', 10, 'promo', NULL, '{}', 'gk-1');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT balance FROM credits.credit_deduct('grant-k', 1, 'chat_message', '{}', 'gk-2');
SELECT * FROM credits.credit_grant('grant-k', 1, 'promo', NULL, '{}', 'gk-2');
\echo :LAST_ERROR_SQLSTATE
-- a keyed grant opens the account too
SELECT balance FROM credits.credit_grant('grant-k2', 7, 'promo', NULL, '{}', 'gk-3');

-- overflow is CR011
SELECT balance FROM credits.credit_add('grant-o', 9223372036854775800, 'purchase');
SELECT * FROM credits.credit_grant('grant-o', 8, 'promo');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-o', 8, 'promo', :'day1', '{}', 'go-1');
\echo :LAST_ERROR_SQLSTATE

-- bad input: CR010; nothing is written
SELECT count(*) AS grants0 FROM credits.grants \gset
SELECT * FROM credits.credit_grant(NULL, 1, 'promo');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('', 1, 'promo');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant(repeat('u', 257), 1, 'promo');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', NULL, 'promo');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', 0, 'promo');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', -3, 'promo');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', 1, '');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT * FROM credits.credit_grant('grant-x', 1, 'promo', now());
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', 1, 'promo', now() - interval '1 day');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT * FROM credits.credit_grant('grant-x', 1, 'promo', 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', 1, 'promo', '-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', 1, 'promo', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', 1, 'promo', NULL, '3');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', 1, 'promo', NULL, '{}', '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_grant('grant-x', 1, 'promo', NULL, '{}', repeat('k', 257));
\echo :LAST_ERROR_SQLSTATE
SELECT (SELECT count(*) FROM credits.grants) = :grants0 AS no_new_grants,
	   NOT EXISTS (SELECT FROM credits.accounts WHERE user_id = 'grant-x') AS no_account;

SELECT * FROM broken;
