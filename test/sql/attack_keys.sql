-- Attack findings on idempotency keys (helper `attack`; shared semantics S4,
-- issue 8 defects 4-6): one key namespace per user across every keyed
-- function; a key is bound to the operation that first used it, and any
-- other use is CR003 and writes nothing.  The expected output states the
-- CORRECT behaviour.
SET client_min_messages = warning;
\set VERBOSITY sqlstate

SELECT balance FROM credits.credit_add('atk-key', 1000, 'purchase');
-- a hold's key reused by a deduction (today: the deduction happens)
SELECT hold_id AS atk_h1 FROM credits.credit_hold('atk-key', 10, 'video_generation', '{}', '1 hour', 'k-hold') \gset
SELECT balance FROM credits.credit_deduct('atk-key', 10, 'video_generation', '{}', 'k-hold');
-- a deduction's key reused by a hold (today: a second hold is placed)
SELECT balance FROM credits.credit_deduct('atk-key', 5, 'chat_message', '{}', 'k-deduct');
SELECT held FROM credits.credit_hold('atk-key', 5, 'chat_message', '{}', '1 hour', 'k-deduct');
-- a grant's key reused by a hold
SELECT balance FROM credits.credit_grant('atk-key', 10, 'promo', NULL, '{}', 'k-grant');
SELECT held FROM credits.credit_hold('atk-key', 10, 'video_generation', '{}', '1 hour', 'k-grant');
-- a grant's key reused by credit_add (action 'grant' itself is reserved: CR010, limits.sql)
SELECT balance FROM credits.credit_add('atk-key', 10, 'bonus', '{}', 'k-grant');
-- a capture replayed by a deduction of the same amount and action
SELECT hold_id AS atk_h2 FROM credits.credit_hold('atk-key', 10, 'video_generation') \gset
SELECT balance FROM credits.credit_capture(:atk_h2, 10, '{}', 'k-cap');
SELECT balance FROM credits.credit_deduct('atk-key', 10, 'video_generation', '{}', 'k-cap');
-- a subscribe key reused by a deduction
SELECT granted FROM credits.credit_subscribe('atk-key', 'free', now() + interval '1 year', 'k-sub');
SELECT balance FROM credits.credit_deduct('atk-key', 1, 'chat_message', '{}', 'k-sub');
-- defect 4: a charge replays a deduction through metadata (5,000 credits
-- charged as 1)
SELECT balance FROM credits.credit_deduct('atk-key', 1, 'training_job', '{"price": {"quantity": 5}}', 'k-meta');
SELECT balance FROM credits.credit_charge('atk-key', 'training_job', 5, '{}', 'k-meta');
-- a charge replayed by a deduction
SELECT balance FROM credits.credit_charge('atk-key', 'chat_message', 1, '{}', 'k-charge');
SELECT balance FROM credits.credit_deduct('atk-key', 10, 'chat_message', '{}', 'k-charge');
SELECT credits.credit_balance('atk-key') AS balance;

-- defect 5: a keyed grant retried after its expires_at returns the original
SELECT now() + interval '1 hour' AS atk_exp \gset
SELECT balance FROM credits.credit_grant('atk-key2', 10, 'promo', :'atk_exp', '{}', 'k-exp');
SET credits.clock_offset = 7200;
SELECT balance FROM credits.credit_grant('atk-key2', 10, 'promo', :'atk_exp', '{}', 'k-exp');
RESET credits.clock_offset;

-- defect 6: credit_release takes a key, and a retried release returns the
-- original result
SELECT hold_id AS atk_h3 FROM credits.credit_hold('atk-key2', 4, 'chat_message') \gset
SELECT credits.credit_release(:atk_h3, 'k-rel') AS available;
SELECT credits.credit_release(:atk_h3, 'k-rel') AS available;

-- defect 3 / S3: 2,000 charges of 1 llm token (rate 0.0005) cost 1 credit
-- in all, not 2,000
SELECT balance FROM credits.credit_add('atk-meter', 100, 'purchase');
DO $$
BEGIN
	FOR i IN 1..2000 LOOP
		PERFORM credits.credit_charge('atk-meter', 'llm_tokens', 1);
	END LOOP;
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING 'charge failed: %', SQLSTATE;
END
$$;
SELECT credits.credit_balance('atk-meter') AS balance;

-- clean up what other tests list
DELETE FROM credits.subscriptions WHERE user_id LIKE 'atk-%';
DELETE FROM credits.subscription_keys WHERE user_id LIKE 'atk-%';
