-- credits: an atomic, idempotent, audited credit ledger.
--
-- This is the only hand-edited install script.  The Makefile copies it to
-- credits--<default_version>.sql; released versions are kept beside it,
-- together with every credits--A--B.sql upgrade script.
--
-- Invariants (checked by credit_verify_all() and the tests):
--   * credits.ledger is append-only: UPDATE, DELETE and TRUNCATE are refused
--     for every role by ENABLE ALWAYS triggers.
--   * accounts.balance = sum(ledger.amount) for the user, at every commit.
--   * Every write goes through the C functions below, which lock the
--     account row first, so one user's ledger ids grow in commit order.
--   * ledger.txid and account_events.txid hold the writing transaction's
--     id; credits-sync reads both tables with pgq's snapshot technique.

\echo Use "CREATE EXTENSION credits" to load this file. \quit

-- ---------------------------------------------------------------------
-- Section: core tables
-- ---------------------------------------------------------------------

CREATE TABLE credits.accounts (
	user_id		text PRIMARY KEY,
	balance		bigint NOT NULL DEFAULT 0,
	held		bigint NOT NULL DEFAULT 0,
	version		bigint NOT NULL DEFAULT 1,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT accounts_balance_nonnegative CHECK (balance >= 0),
	CONSTRAINT accounts_held_nonnegative CHECK (held >= 0),
	CONSTRAINT accounts_user_id_length CHECK (octet_length(user_id) BETWEEN 1 AND 256)
) WITH (fillfactor = 80);

COMMENT ON TABLE credits.accounts IS
	'One row per user; balance caches sum(credits.ledger.amount) for the user';
COMMENT ON COLUMN credits.accounts.held IS
	'Sum of the amounts of open holds, expired or not; the functions subtract only unexpired ones';
COMMENT ON COLUMN credits.accounts.version IS
	'Incremented by every change to the row; credits-sync uses it to refuse stale writes';

CREATE SEQUENCE credits.ledger_id_seq AS bigint;

CREATE TABLE credits.ledger (
	id				bigint NOT NULL DEFAULT nextval('credits.ledger_id_seq') PRIMARY KEY,
	user_id			text NOT NULL,
	amount			bigint NOT NULL,
	balance_after	bigint NOT NULL,
	action			text NOT NULL,
	metadata		jsonb NOT NULL DEFAULT '{}',
	idempotency_key text,
	created_at		timestamptz NOT NULL DEFAULT now(),
	txid			xid8 NOT NULL DEFAULT pg_current_xact_id(),
	CONSTRAINT ledger_amount_nonzero CHECK (amount <> 0 OR action = 'init'),
	CONSTRAINT ledger_balance_after_nonnegative CHECK (balance_after >= 0),
	CONSTRAINT ledger_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

ALTER SEQUENCE credits.ledger_id_seq OWNED BY credits.ledger.id;

COMMENT ON TABLE credits.ledger IS
	'Append-only record of every balance change; the source of truth';
COMMENT ON COLUMN credits.ledger.txid IS
	'Writing transaction; credits-sync advances past it only once it is no longer in progress';

CREATE INDEX ledger_user_time_idx ON credits.ledger (user_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX ledger_user_idempotency_key_idx ON credits.ledger (user_id, idempotency_key)
	WHERE idempotency_key IS NOT NULL;
CREATE INDEX ledger_txid_idx ON credits.ledger (txid, id);

-- Changes to an account that post no ledger row (rebuilds, hold state
-- changes).  An audit trail, and the second outbox credits-sync reads.
CREATE TABLE credits.account_events (
	id			bigserial PRIMARY KEY,
	user_id		text NOT NULL,
	event		text NOT NULL,
	detail		jsonb NOT NULL DEFAULT '{}',
	created_at	timestamptz NOT NULL DEFAULT now(),
	txid		xid8 NOT NULL DEFAULT pg_current_xact_id()
);

CREATE INDEX account_events_user_idx ON credits.account_events (user_id, id);
CREATE INDEX account_events_txid_idx ON credits.account_events (txid, id);

SELECT pg_catalog.pg_extension_config_dump('credits.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('credits.ledger', '');
SELECT pg_catalog.pg_extension_config_dump('credits.ledger_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('credits.account_events', '');
SELECT pg_catalog.pg_extension_config_dump('credits.account_events_id_seq', '');

-- ---------------------------------------------------------------------
-- Section: append-only ledger
-- ---------------------------------------------------------------------

CREATE FUNCTION credits.ledger_refuse_change() RETURNS trigger
	AS 'MODULE_PATHNAME', 'credits_ledger_refuse_change'
	LANGUAGE C;

CREATE TRIGGER ledger_refuse_update_delete
	BEFORE UPDATE OR DELETE ON credits.ledger
	FOR EACH ROW EXECUTE FUNCTION credits.ledger_refuse_change();
CREATE TRIGGER ledger_refuse_truncate
	BEFORE TRUNCATE ON credits.ledger
	FOR EACH STATEMENT EXECUTE FUNCTION credits.ledger_refuse_change();
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_truncate;

-- ---------------------------------------------------------------------
-- Section: core functions (C; see src/)
-- ---------------------------------------------------------------------

CREATE FUNCTION credits.credit_init(user_id text, amount bigint DEFAULT NULL,
									metadata jsonb DEFAULT '{}')
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_init'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_deduct(user_id text, amount bigint, action text,
									  metadata jsonb DEFAULT '{}',
									  idempotency_key text DEFAULT NULL)
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_deduct'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_add(user_id text, amount bigint, action text,
								   metadata jsonb DEFAULT '{}',
								   idempotency_key text DEFAULT NULL)
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_add'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_balance(user_id text)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_balance'
	LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION credits.credit_history(user_id text, lim int DEFAULT 50,
									   start_time timestamptz DEFAULT NULL,
									   end_time timestamptz DEFAULT NULL)
	RETURNS SETOF credits.ledger
	AS 'MODULE_PATHNAME', 'credit_history'
	LANGUAGE C STABLE SECURITY DEFINER ROWS 50;

CREATE FUNCTION credits.credit_verify(user_id text)
	RETURNS TABLE(valid boolean, cached bigint, calculated bigint, difference bigint)
	AS 'MODULE_PATHNAME', 'credit_verify'
	LANGUAGE C STABLE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_verify_all()
	RETURNS TABLE(user_id text, cached bigint, calculated bigint, difference bigint)
	AS 'MODULE_PATHNAME', 'credit_verify_all'
	LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION credits.credit_rebuild(user_id text)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_rebuild'
	LANGUAGE C VOLATILE SECURITY DEFINER;

-- The version the loaded shared library was built as (compare with
-- pg_extension.extversion after an upgrade).
CREATE FUNCTION credits.library_version()
	RETURNS text
	AS 'MODULE_PATHNAME', 'credits_library_version'
	LANGUAGE C IMMUTABLE;

-- ---------------------------------------------------------------------
-- Section: sync support (credits-sync; see sync/)
-- ---------------------------------------------------------------------

-- Called by credits-sync when it has caught up and is about to wait for a
-- notification: the next transaction that writes to the ledger sends one
-- NOTIFY credits_sync at commit, and clears the flag.
CREATE FUNCTION credits.sync_sleep()
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'credits_sync_sleep'
	LANGUAGE C VOLATILE;

-- ---------------------------------------------------------------------
-- Section: billing (holds, prices, grants, plans)
-- ---------------------------------------------------------------------

-- ---------------------------------------------------------------------
-- Section: roles and privileges
-- ---------------------------------------------------------------------

DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'credits_app') THEN
		CREATE ROLE credits_app NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'credits_reader') THEN
		CREATE ROLE credits_reader NOLOGIN;
	END IF;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA credits FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA credits FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA credits FROM PUBLIC;

GRANT USAGE ON SCHEMA credits TO credits_app, credits_reader;

-- credits_app: every function, no direct access to the tables.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA credits TO credits_app;
REVOKE EXECUTE ON FUNCTION credits.ledger_refuse_change() FROM credits_app;

-- credits_reader: read the tables and call the functions that only read.
GRANT SELECT ON ALL TABLES IN SCHEMA credits TO credits_reader;
GRANT EXECUTE ON FUNCTION
	credits.credit_balance(text),
	credits.credit_history(text, int, timestamptz, timestamptz),
	credits.credit_verify(text),
	credits.credit_verify_all(),
	credits.sync_sleep()
	TO credits_reader;
