#!/usr/bin/env bash
# The 1.0 -> 1.1 upgrade backfills the ledger's hash chain: a 1.0 database
# with data (written by the 1.0 functions, including rows whose 1.0
# created_at goes backwards along ids, as when a transaction that began
# earlier took the account lock later) verifies clean after ALTER EXTENSION
# UPDATE, keeps its balances, chains new rows onto the old ones with
# created_at never before an old row's, pages its history by id, and still
# reports tampering with an old row.
#
# Needs PGHOST/PGPORT/PGUSER of a superuser on a server with the extension
# installed (the stack's env).
set -euo pipefail
DB=credits_chain_upgrade
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT

fail() { echo "FAIL: $*"; exit 1; }
q() { psql -X -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
q >/dev/null <<'SQL'
CREATE EXTENSION credits VERSION '1.0';
SELECT credits.credit_init('up-a', 1000);
SELECT credits.credit_deduct('up-a', 10, 'chat_message', '{"tokens": 42}', 'k-1');
SELECT credits.credit_add('up-a', 7, 'purchase');
SELECT credits.credit_add('up-ü "q"', 3, 'bonus');
SELECT credits.credit_grant('up-a', 50, 'promo', now() + interval '30 days');
SELECT credits.credit_hold('up-a', 5, 'video_generation');
SELECT credits.credit_init('up-b', 20);
SQL
# 1.0's created_at is the transaction start: a transaction that began
# earlier and deducted later gets a lower created_at on a higher id.
q >/dev/null <<'SQL' &
BEGIN;
SELECT pg_sleep(1);
SELECT credits.credit_deduct('up-b', 4, 'early');
COMMIT;
SQL
sleep 0.3
q -c "SELECT credits.credit_deduct('up-b', 3, 'late')" >/dev/null
wait
[ "$(q -c "SELECT (SELECT created_at FROM credits.ledger WHERE action = 'early') < (SELECT created_at FROM credits.ledger WHERE action = 'late')")" = t ] ||
	fail "set-up: 1.0 did not write the out-of-order created_at"
before=$(q -c "SELECT string_agg(user_id || '=' || balance, ',' ORDER BY user_id) FROM credits.accounts")

q -c "ALTER EXTENSION credits UPDATE" >/dev/null
[ "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'credits'")" = 1.1 ] || fail "not upgraded"
after=$(q -c "SELECT string_agg(user_id || '=' || balance, ',' ORDER BY user_id) FROM credits.accounts")
[ "$before" = "$after" ] || fail "balances changed: $before -> $after"
[ "$(q -c "SELECT count(*) FROM credits.ledger WHERE hash IS NULL")" = 0 ] || fail "rows left without a hash"
[ -z "$(q -c "SELECT * FROM credits.credit_verify_all()")" ] || fail "upgraded database does not verify: $(q -c "SELECT * FROM credits.credit_verify_all()")"
[ "$(q -c "SELECT tgenabled FROM pg_trigger WHERE tgname = 'ledger_refuse_update_delete'")" = A ] ||
	fail "the append-only trigger is not ENABLE ALWAYS after the upgrade"
q -c "UPDATE credits.ledger SET amount = 1 WHERE user_id = 'up-a'" >/dev/null 2>&1 && fail "ledger not append-only after the upgrade"

# new rows chain onto the old ones; created_at never before an old row's
q >/dev/null <<'SQL'
SELECT credits.credit_deduct('up-a', 1, 'chat_message');
SELECT credits.credit_deduct('up-b', 1, 'chat_message');
SELECT credits.credit_add('up-b', 5, 'purchase', '{}', 'k-2');
SQL
[ -z "$(q -c "SELECT * FROM credits.credit_verify_all()")" ] || fail "does not verify after new rows"
bad=$(q -c "SELECT count(*) FROM credits.ledger n JOIN credits.ledger o ON o.user_id = n.user_id AND o.id < n.id
			 WHERE n.action IN ('chat_message', 'purchase') AND n.id = (SELECT max(id) FROM credits.ledger x WHERE x.user_id = n.user_id)
			   AND o.created_at > n.created_at")
[ "$bad" = 0 ] || fail "a new row's created_at is before an old row's"
# history: the 1.0 rows in 1.0's order (created_at, id), then the new rows
# in id order, newest first
ids=$(q -c "SELECT string_agg(id::text, ',') FROM credits.credit_history('up-b', 50)")
want=$(q -c "SELECT string_agg(id::text, ',' ORDER BY created_at DESC, id DESC) FROM credits.ledger WHERE user_id = 'up-b'")
[ "$ids" = "$want" ] || fail "history is not newest-first in ledger order: $ids (want $want)"
newest=$(q -c "SELECT string_agg(id::text, ',' ORDER BY id DESC) FROM (SELECT id FROM credits.ledger WHERE user_id = 'up-b' ORDER BY id DESC LIMIT 2) n")
case "$ids" in "$newest",*) ;; *) fail "the rows written after the upgrade are not first: $ids";; esac
chain=$(q -c "SELECT count(*) FROM (SELECT balance_after, amount, lag(balance_after) OVER (PARTITION BY user_id ORDER BY id) AS prev FROM credits.ledger) s WHERE balance_after <> coalesce(prev, 0) + amount")
[ "$chain" = 0 ] || fail "balance_after does not chain along ids"

# tampering with an old row is reported at that row
got=$(q <<'SQL'
BEGIN;
ALTER TABLE credits.ledger DISABLE TRIGGER ledger_refuse_update_delete;
UPDATE credits.ledger SET amount = amount - 1
 WHERE id = (SELECT min(id) + 1 FROM credits.ledger WHERE user_id = 'up-a');
ALTER TABLE credits.ledger ENABLE ALWAYS TRIGGER ledger_refuse_update_delete;
SELECT broken_tx_id = (SELECT min(id) + 1 FROM credits.ledger WHERE user_id = 'up-a') AND problem = 'hash mismatch'
  FROM credits.credit_verify('up-a');
ROLLBACK;
SQL
)
[ "$(echo "$got" | grep -c '^t$')" = 1 ] || fail "tampering with an upgraded row is not reported: $got"
echo "ok: upgrade backfills the chain; balances kept, verify clean, new rows chain on, tampering reported"
