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
