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
