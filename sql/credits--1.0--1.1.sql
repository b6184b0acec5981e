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

-- Like sync_sleep(), for credits-sync 1.1: sets the flag, then returns how many
-- writers were between reading it and the end of their commit (they may
-- have missed it: the daemon polls until that is 0), or -1 when wake-ups
-- are not coalesced.  Independent of the oldest transaction in progress.
CREATE FUNCTION credits.sync_arm()
	RETURNS integer
	AS 'MODULE_PATHNAME', 'credits_sync_arm'
	LANGUAGE C VOLATILE;

-- ---------------------------------------------------------------------
-- Section: privileges, ownership and search_path (keep this section LAST,
-- identical in sql/credits.sql and in every upgrade script)
-- ---------------------------------------------------------------------
--
-- It runs after every other section, so it covers whatever they created,
-- and it ends in the same state whatever the history: a fresh install and
-- an upgraded database are equal (test/integration/upgrade.sh).
--
--   * PUBLIC gets nothing.  credits_app spends and reads, through the
--     functions only; credits_ops runs the jobs, rebuilds, verifies and
--     changes prices and plans; credits_reader reads (README, Roles).  The
--     table below is authoritative for the functions it names; a function
--     it does not name keeps the grants its own section gave it, and
--     test/pgtap/02_roles_privileges.sql fails until it is named here.
--   * Every member object is owned by credits_owner (NOLOGIN, not a
--     superuser), so SECURITY DEFINER functions run without superuser
--     rights.  The schema is owned by it too.
--   * Every function has SET search_path = pg_catalog, pg_temp in its
--     definition, except procedures that are not SECURITY DEFINER (the
--     clause would forbid their COMMIT).

REVOKE ALL ON ALL TABLES IN SCHEMA credits FROM PUBLIC, credits_app;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA credits FROM PUBLIC, credits_app;
REVOKE ALL ON ALL ROUTINES IN SCHEMA credits FROM PUBLIC;
GRANT USAGE ON SCHEMA credits TO credits_app, credits_ops, credits_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA credits TO credits_reader, credits_ops;
GRANT INSERT ON credits.prices, credits.plans TO credits_ops;

DO $$
DECLARE
	ext oid := (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'credits');
	r record;
BEGIN
	-- C symbols: an entry point that 1.0 also had is compiled as <name>_1_1
	-- for 1.1 (the plain name runs the frozen 1.0 code; src/credits.c), so
	-- a definition still bound to the plain name (an upgraded 1.0 function)
	-- is redefined in place: same oid, owner, grants and comment.
	FOR r IN
		SELECT p.oid, p.prosrc
		  FROM pg_catalog.pg_proc p
		  JOIN pg_catalog.pg_depend d
			ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
		 WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
		   AND d.refobjid = ext AND d.deptype = 'e'
		   AND p.prolang = (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'c')
		   AND p.prosrc IN ('credit_init', 'credit_deduct', 'credit_add', 'credit_balance',
							'credit_history', 'credit_verify', 'credit_verify_all', 'credit_rebuild',
							'credit_hold', 'credit_capture', 'credit_release', 'credit_available',
							'credit_expire_holds', 'credit_cost', 'credit_charge', 'credit_grant',
							'credit_expire_grants', 'credit_subscribe', 'credit_renew', 'credit_usage')
	LOOP
		EXECUTE pg_catalog.replace(pg_catalog.pg_get_functiondef(r.oid),
								   pg_catalog.format('$function$%s$function$', r.prosrc),
								   pg_catalog.format('$function$%s_1_1$function$', r.prosrc));
	END LOOP;

	-- function name -> the roles that may EXECUTE it (every overload)
	FOR r IN
		SELECT p.oid::pg_catalog.regprocedure AS fn, t.roles
		  FROM pg_catalog.pg_proc p
		  JOIN (VALUES
			('credit_init', 'credits_app'),
			('credit_deduct', 'credits_app'),
			('credit_add', 'credits_app'),
			('credit_hold', 'credits_app'),
			('credit_capture', 'credits_app'),
			('credit_release', 'credits_app'),
			('credit_charge', 'credits_app'),
			('credit_grant', 'credits_app'),
			('credit_subscribe', 'credits_app'),
			('credit_balance', 'credits_app, credits_ops, credits_reader'),
			('credit_available', 'credits_app, credits_ops, credits_reader'),
			('credit_history', 'credits_app, credits_ops, credits_reader'),
			('credit_usage', 'credits_app, credits_ops, credits_reader'),
			('credit_cost', 'credits_app, credits_ops, credits_reader'),
			('credit_verify', 'credits_app, credits_ops, credits_reader'),
			('library_version', 'credits_app, credits_ops, credits_reader'),
			('credit_verify_all', 'credits_ops, credits_reader'),
			('credit_rebuild', 'credits_ops'),
			('credit_renew', 'credits_ops'),
			('credit_expire_holds', 'credits_ops'),
			('credit_expire_grants', 'credits_ops'),
			('sync_sleep', 'credits_reader'),
			('sync_arm', 'credits_reader'),
			('ledger_refuse_change', NULL)
		  ) AS t(name, roles) ON t.name = p.proname
		 WHERE p.pronamespace = 'credits'::pg_catalog.regnamespace
	LOOP
		EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM credits_app, credits_ops, credits_reader', r.fn);
		IF r.roles IS NOT NULL THEN
			EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO %s', r.fn, r.roles);
		END IF;
	END LOOP;

	-- ownership
	ALTER SCHEMA credits OWNER TO credits_owner;
	FOR r IN
		SELECT d.objid, i.type, i.identity
		  FROM pg_catalog.pg_depend d,
			   LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) i
		 WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
		   AND d.refobjid = ext AND d.deptype = 'e'
		 ORDER BY i.type, i.identity
	LOOP
		IF r.type = 'sequence' AND EXISTS (
				SELECT FROM pg_catalog.pg_depend s
				 WHERE s.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
				   AND s.objid = r.objid AND s.deptype IN ('a', 'i')
				   AND s.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass) THEN
			CONTINUE;			-- owned by a column: follows its table
		ELSIF r.type IN ('table', 'view', 'materialized view', 'sequence',
						 'function', 'procedure', 'aggregate', 'type', 'domain') THEN
			EXECUTE pg_catalog.format('ALTER %s %s OWNER TO credits_owner',
									  pg_catalog.upper(r.type), r.identity);
		ELSIF r.type = 'composite type' THEN
			EXECUTE pg_catalog.format('ALTER TYPE %s OWNER TO credits_owner', r.identity);
		ELSE
			RAISE EXCEPTION 'credits: no ownership rule for extension member % %', r.type, r.identity;
		END IF;
	END LOOP;

	-- search_path
	FOR r IN
		SELECT p.oid::pg_catalog.regprocedure AS fn
		  FROM pg_catalog.pg_proc p
		  JOIN pg_catalog.pg_depend d
			ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
		 WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
		   AND d.refobjid = ext AND d.deptype = 'e'
		   AND (p.prokind <> 'p' OR p.prosecdef)
	LOOP
		EXECUTE pg_catalog.format('ALTER ROUTINE %s SET search_path = pg_catalog, pg_temp', r.fn);
	END LOOP;
END
$$;
