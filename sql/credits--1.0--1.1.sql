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

-- credit_release(hold_id, idempotency_key)
DROP FUNCTION credits.credit_release(bigint);
CREATE FUNCTION credits.credit_release(hold_id bigint,
									   idempotency_key text DEFAULT NULL)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'credit_release'
	LANGUAGE C VOLATILE SECURITY DEFINER;
REVOKE ALL ON FUNCTION credits.credit_release(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits.credit_release(bigint, text) TO credits_app;
