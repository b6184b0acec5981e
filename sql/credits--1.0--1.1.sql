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
-- Section: idempotency (one key namespace per user, bound in columns;
-- credit_release takes a key)
-- ---------------------------------------------------------------------
CREATE TABLE credits.idempotency_keys (
	user_id		text NOT NULL,
	key			text NOT NULL,
	operation	text NOT NULL,
	amount		bigint,
	quantity	numeric,
	action		text,
	expires_at	timestamptz,
	hold_id		bigint,
	tx_id		bigint,
	balance		bigint,
	available	bigint,
	result		jsonb,
	created_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, key),
	CONSTRAINT idempotency_keys_operation_known CHECK (operation IN
		('deduct', 'add', 'charge', 'hold', 'capture', 'release', 'grant', 'subscribe'))
);

COMMENT ON TABLE credits.idempotency_keys IS
	'One row per (user, idempotency key): the operation the key is bound to and its result; a retry with the same binding returns the result, any other use is CR003';
COMMENT ON COLUMN credits.idempotency_keys.action IS
	'The action (deduct, add, charge, hold), source (grant) or plan (subscribe) of the binding';
COMMENT ON COLUMN credits.idempotency_keys.hold_id IS
	'capture, release: the hold (part of the binding); hold: the hold placed (the result)';

SELECT pg_catalog.pg_extension_config_dump('credits.idempotency_keys', '');
REVOKE ALL ON credits.idempotency_keys FROM PUBLIC;
GRANT SELECT ON credits.idempotency_keys TO credits_reader;

-- 1.0's keys, bound to what each was used for.  1.0 kept hold keys,
-- capture keys, grant keys and ledger keys apart; where one user used one
-- key in two places, the first of holds, captures, grants, charges,
-- deductions and adds keeps it.  A ledger row counts as a charge only if
-- its "price" metadata (written by 1.0's credit_charge) has a number
-- quantity and rate whose rounded product is exactly the amount; this is
-- the only place metadata is read, once, at upgrade.
INSERT INTO credits.idempotency_keys (user_id, key, operation, amount, action,
									  hold_id, available, created_at)
	SELECT user_id, idempotency_key, 'hold', amount, action, id, available_after, created_at
	  FROM credits.holds WHERE idempotency_key IS NOT NULL
	ON CONFLICT DO NOTHING;

INSERT INTO credits.idempotency_keys (user_id, key, operation, amount, hold_id,
									  tx_id, balance, created_at)
	SELECT h.user_id, h.capture_key, 'capture', h.captured, h.id, l.id,
		   l.balance_after, l.created_at
	  FROM credits.holds h JOIN credits.ledger l ON l.id = h.capture_tx_id
	 WHERE h.capture_key IS NOT NULL
	ON CONFLICT DO NOTHING;

INSERT INTO credits.idempotency_keys (user_id, key, operation, amount, action,
									  expires_at, tx_id, balance, created_at)
	SELECT g.user_id, g.idempotency_key, 'grant', g.amount, g.source, g.expires_at,
		   l.id, l.balance_after, l.created_at
	  FROM credits.grants g
	  JOIN credits.ledger l ON l.user_id = g.user_id AND l.idempotency_key = g.idempotency_key
	 WHERE g.idempotency_key IS NOT NULL
	ON CONFLICT DO NOTHING;

INSERT INTO credits.idempotency_keys (user_id, key, operation, quantity, action,
									  tx_id, balance, created_at)
	SELECT l.user_id, l.idempotency_key, 'charge', (l.metadata #>> '{price,quantity}')::numeric,
		   l.action, l.id, l.balance_after, l.created_at
	  FROM credits.ledger l
	 WHERE l.idempotency_key IS NOT NULL AND l.amount < 0
	   AND jsonb_typeof(l.metadata #> '{price,quantity}') = 'number'
	   AND jsonb_typeof(l.metadata #> '{price,rate}') = 'number'
	   AND (l.metadata #>> '{price,quantity}')::numeric > 0
	   AND -l.amount = CASE l.metadata #>> '{price,rounding}'
			WHEN 'up' THEN ceil((l.metadata #>> '{price,quantity}')::numeric
								* (l.metadata #>> '{price,rate}')::numeric)
			WHEN 'down' THEN floor((l.metadata #>> '{price,quantity}')::numeric
								   * (l.metadata #>> '{price,rate}')::numeric)
			WHEN 'nearest' THEN round((l.metadata #>> '{price,quantity}')::numeric
									  * (l.metadata #>> '{price,rate}')::numeric)
			END
	ON CONFLICT DO NOTHING;

INSERT INTO credits.idempotency_keys (user_id, key, operation, amount, action,
									  tx_id, balance, created_at)
	SELECT user_id, idempotency_key, CASE WHEN amount < 0 THEN 'deduct' ELSE 'add' END,
		   abs(amount), action, id, balance_after, created_at
	  FROM credits.ledger
	 WHERE idempotency_key IS NOT NULL AND amount <> 0
	ON CONFLICT DO NOTHING;

-- credit_release(hold_id, idempotency_key); the privileges section below
-- sets its owner, search_path and grants, as for every function
DROP FUNCTION credits.credit_release(bigint);
CREATE FUNCTION credits.credit_release(hold_id bigint,
									   idempotency_key text DEFAULT NULL)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_release_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER;
REVOKE ALL ON FUNCTION credits.credit_release(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits.credit_release(bigint, text) TO credits_app;

-- ---------------------------------------------------------------------
-- Section: history order and the ledger's hash chain (chain: ids
-- assigned under the account row lock, created_at never going backwards
-- along them, history paged by id, per-user sha256 chain,
-- credit_balance_at)
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
	'sha256 over the user''s previous row''s hash and id and this row''s fields (credits.ledger_row_hash)';

CREATE FUNCTION credits.ledger_row_hash(prev bytea, prev_id bigint, user_id text,
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
-- whose step is ledger_row_hash gives each row its hash, from the previous
-- row's hash (the aggregate's state) and id (lag).  The append-only
-- trigger is off for this one UPDATE, which changes only the new column.
CREATE AGGREGATE credits.ledger_chain_backfill(bigint, text, bigint, bigint, text,
											   jsonb, text, timestamptz,
											   numeric, numeric, numeric) (
	SFUNC = credits.ledger_row_hash,
	STYPE = bytea
);
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger l SET hash = c.hash
  FROM (SELECT id, credits.ledger_chain_backfill(prev_id, user_id, amount, balance_after,
				   action, metadata, idempotency_key, created_at,
				   NULL::numeric, NULL::numeric, NULL::numeric)
				   OVER (PARTITION BY user_id ORDER BY id) AS hash
		  FROM (SELECT *, lag(id) OVER (PARTITION BY user_id ORDER BY id) AS prev_id
				  FROM credits.ledger) p) c
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

-- credit_verify and credit_verify_all: the first break in the chain
DROP FUNCTION credits.credit_verify(text);
CREATE FUNCTION credits.credit_verify(user_id text)
	RETURNS TABLE(valid boolean, cached bigint, calculated bigint, difference bigint,
				  broken_tx_id bigint, problem text)
	AS 'MODULE_PATHNAME', 'credit_verify_1_1'
	LANGUAGE C STABLE SECURITY DEFINER ROWS 1;
REVOKE ALL ON FUNCTION credits.credit_verify(text) FROM PUBLIC;

DROP FUNCTION credits.credit_verify_all();
CREATE FUNCTION credits.credit_verify_all()
	RETURNS TABLE(user_id text, cached bigint, calculated bigint, difference bigint,
				  broken_tx_id bigint, problem text)
	AS 'MODULE_PATHNAME', 'credit_verify_all_1_1'
	LANGUAGE C STABLE SECURITY DEFINER;
REVOKE ALL ON FUNCTION credits.credit_verify_all() FROM PUBLIC;
-- (privileges of these functions: the last section)

-- ---------------------------------------------------------------------
-- Section: metered prices (prices.per_call; a carried fraction per user
-- and action in credits.carries; ledger rows of charges record quantity,
-- rate and carry; a charge that costs 0 writes an amount-0 row)
-- ---------------------------------------------------------------------
ALTER TABLE credits.ledger
	ADD COLUMN quantity numeric,
	ADD COLUMN rate numeric,
	ADD COLUMN carry numeric,
	DROP CONSTRAINT ledger_amount_nonzero,
	ADD CONSTRAINT ledger_amount_nonzero CHECK (amount <> 0 OR action = 'init' OR quantity IS NOT NULL);
COMMENT ON COLUMN credits.ledger.quantity IS
	'Charges (credit_charge): the units charged; NULL for every other row';
COMMENT ON COLUMN credits.ledger.rate IS
	'Charges: the price''s rate in credits per unit';
COMMENT ON COLUMN credits.ledger.carry IS
	'Metered charges: the fraction of a credit carried for the user and action after this row (credits.carries); NULL for per-call prices';

-- (added without a default, then filled, so that no "missing value" is
-- left in the catalog: a fresh install has none)
ALTER TABLE credits.prices ADD COLUMN per_call boolean;
UPDATE credits.prices SET per_call = false;
ALTER TABLE credits.prices
	ALTER COLUMN per_call SET DEFAULT false,
	ALTER COLUMN per_call SET NOT NULL;
COMMENT ON TABLE credits.prices IS
	'Credits per unit of each action: metered exactly with a carried fraction (credits.carries), or, if per_call, each charge rounded to a whole credit as rounding says';
COMMENT ON COLUMN credits.prices.per_call IS
	'false: metered, a charge costs floor(carry + quantity * rate) and carries the rest; true: each charge costs quantity * rate rounded as rounding says';

CREATE OR REPLACE VIEW credits.current_prices AS
	SELECT DISTINCT ON (action) action, unit, rate, rounding, valid_from, per_call
	  FROM credits.prices
	 WHERE valid_from <= pg_catalog.now()
	 ORDER BY action, valid_from DESC;

CREATE TABLE credits.carries (
	user_id			text NOT NULL,
	action			text NOT NULL,
	carry			numeric NOT NULL,
	updated_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, action),
	CONSTRAINT carries_carry_fraction CHECK (carry >= 0 AND carry < 1)
);

COMMENT ON TABLE credits.carries IS
	'Per user and metered action, the fraction of a credit charged but not yet deducted (the ledger''s carry column records it after every charge)';

SELECT pg_catalog.pg_extension_config_dump('credits.carries', '');

CREATE OR REPLACE VIEW credits.daily_usage AS
	SELECT (l.created_at AT TIME ZONE 'UTC')::date AS day, l.user_id, l.action,
		   pg_catalog.sum(-l.amount)::bigint AS credits,
		   pg_catalog.sum(
			   CASE WHEN pg_catalog.jsonb_typeof(l.metadata -> 'tokens') = 'number'
					THEN (l.metadata ->> 'tokens')::numeric
					WHEN l.action = 'llm_tokens' AND l.quantity IS NOT NULL
					THEN l.quantity
					WHEN l.action = 'llm_tokens'
					 AND pg_catalog.jsonb_typeof(l.metadata #> '{price,quantity}') = 'number'
					THEN (l.metadata #>> '{price,quantity}')::numeric
					ELSE 0 END)::bigint AS tokens
	  FROM credits.ledger l
	 WHERE (l.amount < 0 OR l.quantity IS NOT NULL) AND l.action <> 'expire'
	 GROUP BY 1, 2, 3;

-- ---------------------------------------------------------------------
-- Section: plans and jobs (the clock, plan changes, idempotent subscribe,
-- jobs in chunks; owner: plans)
-- ---------------------------------------------------------------------

-- credit_renew no longer takes "now" from its caller (issue 8, defect 2).
DROP FUNCTION credits.credit_renew(timestamptz);
CREATE FUNCTION credits.credit_renew()
	RETURNS integer
	AS 'MODULE_PATHNAME', 'credit_renew_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER;

-- credit_subscribe takes an idempotency key.
DROP FUNCTION credits.credit_subscribe(text, text, timestamptz);
CREATE FUNCTION credits.credit_subscribe(user_id text, plan text,
										 ends_at timestamptz DEFAULT NULL,
										 idempotency_key text DEFAULT NULL)
	RETURNS TABLE(period_start timestamptz, period_end timestamptz,
				  granted bigint, balance bigint)
	AS 'MODULE_PATHNAME', 'credit_subscribe_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE TABLE credits.subscription_keys (
	user_id			text NOT NULL,
	idempotency_key text NOT NULL,
	plan			text NOT NULL,
	ends_at			timestamptz,
	period_start	timestamptz,
	period_end		timestamptz,
	granted			bigint NOT NULL,
	balance			bigint,
	created_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, idempotency_key)
);

COMMENT ON TABLE credits.subscription_keys IS
	'Idempotency keys of credit_subscribe: the plan and ends_at the key is bound to, and the result returned to retries';

CREATE TABLE credits.job_failures (
	id				bigserial PRIMARY KEY,
	job				text NOT NULL,
	user_id			text NOT NULL,
	sqlstate		text NOT NULL,
	message			text NOT NULL,
	detail			text,
	failed_at		timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE credits.job_failures IS
	'Accounts a job (credits.run_jobs, credit_expire_holds, credit_expire_grants, credit_renew) skipped because their work failed; retried by the next run';

CREATE INDEX job_failures_failed_at_idx ON credits.job_failures (failed_at);

SELECT pg_catalog.pg_extension_config_dump('credits.subscription_keys', '');
SELECT pg_catalog.pg_extension_config_dump('credits.job_failures', '');
SELECT pg_catalog.pg_extension_config_dump('credits.job_failures_id_seq', '');

CREATE FUNCTION credits.run_job_step(job text, after text, batch_size integer)
	RETURNS TABLE(last_user_id text, accounts bigint, items bigint,
				  skipped bigint, failed bigint)
	AS 'MODULE_PATHNAME', 'credits_run_job_step'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE PROCEDURE credits.run_jobs(batch_size integer DEFAULT 50,
								  jobs text[] DEFAULT '{expire_holds,expire_grants,renew}')
	AS 'MODULE_PATHNAME', 'credits_run_jobs'
	LANGUAGE C;

-- Privileges: the last section (the jobs are credits_ops' only).

-- ---------------------------------------------------------------------
-- Section: core (plans.period becomes text holding a positive interval:
-- Prisma 7 cannot read interval columns, and every table and view an app
-- or analyst reads must deserialize.  current_plans reads the column, so
-- it is dropped and created again as it was; the last section grants it
-- again.  The seeded periods keep the text a fresh install writes.)
-- ---------------------------------------------------------------------
DROP VIEW credits.current_plans;
ALTER TABLE credits.plans DROP CONSTRAINT plans_period_positive;
ALTER TABLE credits.plans
	ALTER COLUMN period DROP DEFAULT,
	ALTER COLUMN period TYPE text USING
		CASE WHEN period = interval '1 month' THEN '1 month' ELSE period::text END,
	ALTER COLUMN period SET DEFAULT '1 month';
ALTER TABLE credits.plans
	ADD CONSTRAINT plans_period_positive CHECK (period::pg_catalog.interval > interval '0');
COMMENT ON COLUMN credits.plans.period IS
	'The period, as the text of a positive interval (''1 month'', ''7 days''): text, not interval, so that every client (Prisma 7) can read the row';

CREATE VIEW credits.current_plans AS
	SELECT DISTINCT ON (plan) plan, allowance, period, policy, rollover_cap, valid_from
	  FROM credits.plans
	 WHERE valid_from <= pg_catalog.now()
	 ORDER BY plan, valid_from DESC;

-- ---------------------------------------------------------------------
-- Section: core (usage sums are numeric: a bigint sum of credits or of
-- the tokens an app reports could overflow, and then credit_usage and
-- every read of daily_usage failed with 22003.  Both are created again
-- with numeric columns; the last section grants them again.)
-- ---------------------------------------------------------------------
DROP VIEW credits.daily_usage;
CREATE VIEW credits.daily_usage AS
	SELECT (l.created_at AT TIME ZONE 'UTC')::date AS day, l.user_id, l.action,
		   pg_catalog.sum(-l.amount) AS credits,
		   pg_catalog.round(pg_catalog.sum(
			   CASE WHEN pg_catalog.jsonb_typeof(l.metadata -> 'tokens') = 'number'
					THEN (l.metadata ->> 'tokens')::numeric
					WHEN l.action = 'llm_tokens' AND l.quantity IS NOT NULL
					THEN l.quantity
					WHEN l.action = 'llm_tokens'
					 AND pg_catalog.jsonb_typeof(l.metadata #> '{price,quantity}') = 'number'
					THEN (l.metadata #>> '{price,quantity}')::numeric
					ELSE 0 END)) AS tokens
	  FROM credits.ledger l
	 WHERE (l.amount < 0 OR l.quantity IS NOT NULL) AND l.action <> 'expire'
	 GROUP BY 1, 2, 3;

DROP FUNCTION credits.credit_usage(text);
CREATE FUNCTION credits.credit_usage(user_id text)
	RETURNS TABLE(balance bigint, available bigint, held bigint, plan text,
				  plan_ends_at timestamptz, period_start timestamptz,
				  spent_period numeric, spent_lifetime numeric,
				  tokens_period numeric, tokens_lifetime numeric)
	AS 'MODULE_PATHNAME', 'credit_usage_1_1'
	LANGUAGE C STABLE SECURITY DEFINER ROWS 1;

-- ---------------------------------------------------------------------
-- Section: release (pg_dump keeps a price or plan an operator adds valid
-- from -infinity: the dump conditions name the seeded rows instead of
-- leaving out every row valid from -infinity)
-- ---------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('credits.prices', $$WHERE valid_from <> '-infinity' OR action NOT IN ('chat_message', 'canvas_generation_simple', 'canvas_generation_complex', 'video_generation', 'training_job', 'llm_tokens')$$);
SELECT pg_catalog.pg_extension_config_dump('credits.plans', $$WHERE valid_from <> '-infinity' OR plan NOT IN ('free', 'pro', 'enterprise')$$);

-- ---------------------------------------------------------------------
-- Section: scale-out (partitions: the stable partition hash of a user_id,
-- and hold ids that carry their partition; src/partition.c, README
-- Scale-out)
-- ---------------------------------------------------------------------

-- fnv1a-32 of the user_id's UTF-8 bytes, then murmur3's fmix32, as int4;
-- stable forever (hashtext is not).  PL/Proxy's RUN ON takes it & (N - 1).
CREATE FUNCTION credits.partition_hash(user_id text)
	RETURNS integer
	AS 'MODULE_PATHNAME', 'credits_partition_hash'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The user's partition of `partitions` (a power of two, 1 to 1024; else CR010).
CREATE FUNCTION credits.partition_of(user_id text, partitions integer)
	RETURNS integer
	AS 'MODULE_PATHNAME', 'credits_partition_of'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The partition a hold id was placed on (its bits from 2^42 up; 0 for an
-- install that was never set up, and for NULL or ids below 1).
CREATE FUNCTION credits.hold_partition(hold_id bigint)
	RETURNS integer
	AS 'MODULE_PATHNAME', 'credits_hold_partition'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- Makes this database partition `partition` of `partitions`: moves
-- credits.holds_id_seq into the partition's id range (idempotent; the value
-- survives pg_dump).  Superuser only: granted to no role.
CREATE FUNCTION credits.partition_setup(partition integer, partitions integer)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credits_partition_setup'
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
--     clause would forbid their COMMIT) and credits.ledger_row_hash (an
--     IMMUTABLE C function that only the owner may call and that resolves
--     no names; it runs for every ledger row written or verified).

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
	-- The roles are cluster-wide and may predate this database (README,
	-- Roles): refuse existing ones that would give more than the grants
	-- below, rather than adopt them silently.
	FOR r IN
		SELECT x.rolname FROM pg_catalog.pg_roles x
		 WHERE x.rolname IN ('credits_app', 'credits_ops', 'credits_reader', 'credits_owner')
		   AND (x.rolsuper OR x.rolbypassrls OR x.rolcreaterole OR x.rolcreatedb OR x.rolreplication
				OR (x.rolname = 'credits_owner' AND x.rolcanlogin))
	LOOP
		RAISE EXCEPTION 'role % has attributes the credits extension does not allow', r.rolname
			USING ERRCODE = 'invalid_role_specification',
				  DETAIL = 'credits_owner must be NOLOGIN; none of credits_app, credits_ops, credits_reader and credits_owner may be SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION.',
				  HINT = 'The roles are shared by every database of the cluster: fix or rename the existing role, then retry.';
	END LOOP;
	FOR r IN
		SELECT a.rolname AS member, b.rolname AS of
		  FROM pg_catalog.pg_roles a, pg_catalog.pg_roles b
		 WHERE a.rolname IN ('credits_app', 'credits_ops', 'credits_reader', 'credits_owner')
		   AND b.rolname IN ('credits_app', 'credits_ops', 'credits_reader', 'credits_owner')
		   AND a.oid <> b.oid AND pg_catalog.pg_has_role(a.oid, b.oid, 'MEMBER')
	LOOP
		RAISE EXCEPTION 'role % is a member of role %', r.member, r.of
			USING ERRCODE = 'invalid_role_specification',
				  DETAIL = 'Each of credits_app, credits_ops, credits_reader and credits_owner must have only its own privileges.',
				  HINT = 'REVOKE the membership, then retry.';
	END LOOP;

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
			('credit_balance_at', 'credits_app, credits_ops, credits_reader'),
			('credit_available', 'credits_app, credits_ops, credits_reader'),
			('credit_history', 'credits_app, credits_ops, credits_reader'),
			('credit_usage', 'credits_app, credits_ops, credits_reader'),
			('credit_cost', 'credits_app, credits_ops, credits_reader'),
			('credit_verify', 'credits_app, credits_ops, credits_reader'),
			('library_version', 'credits_app, credits_ops, credits_reader'),
			('partition_hash', 'credits_app, credits_ops, credits_reader'),
			('partition_of', 'credits_app, credits_ops, credits_reader'),
			('hold_partition', 'credits_app, credits_ops, credits_reader'),
			('partition_setup', NULL),
			('credit_verify_all', 'credits_ops, credits_reader'),
			('credit_rebuild', 'credits_ops'),
			('credit_renew', 'credits_ops'),
			('credit_expire_holds', 'credits_ops'),
			('credit_expire_grants', 'credits_ops'),
			('run_job_step', 'credits_ops'),
			('run_jobs', 'credits_ops'),
			('sync_sleep', 'credits_reader'),
			('sync_arm', 'credits_reader'),
			('ledger_refuse_change', NULL),
			('ledger_row_hash', NULL)
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
		   -- ledger_row_hash: not SECURITY DEFINER, resolves no names, and
		   -- runs once per ledger row, where the clause costs ~7 us a call
		   AND p.proname <> 'ledger_row_hash'
	LOOP
		EXECUTE pg_catalog.format('ALTER ROUTINE %s SET search_path = pg_catalog, pg_temp', r.fn);
	END LOOP;
END
$$;
