-- The proxy database's connections to its partitions (PL/Proxy and
-- postgres_fdw), the roles they run as, and credits_proxy.place_partition(),
-- which points both at a partition's current home.  Idempotent: .ci/cluster.sh
-- runs it on every `up`, as a superuser, with psql variable :partitions.
-- README, Scale-out.
--
-- Roles.  The proxy's functions run as one of three NOLOGIN roles that own
-- them (SECURITY DEFINER): credits_proxy_app (the app's writes),
-- credits_proxy_reader (reads, verification), credits_proxy_ops (jobs,
-- rebuilds, prices and plans).  Each is mapped, on the PL/Proxy cluster and
-- the postgres_fdw servers, to a login role on the partitions' instances
-- that has exactly the extension role it needs: credits_part_app
-- (credits_app), credits_part_reader (credits_reader), credits_part_ops
-- (credits_ops).  So a call through the proxy can do on a partition what
-- the same role could do there, and no more, whoever the caller is.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS plproxy;
CREATE EXTENSION IF NOT EXISTS postgres_fdw;

DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['credits_proxy_app', 'credits_proxy_ops', 'credits_proxy_reader'] LOOP
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$$;

-- the PL/Proxy cluster: p0 .. p<N-1>, placed by place_partition()
SELECT format('CREATE SERVER credits FOREIGN DATA WRAPPER plproxy OPTIONS (connection_lifetime %L, %s)',
			  '1800',
			  string_agg(format('p%s %L', p, format('dbname=credits_p%s host=127.0.0.1 port=1', p)), ', ' ORDER BY p))
  FROM generate_series(0, :partitions - 1) p
 WHERE NOT EXISTS (SELECT FROM pg_foreign_server WHERE srvname = 'credits')
HAVING count(*) > 0
\gexec
-- one postgres_fdw server per partition (analysts' views, prices and plans)
SELECT format('CREATE SERVER %I FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname %L, host %L, port %L)',
			  'credits_p' || p, 'credits_p' || p, '127.0.0.1', '1')
  FROM generate_series(0, :partitions - 1) p
 WHERE NOT EXISTS (SELECT FROM pg_foreign_server WHERE srvname = 'credits_p' || p)
\gexec

-- user mappings: proxy role -> login role on the partitions' instances.
-- password_required 'false' because the local instances use trust
-- authentication; in production give a password (README, Scale-out).
SELECT format('CREATE USER MAPPING FOR %I SERVER %I OPTIONS (user %L)', m.owner, s.srvname, m.remote)
  FROM pg_foreign_server s
  JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'plproxy',
	   (VALUES ('credits_proxy_app', 'credits_part_app'), ('credits_proxy_ops', 'credits_part_ops'),
			   ('credits_proxy_reader', 'credits_part_reader')) m(owner, remote)
 WHERE NOT EXISTS (SELECT FROM pg_user_mappings u WHERE u.srvid = s.oid AND u.usename = m.owner)
\gexec
SELECT format('CREATE USER MAPPING FOR %I SERVER %I OPTIONS (user %L, password_required %L)',
			  m.owner, s.srvname, m.remote, 'false')
  FROM pg_foreign_server s
  JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'postgres_fdw',
	   (VALUES ('credits_proxy_ops', 'credits_part_ops'), ('credits_proxy_reader', 'credits_part_reader')) m(owner, remote)
 WHERE s.srvname LIKE 'credits\_p%'
   AND NOT EXISTS (SELECT FROM pg_user_mappings u WHERE u.srvid = s.oid AND u.usename = m.owner)
\gexec
-- the superuser running this script imports the partitions' schemas
SELECT format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I OPTIONS (user %L)', s.srvname, current_user)
  FROM pg_foreign_server s
 WHERE s.srvname LIKE 'credits\_p%'
   AND NOT EXISTS (SELECT FROM pg_user_mappings u WHERE u.srvid = s.oid AND u.usename = current_user)
\gexec

REVOKE ALL ON FOREIGN SERVER credits FROM PUBLIC;
GRANT USAGE ON FOREIGN SERVER credits TO credits_proxy_app, credits_proxy_ops, credits_proxy_reader;
SELECT format('REVOKE ALL ON FOREIGN SERVER %I FROM PUBLIC', srvname) FROM pg_foreign_server WHERE srvname LIKE 'credits\_p%'
\gexec

-- Only the roles that use the proxy connect to its database.
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database())
\gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO credits_app, credits_ops, credits_reader', current_database())
\gexec

CREATE SCHEMA IF NOT EXISTS credits_proxy;
REVOKE ALL ON SCHEMA credits_proxy FROM PUBLIC;
GRANT USAGE ON SCHEMA credits_proxy TO credits_proxy_app, credits_proxy_ops, credits_proxy_reader;

-- place_partition(p, host, port): partition p now lives at host:port
-- (database credits_p<p>).  Repoints the PL/Proxy cluster and p's
-- postgres_fdw server in this transaction; sessions pick the change up at
-- their next call (both invalidate their cached connections when a server's
-- options change).  Superuser only.
CREATE OR REPLACE FUNCTION credits_proxy.place_partition(p integer, host text, port integer)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_foreign_server WHERE srvname = 'credits_p' || p) THEN
		RAISE EXCEPTION 'no partition %', p;
	END IF;
	-- unchanged options are not set again: ALTER SERVER makes every
	-- session drop its connections to the cluster
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_foreign_server s
					WHERE s.srvname = 'credits'
					  AND pg_catalog.format('p%s=dbname=credits_p%s host=%s port=%s', p, p, host, port) = ANY (s.srvoptions)) THEN
		EXECUTE pg_catalog.format('ALTER SERVER credits OPTIONS (SET %I %L)', 'p' || p,
								  pg_catalog.format('dbname=credits_p%s host=%s port=%s', p, host, port));
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_foreign_server s
					WHERE s.srvname = 'credits_p' || p
					  AND ('host=' || host) = ANY (s.srvoptions) AND ('port=' || port) = ANY (s.srvoptions)) THEN
		EXECUTE pg_catalog.format('ALTER SERVER %I OPTIONS (SET host %L, SET port %L)',
								  'credits_p' || p, host, port::text);
	END IF;
END
$f$;
REVOKE ALL ON FUNCTION credits_proxy.place_partition(integer, text, integer) FROM PUBLIC;

-- Where each partition is now (the move script and tests read it).
CREATE OR REPLACE VIEW credits_proxy.placement AS
	SELECT pg_catalog.substr(o.k, 2)::integer AS partition, o.v AS conninfo
	  FROM pg_catalog.pg_foreign_server s,
		   LATERAL (SELECT pg_catalog.split_part(x, '=', 1) AS k, pg_catalog.substr(x, pg_catalog.strpos(x, '=') + 1) AS v
					  FROM pg_catalog.unnest(s.srvoptions) x) o
	 WHERE s.srvname = 'credits' AND o.k ~ '^p[0-9]+$';
REVOKE ALL ON credits_proxy.placement FROM PUBLIC;
