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
--     account row first and assign the ledger row's id under that lock,
--     so one user's ledger ids follow the order in which the balance
--     changed, and a created_at (the clock when the function was called)
--     never earlier than the user's previous row's, so it never goes
--     backwards along them.
--   * Each ledger row's hash chains it to the user's previous row
--     (credits.ledger_row_hash); accounts.last_* record the newest row.
--   * ledger.txid and account_events.txid hold the writing transaction's
--     id (bigint, the 64-bit value of xid8, so every client can read it);
--     credits-sync reads both tables with pgq's snapshot technique.

\echo Use "CREATE EXTENSION credits" to load this file. \quit

-- ---------------------------------------------------------------------
-- Section: roles
-- ---------------------------------------------------------------------

-- Roles are cluster-wide and outlive the extension; create them only if a
-- previous CREATE EXTENSION (in any database) has not.  Grant them to login
-- roles: credits_app to applications, credits_reader to analysts and to
-- credits-sync.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'credits_app') THEN
		CREATE ROLE credits_app NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'credits_reader') THEN
		CREATE ROLE credits_reader NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'credits_ops') THEN
		CREATE ROLE credits_ops NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'credits_owner') THEN
		CREATE ROLE credits_owner NOLOGIN;
	END IF;
END
$$;

-- ---------------------------------------------------------------------
-- Section: core tables
-- ---------------------------------------------------------------------

CREATE TABLE credits.accounts (
	user_id		text PRIMARY KEY,
	balance		bigint NOT NULL DEFAULT 0,
	held		bigint NOT NULL DEFAULT 0,
	expiring	bigint NOT NULL DEFAULT 0,
	version		bigint NOT NULL DEFAULT 1,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	last_tx_id	bigint,
	last_tx_at	timestamptz,
	last_hash	bytea,
	CONSTRAINT accounts_balance_nonnegative CHECK (balance >= 0),
	CONSTRAINT accounts_held_nonnegative CHECK (held >= 0),
	CONSTRAINT accounts_expiring_range CHECK (expiring >= 0 AND expiring <= balance),
	CONSTRAINT accounts_user_id_length CHECK (octet_length(user_id) BETWEEN 1 AND 256)
) WITH (fillfactor = 80);

COMMENT ON TABLE credits.accounts IS
	'One row per user; balance caches sum(credits.ledger.amount) for the user';
COMMENT ON COLUMN credits.accounts.held IS
	'Sum of the amounts of open holds, expired or not; the functions subtract only unexpired ones';
COMMENT ON COLUMN credits.accounts.expiring IS
	'Credit in grants that expire and whose expiry is not yet posted (sum of credits.grants remaining + reserved); 0 lets credit_deduct skip grant bookkeeping';
COMMENT ON COLUMN credits.accounts.version IS
	'Incremented by every change to the row; credits-sync uses it to refuse stale writes';
COMMENT ON COLUMN credits.accounts.last_tx_id IS
	'Id of the user''s newest ledger row (the head of its hash chain)';
COMMENT ON COLUMN credits.accounts.last_tx_at IS
	'Latest created_at of the user''s ledger rows; the next row''s is never earlier';
COMMENT ON COLUMN credits.accounts.last_hash IS
	'hash of the user''s newest ledger row; the next row''s hash chains from it';

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
	txid			bigint NOT NULL DEFAULT pg_catalog.txid_current(),
	hash			bytea,
	quantity		numeric,
	rate			numeric,
	carry			numeric,
	CONSTRAINT ledger_amount_nonzero CHECK (amount <> 0 OR action = 'init' OR quantity IS NOT NULL),
	CONSTRAINT ledger_balance_after_nonnegative CHECK (balance_after >= 0),
	CONSTRAINT ledger_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

ALTER SEQUENCE credits.ledger_id_seq OWNED BY credits.ledger.id;

COMMENT ON TABLE credits.ledger IS
	'Append-only record of every balance change; the source of truth';
COMMENT ON COLUMN credits.ledger.txid IS
	'Writing transaction (the 64-bit xid8 value as bigint); credits-sync advances past it only once it is no longer in progress';
COMMENT ON COLUMN credits.ledger.hash IS
	'sha256 over the user''s previous row''s hash and id and this row''s fields (credits.ledger_row_hash)';
COMMENT ON COLUMN credits.ledger.quantity IS
	'Charges (credit_charge): the units charged; NULL for every other row';
COMMENT ON COLUMN credits.ledger.rate IS
	'Charges: the price''s rate in credits per unit';
COMMENT ON COLUMN credits.ledger.carry IS
	'Metered charges: the fraction of a credit carried for the user and action after this row (credits.carries); NULL for per-call prices';

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
	txid		bigint NOT NULL DEFAULT pg_catalog.txid_current()
);

CREATE INDEX account_events_user_idx ON credits.account_events (user_id, id);
CREATE INDEX account_events_txid_idx ON credits.account_events (txid, id);

COMMENT ON COLUMN credits.account_events.txid IS
	'Writing transaction (the 64-bit xid8 value as bigint), like credits.ledger.txid';

-- Idempotency keys of every keyed function, one namespace per user: the
-- binding of the call that first used the key (operation, and whichever of
-- amount, quantity, action, expires_at and hold_id it has) and its result.
-- Written under the account row lock (src/idempotency.c).
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

-- The ledger's hash chain (src/chain.c): hash of a row from the previous
-- row's hash and id (NULL for a user's first row) and the row's fields.
-- Used by the functions only; README.md shows the same computation in
-- plain SQL.
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

CREATE FUNCTION credits.credit_init(user_id text, amount bigint DEFAULT NULL,
									metadata jsonb DEFAULT '{}')
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_init_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_deduct(user_id text, amount bigint, action text,
									  metadata jsonb DEFAULT '{}',
									  idempotency_key text DEFAULT NULL)
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_deduct_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_add(user_id text, amount bigint, action text,
								   metadata jsonb DEFAULT '{}',
								   idempotency_key text DEFAULT NULL)
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_add_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_balance(user_id text)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_balance_1_1'
	LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION credits.credit_balance_at(user_id text, at timestamptz)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_balance_at'
	LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION credits.credit_history(user_id text, lim int DEFAULT 50,
									   start_time timestamptz DEFAULT NULL,
									   end_time timestamptz DEFAULT NULL,
									   before_tx_id bigint DEFAULT NULL)
	RETURNS TABLE(id bigint, user_id text, amount bigint, balance_after bigint,
				  action text, metadata jsonb, idempotency_key text,
				  created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_history_1_1'
	LANGUAGE C STABLE SECURITY DEFINER ROWS 50;

CREATE FUNCTION credits.credit_verify(user_id text)
	RETURNS TABLE(valid boolean, cached bigint, calculated bigint, difference bigint,
				  broken_tx_id bigint, problem text)
	AS 'MODULE_PATHNAME', 'credit_verify_1_1'
	LANGUAGE C STABLE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_verify_all()
	RETURNS TABLE(user_id text, cached bigint, calculated bigint, difference bigint,
				  broken_tx_id bigint, problem text)
	AS 'MODULE_PATHNAME', 'credit_verify_all_1_1'
	LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION credits.credit_rebuild(user_id text)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_rebuild_1_1'
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

-- Like sync_sleep(), for credits-sync 1.1: sets the flag, then returns how many
-- writers were between reading it and the end of their commit (they may
-- have missed it: the daemon polls until that is 0), or -1 when wake-ups
-- are not coalesced.  Independent of the oldest transaction in progress.
CREATE FUNCTION credits.sync_arm()
	RETURNS integer
	AS 'MODULE_PATHNAME', 'credits_sync_arm'
	LANGUAGE C VOLATILE;

-- ---------------------------------------------------------------------
-- Section: billing (holds, prices, grants, plans)
-- ---------------------------------------------------------------------
--
-- Invariants, on top of the core's (checked by test/sql/billing_*.sql):
--   * accounts.held = sum(holds.amount) of the user's open holds, expired
--     or not; a hold stops counting at expires_at (every reader compares
--     with now()), and credit_expire_holds() or the next write to the
--     account closes it.
--   * accounts.expiring = sum(remaining + reserved) of the user's grants
--     that expire; 0 means the account has no grant bookkeeping, which is
--     what keeps the unkeyed credit_deduct at one UPDATE + one INSERT.
--   * available = balance - unexpired open holds - unspent credit of
--     grants past their expiry whose expiry is not yet posted.
--   * Every change to held writes an account_events row (hold.create,
--     hold.capture, hold.release, hold.expire) and bumps accounts.version
--     in the same transaction; every change to balance writes a ledger row.
--   * Every write locks the account row first (holds, grants, captures,
--     expiry jobs, renewals), so the C functions see a stable account.

-- Holds: credit reserved for metered work, captured or released later.
CREATE TABLE credits.holds (
	id				bigserial PRIMARY KEY,
	user_id			text NOT NULL,
	amount			bigint NOT NULL,
	action			text NOT NULL,
	metadata		jsonb NOT NULL DEFAULT '{}',
	idempotency_key text,
	status			text NOT NULL DEFAULT 'open',
	created_at		timestamptz NOT NULL DEFAULT now(),
	expires_at		timestamptz NOT NULL,
	available_after bigint NOT NULL,
	grant_ids		bigint[] NOT NULL DEFAULT '{}',
	grant_amounts	bigint[] NOT NULL DEFAULT '{}',
	closed_at		timestamptz,
	captured		bigint,
	capture_tx_id	bigint,
	capture_key		text,
	CONSTRAINT holds_amount_positive CHECK (amount > 0),
	CONSTRAINT holds_status_known CHECK (status IN ('open', 'captured', 'released', 'expired')),
	CONSTRAINT holds_closed_at CHECK ((status = 'open') = (closed_at IS NULL)),
	CONSTRAINT holds_capture CHECK ((status = 'captured') = (captured IS NOT NULL AND capture_tx_id IS NOT NULL)),
	CONSTRAINT holds_reservation CHECK (cardinality(grant_ids) = cardinality(grant_amounts))
);

COMMENT ON TABLE credits.holds IS
	'Credit reserved by credit_hold(); open until captured, released or expired (the audit trail of every hold)';
COMMENT ON COLUMN credits.holds.grant_ids IS
	'Expiring grants the hold reserved credit from, soonest-expiring first (grant_amounts: how much from each)';
COMMENT ON COLUMN credits.holds.available_after IS
	'Available balance right after the hold was placed (returned again to a retried credit_hold)';

CREATE INDEX holds_user_open_idx ON credits.holds (user_id, expires_at) WHERE status = 'open';
CREATE INDEX holds_open_expiry_idx ON credits.holds (expires_at) WHERE status = 'open';
CREATE UNIQUE INDEX holds_user_idempotency_key_idx ON credits.holds (user_id, idempotency_key)
	WHERE idempotency_key IS NOT NULL;

-- Grants: credit with a source, and for expiring grants the unspent rest.
-- Non-expiring grants are pooled with the account's other non-expiring
-- credit (remaining, reserved and expired are NULL).
CREATE TABLE credits.grants (
	id				bigserial PRIMARY KEY,
	user_id			text NOT NULL,
	source			text NOT NULL,
	amount			bigint NOT NULL,
	expires_at		timestamptz,
	remaining		bigint,
	reserved		bigint,
	expired			bigint,
	metadata		jsonb NOT NULL DEFAULT '{}',
	idempotency_key text,
	created_at		timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT grants_amount_positive CHECK (amount > 0),
	CONSTRAINT grants_tracking CHECK (
		CASE WHEN expires_at IS NULL
			THEN remaining IS NULL AND reserved IS NULL AND expired IS NULL
			ELSE remaining >= 0 AND reserved >= 0 AND expired >= 0
				AND remaining + reserved + expired <= amount
		END)
);

COMMENT ON TABLE credits.grants IS
	'Credit granted by credit_grant() or a plan allowance; spending draws from the soonest-expiring grant first';
COMMENT ON COLUMN credits.grants.remaining IS
	'Unspent credit not reserved by a hold (expiring grants only)';
COMMENT ON COLUMN credits.grants.reserved IS
	'Credit reserved by open holds; it is protected from expiry until the hold closes';
COMMENT ON COLUMN credits.grants.expired IS
	'Credit posted to the ledger as expired (action expire)';

CREATE INDEX grants_user_expiry_idx ON credits.grants (user_id, expires_at, id)
	WHERE expires_at IS NOT NULL;
CREATE INDEX grants_due_idx ON credits.grants (expires_at)
	WHERE remaining > 0 OR reserved > 0;
CREATE UNIQUE INDEX grants_user_idempotency_key_idx ON credits.grants (user_id, idempotency_key)
	WHERE idempotency_key IS NOT NULL;

-- Prices and plans are append-only histories: to change one, insert a row
-- with a later valid_from.  The row in force at time t is the one with the
-- greatest valid_from <= t.  The seeded rows are valid from -infinity and
-- are recreated by CREATE EXTENSION; pg_dump keeps every other row, also
-- one you add valid from -infinity (the conditions below name the seeds).
CREATE TABLE credits.prices (
	action			text NOT NULL,
	unit			text NOT NULL,
	rate			numeric NOT NULL,
	rounding		text NOT NULL DEFAULT 'up',
	valid_from		timestamptz NOT NULL DEFAULT now(),
	per_call		boolean NOT NULL DEFAULT false,
	PRIMARY KEY (action, valid_from),
	CONSTRAINT prices_action_nonempty CHECK (action <> ''),
	CONSTRAINT prices_rate_positive CHECK (rate > 0 AND rate < 'Infinity'),
	CONSTRAINT prices_rounding_known CHECK (rounding IN ('up', 'down', 'nearest'))
);

COMMENT ON TABLE credits.prices IS
	'Credits per unit of each action: metered exactly with a carried fraction (credits.carries), or, if per_call, each charge rounded to a whole credit as rounding says';
COMMENT ON COLUMN credits.prices.per_call IS
	'false: metered, a charge costs floor(carry + quantity * rate) and carries the rest; true: each charge costs quantity * rate rounded as rounding says';

INSERT INTO credits.prices (action, unit, rate, rounding, valid_from) VALUES
	('chat_message', 'message', 10, 'up', '-infinity'),
	('canvas_generation_simple', 'generation', 50, 'up', '-infinity'),
	('canvas_generation_complex', 'generation', 75, 'up', '-infinity'),
	('video_generation', 'second', 10, 'up', '-infinity'),
	('training_job', 'gpu_hour', 1000, 'up', '-infinity'),
	('llm_tokens', 'token', 0.0005, 'up', '-infinity');

CREATE VIEW credits.current_prices AS
	SELECT DISTINCT ON (action) action, unit, rate, rounding, valid_from, per_call
	  FROM credits.prices
	 WHERE valid_from <= pg_catalog.now()
	 ORDER BY action, valid_from DESC;

-- The fraction of a credit each user carries per metered action: always
-- in [0, 1), changed only by credit_charge under the account row lock.
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

CREATE TABLE credits.plans (
	plan			text NOT NULL,
	allowance		bigint NOT NULL,
	period			text NOT NULL DEFAULT '1 month',
	policy			text NOT NULL DEFAULT 'reset',
	rollover_cap	bigint,
	valid_from		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (plan, valid_from),
	CONSTRAINT plans_plan_nonempty CHECK (plan <> ''),
	CONSTRAINT plans_allowance_nonnegative CHECK (allowance >= 0),
	CONSTRAINT plans_period_positive CHECK (period::pg_catalog.interval > interval '0'),
	CONSTRAINT plans_policy_known CHECK (policy IN ('reset', 'rollover')),
	CONSTRAINT plans_rollover_cap CHECK (rollover_cap >= 0)
);

COMMENT ON TABLE credits.plans IS
	'Allowance granted each period; reset: the unspent allowance expires at the period end; rollover: up to rollover_cap of it (NULL: all) is granted again with the next allowance';
COMMENT ON COLUMN credits.plans.period IS
	'The period, as the text of a positive interval (''1 month'', ''7 days''): text, not interval, so that every client (Prisma 7) can read the row';

INSERT INTO credits.plans (plan, allowance, period, policy, rollover_cap, valid_from) VALUES
	('free', 5, '1 month', 'reset', NULL, '-infinity'),
	('pro', 100, '1 month', 'reset', NULL, '-infinity'),
	('enterprise', 1000, '1 month', 'rollover', 1000, '-infinity');

CREATE VIEW credits.current_plans AS
	SELECT DISTINCT ON (plan) plan, allowance, period, policy, rollover_cap, valid_from
	  FROM credits.plans
	 WHERE valid_from <= pg_catalog.now()
	 ORDER BY plan, valid_from DESC;

-- One row per subscribed user.  Periods are anchor + k * period; cycle is
-- the k of the last period whose allowance was granted (-1: none yet).
CREATE TABLE credits.subscriptions (
	user_id			text PRIMARY KEY,
	plan			text NOT NULL,
	ends_at			timestamptz,
	anchor			timestamptz NOT NULL DEFAULT now(),
	cycle			bigint NOT NULL DEFAULT -1,
	period_start	timestamptz,
	period_end		timestamptz,
	grant_id		bigint,
	renews_at		timestamptz NOT NULL DEFAULT now(),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN credits.subscriptions.renews_at IS
	'When credit_renew() next has work for this row: the end of the current period, or ends_at if sooner';
COMMENT ON COLUMN credits.subscriptions.grant_id IS
	'The allowance grant of the current period (closed by the next renewal)';

CREATE INDEX subscriptions_renews_at_idx ON credits.subscriptions (renews_at);

-- One row per user, plan and period whose allowance was granted: the
-- primary key is what makes credit_renew() grant each one exactly once.
CREATE TABLE credits.allowances (
	user_id			text NOT NULL,
	plan			text NOT NULL,
	period_start	timestamptz NOT NULL,
	period_end		timestamptz NOT NULL,
	allowance		bigint NOT NULL,
	carried			bigint NOT NULL DEFAULT 0,
	grant_id		bigint,
	tx_id			bigint,
	created_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, plan, period_start)
);

-- Keys of keyed credit_subscribe calls: the binding (plan, ends_at) and the
-- original result, returned again to a retry.  (Kept apart from the other
-- functions' keys until idempotency keys share one table per user.)
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

-- One row per account a job could not process (the error is also raised
-- as a WARNING); the account is retried by the next run.
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

SELECT pg_catalog.pg_extension_config_dump('credits.holds', '');
SELECT pg_catalog.pg_extension_config_dump('credits.holds_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('credits.grants', '');
SELECT pg_catalog.pg_extension_config_dump('credits.grants_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('credits.prices', $$WHERE valid_from <> '-infinity' OR action NOT IN ('chat_message', 'canvas_generation_simple', 'canvas_generation_complex', 'video_generation', 'training_job', 'llm_tokens')$$);
SELECT pg_catalog.pg_extension_config_dump('credits.plans', $$WHERE valid_from <> '-infinity' OR plan NOT IN ('free', 'pro', 'enterprise')$$);
SELECT pg_catalog.pg_extension_config_dump('credits.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('credits.allowances', '');
-- (in the order the 1.0 -> 1.1 upgrade script adds them)
SELECT pg_catalog.pg_extension_config_dump('credits.idempotency_keys', '');
SELECT pg_catalog.pg_extension_config_dump('credits.carries', '');
SELECT pg_catalog.pg_extension_config_dump('credits.subscription_keys', '');
SELECT pg_catalog.pg_extension_config_dump('credits.job_failures', '');
SELECT pg_catalog.pg_extension_config_dump('credits.job_failures_id_seq', '');

-- Each user's remaining credit per grant: one row per unexpired grant with
-- credit left, and one pooled row (grant_id NULL) for non-expiring credit.
-- reserved is what open, unexpired holds have reserved of it.
CREATE VIEW credits.grant_balances AS
	SELECT g.user_id, g.id AS grant_id, g.source, g.expires_at,
		   g.remaining, g.reserved
	  FROM credits.grants g
	 WHERE g.expires_at > pg_catalog.now() AND g.remaining + g.reserved > 0
	UNION ALL
	SELECT a.user_id, NULL, 'non-expiring', NULL,
		   a.balance - a.expiring - coalesce(h.reserved, 0), coalesce(h.reserved, 0)
	  FROM credits.accounts a
	  LEFT JOIN LATERAL (
		SELECT pg_catalog.sum(x.amount - (SELECT coalesce(pg_catalog.sum(r), 0)
											FROM pg_catalog.unnest(x.grant_amounts) r))::bigint
			   AS reserved
		  FROM credits.holds x
		 WHERE x.user_id = a.user_id AND x.status = 'open'
		   AND x.expires_at > pg_catalog.now()) h ON a.held > 0
	 WHERE a.balance > a.expiring;

-- Spending per UTC day, user and action (captures count under the hold's
-- action; expiries are not spending; charges that cost 0 count their
-- tokens).  tokens come from metadata.tokens, or for llm_tokens charges from
-- the charged quantity (1.0's rows: the priced quantity in metadata).
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

-- Billing functions (C; see src/holds.c, prices.c, grants.c, settle.c,
-- plans.c, usage.c)

CREATE FUNCTION credits.credit_hold(user_id text, amount bigint, action text,
									metadata jsonb DEFAULT '{}',
									ttl interval DEFAULT '1 hour',
									idempotency_key text DEFAULT NULL)
	RETURNS TABLE(hold_id bigint, held bigint, available bigint)
	AS 'MODULE_PATHNAME', 'credit_hold_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_capture(hold_id bigint, amount bigint DEFAULT NULL,
									   metadata jsonb DEFAULT '{}',
									   idempotency_key text DEFAULT NULL)
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_capture_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_release(hold_id bigint,
									   idempotency_key text DEFAULT NULL)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_release_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION credits.credit_available(user_id text)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_available_1_1'
	LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION credits.credit_expire_holds()
	RETURNS integer
	AS 'MODULE_PATHNAME', 'credit_expire_holds_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION credits.credit_cost(action text, quantity numeric)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_cost_1_1'
	LANGUAGE C STABLE SECURITY DEFINER;

CREATE FUNCTION credits.credit_charge(user_id text, action text, quantity numeric,
									  metadata jsonb DEFAULT '{}',
									  idempotency_key text DEFAULT NULL)
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_charge_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_grant(user_id text, amount bigint, source text,
									 expires_at timestamptz DEFAULT NULL,
									 metadata jsonb DEFAULT '{}',
									 idempotency_key text DEFAULT NULL)
	RETURNS TABLE(tx_id bigint, balance bigint, created_at timestamptz)
	AS 'MODULE_PATHNAME', 'credit_grant_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_expire_grants()
	RETURNS integer
	AS 'MODULE_PATHNAME', 'credit_expire_grants_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER;

CREATE FUNCTION credits.credit_subscribe(user_id text, plan text,
										 ends_at timestamptz DEFAULT NULL,
										 idempotency_key text DEFAULT NULL)
	RETURNS TABLE(period_start timestamptz, period_end timestamptz,
				  granted bigint, balance bigint)
	AS 'MODULE_PATHNAME', 'credit_subscribe_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE FUNCTION credits.credit_renew()
	RETURNS integer
	AS 'MODULE_PATHNAME', 'credit_renew_1_1'
	LANGUAGE C VOLATILE SECURITY DEFINER;

-- The jobs in chunks that commit separately (src/jobs.c): CALL
-- credits.run_jobs() from pg_cron.  run_job_step is one chunk.
CREATE FUNCTION credits.run_job_step(job text, after text, batch_size integer)
	RETURNS TABLE(last_user_id text, accounts bigint, items bigint,
				  skipped bigint, failed bigint)
	AS 'MODULE_PATHNAME', 'credits_run_job_step'
	LANGUAGE C VOLATILE SECURITY DEFINER ROWS 1;

CREATE PROCEDURE credits.run_jobs(batch_size integer DEFAULT 50,
								  jobs text[] DEFAULT '{expire_holds,expire_grants,renew}')
	AS 'MODULE_PATHNAME', 'credits_run_jobs'
	LANGUAGE C;

CREATE FUNCTION credits.credit_usage(user_id text)
	RETURNS TABLE(balance bigint, available bigint, held bigint, plan text,
				  plan_ends_at timestamptz, period_start timestamptz,
				  spent_period numeric, spent_lifetime numeric,
				  tokens_period numeric, tokens_lifetime numeric)
	AS 'MODULE_PATHNAME', 'credit_usage_1_1'
	LANGUAGE C STABLE SECURITY DEFINER ROWS 1;

-- Privileges of the billing objects.  The privileges section below also
-- grants credits_app EXECUTE on every function and credits_reader SELECT on
-- every table and view created before it.
GRANT EXECUTE ON FUNCTION
	credits.credit_hold(text, bigint, text, jsonb, interval, text),
	credits.credit_capture(bigint, bigint, jsonb, text),
	credits.credit_release(bigint, text),
	credits.credit_available(text),
	credits.credit_cost(text, numeric),
	credits.credit_charge(text, text, numeric, jsonb, text),
	credits.credit_grant(text, bigint, text, timestamptz, jsonb, text),
	credits.credit_subscribe(text, text, timestamptz, text),
	credits.credit_usage(text)
	TO credits_app;

-- The jobs (credit_expire_holds, credit_expire_grants, credit_renew,
-- run_job_step, run_jobs) are credits_ops' only: see the last section.

-- credits_reader: the billing tables and views, and the functions that
-- only read.
GRANT SELECT ON credits.holds, credits.grants, credits.prices, credits.current_prices,
	credits.plans, credits.current_plans, credits.subscriptions, credits.allowances,
	credits.grant_balances, credits.daily_usage
	TO credits_reader;
GRANT EXECUTE ON FUNCTION
	credits.credit_available(text),
	credits.credit_cost(text, numeric),
	credits.credit_usage(text)
	TO credits_reader;

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
