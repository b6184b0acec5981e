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
	AS 'MODULE_PATHNAME', 'credit_subscribe'
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
REVOKE ALL ON PROCEDURE credits.run_jobs(integer, text[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION
	credits.credit_renew(),
	credits.credit_subscribe(text, text, timestamptz, text),
	credits.run_job_step(text, text, integer)
	FROM PUBLIC;
REVOKE ALL ON credits.subscription_keys, credits.job_failures FROM PUBLIC;
REVOKE ALL ON SEQUENCE credits.job_failures_id_seq FROM PUBLIC;

GRANT EXECUTE ON FUNCTION credits.credit_subscribe(text, text, timestamptz, text) TO credits_app;
GRANT SELECT ON credits.subscription_keys, credits.job_failures TO credits_reader;

-- credits_ops: the jobs (the application may not run them).
GRANT USAGE ON SCHEMA credits TO credits_ops;
REVOKE EXECUTE ON FUNCTION credits.credit_expire_holds(), credits.credit_expire_grants()
	FROM credits_app;
GRANT EXECUTE ON FUNCTION
	credits.credit_expire_holds(),
	credits.credit_expire_grants(),
	credits.credit_renew(),
	credits.run_job_step(text, text, integer)
	TO credits_ops;
GRANT EXECUTE ON PROCEDURE credits.run_jobs(integer, text[]) TO credits_ops;
GRANT SELECT ON credits.job_failures TO credits_ops;
