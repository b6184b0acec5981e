#!/usr/bin/env bash
# pg_dump keeps the ledger: dump a database that uses the extension,
# restore it into a new one, and check that accounts, ledger, events and
# the id sequence survive, and that the restored ledger is still
# append-only and consistent.
#
# Needs PGHOST/PGPORT/PGUSER of a superuser on a server with the extension
# installed (the stack's env).
set -euo pipefail
BIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
SRC=credits_dump_src
DST=credits_dump_dst
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $SRC" -c "DROP DATABASE IF EXISTS $DST" >/dev/null 2>&1 || true' EXIT

fail() { echo "FAIL: $*"; exit 1; }
q() { psql -X -At -v ON_ERROR_STOP=1 "$@"; }

q -d postgres -c "DROP DATABASE IF EXISTS $SRC" -c "DROP DATABASE IF EXISTS $DST" >/dev/null
q -d postgres -c "CREATE DATABASE $SRC" >/dev/null
q -d "$SRC" >/dev/null <<'SQL'
CREATE EXTENSION credits;
SELECT credits.credit_init('dump-a', 100, '{"plan": "free"}');
SELECT credits.credit_deduct('dump-a', 10, 'chat_message', '{"tokens": 42}', 'k-1');
SELECT credits.credit_add('dump-b', 7, 'purchase');
SELECT credits.credit_add('dump-ü "quoted"', 3, 'bonus');
UPDATE credits.accounts SET balance = 1 WHERE user_id = 'dump-b';
SELECT credits.credit_rebuild('dump-b');
SQL

"$BIN/pg_dump" -Fc -d "$SRC" -f "$TMP/dump" || fail "pg_dump"
q -d postgres -c "CREATE DATABASE $DST" >/dev/null
"$BIN/pg_restore" --exit-on-error -d "$DST" "$TMP/dump" || fail "pg_restore"

snapshot() {
	q -d "$1" -c "SELECT id, user_id, amount, balance_after, action, metadata, idempotency_key, created_at, txid FROM credits.ledger ORDER BY id" \
		-c "SELECT user_id, balance, held, version, created_at, updated_at FROM credits.accounts ORDER BY user_id" \
		-c "SELECT id, user_id, event, detail, created_at, txid FROM credits.account_events ORDER BY id"
}
snapshot "$SRC" > "$TMP/src.txt"
snapshot "$DST" > "$TMP/dst.txt"
[ "$(wc -l < "$TMP/src.txt")" -ge 6 ] || fail "source snapshot is too small"
diff -u "$TMP/src.txt" "$TMP/dst.txt" || fail "restored data differs"

# The restored database keeps working: ids continue after the restored ones,
# idempotency keys are still known, the ledger is still append-only.
max_src=$(q -d "$SRC" -c "SELECT max(id) FROM credits.ledger")
new_id=$(q -d "$DST" -c "SELECT tx_id FROM credits.credit_deduct('dump-a', 1, 'chat_message')")
[ "$new_id" -gt "$max_src" ] || fail "sequence not restored: new id $new_id <= $max_src"
retry=$(q -d "$DST" -c "SELECT balance FROM credits.credit_deduct('dump-a', 10, 'chat_message', '{}', 'k-1')")
[ "$retry" = 90 ] || fail "idempotency key lost in restore: got balance $retry"
if q -d "$DST" -c "DELETE FROM credits.ledger" >/dev/null 2>&1; then
	fail "restored ledger accepts DELETE"
fi
mismatches=$(q -d "$DST" -c "SELECT count(*) FROM credits.credit_verify_all()")
[ "$mismatches" = 0 ] || fail "credit_verify_all() reports $mismatches mismatches after restore"

echo "PASS: dump_restore"
