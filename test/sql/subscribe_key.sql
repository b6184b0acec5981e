-- A keyed credit_subscribe without ends_at (found by the Node client's
-- tests): the key's binding row must record the plan, and a retry must
-- return the original result.
SELECT balance FROM credits.credit_init('sk-user', 10);
SELECT granted, balance FROM credits.credit_subscribe('sk-user', 'enterprise', NULL, 'sub-1');
SELECT granted, balance FROM credits.credit_subscribe('sk-user', 'enterprise', NULL, 'sub-1');
SELECT granted, balance FROM credits.credit_subscribe(user_id => 'sk-user', plan => 'enterprise', idempotency_key => 'sub-1');
SELECT plan, ends_at, granted FROM credits.subscription_keys WHERE user_id = 'sk-user';
-- The same key for another plan is CR003.
\set VERBOSITY terse
SELECT granted FROM credits.credit_subscribe('sk-user', 'pro', NULL, 'sub-1');
