-- The stable partition hash and hold ids that carry their partition
-- (src/partition.c).  The vectors are also in credits-sync's tests: both
-- must give the same partition for every user_id.

-- test vectors (cross-checked with an independent Python implementation)
SELECT u, credits.partition_hash(u) AS hash,
	   credits.partition_of(u, 1) AS of1, credits.partition_of(u, 4) AS of4,
	   credits.partition_of(u, 8) AS of8, credits.partition_of(u, 1024) AS of1024
  FROM (VALUES ('u1'), ('alice'), (''), ('ü'),
			   ('00000000-0000-4000-8000-000000000000')) v(u);

-- partition_of is hash & (partitions - 1), as PL/Proxy's RUN ON does
SELECT count(*) AS mismatches
  FROM generate_series(1, 2000) i, (VALUES (1), (2), (4), (16), (1024)) n(n)
 WHERE credits.partition_of('user-' || i, n) <> (credits.partition_hash('user-' || i) & (n - 1));

-- 1,000 user ids spread over 4 partitions
SELECT credits.partition_of('user-' || i, 4) AS p, count(*) > 150 AS some
  FROM generate_series(1, 1000) i GROUP BY 1 ORDER BY 1;

-- STRICT: NULL in, NULL out
SELECT credits.partition_hash(NULL) IS NULL AS h, credits.partition_of(NULL, 4) IS NULL AS o,
	   credits.partition_of('u1', NULL) IS NULL AS n;

-- bad partition counts: CR010
\set VERBOSITY default
SELECT credits.partition_of('u1', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.partition_of('u1', -4);
SELECT credits.partition_of('u1', 3);
SELECT credits.partition_of('u1', 2048);
SELECT credits.partition_of('u1', 2147483647);
\set VERBOSITY terse

-- hold_partition: the bits from 2^42 up; 0 for NULL and ids below 1
SELECT credits.hold_partition(1) AS a, credits.hold_partition(4398046511103) AS b,
	   credits.hold_partition(4398046511104) AS c, credits.hold_partition(3 * 4398046511104 + 7) AS d,
	   credits.hold_partition(NULL) AS e, credits.hold_partition(-5) AS f,
	   credits.hold_partition(0) AS g;

-- who may call what
SELECT p.proname, r.rolname, has_function_privilege(r.rolname, p.oid, 'EXECUTE') AS may
  FROM pg_proc p, pg_roles r
 WHERE p.pronamespace = 'credits'::regnamespace
   AND p.proname IN ('partition_hash', 'partition_of', 'hold_partition', 'partition_setup')
   AND r.rolname IN ('credits_app', 'credits_ops', 'credits_reader')
 ORDER BY 1, 2;

-- partition_setup in a database of its own (it moves a sequence, which a
-- rollback would not undo)
CREATE DATABASE credits_partition_test;
\c credits_partition_test
SET client_min_messages = warning;
CREATE EXTENSION credits;
RESET client_min_messages;

-- before set-up: hold ids 1, 2, ... (partition 0), as a single node
SELECT balance FROM credits.credit_init('p-u', 1000);
SELECT hold_id, credits.hold_partition(hold_id) FROM credits.credit_hold('p-u', 10, 'chat_message');

-- set-up with holds outside the range is refused (55000), nothing changes
\set VERBOSITY default
SELECT credits.partition_setup(3, 4);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT last_value, is_called FROM credits.holds_id_seq;

-- bad arguments: CR010
SELECT credits.partition_setup(4, 4);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.partition_setup(-1, 4);
SELECT credits.partition_setup(0, 3);
SELECT credits.partition_setup(NULL, 4);
SELECT credits.partition_setup(1, NULL);

-- partition 0 of 4 keeps its ids (its range starts at 1): idempotent
SELECT credits.partition_setup(0, 4) AS next;
SELECT credits.partition_setup(0, 4) AS next;

-- a fresh database set up as partition 3 of 4
\c contrib_regression
CREATE DATABASE credits_partition_test3;
\c credits_partition_test3
SET client_min_messages = warning;
CREATE EXTENSION credits;
RESET client_min_messages;
SELECT credits.partition_setup(3, 4) AS next;
SELECT credits.partition_setup(3, 4) AS next;		-- idempotent
SELECT balance FROM credits.credit_init('p-u', 1000);
SELECT hold_id, credits.hold_partition(hold_id) AS p, hold_id < 2 ^ 52 AS js_safe
  FROM credits.credit_hold('p-u', 10, 'chat_message');
SELECT hold_id, credits.hold_partition(hold_id) AS p
  FROM credits.credit_hold('p-u', 20, 'chat_message');
SELECT credits.partition_setup(3, 4) AS next;		-- after holds: still idempotent
SELECT balance FROM credits.credit_capture(3 * 4398046511104 + 1);
SELECT credits.credit_release(3 * 4398046511104 + 2);
-- the same database cannot become another partition now
SELECT credits.partition_setup(2, 4);
\echo :LAST_ERROR_SQLSTATE

-- only a superuser sets up
CREATE ROLE partition_test_app LOGIN IN ROLE credits_app;
SET ROLE partition_test_app;
SELECT credits.partition_setup(3, 4);
SELECT credits.partition_of('alice', 4), credits.hold_partition(3 * 4398046511104 + 1);
RESET ROLE;
DROP ROLE partition_test_app;

\c contrib_regression
DROP DATABASE credits_partition_test;
DROP DATABASE credits_partition_test3;
