-- Plan changes (issue 8, defect 1; shared semantics S2) and keyed
-- credit_subscribe (defect 5 for subscribe).  A plan change closes the
-- current allowance (its rest is posted as expired) and grants the new
-- plan's allowance for the current period unless (user, plan, period) was
-- already granted, so switching never mints credit: the live plan-allowance
-- credit never exceeds the current plan's allowance plus its rollover cap.
SET client_min_messages = warning;

-- the reproduction from the issue: before 1.1 this left 310 available
SELECT balance FROM credits.credit_init('switch-a', 0);
SELECT granted, balance FROM credits.credit_subscribe('switch-a', 'pro');
SELECT granted, balance FROM credits.credit_subscribe('switch-a', 'free');
SELECT granted, balance FROM credits.credit_subscribe('switch-a', 'pro');
SELECT granted, balance FROM credits.credit_subscribe('switch-a', 'free');
SELECT granted, balance FROM credits.credit_subscribe('switch-a', 'pro');
SELECT credits.credit_available('switch-a') AS available;
SELECT amount, balance_after, action, metadata ->> 'source' AS source
  FROM credits.ledger WHERE user_id = 'switch-a' ORDER BY id;
-- the closed grants expired when they were closed
SELECT source, amount, remaining, expired, expires_at <= now() AS closed
  FROM credits.grants WHERE user_id = 'switch-a' ORDER BY id;
-- switching keeps the anchor: every allowance is of the same period
SELECT plan, count(*) AS allowances, count(DISTINCT period_start) AS periods
  FROM credits.allowances WHERE user_id = 'switch-a' GROUP BY plan ORDER BY plan;

-- credit reserved by an open hold stays reserved when the grant is closed,
-- and expires when the hold gives it back
SELECT granted FROM credits.credit_subscribe('switch-b', 'pro');
SELECT held, available FROM credits.credit_hold('switch-b', 60, 'video_generation') \gset
SELECT id AS hb FROM credits.holds WHERE user_id = 'switch-b' \gset
SELECT granted, balance FROM credits.credit_subscribe('switch-b', 'free');
SELECT credits.credit_release(:hb) AS available_after_release;
SELECT amount, action FROM credits.ledger WHERE user_id = 'switch-b' ORDER BY id;
SELECT granted, balance FROM credits.credit_subscribe('switch-b', 'pro');
SELECT * FROM credits.credit_verify('switch-b');

-- the invariant over random switch sequences, with spending, holds,
-- renewals and a clock that moves on (credits.clock_offset, superuser)
INSERT INTO credits.plans (plan, allowance, period, policy, rollover_cap, valid_from) VALUES
	('switch_roll', 40, '2 days', 'rollover', 15, '-infinity'),
	('switch_daily', 10, '1 day', 'reset', NULL, '-infinity');
CREATE TEMP TABLE switch_violations (step int, user_id text, live bigint, bound bigint);
DO $$
DECLARE
	u text;
	r float8;
	plans text[] := ARRAY['free', 'pro', 'enterprise', 'switch_roll', 'switch_daily'];
	hid bigint;
	avail bigint;
BEGIN
	PERFORM setseed(0.42);
	FOR step IN 1..600 LOOP
		-- the clock moves on by up to 3 hours a step (about 37 days in all)
		PERFORM set_config('credits.clock_offset', (step * 5400)::text, true);
		u := 'switch-r' || (1 + floor(random() * 6))::int;
		r := random();
		IF r < 0.45 THEN
			PERFORM credits.credit_subscribe(u, plans[1 + floor(random() * 5)::int]);
		ELSIF r < 0.65 THEN
			avail := coalesce(credits.credit_available(u), 0);
			IF avail > 0 THEN
				PERFORM credits.credit_deduct(u, 1 + floor(random() * avail)::bigint, 'chat_message');
			END IF;
		ELSIF r < 0.75 THEN
			avail := coalesce(credits.credit_available(u), 0);
			IF avail > 0 THEN
				PERFORM credits.credit_hold(u, 1 + floor(random() * avail)::bigint, 'video_generation',
											'{}', '5 hours');
			END IF;
		ELSIF r < 0.85 THEN
			SELECT id INTO hid FROM credits.holds
			 WHERE user_id = u AND status = 'open' AND expires_at > now() + (step * 5400) * interval '1 second'
			 ORDER BY id LIMIT 1;
			IF hid IS NOT NULL THEN
				IF random() < 0.5 THEN
					PERFORM credits.credit_release(hid);
				ELSE
					PERFORM credits.credit_capture(hid);
				END IF;
			END IF;
		ELSE
			PERFORM credits.credit_renew();
		END IF;

		INSERT INTO switch_violations
		SELECT step, s.user_id, coalesce(g.live, 0),
			   p.allowance + CASE p.policy WHEN 'rollover' THEN coalesce(p.rollover_cap, 1000000) ELSE 0 END
		  FROM credits.subscriptions s
		  CROSS JOIN LATERAL (SELECT allowance, policy, rollover_cap FROM credits.plans
							   WHERE plan = s.plan ORDER BY valid_from DESC LIMIT 1) p
		  LEFT JOIN LATERAL (SELECT sum(remaining + reserved) AS live FROM credits.grants
							  WHERE user_id = s.user_id AND source = 'plan'
								AND expires_at > now() + (step * 5400) * interval '1 second') g ON true
		 WHERE s.user_id = u AND coalesce(g.live, 0) > p.allowance
			   + CASE p.policy WHEN 'rollover' THEN coalesce(p.rollover_cap, 1000000) ELSE 0 END;
	END LOOP;
	PERFORM set_config('credits.clock_offset', '0', true);
END
$$;
SELECT count(*) AS violations FROM switch_violations;
SELECT * FROM switch_violations ORDER BY step LIMIT 5;
-- the workload did switch plans, renew and expire
SELECT count(*) > 100 AS many_allowances, count(DISTINCT plan) = 5 AS every_plan
  FROM credits.allowances WHERE user_id LIKE 'switch-r%';
SELECT count(*) > 20 AS closed_grants FROM credits.ledger
 WHERE user_id LIKE 'switch-r%' AND action = 'expire';
-- every allowance was granted once per user, plan and period
SELECT user_id, plan, period_start, count(*) FROM credits.allowances
 GROUP BY 1, 2, 3 HAVING count(*) > 1;
SELECT count(*) AS unverified FROM credits.credit_verify_all();

-- keyed credit_subscribe: a retry returns the original result, even after
-- ends_at has passed (the key is looked up before the time checks)
SELECT (now() + interval '1 hour')::text AS ends \gset
SELECT granted, balance, period_end > period_start AS has_period
  FROM credits.credit_subscribe('switch-k', 'pro', :'ends', 'sub-k-1');
SELECT granted, balance, period_end > period_start AS has_period
  FROM credits.credit_subscribe('switch-k', 'pro', :'ends', 'sub-k-1');
SET credits.clock_offset = 7200;
SELECT granted, balance, period_end > period_start AS has_period
  FROM credits.credit_subscribe('switch-k', 'pro', :'ends', 'sub-k-1');
-- without the key, the same call is refused: ends_at is in the past
\set VERBOSITY terse
SELECT granted FROM credits.credit_subscribe('switch-k', 'pro', :'ends');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET credits.clock_offset;
-- the key bound to another plan, another ends_at, or used by another
-- function is CR003, and nothing is written
\set VERBOSITY terse
SELECT count(*) AS ledger0 FROM credits.ledger WHERE user_id = 'switch-k' \gset
SELECT granted FROM credits.credit_subscribe('switch-k', 'enterprise', :'ends', 'sub-k-1');
\echo :LAST_ERROR_SQLSTATE
SELECT granted FROM credits.credit_subscribe('switch-k', 'pro', NULL, 'sub-k-1');
\echo :LAST_ERROR_SQLSTATE
SELECT balance FROM credits.credit_deduct('switch-k', 1, 'chat_message', '{}', 'deduct-k-1');
SELECT granted FROM credits.credit_subscribe('switch-k', 'pro', NULL, 'deduct-k-1');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) - 1 = :ledger0 AS only_the_deduction,
	   (SELECT plan FROM credits.subscriptions WHERE user_id = 'switch-k') AS plan
  FROM credits.ledger WHERE user_id = 'switch-k';
-- a keyed subscribe without an end, retried
SELECT granted, balance FROM credits.credit_subscribe('switch-k2', 'pro', NULL, 'sub-k2');
SELECT granted, balance FROM credits.credit_subscribe('switch-k2', 'pro', NULL, 'sub-k2');
SELECT granted FROM credits.credit_subscribe('switch-k2', 'pro', now() + interval '1 day', 'sub-k2');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT user_id, idempotency_key, plan, granted FROM credits.subscription_keys WHERE user_id LIKE 'switch-%' ORDER BY 1, 2;

-- a subscribe whose renewal is due renews first, and reports what it granted
-- (the same as if the renewal job had run just before)
SELECT granted FROM credits.credit_subscribe('switch-due', 'pro');
SET credits.clock_offset = 2764800;
SELECT granted, balance FROM credits.credit_subscribe('switch-due', 'pro');
RESET credits.clock_offset;
SELECT amount, action FROM credits.ledger WHERE user_id = 'switch-due' ORDER BY id;

