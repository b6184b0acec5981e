-- Generates the proxy database's schema `credits` from a partition's
-- catalog (run on a partition, which has the extension; psql variables
-- :partitions, the partition count, and :cluster, the PL/Proxy cluster).
-- Output: SQL for the proxy database, applied by .ci/cluster.sh in one
-- transaction after proxy/servers.sql.  README, Scale-out.
--
-- Every function of the extension is named in the routing table below, or
-- the generation fails: a function added to the extension must be given a
-- route (or 'none') here.  The proxy's functions are declared with the
-- partition's own argument list (names, types, defaults) and result type,
-- so apps call them unchanged, and get the EXECUTE grants the partition's
-- functions have.
--
-- Routes:
--   user   RUN ON the stable hash of the first argument, user_id
--   hold   RUN ON the partition bits of hold_id (credits.hold_partition)
--   any    RUN ON ANY (prices are the same on every partition)
--   all    RUN ON ALL, the rows of every partition (set-returning)
--   sum    RUN ON ALL, the sum of the partitions' counts
--   jobs   run_jobs: every job on every partition, chunk by chunk
--   local  the C function itself, in the proxy (the hash)
--   none   not on the proxy (sync internals, triggers, set-up)
-- Owner (and so the login role PL/Proxy connects as, through the user
-- mappings of proxy/servers.sql): app for the writes, reader for the reads,
-- ops for the jobs and rebuilds.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only on
\pset footer off
SET client_min_messages = warning;

CREATE TEMP TABLE route (name text PRIMARY KEY, kind text NOT NULL, owner text);
INSERT INTO route VALUES
	('credit_init', 'user', 'app'), ('credit_deduct', 'user', 'app'), ('credit_add', 'user', 'app'),
	('credit_hold', 'user', 'app'), ('credit_charge', 'user', 'app'), ('credit_grant', 'user', 'app'),
	('credit_subscribe', 'user', 'app'),
	('credit_capture', 'hold', 'app'), ('credit_release', 'hold', 'app'),
	('credit_balance', 'user', 'reader'), ('credit_balance_at', 'user', 'reader'),
	('credit_history', 'user', 'reader'), ('credit_verify', 'user', 'reader'),
	('credit_available', 'user', 'reader'), ('credit_usage', 'user', 'reader'),
	('credit_cost', 'any', 'reader'), ('library_version', 'any', 'reader'),
	('credit_verify_all', 'all', 'reader'),
	('credit_rebuild', 'user', 'ops'), ('run_job_step', 'all', 'ops'),
	('credit_expire_holds', 'sum', 'ops'), ('credit_expire_grants', 'sum', 'ops'),
	('credit_renew', 'sum', 'ops'), ('run_jobs', 'jobs', 'ops'),
	('partition_hash', 'local', NULL), ('partition_of', 'local', NULL), ('hold_partition', 'local', NULL),
	('partition_setup', 'none', NULL), ('sync_sleep', 'none', NULL), ('sync_arm', 'none', NULL),
	('ledger_refuse_change', 'none', NULL), ('ledger_row_hash', 'none', NULL);

CREATE TEMP VIEW fn AS
	SELECT p.oid, p.proname AS name, r.kind, 'credits_proxy_' || r.owner AS owner,
		   'credits_part_' || r.owner AS remote, 'credits_' || r.owner AS remote_role,
		   pg_get_function_arguments(p.oid) AS args,
		   pg_get_function_identity_arguments(p.oid) AS idargs,
		   pg_get_function_result(p.oid) AS result,
		   p.prokind, p.proretset, p.prorows, p.provolatile, p.proargnames, p.prosrc, p.probin,
		   p.proisstrict, p.proparallel, p.pronargs,
		   (SELECT string_agg(format_type(t, NULL), ', ' ORDER BY k)
			  FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, k)) AS argtypes,
		   -- an input argument named like a result column (credit_history's
		   -- user_id), which PL/pgSQL refuses
		   EXISTS (SELECT FROM unnest(p.proargnames, p.proargmodes) o(n, m)
					WHERE o.m IN ('o', 't', 'b')
					  AND o.n IN (SELECT i.n FROM unnest(p.proargnames, p.proargmodes) i(n, m)
								   WHERE i.m IN ('i', 'b'))) AS conflict
	  FROM pg_proc p
	  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'credits')
	  LEFT JOIN route r ON r.name = p.proname;

-- every function routed; the owner's remote role may call what it routes
DO $$
DECLARE
	bad text;
BEGIN
	SELECT string_agg(name, ', ') INTO bad FROM fn WHERE kind IS NULL;
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'proxy/generate.sql: no route for %', bad;
	END IF;
	SELECT string_agg(name, ', ') INTO bad FROM fn
	 WHERE kind NOT IN ('local', 'none') AND NOT has_function_privilege(remote_role, oid, 'EXECUTE');
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'proxy/generate.sql: the owner''s role may not execute %', bad;
	END IF;
END
$$;

-- The partition's columns, so that the output (whose checksum decides
-- whether .ci/cluster.sh recreates the proxy's schema) changes when they
-- do: IMPORT FOREIGN SCHEMA below does not name them.
SELECT '-- columns ' || md5(string_agg(format('%s.%s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod)),
									   ',' ORDER BY c.relname, a.attnum))
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind IN ('r', 'v');

-- The schemas: credits (the API and the analysts' views), and per
-- partition credits_fdw_p<N> (its tables and views through postgres_fdw).
SELECT 'DROP SCHEMA IF EXISTS credits CASCADE;';
SELECT 'DROP SCHEMA IF EXISTS credits_remote CASCADE;';
SELECT format('DROP SCHEMA IF EXISTS credits_fdw_p%s CASCADE;', p) FROM generate_series(0, :partitions - 1) p;
SELECT 'CREATE SCHEMA credits;';
SELECT 'COMMENT ON SCHEMA credits IS ''credits through PL/Proxy: the app-facing functions of the extension, routed to ' || :partitions || ' partitions (README, Scale-out)'';';
-- credits_remote: the PL/Proxy functions and triggers behind credits (their owners only)
SELECT 'CREATE SCHEMA credits_remote; REVOKE ALL ON SCHEMA credits_remote FROM PUBLIC;'
	   ' GRANT USAGE ON SCHEMA credits_remote TO credits_proxy_app, credits_proxy_ops, credits_proxy_reader;';
SELECT 'GRANT USAGE ON SCHEMA credits TO credits_app, credits_ops, credits_reader, credits_proxy_app, credits_proxy_ops, credits_proxy_reader;';

-- the partitions' tables and views (analysts; prices and plans)
SELECT format('CREATE SCHEMA credits_fdw_p%s;', p)
	   || format(' IMPORT FOREIGN SCHEMA credits FROM SERVER credits_p%s INTO credits_fdw_p%s;', p, p)
	   || format(' REVOKE ALL ON ALL TABLES IN SCHEMA credits_fdw_p%s FROM PUBLIC;', p)
	   || format(' GRANT USAGE ON SCHEMA credits_fdw_p%s TO credits_proxy_reader, credits_proxy_ops;', p)
	   || format(' GRANT SELECT ON ALL TABLES IN SCHEMA credits_fdw_p%s TO credits_proxy_reader, credits_proxy_ops;', p)
	   || format(' GRANT INSERT ON credits_fdw_p%s.prices, credits_fdw_p%s.plans TO credits_proxy_ops;', p, p)
  FROM generate_series(0, :partitions - 1) p
 ORDER BY p;

-- Analysts' views: every table and view of the extension, the rows of all
-- partitions (UNION ALL), with the partition as a last column.  prices and
-- plans are the same on every partition: their views show the distinct
-- rows (a row that differs between partitions shows twice), and
-- current_prices and current_plans are defined over them as in the
-- extension.
CREATE TEMP VIEW rel AS
	SELECT c.relname, c.relkind
	  FROM pg_class c
	  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'credits')
	 WHERE c.relkind IN ('r', 'v');
SELECT format('CREATE VIEW credits.%I AS %s;', relname,
			  string_agg(format('SELECT t.*, %s AS partition FROM credits_fdw_p%s.%I t', p, p, relname),
						 ' UNION ALL ' ORDER BY p))
  FROM rel, generate_series(0, :partitions - 1) p
 WHERE relname NOT IN ('prices', 'plans', 'current_prices', 'current_plans')
 GROUP BY relname
 ORDER BY relname;
SELECT format('CREATE VIEW credits.%I AS SELECT DISTINCT t.* FROM (%s) t;', relname,
			  string_agg(format('SELECT * FROM credits_fdw_p%s.%I', p, relname), ' UNION ALL ' ORDER BY p))
  FROM rel, generate_series(0, :partitions - 1) p
 WHERE relname IN ('prices', 'plans')
 GROUP BY relname
 ORDER BY relname;
SELECT format('CREATE VIEW credits.%I AS %s', c.relname, pg_get_viewdef(c.oid))
  FROM pg_class c
 WHERE c.relnamespace = 'credits'::regnamespace AND c.relname IN ('current_prices', 'current_plans')
 ORDER BY c.relname;
-- the defaults of prices and plans, evaluated on the proxy (one valid_from
-- for every partition)
SELECT format('ALTER VIEW credits.%I ALTER COLUMN %I SET DEFAULT %s;', c.relname, a.attname,
			  pg_get_expr(ad.adbin, ad.adrelid))
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid
  JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relnamespace = 'credits'::regnamespace AND c.relname IN ('prices', 'plans')
 ORDER BY c.relname, a.attnum;
SELECT format('ALTER VIEW credits.%I OWNER TO credits_proxy_reader;', relname) FROM rel ORDER BY relname;
SELECT format('REVOKE ALL ON credits.%I FROM PUBLIC; GRANT SELECT ON credits.%I TO credits_reader, credits_ops;',
			  relname, relname) FROM rel ORDER BY relname;
SELECT 'GRANT INSERT ON credits.prices, credits.plans TO credits_ops;';

-- INSERT INTO credits.prices / credits.plans on the proxy inserts the row
-- into every partition (ON CONFLICT DO NOTHING), then checks that each
-- partition has exactly that row: a retry after a partial failure
-- completes it; a row that differs from one already there under the same
-- key is refused (23505) on every partition.
SELECT format($f$CREATE FUNCTION credits_remote.insert_%1$s() RETURNS trigger LANGUAGE plpgsql
	SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $b$
DECLARE
	p integer;
	same boolean;
BEGIN
	FOR p IN 0 .. %2$s - 1 LOOP
		EXECUTE pg_catalog.format('INSERT INTO credits_fdw_p%%s.%1$s SELECT ($1).* ON CONFLICT DO NOTHING', p) USING NEW;
		EXECUTE pg_catalog.format('SELECT pg_catalog.to_jsonb(x) = pg_catalog.to_jsonb($1) FROM credits_fdw_p%%s.%1$s x WHERE x.%3$I = ($1).%3$I AND x.valid_from = ($1).valid_from', p)
		   INTO same USING NEW;
		IF NOT same THEN
			RAISE EXCEPTION 'credits.%1$s already has another row for %% valid from %% on partition %%', NEW.%3$I, NEW.valid_from, p
				USING ERRCODE = 'unique_violation',
					  DETAIL = 'Rows of prices and plans are the same on every partition; this one differs from the existing row.',
					  HINT = 'Insert a row with another valid_from.';
		END IF;
	END LOOP;
	RETURN NEW;
END
$b$;
ALTER FUNCTION credits_remote.insert_%1$s() OWNER TO credits_proxy_ops;
REVOKE ALL ON FUNCTION credits_remote.insert_%1$s() FROM PUBLIC;
CREATE TRIGGER insert_everywhere INSTEAD OF INSERT ON credits.%1$s FOR EACH ROW EXECUTE FUNCTION credits_remote.insert_%1$s();$f$,
			  t.relname, :partitions, t.keycol)
  FROM (VALUES ('prices', 'action'), ('plans', 'plan')) t(relname, keycol)
 ORDER BY t.relname;

-- The functions.  Each is two: credits_remote.<name>, the PL/Proxy
-- function (VOLATILE, as PL/Proxy requires), and credits.<name>, a
-- PL/pgSQL wrapper that calls it and re-raises a partition's error as the
-- partition raised it: PL/Proxy prefixes the message with
-- "<function>(<n>): [<database>] REMOTE ERROR: " and the detail and hint
-- with "Remote detail: " and "Remote hint: ", which would break clients
-- that read them (@credits/client parses CR001's detail).  The SQLSTATE
-- is the partition's either way.
SELECT $f$CREATE OR REPLACE FUNCTION credits_proxy.raise_remote(s text, m text, d text, h text)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $b$
BEGIN
	m := pg_catalog.regexp_replace(m, '^[^\[]*\(\d+\): \[[^]]*\] REMOTE [A-Z]+: ', '');
	d := pg_catalog.regexp_replace(d, '^Remote detail: ', '');
	h := pg_catalog.regexp_replace(h, '^Remote hint: ', '');
	IF d IS NOT NULL AND d <> '' AND h IS NOT NULL AND h <> '' THEN
		RAISE EXCEPTION USING ERRCODE = s, MESSAGE = m, DETAIL = d, HINT = h;
	ELSIF d IS NOT NULL AND d <> '' THEN
		RAISE EXCEPTION USING ERRCODE = s, MESSAGE = m, DETAIL = d;
	ELSIF h IS NOT NULL AND h <> '' THEN
		RAISE EXCEPTION USING ERRCODE = s, MESSAGE = m, HINT = h;
	ELSE
		RAISE EXCEPTION USING ERRCODE = s, MESSAGE = m;
	END IF;
END
$b$;
REVOKE ALL ON FUNCTION credits_proxy.raise_remote(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits_proxy.raise_remote(text, text, text, text) TO credits_proxy_app, credits_proxy_ops, credits_proxy_reader;$f$;

CREATE TEMP VIEW handler AS SELECT $h$
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS _s = RETURNED_SQLSTATE, _m = MESSAGE_TEXT, _d = PG_EXCEPTION_DETAIL, _h = PG_EXCEPTION_HINT;
	PERFORM credits_proxy.raise_remote(_s, _m, _d, _h);
END
$h$::text AS text, $d$
DECLARE
	_s text;
	_m text;
	_d text;
	_h text;
$d$::text AS decl;

SELECT format('CREATE FUNCTION credits_remote.%1$I(%2$s) RETURNS %3$s LANGUAGE plproxy VOLATILE %4$s'
			  ' SET search_path = pg_catalog, pg_temp SET client_min_messages = warning'
			  ' AS $p$ CLUSTER %5$L; RUN ON %6$s; TARGET credits.%1$I; $p$;'
			  ' ALTER FUNCTION credits_remote.%1$I(%7$s) OWNER TO %8$I;'
			  ' REVOKE ALL ON FUNCTION credits_remote.%1$I(%7$s) FROM PUBLIC;',
			  name, args, result,
			  CASE WHEN proretset THEN format('ROWS %s', prorows) ELSE '' END,
			  :'cluster',
			  CASE kind WHEN 'user' THEN 'credits_proxy.user_partition(user_id)'
						WHEN 'hold' THEN 'credits.hold_partition(hold_id)'
						WHEN 'any' THEN 'ANY'
						WHEN 'all' THEN 'ALL' END,
			  idargs, owner)
	   || CASE WHEN NOT conflict THEN
		  format(' CREATE FUNCTION credits.%1$I(%2$s) RETURNS %3$s LANGUAGE plpgsql VOLATILE SECURITY DEFINER %4$s'
				 ' SET search_path = pg_catalog, pg_temp AS $b$%5$s BEGIN %6$s credits_remote.%1$I(%7$s); %8$s $b$;',
				 name, args, result,
				 CASE WHEN proretset THEN format('ROWS %s', prorows) ELSE '' END,
				 (SELECT decl FROM handler),
				 CASE WHEN proretset THEN 'RETURN QUERY SELECT * FROM' ELSE 'RETURN' END,
				 (SELECT string_agg('$' || i, ', ' ORDER BY i) FROM generate_series(1, pronargs) i),
				 (SELECT text FROM handler))
		  ELSE
		  -- the PL/pgSQL wrapper takes unnamed arguments, and a SQL function
		  -- with the partition's argument names calls it
		  format(' CREATE FUNCTION credits_remote.%1$I_w(%9$s) RETURNS %3$s LANGUAGE plpgsql VOLATILE %4$s'
				 ' SET search_path = pg_catalog, pg_temp AS $b$%5$s BEGIN %6$s credits_remote.%1$I(%7$s); %8$s $b$;'
				 ' ALTER FUNCTION credits_remote.%1$I_w(%9$s) OWNER TO %10$I;'
				 ' REVOKE ALL ON FUNCTION credits_remote.%1$I_w(%9$s) FROM PUBLIC;'
				 ' CREATE FUNCTION credits.%1$I(%2$s) RETURNS %3$s LANGUAGE sql VOLATILE SECURITY DEFINER %4$s'
				 ' SET search_path = pg_catalog, pg_temp AS $s$ SELECT * FROM credits_remote.%1$I_w(%7$s) $s$;',
				 name, args, result,
				 CASE WHEN proretset THEN format('ROWS %s', prorows) ELSE '' END,
				 (SELECT decl FROM handler),
				 CASE WHEN proretset THEN 'RETURN QUERY SELECT * FROM' ELSE 'RETURN' END,
				 (SELECT string_agg('$' || i, ', ' ORDER BY i) FROM generate_series(1, pronargs) i),
				 (SELECT text FROM handler),
				 argtypes, owner)
		  END
  FROM fn WHERE kind IN ('user', 'hold', 'any', 'all')
 ORDER BY name;
-- sum: a set-returning PL/Proxy function on all partitions, and the sum
SELECT format('CREATE FUNCTION credits_remote.%1$I() RETURNS SETOF integer LANGUAGE plproxy VOLATILE'
			  ' SET search_path = pg_catalog, pg_temp SET client_min_messages = warning'
			  ' AS $p$ CLUSTER %2$L; RUN ON ALL; TARGET credits.%1$I; $p$;'
			  ' ALTER FUNCTION credits_remote.%1$I() OWNER TO %3$I;'
			  ' REVOKE ALL ON FUNCTION credits_remote.%1$I() FROM PUBLIC;'
			  ' CREATE FUNCTION credits.%1$I() RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER'
			  ' SET search_path = pg_catalog, pg_temp'
			  ' AS $b$%4$s BEGIN RETURN (SELECT pg_catalog.sum(n)::integer FROM credits_remote.%1$I() n); %5$s $b$;',
			  name, :'cluster', owner, (SELECT decl FROM handler), (SELECT text FROM handler))
  FROM fn WHERE kind = 'sum'
 ORDER BY name;
-- jobs: run_jobs calls run_job_step on one partition after another, chunk
-- by chunk; each chunk commits on its partition when it returns
SELECT format($f$CREATE FUNCTION credits_remote.run_job_step_on(part integer, job text, after text, batch_size integer)
	RETURNS TABLE(last_user_id text, accounts bigint, items bigint, skipped bigint, failed bigint)
	LANGUAGE plproxy VOLATILE SET search_path = pg_catalog, pg_temp SET client_min_messages = warning AS $p$
	CLUSTER %1$L; RUN ON part;
	SELECT s.last_user_id, s.accounts, s.items, s.skipped, s.failed FROM credits.run_job_step(job, after, batch_size) s;
$p$;
ALTER FUNCTION credits_remote.run_job_step_on(integer, text, text, integer) OWNER TO %2$I;
REVOKE ALL ON FUNCTION credits_remote.run_job_step_on(integer, text, text, integer) FROM PUBLIC;
CREATE PROCEDURE credits.run_jobs(%3$s) LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $b$
DECLARE
	j text;
	p integer;
	cursor_user text;
	r record;
	n_accounts bigint := 0;
	n_items bigint := 0;
	n_skipped bigint := 0;
	n_failed bigint := 0;
	_s text;
	_m text;
	_d text;
	_h text;
BEGIN
	IF jobs IS NULL THEN
		RAISE EXCEPTION 'invalid jobs: must not be null' USING ERRCODE = 'CR010';
	END IF;
	FOREACH j IN ARRAY jobs LOOP
		IF j IS NULL THEN
			RAISE EXCEPTION 'invalid jobs: must not contain null' USING ERRCODE = 'CR010';
		ELSIF j NOT IN ('expire_holds', 'expire_grants', 'renew') THEN
			RAISE EXCEPTION 'invalid job: unknown job' USING ERRCODE = 'CR010',
				DETAIL = 'Jobs are expire_holds, expire_grants and renew.';
		END IF;
	END LOOP;
	FOREACH j IN ARRAY jobs LOOP
		FOR p IN 0 .. %4$s - 1 LOOP
			cursor_user := NULL;
			LOOP
				SELECT * INTO STRICT r FROM credits_remote.run_job_step_on(p, j, cursor_user, batch_size);
				n_accounts := n_accounts + r.accounts;
				n_items := n_items + r.items;
				n_skipped := n_skipped + r.skipped;
				n_failed := n_failed + r.failed;
				cursor_user := r.last_user_id;
				EXIT WHEN cursor_user IS NULL;
			END LOOP;
		END LOOP;
	END LOOP;
	RAISE NOTICE 'credits.run_jobs: %% accounts, %% items, %% skipped, %% failed',
		n_accounts, n_items, n_skipped, n_failed;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS _s = RETURNED_SQLSTATE, _m = MESSAGE_TEXT, _d = PG_EXCEPTION_DETAIL, _h = PG_EXCEPTION_HINT;
	PERFORM credits_proxy.raise_remote(_s, _m, _d, _h);
END
$b$;$f$, :'cluster', owner, args, :partitions)
  FROM fn WHERE kind = 'jobs';
-- local: the stable hash itself (the credits library is preloaded), and
-- partition_of(user_id) for this cluster's partition count
SELECT format('CREATE FUNCTION credits.%I(%s) RETURNS %s AS %L, %L LANGUAGE C %s %s PARALLEL %s;',
			  name, args, result, '$libdir/credits', prosrc,
			  CASE provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END,
			  CASE WHEN proisstrict THEN 'STRICT' ELSE '' END,
			  CASE proparallel WHEN 's' THEN 'SAFE' WHEN 'r' THEN 'RESTRICTED' ELSE 'UNSAFE' END)
  FROM fn WHERE kind = 'local'
 ORDER BY name;
SELECT format('CREATE FUNCTION credits.partition_of(user_id text) RETURNS integer LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE'
			  ' AS $s$ SELECT credits.partition_of(user_id, %s) $s$;', :partitions);
-- the route of a user_id: NULL goes to partition 0, which answers CR010
SELECT 'CREATE OR REPLACE FUNCTION credits_proxy.user_partition(user_id text) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE'
	   ' AS $s$ SELECT coalesce(credits.partition_hash(user_id), 0) $s$;';

-- owners and grants: those of the partition's functions
SELECT format('ALTER ROUTINE credits.%I(%s) OWNER TO %I;', name, idargs, owner)
  FROM fn WHERE kind IN ('user', 'hold', 'any', 'all', 'sum', 'jobs')
 ORDER BY name;
SELECT 'REVOKE ALL ON ALL ROUTINES IN SCHEMA credits FROM PUBLIC;';
SELECT format('GRANT EXECUTE ON ROUTINE credits.%I(%s) TO %s;', f.name, f.idargs, string_agg(r.r, ', ' ORDER BY r.r))
  FROM fn f, unnest(ARRAY['credits_app', 'credits_ops', 'credits_reader']) r(r)
 WHERE f.kind NOT IN ('none') AND has_function_privilege(r.r, f.oid, 'EXECUTE')
 GROUP BY f.name, f.idargs
 ORDER BY f.name, f.idargs;
SELECT 'GRANT EXECUTE ON FUNCTION credits.partition_of(text) TO credits_app, credits_ops, credits_reader;';
-- the routing helpers: their owners call them
SELECT 'REVOKE ALL ON FUNCTION credits_proxy.user_partition(text) FROM PUBLIC;'
	   ' GRANT EXECUTE ON FUNCTION credits_proxy.user_partition(text) TO credits_proxy_app, credits_proxy_ops, credits_proxy_reader;';
SELECT 'GRANT EXECUTE ON FUNCTION credits.partition_hash(text), credits.hold_partition(bigint) TO credits_proxy_app, credits_proxy_ops, credits_proxy_reader;';
