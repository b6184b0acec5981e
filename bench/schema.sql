-- Baselines for make bench, installed in schema credits_bench.
--
-- floor_deduct: the least work PostgreSQL can do for one durable deduction:
-- a guarded UPDATE ... RETURNING plus the ledger INSERT, as plain SQL.
-- plpgsql_deduct: the straightforward PL/pgSQL version an app would write.
DROP SCHEMA IF EXISTS credits_bench CASCADE;
CREATE SCHEMA credits_bench;

CREATE FUNCTION credits_bench.floor_deduct(u text, amt bigint)
RETURNS bigint LANGUAGE sql AS $$
	WITH a AS (
		UPDATE credits.accounts SET balance = balance - amt
		 WHERE user_id = u AND balance >= amt
		RETURNING balance)
	INSERT INTO credits.ledger (user_id, amount, balance_after, action)
	SELECT u, -amt, balance, 'bench' FROM a
	RETURNING balance_after
$$;

-- bench/floor_ordered.pgbench and floor_chained.pgbench are the floor with
-- what credit_deduct adds to order and chain a user's rows (src/spi.c,
-- CHAIN_SET), as prepared statements (planned once per connection, like
-- credit_deduct's): the UPDATE also takes the row's id and created_at
-- (last_tx_id, last_tx_at), and floor_chained computes the row's hash from
-- the account's last_hash and last_tx_id as well and stores it in both
-- rows.  statement_timestamp() stands for the clock the functions pass as
-- a parameter.  They differ in the hash chain alone, so make bench
-- compares them to show what the chain costs per durable deduction.  (Their rows, like the floor's, are
-- not chained the way credit_verify expects: run make bench on a database
-- of its own.)

-- loop_ordered(n, first), loop_chained(n, first): the same two statements
-- n times in a loop (plans cached), on accounts bench-1 .. bench-1000 from
-- the one after bench-<first>, for make bench's in-backend CPU per call;
-- their difference is the chain's CPU in a deduction's statement.
CREATE FUNCTION credits_bench.loop_ordered(n int, first int DEFAULT 0)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..n LOOP
		WITH a AS (
			UPDATE credits.accounts a SET balance = a.balance - 1,
				   last_tx_id = nextval('credits.ledger_id_seq'),
				   last_tx_at = greatest(statement_timestamp(), a.last_tx_at)
			 WHERE a.user_id = 'bench-' || ((first + i) % 1000 + 1) AND a.balance >= 1
			RETURNING a.user_id, a.balance, a.last_tx_id, a.last_tx_at)
		INSERT INTO credits.ledger (id, user_id, amount, balance_after, action, metadata, created_at)
		SELECT a.last_tx_id, a.user_id, -1, a.balance, 'bench', '{}', a.last_tx_at FROM a;
	END LOOP;
END
$$;

CREATE FUNCTION credits_bench.loop_chained(n int, first int DEFAULT 0)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..n LOOP
		WITH a AS (
			UPDATE credits.accounts a SET balance = a.balance - 1,
				   last_tx_id = nextval('credits.ledger_id_seq'),
				   last_tx_at = greatest(statement_timestamp(), a.last_tx_at),
				   last_hash = credits.ledger_row_hash(a.last_hash, a.last_tx_id, a.user_id, -1::bigint,
						a.balance - 1, 'bench', '{}'::jsonb, NULL::text,
						greatest(statement_timestamp(), a.last_tx_at),
						NULL::numeric, NULL::numeric, NULL::numeric)
			 WHERE a.user_id = 'bench-' || ((first + i) % 1000 + 1) AND a.balance >= 1
			RETURNING a.user_id, a.balance, a.last_tx_id, a.last_tx_at, a.last_hash)
		INSERT INTO credits.ledger (id, user_id, amount, balance_after, action, metadata, created_at, hash)
		SELECT a.last_tx_id, a.user_id, -1, a.balance, 'bench', '{}', a.last_tx_at, a.last_hash FROM a;
	END LOOP;
END
$$;

CREATE FUNCTION credits_bench.plpgsql_deduct(u text, amt bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	b bigint;
BEGIN
	SELECT balance INTO b FROM credits.accounts WHERE user_id = u FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown account' USING ERRCODE = 'CR002';
	END IF;
	IF b < amt THEN
		RAISE EXCEPTION 'insufficient credits' USING ERRCODE = 'CR001';
	END IF;
	UPDATE credits.accounts SET balance = balance - amt, version = version + 1,
		   updated_at = now() WHERE user_id = u RETURNING balance INTO b;
	INSERT INTO credits.ledger (user_id, amount, balance_after, action)
	VALUES (u, -amt, b, 'bench');
	RETURN b;
END
$$;

-- deduct_noset, balance_noset: credit_deduct and credit_balance exactly as
-- the extension defines them (same C function, owner, SECURITY DEFINER)
-- but without the SET search_path clause every function of the extension
-- has.  make bench compares them, to show what the clause costs per call.
DO $$
DECLARE
	f record;
	def text;
BEGIN
	FOR f IN SELECT * FROM (VALUES ('credit_deduct', 'deduct_noset'), ('credit_balance', 'balance_noset')) v(fn, copy)
	LOOP
		def := pg_get_functiondef(('credits.' || f.fn)::regproc);
		def := replace(def, 'FUNCTION credits.' || f.fn || '(', 'FUNCTION credits_bench.' || f.copy || '(');
		def := regexp_replace(def, E'\n SET search_path[^\n]*', '');
		EXECUTE def;
		EXECUTE format('ALTER FUNCTION %s OWNER TO credits_owner',
					   ('credits_bench.' || f.copy)::regproc::regprocedure);
	END LOOP;
END
$$;

-- The CPU time this backend has used, in ns (Linux: /proc/self/schedstat),
-- so that a measurement does not count the time other processes of a
-- loaded machine ran.
CREATE FUNCTION credits_bench.cpu_ns()
RETURNS bigint LANGUAGE sql AS $$
	SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint
$$;

-- WAL bytes per call of query q (which takes the call count as $1): what
-- it inserts into the WAL, run in this backend.
CREATE FUNCTION credits_bench.per_call_wal_bytes(q text, n int)
RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
	l0 pg_lsn := pg_current_wal_insert_lsn();
BEGIN
	EXECUTE q USING n;
	RETURN (pg_current_wal_insert_lsn() - l0) / n;
END
$$;

-- CPU microseconds per call of query q (which takes the call count as $1),
-- run in this backend: the per-call cost, without client round trips.
CREATE FUNCTION credits_bench.per_call_us(q text, n int)
RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
	t0 bigint := credits_bench.cpu_ns();
BEGIN
	EXECUTE q USING n;
	RETURN (credits_bench.cpu_ns() - t0) / 1000.0 / n;
END
$$;

-- durable_loop(kind, n): n durable deductions in this backend, each its
-- own committed transaction (a procedure, so it can COMMIT): one call of
-- loop_chained or loop_ordered, or credit_deduct; us is the backend's CPU
-- microseconds per deduction, commit (WAL write and flush) included.  No other client competes for
-- the cores, so make bench's pairs of it vary far less than pgbench's.
CREATE PROCEDURE credits_bench.durable_loop(kind text, n int, INOUT us float8 DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
	t0 bigint := credits_bench.cpu_ns();
BEGIN
	FOR i IN 1..n LOOP
		CASE kind
			WHEN 'chained' THEN PERFORM credits_bench.loop_chained(1, i);
			WHEN 'ordered' THEN PERFORM credits_bench.loop_ordered(1, i);
			ELSE PERFORM credits.credit_deduct('bench-' || (i % 1000 + 1), 1, 'bench');
		END CASE;
		COMMIT;
	END LOOP;
	us := (credits_bench.cpu_ns() - t0) / 1000.0 / n;
END
$$;
