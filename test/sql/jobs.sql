-- The batch jobs (issue 8, defect 8; shared semantics S7): CALL
-- credits.run_jobs() works in chunks of at most batch_size accounts that
-- commit separately; one account's failure is reported (WARNING and a row
-- in credits.job_failures) and skipped; time is credits' clock.
SET client_min_messages = warning;

-- expiry follows credits' clock: a superuser moves it with
-- credits.clock_offset (the application cannot, test/sql/clock.sql)
SELECT balance FROM credits.credit_init('job-clock', 100);
SELECT held, available FROM credits.credit_hold('job-clock', 30, 'video_generation', '{}', '1 hour');
SELECT balance FROM credits.credit_grant('job-clock', 20, 'promo', now() + interval '2 hours');
SET credits.clock_offset = 5400;
SELECT credits.credit_available('job-clock') AS available_after_90_minutes;
CALL credits.run_jobs();
SELECT status FROM credits.holds WHERE user_id = 'job-clock';
SELECT remaining, expired FROM credits.grants WHERE user_id = 'job-clock';
SET credits.clock_offset = 9000;
SELECT credits.credit_available('job-clock') AS available_after_150_minutes;
CALL credits.run_jobs();
RESET credits.clock_offset;
SELECT remaining, expired FROM credits.grants WHERE user_id = 'job-clock';
SELECT amount, action FROM credits.ledger WHERE user_id = 'job-clock' ORDER BY id;

-- 120 accounts with an expired hold, in chunks of 25: five transactions
SELECT count(*) AS accounts FROM (
	SELECT credits.credit_init('job-chunk-' || lpad(i::text, 3, '0'), 10),
		   credits.credit_hold('job-chunk-' || lpad(i::text, 3, '0'), 5, 'video_generation', '{}', '1 minute')
	  FROM generate_series(1, 120) i) x;
SET credits.clock_offset = 120;
SET client_min_messages = notice;
CALL credits.run_jobs(25, ARRAY['expire_holds']);
SET client_min_messages = warning;
RESET credits.clock_offset;
SELECT count(*) AS expired FROM credits.holds WHERE user_id LIKE 'job-chunk-%' AND status = 'expired';
-- account_events.txid is the top-level transaction of each expiry
SELECT count(*) AS events, count(DISTINCT txid) AS transactions FROM credits.account_events
 WHERE user_id LIKE 'job-chunk-%' AND event = 'hold.expire';

-- in a transaction block the chunks share the caller's transaction
SELECT balance FROM credits.credit_init('job-block', 10);
SELECT hold_id FROM credits.credit_hold('job-block', 5, 'video_generation', '{}', '1 minute') \gset
BEGIN;
SET LOCAL credits.clock_offset = 120;
CALL credits.run_jobs(1);
SELECT status FROM credits.holds WHERE id = :hold_id;
ROLLBACK;
SELECT status FROM credits.holds WHERE id = :hold_id;

-- one account's failure is reported and skipped: a subscription whose plan
-- was deleted (CR006) does not stop the other renewals
INSERT INTO credits.plans (plan, allowance, period, policy, valid_from)
	VALUES ('job_doomed', 7, '1 day', 'reset', '-infinity'),
		   ('job_daily', 4, '1 day', 'reset', '-infinity');
SELECT granted FROM credits.credit_subscribe('job-fail-a', 'job_daily');
SELECT granted FROM credits.credit_subscribe('job-fail-b', 'job_doomed');
SELECT granted FROM credits.credit_subscribe('job-fail-c', 'job_daily');
DELETE FROM credits.plans WHERE plan = 'job_doomed';
SET credits.clock_offset = 90000;
CALL credits.run_jobs(2, ARRAY['renew']);
-- the function form does the same in one transaction
SELECT credits.credit_renew() AS renewed_again;
RESET credits.clock_offset;
SELECT user_id, cycle FROM credits.subscriptions WHERE user_id LIKE 'job-fail-%' ORDER BY 1;
SELECT job, user_id, sqlstate, message FROM credits.job_failures ORDER BY id;
-- once the plan is back, the next run renews the account
INSERT INTO credits.plans (plan, allowance, period, policy, valid_from)
	VALUES ('job_doomed', 7, '1 day', 'reset', '-infinity');
SET credits.clock_offset = 90000;
CALL credits.run_jobs(2, ARRAY['renew']);
RESET credits.clock_offset;
SELECT user_id, cycle FROM credits.subscriptions WHERE user_id LIKE 'job-fail-%' ORDER BY 1;
SELECT count(*) AS failures FROM credits.job_failures;

-- bad arguments: CR010, nothing done
CALL credits.run_jobs(0);
\echo :LAST_ERROR_SQLSTATE
CALL credits.run_jobs(10001);
\echo :LAST_ERROR_SQLSTATE
CALL credits.run_jobs(10, ARRAY['expire_everything']);
\echo :LAST_ERROR_SQLSTATE
CALL credits.run_jobs(10, ARRAY[NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.run_job_step('renew', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE

SELECT count(*) AS unverified FROM credits.credit_verify_all();
