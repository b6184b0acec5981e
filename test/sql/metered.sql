-- Metered prices (per_call = false): a charge of q costs floor(c + q * rate)
-- and carries the rest, per user and action, so N charges cost the exact
-- total rounded down once.  Per-call prices round every charge.
SET client_min_messages = warning;

INSERT INTO credits.prices (action, unit, rate, valid_from) VALUES
	('metered_test', 'unit', 0.37, '-infinity');
INSERT INTO credits.prices (action, unit, rate, rounding, valid_from, per_call) VALUES
	('flat_call', 'request', 0.001, 'up', '-infinity', true);

-- 2,000 charges of 1 llm_token (rate 0.0005) cost exactly 1 credit
SELECT balance FROM credits.credit_init('m-a', 10);
SELECT count(*) AS charges, min(c.balance) AS balance
  FROM generate_series(1, 2000) g, LATERAL credits.credit_charge('m-a', 'llm_tokens', 1 + 0 * g) c;
SELECT count(*) AS rows, sum(amount) AS total, count(*) FILTER (WHERE amount = 0) AS zero_rows,
	   sum(quantity) AS quantity, min(rate) AS rate, max(rate) AS rate2
  FROM credits.ledger WHERE user_id = 'm-a' AND action = 'llm_tokens';
-- the one row that spent the credit is the 2,000th, and the carry is back to 0
SELECT amount, carry FROM credits.ledger WHERE user_id = 'm-a' AND action = 'llm_tokens'
 ORDER BY id DESC LIMIT 2;
SELECT carry FROM credits.carries WHERE user_id = 'm-a' AND action = 'llm_tokens';
-- each row's carry is the previous one's plus quantity * rate, less the amount
SELECT bool_and(ok) AS carries_chain
  FROM (SELECT l.carry = coalesce(lag(l.carry) OVER (ORDER BY l.id), 0) + l.quantity * l.rate + l.amount AS ok
		  FROM credits.ledger l WHERE l.user_id = 'm-a' AND l.action = 'llm_tokens') x;
-- zero-cost charges count their tokens in daily_usage
SELECT credits, tokens FROM credits.daily_usage WHERE user_id = 'm-a' AND action = 'llm_tokens';
SELECT spent_lifetime, tokens_lifetime FROM credits.credit_usage('m-a');
SELECT * FROM credits.credit_verify('m-a');

-- N charges of varying q cost floor(sum(q) * rate), and the carry is the rest
SELECT balance FROM credits.credit_init('m-b', 1000);
SELECT count(*) AS charges
  FROM generate_series(1, 500) g,
	   LATERAL credits.credit_charge('m-b', 'metered_test', 1 + (g % 5) * 0.25) c;
SELECT -sum(l.amount) AS charged, floor(sum(l.quantity) * 0.37) AS exact_floor,
	   (SELECT carry FROM credits.carries WHERE user_id = 'm-b' AND action = 'metered_test')
	   = sum(l.quantity) * 0.37 - floor(sum(l.quantity) * 0.37) AS carry_is_the_rest
  FROM credits.ledger l WHERE l.user_id = 'm-b' AND l.action = 'metered_test';
SELECT credits.credit_balance('m-b') AS balance;

-- the carry is in credits: it survives a price change
SELECT balance FROM credits.credit_init('m-c', 100);
SELECT balance FROM credits.credit_charge('m-c', 'metered_test', 2);
SELECT carry FROM credits.carries WHERE user_id = 'm-c';
INSERT INTO credits.prices (action, unit, rate, valid_from) VALUES ('metered_test', 'unit', 0.13, now());
SELECT balance FROM credits.credit_charge('m-c', 'metered_test', 2);
SELECT amount, quantity, rate, carry FROM credits.ledger WHERE user_id = 'm-c' AND action = 'metered_test' ORDER BY id;

-- CR001 writes nothing and leaves the carry as it was
SELECT balance FROM credits.credit_init('m-d', 0);
SELECT balance FROM credits.credit_charge('m-d', 'llm_tokens', 1500);
SELECT carry FROM credits.carries WHERE user_id = 'm-d';
SELECT * FROM credits.credit_charge('m-d', 'llm_tokens', 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT carry FROM credits.carries WHERE user_id = 'm-d';
SELECT count(*) AS rows FROM credits.ledger WHERE user_id = 'm-d' AND action = 'llm_tokens';
SELECT balance FROM credits.credit_add('m-d', 1, 'purchase');
SELECT balance FROM credits.credit_charge('m-d', 'llm_tokens', 1000);
SELECT carry FROM credits.carries WHERE user_id = 'm-d';

-- a per-call price charges every call, rounded up: at least 1 each; it
-- neither reads nor writes a carry
SELECT balance FROM credits.credit_init('m-e', 10);
SELECT min(c.balance) AS balance
  FROM generate_series(1, 5) g, LATERAL credits.credit_charge('m-e', 'flat_call', 1 + 0 * g) c;
SELECT count(*) AS rows, sum(amount) AS total, count(carry) AS carries, min(rate) AS rate
  FROM credits.ledger WHERE user_id = 'm-e' AND action = 'flat_call';
SELECT count(*) AS carry_rows FROM credits.carries WHERE user_id = 'm-e';
-- credit_cost rounds as the price says, metered or not: for a metered
-- price rounded up, the most one charge of that quantity can cost
SELECT credits.credit_cost('flat_call', 1) AS per_call_cost, credits.credit_cost('llm_tokens', 1) AS metered_cost,
	   credits.credit_cost('llm_tokens', 3999) AS metered_3999;

-- a keyed charge's retry returns the original row, also one that cost 0,
-- and does not move the carry again
SELECT balance FROM credits.credit_init('m-f', 100);
CREATE TEMP TABLE k0 AS SELECT * FROM credits.credit_charge('m-f', 'llm_tokens', 10, '{}', 'mk-1');
SELECT balance FROM k0;
SELECT c.tx_id = k0.tx_id AS same_row FROM credits.credit_charge('m-f', 'llm_tokens', 10, '{}', 'mk-1') c, k0;
SELECT count(*) AS rows, sum(amount) AS total FROM credits.ledger WHERE user_id = 'm-f' AND action = 'llm_tokens';
SELECT carry FROM credits.carries WHERE user_id = 'm-f';
-- same key, another quantity: CR003
SELECT * FROM credits.credit_charge('m-f', 'llm_tokens', 11, '{}', 'mk-1');
\echo :LAST_ERROR_SQLSTATE

-- capture of a hold for a metered action spends the captured credits and
-- leaves the carry alone (holds are in credits, not units)
SELECT hold_id AS mh FROM credits.credit_hold('m-f', 5, 'llm_tokens') \gset
SELECT balance FROM credits.credit_capture(:mh, 3);
SELECT amount, quantity, rate, carry FROM credits.ledger WHERE user_id = 'm-f' ORDER BY id DESC LIMIT 1;
SELECT carry FROM credits.carries WHERE user_id = 'm-f';

-- the ledger refuses an amount-0 row that is not a charge
\set VERBOSITY terse
INSERT INTO credits.ledger (user_id, amount, balance_after, action) VALUES ('m-f', 0, 97, 'chat_message');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT * FROM credits.credit_verify_all();
