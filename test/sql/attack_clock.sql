-- Attack findings on credits' clock (helper `attack`; shared semantics S1:
-- every decision about time uses the transaction timestamp plus
-- credits.clock_offset, independent of session settings).  The expected
-- output states the CORRECT behaviour.
SET client_min_messages = warning;
\set VERBOSITY sqlstate

-- the price in force is chosen by credits' clock, not by now()
INSERT INTO credits.prices (action, unit, rate, valid_from) VALUES
	('atk_action', 'unit', 10, '-infinity'),
	('atk_action', 'unit', 20, now() + interval '1 hour');
SET credits.clock_offset = 7200;
SELECT credits.credit_cost('atk_action', 1) AS cost_two_hours_later;
RESET credits.clock_offset;

-- a hold's ttl does not depend on the session's TimeZone: '1 day' placed
-- at 2027-03-13 20:00 UTC (the eve of a US daylight saving change) lasts
-- 24 hours under America/Los_Angeles too
SELECT balance FROM credits.credit_add('atk-tz', 10, 'purchase');
SELECT (extract(epoch FROM timestamptz '2027-03-13 20:00:00+00') - extract(epoch FROM now()))::int AS atk_off \gset
BEGIN;
SET LOCAL credits.clock_offset = :atk_off;
SET LOCAL TimeZone = 'America/Los_Angeles';
SELECT hold_id AS atk_tzh FROM credits.credit_hold('atk-tz', 1, 'chat_message', '{}', '1 day') \gset
SELECT extract(epoch FROM expires_at - (now() + make_interval(secs => :atk_off))) / 3600 AS ttl_hours
  FROM credits.holds WHERE id = :atk_tzh;
COMMIT;

-- clean up what other tests list
DELETE FROM credits.prices WHERE action = 'atk_action';
