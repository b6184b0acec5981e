-- History order (issue 8, defect 7): id order, created_at never going
-- backwards, the before_tx_id cursor, and credit_balance_at.
SET client_min_messages = warning;

SELECT balance FROM credits.credit_init('ord-a', 100);
SELECT balance FROM credits.credit_deduct('ord-a', 1, 'chat_message');

-- The clock steps back (or, here, the newest row's created_at is in the
-- future): new rows take the previous row's created_at, never an earlier
-- one.  This also gives rows that share one created_at.
UPDATE credits.accounts SET last_tx_at = '2099-01-01 00:00:00+00'::timestamptz WHERE user_id = 'ord-a';
SELECT balance FROM credits.credit_deduct('ord-a', 2, 'chat_message');
SELECT balance FROM credits.credit_add('ord-a', 3, 'purchase');
SELECT balance FROM credits.credit_deduct('ord-a', 4, 'chat_message', '{}', 'ord-k1');
SELECT balance FROM credits.credit_grant('ord-a', 5, 'promo');
SELECT balance FROM credits.credit_deduct('ord-a', 6, 'chat_message');
SELECT count(*) AS tied FROM credits.ledger
 WHERE user_id = 'ord-a' AND created_at = '2099-01-01 00:00:00+00'::timestamptz;
SELECT bool_and(created_at >= prev) AS never_backwards,
	   bool_and(balance_after = prev_balance + amount) AS balance_chains
  FROM (SELECT created_at, amount, balance_after,
			   lag(created_at) OVER (ORDER BY id) AS prev,
			   lag(balance_after) OVER (ORDER BY id) AS prev_balance
		  FROM credits.ledger WHERE user_id = 'ord-a') l
 WHERE prev IS NOT NULL;
-- the tx_id and created_at returned are the row's
SELECT tx_id, created_at FROM credits.credit_deduct('ord-a', 1, 'chat_message') \gset
SELECT :tx_id = (SELECT max(id) FROM credits.ledger WHERE user_id = 'ord-a') AS tx_id_is_row,
	   :'created_at'::timestamptz = '2099-01-01 00:00:00+00'::timestamptz AS created_at_is_row;

-- newest first by id
SELECT amount, balance_after, action FROM credits.credit_history('ord-a');
SELECT array_agg(id) = (SELECT array_agg(id ORDER BY id DESC) FROM credits.ledger WHERE user_id = 'ord-a') AS by_id
  FROM credits.credit_history('ord-a');

-- Paging with the cursor: pages of 2, each starting before the last id
-- of the previous one, visit every row exactly once although six share
-- one created_at.
CREATE TEMP TABLE pages (page int, id bigint);
DO $$
DECLARE
	cursor_id bigint := NULL;
	n int := 0;
	got bigint[];
BEGIN
	LOOP
		SELECT array_agg(h.id ORDER BY h.id DESC) INTO got
		  FROM credits.credit_history('ord-a', 2, NULL, NULL, cursor_id) h;
		EXIT WHEN got IS NULL;
		n := n + 1;
		INSERT INTO pages SELECT n, unnest(got);
		cursor_id := got[array_length(got, 1)];
	END LOOP;
END
$$;
SELECT count(DISTINCT page) AS pages, count(*) AS rows, count(DISTINCT id) AS distinct_rows,
	   (SELECT count(*) FROM credits.ledger WHERE user_id = 'ord-a') AS ledger_rows
  FROM pages;
-- the same inside a time window of the tied rows only
SELECT count(*) FROM credits.credit_history('ord-a', 50, '2099-01-01 00:00:00+00'::timestamptz, '2099-01-02 00:00:00+00'::timestamptz);
SELECT array_agg(id ORDER BY id DESC) = (
		SELECT array_agg(id ORDER BY id DESC) FROM credits.ledger
		 WHERE user_id = 'ord-a' AND created_at >= '2099-01-01 00:00:00+00'::timestamptz
		   AND id < (SELECT max(id) FROM credits.ledger WHERE user_id = 'ord-a')) AS window_and_cursor
  FROM credits.credit_history('ord-a', 50, '2099-01-01 00:00:00+00'::timestamptz, NULL,
							  (SELECT max(id) FROM credits.ledger WHERE user_id = 'ord-a'));
-- the first row as the cursor gives nothing; an id that is not one of the
-- user's rows gives nothing either
SELECT count(*) FROM credits.credit_history('ord-a', 50, NULL, NULL,
	(SELECT min(id) FROM credits.ledger WHERE user_id = 'ord-a'));
SELECT count(*) FROM credits.credit_history('ord-a', 50, NULL, NULL, 9223372036854775807);
SELECT balance FROM credits.credit_init('ord-other', 1);
SELECT count(*) FROM credits.credit_history('ord-a', 50, NULL, NULL,
	(SELECT min(id) FROM credits.ledger WHERE user_id = 'ord-other'));

-- the result has no txid (Prisma 7 cannot read xid8) and no hash
SELECT pg_get_function_result('credits.credit_history(text, int, timestamptz, timestamptz, bigint)'::regprocedure);

-- bad cursor
SELECT * FROM credits.credit_history('ord-a', 10, NULL, NULL, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_history('ord-a', 10, NULL, NULL, -5);
\echo :LAST_ERROR_SQLSTATE

-- credit_balance_at: the balance after the last row (by id) with
-- created_at <= at; 0 before the first
SELECT balance FROM credits.credit_init('ord-b', 50);
UPDATE credits.accounts SET last_tx_at = '2030-01-01 00:00:00+00' WHERE user_id = 'ord-b';
SELECT balance FROM credits.credit_deduct('ord-b', 10, 'chat_message');
UPDATE credits.accounts SET last_tx_at = '2030-01-02 00:00:00+00' WHERE user_id = 'ord-b';
SELECT balance FROM credits.credit_add('ord-b', 5, 'purchase');
SELECT balance FROM credits.credit_deduct('ord-b', 1, 'chat_message');
SELECT credits.credit_balance_at('ord-b', '-infinity') AS before_first,
	   credits.credit_balance_at('ord-b', now()) AS after_init,
	   credits.credit_balance_at('ord-b', '2029-12-31 23:59:59.999999+00') AS just_before,
	   credits.credit_balance_at('ord-b', '2030-01-01 00:00:00+00') AS at_row,
	   credits.credit_balance_at('ord-b', '2030-01-01 12:00:00+00') AS between,
	   credits.credit_balance_at('ord-b', '2030-01-02 00:00:00+00') AS tied_rows,
	   credits.credit_balance_at('ord-b', 'infinity') AS now_balance,
	   credits.credit_balance('ord-b') AS balance;
-- an account without ledger rows is at 0
INSERT INTO credits.accounts (user_id) VALUES ('ord-c');
SELECT credits.credit_balance_at('ord-c', 'infinity');

-- bad input: unknown user CR002; NULL or empty user, NULL time CR010
SELECT credits.credit_balance_at('ord-nobody', now());
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_balance_at(NULL, now());
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_balance_at('', now());
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_balance_at('ord-b', NULL);
\echo :LAST_ERROR_SQLSTATE
