-- Attack findings on holds (helper `attack`): the expected output states
-- the CORRECT behaviour.  Runs as a superuser to move credits' clock.
SET client_min_messages = warning;
\set VERBOSITY sqlstate

-- A deduction in a transaction whose clock is past a hold's expiry spends
-- the credit the expired hold had held, but leaves the hold open.  A
-- transaction that began before the expiry (modelled by clock_offset 0)
-- then sees available -60 and its capture fails with 23514 (balance check)
-- instead of CR004: README says "a capture of no more than its hold always
-- succeeds" and available is never negative.
SELECT balance FROM credits.credit_add('atk-stale', 100, 'purchase');
SELECT hold_id AS atk_h FROM credits.credit_hold('atk-stale', 60, 'video_generation', '{}', '1 hour') \gset
SET credits.clock_offset = 7200;
SELECT balance FROM credits.credit_deduct('atk-stale', 100, 'chat_message');
RESET credits.clock_offset;
SELECT credits.credit_available('atk-stale') AS available;
SELECT balance FROM credits.credit_capture(:atk_h);
SELECT status FROM credits.holds WHERE id = :atk_h;
