-- Limits on names and metadata (FINDINGS #16) and the system actions an
-- application may not use (FINDINGS #17): CR010 naming the parameter, and
-- nothing written.
SET client_min_messages = warning;
\set VERBOSITY default
SELECT balance FROM credits.credit_init('lim-a', 100);

-- action, source and plan: at most 64 bytes
SELECT balance FROM credits.credit_deduct('lim-a', 1, repeat('a', 64));
SELECT balance FROM credits.credit_deduct('lim-a', 1, repeat('a', 65));
SELECT balance FROM credits.credit_add('lim-a', 1, repeat('é', 33));
SELECT hold_id FROM credits.credit_hold('lim-a', 1, repeat('h', 65));
SELECT balance FROM credits.credit_charge('lim-a', repeat('c', 65), 1);
SELECT balance FROM credits.credit_grant('lim-a', 1, repeat('s', 65));
SELECT granted FROM credits.credit_subscribe('lim-a', repeat('p', 65));

-- metadata: at most 64 KB as jsonb
SELECT balance FROM credits.credit_add('lim-a', 1, 'purchase',
	jsonb_build_object('note', repeat('m', 60000)));
SELECT balance FROM credits.credit_add('lim-a', 1, 'purchase',
	jsonb_build_object('note', repeat('m', 70000)));
SELECT balance FROM credits.credit_deduct('lim-a', 1, 'chat_message',
	jsonb_build_object('note', repeat('m', 70000)));

-- the actions the extension writes itself are refused
SELECT balance FROM credits.credit_deduct('lim-a', 1, 'expire');
SELECT balance FROM credits.credit_deduct('lim-a', 1, 'grant', '{}', 'lim-k1');
SELECT balance FROM credits.credit_add('lim-a', 1, 'init');
SELECT balance FROM credits.credit_add('lim-a', 1, 'grant');
SELECT hold_id FROM credits.credit_hold('lim-a', 1, 'expire');
SELECT balance FROM credits.credit_charge('lim-a', 'init', 1);
-- a name that only starts like one is the application's
SELECT balance FROM credits.credit_deduct('lim-a', 1, 'expire_soon');

-- nothing was written by the refused calls
SELECT action, amount, balance_after FROM credits.ledger
 WHERE user_id = 'lim-a' ORDER BY id;
SELECT count(*) AS holds FROM credits.holds WHERE user_id = 'lim-a';
SELECT count(*) AS keys FROM credits.idempotency_keys WHERE user_id = 'lim-a';
