-- Tamper evidence (issue 9, defect 4): the per-user hash chain of the
-- ledger, checked by credit_verify / credit_verify_all, and the encoding
-- README.md documents (recomputed here in plain SQL).
SET client_min_messages = warning;

SELECT balance FROM credits.credit_init('chain-a', 100, '{"plan": "free"}');
SELECT balance FROM credits.credit_deduct('chain-a', 10, 'chat_message', '{"tokens": 1800, "model": "ü-1"}');
SELECT balance FROM credits.credit_add('chain-a', 7, 'purchase', '{}', 'chain-key-1');
SELECT balance FROM credits.credit_deduct('chain-a', 3, 'chat_message', '{}', 'chain-key-2');
SELECT balance FROM credits.credit_grant('chain-a', 20, 'promo', now() + interval '1 day');
SELECT balance FROM credits.credit_deduct('chain-a', 25, 'video_generation');
SELECT balance FROM credits.credit_charge('chain-a', 'chat_message', 1);
SELECT balance FROM credits.credit_add('chain-ü "q";:', 5, 'bonus');
SELECT balance FROM credits.credit_deduct('chain-ü "q";:', 1, 'chat_message');

-- every row has a 32-byte hash; the account's last_* name the newest row
SELECT count(*) AS rows, bool_and(octet_length(hash) = 32) AS hashed
  FROM credits.ledger WHERE user_id LIKE 'chain-%';
SELECT a.user_id, a.last_tx_id = l.id AS head_id, a.last_hash = l.hash AS head_hash,
	   a.last_tx_at = l.created_at AS head_at
  FROM credits.accounts a
  JOIN LATERAL (SELECT id, hash, created_at FROM credits.ledger
				 WHERE user_id = a.user_id ORDER BY id DESC LIMIT 1) l ON true
 WHERE a.user_id LIKE 'chain-%' ORDER BY 1;
SELECT * FROM credits.credit_verify('chain-a');
SELECT * FROM credits.credit_verify_all() WHERE user_id LIKE 'chain-%';

-- The encoding, as README.md gives it to auditors: sha256 over the
-- previous row's hash (32 zero bytes for a user's first row), then the
-- previous row's id (NULL for the first row) and this row's fields, each
-- as a 4-byte big-endian length and its bytes (length -1: NULL).
CREATE FUNCTION pg_temp.f(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE
	AS $$ SELECT coalesce(int4send(length(b)) || b, int4send(-1)) $$;
SELECT count(*) AS rows, bool_and(ok) AS recomputed FROM (
SELECT hash = sha256(
			coalesce(lag(hash) OVER w, decode(repeat('00', 32), 'hex'))
			|| pg_temp.f(int8send(lag(id) OVER w))
			|| pg_temp.f(convert_to(user_id, 'UTF8'))
			|| pg_temp.f(int8send(amount))
			|| pg_temp.f(int8send(balance_after))
			|| pg_temp.f(convert_to(action, 'UTF8'))
			|| pg_temp.f(convert_to(metadata::text, 'UTF8'))
			|| pg_temp.f(convert_to(idempotency_key, 'UTF8'))
			|| pg_temp.f(timestamptz_send(created_at))
			|| pg_temp.f(convert_to(quantity::text, 'UTF8'))
			|| pg_temp.f(convert_to(rate::text, 'UTF8'))
			|| pg_temp.f(convert_to(carry::text, 'UTF8'))) AS ok
  FROM credits.ledger WHERE user_id LIKE 'chain-%'
WINDOW w AS (PARTITION BY user_id ORDER BY id)) r;

SELECT id AS r1 FROM credits.ledger WHERE user_id = 'chain-a' ORDER BY id LIMIT 1 OFFSET 1 \gset
SELECT id AS r2 FROM credits.ledger WHERE user_id = 'chain-a' ORDER BY id LIMIT 1 OFFSET 2 \gset
SELECT id AS r3 FROM credits.ledger WHERE user_id = 'chain-a' ORDER BY id LIMIT 1 OFFSET 3 \gset
SELECT max(id) AS newest FROM credits.ledger WHERE user_id = 'chain-a' \gset

-- 1. A superuser changes an amount (and the balance cache to match it,
-- so only the chain can tell): that row is reported.  (The 14 hashes at
-- the end show every field, and every field boundary, counts.)
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger SET amount = amount + 1000, balance_after = balance_after + 1000 WHERE id = :r2;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
UPDATE credits.accounts SET balance = balance + 1000 WHERE user_id = 'chain-a';
SELECT valid, broken_tx_id = :r2 AS at_changed_row, problem FROM credits.credit_verify('chain-a');
SELECT user_id, broken_tx_id = :r2 AS at_changed_row, problem
  FROM credits.credit_verify_all() WHERE user_id LIKE 'chain-%';
ROLLBACK;

-- 2. ... and recomputes that row's hash: the next row no longer chains.
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger l SET amount = l.amount + 1,
	   hash = credits.ledger_row_hash(p.hash, p.id, l.user_id, l.amount + 1, l.balance_after,
									  l.action, l.metadata, l.idempotency_key, l.created_at,
									  NULL, NULL, NULL)
  FROM credits.ledger p WHERE l.id = :r2 AND p.id = :r1;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
SELECT valid, broken_tx_id = :r3 AS at_next_row, problem FROM credits.credit_verify('chain-a');
ROLLBACK;

-- 3. A row in the middle is deleted: the row after the gap is reported.
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
DELETE FROM credits.ledger WHERE id = :r2;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
SELECT valid, broken_tx_id = :r3 AS after_gap, problem FROM credits.credit_verify('chain-a');
ROLLBACK;

-- 4. The newest row is deleted (and the cache fixed): the account still
-- names it as the head of its chain.
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
DELETE FROM credits.ledger WHERE id = :newest;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
UPDATE credits.accounts SET balance = (SELECT sum(amount) FROM credits.ledger WHERE user_id = 'chain-a')
 WHERE user_id = 'chain-a';
SELECT valid, difference, broken_tx_id = :newest AS names_missing_row, problem FROM credits.credit_verify('chain-a');
ROLLBACK;

-- 5. Two rows are swapped (their ids exchanged): the first is reported.
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger SET id = -id WHERE id IN (:r1, :r2);
UPDATE credits.ledger SET id = CASE id WHEN -:r1 THEN :r2 ELSE :r1 END WHERE id IN (-:r1, -:r2);
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
SELECT valid, broken_tx_id = :r1 AS at_first_swapped, problem FROM credits.credit_verify('chain-a');
ROLLBACK;

-- 5b. The rows but the newest are renumbered in the same order (ids minus
-- 1,000,000): a row's own id is not among its hashed fields, but the next
-- row's hash covers it (as prev_id), so the second row is reported; the
-- account's last_tx_id covers the newest row's.
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger SET id = id - 1000000 WHERE user_id = 'chain-a' AND id < :newest;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
SELECT valid, broken_tx_id = :r1 - 1000000 AS at_second_row, problem FROM credits.credit_verify('chain-a');
ROLLBACK;
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger SET id = id + 1000000 WHERE id = :newest;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
SELECT valid, broken_tx_id = :newest AS names_renumbered_head, problem FROM credits.credit_verify('chain-a');
ROLLBACK;

-- 5c. The limit README.md states: the newest row renumbered together with
-- the account's last_tx_id is not reported (the head is the pair
-- last_tx_id, last_hash; only an outside copy of it shows this), as a
-- newest row re-hashed together with last_hash is not.
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger SET id = id + 1000000 WHERE id = :newest;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
UPDATE credits.accounts SET last_tx_id = last_tx_id + 1000000 WHERE user_id = 'chain-a';
SELECT valid, broken_tx_id, problem FROM credits.credit_verify('chain-a');
ROLLBACK;

-- 6. A row's created_at is moved: reported.
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger SET created_at = created_at - interval '1 hour' WHERE id = :r3;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
SELECT valid, broken_tx_id = :r3 AS at_moved_row, problem FROM credits.credit_verify('chain-a');
ROLLBACK;

-- 7. Rows are inserted (INSERT needs no trigger change): one without a
-- valid hash in the middle, and one correctly chained onto the newest row
-- but not written by the functions.
BEGIN;
INSERT INTO credits.ledger (id, user_id, amount, balance_after, action)
VALUES (:r2::bigint * 1000000 + 1, 'chain-a', 0, 0, 'init');
SELECT valid, broken_tx_id = :r2::bigint * 1000000 + 1 AS at_inserted, problem FROM credits.credit_verify('chain-a');
ROLLBACK;
BEGIN;
INSERT INTO credits.ledger (id, user_id, amount, balance_after, action, created_at, hash)
SELECT :newest + 1000000, 'chain-a', 5, l.balance_after + 5, 'forged', l.created_at,
	   credits.ledger_row_hash(l.hash, l.id, 'chain-a', 5, l.balance_after + 5,
							   'forged', '{}', NULL, l.created_at, NULL, NULL, NULL)
  FROM credits.ledger l WHERE l.id = :newest;
UPDATE credits.accounts SET balance = balance + 5 WHERE user_id = 'chain-a';
SELECT valid, difference, broken_tx_id = :newest + 1000000 AS at_forged, problem FROM credits.credit_verify('chain-a');
ROLLBACK;

-- 8. The account's head hash is changed: reported at the newest row.
BEGIN;
UPDATE credits.accounts SET last_hash = sha256('x') WHERE user_id = 'chain-a';
SELECT valid, broken_tx_id = :newest AS at_head, problem FROM credits.credit_verify('chain-a');
ROLLBACK;

-- after the rollbacks everything verifies again
SELECT valid, broken_tx_id, problem FROM credits.credit_verify('chain-a');
SELECT count(*) FROM credits.credit_verify_all() WHERE user_id LIKE 'chain-%';

-- the hash function: 32 bytes, and any field changes it
SELECT octet_length(credits.ledger_row_hash(NULL, 1, 'u', 1, 1, 'a', '{}', NULL, '2026-01-01', NULL, NULL, NULL));
SELECT count(DISTINCT h) AS distinct_hashes FROM (VALUES
	(credits.ledger_row_hash(NULL, 1, 'u', 1, 1, 'a', '{}', NULL, '2026-01-01', NULL, NULL, NULL)),
	(credits.ledger_row_hash('\x00', 1, 'u', 1, 1, 'a', '{}', NULL, '2026-01-01', NULL, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 2, 'u', 1, 1, 'a', '{}', NULL, '2026-01-01', NULL, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'v', 1, 1, 'a', '{}', NULL, '2026-01-01', NULL, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'u', 2, 1, 'a', '{}', NULL, '2026-01-01', NULL, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'u', 1, 2, 'a', '{}', NULL, '2026-01-01', NULL, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'u', 1, 1, 'b', '{}', NULL, '2026-01-01', NULL, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'u', 1, 1, 'a', '{"k": 1}', NULL, '2026-01-01', NULL, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'u', 1, 1, 'a', '{}', '', '2026-01-01', NULL, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'u', 1, 1, 'a', '{}', NULL, '2026-01-02', NULL, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'u', 1, 1, 'a', '{}', NULL, '2026-01-01', 1, NULL, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'u', 1, 1, 'a', '{}', NULL, '2026-01-01', NULL, 1, NULL)),
	(credits.ledger_row_hash(NULL, 1, 'u', 1, 1, 'a', '{}', NULL, '2026-01-01', NULL, NULL, 1)),
	-- field boundaries: moving a byte from one field to the next changes it
	(credits.ledger_row_hash(NULL, 1, 'ua', 1, 1, '', '{}', NULL, '2026-01-01', NULL, NULL, NULL))
) v(h);

-- the hash function against PostgreSQL's sha256() for encodings of every
-- length modulo 64 (SHA-256's padding: 55, 56, 63 and 64 bytes in the last
-- block) and one of many blocks
SELECT count(*) AS lengths, count(DISTINCT (octet_length(e) % 64)) AS residues,
	   bool_and(credits.ledger_row_hash(NULL, 1, u, 1, 1, 'a', '{}', NULL, '2026-01-01', NULL, NULL, NULL)
				= sha256(e)) AS same
  FROM (SELECT u, decode(repeat('00', 32), 'hex')
				  || pg_temp.f(int8send(1)) || pg_temp.f(convert_to(u, 'UTF8'))
				  || pg_temp.f(int8send(1)) || pg_temp.f(int8send(1))
				  || pg_temp.f(convert_to('a', 'UTF8')) || pg_temp.f(convert_to('{}', 'UTF8'))
				  || pg_temp.f(NULL) || pg_temp.f(timestamptz_send('2026-01-01'))
				  || pg_temp.f(NULL) || pg_temp.f(NULL) || pg_temp.f(NULL) AS e
		  FROM (SELECT repeat('x', n) AS u FROM generate_series(1, 128) n
				UNION ALL SELECT repeat('y', 10000)) v) w;

-- no role but the owner may call it
SELECT has_function_privilege(r, 'credits.ledger_row_hash(bytea, bigint, text, bigint, bigint, text, jsonb, text, timestamptz, numeric, numeric, numeric)', 'EXECUTE')
  FROM unnest(ARRAY['credits_app', 'credits_ops', 'credits_reader']) r;
