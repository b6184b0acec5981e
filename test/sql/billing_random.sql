-- A mixed random workload of every billing operation (seeded), with holds
-- and grants expiring in real time between batches, then the invariants:
-- the ledger sums to every balance (credit_verify_all() is empty), held
-- and expiring match the holds and grants, reservations match, and every
-- settled account can honour its holds.
SET client_min_messages = warning;

-- credits' clock at t for one call (S1): credits.clock_offset, a superuser
-- setting, is set so that credits_now() is in [t, t + 1s), then reset
CREATE FUNCTION pg_temp.renew_at(t timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	PERFORM set_config('credits.clock_offset', ceil(extract(epoch FROM t - now()))::int::text, true);
	n := credits.credit_renew();
	PERFORM set_config('credits.clock_offset', '0', true);
	RETURN n;
END $$;

INSERT INTO credits.plans (plan, allowance, period, policy, rollover_cap, valid_from) VALUES
	('random_daily', 20, '1 day', 'reset', NULL, '-infinity'),
	('random_rollover', 30, '1 day', 'rollover', 15, '-infinity');

CREATE TABLE random_log (op text, ok boolean, state text);
CREATE TABLE random_unexpected (op text, state text, message text);

SELECT setseed(0.4242);

DO $$
DECLARE
	u text;
	r float8;
	h bigint;
	n int := 0;
	op text;
BEGIN
	FOR batch IN 1..30 LOOP
		FOR i IN 1..20 LOOP
			n := n + 1;
			u := 'rnd-' || (1 + floor(random() * 12))::int;
			r := random();
			op := CASE WHEN r < 0.08 THEN 'init' WHEN r < 0.14 THEN 'add' WHEN r < 0.26 THEN 'deduct'
					   WHEN r < 0.32 THEN 'deduct_keyed' WHEN r < 0.40 THEN 'charge'
					   WHEN r < 0.50 THEN 'grant' WHEN r < 0.62 THEN 'hold' WHEN r < 0.72 THEN 'capture'
					   WHEN r < 0.78 THEN 'release' WHEN r < 0.81 THEN 'capture_retry'
					   WHEN r < 0.86 THEN 'subscribe' WHEN r < 0.90 THEN 'renew'
					   WHEN r < 0.94 THEN 'expire_holds' WHEN r < 0.97 THEN 'expire_grants'
					   ELSE 'hold_keyed' END;
			BEGIN
				CASE op
				WHEN 'init' THEN
					PERFORM credits.credit_init(u, (random() * 50)::bigint);
				WHEN 'add' THEN
					PERFORM credits.credit_add(u, 1 + (random() * 40)::bigint, 'purchase');
				WHEN 'deduct' THEN
					PERFORM credits.credit_deduct(u, 1 + (random() * 30)::bigint, 'chat_message');
				WHEN 'deduct_keyed' THEN
					-- keys repeat, so some calls are retries
					PERFORM credits.credit_deduct(u, 7, 'chat_message', '{}', 'dk-' || (random() * 20)::int);
				WHEN 'charge' THEN
					PERFORM credits.credit_charge(u, (ARRAY['chat_message', 'llm_tokens', 'video_generation'])[1 + (random() * 2)::int],
												  1 + round((random() * 3000)::numeric, 1), '{"tokens": 100}');
				WHEN 'grant' THEN
					PERFORM credits.credit_grant(u, 1 + (random() * 40)::bigint, 'promo',
						CASE WHEN random() < 0.25 THEN NULL
							 WHEN random() < 0.5 THEN clock_timestamp() + random() * interval '0.3 seconds'
							 ELSE clock_timestamp() + random() * interval '2 days' END);
				WHEN 'hold' THEN
					PERFORM credits.credit_hold(u, 1 + (random() * 30)::bigint, 'video_generation', '{}',
						CASE WHEN random() < 0.4 THEN interval '0.1 seconds' ELSE interval '1 hour' END);
				WHEN 'hold_keyed' THEN
					PERFORM credits.credit_hold(u, 5, 'video_generation', '{}', '1 hour', 'hk-' || (random() * 10)::int);
				WHEN 'capture' THEN
					SELECT id INTO h FROM credits.holds WHERE user_id = u ORDER BY random() LIMIT 1;
					PERFORM credits.credit_capture(h, CASE WHEN random() < 0.3 THEN NULL ELSE 1 + (random() * 40)::bigint END,
												   '{}', CASE WHEN random() < 0.5 THEN 'cap-' || h END);
				WHEN 'capture_retry' THEN
					SELECT id INTO h FROM credits.holds WHERE user_id = u AND capture_key IS NOT NULL ORDER BY random() LIMIT 1;
					PERFORM credits.credit_capture(h, NULL, '{}', 'cap-' || h);
				WHEN 'release' THEN
					SELECT id INTO h FROM credits.holds WHERE user_id = u ORDER BY random() LIMIT 1;
					PERFORM credits.credit_release(h);
				WHEN 'subscribe' THEN
					PERFORM credits.credit_subscribe(u, (ARRAY['random_daily', 'random_rollover', 'free'])[1 + (random() * 2)::int],
						CASE WHEN random() < 0.5 THEN NULL ELSE clock_timestamp() + random() * interval '5 days' END);
				WHEN 'renew' THEN
					PERFORM pg_temp.renew_at(now() + batch * interval '6 hours');
				WHEN 'expire_holds' THEN
					PERFORM credits.credit_expire_holds();
				WHEN 'expire_grants' THEN
					PERFORM credits.credit_expire_grants();
				END CASE;
				INSERT INTO random_log VALUES (op, true, NULL);
			EXCEPTION WHEN OTHERS THEN
				INSERT INTO random_log VALUES (op, false, SQLSTATE);
				-- the expected refusals; anything else is a bug
				IF NOT (SQLSTATE IN ('CR001', 'CR002', 'CR004')
						OR (SQLSTATE = 'CR003' AND op IN ('deduct_keyed', 'capture', 'capture_retry'))
						OR (SQLSTATE = 'CR010' AND op IN ('capture', 'capture_retry', 'release'))) THEN
					INSERT INTO random_unexpected VALUES (op, SQLSTATE, SQLERRM);
				END IF;
			END;
		END LOOP;
		COMMIT;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;

-- what ran: every kind of operation succeeded at least once
SELECT op, bool_or(ok) AS succeeded FROM random_log GROUP BY op ORDER BY op;
SELECT count(*) >= 600 AS all_ran FROM random_log;
SELECT * FROM random_unexpected;

-- the invariants (for the workload's accounts), before and after settling
-- everything
CREATE TEMP VIEW broken AS
SELECT user_id, 'ledger' AS what FROM credits.credit_verify_all()
UNION ALL
SELECT a.user_id, 'held' FROM credits.accounts a
 WHERE a.held <> (SELECT coalesce(sum(h.amount), 0) FROM credits.holds h
				   WHERE h.user_id = a.user_id AND h.status = 'open')
UNION ALL
SELECT a.user_id, 'expiring' FROM credits.accounts a
 WHERE a.expiring <> (SELECT coalesce(sum(g.remaining + g.reserved), 0) FROM credits.grants g
					   WHERE g.user_id = a.user_id AND g.expires_at IS NOT NULL)
UNION ALL
SELECT g.user_id, 'reserved of grant ' || g.id FROM credits.grants g
 WHERE g.reserved <> (SELECT coalesce(sum(r.amount), 0) FROM credits.holds h,
						ROWS FROM (unnest(h.grant_ids), unnest(h.grant_amounts)) AS r(grant_id, amount)
					   WHERE h.status = 'open' AND r.grant_id = g.id)
UNION ALL
SELECT g.user_id, 'grant ' || g.id FROM credits.grants g
 WHERE g.remaining + g.reserved + g.expired > g.amount
UNION ALL
SELECT h.user_id, 'events of hold ' || h.id FROM credits.holds h
 WHERE (SELECT count(*) FROM credits.account_events e
		 WHERE e.event = 'hold.create' AND (e.detail ->> 'hold_id')::bigint = h.id) <> 1
	OR (SELECT count(*) FROM credits.account_events e
		 WHERE e.event <> 'hold.create' AND (e.detail ->> 'hold_id')::bigint = h.id) <> (h.status <> 'open')::int
UNION ALL
SELECT h.user_id, 'capture of hold ' || h.id FROM credits.holds h
 WHERE h.status = 'captured'
   AND NOT EXISTS (SELECT FROM credits.ledger l WHERE l.id = h.capture_tx_id AND l.amount = -h.captured)
UNION ALL
SELECT al.user_id, 'allowance twice' FROM credits.allowances al
 GROUP BY al.user_id, al.plan, al.period_start HAVING count(*) > 1
UNION ALL
SELECT a.user_id, 'available' FROM credits.accounts a
 WHERE credits.credit_available(a.user_id) < 0;
SELECT * FROM broken WHERE user_id LIKE 'rnd-%';

SELECT pg_sleep(0.4);
SELECT credits.credit_expire_holds() >= 0 AS holds_closed, credits.credit_expire_grants() >= 0 AS grants_posted;
SELECT * FROM broken WHERE user_id LIKE 'rnd-%';
-- settled: no open hold has expired, no expired grant has credit left, the
-- available balance is balance - held, and the free non-expiring credit
-- (balance - held - unreserved expiring credit) is never negative
SELECT count(*) AS expired_open_holds FROM credits.holds
 WHERE user_id LIKE 'rnd-%' AND status = 'open' AND expires_at <= now();
SELECT count(*) AS unposted_grants FROM credits.grants
 WHERE user_id LIKE 'rnd-%' AND expires_at <= now() AND remaining > 0;
SELECT a.user_id, a.balance, a.held, a.expiring FROM credits.accounts a
 WHERE a.user_id LIKE 'rnd-%'
   AND (credits.credit_available(a.user_id) <> a.balance - a.held
		OR a.balance - a.held - a.expiring
		   + (SELECT coalesce(sum(g.reserved), 0) FROM credits.grants g WHERE g.user_id = a.user_id) < 0);
SELECT * FROM credits.credit_verify_all();
