-- credits 1.0 -> 1.1 upgrade script.
--
-- Every schema change since 1.0 lands here, and in sql/credits.sql (the
-- 1.1 install script).  test/integration/upgrade.sh proves that a 1.0
-- database upgraded with this script equals a fresh 1.1 install.

\echo Use "ALTER EXTENSION credits UPDATE TO '1.1'" to load this file. \quit

-- ---------------------------------------------------------------------
-- Section: roles (credits_ops runs jobs and changes prices and plans;
-- credits_owner, NOLOGIN, owns the extension's objects)
-- ---------------------------------------------------------------------
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'credits_ops') THEN
		CREATE ROLE credits_ops NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'credits_owner') THEN
		CREATE ROLE credits_owner NOLOGIN;
	END IF;
END
$$;

-- ---------------------------------------------------------------------
-- Section: history order and the ledger's hash chain (chain: ids and
-- created_at assigned under the account row lock, history paged by id,
-- per-user sha256 chain, credit_balance_at)
-- ---------------------------------------------------------------------
ALTER TABLE credits.accounts
	ADD COLUMN last_tx_id bigint,
	ADD COLUMN last_tx_at timestamptz,
	ADD COLUMN last_hash bytea;
COMMENT ON COLUMN credits.accounts.last_tx_id IS
	'Id of the user''s newest ledger row (the head of its hash chain)';
COMMENT ON COLUMN credits.accounts.last_tx_at IS
	'Latest created_at of the user''s ledger rows; the next row''s is never earlier';
COMMENT ON COLUMN credits.accounts.last_hash IS
	'hash of the user''s newest ledger row; the next row''s hash chains from it';

ALTER TABLE credits.ledger ADD COLUMN hash bytea;
COMMENT ON COLUMN credits.ledger.hash IS
	'sha256 over the user''s previous row''s hash and this row''s fields (credits.ledger_row_hash)';

DROP INDEX credits.ledger_user_time_idx;
CREATE INDEX ledger_user_id_idx ON credits.ledger (user_id, id);

CREATE FUNCTION credits.ledger_row_hash(prev bytea, id bigint, user_id text,
										amount bigint, balance_after bigint,
										action text, metadata jsonb,
										idempotency_key text,
										created_at timestamptz,
										quantity numeric, rate numeric,
										carry numeric)
	RETURNS bytea
	AS 'MODULE_PATHNAME', 'credits_ledger_row_hash'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;
REVOKE ALL ON FUNCTION credits.ledger_row_hash(bytea, bigint, text, bigint, bigint, text,
	jsonb, text, timestamptz, numeric, numeric, numeric) FROM PUBLIC;

-- Backfill the chain of the 1.0 rows, per user in id order (the order
-- 1.0 assigned ids in, under the account row lock): a running aggregate
-- whose step is ledger_row_hash gives each row its hash.  The append-only
-- trigger is off for this one UPDATE, which changes only the new column.
CREATE AGGREGATE credits.ledger_chain_backfill(bigint, text, bigint, bigint, text,
											   jsonb, text, timestamptz,
											   numeric, numeric, numeric) (
	SFUNC = credits.ledger_row_hash,
	STYPE = bytea
);
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger l SET hash = c.hash
  FROM (SELECT id, credits.ledger_chain_backfill(id, user_id, amount, balance_after,
				   action, metadata, idempotency_key, created_at,
				   NULL::numeric, NULL::numeric, NULL::numeric)
				   OVER (PARTITION BY user_id ORDER BY id) AS hash
		  FROM credits.ledger) c
 WHERE l.id = c.id;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
DROP AGGREGATE credits.ledger_chain_backfill(bigint, text, bigint, bigint, text,
											 jsonb, text, timestamptz,
											 numeric, numeric, numeric);

-- The head of each chain; 1.0's created_at (the transaction start) may go
-- backwards along ids, so the next row starts from the latest one.
UPDATE credits.accounts a
   SET last_tx_id = h.id, last_tx_at = h.latest, last_hash = h.hash
  FROM (SELECT DISTINCT ON (user_id) user_id, id, hash,
			   max(created_at) OVER (PARTITION BY user_id) AS latest
		  FROM credits.ledger ORDER BY user_id, id DESC) h
 WHERE h.user_id = a.user_id;

CREATE FUNCTION credits.credit_balance_at(user_id text, at timestamptz)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_balance_at'
	LANGUAGE C STABLE SECURITY DEFINER;
REVOKE ALL ON FUNCTION credits.credit_balance_at(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits.credit_balance_at(text, timestamptz)
	TO credits_app, credits_reader;

-- credit_history: a cursor argument, and a result type without txid
DROP FUNCTION credits.credit_history(text, int, timestamptz, timestamptz);
CREATE FUNCTION credits.credit_history(user_id text, lim int DEFAULT 50,
									   start_time timestamptz DEFAULT NULL,
									   end_time timestamptz DEFAULT NULL,
									   before_tx_id bigint DEFAULT NULL)
	RETURNS TABLE(id bigint, user_id text, amount bigint, balance_after bigint,
				  action text, metadata jsonb, idempotency_key text,
				  created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_history_1_1'
	LANGUAGE C STABLE SECURITY DEFINER ROWS 50;
REVOKE ALL ON FUNCTION credits.credit_history(text, int, timestamptz, timestamptz, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits.credit_history(text, int, timestamptz, timestamptz, bigint)
	TO credits_app, credits_reader;

-- credit_verify and credit_verify_all: the first break in the chain
DROP FUNCTION credits.credit_verify(text);
CREATE FUNCTION credits.credit_verify(user_id text)
	RETURNS TABLE(valid boolean, cached bigint, calculated bigint, difference bigint,
				  broken_tx_id bigint, problem text)
	AS 'MODULE_PATHNAME', 'credit_verify_1_1'
	LANGUAGE C STABLE SECURITY DEFINER ROWS 1;
REVOKE ALL ON FUNCTION credits.credit_verify(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits.credit_verify(text) TO credits_app, credits_reader;

DROP FUNCTION credits.credit_verify_all();
CREATE FUNCTION credits.credit_verify_all()
	RETURNS TABLE(user_id text, cached bigint, calculated bigint, difference bigint,
				  broken_tx_id bigint, problem text)
	AS 'MODULE_PATHNAME', 'credit_verify_all_1_1'
	LANGUAGE C STABLE SECURITY DEFINER;
REVOKE ALL ON FUNCTION credits.credit_verify_all() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits.credit_verify_all() TO credits_app, credits_reader;
