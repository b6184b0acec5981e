-- Prices as data: credits.prices, credit_cost and credit_charge.  Metered
-- prices (the seeds) carry the fraction of a credit per user and action
-- (test/sql/metered.sql); per-call prices round each charge as the price
-- says.  A charge records the price it used, so later price changes never
-- alter past rows.
SET client_min_messages = warning;

-- the seeded prices
SELECT action, unit, rate, rounding, valid_from FROM credits.prices ORDER BY action;
SELECT action, unit, rate FROM credits.current_prices ORDER BY action;

-- credit_cost: quantity * rate rounded as the price says (up), as in 1.0
SELECT q.action, q.quantity, credits.credit_cost(q.action, q.quantity) AS cost
  FROM (VALUES ('chat_message', 1), ('chat_message', 3), ('chat_message', 0.5),
			   ('canvas_generation_simple', 1), ('canvas_generation_complex', 1),
			   ('canvas_generation_complex', 2),
			   ('video_generation', 12), ('video_generation', 12.01), ('video_generation', 0.001),
			   ('training_job', 1), ('training_job', 0.5), ('training_job', 1.0001),
			   ('training_job', 2.75),
			   ('llm_tokens', 1), ('llm_tokens', 2000), ('llm_tokens', 2001),
			   ('llm_tokens', 4000), ('llm_tokens', 4001), ('llm_tokens', 1000000))
	   AS q(action, quantity);

-- credit_charge prices and deducts in one call and records the price
SELECT balance FROM credits.credit_init('price-a', 200);
CREATE TEMP TABLE c1 AS SELECT * FROM credits.credit_charge('price-a', 'chat_message', 1, '{"chat": "c-1"}');
SELECT balance FROM c1;
SELECT l.amount, l.balance_after, l.action, l.metadata, l.created_at = c1.created_at AS same_row
  FROM c1 JOIN credits.ledger l ON l.id = c1.tx_id;
SELECT balance FROM credits.credit_charge('price-a', 'llm_tokens', 4001, '{"model": "m"}');
SELECT balance FROM credits.credit_charge('price-a', 'video_generation', 7.5);
SELECT amount, action, metadata FROM credits.ledger WHERE user_id = 'price-a' ORDER BY id;

-- a price change is a new row; it applies from valid_from on and never
-- alters past rows (test actions, so that the seeds stay as they are)
INSERT INTO credits.prices (action, unit, rate, valid_from) VALUES
	('price_test_msg', 'message', 10, '-infinity'),
	('price_test_job', 'gpu_hour', 1000, '-infinity'),
	('price_test_img', 'generation', 50, '-infinity');
SELECT balance FROM credits.credit_charge('price-a', 'price_test_msg', 1);
INSERT INTO credits.prices (action, unit, rate, valid_from)
	VALUES ('price_test_msg', 'message', 12, now());
INSERT INTO credits.prices (action, unit, rate, valid_from)
	VALUES ('price_test_img', 'generation', 60, now() + interval '1 day');
SELECT action, rate FROM credits.current_prices WHERE action LIKE 'price_test_%' ORDER BY action;
SELECT credits.credit_cost('price_test_msg', 1) AS msg, credits.credit_cost('price_test_img', 1) AS img;
SELECT balance FROM credits.credit_charge('price-a', 'price_test_msg', 1);
SELECT amount, metadata -> 'price' ->> 'rate' AS rate FROM credits.ledger
 WHERE user_id = 'price-a' AND action = 'price_test_msg' ORDER BY id;

-- idempotency: a retry is matched on action and quantity, so it returns
-- the original row even after a price change
CREATE TEMP TABLE k1 AS SELECT * FROM credits.credit_charge('price-a', 'price_test_job', 0.01, '{}', 'job-1');
SELECT balance FROM k1;
INSERT INTO credits.prices (action, unit, rate, valid_from)
	VALUES ('price_test_job', 'gpu_hour', 2000, now());
SELECT c.tx_id = k1.tx_id AND c.balance = k1.balance AND c.created_at = k1.created_at AS same_row
  FROM credits.credit_charge('price-a', 'price_test_job', 0.010, '{}', 'job-1') c, k1;
SELECT count(*) AS charges FROM credits.ledger WHERE idempotency_key = 'job-1';
SELECT * FROM credits.credit_charge('price-a', 'price_test_job', 0.02, '{}', 'job-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'video_generation', 0.01, '{}', 'job-1');
\echo :LAST_ERROR_SQLSTATE
SELECT balance FROM credits.credit_deduct('price-a', 1, 'chat_message', '{}', 'job-2');
SELECT * FROM credits.credit_charge('price-a', 'chat_message', 1, '{}', 'job-2');
\echo :LAST_ERROR_SQLSTATE
SELECT balance FROM credits.credit_charge('price-a', 'price_test_job', 0.01, '{}', 'job-3');
SELECT amount, action, metadata -> 'price' ->> 'rate' AS rate, idempotency_key
  FROM credits.ledger WHERE user_id = 'price-a' AND action = 'price_test_job' ORDER BY id;

-- per-call prices round each charge as the price says
INSERT INTO credits.prices (action, unit, rate, rounding, valid_from, per_call) VALUES
	('price_test_down', 'unit', 0.3, 'down', now(), true),
	('price_test_nearest', 'unit', 0.5, 'nearest', now(), true);
SELECT credits.credit_cost('price_test_down', 10) AS down_3, credits.credit_cost('price_test_down', 3) AS down_0,
	   credits.credit_cost('price_test_nearest', 3) AS nearest_2, credits.credit_cost('price_test_nearest', 2.9) AS nearest_1;
-- a charge that costs nothing writes an amount-0 row recording the quantity
SELECT balance FROM credits.credit_charge('price-a', 'price_test_down', 3);
SELECT amount, quantity, rate, carry FROM credits.ledger
 WHERE user_id = 'price-a' AND action = 'price_test_down';

-- a charge respects holds like credit_deduct
SELECT balance FROM credits.credit_init('price-b', 100);
SELECT available FROM credits.credit_hold('price-b', 60, 'video_generation');
SELECT * FROM credits.credit_charge('price-b', 'canvas_generation_complex', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-b', 'canvas_generation_complex', 1, '{}', 'pb-1');
\echo :LAST_ERROR_SQLSTATE
SELECT balance FROM credits.credit_charge('price-b', 'chat_message', 3);

-- errors: CR005 unknown action, CR011 cost overflow, CR002, CR010; nothing
-- is written
SELECT count(*) AS rows0 FROM credits.ledger \gset
SELECT credits.credit_cost('no_such_action', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'no_such_action', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'no_such_action', 1, '{}', 'nk-1');
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_cost('training_job', 1e30);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'training_job', 1e30);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-nobody', 'chat_message', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-nobody', 'chat_message', 1, '{}', 'nk-2');
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_cost(NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_cost('', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_cost('chat_message', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_cost('chat_message', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_cost('chat_message', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_cost('chat_message', 'NaN');
\echo :LAST_ERROR_SQLSTATE
SELECT credits.credit_cost('chat_message', 'Infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge(NULL, 'chat_message', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('', 'chat_message', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge(repeat('u', 257), 'chat_message', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', '', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'chat_message', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'chat_message', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'chat_message', -2);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'chat_message', '-Infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'chat_message', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'chat_message', 1, '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM credits.credit_charge('price-a', 'chat_message', 1, '{}', '');
\echo :LAST_ERROR_SQLSTATE
SELECT (SELECT count(*) FROM credits.ledger) = :rows0 AS nothing_written;

SELECT * FROM credits.credit_verify_all();
