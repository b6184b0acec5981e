-- Attack findings on plans and subscriptions (a hostile review of 1.1),
-- fixed; the expected output states the correct behaviour.  Runs as a
-- superuser to move credits' clock.
SET client_min_messages = warning;
\set VERBOSITY sqlstate

-- 1. Extending a subscription must not shorten its current allowance.
-- pro until +1 hour, then extended to +1 year: two hours later the user is
-- still on pro in the same period, so the allowance must still be there.
SELECT granted FROM credits.credit_subscribe('atk-ext', 'pro', now() + interval '1 hour');
SELECT granted FROM credits.credit_subscribe('atk-ext', 'pro', now() + interval '1 year');
SET credits.clock_offset = 7200;
SELECT plan, available FROM credits.credit_usage('atk-ext');
RESET credits.clock_offset;

-- 2. Re-subscribing after ends_at must not depend on whether the renew job
-- ran in between ("nothing depends on a job for correctness").  Both users
-- lapse; the job runs only for atk-re-job; both then subscribe to pro.
SELECT granted FROM credits.credit_subscribe('atk-re-nojob', 'pro', now() + interval '1 hour');
SELECT granted FROM credits.credit_subscribe('atk-re-job', 'pro', now() + interval '1 hour');
SET credits.clock_offset = 7200;
SELECT accounts, items FROM credits.run_job_step('renew', 'atk-re-j', 1);
SELECT granted FROM credits.credit_subscribe('atk-re-nojob', 'pro');
SELECT granted FROM credits.credit_subscribe('atk-re-job', 'pro');
SELECT user_id, credits.credit_available(user_id) AS available
  FROM (VALUES ('atk-re-job'), ('atk-re-nojob')) v(user_id) ORDER BY 1;
RESET credits.clock_offset;

-- 3. A keyed credit_subscribe without ends_at works, and its retry returns
-- the original result (today: 23502, plan NULL in subscription_keys).
SELECT granted, balance FROM credits.credit_subscribe('atk-subkey', 'pro', NULL, 'atk-sk-1');
SELECT granted, balance FROM credits.credit_subscribe('atk-subkey', 'pro', NULL, 'atk-sk-1');

-- 4. A free subscription whose ends_at has passed is not due again at every
-- run of the renew job: after a renewal, renews_at is in the future.
SELECT granted FROM credits.credit_subscribe('atk-free-end', 'free', now() + interval '1 hour');
SET credits.clock_offset = 7200;
SELECT last_user_id, accounts FROM credits.run_job_step('renew', 'atk-free-en', 1);
SELECT renews_at > now() + interval '7200 seconds' AS not_due_again
  FROM credits.subscriptions WHERE user_id = 'atk-free-end';
RESET credits.clock_offset;

-- 5. An operator lengthening a plan's period (1 month -> 1 year, a new
-- plans row) must not leave its subscribers without an allowance, nor due
-- at every run of the renew job.  Today k (periods since the anchor, under
-- the new period) is 0 <= cycle 1, so renew_one returns before advancing:
-- no allowance until the second year, and the row is processed every run.
INSERT INTO credits.plans (plan, allowance, period, valid_from) VALUES ('atk-monthly', 100, '1 month', '-infinity');
SELECT granted FROM credits.credit_subscribe('atk-period', 'atk-monthly');
SET credits.clock_offset = 3024000;
SELECT accounts, items FROM credits.run_job_step('renew', 'atk-perioc', 1);
RESET credits.clock_offset;
INSERT INTO credits.plans (plan, allowance, period, valid_from) VALUES ('atk-monthly', 100, '1 year', now());
SET credits.clock_offset = 6048000;
SELECT accounts, items FROM credits.run_job_step('renew', 'atk-perioc', 1);
SELECT renews_at > now() + interval '6048000 seconds' AS not_due_again
  FROM credits.subscriptions WHERE user_id = 'atk-period';
SELECT credits.credit_available('atk-period') AS available;
RESET credits.clock_offset;

-- clean up what other tests list
DELETE FROM credits.subscriptions WHERE user_id LIKE 'atk-%';
DELETE FROM credits.plans WHERE plan = 'atk-monthly';
DELETE FROM credits.subscription_keys WHERE user_id LIKE 'atk-%';
