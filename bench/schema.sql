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
-- compares them to show what the chain costs per durable deduction.
-- (Their rows, like the floor's, are not chained the way credit_verify
-- expects: run make bench on a database of its own.)

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
-- loaded machine ran.  The kernel brings it up to date when the backend is
-- switched out or at a timer tick (every 4 ms here), not when it is read:
-- a 1 ms sleep first switches the backend out, so that the reading is
-- exact (without it, a 200 ms measurement was off by up to 2%).
CREATE FUNCTION credits_bench.cpu_ns()
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep(0.001);
	RETURN split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
END
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

-- durable_interleaved(blocks, per, pause_ms): the CPU of four kinds of
-- durable deduction, interleaved one by one in this backend, so that the
-- machine's load, which drifts over seconds, weighs on each kind alike.
-- The kinds:
--   chained  loop_chained(1): the statement with the hash chain
--   ordered  loop_ordered(1): the same without it
--   deduct   credit_deduct
--   clock    credit_deduct and one more reading of the clock
-- each deduction in its own committed transaction, on the account after
-- the previous one's.  A round runs chained, deduct, ordered, deduct,
-- clock, deduct (chained and ordered swap places every other round).
-- The clock is the backend's scheduler clock, from /proc/self/schedstat:
-- the CPU ns it has run, and the times it was switched in.  The kernel
-- brings the first up to date when the backend is switched out (or at a
-- timer tick, every few ms), not when it is read.  It is read once after
-- each commit, whose WAL flush has just switched the backend out: the
-- difference of two readings is one deduction's CPU up to its flush, plus
-- the rest of the commit before it and one reading (clock minus deduct:
-- what a reading costs).  As credit_deduct comes before every other kind,
-- that rest is the same in chained's and ordered's, and their difference
-- is the chain's CPU.  Should a commit not switch the backend out (another
-- process's flush covered it), a 1 ms sleep does, before the reading.  It
-- refuses to run if commits are not durable.  pause_ms > 0: the backend
-- sleeps that long after each commit, as one does waiting for its client's
-- next call, and comes back to cold caches.  Each block of per rounds adds
-- a row per kind to credits_bench.interleaved: its CPU ns over its n
-- deductions.
CREATE TABLE credits_bench.interleaved (
	block int NOT NULL,
	kind text NOT NULL,
	ns bigint NOT NULL,
	n int NOT NULL
);

CREATE PROCEDURE credits_bench.durable_interleaved(blocks int, per int, pause_ms int DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
	kinds CONSTANT text[] := ARRAY['chained', 'ordered', 'deduct', 'clock'];
	odd CONSTANT int[] := ARRAY[1, 3, 2, 3, 4, 3];
	even CONSTANT int[] := ARRAY[2, 3, 1, 3, 4, 3];
	ns bigint[];
	cnt int[];
	c bigint[];			-- a reading: {CPU ns, ..., times switched in}
	c0 bigint[];		-- the one before it
	i int := 0;
	k int;
	u text;
BEGIN
	IF current_setting('fsync')::bool IS NOT TRUE OR current_setting('synchronous_commit') = 'off' THEN
		RAISE EXCEPTION 'commits are not durable'
			USING HINT = 'durable_interleaved needs fsync and synchronous_commit on.';
	END IF;
	DELETE FROM credits_bench.interleaved;
	COMMIT;
	FOR b IN 1..blocks LOOP
		-- an untimed credit_deduct: the first kind timed comes after a deduct
		-- too, and the first reading follows a flush
		PERFORM credits.credit_deduct('bench-1', 1, 'bench');
		COMMIT;
		IF pause_ms > 0 THEN
			PERFORM pg_sleep(pause_ms / 1000.0);
		END IF;
		ns := '{0,0,0,0}';
		cnt := '{0,0,0,0}';
		c0 := string_to_array(pg_read_file('/proc/self/schedstat'), ' ')::bigint[];
		FOR r IN 1..per LOOP
			FOR j IN 1..6 LOOP
				k := CASE WHEN r % 2 = 1 THEN odd[j] ELSE even[j] END;
				i := i + 1;
				-- account bench-(i % 1000 + 1) for every kind
				u := 'bench-' || (i % 1000 + 1);
				CASE k
					WHEN 1 THEN PERFORM credits_bench.loop_chained(1, i - 1);
					WHEN 2 THEN PERFORM credits_bench.loop_ordered(1, i - 1);
					WHEN 3 THEN PERFORM credits.credit_deduct(u, 1, 'bench');
					ELSE
						PERFORM credits.credit_deduct(u, 1, 'bench');
						c := string_to_array(pg_read_file('/proc/self/schedstat'), ' ')::bigint[];
				END CASE;
				COMMIT;
				IF pause_ms > 0 THEN
					PERFORM pg_sleep(pause_ms / 1000.0);
				END IF;
				c := string_to_array(pg_read_file('/proc/self/schedstat'), ' ')::bigint[];
				IF c[3] = c0[3] THEN
					-- not switched out since the last reading (another
					-- process's flush covered this commit): a 1 ms sleep
					-- brings the clock up to date
					PERFORM pg_sleep(0.001);
					c := string_to_array(pg_read_file('/proc/self/schedstat'), ' ')::bigint[];
				END IF;
				ns[k] := ns[k] + (c[1] - c0[1]);
				cnt[k] := cnt[k] + 1;
				c0 := c;
			END LOOP;
		END LOOP;
		INSERT INTO credits_bench.interleaved
			SELECT b, kinds[x], ns[x], cnt[x] FROM generate_series(1, 4) x;
		COMMIT;
	END LOOP;
END
$$;
